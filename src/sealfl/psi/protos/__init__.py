"""Generated protobuf and gRPC stubs of the PSI frames (``make protos``)."""

"""Generated protobuf and gRPC stubs of the homo-lr messages (``make protos``)."""

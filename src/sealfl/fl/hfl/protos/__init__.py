"""Generated protobuf and gRPC stubs of the hfl messages (``make protos``)."""

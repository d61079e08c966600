"""Generated protobuf and gRPC stubs of the vfl messages (``make protos``)."""

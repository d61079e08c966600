"""Transport: protobuf messages, mutual RA-TLS gRPC servers and channels, streaming of tensors."""

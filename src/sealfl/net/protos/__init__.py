"""Generated protobuf and gRPC stubs for :mod:`sealfl.net` (regenerate with ``make protos``)."""

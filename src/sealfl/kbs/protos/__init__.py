"""Generated protobuf and gRPC stubs for :mod:`sealfl.kbs` (regenerate with ``make protos``)."""

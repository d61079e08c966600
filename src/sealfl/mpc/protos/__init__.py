"""Generated protobuf stubs for :mod:`sealfl.mpc` (regenerate with ``make protos``)."""

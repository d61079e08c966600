"""Generated stubs for :mod:`sealfl.fl.infer` (regenerate with ``make protos``)."""

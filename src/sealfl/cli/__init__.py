"""The ``sealfl`` command: the one place that wires building blocks and workloads together."""

"""``sealfl bench ratls``: the secure transport against plain TLS on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealfl._files import check_output_path
from sealfl.cli.app import bench_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.errors import ConfigError


@bench_app.command("ratls")
def bench_ratls(
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer connections, pings and repeats.")
    ] = False,
    tensor_mb: Annotated[
        int, typer.Option("--tensor-mb", help="Size of the streamed tensor in MiB.")
    ] = 200,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the results as JSON to this file."),
    ] = None,
) -> None:
    """Connect+verify+enrol time, per-RPC latency and 200 MB stream throughput vs plain TLS."""
    if not 1 <= tensor_mb <= 4096:
        raise ConfigError(f"--tensor-mb: expected 1 to 4096, got {tensor_mb}")
    if out is not None:
        check_output_path(out, what="--out")
    load_benchmark("ratls").main(quick=quick, tensor_mb=tensor_mb, out=out)

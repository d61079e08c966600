"""``sealfl bench psi``: sealfl's ECDH-PSI between two processes over RA-TLS, with a named peer.

The protocol itself is :mod:`sealfl.psi`; workloads (vfl) run it inside their own parties, so
there is no standalone ``sealfl psi`` command that would print ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealfl.cli.app import bench_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.errors import ConfigError
from sealfl.psi import Mode


@bench_app.command("psi")
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="2·10^4 ids per side instead of 10^6.")
    ] = False,
    ids: Annotated[
        int | None,
        typer.Option("--ids", help="Ids per side (overrides --quick).", show_default=False),
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="both, leader-only, cardinality or enclave-only.")
    ] = "both",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Ids per frame.")] = 4096,
    openmined_python: Annotated[
        Path | None,
        typer.Option(
            "--openmined-python",
            help="An interpreter with openmined-psi==2.0.6 (its own venv: it pins protobuf 6); "
            "runs it on the same sets in this invocation and reports the ratio.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where psi.json is written.")] = Path(
        "bench-results"
    ),
) -> None:
    """ids/s per party-core, bytes per id and wall time at 10^6 × 10^6 ids (50% overlap)."""
    Mode.parse(mode, what="--mode")
    if ids is not None and not 1 <= ids <= 10**8:
        raise ConfigError(f"--ids: expected 1..100000000, got {ids}")
    if not 1 <= batch_size <= 65536:
        raise ConfigError(f"--batch-size: expected 1..65536, got {batch_size}")
    if openmined_python is not None and not openmined_python.is_file():
        raise ConfigError(f"--openmined-python {openmined_python}: no such file")
    load_benchmark("psi").main(
        quick=quick,
        n=ids,
        batch=batch_size,
        mode=mode,
        openmined_python=openmined_python,
        out_dir=out_dir,
    )

"""``sealfl infer``: private logistic-regression inference in plaintext, TEE or MPC mode.

``train`` fits the model on a CSV; ``dealer`` and ``serve`` run the dealer and the model server
(each prints one JSON ready line on stdout and serves until terminated); ``query`` sends a CSV
to a server. ``sealfl demo infer`` runs all three modes as separate processes and shows that
they agree; ``sealfl bench infer`` measures them (``benchmarks/infer.py``).
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from sealfl._files import write_atomic
from sealfl.cli.app import app, bench_app, demo_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.run_cmd import role
from sealfl.cli.tee_options import CollateralOption, TeeOption, build_runtime
from sealfl.data import read_fate_csv
from sealfl.errors import ConfigError
from sealfl.fl.infer.client import (
    InferenceClient,
    pinned_verifier,
    policy_verifier,
    tee_verifier,
)
from sealfl.fl.infer.common import Mode, tee_measurement
from sealfl.fl.infer.demo import run_demo
from sealfl.fl.infer.run import Running, start_dealer, start_model_server
from sealfl.models import LogisticRegression, TrainConfig
from sealfl.mpc import Linear, Output
from sealfl.net import freeze_startup_objects, keep_freed_memory
from sealfl.runtime import RoleConfig
from sealfl.tee import SimulatedPlatform, Verifier, load_policy
from sealfl.tee.collateral import collateral_source

infer_app = typer.Typer(
    help="Private inference of a logistic-regression model: plaintext, TEE or MPC.",
    no_args_is_help=True,
)
app.add_typer(infer_app, name="infer")

# Piped output (tests, logs) gets a fixed width wide enough for the tables.
_console = Console(width=None if sys.stdout.isatty() else 120)

ModeOption = Annotated[Mode, typer.Option("--mode", help="plaintext, tee or mpc.")]
AddressOption = Annotated[
    str, typer.Option("--address", help="host:port to listen on (port 0 picks one).")
]


def _serve_until_terminated(running: Running) -> None:
    """Print the ready line, then serve until SIGTERM or SIGINT."""
    freeze_startup_objects()  # keep collector scans of start-up state out of queries
    print(json.dumps(running.ready_line()), flush=True)
    stop = lambda *_: running.server.stop(1.0)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    running.server.wait()


@infer_app.command("train")
def train(
    data: Annotated[Path, typer.Option("--data", help="FATE-format CSV with a y column.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (.npz).")],
    epochs: Annotated[int, typer.Option(help="Adam epochs.")] = 200,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="Adam step.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
) -> None:
    """Train the bias-free logistic regression with Adam on binary cross-entropy."""
    ds = read_fate_csv(data, require_label=True)
    config = TrainConfig(epochs=epochs, learning_rate=learning_rate, seed=seed)
    model, losses = LogisticRegression.fit(ds.X, ds.labels(), config)
    acc = float(np.mean(model.predict(ds.X) == ds.labels()))
    model.save(out)
    _console.print(
        f"trained on {ds.n_rows} rows x {ds.n_features} features: loss {losses[-1]:.4f}, "
        f"training accuracy {acc:.3f}; model written to {out}"
    )


@infer_app.command("dealer")
def dealer(address: AddressOption = "127.0.0.1:0") -> None:
    """Run the MPC dealer (correlated randomness only; it never sees inputs or weights)."""
    keep_freed_memory()
    _serve_until_terminated(start_dealer(address=address))


@infer_app.command("serve")
def serve(
    mode: ModeOption,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model .npz (TEE mode: sealed into --sealed-model first)."),
    ] = None,
    address: AddressOption = "127.0.0.1:0",
    sealed_model: Annotated[
        Path | None, typer.Option("--sealed-model", help="TEE mode: the sealed model file.")
    ] = None,
    platform: Annotated[
        Path | None,
        typer.Option(
            "--platform",
            "--simulated-platform",
            envvar="SEALFL_SIMULATED_PLATFORM",
            help="TEE mode: simulated platform directory.",
        ),
    ] = None,
    tee: TeeOption = None,
    dealer_address: Annotated[
        str | None, typer.Option("--dealer", help="MPC mode: the dealer's address.")
    ] = None,
    dealer_fingerprint: Annotated[
        str | None, typer.Option("--dealer-fingerprint", help="MPC mode: the dealer's pin.")
    ] = None,
) -> None:
    """Serve the model in one mode; prints a JSON ready line, serves until terminated."""
    keep_freed_memory()  # megabyte messages per query: reuse buffers, don't fault them in
    runtime = None
    if mode is Mode.TEE:
        runtime = build_runtime(tee=tee, platform=platform, measurement=tee_measurement)
    elif tee is not None or platform is not None:
        raise ConfigError(f"--tee and --platform apply to --mode tee only, not {mode.value}")
    running = start_model_server(
        mode=mode,
        address=address,
        model_path=model,
        sealed_model=sealed_model,
        tee=runtime,
        dealer_address=dealer_address,
        dealer_fingerprint=dealer_fingerprint,
    )
    _serve_until_terminated(running)


def _sha256_option(text: str) -> bytes:
    """Parse ``--model-sha256``: 64 hex digits."""
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigError(f"--model-sha256 must be 64 hex digits, got {text!r}")
    return digest


@infer_app.command("query")
def query(
    mode: ModeOption,
    server: Annotated[str, typer.Option("--server", help="The server's address.")],
    data: Annotated[Path, typer.Option("--data", help="FATE-format CSV (y column optional).")],
    server_fingerprint: Annotated[
        str | None,
        typer.Option("--server-fingerprint", help="plaintext/mpc: the server's pinned cert."),
    ] = None,
    platform: Annotated[
        Path | None,
        typer.Option("--platform", help="tee: the simulated platform the server must run on."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="tee: the policy the server's evidence must pass (instead of --platform; "
            "needed for a server on SGX or TDX).",
            show_default=False,
        ),
    ] = None,
    collateral: CollateralOption = None,
    output: Annotated[
        Output, typer.Option("--output", help="mpc: probability, logit or label.")
    ] = Output.PROBABILITY,
    linear: Annotated[
        Linear, typer.Option("--linear", help="mpc: input-owner, or the general beaver path.")
    ] = Linear.INPUT_OWNER,
    dealer_fingerprint: Annotated[
        str | None,
        typer.Option(
            "--dealer-fingerprint",
            help="mpc (required): the dealer's pinned certificate; the client, not the "
            "server, chooses the dealer it trusts not to collude with the server.",
        ),
    ] = None,
    model_sha256: Annotated[
        str | None,
        typer.Option(
            "--model-sha256",
            help="tee: refuse the server unless its enclave unsealed the model with this hash.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write id,probability,label rows to this CSV.")
    ] = None,
) -> None:
    """Query a server with the rows of a CSV; print accuracy if the CSV has labels."""
    digest = None if model_sha256 is None else _sha256_option(model_sha256)
    verifier: Any
    if mode is Mode.TEE:
        if (platform is None) == (policy is None):
            raise ConfigError(
                "tee mode needs exactly one of --policy (the server's evidence must pass it) and "
                "--platform (trust the simulated platform, development only)"
            )
        if policy is not None:
            source = None if collateral is None else collateral_source(collateral)
            verifier = policy_verifier(
                Verifier(load_policy(policy), collateral=source), model_sha256=digest
            )
        else:
            assert platform is not None
            verifier = tee_verifier(
                platform_fingerprint=SimulatedPlatform.load(platform).fingerprint,
                measurement=tee_measurement(),
                model_sha256=digest,
            )
    else:
        verifier = _pinned(mode, server_fingerprint)
    _query(mode, server, data, verifier, output, linear, dealer_fingerprint, out)


def _pinned(mode: Mode, server_fingerprint: str | None) -> Any:
    if server_fingerprint is None:
        raise ConfigError(f"{mode.value} mode needs --server-fingerprint")
    return pinned_verifier(server_fingerprint)


def _query(
    mode: Mode,
    server: str,
    data: Path,
    verifier: Any,
    output: Output,
    linear: Linear,
    dealer_fingerprint: str | None,
    out: Path | None,
) -> None:
    """Send the rows of ``data`` to ``server`` and report; write predictions to ``out``."""
    keep_freed_memory()
    ds = read_fate_csv(data)
    if mode is Mode.MPC and dealer_fingerprint is None:
        raise ConfigError("mpc mode needs --dealer-fingerprint (the dealer you trust)")
    with InferenceClient.connect(
        server, mode=mode, server_verifier=verifier, dealer_fingerprint=dealer_fingerprint
    ) as client:
        freeze_startup_objects()
        result = client.query(ds.X, output, linear=linear)
    line = (
        f"{ds.n_rows} rows answered in {1000 * result.online_s:.1f} ms online "
        f"({result.round_trips} round trips, {result.bytes_sent} bytes sent)"
    )
    if ds.y is not None:
        line += f"; accuracy {float(np.mean(result.labels == ds.labels())):.3f}"
    _console.print(line)
    if out is not None:
        probs = result.probabilities
        lines = ["id,probability,label"]
        for i, ident in enumerate(ds.ids):
            p = "" if probs is None else f"{probs[i]:.6f}"
            lines.append(f"{ident},{p},{result.labels[i]}")
        # All at once: an interrupted query never leaves half a predictions file.
        write_atomic(out, ("\n".join(lines) + "\n").encode(), mode=0o644)
        _console.print(f"predictions written to {out}")


@role("infer", "dealer")
def _dealer_from_config(config: RoleConfig) -> None:
    config.options.finish()
    keep_freed_memory()
    _serve_until_terminated(start_dealer(address=config.require_listen()))


@role("infer", "server")
def _server_from_config(config: RoleConfig) -> None:
    table = config.options
    mode = table.choice("mode", Mode)
    model = table.path("model")
    sealed_model = table.path("sealed_model")
    dealer_fingerprint = table.string("dealer_fingerprint")
    table.finish()
    runtime = None
    if mode is Mode.TEE:
        runtime = config.runtime(simulated_measurement=tee_measurement)
    keep_freed_memory()
    running = start_model_server(
        mode=mode,
        address=config.require_listen(),
        model_path=model,
        sealed_model=sealed_model,
        tee=runtime,
        dealer_address=config.peer("dealer") if mode is Mode.MPC else None,
        dealer_fingerprint=dealer_fingerprint,
    )
    _serve_until_terminated(running)


@role("infer", "client")
def _client_from_config(config: RoleConfig) -> None:
    table = config.options
    mode = table.choice("mode", Mode)
    data = table.path("data", required=True)
    out = table.path("out")
    output = table.choice("output", Output, Output.PROBABILITY)
    linear = table.choice("linear", Linear, Linear.INPUT_OWNER)
    server_fingerprint = table.string("server_fingerprint")
    dealer_fingerprint = table.string("dealer_fingerprint")
    model_sha256 = table.string("model_sha256")
    table.finish()
    if mode is Mode.TEE:
        digest = None if model_sha256 is None else _sha256_option(model_sha256)
        verifier = policy_verifier(config.peer_verifier(), model_sha256=digest)
    else:
        verifier = _pinned(mode, server_fingerprint)
    _query(mode, config.peer("server"), data, verifier, output, linear, dealer_fingerprint, out)


@demo_app.command("infer")
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep model, logs etc. here.")
    ] = None,
) -> None:
    """Run plaintext, TEE and MPC inference on the breast-cancer test split and compare."""
    directory = workdir or Path(tempfile.mkdtemp(prefix="sealfl-infer-"))
    rows = run_demo(directory)
    table = Table(title="breast-cancer test split: every mode vs the local plaintext model")
    for col in ("mode", "output", "max |Δp|", "labels agree", "ms", "round trips", "bytes sent"):
        table.add_column(col)
    for r in rows:
        diff = "—" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}"
        table.add_row(
            r.mode,
            r.output,
            diff,
            "yes" if r.labels_agree else "NO",
            f"{r.online_ms:.1f}",
            str(r.round_trips),
            str(r.bytes_sent),
        )
    _console.print(table)
    _console.print(f"work directory: {directory}")
    if not all(r.ok for r in rows):
        _console.print("[red]some mode disagrees with plaintext beyond its tolerance[/red]")
        raise typer.Exit(1)
    _console.print("all modes agree (TEE exactly, MPC within 1e-3 / 1e-4 for the revealed logit)")


@bench_app.command("infer")
def bench(
    features: Annotated[int, typer.Option(help="Model width (the reference's is 528).")] = 528,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")
    ] = "1,10,100,1000,10000",
    modes: Annotated[
        str,
        typer.Option(
            "--modes",
            help=(
                "Comma-separated among plaintext, tee, mpc, mpc-logit, mpc-label, "
                "mpc-beaver, mpc-local."
            ),
        ),
    ] = "plaintext,tee,mpc,mpc-logit,mpc-label,mpc-beaver,mpc-local",
    repeats: Annotated[int, typer.Option(help="Timed repeats per point (median).")] = 7,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="JSON and PNG go here.")] = Path(
        "bench-results"
    ),
    crypten_python: Annotated[
        Path | None,
        typer.Option(
            "--crypten-python",
            help="Also run CrypTen (the peer) with this Python interpreter, which must have it.",
        ),
    ] = None,
) -> None:
    """Latency per batch of plaintext, TEE and MPC inference; table, JSON and PNG plot."""
    harness = load_benchmark("infer")
    harness.main(
        features=features,
        batch_sizes=[int(b) for b in batch_sizes.split(",") if b.strip()],
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        repeats=repeats,
        out_dir=out_dir,
        crypten_python=crypten_python,
    )

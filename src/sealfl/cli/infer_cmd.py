"""``sealfl infer``: private logistic-regression inference in plaintext, TEE or MPC mode.

``train`` fits the model on a CSV; ``dealer`` and ``serve`` run the dealer and the model server
(each prints one JSON ready line on stdout and serves until terminated); ``query`` sends a CSV
to a server. ``sealfl demo infer`` runs all three modes as separate processes and shows that
they agree; ``sealfl bench infer`` measures them (``benchmarks/infer.py``).
"""

from __future__ import annotations

import json
import math
import signal
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from sealfl._files import write_atomic
from sealfl.cli.app import app, bench_app, demo_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console, print_table
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
from sealfl.fl.infer.keyfile import load_or_create_identity
from sealfl.fl.infer.quota import RowBudget
from sealfl.fl.infer.run import Running, start_dealer, start_model_server
from sealfl.models import LogisticRegression, TrainConfig
from sealfl.mpc import Linear, Output
from sealfl.mpc.plan import MAX_CELLS, MAX_FEATURES, MAX_ROWS
from sealfl.net import freeze_startup_objects, keep_freed_memory
from sealfl.runtime import RoleConfig, check_address
from sealfl.tee import Verifier, load_policy
from sealfl.tee.collateral import collateral_source

infer_app = typer.Typer(
    help="Private inference of a logistic-regression model: plaintext, TEE or MPC.",
    no_args_is_help=True,
)
app.add_typer(infer_app, name="infer")

# Piped output (tests, logs) gets a fixed width wide enough for the tables.
_console = output_console()

ModeOption = Annotated[Mode, typer.Option("--mode", help="plaintext, tee or mpc.")]
AddressOption = Annotated[
    str, typer.Option("--address", help="host:port to listen on (port 0 picks one).")
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="Keep this party's key and certificate here (made at the first start, mode 0600), "
        "so its fingerprint stays the same across restarts.",
        show_default=False,
    ),
]
DEFAULT_OUTPUTS = (Output.LABEL,)
"""What a server serves unless told otherwise: the label, one bit per row (docs/trust.md)."""
MAX_EPOCHS = 100_000
"""Most epochs ``infer train`` accepts (a full pass over a small CSV takes microseconds)."""
MAX_ROW_BUDGET = 10**12
"""Largest ``--row-budget``: beyond it a budget bounds nothing (use 0 for none)."""


def _fingerprint_option(text: str, option: str) -> str:
    """Parse a SHA-256 fingerprint option: 64 hex digits (colons allowed), lower-cased."""
    digits = text.replace(":", "").strip().lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ConfigError(
            f"{option} must be a SHA-256 fingerprint, 64 hex digits (as the party's ready line "
            f"prints it), got {text!r}"
        )
    return digits


def _outputs_option(text: str, option: str) -> tuple[Output, ...]:
    """Parse the outputs a server serves: comma-separated names."""
    outputs: list[Output] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        try:
            output = Output(name)
        except ValueError:
            choices = ", ".join(o.value for o in Output)
            raise ConfigError(f"{option}: {name!r} is not an output; expected {choices}") from None
        if output not in outputs:
            outputs.append(output)
    if not outputs:
        raise ConfigError(
            f"{option}: name at least one output ({', '.join(o.value for o in Output)})"
        )
    return tuple(outputs)


def _budget_option(rows: int, period_s: float) -> RowBudget | None:
    """Build the per-client row budget (``rows`` 0: none)."""
    if not 0 <= rows <= MAX_ROW_BUDGET:
        raise ConfigError(
            f"--row-budget: expected 0 (no budget) to {MAX_ROW_BUDGET} rows, got {rows}"
        )
    if not (math.isfinite(period_s) and period_s > 0):
        raise ConfigError(f"--budget-period: expected seconds > 0, got {period_s}")
    return None if rows == 0 else RowBudget(rows, period_s=period_s)


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
    # Every option is checked before the data is read and the training starts.
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"--learning-rate must be a finite number > 0, got {learning_rate}")
    if not 1 <= epochs <= MAX_EPOCHS:
        raise ConfigError(f"--epochs must be between 1 and {MAX_EPOCHS}, got {epochs}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    config = TrainConfig(epochs=epochs, learning_rate=learning_rate, seed=seed)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the model file's path")
    ds = read_fate_csv(data, require_label=True)
    model, losses = LogisticRegression.fit(ds.X, ds.labels(), config)
    acc = float(np.mean(model.predict(ds.X) == ds.labels()))
    model.save(out)
    _console.print(
        f"trained on {ds.n_rows} rows x {ds.n_features} features: loss {losses[-1]:.4f}, "
        f"training accuracy {acc:.3f}; model written to {out}"
    )


@infer_app.command("dealer")
def dealer(address: AddressOption = "127.0.0.1:0", key_file: KeyFileOption = None) -> None:
    """Run the MPC dealer (correlated randomness only; it never sees inputs or weights)."""
    address = check_address(address, where="--address")
    keep_freed_memory()
    _serve_until_terminated(start_dealer(address=address, key_file=key_file))


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
    key_file: KeyFileOption = None,
    allow_outputs: Annotated[
        str,
        typer.Option(
            "--allow-outputs",
            help="Comma-separated outputs served: probability, logit, label. A probability or "
            "logit gives the client one linear equation in the weights per row (a query of as "
            "many rows as features returns the model); label one bit (docs/trust.md).",
        ),
    ] = "label",
    row_budget: Annotated[
        int,
        typer.Option(
            "--row-budget",
            help="Rows one client certificate may query per --budget-period (0: no budget).",
        ),
    ] = 0,
    budget_period: Annotated[
        float, typer.Option("--budget-period", help="Seconds over which --row-budget refills.")
    ] = 86400.0,
) -> None:
    """Serve the model in one mode; prints a JSON ready line, serves until terminated."""
    # Every option is checked before anything is read, made or started.
    address = check_address(address, where="--address")
    if dealer_address is not None:
        dealer_address = check_address(dealer_address, where="--dealer")
    if dealer_fingerprint is not None:
        dealer_fingerprint = _fingerprint_option(dealer_fingerprint, "--dealer-fingerprint")
    outputs = _outputs_option(allow_outputs, "--allow-outputs")
    budget = _budget_option(row_budget, budget_period)
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
        key_file=key_file,
        allow_outputs=outputs,
        row_budget=budget,
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
    platform_fingerprint: Annotated[
        str | None,
        typer.Option(
            "--platform-fingerprint",
            help="tee: the fingerprint of the simulated platform the server must run on "
            "(development only; `sealfl attest simulated-platform` prints it).",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="tee: the policy the server's evidence must pass (instead of "
            "--platform-fingerprint; needed for a server on SGX or TDX).",
            show_default=False,
        ),
    ] = None,
    collateral: CollateralOption = None,
    output: Annotated[
        Output,
        typer.Option("--output", help="probability, logit or label (the server must serve it)."),
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
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="This client's identity, kept across runs (made at the first run, mode 0600): "
            "a server's row budget is per client certificate.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Query a server with the rows of a CSV; print accuracy if the CSV has labels.

    The client never reads a TEE platform's files: it trusts a server through a policy or,
    in development, the simulated platform's fingerprint.
    """
    # Every option is checked before anything is read or sent.
    server = check_address(server, where="--server")
    digest = None if model_sha256 is None else _sha256_option(model_sha256)
    if dealer_fingerprint is not None:
        dealer_fingerprint = _fingerprint_option(dealer_fingerprint, "--dealer-fingerprint")
    verifier: Any
    if mode is Mode.TEE:
        if (platform_fingerprint is None) == (policy is None):
            raise ConfigError(
                "tee mode needs exactly one of --policy (the server's evidence must pass it) and "
                "--platform-fingerprint (trust the simulated platform, development only)"
            )
        if policy is not None:
            source = None if collateral is None else collateral_source(collateral)
            verifier = policy_verifier(
                Verifier(load_policy(policy), collateral=source), model_sha256=digest
            )
        else:
            assert platform_fingerprint is not None
            verifier = tee_verifier(
                platform_fingerprint=_fingerprint_option(
                    platform_fingerprint, "--platform-fingerprint"
                ),
                measurement=tee_measurement(),
                model_sha256=digest,
            )
    else:
        if platform_fingerprint is not None or policy is not None:
            raise ConfigError(
                f"--platform-fingerprint and --policy apply to --mode tee only, not {mode.value}"
            )
        verifier = _pinned(mode, server_fingerprint)
    _query(mode, server, data, verifier, output, linear, dealer_fingerprint, out, key_file)


def _pinned(mode: Mode, server_fingerprint: str | None) -> Any:
    if server_fingerprint is None:
        raise ConfigError(f"{mode.value} mode needs --server-fingerprint")
    return pinned_verifier(_fingerprint_option(server_fingerprint, "--server-fingerprint"))


def _query(
    mode: Mode,
    server: str,
    data: Path,
    verifier: Any,
    output: Output,
    linear: Linear,
    dealer_fingerprint: str | None,
    out: Path | None,
    key_file: Path | None = None,
) -> None:
    """Send the rows of ``data`` to ``server`` and report; write predictions to ``out``."""
    keep_freed_memory()
    if mode is Mode.MPC and dealer_fingerprint is None:
        raise ConfigError("mpc mode needs --dealer-fingerprint (the dealer you trust)")
    if out is not None and not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    ds = read_fate_csv(data)
    credentials = None
    if key_file is not None:
        credentials = load_or_create_identity(key_file, party="infer-client")
    with InferenceClient.connect(
        server,
        mode=mode,
        server_verifier=verifier,
        dealer_fingerprint=dealer_fingerprint,
        credentials=credentials,
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
    key_file = config.options.path("key_file")
    config.options.finish()
    keep_freed_memory()
    _serve_until_terminated(start_dealer(address=config.require_listen(), key_file=key_file))


@role("infer", "server")
def _server_from_config(config: RoleConfig) -> None:
    table = config.options
    mode = table.choice("mode", Mode)
    model = table.path("model")
    sealed_model = table.path("sealed_model")
    dealer_fingerprint = table.string("dealer_fingerprint")
    key_file = table.path("key_file")
    outputs_text = table.string("allow_outputs", ",".join(o.value for o in DEFAULT_OUTPUTS))
    row_budget = table.integer("row_budget", 0)
    budget_period = table.number("budget_period_s", 86400.0)
    table.finish()
    where = f"{table.source}: options"
    outputs = _outputs_option(outputs_text, f"{where}.allow_outputs")
    if dealer_fingerprint is not None:
        dealer_fingerprint = _fingerprint_option(dealer_fingerprint, f"{where}.dealer_fingerprint")
    budget = _budget_option(row_budget, budget_period)
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
        key_file=key_file,
        allow_outputs=outputs,
        row_budget=budget,
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
    key_file = table.path("key_file")
    table.finish()
    if dealer_fingerprint is not None:
        where = f"{table.source}: options.dealer_fingerprint"
        dealer_fingerprint = _fingerprint_option(dealer_fingerprint, where)
    if mode is Mode.TEE:
        digest = None if model_sha256 is None else _sha256_option(model_sha256)
        verifier = policy_verifier(config.peer_verifier(), model_sha256=digest)
    else:
        verifier = _pinned(mode, server_fingerprint)
    server = config.peer("server")
    _query(mode, server, data, verifier, output, linear, dealer_fingerprint, out, key_file)


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
    print_table(_console, table)
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
    # Every option is checked before the first party starts (a run takes minutes).
    if not 1 <= features <= MAX_FEATURES:
        raise ConfigError(f"--features must be between 1 and {MAX_FEATURES}, got {features}")
    if not 1 <= repeats <= 1000:
        raise ConfigError(f"--repeats must be between 1 and 1000, got {repeats}")
    sizes = []
    for text in (b.strip() for b in batch_sizes.split(",") if b.strip()):
        if not text.isdigit() or not 1 <= int(text) <= MAX_ROWS:
            raise ConfigError(f"--batch-sizes: each must be 1..{MAX_ROWS}, got {text!r}")
        sizes.append(int(text))
    if not sizes:
        raise ConfigError("--batch-sizes: name at least one batch size")
    if features * max(sizes) > MAX_CELLS:
        raise ConfigError(
            f"--features x the largest --batch-sizes must be at most {MAX_CELLS}, got "
            f"{features} x {max(sizes)}"
        )
    if crypten_python is not None and not crypten_python.is_file():
        raise ConfigError(f"--crypten-python {crypten_python}: no such interpreter file")
    _check_directory_can_exist(out_dir, "--out-dir")
    harness = load_benchmark("infer")
    harness.main(
        features=features,
        batch_sizes=sizes,
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        repeats=repeats,
        out_dir=out_dir,
        crypten_python=crypten_python,
    )


def _check_directory_can_exist(path: Path, option: str) -> None:
    """Refuse a directory path under a regular file (it could never be made)."""
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(f"{option} {path}: {ancestor} is a file, not a directory")
            return

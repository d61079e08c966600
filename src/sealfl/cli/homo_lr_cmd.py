"""``sealfl homo-lr ps|worker`` and ``sealfl demo homo-lr``: Paillier horizontal LR.

The parameter server runs in a TEE (the simulated one, on the platform given with
``--simulated-platform``), makes its Paillier key pair there and serves an RA-TLS certificate
that binds the public key. Workers attest it against ``--policy``, train on the encrypted model
and print ``iter: {i}  acc: {acc:.3f}  loss: {loss:.3f}`` every 10 iterations. Metrics are also
written as JSON lines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sealfl.cli.app import app, bench_app, demo_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console, print_line
from sealfl.cli.run_cmd import role
from sealfl.cli.tee_options import (
    CollateralOption,
    PlatformOption,
    PolicyOption,
    TeeOption,
    peer_runtime,
)
from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import PRESETS, Hyperparameters, Schedule
from sealfl.fl.homo_lr.demo import DemoOptions, prepare_run_dir, run_demo, write_role_configs
from sealfl.fl.homo_lr.launch import (
    PsOptions,
    WorkerOptions,
    exit_code,
    role_measurement,
    run_parameter_server,
    run_worker,
)
from sealfl.fl.homo_lr.roles import ps_options, worker_options
from sealfl.runtime import PartyRuntime, RoleConfig

homo_lr_app = typer.Typer(
    help="Horizontal logistic regression on a Paillier-encrypted model with an attested PS.",
    no_args_is_help=True,
)
app.add_typer(homo_lr_app, name="homo-lr")

CoresOption = Annotated[
    int | None,
    typer.Option(
        "--cores",
        help="Cores for the Paillier arithmetic (default: all). Give 1 when several parties "
        "share one machine, as in the demo.",
        show_default=False,
    ),
]


EpochsOption = Annotated[int, typer.Option("--epochs", help="Full-batch iterations.")]
AlphaOption = Annotated[float, typer.Option("--alpha", help="L2 regularisation.")]
LearningRateOption = Annotated[float, typer.Option("--learning-rate", help="Base step size lr.")]
ScheduleOption = Annotated[
    Schedule,
    typer.Option(
        "--schedule",
        help="sqrt-decay: lr/sqrt(1+t), as the reference; constant: lr (see --preset).",
    ),
]
PresetOption = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Use a named setting instead of the flags above: 'reference' (341 iterations, "
        "0.15/sqrt(1+t), parity with the reference run) or 'accurate' (341 iterations, "
        "constant 0.3: 0.965 on the breast test split).",
        show_default=False,
    ),
]


def _settings(
    preset: str | None, epochs: int, learning_rate: float, alpha: float, schedule: Schedule
) -> Hyperparameters:
    """Return the preset's settings, or the four flags'."""
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        return PRESETS[preset]
    return Hyperparameters(
        learning_rate=learning_rate, alpha=alpha, iterations=epochs, schedule=schedule
    )


@homo_lr_app.command("ps")
def ps(
    worker_num: Annotated[int, typer.Option("--worker-num", help="Workers to wait for.")],
    validate_set: Annotated[
        Path, typer.Option("--validate-set", help="FATE CSV (id, y, features) to evaluate on.")
    ],
    epochs: EpochsOption = 100,
    alpha: AlphaOption = 0.01,
    learning_rate: LearningRateOption = 0.15,
    schedule: ScheduleOption = Schedule.SQRT_DECAY,
    preset: PresetOption = None,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT of the front door.")] = (
        "127.0.0.1:50070"
    ),
    service_listen: Annotated[
        str | None,
        typer.Option(
            "--service-listen",
            help="HOST:PORT of the mutual-TLS training service (default: the front door's host "
            "and a free port). Workers learn it at enrolment; open both ports in a firewall.",
            show_default=False,
        ),
    ] = None,
    key_bits: Annotated[int, typer.Option("--key-bits", help="Paillier modulus size.")] = 2048,
    policy: PolicyOption = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the sealed model and metrics.")
    ] = Path("homo-lr-out"),
    min_workers: Annotated[
        int | None,
        typer.Option(
            "--min-workers",
            help="Go on past a round deadline if at least this many workers submitted "
            "(default: --worker-num).",
            show_default=False,
        ),
    ] = None,
    round_deadline: Annotated[
        float, typer.Option("--round-deadline", help="Seconds to wait for one iteration.")
    ] = 60.0,
    join_deadline: Annotated[
        float, typer.Option("--join-deadline", help="Seconds to wait for workers to join.")
    ] = 300.0,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every",
            help="Seal the state into --out every this many iterations and at any stop (0: never).",
        ),
    ] = 10,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the sealed checkpoint in --out (same settings; workers started "
            "with --wait-for-server rejoin by themselves).",
        ),
    ] = False,
    admit: Annotated[
        Path | None,
        typer.Option(
            "--admit",
            help="TOML list of the workers admitted beside the policy (key_sha256 or name, "
            "optional id).",
            show_default=False,
        ),
    ] = None,
    fallback_dir: Annotated[
        Path | None,
        typer.Option(
            "--fallback-dir",
            help="Where the model goes if --out cannot be written at the end (default: a new "
            "directory under the temporary directory).",
            show_default=False,
        ),
    ] = None,
    cores: CoresOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Run the parameter server: key pair in the TEE, checked encrypted averaging, sealed model.

    The training settings are the PS's: workers declaring others are refused. Ctrl-C or SIGTERM
    stops it cleanly: the workers are told at once and the state is checkpointed (exit 130).
    """
    options = PsOptions(
        worker_num=worker_num,
        validate_set=validate_set,
        hp=_settings(preset, epochs, learning_rate, alpha, schedule),
        listen=listen,
        service_listen=service_listen,
        key_bits=key_bits,
        out_dir=out,
        min_workers=min_workers,
        round_deadline_s=round_deadline,
        join_deadline_s=join_deadline,
        checkpoint_every=checkpoint_every,
        resume=resume,
        admit=admit,
        fallback_dir=fallback_dir,
        cores=cores,
    )
    runtime = peer_runtime(role_measurement, "ps", policy, simulated_platform, tee, collateral)
    code = exit_code(run_parameter_server(options, runtime, on_line=print_line))
    if code:
        raise typer.Exit(code=code)


@homo_lr_app.command("worker")
def worker(
    train_set: Annotated[
        Path, typer.Option("--train-set", help="FATE CSV (id, y, features) of this worker.")
    ],
    worker_id: Annotated[int, typer.Option("--id", help="This worker's id in the federation.")],
    server: Annotated[str, typer.Option("--server", help="HOST:PORT of the PS's front door.")],
    epochs: EpochsOption = 100,
    alpha: AlphaOption = 0.01,
    learning_rate: LearningRateOption = 0.15,
    schedule: ScheduleOption = Schedule.SQRT_DECAY,
    preset: PresetOption = None,
    wait_for_server: Annotated[
        float,
        typer.Option(
            "--wait-for-server",
            help="Seconds to wait for the PS to accept connections, at the start and after "
            "losing it (a PS restarted with --resume); 0: give up at once.",
        ),
    ] = 0.0,
    seat_file: Annotated[
        Path | None,
        typer.Option(
            "--seat-file",
            help="Keep this worker's seat token here, sealed to its TEE, so that a restarted "
            "worker takes its seat back.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="This worker's name, claimed in its attested certificate (for a PS whose "
            "--admit list names workers).",
            show_default=False,
        ),
    ] = None,
    policy: PolicyOption = None,
    metrics: Annotated[
        Path | None,
        typer.Option(
            "--metrics", help="Append JSON-lines metrics to this file.", show_default=False
        ),
    ] = None,
    cores: CoresOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Run a worker: check the data, attest the PS, then train on the encrypted model."""
    options = WorkerOptions(
        train_set=train_set,
        worker_id=worker_id,
        server=server,
        hp=_settings(preset, epochs, learning_rate, alpha, schedule),
        metrics_path=metrics,
        wait_for_server_s=wait_for_server,
        seat_file=seat_file,
        name=name,
        cores=cores,
    )
    runtime = peer_runtime(role_measurement, "worker", policy, simulated_platform, tee, collateral)
    _run_worker_showing_progress(options, runtime)


def _run_worker_showing_progress(options: WorkerOptions, runtime: PartyRuntime) -> None:
    """Run a worker: its lines on standard output always, a progress bar on a terminal.

    The ``iter:`` lines are the workload's output and go to standard output whatever standard
    error is, so ``worker > log`` keeps every one of them. The bar goes to standard error, and
    only when that is a terminal; when standard output is the same terminal, lines print above
    the bar (through the bar's console, which keeps the two from overwriting each other).
    """
    if not _is_terminal(sys.stderr):
        run_worker(options, runtime, on_line=print_line)
        return
    same_terminal = _is_terminal(sys.stdout) and os.path.samestat(
        os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    )
    with Progress(
        TextColumn(f"worker {options.worker_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=same_terminal,  # else print() must reach the real standard output
    ) as bar:

        def show(line: str) -> None:
            if same_terminal:
                bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                print_line(line)

        task = bar.add_task("train", total=options.hp.iterations)
        run_worker(
            options,
            runtime,
            on_line=show,
            on_progress=lambda done, total: bar.update(task, completed=done),
        )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


@role("homo-lr", "ps")
def _ps_from_config(config: RoleConfig) -> None:
    options = ps_options(config)
    runtime = config.runtime(simulated_measurement=lambda: role_measurement("ps"))
    code = exit_code(run_parameter_server(options, runtime, on_line=print_line))
    if code:
        raise typer.Exit(code=code)


@role("homo-lr", "worker")
def _worker_from_config(config: RoleConfig) -> None:
    options = worker_options(config)
    runtime = config.runtime(simulated_measurement=lambda: role_measurement("worker"))
    _run_worker_showing_progress(options, runtime)


@homo_lr_app.command("prepare")
def prepare(
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Directory to create the files in.")
    ] = Path("homo-lr-run"),
    workers: Annotated[int, typer.Option("--workers", help="Training splits (1 or 2).")] = 2,
) -> None:
    """Make a simulated platform, policies, the breast splits and role configs; print commands.

    For running the PS and each worker by hand (one terminal each), from role configs as on real
    TEEs. The policies pin the simulated measurement of this checkout: prepare again after
    changing the code.
    """
    DemoOptions(workers=workers)  # the same checks as the demo
    paths = prepare_run_dir(run_dir, workers=workers)
    configs = write_role_configs(
        run_dir,
        paths,
        workers=workers,
        iterations=PRESETS["reference"].iterations,
        preset="reference",
    )
    typer.echo(f"prepared {run_dir}; run each party in its own terminal:\n")
    for config in configs.values():
        typer.echo(f"sealfl run --config {config}")
    typer.echo(
        "\nor with the development subcommands (flags instead of a role config):\n"
        f"sealfl homo-lr ps --worker-num {workers} --validate-set {paths['test']} "
        f"--preset reference --policy {paths['policy-ps']} --out {run_dir / 'ps'} "
        f"--simulated-platform {paths['platform']}"
    )


@demo_app.command("homo-lr")
def demo(
    workers: Annotated[int, typer.Option("--workers", help="Number of workers (1 or 2).")] = 2,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", help="Iterations (default: the preset's, 341).", show_default=False
        ),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="'accurate' (constant step 0.3, 0.965 on the test split) or 'reference' "
            "(0.15/sqrt(1+t), reproduces the reference run's 0.930).",
        ),
    ] = "accurate",
    key_bits: Annotated[int, typer.Option("--key-bits", help="Paillier modulus size.")] = 2048,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Where to put the platform, policies, splits, logs and the sealed model "
            "(default: a new directory under ./homo-lr-demo).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the PS and the workers as separate processes on loopback with the breast splits."""
    code = run_demo(
        DemoOptions(
            workers=workers,
            preset=preset,
            epochs=epochs,
            key_bits=key_bits,
            run_dir=run_dir,
        ),
        console=output_console(),
    )
    if code != 0:
        raise typer.Exit(code=code)


@bench_app.command("homo-lr")
def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Fewer iterations, a short phe sample, smaller scaling sweeps."
        ),
    ] = False,
) -> None:
    """Time the 341-iteration run and its round breakdown, phe, and the scaling curves."""
    load_benchmark("homo_lr").main(quick=quick)

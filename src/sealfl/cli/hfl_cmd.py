"""``sealfl hfl ps|worker|prepare|report``, ``sealfl demo hfl``, ``sealfl bench hfl``.

Horizontal federated deep learning: a parameter server and workers, each in a TEE, over mutual
RA-TLS. torch (the ``sealfl[hfl]`` extra) is imported only inside the commands, so ``sealfl
--help`` and every other command start without it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sealfl.cli.app import app, bench_app, demo_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console, print_line
from sealfl.cli.fl_options import BatchOption, ListenOption, RunDirOption, SeedOption, ThreadsOption
from sealfl.cli.run_cmd import role
from sealfl.cli.tee_options import (
    CollateralOption,
    PlatformOption,
    PolicyOption,
    TeeOption,
    peer_runtime,
)
from sealfl.errors import ConfigError
from sealfl.runtime import RoleConfig

if TYPE_CHECKING:
    from sealfl.fl.hfl.settings import Settings

hfl_app = typer.Typer(
    help="Horizontal federated deep learning: a PS and workers in TEEs over mutual RA-TLS.",
    no_args_is_help=True,
)
app.add_typer(hfl_app, name="hfl")


# ---- the settings every party declares --------------------------------------------------

PresetOption = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Base settings: 'demo' (digits, ResNet-20, FedAvg, 15 rounds), 'reference' "
        "(the reference system's ResNet-56 v2 at 24 px, PS applying gradients with Momentum) "
        "or 'accurate' (CIFAR-10 ResNet-20, He et al.'s recipe). Flags below override it.",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", help="resnet8/20/32/44/56, resnet56-v2 or small-cnn.", show_default=False
    ),
]
RoundsOption = Annotated[int | None, typer.Option("--rounds", show_default=False)]
LocalEpochsOption = Annotated[
    int | None, typer.Option("--local-epochs", help="Local epochs per round.", show_default=False)
]
LocalStepsOption = Annotated[
    int | None,
    typer.Option(
        "--local-steps", help="Local steps per round instead (0: epochs).", show_default=False
    ),
]
LrOption = Annotated[
    float | None, typer.Option("--learning-rate", help="Local SGD step.", show_default=False)
]
MomentumOption = Annotated[
    float | None, typer.Option("--momentum", help="Local SGD momentum.", show_default=False)
]
WdOption = Annotated[float | None, typer.Option("--weight-decay", show_default=False)]
MilestonesOption = Annotated[
    str | None,
    typer.Option(
        "--lr-milestones",
        help="Comma-separated rounds after which the learning rate is divided by 10.",
        show_default=False,
    ),
]
PipelineOption = Annotated[
    str | None,
    typer.Option("--pipeline", help="plain, cifar or reference.", show_default=False),
]
AggregationOption = Annotated[
    str | None,
    typer.Option(
        "--aggregation",
        help="fedavg (weighted by examples), fedavgm (server momentum) or reference.",
        show_default=False,
    ),
]
ServerLrOption = Annotated[float | None, typer.Option("--server-lr", show_default=False)]
ServerMomentumOption = Annotated[
    float | None, typer.Option("--server-momentum", show_default=False)
]


def _settings(preset: str, **given: Any) -> Settings:
    """Return the preset's settings with the flags that were given applied."""
    from sealfl.fl.hfl.settings import PRESETS

    if preset not in PRESETS:
        raise ConfigError(f"--preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    changes = {k: v for k, v in given.items() if v is not None}
    milestones = changes.pop("lr_milestones", None)
    if milestones is not None:
        try:
            changes["lr_milestones"] = tuple(
                int(p) for p in str(milestones).split(",") if p.strip()
            )
        except ValueError:
            raise ConfigError(
                f"--lr-milestones: expected comma-separated round numbers, got {milestones!r}"
            ) from None
    return PRESETS[preset].replace(**changes)


SecureOption = Annotated[
    bool,
    typer.Option(
        "--secure-aggregation",
        help="Masked updates (SecAgg+-style, on top of the TEE): the PS learns only the sum of "
        "the surviving workers' updates. The PS and every worker must say so.",
    ),
]


# ---- the parties ------------------------------------------------------------------------


@hfl_app.command("ps")
def ps(
    test_set: Annotated[
        Path, typer.Option("--test-set", help="The PS's held-out test set (a shard file).")
    ],
    worker_num: Annotated[int, typer.Option("--worker-num", help="Seats.")],
    min_workers: Annotated[
        int | None,
        typer.Option(
            "--min-workers",
            help="Quorum: a round closing at its deadline needs this many updates "
            "(default: --worker-num).",
            show_default=False,
        ),
    ] = None,
    listen: ListenOption = "127.0.0.1:50080",
    out: Annotated[
        Path,
        typer.Option("--out", help="Metrics, sealed checkpoint, sealed model and release."),
    ] = Path("hfl-out"),
    round_deadline: Annotated[
        float, typer.Option("--round-deadline", help="Seconds a round waits for updates.")
    ] = 60.0,
    join_deadline: Annotated[
        float, typer.Option("--join-deadline", help="Seconds to wait for every seat.")
    ] = 300.0,
    evaluate_every: Annotated[
        int, typer.Option("--evaluate-every", help="Evaluate every this many rounds.")
    ] = 1,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue from the sealed checkpoint in --out."),
    ] = False,
    threads: ThreadsOption = 1,
    release: Annotated[
        Path | None,
        typer.Option(
            "--release",
            help="Release policy (TOML): who can open the trained model; its digest is a "
            "claim of the PS's certificate.",
            show_default=False,
        ),
    ] = None,
    preset: PresetOption = "demo",
    model: ModelOption = None,
    rounds: RoundsOption = None,
    local_epochs: LocalEpochsOption = None,
    local_steps: LocalStepsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    momentum: MomentumOption = None,
    weight_decay: WdOption = None,
    lr_milestones: MilestonesOption = None,
    seed: SeedOption = None,
    pipeline: PipelineOption = None,
    aggregation: AggregationOption = None,
    server_lr: ServerLrOption = None,
    server_momentum: ServerMomentumOption = None,
    secure_aggregation: SecureOption = False,
    secagg_threshold: Annotated[
        int | None,
        typer.Option(
            "--secagg-threshold",
            help="Secure aggregation: fewest survivors a round completes with (more than half "
            "of the seats; default: a majority).",
            show_default=False,
        ),
    ] = None,
    secagg_clip: Annotated[
        float | None,
        typer.Option(
            "--secagg-clip",
            help="Secure aggregation: each worker's weighted update is clipped to +-this per "
            "value before quantisation (default 16).",
            show_default=False,
        ),
    ] = None,
    policy: PolicyOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Run the parameter server: rounds, evaluation, sealed checkpoints, sealed model, release.

    The training settings are the PS's: workers declaring others are refused at join.
    Ctrl-C or SIGTERM stops it (exit 130); --resume continues from the last checkpoint.
    """
    from sealfl.fl.hfl.launch import PsOptions, exit_code, role_measurement, run_ps
    from sealfl.fl.hfl.secure import SecAggOptions

    secure = None
    if secure_aggregation:
        clip = SecAggOptions.clip if secagg_clip is None else secagg_clip  # the class default
        secure = SecAggOptions(threshold=secagg_threshold, clip=clip)
    elif secagg_threshold is not None or secagg_clip is not None:
        given = "--secagg-threshold" if secagg_threshold is not None else "--secagg-clip"
        raise ConfigError(f"{given} needs --secure-aggregation")
    options = PsOptions(
        test_set=test_set,
        settings=_settings(
            preset,
            model=model,
            rounds=rounds,
            local_epochs=local_epochs,
            local_steps=local_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_milestones=lr_milestones,
            seed=seed,
            pipeline=pipeline,
            aggregation=aggregation,
            server_learning_rate=server_lr,
            server_momentum=server_momentum,
        ),
        worker_num=worker_num,
        min_workers=min_workers,
        listen=listen,
        out_dir=out,
        round_deadline_s=round_deadline,
        join_deadline_s=join_deadline,
        evaluate_every=evaluate_every,
        resume=resume,
        threads=threads,
        secure_aggregation=secure,
    )
    runtime = peer_runtime(
        role_measurement, "ps", policy, simulated_platform, tee, collateral, release
    )
    code = exit_code(*run_ps(options, runtime, on_line=print_line))
    if code:
        raise typer.Exit(code=code)


@hfl_app.command("worker")
def worker(
    shard: Annotated[Path, typer.Option("--shard", help="This worker's shard file.")],
    worker_id: Annotated[int, typer.Option("--id", help="This worker's seat number.")],
    server: Annotated[str, typer.Option("--server", help="HOST:PORT of the PS's front door.")],
    threads: ThreadsOption = 1,
    seat_file: Annotated[
        Path | None,
        typer.Option(
            "--seat-file",
            help="Keep the seat token here, sealed to this TEE, so a restart takes the seat back.",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option("--metrics", help="Append JSON-lines metrics here.", show_default=False),
    ] = None,
    wait_for_server: Annotated[
        float,
        typer.Option(
            "--wait-for-server",
            help="Seconds to wait for the PS, at the start and after losing it (a PS resumed "
            "with --resume); 0: give up at once.",
        ),
    ] = 0.0,
    expect_release: Annotated[
        str | None,
        typer.Option(
            "--expect-release",
            help="Contribute only if the PS's certificate claims this release-list digest (hex).",
            show_default=False,
        ),
    ] = None,
    preset: PresetOption = "demo",
    model: ModelOption = None,
    rounds: RoundsOption = None,
    local_epochs: LocalEpochsOption = None,
    local_steps: LocalStepsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    momentum: MomentumOption = None,
    weight_decay: WdOption = None,
    lr_milestones: MilestonesOption = None,
    seed: SeedOption = None,
    pipeline: PipelineOption = None,
    aggregation: AggregationOption = None,
    server_lr: ServerLrOption = None,
    server_momentum: ServerMomentumOption = None,
    secure_aggregation: SecureOption = False,
    policy: PolicyOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Run a worker: attest the PS, check its claims, join once, train every round."""
    from sealfl.fl.hfl.launch import WorkerOptions, role_measurement, run_worker

    options = WorkerOptions(
        shard=shard,
        worker_id=worker_id,
        server=server,
        settings=_settings(
            preset,
            model=model,
            rounds=rounds,
            local_epochs=local_epochs,
            local_steps=local_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_milestones=lr_milestones,
            seed=seed,
            pipeline=pipeline,
            aggregation=aggregation,
            server_learning_rate=server_lr,
            server_momentum=server_momentum,
        ),
        threads=threads,
        seat_file=seat_file,
        metrics_path=metrics,
        wait_for_server_s=wait_for_server,
        expect_release=expect_release,
        secure_aggregation=secure_aggregation,
    )
    runtime = peer_runtime(role_measurement, "worker", policy, simulated_platform, tee, collateral)
    run_worker(options, runtime, on_line=print_line)


@role("hfl", "ps")
def _ps_from_config(config: RoleConfig) -> None:
    from sealfl.fl.hfl.launch import exit_code, role_measurement, run_ps
    from sealfl.fl.hfl.roles import ps_options

    options = ps_options(config)
    runtime = config.runtime(simulated_measurement=lambda: role_measurement("ps"))
    code = exit_code(*run_ps(options, runtime, on_line=print_line))
    if code:
        raise typer.Exit(code=code)


@role("hfl", "worker")
def _worker_from_config(config: RoleConfig) -> None:
    from sealfl.fl.hfl.launch import role_measurement, run_worker
    from sealfl.fl.hfl.roles import worker_options

    options = worker_options(config)
    runtime = config.runtime(simulated_measurement=lambda: role_measurement("worker"))
    run_worker(options, runtime, on_line=print_line)


# ---- preparing, reporting, the demo ------------------------------------------------------

WorkersOption = Annotated[int, typer.Option("--workers", help="Number of workers.")]
PartitionOption = Annotated[
    str,
    typer.Option("--partition", help="iid, or dirichlet (label skew, see --alpha)."),
]
AlphaOption = Annotated[
    float, typer.Option("--alpha", help="Dirichlet concentration (smaller: more skewed).")
]


@hfl_app.command("prepare")
def prepare(
    run_dir: RunDirOption = Path("hfl-run"),
    workers: WorkersOption = 2,
    dataset: Annotated[
        str, typer.Option("--dataset", help="digits (bundled) or cifar10 (--data-dir).")
    ] = "digits",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="cifar-10-batches-bin (binary CIFAR-10).", show_default=False
        ),
    ] = None,
    partition: PartitionOption = "iid",
    alpha: AlphaOption = 0.3,
    partition_seed: Annotated[int, typer.Option("--partition-seed")] = 0,
    round_deadline: Annotated[float, typer.Option("--round-deadline")] = 60.0,
    evaluate_every: Annotated[
        int | None,
        typer.Option(
            "--evaluate-every",
            help="The PS evaluates every this many rounds (default: 1; 390 with the reference "
            "preset, whose rounds are single steps).",
            show_default=False,
        ),
    ] = None,
    preset: PresetOption = "demo",
    model: ModelOption = None,
    rounds: RoundsOption = None,
    local_epochs: LocalEpochsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    seed: SeedOption = None,
) -> None:
    """Make a simulated platform, policies, release list, data shards and role configs.

    For running the PS and each worker by hand (one terminal each) from role configs, as on
    real TEEs. The policies pin the simulated measurement of this checkout: prepare again after
    changing the code.
    """
    from sealfl.fl.hfl.demo import (
        check_split,
        digits_channels,
        prepare_run_dir,
        write_data,
        write_role_configs,
    )

    settings = _settings(
        preset,
        model=model,
        rounds=rounds,
        local_epochs=local_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    check_split(workers=workers, dataset=dataset, partition=partition, alpha=alpha)
    if dataset == "cifar10" and data_dir is None:
        raise ConfigError("--data-dir: CIFAR-10 is read from cifar-10-batches-bin; give it")
    if not (math.isfinite(round_deadline) and round_deadline > 0):
        raise ConfigError(f"--round-deadline must be positive, got {round_deadline}")
    if evaluate_every is not None and evaluate_every < 1:
        raise ConfigError(f"--evaluate-every must be at least 1, got {evaluate_every}")
    paths = prepare_run_dir(run_dir)
    paths |= write_data(
        run_dir,
        workers=workers,
        dataset=dataset,
        data_dir=data_dir,
        partition=partition,
        alpha=alpha,
        seed=partition_seed,
        channels=digits_channels(settings.model),
    )
    configs = write_role_configs(
        run_dir,
        paths,
        workers=workers,
        settings=settings,
        ps_options={
            "round_deadline": round_deadline,
            "evaluate_every": evaluate_every or (390 if preset == "reference" else 1),
        },
        worker_options={"wait_for_server": 60.0},
    )
    typer.echo(f"prepared {run_dir}; run each party in its own terminal:\n")
    typer.echo(f"SEALFL_LISTEN=127.0.0.1:50080 sealfl run --config {configs['ps']}")
    for name, config in configs.items():
        if name != "ps":
            typer.echo(f"SEALFL_PEERS=ps=127.0.0.1:50080 sealfl run --config {config}")
    typer.echo(
        f"\nthen: sealfl hfl report {run_dir}   (curves)\n"
        f"      sealfl model open {run_dir / 'ps' / 'hfl_model.release'} "
        f"--key {paths['owner-key']} --out model.pb"
    )


@hfl_app.command("report")
def report(
    run: Annotated[Path, typer.Argument(help="Run directory, PS --out directory or metrics file.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="PNG to write (default: hfl_report.png beside the metrics)."),
    ] = None,
) -> None:
    """Draw the run's test accuracy and loss curves (PNG) and print the last round."""
    from sealfl.fl.hfl.report import REPORT_FILE, draw_report, find_metrics, read_curves

    metrics = find_metrics(run)
    curves = read_curves(metrics)
    target = out or metrics.parent / REPORT_FILE
    draw_report(curves, target, title=str(run))
    typer.echo(
        f"{len(curves.eval_rounds)} evaluated rounds; last: round {curves.eval_rounds[-1]} "
        f"accuracy {curves.accuracy[-1]:.4f} loss {curves.test_loss[-1]:.4f}; best accuracy "
        f"{max(curves.accuracy):.4f}\ncurves: {target}"
    )


@demo_app.command("hfl")
def demo(
    workers: WorkersOption = 2,
    partition: PartitionOption = "iid",
    alpha: AlphaOption = 0.3,
    model: ModelOption = None,
    rounds: RoundsOption = None,
    local_epochs: LocalEpochsOption = None,
    seed: SeedOption = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Where to put everything (default: a new directory under ./hfl-demo).",
            show_default=False,
        ),
    ] = None,
    secure_aggregation: SecureOption = False,
) -> None:
    """Train on digits with a PS and workers as separate processes (simulated TEE, loopback)."""
    from sealfl.fl.hfl.demo import DemoOptions, run_demo

    settings = _settings("demo", model=model, rounds=rounds, local_epochs=local_epochs, seed=seed)
    code = run_demo(
        DemoOptions(
            workers=workers,
            settings=settings,
            partition=partition,
            alpha=alpha,
            run_dir=run_dir,
            secure_aggregation=secure_aggregation,
        ),
        console=output_console(),
    )
    if code:
        raise typer.Exit(code=code)


@bench_app.command("hfl")
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="ResNet-20 only, fewer rounds.")] = False,
    flower_python: Annotated[
        Path | None,
        typer.Option(
            "--flower-python",
            help="Also run Flower 1.42's deployment engine (the peer) on the same model, data "
            "and rounds with this Python interpreter, which must have flwr 1.42 and torch.",
        ),
    ] = None,
    secure_aggregation: Annotated[
        bool,
        typer.Option(
            "--secure-aggregation",
            help="Also run each federation with secure aggregation and compare (with "
            "--flower-python: against Flower's SecAgg+ too).",
        ),
    ] = False,
) -> None:
    """Round overhead, bytes per round, join and checkpoint cost for ResNet-20 and ResNet-56."""
    if flower_python is not None and not flower_python.is_file():
        raise ConfigError(f"--flower-python {flower_python}: no such interpreter file")
    load_benchmark("hfl").main(
        quick=quick, flower_python=flower_python, secure_aggregation=secure_aggregation
    )

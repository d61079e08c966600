"""``sealfl sim hfl``, ``sealfl sim homo-lr`` and ``sealfl bench sim``: many simulated clients.

The workloads' own training and aggregation code with every client on this machine behind an
in-memory link (:mod:`sealfl.sim`): no TEE and no attestation, which every run says first.
torch is imported only inside ``sim hfl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sealfl.cli.app import app, bench_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console
from sealfl.cli.fl_options import BatchOption, SeedOption
from sealfl.cli.hfl_cmd import (
    AlphaOption,
    LocalEpochsOption,
    LocalStepsOption,
    LrOption,
    MomentumOption,
    PartitionOption,
    PresetOption,
    RoundsOption,
    WdOption,
    _settings,
)
from sealfl.cli.homo_lr_cmd import AlphaOption as L2Option
from sealfl.cli.homo_lr_cmd import EpochsOption, LearningRateOption, ScheduleOption
from sealfl.cli.homo_lr_cmd import PresetOption as HomoLrPresetOption
from sealfl.cli.homo_lr_cmd import _settings as homo_lr_settings
from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import Schedule

if TYPE_CHECKING:
    from sealfl.sim import Backend, SimResult

Simulate = Callable[["Backend", Callable[[str], None]], "SimResult"]

sim_app = typer.Typer(
    help="Simulate many clients on this machine with the workloads' own code (no TEE, no "
    "attestation: for algorithm studies).",
    no_args_is_help=True,
)
app.add_typer(sim_app, name="sim")

ClientsOption = Annotated[int, typer.Option("--clients", help="Simulated clients N.")]
PerRoundOption = Annotated[
    int | None,
    typer.Option(
        "--per-round",
        help="Clients sampled per round, K of N (default: min(N, 10)).",
        show_default=False,
    ),
]
DropoutOption = Annotated[
    float, typer.Option("--dropout", help="Probability that a sampled client never answers.")
]
MinClientsOption = Annotated[
    int, typer.Option("--min-clients", help="Fewer updates in a round stop training.")
]
BackendOption = Annotated[
    str,
    typer.Option("--backend", help="local (sealfl's process pool) or ray (the sealfl[ray] extra)."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Worker processes or Ray actors (default: one per core).",
        show_default=False,
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="A running Ray cluster (HOST:PORT or auto); with --backend ray.",
        show_default=False,
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Directory for ps_metrics.jsonl, the final model and the plot (default: "
        "./sim-<workload>/<time>).",
        show_default=False,
    ),
]
EvaluateEveryOption = Annotated[
    int, typer.Option("--evaluate-every", help="Evaluate every this many rounds (and the last).")
]


def _out_dir(out: Path | None, workload: str) -> Path:
    if out is not None:
        return out
    return Path(f"sim-{workload}") / time.strftime("%Y%m%d-%H%M%S")


def _per_round(per_round: int | None, clients: int) -> int:
    """``--per-round``, by default min(N, 10)."""
    return min(clients, 10) if per_round is None else per_round


@sim_app.command("hfl")
def sim_hfl(
    clients: ClientsOption = 100,
    per_round: PerRoundOption = None,
    dropout: DropoutOption = 0.0,
    min_clients: MinClientsOption = 1,
    preset: PresetOption = "demo",
    model: Annotated[
        str,
        typer.Option("--model", help="resnet8/20/32/44/56, resnet56-v2 or small-cnn."),
    ] = "small-cnn",
    rounds: RoundsOption = 20,
    local_epochs: LocalEpochsOption = None,
    local_steps: LocalStepsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    momentum: MomentumOption = None,
    weight_decay: WdOption = None,
    seed: SeedOption = None,
    dataset: Annotated[
        str, typer.Option("--dataset", help="digits (bundled) or cifar10 (--data-dir).")
    ] = "digits",
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="CIFAR-10's cifar-10-batches-bin.", show_default=False),
    ] = None,
    partition: PartitionOption = "iid",
    alpha: AlphaOption = 0.3,
    partition_seed: Annotated[int, typer.Option("--partition-seed")] = 0,
    evaluate_every: EvaluateEveryOption = 1,
    backend: BackendOption = "local",
    workers: WorkersOption = None,
    address: AddressOption = None,
    out: OutOption = None,
) -> None:
    """Train hfl with N simulated clients, K sampled per round (digits, the small CNN)."""
    from sealfl.sim.hfl import HflPopulation, HflSimOptions, run_hfl_sim

    settings = _settings(
        preset,
        model=model,
        rounds=rounds,
        local_epochs=local_epochs,
        local_steps=local_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        weight_decay=weight_decay,
        seed=seed,
    )
    options = HflSimOptions(
        population=HflPopulation(
            settings=settings,
            clients=clients,
            dataset=dataset,
            data_dir=None if data_dir is None else str(data_dir),
            partition=partition,
            alpha=alpha,
            partition_seed=partition_seed,
        ),
        per_round=_per_round(per_round, clients),
        dropout=dropout,
        min_clients=min_clients,
        evaluate_every=evaluate_every,
        out=_out_dir(out, "hfl"),
    )
    _run(
        lambda b, line: run_hfl_sim(options, b, on_line=line),
        backend,
        workers,
        address,
        options.out,
    )


@sim_app.command("homo-lr")
def sim_homo_lr(
    clients: Annotated[
        int | None,
        typer.Option(
            "--clients",
            help="Simulated clients N: the training sets' rows split among them (default: one "
            "client per --train-set).",
            show_default=False,
        ),
    ] = None,
    per_round: PerRoundOption = None,
    dropout: DropoutOption = 0.0,
    min_clients: MinClientsOption = 1,
    train_set: Annotated[
        list[str] | None,
        typer.Option(
            "--train-set",
            help="FATE CSV (id, y, features), repeatable (default: the bundled breast-cancer "
            "guest and host splits).",
            show_default=False,
        ),
    ] = None,
    validate_set: Annotated[
        str, typer.Option("--validate-set", help="FATE CSV the server evaluates on.")
    ] = "breast:homo_test",
    epochs: EpochsOption = 30,
    alpha: L2Option = 0.01,
    learning_rate: LearningRateOption = 0.15,
    schedule: ScheduleOption = Schedule.SQRT_DECAY,
    preset: HomoLrPresetOption = None,
    partition: PartitionOption = "iid",
    dirichlet_alpha: Annotated[
        float, typer.Option("--dirichlet-alpha", help="Dirichlet concentration of the split.")
    ] = 0.3,
    partition_seed: Annotated[int, typer.Option("--partition-seed")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling and dropouts.")] = 0,
    key_bits: Annotated[int, typer.Option("--key-bits", help="Paillier modulus size.")] = 2048,
    evaluate_every: Annotated[
        int, typer.Option("--evaluate-every", help="Print the iter: line every this many.")
    ] = 10,
    backend: BackendOption = "local",
    workers: WorkersOption = None,
    address: AddressOption = None,
    out: OutOption = None,
) -> None:
    """Train homo-lr on a Paillier-encrypted model with N simulated clients, K per iteration."""
    from sealfl.sim.homo_lr import BREAST_TRAIN, HomoLrPopulation, HomoLrSimOptions, run_homo_lr_sim

    population = HomoLrPopulation(
        hp=homo_lr_settings(preset, epochs, learning_rate, alpha, schedule),
        train_sets=tuple(train_set) if train_set else BREAST_TRAIN,
        clients=clients,
        partition=partition,
        alpha=dirichlet_alpha,
        partition_seed=partition_seed,
    )
    options = HomoLrSimOptions(
        population=population,
        per_round=_per_round(per_round, population.size),
        dropout=dropout,
        min_clients=min_clients,
        seed=seed,
        key_bits=key_bits,
        validate_set=validate_set,
        evaluate_every=evaluate_every,
        out=_out_dir(out, "homo-lr"),
    )
    _run(
        lambda b, line: run_homo_lr_sim(options, b, on_line=line),
        backend,
        workers,
        address,
        options.out,
    )


def _run(
    simulate: Simulate,
    backend_name: str,
    workers: int | None,
    address: str | None,
    out: Path | None,
) -> None:
    from sealfl.sim import make_backend

    console = output_console()

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    backend = make_backend(backend_name, workers=workers, address=address)
    try:
        result = simulate(backend, line)
    finally:
        backend.close()
    median = result.summary()["median_round_s"]  # None if training stopped in round 1
    median_s = "n/a" if median is None else f"{median:.3f} s"
    accuracy = "n/a" if result.accuracy is None else f"{result.accuracy:.4f}"
    unit = "rounds" if result.workload == "hfl" else "iterations"
    plotted = result.workload == "hfl" and result.accuracy is not None  # an evaluation ran
    outputs = "metrics, model and plot" if plotted else "metrics and model"
    line(
        f"done: {result.rounds_done} {unit} in {result.seconds:.1f} s (median round "
        f"{median_s}), test accuracy {accuracy}, peak memory {result.peak_memory_mib:.0f} MiB "
        f"(all processes); {outputs} in {out}"
    )
    if not result.completed:
        raise typer.Exit(code=1)


@bench_app.command("sim")
def bench_sim(
    clients: Annotated[
        str, typer.Option("--clients", help="Comma-separated client counts.")
    ] = "10,100,1000",
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds per run.")] = 20,
    per_round: Annotated[
        int, typer.Option("--per-round", help="Most clients sampled per round.")
    ] = 100,
    flower_python: Annotated[
        Path | None,
        typer.Option(
            "--flower-python",
            help="Also run Flower 1.42's simulation engine (Ray) on the same model, split and "
            "schedule with this interpreter (it needs flwr[simulation] 1.42 and torch).",
        ),
    ] = None,
    ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Also run sealfl's ray backend (if installed).")
    ] = False,
) -> None:
    """Seconds per round and peak memory of simulations at several client counts."""
    try:
        counts = [int(c) for c in clients.split(",") if c.strip()]
    except ValueError:
        counts = []
    if not counts:
        raise ConfigError(f"--clients: expected comma-separated counts, got {clients!r}")
    from sealfl.sim.plan import MAX_CLIENTS, check_count

    for count in counts:
        check_count(count, "--clients", high=MAX_CLIENTS)
    check_count(rounds, "--rounds", high=10_000)
    check_count(per_round, "--per-round", high=MAX_CLIENTS)
    if flower_python is not None and not flower_python.is_file():
        raise ConfigError(f"--flower-python {flower_python}: no such interpreter file")
    load_benchmark("sim").main(
        counts=counts, rounds=rounds, per_round=per_round, flower_python=flower_python, ray=ray
    )

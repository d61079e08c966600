"""hfl with many simulated clients: the real workers' training and the real PS's aggregation.

What runs is hfl's own code, not a copy: each sampled client's round is
:meth:`sealfl.fl.hfl.training.LocalTrainer.train` (the function a real worker calls between
receiving the global model and streaming its update), every update is screened by
:func:`sealfl.fl.hfl.aggregation.screen_upload` and the round is closed by
:meth:`sealfl.fl.hfl.aggregation.ServerOptimizer.step` in the order of client ids, as the real
PS does; the model is evaluated with :func:`sealfl.fl.hfl.training.evaluate`. Client ``k``
holds shard ``k - 1`` of the same split :func:`sealfl.fl.hfl.demo.write_data` writes, so a
simulation of 2 clients ends with exactly the model of a real 2-worker federation of the same
settings and seeds (a test holds it to that).

What is left out is everything a simulation cannot honestly claim: there is no TEE, no
attestation, no RA-TLS and nothing is sealed; the global model and the updates cross between
processes of this machine by value (the in-memory link: a function call, the arguments pickled
over the pool's socket pair). The first lines of a run and its first metrics record say so.

Cost model: a worker process builds the network, the data set and the split once
(:mod:`.cache`) and then serves any client by swapping the shard and the id of its one
:class:`~sealfl.fl.hfl.training.LocalTrainer` (whose round is a function of the global model,
the shard and ``(seed, id, version)`` only; its optimiser state is cleared every round). A
round sends the global model once per job (a few jobs per worker), not once per client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sealfl.data import ImageSet, Partition, load_cifar10, load_digits_split
from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.hfl.aggregation import ServerOptimizer, Upload, screen_upload
from sealfl.fl.hfl.demo import DATASETS, digits_channels
from sealfl.fl.hfl.launch import PS_METRICS_FILE
from sealfl.fl.hfl.server import RoundEval, record_evaluation
from sealfl.fl.hfl.settings import Settings
from sealfl.fl.hfl.training import (
    LocalTrainer,
    evaluate,
    initial_model,
    parameter_masks,
    use_threads,
)
from sealfl.models.nn import flatten, load_flat
from sealfl.sim.backends import Backend, map_clients
from sealfl.sim.cache import ProcessStats, cached, process_stats
from sealfl.sim.plan import (
    check_count,
    check_population,
    check_split,
    clients_with_data,
    plan_round,
    split_clients,
)
from sealfl.sim.report import PeakMemory, SimResult, finish_run, start_run

__all__ = [
    "MODEL_FILE",
    "ClientUpdate",
    "HflPopulation",
    "HflSimOptions",
    "load_population",
    "run_hfl_sim",
    "train_clients",
]

F32 = npt.NDArray[np.float32]
MODEL_FILE = "sim_model.npy"
"""The final global model, a flat little-endian float32 ``.npy`` (no pickle), in ``out``."""


@dataclass(frozen=True, kw_only=True)
class HflPopulation:
    """The clients of a simulation: data set, split and settings (what every process rebuilds).

    Small, frozen and hashable: it is what a job carries instead of data, and the key under
    which a worker process keeps the network and the split it built.

    Parameters
    ----------
    settings
        The federation's settings (the model, the local training, the seed).
    clients
        Number of clients N.
    dataset
        ``digits`` (bundled) or ``cifar10`` (from ``data_dir``).
    data_dir
        CIFAR-10's binary distribution directory.
    partition, alpha, partition_seed
        The split: ``iid`` or ``dirichlet`` (label skew with concentration ``alpha``), drawn
        with ``partition_seed``, as ``sealfl hfl prepare`` draws it.
    """

    settings: Settings
    clients: int
    dataset: str = "digits"
    data_dir: str | None = None
    partition: str = "iid"
    alpha: float = 0.3
    partition_seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"--dataset: expected one of {list(DATASETS)}, got {self.dataset!r}")
        check_split(
            partition=self.partition,
            alpha=self.alpha,
            alpha_option="--alpha",
            clients=self.clients,
            seed=self.partition_seed,
        )
        if self.dataset == "cifar10" and self.data_dir is None:
            raise ConfigError("--data-dir: CIFAR-10 is read from cifar-10-batches-bin; give it")
        if self.dataset == "digits" and self.data_dir is not None:
            raise ConfigError("--data-dir is for --dataset cifar10; digits are bundled")


@dataclass(frozen=True)
class LoadedPopulation:
    """A population's data: the training set, its split into client shards, the test set."""

    train: ImageSet
    test: ImageSet
    split: Partition

    def shard(self, client: int) -> ImageSet:
        """Return client ``client``'s shard (clients are numbered from 1)."""
        return self.train.subset(self.split.indices[client - 1])

    def eligible(self) -> list[int]:
        """Clients whose shard holds at least one example, ascending."""
        return clients_with_data(ix.size for ix in self.split.indices)


def load_population(population: HflPopulation) -> LoadedPopulation:
    """Load the data set and split it among the clients, as ``sealfl hfl prepare`` does.

    The split is :func:`.plan.split_clients`: a real federation's, except that a Dirichlet split
    of many clients may leave some without data (never sampled).

    Raises
    ------
    ConfigError
        If the data set cannot be read or split this way.
    """
    if population.dataset == "digits":
        channels = digits_channels(population.settings.model)
        train, test = load_digits_split(channels=channels)
    else:
        assert population.data_dir is not None  # checked by HflPopulation
        train = load_cifar10(population.data_dir, "train")
        test = load_cifar10(population.data_dir, "test")
    split = split_clients(
        train.labels,
        population.clients,
        partition=population.partition,
        alpha=population.alpha,
        seed=population.partition_seed,
    )
    return LoadedPopulation(train, test, split)


@dataclass(frozen=True)
class ClientUpdate:
    """One simulated client's round: what a real worker would stream to the PS."""

    client: int
    values: F32
    loss: float
    seconds: float
    examples: int


class _ClientRuntime:
    """A worker process's network and population; serves any client (see the module doc)."""

    def __init__(self, population: HflPopulation) -> None:
        use_threads(1)  # one intra-op thread per process, as real workers sharing cores
        self.data = load_population(population)
        first = self.data.eligible()[0]
        self.trainer = LocalTrainer(population.settings, self.data.shard(first), worker_id=first)

    def train(self, client: int, version: int, global_values: F32) -> ClientUpdate:
        trainer = self.trainer
        trainer.data = self.data.shard(client)
        trainer.worker_id = client
        result = trainer.train(version, global_values)
        return ClientUpdate(client, result.values, result.loss, result.seconds, result.examples)


def train_clients(
    population: HflPopulation, version: int, global_values: F32, clients: tuple[int, ...]
) -> tuple[list[ClientUpdate], ProcessStats]:
    """Run the round on model ``version`` for each of ``clients`` (a job of a backend)."""
    runtime = cached("hfl", population, lambda: _ClientRuntime(population))
    updates = [runtime.train(c, version, global_values) for c in clients]
    return updates, process_stats()


@dataclass(frozen=True, kw_only=True)
class HflSimOptions:
    """A simulation run.

    Parameters
    ----------
    population
        The clients and the settings.
    per_round
        Clients sampled per round (K of N).
    dropout
        Probability that a sampled client never answers (injected).
    min_clients
        A round that ends with fewer updates stops training, as ``--min-workers`` does a PS.
    evaluate_every
        Evaluate the global model every this many rounds (and after the last).
    out
        Directory for the metrics, the final model and the plot (``None``: write nothing).
    """

    population: HflPopulation
    per_round: int
    dropout: float = 0.0
    min_clients: int = 1
    evaluate_every: int = 1
    out: Path | None = None

    def __post_init__(self) -> None:
        check_population(
            clients=self.population.clients,
            per_round=self.per_round,
            dropout=self.dropout,
            min_clients=self.min_clients,
        )
        check_count(self.evaluate_every, "--evaluate-every")


def run_hfl_sim(
    options: HflSimOptions, backend: Backend, *, on_line: Callable[[str], None] = print
) -> SimResult:
    """Train ``settings.rounds`` rounds of K sampled clients; return the model and the figures.

    Raises
    ------
    ConfigError
        If the population cannot be built, or fewer clients have data than are sampled.
    """
    started = time.monotonic()
    population = options.population
    settings = population.settings
    data = load_population(population)
    eligible = data.eligible()
    model = initial_model(settings, data.test.schema)
    values, manifest = flatten(model)
    optimizer = ServerOptimizer(settings, *parameter_masks(model, manifest))
    metrics = MetricsLog(options.out / PS_METRICS_FILE if options.out else None, party="ps")
    peak = PeakMemory()
    empty = population.clients - len(eligible)
    start_run(
        metrics,
        backend,
        headline=(
            f"hfl simulation: {population.clients} clients ({population.dataset}, "
            f"{population.partition} split{f', {empty} without data' if empty else ''}), "
            f"{options.per_round} sampled per round, dropout {options.dropout:g}, "
            f"{settings.rounds} rounds, {settings.model}"
        ),
        on_line=on_line,
        workload="hfl",
        clients=population.clients,
        without_data=empty,
        per_round=options.per_round,
        dropout=options.dropout,
        dataset=population.dataset,
        partition=data.split.describe() | {"sizes": None},
        settings=settings.as_dict(),
    )
    evaluation = None
    rounds_done = 0
    round_walls: list[float] = []
    stop_reason = ""
    for version in range(settings.rounds):
        plan = plan_round(
            version + 1,
            eligible=eligible,
            per_round=options.per_round,
            dropout=options.dropout,
            seed=settings.seed,
        )
        round_started = time.monotonic()
        metrics.write("round_open", **plan.as_dict(), version=version)
        updates: list[ClientUpdate] = map_clients(
            backend, train_clients, (population, version, values), plan.training, peak.add
        )
        accepted: list[ClientUpdate] = []
        for update in updates:
            try:
                screen_upload(update.values, values, settings)
            except ProtocolError as exc:
                metrics.write(
                    "refused",
                    what="update",
                    worker=update.client,
                    version=version,
                    reason=str(exc),
                )
                on_line(f"server: refused the update of client {update.client}: {exc}")
                continue
            accepted.append(update)
        if plan.dropped:
            metrics.write(
                "dropped", round=version + 1, workers=list(plan.dropped), reason="injected dropout"
            )
        if len(accepted) < options.min_clients:
            stop_reason = (
                f"round {version + 1} closed with {len(accepted)} update(s), fewer than the "
                f"{options.min_clients} needed (--min-clients); dropped: {list(plan.dropped)}"
            )
            metrics.write("stopped", reason=stop_reason, version=version)
            on_line(f"server: training stopped: {stop_reason}")
            break
        uploads = [Upload(u.client, u.examples, u.values) for u in accepted]
        values = optimizer.step(version, values, uploads)
        rounds_done = version + 1
        wall = time.monotonic() - round_started
        round_walls.append(wall)
        weight = sum(u.examples for u in accepted)
        train_loss = sum(u.loss * u.examples for u in accepted) / weight
        slowest = max(u.seconds for u in accepted)
        metrics.write(
            "round",
            round=rounds_done,
            contributors=[u.client for u in accepted],
            missing=sorted(set(plan.sampled) - {u.client for u in accepted}),
            wall_s=wall,
            slowest_train_s=slowest,
            train_s_sum=sum(u.seconds for u in accepted),
            overhead_s=max(0.0, wall - slowest),
            train_loss=train_loss,
            bytes_in=sum(u.values.nbytes for u in accepted),
            examples=weight,
        )
        line = (
            f"round {rounds_done}/{settings.rounds}: {len(accepted)} of {len(plan.sampled)} "
            f"sampled client(s) answered, train loss {train_loss:.4f}, round {wall:.2f} s"
        )
        if rounds_done % options.evaluate_every == 0 or rounds_done == settings.rounds:
            load_flat(model, values, manifest)
            scored = evaluate(model, data.test, settings)
            evaluation = RoundEval(rounds_done, scored.loss, scored.accuracy, scored.per_class)
            line += record_evaluation(metrics, rounds_done, evaluation)
        on_line(line)
    result = finish_run(
        metrics,
        peak,
        workload="hfl",
        completed=rounds_done == settings.rounds,
        rounds_done=rounds_done,
        model=values,
        evaluation=evaluation,
        seconds=time.monotonic() - started,
        round_seconds=tuple(round_walls),
        stop_reason=stop_reason,
    )
    if options.out is not None:
        _write_outputs(options.out, values, plot=evaluation is not None)
    return result


def _write_outputs(out: Path, values: F32, *, plot: bool) -> None:
    """Write the final model, and the accuracy/loss plot of ``sealfl hfl report`` if ``plot``.

    A run stopped before its first evaluation has no curve to draw (``read_curves`` refuses it).
    """
    np.save(out / MODEL_FILE, values.astype("<f4"), allow_pickle=False)
    if plot:
        from sealfl.fl.hfl.report import REPORT_FILE, draw_report, read_curves

        curves = read_curves(out / PS_METRICS_FILE)
        draw_report(curves, out / REPORT_FILE, title=f"{out} (simulation)")

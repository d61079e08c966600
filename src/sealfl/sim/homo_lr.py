"""homo-lr with many simulated clients: the real encrypted step and the real PS's checks.

What runs is homo-lr's own code, not a copy. Each sampled client takes the real worker's step
(:func:`sealfl.fl.homo_lr.algorithm.affine_from_gram` on its statistics from
:func:`~sealfl.fl.homo_lr.algorithm.gram_statistics`, then
:meth:`sealfl.fl.homo_lr.encrypted.PaillierWorkerCrypto.step` on the encrypted model: it never
sees a plaintext weight). The server side is the real PS's: it encrypts the model afresh
(:meth:`~sealfl.fl.homo_lr.encrypted.PaillierServerCrypto.encrypt`), checks each submission's
form and decrypts it for the value check
(:meth:`~sealfl.fl.homo_lr.encrypted.PaillierServerCrypto.parse_submission`,
:meth:`~sealfl.fl.homo_lr.encrypted.PaillierServerCrypto.decrypt_submission`, the PS's
:class:`~sealfl.fl.homo_lr.screening.MagnitudeBound`), averages the usable updates in the order
of client ids (:func:`~sealfl.fl.homo_lr.algorithm.average`) and evaluates the model
(:func:`~sealfl.fl.homo_lr.evaluation.evaluate`). Real Paillier keys and ciphertexts: the
ciphertexts are randomised, the decrypted model is exact, so two simulated clients holding the
breast guest and host splits end with exactly the weights of a real two-worker federation.

Not protected: the key pair lives in this process, not in an attested enclave, and the
clients' ciphertexts reach it through the in-memory link. A worker process (or Ray actor)
parses the public key once (:mod:`.cache`) and computes each client's ``XᵀX`` once.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sealfl import he
from sealfl.data import Dataset, breast
from sealfl.errors import ConfigError, HEError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import (
    FloatArray,
    Hyperparameters,
    affine_from_gram,
    average,
    gram_statistics,
    initial_weights,
    with_bias,
)
from sealfl.fl.homo_lr.datacheck import check_training_data
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.evaluation import evaluate, format_iteration
from sealfl.fl.homo_lr.launch import PS_METRICS_FILE, read_binary_csv
from sealfl.fl.homo_lr.screening import MagnitudeBound
from sealfl.fl.homo_lr.server import WEIGHT_BOUND_BITS
from sealfl.he._parallel import available_cores, run_in_threads, split_evenly
from sealfl.sim.backends import Backend, map_clients
from sealfl.sim.cache import ProcessStats, cached, process_stats
from sealfl.sim.plan import (
    MAX_SEED,
    check_count,
    check_population,
    check_split,
    clients_with_data,
    plan_round,
    split_clients,
)
from sealfl.sim.report import PeakMemory, SimResult, finish_run, start_run

__all__ = [
    "BREAST_TRAIN",
    "MODEL_FILE",
    "HomoLrPopulation",
    "HomoLrSimOptions",
    "run_homo_lr_sim",
    "step_clients",
]

BREAST_PREFIX = "breast:"
BREAST_TRAIN = ("breast:homo_guest", "breast:homo_host")
"""The default training sets: the bundled breast-cancer splits of the two-worker demo."""
BREAST_TEST = "breast:homo_test"
MODEL_FILE = "sim_model.npy"


def _load(source: str) -> Dataset:
    """Read a FATE CSV with 0/1 labels, or a bundled split named ``breast:<split>``."""
    if source.startswith(BREAST_PREFIX):
        return breast.load_split(source.removeprefix(BREAST_PREFIX))
    return read_binary_csv(Path(source))


@dataclass(frozen=True, kw_only=True)
class HomoLrPopulation:
    """The clients of a homo-lr simulation (small, frozen: what a job carries).

    Parameters
    ----------
    hp
        The federation's hyperparameters.
    train_sets
        Training data: FATE CSV paths or ``breast:<split>`` names.
    clients
        ``None``: one client per training set, in order (as workers 1, 2 ... of a real run).
        Otherwise the training sets' rows together, split into this many clients.
    partition, alpha, partition_seed
        How rows are split when ``clients`` is given: ``iid`` or ``dirichlet`` on the label.
    """

    hp: Hyperparameters
    train_sets: tuple[str, ...] = BREAST_TRAIN
    clients: int | None = None
    partition: str = "iid"
    alpha: float = 0.3
    partition_seed: int = 0

    def __post_init__(self) -> None:
        if not self.train_sets:
            raise ConfigError("--train-set: at least one training set is needed")
        check_split(
            partition=self.partition,
            alpha=self.alpha,
            alpha_option="--dirichlet-alpha",  # --alpha is the L2 term here
            clients=self.clients,
            seed=self.partition_seed,
        )
        check_count(self.hp.iterations, "--epochs")

    @property
    def size(self) -> int:
        """Number of clients N."""
        return len(self.train_sets) if self.clients is None else self.clients


def load_clients(population: HomoLrPopulation) -> list[Dataset]:
    """Return every client's rows, client ``k`` at index ``k - 1``.

    Raises
    ------
    ConfigError
        If a training set is unreadable, its columns differ from the first one's, or its data
        cannot be encoded by the protocol (the real worker's check).
    """
    sets = [_load(s) for s in population.train_sets]
    for source, data in zip(population.train_sets, sets, strict=True):
        if data.feature_names != sets[0].feature_names:
            raise ConfigError(f"{source}: feature columns differ from {population.train_sets[0]}'s")
        check_training_data(data, source, population.hp)
    if population.clients is None:
        return sets
    ids = np.concatenate([d.ids for d in sets])
    X = np.concatenate([d.X for d in sets])
    y = np.concatenate([d.labels() for d in sets])
    split = split_clients(
        y,
        population.clients,
        partition=population.partition,
        alpha=population.alpha,
        seed=population.partition_seed,
    )
    names = sets[0].feature_names
    return [Dataset(ids[ix], X[ix], y[ix], names) for ix in split.indices]


class _ClientRuntime:
    """A worker process's clients' statistics and the PS's public key, built once."""

    def __init__(self, population: HomoLrPopulation, public_key: bytes) -> None:
        self.hp = population.hp
        # One core per client step: the backend already spreads the clients over the cores.
        with warnings.catch_warnings():  # a short key: the server already warned, once
            warnings.simplefilter("ignore", he.WeakKeyWarning)
            self.crypto = PaillierWorkerCrypto.from_public_key_bytes(public_key, cores=1)
        self.clients = load_clients(population)
        self._gram: dict[int, tuple[FloatArray, FloatArray, int]] = {}

    def step(self, client: int, t: int, encrypted: bytes) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        gram = self._gram.get(client)
        if gram is None:  # XᵀX once per client, as a real worker computes it once per run
            data = self.clients[client - 1]
            gram = gram_statistics(with_bias(data.X), data.labels().astype(np.float64))
            self._gram[client] = gram
        G, c, m = gram
        A, b = affine_from_gram(G, c, m, eta=self.hp.step_size(t), alpha=self.hp.alpha)
        update = self.crypto.step(encrypted, A, b)
        return client, update, time.perf_counter() - started


def step_clients(
    population: HomoLrPopulation,
    public_key: bytes,
    t: int,
    encrypted: bytes,
    clients: tuple[int, ...],
) -> tuple[list[tuple[int, bytes, float]], ProcessStats]:
    """Take iteration ``t``'s encrypted step for each of ``clients`` (a job of a backend)."""
    runtime = cached(
        "homo-lr", (population, public_key), lambda: _ClientRuntime(population, public_key)
    )
    return [runtime.step(c, t, encrypted) for c in clients], process_stats()


@dataclass(frozen=True, kw_only=True)
class HomoLrSimOptions:
    """A homo-lr simulation run.

    Parameters
    ----------
    population
        The clients and the hyperparameters (``hp.iterations`` iterations).
    per_round
        Clients sampled per iteration (K of N).
    dropout
        Probability that a sampled client never answers.
    min_clients
        An iteration with fewer usable updates stops training.
    seed
        Seed of the sampling and the dropouts.
    key_bits
        Paillier key size (2048 by default; 1024 warns and is for quick runs only).
    validate_set
        The server's evaluation data (FATE CSV path or ``breast:<split>``).
    evaluate_every
        Evaluate (and print the reference's ``iter:`` line) every this many iterations.
    out
        Directory for the metrics and the final weights (``None``: write nothing).
    """

    population: HomoLrPopulation
    per_round: int
    dropout: float = 0.0
    min_clients: int = 1
    seed: int = 0
    key_bits: int = he.DEFAULT_KEY_BITS
    validate_set: str = BREAST_TEST
    evaluate_every: int = 10
    out: Path | None = None

    def __post_init__(self) -> None:
        check_population(
            clients=self.population.size,
            per_round=self.per_round,
            dropout=self.dropout,
            min_clients=self.min_clients,
        )
        check_count(self.evaluate_every, "--evaluate-every")
        check_count(self.seed, "--seed", low=0, high=MAX_SEED)


def run_homo_lr_sim(
    options: HomoLrSimOptions,
    backend: Backend,
    *,
    on_line: Callable[[str], None] = print,
    crypto: PaillierServerCrypto | None = None,
) -> SimResult:
    """Train ``hp.iterations`` iterations of K sampled clients; return the weights and figures.

    Parameters
    ----------
    crypto
        The server's key pair (made here by default, ``options.key_bits``).

    Raises
    ------
    ConfigError
        If the data are unusable or fewer clients have rows than are sampled.
    """
    started = time.monotonic()
    population = options.population
    hp = population.hp
    clients = load_clients(population)
    eligible = clients_with_data(d.n_rows for d in clients)
    test = _load(options.validate_set)
    if test.feature_names != clients[0].feature_names:
        raise ConfigError(
            f"{options.validate_set}: feature columns differ from the training data's"
        )
    X1_test, y_test = with_bias(test.X), test.labels().astype(np.float64)
    server = crypto or PaillierServerCrypto.generate(options.key_bits, cores=1)
    public_key = server.public_key_bytes()
    check = MagnitudeBound(WEIGHT_BOUND_BITS)
    length = test.n_features + 1
    metrics = MetricsLog(options.out / PS_METRICS_FILE if options.out else None, party="ps")
    peak = PeakMemory()
    start_run(
        metrics,
        backend,
        headline=(
            f"homo-lr simulation: {population.size} clients, {options.per_round} sampled per "
            f"iteration, dropout {options.dropout:g}, {hp.describe()}, "
            f"{server.public_key.n.bit_length()}-bit Paillier key"
        ),
        on_line=on_line,
        workload="homo-lr",
        clients=population.size,
        without_data=population.size - len(eligible),
        per_round=options.per_round,
        dropout=options.dropout,
        key_bits=server.public_key.n.bit_length(),
        train_sets=list(population.train_sets),
        partition=population.partition if population.clients is not None else "by file",
    )
    w = initial_weights(test.n_features)
    evaluation = None
    done = 0
    walls: list[float] = []
    stop_reason = ""
    for t in range(hp.iterations):
        plan = plan_round(
            t + 1,
            eligible=eligible,
            per_round=options.per_round,
            dropout=options.dropout,
            seed=options.seed,
        )
        round_started = time.monotonic()
        metrics.write(
            "round_open", iteration=t, sampled=list(plan.sampled), dropped=list(plan.dropped)
        )
        encrypted = server.encrypt(w)
        submissions: list[tuple[int, bytes, float]] = map_clients(
            backend, step_clients, (population, public_key, t, encrypted), plan.training, peak.add
        )
        usable: dict[int, FloatArray] = {}
        parts = split_evenly(len(submissions), available_cores())
        checked = run_in_threads(  # gmpy2 releases the GIL: the PS's gRPC threads do the same
            _open_submissions,
            [(server, check, length, submissions[a:b]) for a, b in parts],
        )
        for client, values, problem in (c for part in checked for c in part):
            if problem is not None:
                metrics.write("update_dropped", iteration=t, worker=client, reason=problem)
                on_line(f"server: left out the update of client {client}: {problem}")
                continue
            usable[client] = values
        if plan.dropped:
            metrics.write(
                "dropped", iteration=t, workers=list(plan.dropped), reason="injected dropout"
            )
        if len(usable) < options.min_clients:
            stop_reason = (
                f"iteration {t}: {len(usable)} usable update(s), fewer than the "
                f"{options.min_clients} needed (--min-clients); dropped: {list(plan.dropped)}"
            )
            metrics.write("stopped", reason=stop_reason, iteration=t)
            on_line(f"server: training stopped: {stop_reason}")
            break
        w = average([usable[k] for k in sorted(usable)])
        done = t + 1
        wall = time.monotonic() - round_started
        walls.append(wall)
        if t % options.evaluate_every == 0 or t == hp.iterations - 1:
            evaluation = evaluate(w, X1_test, y_test)
            on_line(format_iteration(t, evaluation))
            metrics.write(
                "evaluation", iteration=t, accuracy=evaluation.accuracy, loss=evaluation.loss
            )
        metrics.write(
            "round",
            iteration=t,
            seconds=round(wall, 6),
            contributors=sorted(usable),
            slowest_step_s=max((s for _, _, s in submissions), default=0.0),
        )
    result = finish_run(
        metrics,
        peak,
        workload="homo-lr",
        completed=done == hp.iterations,
        rounds_done=done,
        model=w,
        evaluation=evaluation,
        seconds=time.monotonic() - started,
        round_seconds=tuple(walls),
        stop_reason=stop_reason,
    )
    if options.out is not None:
        np.save(options.out / MODEL_FILE, w.astype("<f8"), allow_pickle=False)
    return result


def _open_submissions(
    server: PaillierServerCrypto,
    check: MagnitudeBound,
    length: int,
    submissions: list[tuple[int, bytes, float]],
) -> list[tuple[int, FloatArray, str | None]]:
    """Check each submission's form, decrypt it and check its values, as the real PS does."""
    out: list[tuple[int, FloatArray, str | None]] = []
    for client, data, _ in submissions:
        try:
            values = server.decrypt_submission(server.parse_submission(data, length))
        except (ProtocolError, HEError) as exc:
            out.append((client, np.zeros(0), str(exc)))
            continue
        out.append((client, values, check(values)))
    return out

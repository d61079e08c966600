"""Which clients train in a round, and which of them drop out: a seeded plan, pure numpy.

Cross-device federated learning samples K of its N clients per round (McMahan et al. 2017), and
some of the sampled ones never answer. A simulation injects both from one seed, so two runs of
the same configuration train the same clients in the same rounds, whatever backend runs them,
and a benchmark's peer can be handed exactly the same schedule (:attr:`RoundPlan.sampled`).

Clients are numbered from 1, like the workers of a real federation (worker ``k`` holds shard
``k - 1``), because a client's id seeds its data order: client ``k`` of a simulation computes
bit for bit what worker ``k`` of a real federation computes from the same global model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np
import numpy.typing as npt

from sealfl.data import Partition, partition_dirichlet, partition_iid
from sealfl.data.partition import Method
from sealfl.errors import ConfigError

__all__ = [
    "DIRICHLET_MIN_SIZE",
    "MAX_CLIENTS",
    "PARTITIONS",
    "RoundPlan",
    "check_count",
    "check_population",
    "check_split",
    "clients_with_data",
    "plan_round",
    "split_clients",
]


@dataclass(frozen=True)
class RoundPlan:
    """One round's clients.

    Attributes
    ----------
    round
        The round, from 1.
    sampled
        The clients asked to train, ascending.
    dropped
        The sampled clients that will not answer (the injected dropouts), ascending.
    """

    round: int
    sampled: tuple[int, ...]
    dropped: tuple[int, ...]

    @property
    def training(self) -> tuple[int, ...]:
        """The sampled clients that answer, ascending."""
        gone = set(self.dropped)
        return tuple(c for c in self.sampled if c not in gone)

    def as_dict(self) -> dict[str, object]:
        """Return the plan as JSON-ready values (the ``round_open`` metrics record)."""
        return {"round": self.round, "sampled": list(self.sampled), "dropped": list(self.dropped)}


MAX_CLIENTS = 10_000_000
"""Most clients a simulation takes (their shards' row lists live in every worker process)."""
MAX_SEED = 2**64 - 1
"""Largest seed (hfl's settings take 64-bit seeds too)."""
PARTITIONS: tuple[str, ...] = get_args(Method)
"""How rows can be split among clients (:mod:`sealfl.data.partition`'s methods)."""


def check_count(value: int, option: str, *, low: int = 1, high: int = 2**32 - 1) -> None:
    """Refuse an integer option outside ``[low, high]``, naming it.

    Raises
    ------
    ConfigError
        If ``value`` is out of range.
    """
    if not low <= value <= high:
        raise ConfigError(f"{option} must be an integer in [{low}, {high}], got {value}")


def check_population(*, clients: int, per_round: int, dropout: float, min_clients: int) -> None:
    """Refuse counts and rates a simulation cannot run.

    Raises
    ------
    ConfigError
        Naming the option, what is accepted and what was given.
    """
    check_count(clients, "--clients", high=MAX_CLIENTS)
    if not 1 <= per_round <= clients:
        raise ConfigError(
            f"--per-round must be between 1 and --clients ({clients}), got {per_round}"
        )
    if not (math.isfinite(dropout) and 0.0 <= dropout < 1.0):
        raise ConfigError(f"--dropout must be a rate in [0, 1), got {dropout}")
    if not 1 <= min_clients <= per_round:
        raise ConfigError(
            f"--min-clients must be between 1 and --per-round ({per_round}), got {min_clients}"
        )


def check_split(
    *, partition: str, alpha: float, alpha_option: str, clients: int | None, seed: int
) -> None:
    """Refuse a split :func:`split_clients` cannot draw, naming the option.

    ``alpha_option`` is the Dirichlet concentration's option in the command at hand (homo-lr's
    ``--alpha`` is its L2 term). ``clients=None``: one client per training set, nothing to check.

    Raises
    ------
    ConfigError
        Naming the option, what is accepted and what was given.
    """
    if partition not in PARTITIONS:
        raise ConfigError(f"--partition: expected one of {list(PARTITIONS)}, got {partition!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"{alpha_option} must be a positive number, got {alpha}")
    if clients is not None:
        check_count(clients, "--clients", high=MAX_CLIENTS)
    check_count(seed, "--partition-seed", low=0, high=MAX_SEED)


def clients_with_data(sizes: Iterable[int]) -> list[int]:
    """Return the ids (from 1) of the clients with data: those :func:`plan_round` may sample."""
    return [k for k, size in enumerate(sizes, start=1) if size]


def plan_round(
    round_: int, *, eligible: Sequence[int], per_round: int, dropout: float, seed: int
) -> RoundPlan:
    """Sample ``per_round`` of the ``eligible`` clients for ``round_`` and draw their dropouts.

    A function of ``(seed, round_)`` alone (numpy's PCG64 seeded with both), so round 7 is the
    same whether or not rounds 1-6 ran in this process.

    Parameters
    ----------
    round_
        The round, from 1.
    eligible
        Client ids that may be sampled (those with data), ascending.
    per_round
        Clients to sample; at most ``len(eligible)``.
    dropout
        Probability that a sampled client does not answer.
    seed
        The simulation's seed.

    Raises
    ------
    ConfigError
        If fewer clients are eligible than are to be sampled.
    """
    if per_round > len(eligible):
        raise ConfigError(
            f"--per-round {per_round}: only {len(eligible)} clients have data to train on"
        )
    rng = np.random.default_rng([seed, round_])
    picked = rng.choice(np.asarray(eligible, dtype=np.int64), size=per_round, replace=False)
    sampled = np.sort(picked)
    gone = sampled[rng.random(per_round) < dropout] if dropout > 0 else sampled[:0]
    return RoundPlan(round_, tuple(int(c) for c in sampled), tuple(int(c) for c in gone))


DIRICHLET_MIN_SIZE = 10
"""What :func:`sealfl.data.partition_dirichlet` asks of each shard by default, and so what a
real federation's Dirichlet split asks."""


def split_clients(
    labels: npt.NDArray[np.int64], clients: int, *, partition: str, alpha: float, seed: int
) -> Partition:
    """Split rows among ``clients`` as ``sealfl hfl prepare`` splits them among workers.

    A Dirichlet split first asks every client for :data:`DIRICHLET_MIN_SIZE` rows, as a real
    federation's does (so 2 simulated clients hold exactly the 2 workers' shards). With many
    clients and few rows no draw may satisfy that; the split then allows empty clients, which
    :func:`plan_round` never samples (the run's first record counts them).

    Raises
    ------
    ConfigError
        If the partition is unknown or the split impossible (more clients than rows).
    """
    if partition == "iid":
        return partition_iid(labels, clients, seed=seed)
    if partition != "dirichlet":
        raise ConfigError(f"--partition: expected one of {list(PARTITIONS)}, got {partition!r}")
    if DIRICHLET_MIN_SIZE * clients <= len(labels):
        try:
            return partition_dirichlet(labels, clients, alpha=alpha, seed=seed)
        except ConfigError:
            pass  # skewed beyond what min_size allows: let some clients go without data
    return partition_dirichlet(labels, clients, alpha=alpha, seed=seed, min_size=0)

"""What a simulation reports: its result, its peak memory, and that nothing is protected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sealfl.fl.common.metrics import MetricsLog
from sealfl.sim.backends import Backend
from sealfl.sim.cache import ProcessStats, process_stats

__all__ = ["NOT_PROTECTED", "PeakMemory", "SimResult", "finish_run", "start_run"]

NOT_PROTECTED = (
    "SIMULATION: every client runs on this machine behind an in-memory link; no TEE, no "
    "attestation, no RA-TLS and nothing sealed. For studying the algorithm, not for data that "
    "needs protecting."
)
"""The first line of every simulation (and the ``simulation`` metrics record says the same)."""


class PeakMemory:
    """The peak resident memory of a simulation's processes: the driver and every worker.

    Each process reports its own peak (``getrusage``); the total is the sum of those peaks, an
    upper bound on the peak of the sum (the processes need not peak at the same moment).
    """

    def __init__(self) -> None:
        self._peaks: dict[int, int] = {}
        self.add(process_stats())

    def add(self, stats: ProcessStats) -> None:
        """Record a process's peak so far."""
        self._peaks[stats.pid] = max(self._peaks.get(stats.pid, 0), stats.max_rss_kib)

    def total_mib(self) -> float:
        """Return the sum of the processes' peaks, MiB."""
        return sum(self._peaks.values()) / 1024

    @property
    def processes(self) -> int:
        """How many processes reported."""
        return len(self._peaks)


@dataclass(frozen=True, kw_only=True)
class SimResult:
    """The outcome of a simulation run.

    Attributes
    ----------
    workload
        ``hfl`` or ``homo-lr``.
    completed
        Whether every round ran.
    rounds_done
        Rounds (homo-lr: iterations) aggregated.
    model
        The final global model (flat float32 for hfl, the weights with bias for homo-lr).
    accuracy, loss
        The last evaluation (``None`` if none ran).
    seconds
        Wall time of the whole run, including building the population.
    round_seconds
        Wall time of each round (hand-out, client training, screening and aggregation).
    peak_memory_mib
        :meth:`PeakMemory.total_mib`.
    stop_reason
        Why training stopped early (empty if it completed).
    """

    workload: str
    completed: bool
    rounds_done: int
    model: npt.NDArray[np.floating[Any]]
    accuracy: float | None
    loss: float | None
    seconds: float
    round_seconds: tuple[float, ...]
    peak_memory_mib: float
    stop_reason: str = ""

    def summary(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values (the ``done`` metrics record)."""
        steady = self.round_seconds[1:] or self.round_seconds
        return {
            "rounds": self.rounds_done,
            "completed": self.completed,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "seconds": self.seconds,
            "median_round_s": float(np.median(steady)) if steady else None,
            "peak_memory_mib": self.peak_memory_mib,
        }


class _Scored(Protocol):
    """An evaluation: either workload's."""

    @property
    def accuracy(self) -> float: ...

    @property
    def loss(self) -> float: ...


def start_run(
    metrics: MetricsLog,
    backend: Backend,
    *,
    headline: str,
    on_line: Callable[[str], None],
    workload: str,
    clients: int,
    without_data: int,
    per_round: int,
    dropout: float,
    **details: Any,
) -> None:
    """Say that nothing is protected and what runs where; write the ``simulation`` record.

    ``details`` are the workload's own fields of the record (data set, key size, ...).
    """
    on_line(NOT_PROTECTED)
    on_line(f"{headline}; {backend.describe()}")
    metrics.write(
        "simulation",
        workload=workload,
        tee="none",
        attestation="none",
        link="in-memory",
        backend=backend.name,
        workers=backend.workers,
        backend_start_s=backend.start_seconds,
        clients=clients,
        clients_without_data=without_data,
        per_round=per_round,
        dropout=dropout,
        **details,
    )


def finish_run(
    metrics: MetricsLog,
    peak: PeakMemory,
    *,
    workload: str,
    completed: bool,
    rounds_done: int,
    model: npt.NDArray[np.floating[Any]],
    evaluation: _Scored | None,
    seconds: float,
    round_seconds: tuple[float, ...],
    stop_reason: str,
) -> SimResult:
    """Return the run's :class:`SimResult`, after writing its ``done`` record and closing."""
    peak.add(process_stats())
    result = SimResult(
        workload=workload,
        completed=completed,
        rounds_done=rounds_done,
        model=model,
        accuracy=None if evaluation is None else evaluation.accuracy,
        loss=None if evaluation is None else evaluation.loss,
        seconds=seconds,
        round_seconds=round_seconds,
        peak_memory_mib=peak.total_mib(),
        stop_reason=stop_reason,
    )
    metrics.write("done", **result.summary())
    metrics.close()
    return result

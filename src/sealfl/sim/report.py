"""What a simulation reports: its result, its peak memory, and that nothing is protected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sealfl.sim.cache import ProcessStats, process_stats

__all__ = ["NOT_PROTECTED", "PeakMemory", "SimResult"]

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

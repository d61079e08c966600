"""The parameter server's bookkeeping of one iteration: who submitted, who is late, who is out.

Pure state, no threads and no network, so every refusal and the deadline rule are testable
directly. The PS service wraps it in a lock and a condition variable.

Rules:

- only workers still in the federation may submit, once per iteration, for the current
  iteration only; anything else is refused with a reason and the round goes on;
- a submission the PS's check refuses after decryption (:mod:`.screening`) counts as the
  worker's answer for the iteration but not as a contribution: that one party's round is
  dropped, with the reason recorded, and the others' average goes on;
- a round closes when every active worker has answered, or at its deadline; at the deadline the
  late workers are dropped if at least ``min_workers`` answered, otherwise the run stops, naming
  who is missing. A dropped worker that rejoins is reinstated (:meth:`RoundBook.reinstate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sealfl.errors import ConfigError, ProtocolError

T = TypeVar("T")


@dataclass(frozen=True)
class RoundOutcome(Generic[T]):
    """How one iteration closed.

    Attributes
    ----------
    iteration
        The iteration that closed.
    contributions
        Submissions by worker id (empty when the run stops).
    missing
        Workers that did not submit before the deadline (dropped, or the reason for stopping).
    rejected
        Workers whose submission failed the PS's check, with the reason (left out of the
        average; they stay in the federation).
    stop_reason
        ``None`` when training goes on; otherwise a message for the operator and the workers.
    """

    iteration: int
    contributions: dict[int, T]
    missing: tuple[int, ...] = ()
    rejected: dict[int, str] = field(default_factory=dict)
    stop_reason: str | None = None


@dataclass
class RoundBook(Generic[T]):
    """Submissions of the current iteration and the set of workers still taking part.

    Parameters
    ----------
    workers
        Ids of the workers that joined.
    min_workers
        Fewest submissions with which a round may close at its deadline.

    Raises
    ------
    ConfigError
        If ``min_workers`` is not between 1 and the number of workers.
    """

    workers: Iterable[int]
    min_workers: int
    iteration: int = 0
    active: set[int] = field(init=False)
    dropped: set[int] = field(init=False, default_factory=set)
    _pending: dict[int, T] = field(init=False, default_factory=dict)
    _rejected: dict[int, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.active = set(self.workers)
        if not 1 <= self.min_workers <= len(self.active):
            raise ConfigError(
                f"--min-workers must be between 1 and the number of workers "
                f"({len(self.active)}), got {self.min_workers}"
            )

    def check(self, worker_id: int, iteration: int) -> None:
        """Raise if a submission by ``worker_id`` for ``iteration`` would be refused now.

        Lets a caller reject early, before parsing an expensive payload.

        Raises
        ------
        ProtocolError
            If the worker is unknown or dropped, the iteration is not the current one, or the
            worker already submitted for it.
        """
        if worker_id in self.dropped:
            raise ProtocolError(
                f"worker {worker_id} was dropped after missing a round deadline; submissions "
                "are no longer accepted from it"
            )
        if worker_id not in self.active:
            raise ProtocolError(f"worker {worker_id} is not part of this federation")
        if iteration != self.iteration:
            raise ProtocolError(
                f"worker {worker_id}: submission for iteration {iteration}, but the current "
                f"iteration is {self.iteration}"
            )
        if worker_id in self._pending or worker_id in self._rejected:
            raise ProtocolError(
                f"worker {worker_id}: second submission for iteration {iteration} refused "
                "(the first one stands)"
            )

    def submit(self, worker_id: int, iteration: int, item: T) -> None:
        """Record ``worker_id``'s contribution to ``iteration``.

        Raises
        ------
        ProtocolError
            As :meth:`check`; nothing recorded is changed.
        """
        self.check(worker_id, iteration)
        self._pending[worker_id] = item

    def reject(self, worker_id: int, iteration: int, reason: str) -> None:
        """Record that ``worker_id``'s submission for ``iteration`` failed the PS's check.

        The worker has answered for this iteration (the round need not wait for it) but
        contributes nothing to it.

        Raises
        ------
        ProtocolError
            As :meth:`check`; nothing recorded is changed.
        """
        self.check(worker_id, iteration)
        self._rejected[worker_id] = reason

    def answered(self, worker_id: int) -> bool:
        """Whether ``worker_id`` has submitted (accepted or rejected) for the current iteration."""
        return worker_id in self._pending or worker_id in self._rejected

    def reinstate(self, worker_id: int) -> None:
        """Take a dropped worker back (it rejoined); it owes a submission from this iteration on."""
        if worker_id in self.dropped:
            self.dropped.discard(worker_id)
            self.active.add(worker_id)

    def waiting_for(self) -> tuple[int, ...]:
        """Active workers that have not answered for the current iteration, sorted."""
        return tuple(sorted(self.active - self._pending.keys() - self._rejected.keys()))

    def is_complete(self) -> bool:
        """Whether every active worker has submitted."""
        return not self.waiting_for()

    def close(self) -> RoundOutcome[T]:
        """Close the current iteration (complete, or at its deadline) and start the next one.

        Late workers are dropped if enough remain; otherwise the outcome carries a stop reason
        and the book stays on this iteration.
        """
        missing = self.waiting_for()
        answered = len(self._pending) + len(self._rejected)
        if missing and answered < self.min_workers:
            names = ", ".join(str(w) for w in missing)
            return RoundOutcome(
                iteration=self.iteration,
                contributions={},
                missing=missing,
                stop_reason=(
                    f"iteration {self.iteration}: round deadline passed without worker(s) "
                    f"{names}; {answered} submitted, --min-workers is "
                    f"{self.min_workers}: stopping"
                ),
            )
        contributions = dict(sorted(self._pending.items()))
        self.active -= set(missing)
        self.dropped |= set(missing)
        outcome = RoundOutcome(
            iteration=self.iteration,
            contributions=contributions,
            missing=missing,
            rejected=dict(sorted(self._rejected.items())),
        )
        self._pending = {}
        self._rejected = {}
        self.iteration += 1
        return outcome

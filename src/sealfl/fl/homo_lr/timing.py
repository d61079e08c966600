"""Where a round's time goes: named spans, measured per party and written into its metrics.

A round crosses three processes (the PS and every worker), so no one clock sees all of it. Each
party times its own spans with :func:`time.perf_counter` (:class:`Spans`) and writes them into
its JSON-lines metrics (the worker's ``iteration`` records, the PS's ``round`` records); the
hand-overs between them are stamped with the wall clock (``received``, ``published``), which is
one clock on one host. ``sealfl bench homo-lr`` joins the records into one breakdown
(:func:`sealfl.fl.homo_lr.breakdown.round_breakdown`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Spans"]


class Spans:
    """Seconds spent in named spans since the last :meth:`take` (one thread at a time).

    Parameters
    ----------
    clock
        Monotonic clock (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._seconds: dict[str, float] = {}

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to span ``name`` (even if it raises)."""
        started = self._clock()
        try:
            yield
        finally:
            self.add(name, self._clock() - started)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to span ``name``."""
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def take(self) -> dict[str, float]:
        """Return the spans as ``{name}_s`` fields rounded to the microsecond, and start afresh."""
        out = {f"{name}_s": round(seconds, 6) for name, seconds in self._seconds.items()}
        self._seconds = {}
        return out

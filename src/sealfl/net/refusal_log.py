"""Refusals, logged without letting a flood of them flood the log.

A long-lived server refuses whoever knocks with the wrong evidence, and an unauthenticated peer
can knock as often as it likes. Every refusal still counts (the allow-list keeps the recent ones,
a key broker audits each), but the human-readable log gets the first few of each window and then
one summary line, so an attacker cannot fill a disk or bury the lines that matter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog", "refusal_reporter"]


class RateLimitedLog:
    """Pass at most ``burst`` lines per ``window_s`` to ``emit``; summarise the rest.

    The summary (how many were held back, and the latest of them) is emitted with the first line
    of the next window, so nothing is silently lost: the count is always told.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        burst: int = 5,
        window_s: float = 60.0,
        what: str = "refusals",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._burst = burst
        self._window_s = window_s
        self._what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._passed = 0
        self._held = 0
        self._latest = ""

    def __call__(self, line: str) -> None:
        """Log ``line`` unless this window's burst is spent (then count it)."""
        with self._lock:
            now = self._clock()
            summary = None
            if now - self._window_start >= self._window_s:
                if self._held:
                    summary = (
                        f"{self._held} more {self._what} in the last {self._window_s:g} s not "
                        f"logged one by one; the latest: {self._latest}"
                    )
                self._window_start, self._passed, self._held = now, 0, 0
            if self._passed < self._burst:
                self._passed += 1
                lines = [line] if summary is None else [summary, line]
            else:
                self._held += 1
                self._latest = line
                lines = [] if summary is None else [summary]
        for text in lines:
            self._emit(text)


def refusal_reporter(
    say: Callable[[str], None], record: Callable[[str], None], *, party: str
) -> Callable[[object], None]:
    """Return an ``on_refusal`` hook for a server party: a rate-limited line and record each.

    ``say`` prints the human line (``"PS: refused a party at enrolment: ..."``), ``record`` writes
    the machine-readable one (a metrics event); both get the first few of each minute, then a
    summary.
    """
    line = RateLimitedLog(say, what="refused enrolments")
    entry = RateLimitedLog(record, what="refused enrolments")

    def report(refusal: object) -> None:
        line(f"{party}: refused a party at enrolment: {refusal}")
        entry(str(refusal))

    return report

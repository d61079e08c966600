"""Ranges of vfl's run options, checked before a party starts anything.

An option out of range must be refused where it is given (exit 2, one line naming the option,
expected against got), not after the party has listened, run a PSI or trained for an hour:
a deadline of ``1e300`` seconds overflows the thread waits it ends up in, ``2**64`` threads
overflow torch, a step interval beyond TOML's 64-bit integers cannot even be written into the
role config ``sealfl vfl prepare`` makes. The bounds are far beyond any real run.
"""

from __future__ import annotations

import math

from sealfl.errors import ConfigError

__all__ = ["MAX_COUNT", "MAX_SECONDS", "MAX_THREADS", "check_count", "check_seconds"]

MAX_SECONDS = 10_000_000.0
"""The longest deadline or wait (about 116 days): far below the thread waits' limits."""
MAX_COUNT = 2**32 - 1
"""The largest step interval (checkpoints, log lines)."""
MAX_THREADS = 1024
"""The most torch intra-op threads a party may ask for."""


def check_seconds(value: float, option: str, *, zero: bool = False) -> float:
    """Return ``value`` if it is a usable number of seconds for ``option``.

    Parameters
    ----------
    zero
        Whether 0 is allowed (``--wait-for-leader 0``: do not wait).

    Raises
    ------
    ConfigError
        Naming the option, the range and the value (NaN, infinities, negatives, too large).
    """
    low_ok = value >= 0 if zero else value > 0
    if isinstance(value, bool) or not (math.isfinite(value) and low_ok and value <= MAX_SECONDS):
        low = "[0" if zero else "(0"
        raise ConfigError(f"{option}: expected seconds in {low}, {MAX_SECONDS:,.0f}], got {value}")
    return value


def check_count(value: int, option: str, *, low: int, high: int = MAX_COUNT) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``.

    Raises
    ------
    ConfigError
        Naming the option, the range and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{option}: expected an integer in [{low}, {high:,}], got {value!r}")
    return value

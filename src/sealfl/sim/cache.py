"""State a worker process builds once and keeps for every client it simulates.

A simulated client is a function call, not a process: the network, the data population or a
Paillier public key's fixed-base tables cost far more to build than a client's round, so each
worker process (a pool process or a Ray actor) builds them the first time a job names them and
keeps them for the jobs that follow. The key is the job's frozen specification, so a process
that serves two simulations in turn keeps both apart, and at most :data:`MAX_ENTRIES` are kept.
"""

from __future__ import annotations

import os
import resource
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["MAX_ENTRIES", "ProcessStats", "cached", "process_stats"]

T = TypeVar("T")

MAX_ENTRIES = 4
_entries: OrderedDict[tuple[str, Hashable], Any] = OrderedDict()


def cached(kind: str, key: Hashable, build: Callable[[], T]) -> T:
    """Return this process's ``kind`` state for ``key``, building it on first use."""
    slot = (kind, key)
    if slot in _entries:
        _entries.move_to_end(slot)
        return _entries[slot]  # type: ignore[no-any-return, unused-ignore]
    value = build()
    _entries[slot] = value
    while len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return value


@dataclass(frozen=True)
class ProcessStats:
    """Which process ran a job, and its peak resident memory so far (KiB)."""

    pid: int
    max_rss_kib: int


def process_stats() -> ProcessStats:
    """Return this process's id and peak resident set size (``getrusage``, KiB on Linux)."""
    return ProcessStats(os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

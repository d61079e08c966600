"""Spread big-integer work over the machine's cores with a process pool.

gmpy2 releases the GIL in its list exponentiations (``powmod_base_list``), which threads use
for decryption, but not in ``*`` and ``%``: measured on 4096-bit operands, two threads of
multiplications run no faster than one. Work made of many small multiplications (fixed-base
encryption, multi-exponentiation) therefore runs in worker processes. The calling process
always takes one share itself, so ``cores = 2`` starts one worker. Only integers and numpy
arrays cross to the workers, on this machine, never key objects and never the network.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sealfl.errors import ConfigError

T = TypeVar("T")

_log = logging.getLogger(__name__)
_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


def resolve_cores(cores: int | None) -> int:
    """Return the number of cores to use: ``None`` means all available.

    Raises
    ------
    ConfigError
        If ``cores`` is not a positive integer.
    """
    if cores is None:
        return available_cores()
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise ConfigError(f"cores must be a positive integer or None, got {cores!r}")
    return cores


def _process_pool(workers: int) -> ProcessPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            # forkserver: workers do not inherit the caller's threads (gRPC) or locks.
            context = multiprocessing.get_context("forkserver")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            _pools[workers] = pool
        return pool


def shutdown_pools() -> None:
    """Stop the worker processes (they start again on the next parallel call)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def _forget_pools_in_child() -> None:
    """Forget the parent's worker processes in a forked child, which must not use or stop them."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


atexit.register(shutdown_pools)
os.register_at_fork(after_in_child=_forget_pools_in_child)


def split_evenly(total: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(total)`` into at most ``parts`` contiguous, non-empty ``(start, stop)``."""
    parts = max(1, min(parts, total))
    bounds = [total * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def _run(executor: Executor, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
    futures = [executor.submit(fn, *job) for job in jobs[1:]]
    first = fn(*jobs[0])
    return [first, *(future.result() for future in futures)]


def run_in_processes(
    fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]], *, workers: int | None = None
) -> list[T]:
    """Run ``fn(*job)`` for every job and return the results in job order.

    The calling process runs the first job while ``workers`` worker processes (default: one
    per remaining job) take the others from the front of the queue; then the calling process
    takes back, from the end, every job no worker has started. Splitting work into more jobs
    than cores thus balances it when a core is slower or busy with something else.

    ``fn`` must be a module-level function and the job arguments picklable plain data. If
    worker processes cannot be used (a daemonic caller may not have children; a worker died)
    the jobs run here instead, with a warning in the log: slower, never wrong.
    """
    if len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    try:
        pool = _process_pool(workers or len(jobs) - 1)
        futures = [pool.submit(fn, *job) for job in jobs[1:]]
    except (OSError, RuntimeError, AssertionError, BrokenProcessPool) as exc:
        _log.warning("Paillier worker processes unavailable (%s); computing in-process", exc)
        shutdown_pools()
        return [fn(*job) for job in jobs]
    results: list[T | None] = [fn(*jobs[0])] + [None] * len(futures)
    for index in range(len(futures), 0, -1):
        if futures[index - 1].cancel():
            results[index] = fn(*jobs[index])
    for index, future in enumerate(futures, start=1):
        if future.cancelled():
            continue
        try:
            results[index] = future.result()
        except BrokenProcessPool as exc:
            _log.warning("a Paillier worker process died (%s); computing its share here", exc)
            shutdown_pools()
            results[index] = fn(*jobs[index])
    return results  # type: ignore[return-value]


def run_in_threads(fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
    """Run ``fn(*job)`` for every job in threads (for code that releases the GIL)."""
    if len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs) - 1) as executor:
        return _run(executor, fn, jobs)

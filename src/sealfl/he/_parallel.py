"""Spread big-integer work over the machine's cores with a process pool.

gmpy2 releases the GIL in its list exponentiations (``powmod_base_list``), which threads use
for decryption, but not in ``*`` and ``%``: measured on 4096-bit operands, two threads of
multiplications run no faster than one. Work made of many small multiplications (fixed-base
encryption, multi-exponentiation) therefore runs in worker processes, one per core, while the
caller waits. Only integers and numpy arrays cross to the workers, on this machine, never key
objects and never the network.

Some hosts cannot run such a pool: Gramine refuses the file-descriptor passing a forkserver needs,
so inside a Gramine enclave the pool is never started (the party runtime calls
:func:`forbid_process_pool`, and a ``/dev/attestation`` directory is taken as the same sign). The
work then runs in the calling process, one core, which is said once in the log.
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
_GRAMINE_MARKER = "/dev/attestation"
_forbidden: list[str] = []  # why worker processes may not be used here (first reason only)
_forbidden_told = threading.Event()


def forbid_process_pool(reason: str) -> None:
    """Never start worker processes in this process again; parallel work runs here, one core.

    Called by the party runtime when it runs under Gramine, whose enclaves refuse the fd
    passing that a forkserver pool needs. Pools already started are stopped.
    """
    if not _forbidden:
        _forbidden.append(reason)
    shutdown_pools()


def process_pool_refusal() -> str | None:
    """Return why worker processes may not be used here, or ``None`` if they may."""
    if _forbidden:
        return _forbidden[0]
    if os.path.isdir(_GRAMINE_MARKER):
        return (
            f"{_GRAMINE_MARKER} exists: running inside a Gramine enclave, which refuses fd passing"
        )
    return None


def _pool_allowed() -> bool:
    reason = process_pool_refusal()
    if reason is None:
        return True
    if not _forbidden_told.is_set():
        _forbidden_told.set()
        _log.warning(
            "Paillier work runs in this process on one core, without worker processes: %s", reason
        )
    return False


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
    fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]], *, workers: int
) -> list[T]:
    """Run ``fn(*job)`` for every job in a pool of ``workers`` processes; results in job order.

    ``workers`` sizes the pool, which is kept for later calls of the same size and starts its
    processes only as jobs need them: pass the caller's core budget (:func:`resolve_cores`),
    not the number of jobs. No more than ``len(jobs)`` run at once anyway, and a pool per job
    count would leave a set of idle processes per size, each with its own DJN tables.

    The calling process only waits. It used to take a share itself, but then its threads that
    feed the workers and read their results had to win the GIL from a loop of big-integer
    multiplications every time, and measured: a worker got one share out of eight. With more
    jobs than workers the pool balances the load (a busy core simply takes fewer jobs).

    ``fn`` must be a module-level function and the job arguments picklable plain data. If
    worker processes cannot be used (a daemonic caller may not have children; a worker died)
    the jobs run here instead, with a warning in the log: slower, never wrong.
    """
    if len(jobs) <= 1 or workers <= 1 or not _pool_allowed():
        return [fn(*job) for job in jobs]
    try:
        pool = _process_pool(workers)
        futures = [pool.submit(fn, *job) for job in jobs]
    except (OSError, RuntimeError, AssertionError, BrokenProcessPool) as exc:
        _log.warning("Paillier worker processes unavailable (%s); computing in-process", exc)
        shutdown_pools()
        return [fn(*job) for job in jobs]
    results: list[T] = []
    for job, future in zip(jobs, futures, strict=True):
        try:
            results.append(future.result())
        except BrokenProcessPool as exc:
            _log.warning("a Paillier worker process died (%s); computing its share here", exc)
            shutdown_pools()
            results.append(fn(*job))
    return results


def run_in_threads(fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
    """Run ``fn(*job)`` for every job in threads (for code that releases the GIL)."""
    if len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs) - 1) as executor:
        return _run(executor, fn, jobs)

"""Spread big-integer work over the machine's cores with worker processes.

gmpy2 releases the GIL in its list exponentiations (``powmod_base_list``), which threads use
for decryption, but not in ``*`` and ``%``: measured on 4096-bit operands, two threads of
multiplications run no faster than one. Work made of many small multiplications (fixed-base
encryption, multi-exponentiation) therefore runs in worker processes, one per core, while the
caller waits. Only integers and numpy arrays cross to the workers, on this machine, never key
objects and never the network.

Each worker is a fresh interpreter running the dedicated entry point :mod:`sealfl.he._worker`,
never the caller's program. multiprocessing's pools (``spawn``, ``forkserver``) prepare each
worker by importing the parent's ``__main__`` again: a script that uses ``sealfl.he`` without an
``if __name__ == "__main__":`` guard ran once more in every worker (a key pair each), and a
script piped on standard input made every worker fail with a traceback. These workers import
only sealfl and what the functions they are sent need; a function of ``__main__`` is never
sent (it runs in the caller). Workers ignore Ctrl-C (the caller handles it) and end when the
caller closes their socket or exits.

Some hosts cannot run such workers: inside a Gramine enclave every child would need to be
started and attested on its own, so there the pool is never started (the party runtime calls
:func:`forbid_process_pool`, and a ``/dev/attestation`` directory is taken as the same sign).
The work then runs in the calling process, one core, which is said once in the log.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from sealfl.errors import ConfigError
from sealfl.he._worker import BOOT

T = TypeVar("T")

_log = logging.getLogger(__name__)
_GRAMINE_MARKER = "/dev/attestation"
_forbidden: list[str] = []  # why worker processes may not be used here (first reason only)
_forbidden_told = threading.Event()
_ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Thread-pool sizes a worker starts with at one (unless the caller set them): each worker is
one core's worth of work, and a worker whose OpenMP/BLAS pools default to one thread per core
oversubscribes the machine (measured with the simulator's torch clients: 3.1-10.4 s a round
against 2.1-2.7 s with one thread; ``torch.set_num_threads(1)`` in the worker is not enough,
as threads torch starts later read their default from the environment)."""
_DEATH_NOTICE_S = 1.0  # how long a worker whose socket closed may take to be seen as ended
_WORKER_EXIT_S = 5.0  # how long a closed worker may take to exit before it is killed


class _WorkerDiedError(Exception):
    """A worker process ended (or could not start) before it answered a job."""


class _Worker:
    """One worker process and this process's end of the socket pair to it."""

    def __init__(self) -> None:
        if not sys.executable:
            raise _WorkerDiedError("no Python interpreter to start (sys.executable is empty)")
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, str(theirs.fileno()), *sys.path],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**{name: "1" for name in _ONE_THREAD}, **os.environ},
            )
        except OSError as exc:
            ours.close()
            raise _WorkerDiedError(f"cannot start a worker process: {exc}") from exc
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())

    def call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run ``fn(*args)`` in the worker; its exception, if any, is raised here."""
        try:
            self._conn.send((fn, args))
            ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            try:  # a closed socket usually means the process is ending: give it a moment
                code: int | None = self._proc.wait(timeout=_DEATH_NOTICE_S)
            except subprocess.TimeoutExpired:
                code = None
            state = "has not ended" if code is None else f"exit status {code}"
            raise _WorkerDiedError(
                f"worker process {self._proc.pid} stopped answering ({state})"
            ) from exc
        if not ok:
            raise value
        return value

    def close(self, *, wait: bool) -> None:
        """Close the socket (the worker then exits); with ``wait``, reap it."""
        self._conn.close()
        if not wait:
            return
        try:
            self._proc.wait(timeout=_WORKER_EXIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def forget(self) -> None:
        """Drop this process's copy of the socket in a forked child (the parent keeps its)."""
        self._conn.close()


class _Pool:
    """Up to ``size`` workers, started as calls need them and kept for later calls."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._cond = threading.Condition()
        self._closed = False

    def _checkout(self) -> _Worker:
        with self._cond:
            while not self._idle and len(self._all) + self._starting >= self.size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._starting += 1  # holds the seat while the process starts
        worker: _Worker | None = None
        try:
            worker = _Worker()
        finally:
            with self._cond:
                self._starting -= 1
                if worker is not None:
                    self._all.add(worker)
                self._cond.notify()
        return worker

    def _checkin(self, worker: _Worker, *, alive: bool) -> None:
        with self._cond:
            keep = alive and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._cond.notify()
        if not keep:
            worker.close(wait=alive)

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """Run the jobs on the workers; a job whose worker died is run here (logged)."""
        missing = object()
        results: list[Any] = [missing] * len(jobs)
        errors: dict[int, BaseException] = {}
        died: list[str] = []
        order = iter(range(len(jobs)))
        lock = threading.Lock()

        def drive() -> None:
            try:
                worker = self._checkout()
            except _WorkerDiedError as exc:
                died.append(str(exc))
                return
            alive = True
            try:
                while True:
                    with lock:
                        i = next(order, None)
                    if i is None:
                        return
                    try:
                        results[i] = worker.call(fn, jobs[i])
                    except _WorkerDiedError as exc:
                        alive = False
                        died.append(str(exc))
                        return
                    except BaseException as exc:
                        errors[i] = exc
            finally:
                self._checkin(worker, alive=alive)

        drivers = [
            threading.Thread(target=drive, name="sealfl-he-worker-feed", daemon=True)
            for _ in range(min(self.size, len(jobs)))
        ]
        for thread in drivers:
            thread.start()
        for thread in drivers:
            thread.join()
        if died:
            _log.warning(
                "Paillier worker processes unavailable (%s); computing their shares here",
                "; ".join(died),
            )
        for i, job in enumerate(jobs):
            if i in errors:
                raise errors[i]
            if results[i] is missing:
                results[i] = fn(*job)
        return results

    def close(self) -> None:
        """Stop the idle workers now and the busy ones when their job returns."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                self._all.discard(worker)
        for worker in idle:
            worker.close(wait=True)

    def forget(self) -> None:
        """In a forked child: let go of the parent's workers without stopping them."""
        for worker in list(self._all):
            worker.forget()
        self._all.clear()
        self._idle.clear()


_pools: dict[int, _Pool] = {}
_pools_lock = threading.Lock()


def forbid_process_pool(reason: str) -> None:
    """Never start worker processes in this process again; parallel work runs here, one core.

    Called by the party runtime when it runs under Gramine, where a worker process would be
    an enclave of its own. Workers already started are stopped.
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
            f"{_GRAMINE_MARKER} exists: running inside a Gramine enclave, where a worker process "
            "would be another enclave"
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


def _process_pool(workers: int) -> _Pool:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = _Pool(workers)
        return pool


def shutdown_pools() -> None:
    """Stop the worker processes (they start again on the next parallel call)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _forget_pools_in_child() -> None:
    """Forget the parent's worker processes in a forked child, which must not use or stop them."""
    global _pools_lock
    for pool in _pools.values():
        pool.forget()
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
    jobs than workers a free worker takes the next job (a busy core simply takes fewer).

    ``fn`` must be a module-level function that a worker can import by name, and the job
    arguments picklable plain data; a function defined in ``__main__`` runs here, since a
    worker would have to run the caller's program to find it. If worker processes cannot be
    used (they cannot start, or one died) the jobs run here instead, with a warning in the
    log: slower, never wrong. An exception a job raises is raised here (the first in job
    order), after every job has finished.
    """
    if (
        len(jobs) <= 1
        or workers <= 1
        or getattr(fn, "__module__", "__main__") == "__main__"
        or not _pool_allowed()
    ):
        return [fn(*job) for job in jobs]
    return _process_pool(workers).map(fn, jobs)


def run_in_threads(fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
    """Run ``fn(*job)`` for every job in threads (for code that releases the GIL)."""
    if len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs) - 1) as executor:
        return _run(executor, fn, jobs)

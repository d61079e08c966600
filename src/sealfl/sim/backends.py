"""Where a simulation's client work runs: sealfl's own process pool, or Ray actors.

A backend maps a module-level function over jobs and returns the results in job order; that is
all a simulated round asks of it. What a job needs that is expensive to make (a torch model and
the client population, a Paillier public key's fixed-base tables) is built by the function
itself on first use in each worker process and kept there (:mod:`.cache`), so it is built once
per process (or Ray actor), not once per client or per round.

``local`` (the default) is the process pool of :mod:`sealfl.he._parallel`: fresh interpreters
started on a dedicated entry point (never the caller's ``__main__``), fed over anonymous socket
pairs, one per core; no dependency beyond sealfl's own, so it runs in CI. With one worker the
jobs run in the calling process. ``ray`` (:mod:`.ray_backend`, the ``sealfl[ray]`` extra) puts
one actor per CPU on a local Ray instance or on a cluster (``--address``).

Only plain data (numpy arrays, numbers, frozen dataclasses of them) crosses to a worker, between
processes of this machine (or of one Ray cluster); nothing here reads bytes from a network peer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sealfl.errors import ConfigError
from sealfl.he._parallel import available_cores, run_in_processes, shutdown_pools, split_evenly
from sealfl.sim.cache import ProcessStats

__all__ = ["BACKENDS", "Backend", "LocalBackend", "make_backend", "map_clients"]

T = TypeVar("T")

BACKENDS = ("local", "ray")
MAX_WORKERS = 1024
JOBS_PER_WORKER = 2
"""Jobs per worker in a round: a few balance uneven clients; each carries the round's model once."""


class Backend(Protocol):
    """What a simulation needs from the machinery that runs its clients."""

    name: str
    workers: int
    start_seconds: float

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """Run ``fn(*job)`` for every job; results in job order; a job's exception is raised."""
        ...

    def describe(self) -> str:
        """Say in a few words where the work runs (for the run's first lines)."""
        ...

    def close(self) -> None:
        """Stop the workers (their cached state goes with them)."""
        ...


class LocalBackend:
    """sealfl's process pool on this machine: ``workers`` processes (1: the calling process).

    Parameters
    ----------
    workers
        Worker processes; ``None`` means one per available core.

    Raises
    ------
    ConfigError
        If ``workers`` is not positive.
    """

    name = "local"
    start_seconds = 0.0  # the pool starts its processes as the first jobs need them

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.workers = workers or available_cores()

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """Run the jobs on the pool (in this process with one worker)."""
        return run_in_processes(fn, jobs, workers=self.workers)

    def describe(self) -> str:
        """Say how many processes run the clients."""
        if self.workers == 1:
            return "local backend: the clients run in this process"
        return f"local backend: {self.workers} worker processes of sealfl's pool"

    def close(self) -> None:
        """Stop the pool's processes."""
        shutdown_pools()


def make_backend(name: str, *, workers: int | None, address: str | None) -> Backend:
    """Return the backend called ``name``.

    Raises
    ------
    ConfigError
        If the name is unknown, ``--address`` is given to the local backend, or Ray is wanted
        and not installed.
    """
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be an integer in [1, {MAX_WORKERS}], got {workers}")
    if name == "local":
        if address is not None:
            raise ConfigError("--address names a Ray cluster; it needs --backend ray")
        return LocalBackend(workers)
    if name == "ray":
        from sealfl.sim.ray_backend import RayBackend

        return RayBackend(workers=workers, address=address)
    raise ConfigError(f"--backend: expected one of {list(BACKENDS)}, got {name!r}")


def map_clients(
    backend: Backend,
    fn: Callable[..., tuple[list[T], ProcessStats]],
    args: tuple[Any, ...],
    clients: tuple[int, ...],
    on_stats: Callable[[ProcessStats], None],
) -> list[T]:
    """Run a round's ``clients`` as ``fn(*args, part)`` on a few parts per worker.

    ``fn`` returns its part's results and its process's :class:`~.cache.ProcessStats`, which go
    to ``on_stats``. The parts are contiguous and come back in job order, so the results are in
    the order of ``clients`` (a plan's clients are ascending: the order the real PS aggregates in).
    """
    if not clients:
        return []
    parts = split_evenly(len(clients), backend.workers * JOBS_PER_WORKER)
    results: list[T] = []
    for part, stats in backend.map(fn, [(*args, clients[a:b]) for a, b in parts]):
        results += part
        on_stats(stats)
    return results

"""The ``ray`` backend: simulated clients on Ray actors (the ``sealfl[ray]`` extra).

One actor per CPU (or ``--workers``), each a long-lived Python process that keeps what a job
builds (:mod:`.cache`: a torch model and the population, a Paillier public key's fixed-base
tables) for every later job, so the expensive state is built once per actor, not per client.
Jobs are dealt to whichever actor is free (``ray.util.ActorPool``), results come back in job
order.

``address=None`` starts a Ray instance on this machine for the run and stops it afterwards;
``--address HOST:PORT`` (or ``auto``) joins a running cluster (``ray start --head`` on one
machine, ``ray start --address HEAD:6379`` on the others), which must have sealfl, and torch
for hfl, importable in its workers. Ray ships the job's function by reference and its arguments
with its own pickling, inside the cluster: Ray's trust model is a private network of
mutually trusting machines, which is another reason a simulation protects nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sealfl.errors import ConfigError

__all__ = ["RayBackend"]

T = TypeVar("T")


class RayBackend:
    """Ray actors running the jobs.

    Parameters
    ----------
    workers
        Actors; ``None`` means one per CPU Ray reports.
    address
        A running cluster's address (``auto`` for the local one); ``None`` starts Ray here.

    Raises
    ------
    ConfigError
        If Ray is not installed (naming the extra), or cannot start or connect.
    """

    name = "ray"

    def __init__(self, *, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray  # type: ignore[import-not-found, unused-ignore]
            from ray.util import ActorPool  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ConfigError(
                "--backend ray needs Ray: pip install 'sealfl[ray]' (or pip install ray)"
            ) from None
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self._ray = ray
        self.address = address
        started = time.monotonic()
        self._owns = not ray.is_initialized()
        try:
            if self._owns:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ...
            where = f"the cluster at {address}" if address else "a local Ray instance"
            raise ConfigError(f"--backend ray: cannot start or join {where}: {exc}") from exc
        self.start_seconds = time.monotonic() - started
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_Actor)
        self._actors = [actor.remote() for _ in range(self.workers)]
        ray.get([a.ready.remote() for a in self._actors])
        self.actors_seconds = time.monotonic() - started - self.start_seconds
        self._pool = ActorPool(self._actors)

    def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        """Run the jobs on the actors; results in job order."""
        return list(self._pool.map(lambda a, job: a.call.remote(fn, job), list(jobs)))

    def describe(self) -> str:
        """Say where the actors run and what starting them cost."""
        where = f"cluster {self.address}" if self.address else "a local Ray instance"
        return (
            f"ray backend: {self.workers} actors on {where} (Ray start {self.start_seconds:.1f} s, "
            f"actors {self.actors_seconds:.1f} s)"
        )

    def close(self) -> None:
        """Stop the actors, and Ray itself if this backend started it."""
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []
        if self._owns:
            self._ray.shutdown()


class _Actor:
    """One Ray worker process; its module-level caches persist between calls."""

    def ready(self) -> bool:
        return True

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(*args)

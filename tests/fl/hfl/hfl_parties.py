"""Helpers for hfl tests with real processes: run directories, parties, the run recomputed here.

Every party is a separate ``python -m sealfl.cli.main`` process; the tests keep their PIDs, poll
files for readiness and never sleep a fixed time to "let things happen".
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import party_processes
import torch
from party_processes import PartyProcess

from sealfl.data import read_shard
from sealfl.fl.hfl.aggregation import ServerOptimizer
from sealfl.fl.hfl.demo import prepare_run_dir, write_data, write_role_configs
from sealfl.fl.hfl.settings import Settings
from sealfl.fl.hfl.training import LocalTrainer, initial_model, parameter_masks
from sealfl.models.nn import flatten
from sealfl.runtime import PartyRuntime
from sealfl.runtime.role_config import load_role_config

CLI = [sys.executable, "-m", "sealfl.cli.main"]
TIMEOUT_S = 120.0
SETTINGS = Settings(model="small-cnn", rounds=2)


def fresh_measurements() -> dict[str, bytes]:
    """Measure hfl's roles in a new process, as the parties about to start will."""
    return party_processes.fresh_measurements("sealfl.fl.hfl.launch")


def make_run(
    root: Path,
    settings: Settings = SETTINGS,
    *,
    workers: int = 2,
    ps_options: dict[str, Any] | None = None,
    worker_options: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write platform, policies, release list, digits shards and role configs into ``root``."""
    paths = prepare_run_dir(root, measurements=fresh_measurements())
    paths |= write_data(root, workers=workers, channels=1)
    configs = write_role_configs(
        root,
        paths,
        workers=workers,
        settings=settings,
        ps_options=ps_options,
        worker_options=worker_options,
    )
    paths |= {name.replace(" ", "-") + "-config": path for name, path in configs.items()}
    paths["root"] = root
    paths["logs"] = root / "logs"
    paths["logs"].mkdir(exist_ok=True)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Party(PartyProcess):
    """A started process whose combined output goes to a file we can poll (appended to)."""

    def __init__(
        self, name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(name, argv, logs, env, append=True, timeout_s=TIMEOUT_S)

    def wait_for(
        self, predicate: Callable[[], bool], what: str, *, watch: tuple[PartyProcess, ...] = ()
    ) -> None:
        """Poll ``predicate``; fail early if this party, or a watched one, exits first."""
        self.poll(predicate, what, watch=watch)


def start_role(
    name: str, config: Path, logs: Path, *, listen: str | None = None, ps: str | None = None
) -> Party:
    env = {}
    if listen is not None:
        env["SEALFL_LISTEN"] = listen
    if ps is not None:
        env["SEALFL_PEERS"] = f"ps={ps}"
    return Party(name, [*CLI, "run", "--config", str(config)], logs, env)


def records(path: Path) -> list[dict[str, Any]]:
    """Complete JSON-lines records of a metrics file (none if it does not exist yet)."""
    if not path.is_file():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def events(path: Path, event: str) -> Iterator[dict[str, Any]]:
    return (r for r in records(path) if r.get("event") == event)


def ps_address(out: Path) -> str:
    return (out / "ps.address").read_text().strip()


def pinned_measurement(paths: dict[str, Path], role: str) -> bytes:
    """The measurement that ``role``'s policy accepts of its peers (a PS's: the workers')."""
    policy = tomllib.loads(paths[f"policy-{role}"].read_text())
    (measurement,) = policy["simulated"]["measurements"]
    return bytes.fromhex(measurement)


def ps_runtime(paths: dict[str, Path], *, listen: str = "127.0.0.1:0") -> PartyRuntime:
    """The PS's TEE runtime in this process, with the measurement the workers' policy pins."""
    config = load_role_config(paths["ps-config"], environ={"SEALFL_LISTEN": listen})
    measurement = pinned_measurement(paths, "worker")
    return config.runtime(simulated_measurement=lambda: measurement)


def serve_ps(paths: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Start the run's PS; yield ``paths``, ``ps``, its ``address`` and the ``parties`` to stop.

    For a fixture (``yield from serve_ps(paths)``): every party in ``parties``, the PS and any
    the test adds, is stopped afterwards.
    """
    parties: list[Party] = []
    try:
        ps = start_role("ps", paths["ps-config"], paths["logs"], listen="127.0.0.1:0")
        parties.append(ps)
        out = paths["root"] / "ps"
        ps.wait_for(lambda: (out / "ps.address").is_file(), "its address")
        yield {"paths": paths, "ps": ps, "address": ps_address(out), "parties": parties}
    finally:
        for party in parties:
            party.stop()


@contextlib.contextmanager
def run_in_process(
    paths: dict[str, Path], settings: Settings, workers: tuple[int, ...] = (1, 2)
) -> Iterator[tuple[np.ndarray, dict[int, LocalTrainer], ServerOptimizer]]:
    """The run's initial model, its workers' trainers and the PS's optimiser, built here.

    The same shards, seeds and code as the parties, and one torch thread as each of them runs
    (restored afterwards): what a test computes with them is what the run should have.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = initial_model(settings, read_shard(paths["test"]).data.schema)
        values, manifest = flatten(model)
        optimizer = ServerOptimizer(settings, *parameter_masks(model, manifest))
        trainers = {
            k: LocalTrainer(settings, read_shard(paths[f"shard-{k}"]).data, worker_id=k)
            for k in workers
        }
        yield values, trainers, optimizer
    finally:
        torch.set_num_threads(threads)

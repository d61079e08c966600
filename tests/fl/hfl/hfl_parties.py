"""Helpers for hfl tests with real processes: run directories, parties, an in-test client.

Every party is a separate ``python -m sealfl.cli.main`` process; the tests keep their PIDs, poll
files for readiness and never sleep a fixed time to "let things happen".
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import party_processes
from party_processes import PartyProcess

from sealfl.fl.hfl.demo import prepare_run_dir, write_data, write_role_configs
from sealfl.fl.hfl.settings import Settings

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

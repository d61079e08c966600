"""Helpers for hfl tests with real processes: run directories, parties, an in-test client.

Every party is a separate ``python -m sealfl.cli.main`` process; the tests keep their PIDs, poll
files for readiness and never sleep a fixed time to "let things happen".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sealfl.fl.hfl.demo import prepare_run_dir, write_data, write_role_configs
from sealfl.fl.hfl.settings import Settings

CLI = [sys.executable, "-m", "sealfl.cli.main"]
TIMEOUT_S = 120.0
SETTINGS = Settings(model="small-cnn", rounds=2)


def fresh_measurements() -> dict[str, bytes]:
    """Measure the roles in a new process, as the parties about to start will.

    The simulated measurement covers every file of the package and a process measures once; a
    value cached in this long-lived test process would go stale if the checkout is edited
    while the suite runs.
    """
    code = (
        "from sealfl.fl.hfl.launch import role_measurement as m; "
        "print(m('ps').hex(), m('worker').hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    ps, worker = out.stdout.split()
    return {"ps": bytes.fromhex(ps), "worker": bytes.fromhex(worker)}


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


class Party:
    """A started process whose combined output goes to a file we can poll."""

    def __init__(
        self, name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._fh = self.log.open("a")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(
        self, predicate: Callable[[], bool], what: str, *, watch: tuple[Party, ...] = ()
    ) -> None:
        """Poll ``predicate``; fail early if this party, or a watched one, exits first."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if predicate():
                return
            for party in (self, *watch):
                if party.proc.poll() is not None and not predicate():
                    raise AssertionError(
                        f"{party.name} exited before {self.name}'s {what}:\n{party.output()}"
                    )
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {what} within {TIMEOUT_S} s:\n{self.output()}")

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not finish:\n{self.output()}") from None
        self._fh.close()
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        self._fh.close()


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

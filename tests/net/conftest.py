"""Real processes on loopback for the sealfl.net end-to-end tests.

:class:`Peer` starts ``net_peer.py`` with the current interpreter, keeps its PID, reads its
JSON-lines events on a thread (so a wait has a deadline instead of a blocking read), and is
always terminated by the fixture that made it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PEER_SCRIPT = Path(__file__).with_name("net_peer.py")
ATTACKER_SCRIPT = Path(__file__).with_name("attackers.py")


class Peer:
    def __init__(self, *args: str, script: Path = PEER_SCRIPT) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put({"event": "eof", "returncode": self.process.wait()})

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip())

    def expect(self, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Return the next event, which must be one of ``names``."""
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.args[0]} {self.args[-1]}: no event within {timeout} s; stderr tail:\n"
                + "\n".join(self.stderr[-20:])
            ) from None
        assert event["event"] in names, (
            f"expected one of {names}, got {event}; stderr tail:\n" + "\n".join(self.stderr[-20:])
        )
        return event

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def started_peers() -> Iterator[list[Peer]]:
    """Every process a test starts; each is stopped at the end of the test, pass or fail."""
    started: list[Peer] = []
    yield started
    for peer in reversed(started):
        peer.stop()


@pytest.fixture
def spawn(started_peers: list[Peer]) -> Any:
    """Start ``net_peer.py`` processes (servers and honest clients)."""

    def start(*args: str) -> Peer:
        peer = Peer(*args)
        started_peers.append(peer)
        return peer

    return start


@pytest.fixture
def attack(started_peers: list[Peer]) -> Any:
    """Start ``attackers.py`` processes (hostile peers)."""

    def start(*args: str) -> Peer:
        peer = Peer(*args, script=ATTACKER_SCRIPT)
        started_peers.append(peer)
        return peer

    return start


@pytest.fixture(scope="module")
def platform_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sealfl.tee import SimulatedPlatform

    directory = tmp_path_factory.mktemp("platform")
    SimulatedPlatform.create(directory)
    return directory

"""Parties as real processes for the workload tests: a log file to poll, PIDs we keep.

Every party is a separate ``python -m sealfl.cli.main`` process whose combined output goes to
``<logs>/<name>.log``. The tests poll that file (or other files) for readiness and never sleep
a fixed time to "let things happen"; every wait has a deadline and fails with the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class PartyProcess:
    """A started process whose combined output goes to a file we can poll.

    ``append`` keeps an earlier log of the same name (a restarted party's lines follow its
    first run's); otherwise the log starts empty. ``timeout_s`` bounds every wait.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        logs: Path,
        env: dict[str, str] | None = None,
        *,
        append: bool = False,
        timeout_s: float,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.log = logs / f"{name}.log"
        self._fh = self.log.open("a" if append else "w")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        return self.log.read_text()

    def words(self) -> str:
        """The output with whitespace collapsed (error messages are wrapped to the terminal)."""
        return " ".join(self.output().split())

    def poll(
        self, check: Callable[[], bool], what: str, *, watch: tuple[PartyProcess, ...] = ()
    ) -> None:
        """Poll ``check``; fail early if this party, or a watched one, exits first."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            for party in (self, *watch):
                if party.proc.poll() is not None and not check():
                    raise AssertionError(
                        f"{party.name} exited before {self.name}'s {what}:\n{party.output()}"
                    )
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {what} within {self.timeout_s} s:\n{self.output()}")

    def finish(self) -> int:
        """Wait for the exit status; kill the process and fail if it takes too long."""
        try:
            code = self.proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not finish:\n{self.output()}") from None
        self._fh.close()
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        self._fh.close()


def fresh_measurements(
    launch_module: str, *, timeout_s: float = 60.0, roles: tuple[str, str] = ("ps", "worker")
) -> dict[str, bytes]:
    """Measure the roles in a new process, as the parties about to start will.

    ``launch_module`` is the workload's module with ``role_measurement``. The simulated
    measurement covers every file of the package and a process measures once; a value cached
    in this long-lived test process would go stale if the checkout is edited while the suite
    runs.
    """
    code = (
        f"from {launch_module} import role_measurement as m; "
        f"print(m({roles[0]!r}).hex(), m({roles[1]!r}).hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=timeout_s
    )
    first, second = out.stdout.split()
    return {roles[0]: bytes.fromhex(first), roles[1]: bytes.fromhex(second)}

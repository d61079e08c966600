"""Launch the infer workload's parties as separate processes and wait until they serve.

Each party is ``python -m sealfl.cli.main infer <role> ...`` (or ``run --config ...``); once it
serves, it prints one JSON line (``{"event": "ready", "address": ..., "fingerprint": ...}``) on
stdout. The launcher
reads that line with a deadline (never a fixed sleep), keeps the process's own PID, and stops
exactly that process. Standard error goes to a log file, shown when a party fails to start.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from sealfl.errors import ChannelError

READY_TIMEOUT_S = 60.0

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class PartyProcess:
    """One launched party.

    Parameters
    ----------
    name
        For messages and the log file name.
    args
        Arguments after ``sealfl``: ``["infer", "serve", ...]``, ``["run", "--config", ...]``.
    log_dir
        Where the party's standard error is written.
    """

    def __init__(self, name: str, args: list[str], *, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        # One BLAS thread per party: a server answers concurrent calls on its own threads, and
        # oversubscribed BLAS pools make latency erratic on a shared machine.
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for var in _THREAD_VARS:
            env.setdefault(var, "1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sealfl.cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            # Unbuffered, so that select() sees every line: a buffered reader could hold the
            # ready line after an earlier one while select() waits on an empty pipe.
            bufsize=0,
        )
        self.ready: dict[str, Any] = {}

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Block until the party prints its ready line; return it.

        Raises
        ------
        ChannelError
            If the party exits or stays silent past the deadline (its log is quoted).
        """
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(timeout=min(left, 0.5)):
                    if self.process.poll() is not None:
                        break
                    continue
                line = self.process.stdout.readline()
                if not line:
                    break
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and event.get("event") == "ready":
                    self.ready = event
                    return event
        tail = self.log_tail()
        self.stop()
        raise ChannelError(
            f"{self.name} did not become ready within {timeout_s} s "
            f"(exit status {self.process.poll()}); its log ends with:\n{tail}"
        )

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines of the party's log."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate this party (by its own PID) and wait for it; kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def launch(name: str, args: list[str], *, log_dir: Path) -> PartyProcess:
    """Start a party and wait until it serves."""
    party = PartyProcess(name, ["infer", *args], log_dir=log_dir)
    party.wait_ready()
    return party


ALL_OUTPUTS = "probability,logit,label"
"""The demo's and the tests' servers serve every output (a deployment chooses; the command's
default is the label alone)."""


def launch_dealer(
    log_dir: Path,
    *,
    name: str = "dealer",
    key_file: Path | None = None,
    address: str | None = None,
) -> PartyProcess:
    """Start a dealer process (see ``sealfl infer dealer --help``)."""
    args = ["dealer"]
    if key_file is not None:
        args += ["--key-file", str(key_file)]
    if address is not None:
        args += ["--address", address]
    return launch(name, args, log_dir=log_dir)


def launch_server(
    mode: str,
    *,
    model: Path,
    log_dir: Path,
    dealer: PartyProcess | None = None,
    platform: Path | None = None,
    sealed_model: Path | None = None,
    allow_outputs: str = ALL_OUTPUTS,
    options: tuple[str, ...] = (),
    name: str | None = None,
) -> PartyProcess:
    """Start a model server in ``mode`` (see ``sealfl infer serve --help``).

    ``options`` are further arguments (``--row-budget``, ``--key-file`` ...); ``name`` names
    the log file (default ``server-MODE``).
    """
    args = ["serve", "--mode", mode, "--model", str(model), "--allow-outputs", allow_outputs]
    if dealer is not None:
        args += ["--dealer", dealer.ready["address"]]
        args += ["--dealer-fingerprint", dealer.ready["fingerprint"]]
    if platform is not None:
        args += ["--platform", str(platform)]
    if sealed_model is not None:
        args += ["--sealed-model", str(sealed_model)]
    return launch(name or f"server-{mode}", [*args, *options], log_dir=log_dir)

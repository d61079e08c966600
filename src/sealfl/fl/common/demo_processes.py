"""A demo's parties as processes on this machine: start them, show them, stop them.

A demo plays the host of every party. It starts each as ``sealfl run --config <role>.toml``,
telling it only addresses, through the environment, as a deployment would: the PS listens on a
free port (``SEALFL_LISTEN``) and writes its front-door address to a file once it listens, and
only then are the workers started, told that address (``SEALFL_PEERS``). One thread per process
copies its output into ``logs/<name>.log`` and onto a queue the demo's console reads, so the
parties' lines interleave as they come; a progress bar follows the PS's JSON-lines metrics
(:mod:`sealfl.fl.common.metrics`). What differs between workloads (the bar, which lines to show,
how long a PS may outlive its workers) is a :class:`PartiesView`; the sequence is the same, so
homo-lr's and hfl's demos both run it through :func:`run_parties`.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sealfl.runtime import LISTEN_ENV, PEERS_ENV

__all__ = ["START_TIMEOUT_S", "Lines", "PartiesOutcome", "PartiesView", "run_parties"]

Lines = queue.Queue[tuple[str, str | None]]
"""The parties' output lines, by party name; ``None`` marks the end of a party's stream."""
START_TIMEOUT_S = 120.0
"""How long the PS may take to listen (key generation in the TEE) before the demo gives up."""


def _show_every_line(name: str, line: str) -> bool:
    return True


@dataclass(frozen=True, kw_only=True)
class PartiesView:
    """How a demo shows its federation while the parties run.

    Parameters
    ----------
    starting
        The console's status while the PS starts.
    poll_s
        How often to look for the PS's address file meanwhile.
    label
        The progress bar's title.
    total
        The bar's length (iterations or rounds).
    on_record
        Applies one record of the PS's metrics to the bar (called in file order, once each).
    show_line
        Whether to print a party's output line (it always goes to the party's log); it may
        also note the line.
    time_remaining
        Whether the bar shows an estimate of the time left.
    grace_s
        How long the PS may go on after every worker has exited (it normally exits at once)
        before the demo stops it.
    grace_message
        Printed (rich markup) when the demo stops the PS for that reason.
    """

    starting: str
    poll_s: float
    label: str
    total: int
    on_record: Callable[[Progress, TaskID, Mapping[str, Any]], None]
    show_line: Callable[[str, str], bool] = _show_every_line
    time_remaining: bool = False
    grace_s: float
    grace_message: str


@dataclass(frozen=True)
class PartiesOutcome:
    """How the parties ended.

    ``codes`` holds every started party's exit status by name. ``early_exit`` is the demo's
    own exit status when it stopped before training ran its course: the PS never listened
    (its exit status, or 1) or the operator pressed Ctrl-C (130); ``None`` otherwise.
    """

    codes: dict[str, int]
    early_exit: int | None = None


def run_parties(
    configs: Mapping[str, Path],
    *,
    workers: int,
    logs: Path,
    address_file: Path,
    metrics_file: Path,
    view: PartiesView,
    console: Console,
    env: Mapping[str, str] | None = None,
    server: str = "ps",
    clients: tuple[str, ...] | None = None,
) -> PartiesOutcome:
    """Start the PS, then ``workers`` workers once it listens; show them until all have ended.

    Parameters
    ----------
    configs
        Role config by party name: ``"ps"`` and ``"worker K"`` (K from 1), or ``server`` and
        ``clients``.
    logs
        Directory for one log file per party (it must exist).
    address_file
        Where the PS writes its front-door address once it listens.
    metrics_file
        The PS's JSON-lines metrics, which drive the progress bar.
    env
        Variables every party gets besides the addresses.
    server, clients
        The serving party's name (its peers find it under that name in ``SEALFL_PEERS``) and
        the connecting parties' names (default ``"worker K"`` for K up to ``workers``).

    Every party still running when this returns (Ctrl-C, a PS that never listened) has been
    terminated, and killed if it did not stop within 10 s.
    """
    lines: Lines = queue.Queue()
    procs: dict[str, subprocess.Popen[str]] = {}
    extra = dict(env or {})
    try:
        listen = {LISTEN_ENV: "127.0.0.1:0", **extra}
        procs[server] = _spawn(server, configs[server], logs, lines, listen)
        address = _wait_for_address(address_file, procs[server], view, console)
        if address is None:
            _drain(lines, console, procs)
            return PartiesOutcome({}, early_exit=procs[server].wait() or 1)
        for name in clients or tuple(f"worker {k}" for k in range(1, workers + 1)):
            addresses = {PEERS_ENV: f"{server}={address}", **extra}
            procs[name] = _spawn(name, configs[name], logs, lines, addresses)
        _follow(procs, lines, metrics_file, view, console, server)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every party[/yellow]")
        return PartiesOutcome({}, early_exit=130)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return PartiesOutcome({name: proc.returncode for name, proc in procs.items()})


def _spawn(
    name: str, config: Path, logs: Path, lines: Lines, env: Mapping[str, str]
) -> subprocess.Popen[str]:
    """Start ``sealfl run --config CONFIG``, telling it only addresses through the environment."""
    log = (logs / f"{name.replace(' ', '-')}.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealfl.cli.main", "run", "--config", str(config)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        start_new_session=True,  # Ctrl-C reaches the demo only; it stops the parties itself
    )
    assert proc.stdout is not None
    threading.Thread(
        target=_pump, args=(name, proc.stdout, log, lines), daemon=True, name=f"pump-{name}"
    ).start()
    return proc


def _pump(name: str, stream: IO[str], log: IO[str], lines: Lines) -> None:
    with log:
        for raw in stream:
            log.write(raw)
            log.flush()
            lines.put((name, raw.rstrip("\n")))
    lines.put((name, None))


def _wait_for_address(
    path: Path, ps: subprocess.Popen[str], view: PartiesView, console: Console
) -> str | None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with console.status(view.starting):
        while time.monotonic() < deadline:
            if path.is_file():
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    return text
            if ps.poll() is not None:
                return None
            time.sleep(view.poll_s)
    console.print(f"[red]the PS did not start listening within {START_TIMEOUT_S:g} s[/red]")
    return None


def _style(name: str, line: str) -> str:
    colour = "magenta" if name in ("ps", "leader") else ("cyan" if name.endswith("1") else "green")
    return f"[{colour}]{name:>8}[/{colour}] │ {escape(line)}"


def _follow(
    procs: dict[str, subprocess.Popen[str]],
    lines: Lines,
    metrics_path: Path,
    view: PartiesView,
    console: Console,
    server: str = "ps",
) -> None:
    """Show the parties' output and the progress until every stream closes."""
    open_streams = set(procs)
    offset = 0
    workers = [proc for name, proc in procs.items() if name != server]
    ps_deadline: float | None = None
    columns: list[ProgressColumn] = [
        TextColumn(f"[bold]{view.label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    ]
    if view.time_remaining:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=view.total, status="")
        while open_streams:
            try:
                name, line = lines.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                if line is None:
                    open_streams.discard(name)
                elif view.show_line(name, line):
                    bar.console.print(_style(name, line), highlight=False, markup=True)
            offset = _update_bar(bar, task, metrics_path, offset, view)
            ps = procs[server]
            if ps_deadline is None and all(w.poll() is not None for w in workers):
                # Every worker has gone: the PS would only wait out its deadlines.
                ps_deadline = time.monotonic() + view.grace_s
            if ps_deadline is not None and ps.poll() is None and time.monotonic() > ps_deadline:
                bar.console.print(view.grace_message)
                ps.terminate()
                ps_deadline = math.inf
        _update_bar(bar, task, metrics_path, offset, view)


def _update_bar(bar: Progress, task: TaskID, path: Path, offset: int, view: PartiesView) -> int:
    """Apply the complete records written since ``offset``; return the new offset."""
    if not path.is_file():
        return offset
    with path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    for raw in chunk[:end].splitlines():
        view.on_record(bar, task, json.loads(raw))
    return offset + end


def _drain(lines: Lines, console: Console, procs: dict[str, subprocess.Popen[str]]) -> None:
    for proc in procs.values():
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    # Every process has ended, so each pump is about to report the end of its stream.
    open_streams = set(procs)
    while open_streams:
        try:
            name, line = lines.get(timeout=5)
        except queue.Empty:
            return
        if line is None:
            open_streams.discard(name)
        else:
            console.print(_style(name, line), highlight=False)

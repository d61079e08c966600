"""``sealfl demo homo-lr``: a whole federation on this machine, as separate processes.

The demo plays the operator of every party: it creates a simulated TEE platform in a run
directory, writes one policy per role (workers trust the PS's measurement, the PS trusts the
workers'), writes the breast-cancer splits from the package, then starts the PS and the
workers as ``sealfl homo-lr ...`` processes on loopback and shows their output with a progress
bar driven by the PS's JSON-lines metrics. Nothing is shared between the processes but files
the demo wrote before they started and the network.
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sealfl._files import write_atomic
from sealfl.data import breast
from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import PRESETS
from sealfl.fl.homo_lr.launch import ADDRESS_FILE, MODEL_FILE, PS_METRICS_FILE, role_measurement
from sealfl.tee import SimulatedPlatform

_SPLITS_BY_WORKER = ("homo_guest", "homo_host")
_START_TIMEOUT_S = 120.0
_PS_GRACE_S = 15.0
"""How long the PS may go on after every worker has exited (it normally exits at once)."""


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Options of ``sealfl demo homo-lr``.

    Raises
    ------
    ConfigError
        If the number of workers is not 1 or 2 (the breast data have two training splits), or
        the preset is unknown.
    """

    workers: int = 2
    preset: str = "accurate"
    epochs: int | None = None
    key_bits: int = 2048
    run_dir: Path | None = None
    round_deadline_s: float = 60.0
    worker_cores: int | None = 1
    ps_cores: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= len(_SPLITS_BY_WORKER):
            raise ConfigError(
                f"--workers: the breast-cancer data have {len(_SPLITS_BY_WORKER)} training "
                f"splits, so 1 or 2 workers; got {self.workers}"
            )
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset: expected one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")


def simulated_policy_toml(measurement: bytes, platform_fingerprint: str) -> str:
    """Return a policy (TOML, :func:`sealfl.tee.load_policy`) trusting one simulated identity."""
    return (
        "# Written by `sealfl demo homo-lr`: accept only simulated evidence from this run's\n"
        "# platform, with the measurement of the peer's role.\n"
        "max_evidence_age_seconds = 3600\n\n"
        "[simulated]\n"
        "allow = true\n"
        f'measurements = ["{measurement.hex()}"]\n'
        f'platform_fingerprints = ["{platform_fingerprint}"]\n'
    )


def prepare_run_dir(
    run_dir: Path, *, workers: int, measurements: Mapping[str, bytes] | None = None
) -> dict[str, Path]:
    """Create the platform, the two policies and the data files; return their paths.

    Parameters
    ----------
    run_dir
        Directory to fill (created if missing).
    workers
        How many training splits to write.
    measurements
        Expected measurement per role (``"ps"``, ``"worker"``); by default
        :func:`~sealfl.fl.homo_lr.launch.role_measurement` of the code this process loaded.
    """
    expected = measurements or {role: role_measurement(role) for role in ("ps", "worker")}
    run_dir.mkdir(parents=True, exist_ok=True)
    platform_dir = run_dir / "platform"
    platform = SimulatedPlatform.create(platform_dir)
    paths = {"platform": platform_dir}
    for role, peer in (("ps", "worker"), ("worker", "ps")):
        path = run_dir / f"policy-{role}.toml"
        policy = simulated_policy_toml(expected[peer], platform.fingerprint)
        write_atomic(path, policy.encode("utf-8"), mode=0o644)
        paths[f"policy-{role}"] = path
    data = run_dir / "data"
    paths["test"] = breast.write_split("homo_test", data / "breast_homo_test.csv")
    for k in range(workers):
        split = _SPLITS_BY_WORKER[k]
        paths[f"train-{k + 1}"] = breast.write_split(split, data / f"breast_{split}.csv")
    return paths


def run_demo(options: DemoOptions, *, console: Console) -> int:
    """Run the federation and show it; return the exit status (0 when training completed)."""
    run_dir = options.run_dir or Path("homo-lr-demo") / time.strftime("%Y%m%d-%H%M%S")
    hp = PRESETS[options.preset]
    iterations = options.epochs or hp.iterations
    console.rule("[bold]sealfl demo homo-lr")
    console.print(
        f"{options.workers} workers · {options.key_bits}-bit Paillier · {iterations} iterations · "
        f"preset [bold]{options.preset}[/bold] (lr {hp.learning_rate}, {hp.schedule.value}, "
        f"alpha {hp.alpha}) · simulated TEE\nrun directory: {run_dir}"
    )
    paths = prepare_run_dir(run_dir, workers=options.workers)
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    ps_out = run_dir / "ps"
    cli = [sys.executable, "-m", "sealfl.cli.main", "homo-lr"]
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    procs: dict[str, subprocess.Popen[str]] = {}
    started = time.monotonic()
    last_line = ""
    try:
        procs["ps"] = _spawn(
            "ps",
            [
                *cli,
                "ps",
                "--worker-num",
                str(options.workers),
                "--validate-set",
                str(paths["test"]),
                "--listen",
                "127.0.0.1:0",
                "--key-bits",
                str(options.key_bits),
                "--policy",
                str(paths["policy-ps"]),
                "--out",
                str(ps_out),
                "--round-deadline",
                str(options.round_deadline_s),
                "--simulated-platform",
                str(paths["platform"]),
                *_cores(options.ps_cores),
            ],
            logs,
            lines,
        )
        address = _wait_for_address(ps_out / ADDRESS_FILE, procs["ps"], console)
        if address is None:
            _drain(lines, console, procs)
            return procs["ps"].wait() or 1
        for k in range(1, options.workers + 1):
            procs[f"worker {k}"] = _spawn(
                f"worker {k}",
                [
                    *cli,
                    "worker",
                    "--train-set",
                    str(paths[f"train-{k}"]),
                    "--id",
                    str(k),
                    "--server",
                    address,
                    "--epochs",
                    str(iterations),
                    "--learning-rate",
                    str(hp.learning_rate),
                    "--alpha",
                    str(hp.alpha),
                    "--schedule",
                    hp.schedule.value,
                    "--policy",
                    str(paths["policy-worker"]),
                    "--metrics",
                    str(run_dir / f"worker-{k}_metrics.jsonl"),
                    "--simulated-platform",
                    str(paths["platform"]),
                    *_cores(options.worker_cores),
                ],
                logs,
                lines,
            )
        last_line = _follow(procs, lines, ps_out / PS_METRICS_FILE, iterations, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every party[/yellow]")
        return 130
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    codes = {name: proc.returncode for name, proc in procs.items()}
    elapsed = time.monotonic() - started
    sealed = ps_out / MODEL_FILE
    if all(code == 0 for code in codes.values()):
        console.rule("[green]done")
        console.print(
            f"[bold]{last_line}[/bold] (validation on the test split, decrypted inside the PS)\n"
            f"wall time {elapsed:.1f} s ({elapsed / iterations:.3f} s/iteration)\n"
            f"sealed model: {sealed}\nmetrics: {ps_out / PS_METRICS_FILE}, "
            f"{run_dir}/worker-K_metrics.jsonl\nlogs: {logs}"
        )
        return 0
    failed = ", ".join(f"{name} (exit {code})" for name, code in codes.items() if code != 0)
    console.rule("[red]failed")
    console.print(f"{failed}; see the logs in {logs}")
    return 1


def _cores(cores: int | None) -> list[str]:
    return [] if cores is None else ["--cores", str(cores)]


def _spawn(
    name: str, argv: list[str], logs: Path, lines: queue.Queue[tuple[str, str | None]]
) -> subprocess.Popen[str]:
    log = (logs / f"{name.replace(' ', '-')}.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        argv,
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


def _pump(
    name: str, stream: IO[str], log: IO[str], lines: queue.Queue[tuple[str, str | None]]
) -> None:
    with log:
        for raw in stream:
            log.write(raw)
            log.flush()
            lines.put((name, raw.rstrip("\n")))
    lines.put((name, None))


def _wait_for_address(path: Path, ps: subprocess.Popen[str], console: Console) -> str | None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    with console.status("starting the parameter server (Paillier key generation in the TEE)…"):
        while time.monotonic() < deadline:
            if path.is_file():
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    return text
            if ps.poll() is not None:
                return None
            time.sleep(0.1)
    console.print(f"[red]the PS did not start listening within {_START_TIMEOUT_S:g} s[/red]")
    return None


def _style(name: str, line: str) -> str:
    colour = "magenta" if name == "ps" else ("cyan" if name.endswith("1") else "green")
    return f"[{colour}]{name:>8}[/{colour}] │ {escape(line)}"


def _follow(
    procs: dict[str, subprocess.Popen[str]],
    lines: queue.Queue[tuple[str, str | None]],
    metrics_path: Path,
    iterations: int,
    console: Console,
) -> str:
    """Show the parties' output and the progress until every stream closes.

    Returns the last ``iter:`` line a worker printed.
    """
    open_streams = set(procs)
    last_line = ""
    offset = 0
    workers = [proc for name, proc in procs.items() if name != "ps"]
    ps_deadline: float | None = None
    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("train", total=iterations, status="")
        while open_streams:
            try:
                name, line = lines.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                if line is None:
                    open_streams.discard(name)
                elif not (name == "ps" and line.startswith("iter:")):
                    # The PS's own iter lines repeat the workers'; they stay in its log.
                    bar.console.print(_style(name, line), highlight=False, markup=True)
                    if line.startswith("iter:"):
                        last_line = line
            offset = _update_bar(bar, task, metrics_path, offset)
            ps = procs["ps"]
            if ps_deadline is None and all(w.poll() is not None for w in workers):
                # Every worker has gone: the PS would only wait out its deadlines.
                ps_deadline = time.monotonic() + _PS_GRACE_S
            if ps_deadline is not None and ps.poll() is None and time.monotonic() > ps_deadline:
                bar.console.print(
                    "[yellow]every worker has exited and the PS is still waiting: stopping it"
                    "[/yellow]"
                )
                ps.terminate()
                ps_deadline = math.inf
        _update_bar(bar, task, metrics_path, offset)
    return last_line


def _update_bar(bar: Progress, task: TaskID, path: Path, offset: int) -> int:
    if not path.is_file():
        return offset
    with path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    for raw in chunk[:end].splitlines():
        record = json.loads(raw)
        if record.get("event") == "round":
            bar.update(task, completed=record["iteration"] + 1)
        elif record.get("event") == "evaluation":
            bar.update(
                task,
                status=f"acc {record['accuracy']:.3f} loss {record['loss']:.3f}",
            )
    return offset + end


def _drain(
    lines: queue.Queue[tuple[str, str | None]],
    console: Console,
    procs: dict[str, subprocess.Popen[str]],
) -> None:
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

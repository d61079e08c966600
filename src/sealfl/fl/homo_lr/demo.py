"""``sealfl demo homo-lr``: a whole federation on this machine, as separate processes.

The demo plays the operator of every party: it creates a simulated TEE platform in a run
directory, writes one policy per role (workers trust the PS's measurement, the PS trusts the
workers'), the breast-cancer splits from the package and one role config per party, then starts
each party as ``sealfl run --config <role>.toml`` on loopback, as a deployment would, and shows
their output with a progress bar driven by the PS's JSON-lines metrics. The PS listens on a
free port; the workers learn it the way a host tells a party where its peers are, through
``SEALFL_PEERS``. Nothing is shared between the processes but files the demo wrote before they
started and the network.
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
from sealfl.errors import ConfigError, SealError
from sealfl.fl.homo_lr.algorithm import PRESETS
from sealfl.fl.homo_lr.launch import (
    ADDRESS_FILE,
    MODEL_FILE,
    PS_METRICS_FILE,
    RELEASE_FILE,
    role_measurement,
)
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.runtime import LISTEN_ENV, PEERS_ENV
from sealfl.seal import ReleaseKey, open_release
from sealfl.tee import SimulatedPlatform

_SPLITS_BY_WORKER = ("homo_guest", "homo_host")
OWNER = "model-owner"
"""The release recipient the demo plays: the model owner's trusted node."""
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


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def role_config_toml(
    role: str,
    *,
    policy: str,
    options: Mapping[str, str | int | float],
    peers: bool,
    release: str | None = None,
) -> str:
    """Return a simulated-TEE role config for ``role`` (``sealfl run --config``).

    Paths in ``options`` must already be relative to the run directory, where the file goes.
    """
    lines = [
        "# Written by `sealfl homo-lr prepare` / `sealfl demo homo-lr`. On SGX or TDX, set",
        '# kind = "gramine-sgx" or "tdx", drop simulated_platform, and point the policy at',
        "# your peers' real identities (`sealfl attest policy-from-sig`).",
        'workload = "homo-lr"',
        f"role = {_toml_string(role)}",
        "",
        "[tee]",
        'kind = "simulated"',
        'simulated_platform = "platform"',
        "",
        "[attestation]",
        f"policy = {_toml_string(policy)}",
        "",
    ]
    if release is not None:
        lines += ["[release]", f"policy = {_toml_string(release)}", ""]
    if peers:
        lines += ["[peers]", 'ps = "127.0.0.1:50070"      # or SEALFL_PEERS=ps=HOST:PORT', ""]
    else:
        lines += ["[listen]", 'address = "127.0.0.1:50070"  # or SEALFL_LISTEN=HOST:PORT', ""]
    lines.append("[options]")
    for key, value in options.items():
        rendered = _toml_string(value) if isinstance(value, str | Path) else repr(value)
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def write_role_configs(
    run_dir: Path,
    paths: Mapping[str, Path],
    *,
    workers: int,
    iterations: int,
    preset: str,
    key_bits: int = 2048,
    round_deadline_s: float = 60.0,
    ps_cores: int | None = None,
    worker_cores: int | None = None,
) -> dict[str, Path]:
    """Write ``ps.toml`` and ``worker-K.toml`` into ``run_dir``; return them by party name.

    The PS's config holds the federation's training settings (the preset's, with ``iterations``
    of them), and every worker's declares the same.
    """
    hp = PRESETS[preset]
    settings: dict[str, str | int | float] = {
        "epochs": iterations,
        "learning_rate": hp.learning_rate,
        "alpha": hp.alpha,
        "schedule": hp.schedule.value,
    }

    def rel(path: Path) -> str:
        return str(path.relative_to(run_dir))

    ps_options: dict[str, str | int | float] = {
        "worker_num": workers,
        "validate_set": rel(paths["test"]),
        **settings,
        "key_bits": key_bits,
        "out": "ps",
        "round_deadline": round_deadline_s,
    }
    if ps_cores is not None:
        ps_options["cores"] = ps_cores
    configs = {"ps": run_dir / "ps.toml"}
    text = role_config_toml(
        "ps",
        policy=rel(paths["policy-ps"]),
        options=ps_options,
        peers=False,
        release=rel(paths["release"]),
    )
    write_atomic(configs["ps"], text.encode("utf-8"), mode=0o644)
    for k in range(1, workers + 1):
        worker: dict[str, str | int | float] = {
            "train_set": rel(paths[f"train-{k}"]),
            "id": k,
            **settings,
            "metrics": f"worker-{k}_metrics.jsonl",
            "seat_file": f"worker-{k}.seat",
        }
        if worker_cores is not None:
            worker["cores"] = worker_cores
        configs[f"worker {k}"] = run_dir / f"worker-{k}.toml"
        text = role_config_toml(
            "worker", policy=rel(paths["policy-worker"]), options=worker, peers=True
        )
        write_atomic(configs[f"worker {k}"], text.encode("utf-8"), mode=0o644)
    return configs


def prepare_run_dir(
    run_dir: Path, *, workers: int, measurements: Mapping[str, bytes] | None = None
) -> dict[str, Path]:
    """Create the platform, policies, the owner's release key and the data; return their paths.

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
    owner_key, owner_public = ReleaseKey.generate(name=OWNER).save(run_dir / "owner")
    paths |= {"owner-key": owner_key, "release": run_dir / "release.toml"}
    release = (
        "# Written by `sealfl demo homo-lr`: who can open the trained model (sealfl model open).\n"
        f'[[recipient]]\nname = "{OWNER}"\npublic_key = "{owner_public.relative_to(run_dir)}"\n'
    )
    write_atomic(paths["release"], release.encode("utf-8"), mode=0o644)
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
    configs = write_role_configs(
        run_dir,
        paths,
        workers=options.workers,
        iterations=iterations,
        preset=options.preset,
        key_bits=options.key_bits,
        round_deadline_s=options.round_deadline_s,
        ps_cores=options.ps_cores,
        worker_cores=options.worker_cores,
    )
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    ps_out = run_dir / "ps"
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    procs: dict[str, subprocess.Popen[str]] = {}
    started = time.monotonic()
    last_line = ""
    try:
        procs["ps"] = _spawn("ps", configs["ps"], logs, lines, {LISTEN_ENV: "127.0.0.1:0"})
        address = _wait_for_address(ps_out / ADDRESS_FILE, procs["ps"], console)
        if address is None:
            _drain(lines, console, procs)
            return procs["ps"].wait() or 1
        for k in range(1, options.workers + 1):
            name = f"worker {k}"
            procs[name] = _spawn(name, configs[name], logs, lines, {PEERS_ENV: f"ps={address}"})
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
        return show_release(ps_out / RELEASE_FILE, paths["owner-key"], run_dir, console)
    failed = ", ".join(f"{name} (exit {code})" for name, code in codes.items() if code != 0)
    console.rule("[red]failed")
    console.print(f"{failed}; see the logs in {logs}")
    return 1


def show_release(envelope: Path, owner_key: Path, run_dir: Path, console: Console) -> int:
    """Open the released model as its owner (trusted node), then show an outsider refused.

    Returns 0 when the owner opened it and the outsider was refused, 1 otherwise.
    """
    opened = run_dir / "owner" / "homo_lr_model.pb"
    info = open_release(envelope, opened, private_key=ReleaseKey.load(owner_key))
    model = pb.TrainedModel.FromString(opened.read_bytes())
    console.print(
        f"release: the model owner opened {envelope.name} offline with its own key: "
        f"{len(model.weights)} weights, {model.iterations_done} iterations "
        f"({info.model_bytes} bytes) -> {opened}"
    )
    outsider = ReleaseKey.generate(name="untrusted-node")
    try:
        open_release(envelope, run_dir / "untrusted.pb", private_key=outsider)
    except SealError as exc:
        console.print(f"release: an untrusted node's key is refused: {escape(str(exc))}")
        return 0
    console.print("[red]release: an untrusted node opened the model[/red]")
    return 1


def _spawn(
    name: str,
    config: Path,
    logs: Path,
    lines: queue.Queue[tuple[str, str | None]],
    addresses: Mapping[str, str],
) -> subprocess.Popen[str]:
    """Start ``sealfl run --config CONFIG``, telling it only addresses through the environment."""
    log = (logs / f"{name.replace(' ', '-')}.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealfl.cli.main", "run", "--config", str(config)],
        env={**os.environ, **addresses},
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

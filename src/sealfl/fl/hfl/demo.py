"""``sealfl hfl prepare`` and ``sealfl demo hfl``: a whole federation on this machine.

:func:`prepare_run_dir` plays the operator of every party: a simulated TEE platform, one policy
per role (workers trust the PS's measurement, the PS the workers'), the model owner's release
key and the release list, the data split into one shard per worker plus the PS's test set
(:func:`write_data`), and one role config per party (:func:`write_role_configs`).

:func:`run_demo` then starts each party as ``sealfl run --config <role>.toml`` on loopback, as a
deployment would; the PS listens on a free port and the workers learn it through
``SEALFL_PEERS``. It shows the parties' output with a progress bar driven by the PS's JSON-lines
metrics, then plays the model owner: it opens the release envelope offline with the owner's key
and evaluates the model it got, and shows that an outsider's key is refused.
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
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from sealfl._files import write_atomic
from sealfl.data import (
    ImageSet,
    load_cifar10,
    load_digits_split,
    partition_dirichlet,
    partition_iid,
    write_shards,
)
from sealfl.data.shards import INDEX_NAME, shard_name
from sealfl.errors import ConfigError, SealError
from sealfl.fl.hfl.launch import (
    ADDRESS_FILE,
    MODEL_LABEL,
    PS_METRICS_FILE,
    RELEASE_FILE,
    role_measurement,
)
from sealfl.fl.hfl.metrics import read_metrics
from sealfl.fl.hfl.model_file import evaluate_trained_model
from sealfl.fl.hfl.settings import Settings
from sealfl.runtime import LISTEN_ENV, PEERS_ENV
from sealfl.seal import ReleaseKey, open_release
from sealfl.tee import SimulatedPlatform

__all__ = [
    "DATASETS",
    "OWNER",
    "DemoOptions",
    "check_split",
    "digits_channels",
    "prepare_run_dir",
    "run_demo",
    "write_data",
    "write_role_configs",
]

OWNER = "model-owner"
"""The release recipient the demo plays: the model owner's trusted node."""
DATASETS = ("digits", "cifar10")
PARTITIONS = ("iid", "dirichlet")
TARGET_ACCURACY = 0.97
"""What the demo must reach on digits by round 10 (issue 11)."""
_START_TIMEOUT_S = 120.0
_PS_GRACE_S = 30.0


def digits_channels(model: str) -> int:
    """Channels digits are given for ``model``: 3 for the CIFAR ResNets (3x8x8), else 1."""
    return 3 if model.startswith("resnet") else 1


def _toml(value: Any) -> str:
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def simulated_policy_toml(measurement: bytes, platform_fingerprint: str) -> str:
    """Return a policy (TOML) trusting one simulated identity on one simulated platform."""
    return (
        "# Written by `sealfl hfl prepare`: accept only simulated evidence from this run's\n"
        "# platform, with the measurement of the peer's role.\n"
        "max_evidence_age_seconds = 3600\n\n"
        "[simulated]\n"
        "allow = true\n"
        f'measurements = ["{measurement.hex()}"]\n'
        f'platform_fingerprints = ["{platform_fingerprint}"]\n'
    )


def prepare_run_dir(
    run_dir: Path, *, measurements: Mapping[str, bytes] | None = None
) -> dict[str, Path]:
    """Create the platform, the policies, the owner's release key and the release list.

    Parameters
    ----------
    run_dir
        Directory to fill (created if missing).
    measurements
        Expected measurement per role (``"ps"``, ``"worker"``); by default
        :func:`~sealfl.fl.hfl.launch.role_measurement` of the code this process loaded.
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
    owner_dir = run_dir / "owner"
    owner_key = owner_dir / f"{OWNER}.key"
    if owner_key.is_file():
        owner_public = owner_dir / f"{OWNER}.pub"
    else:
        owner_key, owner_public = ReleaseKey.generate(name=OWNER).save(owner_dir)
    paths |= {"owner-key": owner_key, "release": run_dir / "release.toml"}
    release = (
        "# Written by `sealfl hfl prepare`: who can open the trained model (sealfl model open).\n"
        f'[[recipient]]\nname = "{OWNER}"\npublic_key = "{owner_public.relative_to(run_dir)}"\n'
    )
    write_atomic(paths["release"], release.encode("utf-8"), mode=0o644)
    return paths


def check_split(*, workers: int, dataset: str, partition: str, alpha: float) -> None:
    """Refuse a data set, split or count that :func:`write_data` could not use.

    Called before anything is created, so bad options leave no half-written run directory.

    Raises
    ------
    ConfigError
        Naming the option.
    """
    if dataset not in DATASETS:
        raise ConfigError(f"--dataset: expected one of {list(DATASETS)}, got {dataset!r}")
    if partition not in PARTITIONS:
        raise ConfigError(f"--partition: expected one of {list(PARTITIONS)}, got {partition!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"--alpha must be a positive number, got {alpha}")
    if not 1 <= workers <= 1024:
        raise ConfigError(f"--workers: expected 1 to 1024, got {workers}")


def write_data(
    run_dir: Path,
    *,
    workers: int,
    dataset: str = "digits",
    data_dir: Path | None = None,
    partition: str = "iid",
    alpha: float = 0.3,
    seed: int = 0,
    channels: int = 1,
) -> dict[str, Path]:
    """Split the training set into one shard per worker and write the PS's test set.

    Returns ``{"shard-K": ..., "test": ..., "index": ...}`` (K from 1). Each worker gets only
    its own file; ``data/shards/shards.json`` records the recipe and the class counts.

    Raises
    ------
    ConfigError
        If the data set, partition or a count is unknown or out of range, or the CIFAR-10
        directory is unusable.
    """
    check_split(workers=workers, dataset=dataset, partition=partition, alpha=alpha)
    train: ImageSet
    test: ImageSet
    if dataset == "digits":
        train, test = load_digits_split(channels=channels)
    else:
        if data_dir is None:
            raise ConfigError(
                "--data-dir: CIFAR-10 is read from its binary distribution "
                "(cifar-10-batches-bin); give its directory"
            )
        train, test = load_cifar10(data_dir, "train"), load_cifar10(data_dir, "test")
    if partition == "iid":
        split = partition_iid(train.labels, workers, seed=seed)
    else:
        split = partition_dirichlet(train.labels, workers, alpha=alpha, seed=seed)
    shards = run_dir / "data" / "shards"
    written = write_shards(train, split, shards)
    test_dir = run_dir / "data" / "test"
    write_shards(test, partition_iid(test.labels, 1, seed=0), test_dir)
    paths = {f"shard-{k + 1}": path for k, path in enumerate(written)}
    paths["test"] = test_dir / shard_name(0, 1)
    paths["index"] = shards / INDEX_NAME
    return paths


def _role_config(
    role: str,
    *,
    policy: str,
    options: Mapping[str, Any],
    peers: bool,
    release: str | None = None,
) -> str:
    lines = [
        "# Written by `sealfl hfl prepare` / `sealfl demo hfl`. On SGX or TDX, set",
        '# kind = "gramine-sgx" or "tdx", drop simulated_platform, and point the policy at',
        "# your peers' real identities (`sealfl attest policy-from-sig`).",
        'workload = "hfl"',
        f"role = {_toml(role)}",
        "",
        "[tee]",
        'kind = "simulated"',
        'simulated_platform = "platform"',
        "",
        "[attestation]",
        f"policy = {_toml(policy)}",
        "",
    ]
    if release is not None:
        lines += ["[release]", f"policy = {_toml(release)}", ""]
    if peers:
        lines += ["[peers]", 'ps = "127.0.0.1:50080"      # or SEALFL_PEERS=ps=HOST:PORT', ""]
    else:
        lines += ["[listen]", 'address = "127.0.0.1:50080"  # or SEALFL_LISTEN=HOST:PORT', ""]
    lines.append("[options]")
    lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def write_role_configs(
    run_dir: Path,
    paths: Mapping[str, Path],
    *,
    workers: int,
    settings: Settings,
    ps_options: Mapping[str, Any] | None = None,
    worker_options: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``ps.toml`` and ``worker-K.toml`` into ``run_dir``; return them by party name.

    Every config spells out all the settings, so each party's file says exactly what it
    trains with (and the PS's are the federation's).
    """

    def rel(path: Path) -> str:
        return str(path.relative_to(run_dir))

    spelled = {"preset": "demo", **settings.as_dict()}
    ps: dict[str, Any] = {
        "test_set": rel(paths["test"]),
        "worker_num": workers,
        "out": "ps",
        **(ps_options or {}),
        **spelled,
    }
    configs = {"ps": run_dir / "ps.toml"}
    text = _role_config(
        "ps", policy=rel(paths["policy-ps"]), options=ps, peers=False, release=rel(paths["release"])
    )
    write_atomic(configs["ps"], text.encode("utf-8"), mode=0o644)
    for k in range(1, workers + 1):
        worker: dict[str, Any] = {
            "shard": rel(paths[f"shard-{k}"]),
            "id": k,
            "metrics": f"worker-{k}_metrics.jsonl",
            "seat_file": f"worker-{k}.seat",
            **(worker_options or {}),
            **spelled,
        }
        configs[f"worker {k}"] = run_dir / f"worker-{k}.toml"
        text = _role_config(
            "worker", policy=rel(paths["policy-worker"]), options=worker, peers=True
        )
        write_atomic(configs[f"worker {k}"], text.encode("utf-8"), mode=0o644)
    return configs


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Options of ``sealfl demo hfl``.

    Raises
    ------
    ConfigError
        If a count, the partition or alpha is out of range.
    """

    workers: int = 2
    settings: Settings
    partition: str = "iid"
    alpha: float = 0.3
    partition_seed: int = 0
    run_dir: Path | None = None
    round_deadline_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 16:
            raise ConfigError(f"--workers: expected 1 to 16, got {self.workers}")
        check_split(
            workers=self.workers, dataset="digits", partition=self.partition, alpha=self.alpha
        )
        if not (math.isfinite(self.round_deadline_s) and self.round_deadline_s > 0):
            raise ConfigError(f"--round-deadline must be positive, got {self.round_deadline_s}")


def run_demo(options: DemoOptions, *, console: Console) -> int:
    """Run the federation and show it; return the exit status (0 when training completed)."""
    s = options.settings
    run_dir = options.run_dir or Path("hfl-demo") / time.strftime("%Y%m%d-%H%M%S")
    split = "IID" if options.partition == "iid" else f"Dirichlet({options.alpha:g})"
    console.rule("[bold]sealfl demo hfl")
    console.print(
        f"digits, {options.workers} workers ({split}) · {s.describe()} · simulated TEE\n"
        f"run directory: {run_dir}"
    )
    paths = prepare_run_dir(run_dir)
    paths |= write_data(
        run_dir,
        workers=options.workers,
        partition=options.partition,
        alpha=options.alpha,
        seed=options.partition_seed,
        channels=digits_channels(s.model),
    )
    _show_split(paths["index"], console)
    configs = write_role_configs(
        run_dir,
        paths,
        workers=options.workers,
        settings=s,
        ps_options={"round_deadline": options.round_deadline_s},
        worker_options={"wait_for_server": 30.0},
    )
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    ps_out = run_dir / "ps"
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    procs: dict[str, subprocess.Popen[str]] = {}
    started = time.monotonic()
    try:
        procs["ps"] = _spawn("ps", configs["ps"], logs, lines, {LISTEN_ENV: "127.0.0.1:0"})
        address = _wait_for_address(ps_out / ADDRESS_FILE, procs["ps"], console)
        if address is None:
            _drain(lines, console, procs)
            return procs["ps"].wait() or 1
        for k in range(1, options.workers + 1):
            name = f"worker {k}"
            procs[name] = _spawn(name, configs[name], logs, lines, {PEERS_ENV: f"ps={address}"})
        _follow(procs, lines, ps_out / PS_METRICS_FILE, s.rounds, console)
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
    elapsed = time.monotonic() - started
    codes = {name: proc.returncode for name, proc in procs.items()}
    if any(code != 0 for code in codes.values()):
        failed = ", ".join(f"{name} (exit {code})" for name, code in codes.items() if code)
        console.rule("[red]failed")
        console.print(f"{failed}; see the logs in {logs}")
        return 1
    console.rule("[green]done")
    _summary(ps_out / PS_METRICS_FILE, elapsed, console)
    console.print(
        f"metrics: {ps_out / PS_METRICS_FILE}, {run_dir}/worker-K_metrics.jsonl; logs: {logs}\n"
        f"curves: sealfl hfl report {run_dir}"
    )
    return show_release(ps_out / RELEASE_FILE, paths["owner-key"], paths["test"], run_dir, console)


def _show_split(index: Path, console: Console) -> None:
    doc = json.loads(index.read_text(encoding="utf-8"))
    for k, shard in enumerate(doc["shards"], start=1):
        counts = " ".join(str(c) for c in shard["class_counts"])
        console.print(f"worker {k}: {shard['num_examples']} examples, per class [{counts}]")


def _summary(metrics: Path, elapsed: float, console: Console) -> None:
    records = list(read_metrics(metrics))
    evaluations = [r for r in records if r.get("event") == "evaluation"]
    rounds = [r for r in records if r.get("event") == "round"]
    accuracy = " ".join(f"{r['accuracy']:.3f}" for r in evaluations)
    console.print(f"test accuracy per round: {accuracy}")
    reached = next((r["round"] for r in evaluations if r["accuracy"] >= TARGET_ACCURACY), None)
    if reached is not None:
        console.print(f"reached {TARGET_ACCURACY:.0%} at round {reached}")
    else:
        console.print(f"[yellow]did not reach {TARGET_ACCURACY:.0%}[/yellow]")
    if rounds:
        overheads = sorted(r["overhead_s"] for r in rounds[1:] or rounds)
        median = overheads[len(overheads) // 2]
        console.print(
            f"wall time {elapsed:.1f} s; median round overhead {1000 * median:.0f} ms "
            "(round wall time minus the slowest worker's training)"
        )


def show_release(
    envelope: Path, owner_key: Path, test_set: Path, run_dir: Path, console: Console
) -> int:
    """Open the released model as its owner and evaluate it; show an outsider refused.

    Returns 0 when the owner opened it and the outsider was refused, 1 otherwise.
    """
    opened = run_dir / "owner" / "hfl_model.pb"
    info = open_release(envelope, opened, private_key=ReleaseKey.load(owner_key), label=MODEL_LABEL)
    result = evaluate_trained_model(opened.read_bytes(), test_set)
    console.print(
        f"release: the model owner opened {envelope.name} offline with its own key "
        f"({info.model_bytes:,} bytes) and evaluated it: test accuracy {result.accuracy:.4f}"
    )
    outsider = ReleaseKey.generate(name="untrusted-node")
    try:
        open_release(envelope, run_dir / "untrusted.pb", private_key=outsider)
    except SealError as exc:
        console.print(f"release: an untrusted node's key is refused: {escape(str(exc))}")
        return 0
    console.print("[red]release: an untrusted node opened the model[/red]")
    return 1


# ---- processes ---------------------------------------------------------------------------


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
        env={**os.environ, **addresses, "PYTHONUNBUFFERED": "1"},
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
    with console.status("starting the parameter server…"):
        while time.monotonic() < deadline:
            if path.is_file():
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    return text
            if ps.poll() is not None:
                return None
            time.sleep(0.05)
    console.print(f"[red]the PS did not start listening within {_START_TIMEOUT_S:g} s[/red]")
    return None


def _style(name: str, line: str) -> str:
    colour = "magenta" if name == "ps" else ("cyan" if name.endswith("1") else "green")
    return f"[{colour}]{name:>8}[/{colour}] │ {escape(line)}"


def _follow(
    procs: dict[str, subprocess.Popen[str]],
    lines: queue.Queue[tuple[str, str | None]],
    metrics_path: Path,
    rounds: int,
    console: Console,
) -> None:
    """Show the parties' output and the progress until every stream closes."""
    open_streams = set(procs)
    offset = 0
    workers = [proc for name, proc in procs.items() if name != "ps"]
    ps_deadline: float | None = None
    with Progress(
        TextColumn("[bold]rounds"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("train", total=rounds, status="")
        while open_streams:
            try:
                name, line = lines.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                if line is None:
                    open_streams.discard(name)
                else:
                    bar.console.print(_style(name, line), highlight=False, markup=True)
            offset = _update_bar(bar, task, metrics_path, offset)
            ps = procs["ps"]
            if ps_deadline is None and all(w.poll() is not None for w in workers):
                ps_deadline = time.monotonic() + _PS_GRACE_S
            if ps_deadline is not None and ps.poll() is None and time.monotonic() > ps_deadline:
                bar.console.print("[yellow]every worker has exited: stopping the PS[/yellow]")
                ps.terminate()
                ps_deadline = float("inf")
        _update_bar(bar, task, metrics_path, offset)


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
            bar.update(task, completed=record["round"])
        elif record.get("event") == "evaluation":
            bar.update(task, status=f"acc {record['accuracy']:.4f} loss {record['loss']:.4f}")
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

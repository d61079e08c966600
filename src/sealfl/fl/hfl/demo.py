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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

from sealfl.data import (
    ImageSet,
    load_cifar10,
    load_digits_split,
    partition_dirichlet,
    partition_iid,
    write_shards,
)
from sealfl.data.shards import INDEX_NAME, shard_name
from sealfl.errors import ConfigError
from sealfl.fl.common.demo_files import OWNER, write_operator_files, write_party_configs
from sealfl.fl.common.demo_processes import PartiesView, run_parties
from sealfl.fl.common.demo_release import show_outsider_refused
from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.hfl.launch import (
    ADDRESS_FILE,
    MODEL_LABEL,
    PS_METRICS_FILE,
    RELEASE_FILE,
    role_measurement,
)
from sealfl.fl.hfl.model_file import evaluate_trained_model
from sealfl.fl.hfl.settings import Settings
from sealfl.seal import ReleaseKey, open_release

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

DATASETS = ("digits", "cifar10")
PARTITIONS = ("iid", "dirichlet")
TARGET_ACCURACY = 0.97
"""What the demo must reach on digits by round 10 (issue 11)."""
_WRITTEN_BY = "sealfl hfl prepare"
_EXAMPLE_PORT = 50080
_PS_GRACE_S = 30.0


def digits_channels(model: str) -> int:
    """Channels digits are given for ``model``: 3 for the CIFAR ResNets (3x8x8), else 1."""
    return 3 if model.startswith("resnet") else 1


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
    return write_operator_files(
        run_dir, measurements=expected, written_by=_WRITTEN_BY, reuse_owner_key=True
    )


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
    worker = [
        {
            "shard": rel(paths[f"shard-{k}"]),
            "id": k,
            "metrics": f"worker-{k}_metrics.jsonl",
            "seat_file": f"worker-{k}.seat",
            **(worker_options or {}),
            **spelled,
        }
        for k in range(1, workers + 1)
    ]
    return write_party_configs(
        run_dir, paths, workload="hfl", port=_EXAMPLE_PORT, ps=ps, workers=worker
    )


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
    secure_aggregation: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 16:
            raise ConfigError(f"--workers: expected 1 to 16, got {self.workers}")
        check_split(
            workers=self.workers, dataset="digits", partition=self.partition, alpha=self.alpha
        )
        if not (math.isfinite(self.round_deadline_s) and self.round_deadline_s > 0):
            raise ConfigError(f"--round-deadline must be positive, got {self.round_deadline_s}")
        if self.secure_aggregation and self.workers < 2:
            raise ConfigError("--secure-aggregation needs at least 2 workers (--workers)")


def run_demo(options: DemoOptions, *, console: Console) -> int:
    """Run the federation and show it; return the exit status (0 when training completed)."""
    s = options.settings
    run_dir = options.run_dir or Path("hfl-demo") / time.strftime("%Y%m%d-%H%M%S")
    split = "IID" if options.partition == "iid" else f"Dirichlet({options.alpha:g})"
    console.rule("[bold]sealfl demo hfl")
    secure = " · secure aggregation" if options.secure_aggregation else ""
    console.print(
        f"digits, {options.workers} workers ({split}) · {s.describe()} · simulated TEE{secure}\n"
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
        ps_options={
            "round_deadline": options.round_deadline_s,
            **({"secure_aggregation": True} if options.secure_aggregation else {}),
        },
        worker_options={
            "wait_for_server": 30.0,
            **({"secure_aggregation": True} if options.secure_aggregation else {}),
        },
    )
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    ps_out = run_dir / "ps"
    view = PartiesView(
        starting="starting the parameter server…",
        poll_s=0.05,
        label="rounds",
        total=s.rounds,
        on_record=_show_record,
        grace_s=_PS_GRACE_S,
        grace_message="[yellow]every worker has exited: stopping the PS[/yellow]",
    )
    started = time.monotonic()
    outcome = run_parties(
        configs,
        workers=options.workers,
        logs=logs,
        address_file=ps_out / ADDRESS_FILE,
        metrics_file=ps_out / PS_METRICS_FILE,
        view=view,
        console=console,
        env={"PYTHONUNBUFFERED": "1"},
    )
    if outcome.early_exit is not None:
        return outcome.early_exit
    elapsed = time.monotonic() - started
    codes = outcome.codes
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
    return show_outsider_refused(envelope, run_dir, console)


def _show_record(bar: Progress, task: TaskID, record: Mapping[str, Any]) -> None:
    if record.get("event") == "round":
        bar.update(task, completed=record["round"])
    elif record.get("event") == "evaluation":
        bar.update(task, status=f"acc {record['accuracy']:.4f} loss {record['loss']:.4f}")

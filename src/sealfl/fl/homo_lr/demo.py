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

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

from sealfl.data import Dataset, breast, write_fate_csv
from sealfl.errors import ConfigError
from sealfl.fl.common import demo_files
from sealfl.fl.common.demo_files import OWNER, write_operator_files, write_party_configs
from sealfl.fl.common.demo_processes import PartiesView, run_parties
from sealfl.fl.common.demo_release import show_outsider_refused
from sealfl.fl.homo_lr.algorithm import PRESETS
from sealfl.fl.homo_lr.launch import (
    ADDRESS_FILE,
    MODEL_FILE,
    PS_METRICS_FILE,
    RELEASE_FILE,
    role_measurement,
)
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.seal import ReleaseKey, open_release

__all__ = [
    "OWNER",
    "DemoOptions",
    "FederationData",
    "prepare_run_dir",
    "role_config_toml",
    "run_demo",
    "show_release",
    "simulated_policy_toml",
    "write_role_configs",
]

_SPLITS_BY_WORKER = ("homo_guest", "homo_host")
_WRITTEN_BY = "sealfl demo homo-lr"
_EXAMPLE_PORT = 50070
_PS_GRACE_S = 15.0
"""How long the PS may go on after every worker has exited (it normally exits at once)."""


@dataclass(frozen=True)
class FederationData:
    """Other data than the breast splits: one training set per worker and the PS's test set.

    For benchmarks that vary the number of workers or of features (``sealfl bench homo-lr``);
    every set must have the same feature columns.
    """

    train: tuple[Dataset, ...]
    test: Dataset


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Options of ``sealfl demo homo-lr``.

    Raises
    ------
    ConfigError
        If the number of workers is not 1 or 2 (the breast data have two training splits) or,
        with ``data``, not its number of training sets; or the preset is unknown.
    """

    workers: int = 2
    preset: str = "accurate"
    epochs: int | None = None
    key_bits: int = 2048
    run_dir: Path | None = None
    round_deadline_s: float = 60.0
    worker_cores: int | None = 1
    ps_cores: int | None = None
    data: FederationData | None = None

    def __post_init__(self) -> None:
        if self.data is not None:
            if self.workers != len(self.data.train):
                raise ConfigError(
                    f"--workers: {len(self.data.train)} training sets given, got {self.workers}"
                )
        elif not 1 <= self.workers <= len(_SPLITS_BY_WORKER):
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
    return demo_files.simulated_policy_toml(
        measurement, platform_fingerprint, written_by=_WRITTEN_BY
    )


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
    return demo_files.role_config_toml(
        role,
        workload="homo-lr",
        port=_EXAMPLE_PORT,
        policy=policy,
        options=options,
        peers=peers,
        release=release,
    )


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
    worker_options = []
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
        worker_options.append(worker)
    return write_party_configs(
        run_dir,
        paths,
        workload="homo-lr",
        port=_EXAMPLE_PORT,
        ps=ps_options,
        workers=worker_options,
    )


def prepare_run_dir(
    run_dir: Path,
    *,
    workers: int,
    measurements: Mapping[str, bytes] | None = None,
    data: FederationData | None = None,
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
    data
        The sets to write instead of the breast splits (``workers`` of them for training).
    """
    expected = measurements or {role: role_measurement(role) for role in ("ps", "worker")}
    paths = write_operator_files(
        run_dir, measurements=expected, written_by=_WRITTEN_BY, reuse_owner_key=False
    )
    folder = run_dir / "data"
    if data is not None:
        paths["test"] = write_fate_csv(data.test, folder / "test.csv")
        for k, train in enumerate(data.train[:workers], start=1):
            paths[f"train-{k}"] = write_fate_csv(train, folder / f"train-{k}.csv")
        return paths
    paths["test"] = breast.write_split("homo_test", folder / "breast_homo_test.csv")
    for k in range(workers):
        split = _SPLITS_BY_WORKER[k]
        paths[f"train-{k + 1}"] = breast.write_split(split, folder / f"breast_{split}.csv")
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
    paths = prepare_run_dir(run_dir, workers=options.workers, data=options.data)
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
    shown = _ShownLines()
    view = PartiesView(
        starting="starting the parameter server (Paillier key generation in the TEE)…",
        poll_s=0.1,
        label="training",
        total=iterations,
        on_record=_show_record,
        show_line=shown.show,
        time_remaining=True,
        grace_s=_PS_GRACE_S,
        grace_message=(
            "[yellow]every worker has exited and the PS is still waiting: stopping it[/yellow]"
        ),
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
    )
    if outcome.early_exit is not None:
        return outcome.early_exit
    codes = outcome.codes
    last_line = shown.last_iteration
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
    return show_outsider_refused(envelope, run_dir, console)


class _ShownLines:
    """Which parties' lines the demo prints, remembering the last ``iter:`` line shown."""

    def __init__(self) -> None:
        self.last_iteration = ""

    def show(self, name: str, line: str) -> bool:
        if name == "ps" and line.startswith("iter:"):
            # The PS's own iter lines repeat the workers'; they stay in its log.
            return False
        if line.startswith("iter:"):
            self.last_iteration = line
        return True


def _show_record(bar: Progress, task: TaskID, record: Mapping[str, Any]) -> None:
    if record.get("event") == "round":
        bar.update(task, completed=record["iteration"] + 1)
    elif record.get("event") == "evaluation":
        bar.update(
            task,
            status=f"acc {record['accuracy']:.3f} loss {record['loss']:.3f}",
        )

"""``sealfl vfl prepare`` and ``sealfl demo vfl``: a leader and a follower on this machine.

:func:`prepare_run_dir` plays the operator of both parties: a simulated TEE platform, one policy
per role (the leader trusts the follower's measurement, the follower the leader's), each
party's data as a CSV with an id column (:func:`write_data`; each side also holds a few rows
the other lacks, so the PSI has something to do), and one role config per party
(:func:`write_role_configs`).

:func:`run_demo` starts both as ``sealfl run --config <role>.toml`` on loopback (the leader on a
free port, the follower told its address through ``SEALFL_PEERS``), shows their output with a
progress bar fed by the leader's metrics, then runs joint prediction on the test split from the
two sealed halves and prints the test AUC and the leak report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress, TaskID

from sealfl.data.vertical import (
    PartyData,
    VerticalPair,
    breast_hetero,
    digits_vertical,
    wide_deep_learnable,
    wide_deep_reference,
    write_party_csv,
)
from sealfl.errors import ConfigError
from sealfl.fl.common.demo_files import role_config_toml, write_operator_files
from sealfl.fl.common.demo_processes import PartiesView, run_parties
from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.vfl.launch import ADDRESS_FILE, LEADER_METRICS_FILE, role_measurement
from sealfl.fl.vfl.roles import settings_of
from sealfl.fl.vfl.settings import PRESETS, VflSettings

__all__ = [
    "DATASETS",
    "GENERATED",
    "MAX_ROWS",
    "DemoOptions",
    "check_rows",
    "prepare_run_dir",
    "run_demo",
    "write_data",
    "write_role_configs",
]

DATASETS = {
    "breast": "FATE's breast hetero split (455 train, 114 test rows)",
    "digits": "scikit-learn digits, left and right halves",
    "reference": "the reference's random wide-and-deep rows (2,000)",
    "default": "wide-and-deep rows with a learnable label",
}
"""The data set each preset trains on."""
TARGET_AUC = 0.985
"""What the breast demo must reach on the test split (issue 12)."""
_WRITTEN_BY = "sealfl vfl prepare"
_EXAMPLE_PORT = 50090
_ROLES = ("leader", "follower")


def prepare_run_dir(
    run_dir: Path, *, measurements: Mapping[str, bytes] | None = None
) -> dict[str, Path]:
    """Create the simulated platform and one policy per role (and the owner's release files).

    Parameters
    ----------
    measurements
        Expected measurement per role (``"leader"``, ``"follower"``); by default
        :func:`~sealfl.fl.vfl.launch.role_measurement` of the code this process loaded.
    """
    expected = measurements or {role: role_measurement(role) for role in _ROLES}
    return write_operator_files(
        run_dir,
        measurements=expected,
        written_by=_WRITTEN_BY,
        reuse_owner_key=True,
        roles=_ROLES,
    )


GENERATED = ("reference", "default")
"""The presets whose rows are generated, so ``--rows`` applies."""
MAX_ROWS = 1_000_000
"""The most generated rows (1 KiB of slot ids per row and party, written out as CSV)."""


def check_rows(preset: str, rows: int | None, settings: VflSettings) -> None:
    """Refuse a ``--rows`` the preset's data cannot have, before anything is written.

    Raises
    ------
    ConfigError
        If rows are given for a shipped data set (breast, digits), or fall outside
        ``[batch size, MAX_ROWS]`` (fewer rows than one batch give no step).
    """
    if rows is None:
        return
    if preset not in GENERATED:
        raise ConfigError(
            f"--rows: applies to the generated data of presets {list(GENERATED)}, not to "
            f"{preset!r} ({DATASETS.get(preset, 'a shipped data set')})"
        )
    low = settings.train.batch_size
    if isinstance(rows, bool) or not isinstance(rows, int) or not low <= rows <= MAX_ROWS:
        raise ConfigError(
            f"--rows: expected an integer in [{low}, {MAX_ROWS:,}] (at least one batch of "
            f"{low}), got {rows!r}"
        )


def _dataset(preset: str, rows: int | None) -> tuple[VerticalPair, VerticalPair | None]:
    if preset == "breast":
        return breast_hetero("train"), breast_hetero("test")
    if preset == "digits":
        return digits_vertical("train"), digits_vertical("test")
    if preset == "reference":
        return wide_deep_reference(rows or 2000), None
    if preset == "default":
        n = rows or 20_000
        return wide_deep_learnable(n, seed=0), wide_deep_learnable(max(n // 5, 256), seed=1)
    raise ConfigError(f"--preset: expected one of {list(PRESETS)}, got {preset!r}")


def _with_strangers(data: PartyData, count: int, tag: str, seed: int) -> PartyData:
    """Append ``count`` rows under ids the other party does not hold (the PSI drops them)."""
    if count == 0:
        return data
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.n_rows, size=count)
    ids = (*data.ids, *(f"{tag}-{k}" for k in range(count)))
    X = np.concatenate([data.X, data.X[picks]])
    y = None if data.y is None else np.concatenate([data.y, data.y[picks]])
    return PartyData(ids, X, y, data.feature_names)


def write_data(
    run_dir: Path, preset: str, *, rows: int | None = None, strangers: int = 10
) -> dict[str, Path]:
    """Write each party's training (and, where there is one, test) CSV.

    Returns ``{"leader-train": ..., "follower-train": ..., "leader-test": ...,
    "follower-test": ...}`` (no test files for the reference's random data). Each side's
    training file also holds ``strangers`` rows under ids the other side lacks.

    Raises
    ------
    ConfigError
        If the preset is unknown.
    """
    train, test = _dataset(preset, rows)
    data = run_dir / "data"
    paths = {
        "leader-train": write_party_csv(
            _with_strangers(train.leader, strangers, "leader-only", 1), data / "leader-train.csv"
        ),
        "follower-train": write_party_csv(
            _with_strangers(train.follower, strangers, "follower-only", 2),
            data / "follower-train.csv",
        ),
    }
    if test is not None:
        paths["leader-test"] = write_party_csv(test.leader, data / "leader-test.csv")
        paths["follower-test"] = write_party_csv(test.follower, data / "follower-test.csv")
    return paths


def write_role_configs(
    run_dir: Path,
    paths: Mapping[str, Path],
    *,
    settings: Mapping[str, Any],
    leader_options: Mapping[str, Any] | None = None,
    follower_options: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``leader.toml`` and ``follower.toml`` into ``run_dir``; return them by role.

    ``settings`` are the ``preset`` and overriding keys both configs spell out (the two must
    be equal).
    """

    def rel(path: Path) -> str:
        return str(path.relative_to(run_dir))

    options = {
        "leader": {
            "data": rel(paths["leader-train"]),
            "out": "leader",
            **(leader_options or {}),
            **settings,
        },
        "follower": {
            "data": rel(paths["follower-train"]),
            "out": "follower",
            **(follower_options or {}),
            **settings,
        },
    }
    configs = {}
    for role in _ROLES:
        text = role_config_toml(
            role,
            workload="vfl",
            port=_EXAMPLE_PORT,
            policy=rel(paths[f"policy-{role}"]),
            options=options[role],
            peers=role == "follower",
            server="leader",
        )
        configs[role] = run_dir / f"{role}.toml"
        configs[role].write_text(text, encoding="utf-8")
    return configs


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Options of ``sealfl demo vfl``."""

    preset: str = "breast"
    settings: Mapping[str, Any]
    run_dir: Path | None = None
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in DATASETS:
            raise ConfigError(f"--preset: expected one of {list(DATASETS)}, got {self.preset!r}")
        check_rows(self.preset, self.rows, settings_of(self.preset, self.settings))


def _show_record(bar: Progress, task: TaskID, record: Mapping[str, Any]) -> None:
    if record.get("event") == "step":
        bar.update(
            task,
            completed=record["step"],
            status=f"loss {record['loss']:.4f} cosine-leak {record['cosine_auc'] or 0:.3f}",
        )
    elif record.get("event") == "started":
        bar.update(task, total=record["steps"], completed=record["start_step"])


def run_demo(options: DemoOptions, *, console: Console) -> int:
    """Run both parties and the joint prediction; return the exit status (0: all good)."""
    from sealfl.fl.vfl.predict import run_local_prediction

    run_dir = options.run_dir or Path("vfl-demo") / time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    console.rule(f"[bold]sealfl demo vfl ({options.preset})")
    console.print(
        f"{DATASETS[options.preset]} · PSI, split training over mutual RA-TLS, leak report, "
        f"sealed export, joint prediction · simulated TEE\nrun directory: {run_dir}"
    )
    paths = prepare_run_dir(run_dir)
    paths |= write_data(run_dir, options.preset, rows=options.rows)
    settings = {"preset": options.preset, **options.settings}
    configs = write_role_configs(
        run_dir,
        paths,
        settings=settings,
        leader_options={"line_style": "reference"} if options.preset == "reference" else {},
        follower_options={"wait_for_leader": 30.0},
    )
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    view = PartiesView(
        starting="starting the leader…",
        poll_s=0.05,
        label="steps",
        total=1,
        on_record=_show_record,
        show_line=_show_line,
        grace_s=30.0,
        grace_message="[yellow]the follower has exited: stopping the leader[/yellow]",
    )
    outcome = run_parties(
        {"leader": configs["leader"], "follower": configs["follower"]},
        workers=1,
        logs=logs,
        address_file=run_dir / "leader" / ADDRESS_FILE,
        metrics_file=run_dir / "leader" / LEADER_METRICS_FILE,
        view=view,
        console=console,
        env={"PYTHONUNBUFFERED": "1"},
        server="leader",
        clients=("follower",),
    )
    if outcome.early_exit is not None:
        return outcome.early_exit
    if any(code != 0 for code in outcome.codes.values()):
        failed = ", ".join(f"{name} (exit {code})" for name, code in outcome.codes.items() if code)
        console.rule("[red]failed")
        console.print(f"{failed}; see the logs in {logs}")
        return 1
    trained = time.monotonic() - started
    _summary(run_dir / "leader" / LEADER_METRICS_FILE, trained, console)
    if "leader-test" not in paths:
        console.print("no test split for this data set (the reference's labels are random)")
        return 0
    result = run_local_prediction(run_dir, paths, settings=settings, console=console)
    console.print(
        f"joint prediction on the test split from the two sealed halves: AUC "
        f"{result.auc:.4f}, accuracy {result.accuracy:.4f} ({result.rows} rows); "
        f"{time.monotonic() - started:.1f} s in all"
    )
    if options.preset == "breast" and result.auc < TARGET_AUC:
        console.print(f"[red]below the target test AUC of {TARGET_AUC}[/red]")
        return 1
    return 0


def _show_line(name: str, line: str) -> bool:
    return not line.startswith("[Bridge]")


def _summary(metrics: Path, elapsed: float, console: Console) -> None:
    records = list(read_metrics(metrics))
    steps = [r for r in records if r.get("event") == "step"]
    psi = next((r for r in records if r.get("event") == "psi"), None)
    if psi is not None:
        console.print(
            f"PSI ({psi['mode']}): {psi['count']} ids in common of {psi['own_size']} and "
            f"{psi['peer_size']}, {psi['seconds']:.2f} s; transcript "
            f"{psi['transcript_sha256'][:16]}…"
        )
    if steps:
        last = steps[-1]
        console.print(
            f"{len(steps)} steps in {elapsed:.1f} s; final loss {last['loss']:.4f}; label leak "
            f"of the gradients sent: norm AUC {last['norm_auc'] or 0:.3f}, cosine AUC "
            f"{last['cosine_auc'] or 0:.3f}"
        )

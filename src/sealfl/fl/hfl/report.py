"""``sealfl hfl report RUN``: accuracy and loss curves of a run, from its JSON-lines metrics.

Reads the PS's ``ps_metrics.jsonl`` (a resumed run appends to the same file, so its curves run
on across the restart; a round recorded twice keeps its last record) and draws two panels into a
PNG with matplotlib's Agg backend (no display needed): test accuracy per round, and test loss
with the workers' mean training loss per round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sealfl.errors import ConfigError
from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.hfl.launch import PS_METRICS_FILE

__all__ = ["Curves", "draw_report", "find_metrics", "read_curves"]

REPORT_FILE = "hfl_report.png"


@dataclass(frozen=True)
class Curves:
    """Per-round series of a run (rounds 1-based, in order)."""

    eval_rounds: tuple[int, ...]
    accuracy: tuple[float, ...]
    test_loss: tuple[float, ...]
    train_rounds: tuple[int, ...]
    train_loss: tuple[float, ...]
    overhead_ms: tuple[float, ...]


def find_metrics(run: str | os.PathLike[str]) -> Path:
    """Return the PS's metrics file of ``run``: the file itself, or where a run directory has it.

    Raises
    ------
    ConfigError
        If there is none.
    """
    path = Path(run)
    for candidate in (path, path / PS_METRICS_FILE, path / "ps" / PS_METRICS_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{path}: no {PS_METRICS_FILE} here or in {path / 'ps'} (give a run directory, the PS's "
        "--out directory or the metrics file)"
    )


def read_curves(metrics: Path) -> Curves:
    """Collect the per-round series from a metrics file.

    Raises
    ------
    ConfigError
        If it holds no evaluated round.
    """
    evaluations: dict[int, dict[str, float]] = {}
    rounds: dict[int, dict[str, float]] = {}
    for record in read_metrics(metrics):
        event = record.get("event")
        if event == "evaluation" and isinstance(record.get("round"), int):
            evaluations[record["round"]] = record
        elif event == "round" and isinstance(record.get("round"), int):
            rounds[record["round"]] = record
    if not evaluations:
        raise ConfigError(f"{metrics}: no evaluated round yet")
    er = sorted(evaluations)
    tr = sorted(r for r in rounds if rounds[r].get("train_loss") is not None)
    return Curves(
        eval_rounds=tuple(er),
        accuracy=tuple(float(evaluations[r]["accuracy"]) for r in er),
        test_loss=tuple(float(evaluations[r]["loss"]) for r in er),
        train_rounds=tuple(tr),
        train_loss=tuple(float(rounds[r]["train_loss"]) for r in tr),
        overhead_ms=tuple(1000 * float(rounds[r].get("overhead_s") or 0.0) for r in tr),
    )


def draw_report(curves: Curves, out: Path, *, title: str = "") -> Path:
    """Draw the two panels into ``out`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(curves.eval_rounds, curves.accuracy, marker="o", markersize=3)
    left.set_xlabel("round")
    left.set_ylabel("test accuracy")
    left.grid(True, alpha=0.3)
    right.plot(curves.eval_rounds, curves.test_loss, marker="o", markersize=3, label="test")
    if curves.train_rounds:
        right.plot(curves.train_rounds, curves.train_loss, label="train (workers' mean)")
    right.set_xlabel("round")
    right.set_ylabel("cross-entropy")
    right.grid(True, alpha=0.3)
    right.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the report: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out

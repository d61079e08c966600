"""The peer's ServerApp: Flower's own ``FedAvg`` for the configured rounds, timed per round.

Every round's end is stamped (wall clock, ``time.time()``, so sealfl's bench can line it up
with the bytes its relays counted) in ``flower_rounds.jsonl`` in the configured output
directory, with the slowest client's local training time of that round: the same quantities
sealfl's PS writes for its rounds. A round is the time from one global model to the next, as
in sealfl's bench. Federated evaluation is off (sealfl's bench evaluates only after the last
round, and not on the clients); the round log ends with ``done``, or ``error`` and the reason.
The final global model is saved as a flat float32 ``flower_final.npy`` beside it.
"""

from __future__ import annotations

import json
import statistics
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from . import task

app = ServerApp()

ROUND_LOG = "flower_rounds.jsonl"
FINAL_MODEL = "flower_final.npy"


def _log(out: Path, **fields: Any) -> None:
    with (out / ROUND_LOG).open("a") as fh:
        fh.write(json.dumps({"time": time.time(), **fields}) + "\n")


def log_round(
    out: Path, config: task.PeerConfig, server_round: int, current: dict[str, Any]
) -> None:
    """Stamp a round's end with the figures ``current`` collected; fail if a client was missing.

    A round whose updates did not all arrive (a ClientApp failed, or the timeout passed) must
    not pass for a complete one: the benchmark would time a round that did less work.
    """
    replies = current.pop("replies", 0)
    _log(
        out,
        event="round",
        round=server_round,
        replies=replies,
        slowest_train_s=current.pop("slowest_train_s", None),
        loss=current.pop("loss", None),
    )
    if replies != config.clients:
        raise RuntimeError(
            f"round {server_round}: {replies} of {config.clients} clients sent an update "
            f"(a ClientApp failed, see the SuperNode logs, or the round timeout of "
            f"{config.round_timeout_s:g} s passed)"
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg over the SuperNodes; log each round; fail loudly if a client was missing."""
    config = task.read_peer_config(str(context.run_config["peer-config"]))
    out = Path(config.out)
    try:
        _run(grid, config, out)
    except BaseException as exc:
        _log(
            out, event="error", reason=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()
        )
        raise


def _run(grid: Grid, config: task.PeerConfig, out: Path) -> None:
    initial = task.read_initial(config)
    current: dict[str, Any] = {}

    def train_metrics(replies: list[RecordDict], weighted_by_key: str) -> MetricRecord:
        metrics = [next(iter(reply.metric_records.values())) for reply in replies]
        current["replies"] = len(metrics)
        current["slowest_train_s"] = max(float(m["train-s"]) for m in metrics)
        current["loss"] = statistics.fmean(float(m["loss"]) for m in metrics)
        return MetricRecord(
            {"slowest-train-s": current["slowest_train_s"], "loss": current["loss"]}
        )

    def stamp(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            _log(out, event="start", round=0)
            return None
        log_round(out, config, server_round, current)
        return None

    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=config.clients,
        min_available_nodes=config.clients,
        train_metrics_aggr_fn=train_metrics,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({"flat": Array(initial)}),
        num_rounds=config.rounds,
        timeout=config.round_timeout_s,
        evaluate_fn=stamp,
    )
    np.save(out / FINAL_MODEL, result.arrays["flat"].numpy(), allow_pickle=False)
    _log(out, event="done", rounds=config.rounds)

"""The peer's ServerApp with Flower's SecAgg+ (``--secure-aggregation``): the same round log.

SecAgg+ exists only in Flower's legacy API: a :class:`LegacyContext` with the legacy
``FedAvg`` strategy, run by ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``, and the
ClientApp's ``secaggplus_mod`` (:mod:`.client_app_secagg`). All clients share with all
(``num_shares=1.0``) and all are needed (``reconstruction_threshold=1.0``): with two clients
nothing else is allowed. Its own quantisation clips the *weights* to +-8 (``clipping_range``)
into 2^22 levels and sends int64. Each round's end is stamped by the strategy's
``evaluate_fn`` (no data is evaluated), in the format of :mod:`.server_app`; a round that
lacks a client's update fails the run there too.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from . import task
from .server_app import FINAL_MODEL, _log, log_round

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg with SecAgg+ over the SuperNodes; log each round."""
    config = task.read_peer_config(str(context.run_config["peer-config"]))
    out = Path(config.out)
    try:
        _run(grid, context, config, out)
    except BaseException as exc:
        _log(
            out, event="error", reason=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()
        )
        raise


def _run(grid: Grid, context: Context, config: task.PeerConfig, out: Path) -> None:
    initial = task.read_initial(config)
    current: dict[str, Any] = {}

    def fit_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        current["replies"] = len(results)
        current["slowest_train_s"] = max(float(m.get("train-s", 0.0)) for _, m in results)
        current["loss"] = float(np.mean([float(m.get("loss", 0.0)) for _, m in results]))
        return {}

    def stamp(server_round: int, parameters: Any, _config: Any) -> None:
        if server_round == 0:
            _log(out, event="start", round=0)
            return None
        log_round(out, config, server_round, current)
        if server_round == config.rounds:
            np.save(out / FINAL_MODEL, np.asarray(parameters[0]), allow_pickle=False)
        return None

    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=config.clients,
        min_available_clients=config.clients,
        initial_parameters=ndarrays_to_parameters([initial]),
        fit_metrics_aggregation_fn=fit_metrics,
        evaluate_fn=stamp,
    )
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=config.rounds, round_timeout=config.round_timeout_s),
        strategy=strategy,
    )
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=1.0, reconstruction_threshold=1.0, timeout=config.round_timeout_s
        )
    )
    workflow(grid, legacy)
    _log(out, event="done", rounds=config.rounds)

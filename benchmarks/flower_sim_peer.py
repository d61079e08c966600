"""Flower 1.42's simulation engine (Ray) on sealfl's hfl workload: the peer of ``sealfl bench sim``.

Run by the peer's interpreter (one with ``flwr[simulation]==1.42.*`` and torch), never by
sealfl's: ``python flower_sim_peer.py PEER_CONFIG SCHEDULE OUT``. ``benchmarks/sim.py`` writes
the inputs with sealfl's code and reads the outputs:

- ``PEER_CONFIG``: the configuration of the hfl Flower peer (``flower_hfl_peer/task.py``, whose
  reader and local training this module reuses): the network, the initial weights, one shard
  file per client (the very split sealfl's simulation trains on), the local SGD;
- ``SCHEDULE``: ``{"rounds": [[client ids], ...]}``, the clients sealfl's plan sampled in each
  round; every round Flower's ``FedAvg`` sends one message per scheduled client to one of its
  ``num_supernodes`` virtual SuperNodes (drawn by Flower's own ``sample_nodes``), carrying
  the client id whose shard it trains on. So both systems train the same clients on the same
  shards each round, and Flower's engine pays its per-message cost for each;
- ``OUT``: ``flower_rounds.jsonl`` (a wall-clock stamp at the start and after each round's
  aggregation) and ``flower_final.npy`` (the final flat model, evaluated by the bench as sealfl's).

Flower's engine here is ``flwr.simulation.run_simulation`` with the Ray backend and one CPU
per virtual client (Flower's default), i.e. one Ray actor per core. Only the data order of a
client's minibatches differs from sealfl's (each system seeds its own; see
``flower_hfl_peer/task.py``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

TASK_FILE = Path(__file__).resolve().with_name("flower_hfl_peer") / "task.py"
_TASK_NAME = "sealfl_flower_sim_peer_task"


def load_task() -> ModuleType:
    """Load ``flower_hfl_peer/task.py`` by path (once per process: a Ray actor loads it too)."""
    if _TASK_NAME in sys.modules:
        return sys.modules[_TASK_NAME]
    spec = importlib.util.spec_from_file_location(_TASK_NAME, TASK_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_TASK_NAME] = module
    spec.loader.exec_module(module)
    return module


def _log(out: Path, **fields: Any) -> None:
    with (out / "flower_rounds.jsonl").open("a") as fh:
        fh.write(json.dumps({"time": time.time(), **fields}) + "\n")


def main(peer_config: str, schedule_file: str, out_dir: str) -> None:
    """Run the scheduled rounds on Flower's simulation engine."""
    import numpy as np
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MessageType,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.serverapp.strategy.strategy_utils import sample_nodes
    from flwr.simulation import run_simulation

    task = load_task()
    config = task.read_peer_config(peer_config)
    schedule: list[list[int]] = json.loads(Path(schedule_file).read_text())["rounds"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        import torch

        torch.set_num_threads(1)  # one core per virtual client, as sealfl's workers
        peer = load_task()
        cfg = peer.read_peer_config(peer_config)
        client = int(msg.content["config"]["client-id"])
        server_round = int(msg.content["config"]["server-round"])
        values = msg.content["arrays"]["flat"].numpy()
        result = peer.train_round(cfg, client - 1, server_round, values)
        metrics = MetricRecord(
            {"num-examples": result.examples, "train-s": result.seconds, "loss": result.loss}
        )
        reply = RecordDict(
            {"arrays": ArrayRecord({"flat": Array(result.values)}), "metrics": metrics}
        )
        return Message(content=reply, reply_to=msg)

    class ScheduledFedAvg(FedAvg):
        """Flower's FedAvg, sending each scheduled client's id to a randomly drawn node."""

        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> list[Message]:
            clients = schedule[server_round - 1]
            # Flower's own sampling: waits until min_available_nodes are up, draws at random.
            picked, _ = sample_nodes(grid, self.min_available_nodes, len(clients))
            return [
                Message(
                    content=RecordDict(
                        {
                            "arrays": arrays,
                            "config": ConfigRecord(
                                {"server-round": server_round, "client-id": client}
                            ),
                        }
                    ),
                    message_type=MessageType.TRAIN,
                    dst_node_id=node,
                )
                for client, node in zip(clients, picked, strict=True)
            ]

    server_app = ServerApp()

    @server_app.main()
    def serve(grid: Grid, context: Context) -> None:
        def stamp(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            _log(out, event="start" if server_round == 0 else "round", round=server_round)
            return None

        strategy = ScheduledFedAvg(
            fraction_evaluate=0.0, min_available_nodes=config.clients, min_train_nodes=1
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord({"flat": Array(task.read_initial(config))}),
            num_rounds=len(schedule),
            timeout=config.round_timeout_s,
            evaluate_fn=stamp,
        )
        np.save(out / "flower_final.npy", result.arrays["flat"].numpy(), allow_pickle=False)
        _log(out, event="done", rounds=len(schedule))

    _log(out, event="launched")
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=config.clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: flower_sim_peer.py PEER_CONFIG SCHEDULE OUT")
    main(*sys.argv[1:])

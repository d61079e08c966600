"""The peer's ClientApp for SecAgg+: the same local round, through Flower's legacy client API.

``secaggplus_mod`` wraps the legacy ``NumPyClient``: it runs the four SecAgg+ stages and masks
the ``fit`` result (the flat weights, times the example count it takes as the weight).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context

from . import task


class _Worker(NumPyClient):
    def __init__(self, context: Context) -> None:
        self.config = task.read_peer_config(str(context.run_config["peer-config"]))
        self.index = int(context.node_config["shard-index"])

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        import torch

        torch.set_num_threads(1)  # as sealfl's workers
        server_round = int(config.get("server_round", config.get("server-round", 1)))
        result = task.train_round(self.config, self.index, server_round, parameters[0])
        metrics = {"train-s": result.seconds, "loss": result.loss}
        return [result.values], result.examples, metrics


def _client(context: Context) -> Client:
    return _Worker(context).to_client()


app = ClientApp(client_fn=_client, mods=[secaggplus_mod])

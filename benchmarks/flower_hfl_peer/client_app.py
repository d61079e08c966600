"""The peer's ClientApp: one round of local training on this SuperNode's shard.

Flower's SuperNode starts a fresh ``flwr-clientapp`` process for every message, so everything
here (imports, reading the shard, building the network) happens again each round; that is part
of what the benchmark measures. The local training time reported back (``train-s``) covers
only the span sealfl's worker reports as its training (:func:`.task.train_round`).
"""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from . import task

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the global model in ``msg``; reply with the flat update and metrics."""
    import torch

    torch.set_num_threads(1)  # as sealfl's workers: the parties share the machine's cores
    config = task.read_peer_config(str(context.run_config["peer-config"]))
    index = int(context.node_config["shard-index"])
    server_round = int(msg.content["config"]["server-round"])
    global_values = msg.content["arrays"]["flat"].numpy()
    result = task.train_round(config, index, server_round, global_values)
    metrics = MetricRecord(
        {
            "num-examples": result.examples,
            "train-s": result.seconds,
            "loss": result.loss,
        }
    )
    content = RecordDict(
        {"arrays": ArrayRecord({"flat": Array(result.values)}), "metrics": metrics}
    )
    return Message(content=content, reply_to=msg)

"""The trained model as the PS seals and releases it, and how its owner loads it.

The release envelope (``sealfl model open``) or the sealed file holds one protobuf
:class:`~sealfl.fl.hfl.protos.hfl_pb2.TrainedModel`: the settings, the manifest and the flat
float32 values, plus the data schema and the last evaluation. :func:`load_trained_model` turns
those bytes back into a torch network, checking the manifest against the one the settings and
schema build (never ``torch.load``: the bytes are data, not code).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from torch import nn

from sealfl.data import ImageSchema, read_shard
from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.settings import Settings, settings_from_proto
from sealfl.fl.hfl.training import EvalResult, evaluate, initial_model
from sealfl.models import FlatManifest
from sealfl.models.nn import load_flat

__all__ = ["TrainedModel", "evaluate_trained_model", "load_trained_model"]


@dataclass(frozen=True)
class TrainedModel:
    """A loaded trained model.

    Attributes
    ----------
    model
        The network, with the trained values, in evaluation mode.
    settings
        The settings it was trained with.
    schema
        The data it takes.
    rounds_done
        Rounds of training.
    run_id
        The training run.
    """

    model: nn.Module
    settings: Settings
    schema: ImageSchema
    rounds_done: int
    run_id: str


def load_trained_model(blob: bytes) -> TrainedModel:
    """Rebuild the network from a ``TrainedModel`` message.

    Raises
    ------
    ProtocolError
        If the bytes are not such a message, or its manifest or values do not fit the network
        its settings and schema describe.
    """
    try:
        message = pb.TrainedModel.FromString(blob)
    except DecodeError as exc:
        raise ProtocolError(f"not an hfl trained model ({exc})") from None
    try:
        settings = settings_from_proto(message.settings)
        doc = json.loads(message.schema_json)
        schema = ImageSchema(
            int(doc["channels"]), int(doc["height"]), int(doc["width"]), tuple(doc["class_names"])
        )
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"trained model: unusable settings or schema ({exc})") from None
    model = initial_model(settings, schema)
    load_flat(model, message.values, FlatManifest.from_json(message.manifest_json))
    model.eval()
    return TrainedModel(model, settings, schema, message.rounds_done, message.run_id)


def evaluate_trained_model(blob: bytes, test_set: str | os.PathLike[str]) -> EvalResult:
    """Load a trained model and evaluate it on a test shard (the demo's owner check).

    Raises
    ------
    ProtocolError
        As :func:`load_trained_model`.
    ConfigError
        If the test set is unusable or of another schema than the model's.
    """
    loaded = load_trained_model(blob)
    data = read_shard(test_set).data
    if data.schema != loaded.schema:
        raise ConfigError(f"{test_set}: images or classes differ from the model's data")
    return evaluate(loaded.model, data, loaded.settings)

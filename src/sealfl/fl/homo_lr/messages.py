"""Conversions between homo-lr's values and its protobuf messages (no gRPC, no keys).

Shared by the servicer and link (:mod:`.service`), the checkpoint (:mod:`.checkpoint`) and the
sealed model, so every place decodes a peer's or a file's fields with the same range checks.
"""

from __future__ import annotations

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.homo_lr.algorithm import Hyperparameters, Schedule
from sealfl.fl.homo_lr.evaluation import Evaluation
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb


def settings_to_proto(hp: Hyperparameters, n_features: int) -> pb.TrainingSettings:
    """Encode the shared settings."""
    return pb.TrainingSettings(
        learning_rate=hp.learning_rate,
        alpha=hp.alpha,
        iterations=hp.iterations,
        schedule=hp.schedule.value,
        n_features=n_features,
    )


def settings_from_proto(msg: pb.TrainingSettings) -> tuple[Hyperparameters, int]:
    """Decode the shared settings.

    Raises
    ------
    ProtocolError
        If a field is out of range or the schedule is unknown.
    """
    try:
        schedule = Schedule(msg.schedule)
    except ValueError:
        known = [s.value for s in Schedule]
        raise ProtocolError(
            f"TrainingSettings.schedule: expected one of {known}, got {msg.schedule!r}"
        ) from None
    try:
        hp = Hyperparameters(
            learning_rate=msg.learning_rate,
            alpha=msg.alpha,
            iterations=msg.iterations,
            schedule=schedule,
        )
    except ConfigError as exc:  # the range checks; here it is the peer that sent bad values
        raise ProtocolError(f"TrainingSettings: {exc}") from exc
    if msg.n_features < 1:
        raise ProtocolError(f"TrainingSettings.n_features: expected >= 1, got {msg.n_features}")
    return hp, int(msg.n_features)


def evaluation_to_proto(evaluation: tuple[int, Evaluation]) -> pb.Evaluation:
    """Encode ``(iteration, evaluation)``."""
    iteration, ev = evaluation
    return pb.Evaluation(iteration=iteration, accuracy=ev.accuracy, loss=ev.loss)


def evaluation_from_proto(msg: pb.Evaluation) -> tuple[int, Evaluation]:
    """Decode ``(iteration, evaluation)``."""
    return int(msg.iteration), Evaluation(accuracy=msg.accuracy, loss=msg.loss)

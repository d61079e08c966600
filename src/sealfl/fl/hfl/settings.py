"""The federation's training settings: what every party must agree on, and the named presets.

The PS is given the settings by its operator and a worker declares its own; the PS refuses a
worker whose settings differ, naming every differing field (:meth:`Settings.differences`), so a
misconfigured worker is turned away at join rather than after a round of garbage. Model and data
shape are agreed separately, by digest (the model manifest and the image schema).

Presets (:data:`PRESETS`):

``demo``
    scikit-learn digits, ResNet-20, synchronous FedAvg weighted by examples: one local epoch of
    SGD (batch 32, lr 0.05, momentum 0.9) per round, 15 rounds.
``reference``
    Parity with the reference system (Intel CCZoo's horizontal_fl): its ResNet-56 v2 on 24x24
    crops with brightness-free augmentation and per-image standardisation, batch 128, L2 2e-4 on
    non-batch-norm weights, and the PS applying the workers' gradients with Momentum (0.9,
    lr 0.1): every round is one step of synchronous data-parallel SGD, the synchronous form of
    the reference's asynchronous PS. 3,906 rounds are its 20 epochs of CIFAR-10 at 2 x 128
    images a step.
``accurate``
    CIFAR-10 with ResNet-20 and He et al.'s recipe (pad-4 crop, flip, lr 0.1, momentum 0.9,
    wd 1e-4) as FedAvg with one local epoch per round.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from sealfl.errors import ConfigError
from sealfl.fl.hfl.protos import hfl_pb2 as pb

__all__ = ["PRESETS", "Aggregation", "Pipeline", "Settings", "settings_from_proto"]

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1


class Pipeline(enum.StrEnum):
    """How images become network inputs (training augmentation and evaluation transform)."""

    PLAIN = "plain"
    """Pixels scaled to [0, 1], no augmentation (digits)."""
    CIFAR = "cifar"
    """Pad-4 random crop and flip for training; CIFAR-10 mean/std normalisation (He et al.)."""
    REFERENCE = "reference"
    """Random 24x24 crop and flip, per-image standardisation; central crop for evaluation."""


class Aggregation(enum.StrEnum):
    """How the PS turns the workers' uploads into the next global model."""

    FEDAVG = "fedavg"
    """Workers send weights; the new model is their average weighted by examples."""
    FEDAVGM = "fedavgm"
    """FedAvg with server momentum on the pseudo-gradient (global - average)."""
    REFERENCE = "reference"
    """Workers send gradients; the PS applies their weighted average with Momentum and L2."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Training settings every party of one federation shares.

    Parameters
    ----------
    model
        A name of :data:`sealfl.models.nn.MODEL_NAMES`.
    rounds
        Rounds of training (each: the PS sends the model, workers train, the PS aggregates).
    local_epochs
        Passes over a worker's shard per round (when ``local_steps`` is 0).
    local_steps
        Minibatch steps per round instead of whole epochs (0: use ``local_epochs``).
    batch_size, learning_rate, momentum, weight_decay
        The workers' local SGD (with ``aggregation="reference"`` the PS's optimiser uses
        ``server_learning_rate``, ``server_momentum`` and ``weight_decay`` instead).
    lr_milestones
        Rounds after which the learning rate (the workers', or the PS's with the reference
        aggregation) is multiplied by 0.1 (He et al.'s step schedule); increasing.
    seed
        Seeds the initial model and every worker's data order and augmentation, so a run is
        reproducible and a resumed one ends with the same model.
    pipeline, aggregation
        See :class:`Pipeline` and :class:`Aggregation`.
    server_learning_rate, server_momentum
        The PS's optimiser: FedAvgM's (1.0 and 0.0 are plain FedAvg) or the reference's.

    Raises
    ------
    ConfigError
        Naming the first field out of range.
    """

    model: str = "resnet20"
    rounds: int = 15
    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 32
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    seed: int = 0
    pipeline: Pipeline = Pipeline.PLAIN
    aggregation: Aggregation = Aggregation.FEDAVG
    server_learning_rate: float = 1.0
    server_momentum: float = 0.0

    def __post_init__(self) -> None:
        from sealfl.models.nn.registry import MODEL_NAMES  # torch: only when settings are made

        if self.model not in MODEL_NAMES:
            raise ConfigError(f"model: expected one of {list(MODEL_NAMES)}, got {self.model!r}")
        for name, low, high in (
            ("rounds", 1, _UINT32_MAX),
            ("local_epochs", 1, _UINT32_MAX),
            ("local_steps", 0, _UINT32_MAX),
            ("batch_size", 1, _UINT32_MAX),
            ("seed", 0, _UINT64_MAX),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
        for name in ("learning_rate", "server_learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: expected a positive number, got {value!r}")
        for name in ("momentum", "server_momentum"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ConfigError(f"{name}: expected a number in [0, 1), got {value!r}")
        if not (isinstance(self.weight_decay, int | float) and 0 <= self.weight_decay < 1):
            raise ConfigError(f"weight_decay: expected a number in [0, 1), got {self.weight_decay}")
        milestones = tuple(self.lr_milestones)
        if any(isinstance(m, bool) or not isinstance(m, int) for m in milestones) or any(
            not a < b for a, b in zip((0, *milestones), milestones, strict=False)
        ):
            raise ConfigError(
                f"lr_milestones: expected increasing positive round numbers, got {list(milestones)}"
            )
        object.__setattr__(self, "lr_milestones", milestones)
        try:
            object.__setattr__(self, "pipeline", Pipeline(self.pipeline))
            object.__setattr__(self, "aggregation", Aggregation(self.aggregation))
        except ValueError as exc:
            raise ConfigError(f"settings: {exc}") from None
        if self.aggregation is Aggregation.REFERENCE and self.local_steps != 1:
            raise ConfigError(
                "aggregation 'reference' sends one gradient per round: local_steps must be 1, "
                f"got {self.local_steps}"
            )

    # -- comparison and identity ------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values (enums as strings, milestones as a list)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def learning_rate_at(self, version: int, base: float | None = None) -> float:
        """Return the learning rate for the round that trains on ``version``.

        ``base`` (default :attr:`learning_rate`) is divided by 10 at every milestone passed.
        """
        rate = self.learning_rate if base is None else base
        return rate * 0.1 ** sum(1 for m in self.lr_milestones if version >= m)

    def digest(self) -> str:
        """Return the SHA-256 (hex) of the canonical JSON of :meth:`as_dict`."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def differences(self, other: Settings) -> list[str]:
        """Return ``"field: expected X, got Y"`` for every field ``other`` has differently."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [
            f"{name}: expected {mine[name]!r}, got {theirs[name]!r}"
            for name in mine
            if mine[name] != theirs[name]
        ]

    def describe(self) -> str:
        """Return a one-line summary for logs."""
        work = (
            f"{self.local_steps} step(s)" if self.local_steps else f"{self.local_epochs} epoch(s)"
        )
        text = (
            f"{self.model}, {self.rounds} rounds of {work} (batch {self.batch_size}, lr "
            f"{self.learning_rate:g}, momentum {self.momentum:g}, wd {self.weight_decay:g}), "
            f"{self.aggregation.value}, pipeline {self.pipeline.value}, seed {self.seed}"
        )
        if self.aggregation is not Aggregation.FEDAVG:
            text += f", server lr {self.server_learning_rate:g} momentum {self.server_momentum:g}"
        return text

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    # -- the wire form ----------------------------------------------------------------------

    def to_proto(self) -> pb.Settings:
        """Return the protobuf form."""
        return pb.Settings(**self.as_dict())


def settings_from_proto(message: pb.Settings) -> Settings:
    """Return the settings a peer sent, checked.

    Raises
    ------
    ConfigError
        If a field is out of range or an enum value unknown (the caller turns it into a
        refusal).
    """
    try:
        pipeline = Pipeline(message.pipeline)
        aggregation = Aggregation(message.aggregation)
    except ValueError as exc:
        raise ConfigError(f"settings: {exc}") from None
    return Settings(
        model=message.model,
        rounds=message.rounds,
        local_epochs=message.local_epochs,
        local_steps=message.local_steps,
        batch_size=message.batch_size,
        learning_rate=message.learning_rate,
        momentum=message.momentum,
        weight_decay=message.weight_decay,
        lr_milestones=tuple(message.lr_milestones),
        seed=message.seed,
        pipeline=pipeline,
        aggregation=aggregation,
        server_learning_rate=message.server_learning_rate,
        server_momentum=message.server_momentum,
    )


PRESETS: dict[str, Settings] = {
    "demo": Settings(),
    "reference": Settings(
        model="resnet56-v2",
        rounds=3906,
        local_steps=1,
        batch_size=128,
        learning_rate=0.1,
        momentum=0.0,
        weight_decay=2e-4,
        pipeline=Pipeline.REFERENCE,
        aggregation=Aggregation.REFERENCE,
        server_learning_rate=0.1,
        server_momentum=0.9,
    ),
    "accurate": Settings(
        model="resnet20",
        rounds=164,
        local_epochs=1,
        batch_size=128,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        lr_milestones=(82, 123),
        pipeline=Pipeline.CIFAR,
    ),
}
"""Named settings; see the module docstring."""

"""What a vertical training run is: the two halves' networks, the optimiser, the defence, the seed.

Both parties hold the same :class:`VflSettings`, hash its canonical JSON into their RA-TLS claims
and refuse a peer whose digest differs, so everything that changes a single number of the run
lives here and nowhere else. This module is torch-free: the protocol layer and the command line
read, check and hash settings without loading torch.

The presets (:func:`preset`) are the configurations the issue measures:

=============  ==========================================================================
``reference``  cczoo/Fedlearner's wide-and-deep run exactly: 512 + 512 slots, uniform
               +-0.01 weights and embeddings with zero biases, SGD 0.1, batch 32, 2 epochs
               (124 steps on the reference's 2,000 random rows). It does not learn, by design.
``default``    the same network and initialisation with Adam 1e-3 at batch 256: it learns
               the learnable generator (50,000 rows, 2 epochs: test AUC 0.84, split equal to
               central; torch's N(0, 1) embeddings instead reach only 0.60 in those 390 steps).
``breast``     FATE's hetero-NN breast network: bottoms Linear(10, 8) and Linear(20, 8),
               an 8-wide aggregate layer, a linear top; Adam 0.01 as FATE's benchmark, at
               batch 128 for 100 epochs with every row in every epoch (400 steps): FATE's
               batch 256 x 50 epochs gives 0.985-0.986 test AUC, and max-norm then costs up to
               0.005 of it; this gives 0.9864-0.9886 over seeds 0-4, and max-norm at most 0.0016.
``digits``     digits left/right halves: 32 + 32 pixels, ReLU layers, 10 classes.
=============  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from sealfl.errors import ConfigError

__all__ = [
    "PRESETS",
    "DefenceSpec",
    "ModelSpec",
    "TrainSpec",
    "VflSettings",
    "preset",
]

ModelKind = Literal["wide-deep", "mlp"]
Init = Literal["uniform", "torch"]
Activation = Literal["none", "relu"]
Optimizer = Literal["sgd", "adam"]
DefenceKind = Literal["none", "max-norm", "gaussian"]
WireDtype = Literal["float32", "float16"]
Role = Literal["leader", "follower"]

SETTINGS_FORMAT = "sealfl-vfl-settings/1"
"""The ``format`` field of the settings' JSON; another value is refused."""

_MAX_WIDTH = 1 << 20
_MAX_SEED = 2**64 - 1
"""As hfl's: any unsigned 64-bit value (seeds are hashed, :mod:`sealfl.fl.common.seeds`)."""


def _positive_int(where: str, value: object, *, limit: int = _MAX_WIDTH) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ConfigError(
            f"vfl settings: {where} must be an integer in [1, {limit}], got {value!r}"
        )


def _choice(where: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"vfl settings: {where} must be one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The two halves' networks (see :mod:`sealfl.fl.vfl.model` for the layers).

    Parameters
    ----------
    kind
        ``"wide-deep"``: the reference's slot-embedding model (features are slot ids);
        ``"mlp"``: linear bottoms for dense features.
    leader_features, follower_features
        Feature columns (wide-deep: slots) of each party.
    cut_width
        Width ``k`` of the follower's cut-layer activation ``[B, k]`` (64 in the reference).
    classes
        Label classes (2 for binary tasks; the leader's logits are ``[B, classes]``).
    init
        ``"uniform"``: every weight and embedding uniform in +-0.01, biases zero (Fedlearner's
        ``leader.py``); ``"torch"``: torch's own initialisation (embeddings N(0, 1), linear
        layers Kaiming-uniform), drawn from the half's generator.
    hidden
        wide-deep: the leader's first layer (256 in the reference); mlp: the aggregate layer.
    activation
        mlp only: ``"none"`` (FATE's linear benchmark network) or ``"relu"`` after every layer
        below the top.
    vocab, embed_dim
        wide-deep only: values per slot (0..100 gives 101) and the embedding width (16).
    """

    kind: ModelKind
    leader_features: int
    follower_features: int
    cut_width: int
    classes: int = 2
    init: Init = "torch"
    hidden: int = 256
    activation: Activation = "none"
    vocab: int = 101
    embed_dim: int = 16

    def __post_init__(self) -> None:
        _choice("model.kind", self.kind, ("wide-deep", "mlp"))
        _choice("model.init", self.init, ("uniform", "torch"))
        _choice("model.activation", self.activation, ("none", "relu"))
        for name in ("leader_features", "follower_features", "cut_width", "hidden", "embed_dim"):
            _positive_int(f"model.{name}", getattr(self, name))
        _positive_int("model.vocab", self.vocab, limit=1 << 16)
        _positive_int("model.classes", self.classes, limit=1 << 16)
        if self.classes < 2:
            raise ConfigError(f"vfl settings: model.classes must be at least 2, got {self.classes}")


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """Optimiser, batches and the run seed (both halves use the same optimiser and rate).

    Parameters
    ----------
    optimizer
        ``"sgd"`` (plain, no momentum, as the reference) or ``"adam"`` (torch's defaults).
    lr
        Learning rate, finite and positive.
    batch_size, epochs
        Rows per step and passes over the aligned rows.
    drop_last
        Drop an epoch's last partial batch, as the reference does (its 2,000 rows at batch 32
        give 62 steps per epoch), or train on it as a smaller batch.
    seed
        The run seed every random draw derives from (:mod:`sealfl.fl.common.seeds`).
    wire_dtype
        How the cut activation and its gradient travel (:mod:`sealfl.fl.vfl.cut`):
        ``"float32"`` (the halves' own precision: split equals central exactly) or
        ``"float16"`` (half the bytes; both values rounded on the wire, so the run differs
        from the central one; a value beyond +-65504 stops the run).
    """

    optimizer: Optimizer
    lr: float
    batch_size: int
    epochs: int
    drop_last: bool = True
    seed: int = 0
    wire_dtype: WireDtype = "float32"

    def __post_init__(self) -> None:
        _choice("train.optimizer", self.optimizer, ("sgd", "adam"))
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float):
            raise ConfigError(f"vfl settings: train.lr must be a number, got {self.lr!r}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1e3):
            raise ConfigError(f"vfl settings: train.lr must be in (0, 1000], got {self.lr!r}")
        _positive_int("train.batch_size", self.batch_size)
        _choice("train.wire_dtype", self.wire_dtype, ("float32", "float16"))
        _positive_int("train.epochs", self.epochs, limit=1 << 20)
        if not isinstance(self.drop_last, bool):
            raise ConfigError(
                f"vfl settings: train.drop_last must be true or false, got {self.drop_last!r}"
            )
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
            raise ConfigError(
                f"vfl settings: train.seed must be an integer in [0, 2**64 - 1], got {seed!r}"
            )


@dataclass(frozen=True, kw_only=True)
class DefenceSpec:
    """The noise the leader adds to the gradient it returns (:mod:`sealfl.fl.vfl.defence`).

    Parameters
    ----------
    kind
        ``"none"``, ``"max-norm"`` (Li et al.'s heuristic, as Fedlearner's and SecretFlow's
        ``max_norm``: no parameter) or ``"gaussian"`` (i.i.d. N(0, sigma^2) per element).
    sigma
        Standard deviation of the Gaussian noise; must be 0 for other kinds.
    """

    kind: DefenceKind = "none"
    sigma: float = 0.0

    def __post_init__(self) -> None:
        _choice("defence.kind", self.kind, ("none", "max-norm", "gaussian"))
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, int | float):
            raise ConfigError(f"vfl settings: defence.sigma must be a number, got {self.sigma!r}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ConfigError(f"vfl settings: defence.sigma must be >= 0, got {self.sigma!r}")
        if self.kind == "gaussian" and self.sigma == 0:
            raise ConfigError("vfl settings: defence 'gaussian' needs sigma > 0")
        if self.kind != "gaussian" and self.sigma != 0:
            raise ConfigError(
                f"vfl settings: defence.sigma applies to 'gaussian' only, not {self.kind!r}"
            )


@dataclass(frozen=True, kw_only=True)
class VflSettings:
    """A whole run's settings; equal settings give equal runs, bit for bit.

    Usage::

        settings = preset("breast").replace(defence=DefenceSpec(kind="max-norm"))
        text = settings.to_json()                     # canonical: equal settings, equal text
        VflSettings.from_json(text) == settings       # every field checked
        settings.half_digest("follower")              # what the follower binds into its claims
    """

    model: ModelSpec
    train: TrainSpec
    defence: DefenceSpec = dataclasses.field(default_factory=DefenceSpec)

    def __post_init__(self) -> None:
        for name, cls in (("model", ModelSpec), ("train", TrainSpec), ("defence", DefenceSpec)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"vfl settings: {name} must be a {cls.__name__}")

    def replace(self, **changes: Any) -> VflSettings:
        """Return a copy with some sections replaced (``model=``, ``train=``, ``defence=``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-able data (with the ``format`` field)."""
        return {
            "format": SETTINGS_FORMAT,
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "defence": dataclasses.asdict(self.defence),
        }

    def to_json(self) -> str:
        """Return the canonical JSON text (sorted keys, no spaces)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """Return the SHA-256 (hex) of :meth:`to_json`: the run's identity."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def half_digest(self, role: Role) -> str:
        """Return the SHA-256 (hex) of what one half computes with: its role and the settings.

        Both halves depend on every section (the follower's update follows from the leader's
        loss, the defence changes what the follower receives), so this is the whole settings
        tagged with the role: a leader's claim can never pass for a follower's.
        """
        _choice("role", role, ("leader", "follower"))
        text = json.dumps({"role": role, "settings": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> VflSettings:
        """Parse settings written by :meth:`to_json` (a peer's or a file's), checking every field.

        Raises
        ------
        ConfigError
            If the text is not JSON of the documented shape, a key is unknown or missing, or a
            value is out of range; the message names the field.
        """
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"vfl settings: not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"vfl settings: expected an object, got {type(doc).__name__}")
        if doc.get("format") != SETTINGS_FORMAT:
            raise ConfigError(
                f"vfl settings: format must be {SETTINGS_FORMAT!r}, got {doc.get('format')!r}"
            )
        extra = set(doc) - {"format", "model", "train", "defence"}
        if extra:
            raise ConfigError(f"vfl settings: unknown keys {sorted(extra)}")
        sections: dict[str, Any] = {}
        for name, spec_cls in (
            ("model", ModelSpec),
            ("train", TrainSpec),
            ("defence", DefenceSpec),
        ):
            raw = doc.get(name)
            if not isinstance(raw, dict):
                raise ConfigError(f"vfl settings: {name} must be an object, got {raw!r}")
            known = {f.name for f in dataclasses.fields(spec_cls)}
            unknown = set(raw) - known
            if unknown:
                raise ConfigError(f"vfl settings: unknown keys in {name}: {sorted(unknown)}")
            try:
                sections[name] = spec_cls(**raw)
            except TypeError as exc:  # a missing required field
                raise ConfigError(f"vfl settings: {name}: {exc}") from exc
        return cls(**sections)


def _wide_deep() -> ModelSpec:
    return ModelSpec(
        kind="wide-deep",
        leader_features=512,
        follower_features=512,
        cut_width=64,
        hidden=256,
        init="uniform",
    )


def _presets() -> dict[str, VflSettings]:
    return {
        "reference": VflSettings(
            model=_wide_deep(),
            train=TrainSpec(optimizer="sgd", lr=0.1, batch_size=32, epochs=2),
        ),
        "default": VflSettings(
            model=_wide_deep(),
            train=TrainSpec(optimizer="adam", lr=1e-3, batch_size=256, epochs=2),
        ),
        "breast": VflSettings(
            model=ModelSpec(
                kind="mlp", leader_features=10, follower_features=20, cut_width=8, hidden=8
            ),
            train=TrainSpec(optimizer="adam", lr=0.01, batch_size=128, epochs=100, drop_last=False),
        ),
        "digits": VflSettings(
            model=ModelSpec(
                kind="mlp",
                leader_features=32,
                follower_features=32,
                cut_width=32,
                hidden=64,
                classes=10,
                activation="relu",
            ),
            train=TrainSpec(optimizer="adam", lr=0.01, batch_size=64, epochs=20),
        ),
    }


PRESETS: tuple[str, ...] = tuple(_presets())
"""Every name :func:`preset` accepts."""


def preset(name: str) -> VflSettings:
    """Return the settings of a named preset (see the module docstring).

    Raises
    ------
    ConfigError
        If the name is unknown.
    """
    table = _presets()
    if name not in table:
        raise ConfigError(f"vfl preset: expected one of {list(PRESETS)}, got {name!r}")
    return table[name]

"""What the Flower peer trains, and the one file that tells it what to train.

Both interpreters load this module: sealfl's bench (``benchmarks/flower_hfl.py``) writes the
peer's configuration with :func:`write_peer_config`, and the peer's ServerApp and ClientApps
read it back with :func:`read_peer_config`; so the format is defined once, here. It needs only
numpy at import time; :func:`train_round` needs torch and sealfl's torch-only modules
(``sealfl.models.nn``, ``sealfl.data``), which the peer imports from sealfl's source tree
(:func:`use_sealfl_source`): sealfl's other dependencies (grpc, its generated protobuf code)
need not exist, or fit, in the peer's environment.

What "the same workload" means here:

- **model**: the network is built by sealfl's own ``build_model`` and must have exactly the
  manifest (names, shapes, order) of the model sealfl's PS starts from; both start from the same
  initial weights, a flat float32 ``.npy`` file sealfl wrote (loaded without pickle);
- **data**: each ClientApp reads the very shard file sealfl's worker of the same index read,
  with sealfl's reader (SHA-256 checked), and draws minibatches with sealfl's ``Batches``
  (the bench's ``plain`` pipeline: pixels scaled to [0, 1], no augmentation);
- **training**: the same local SGD (learning rate, momentum, weight decay, batch size, local
  steps), a fresh optimiser each round, and the round's local training time measured over the
  same span as sealfl's worker measures it (from loading the global model to the flat update);
- **exchange**: one flat float32 array each way, averaged by Flower's ``FedAvg`` weighted by
  examples, as sealfl's PS does.

Only the data order differs (each system seeds its own); it does not change a step's cost.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PEER_FORMAT = "sealfl-flower-peer/1"
"""The ``format`` field of the peer's configuration file; another value is refused."""

_INT_FIELDS = ("rounds", "clients", "local_steps", "batch_size", "seed")
_FLOAT_FIELDS = ("learning_rate", "momentum", "weight_decay", "round_timeout_s")
_STR_FIELDS = ("sealfl_src", "model", "manifest", "out")


class PeerConfigError(ValueError):
    """The peer's configuration file, or a file it names, is not what the bench wrote."""


@dataclass(frozen=True)
class PeerFile:
    """A file the peer reads, with the SHA-256 it must have."""

    path: str
    sha256: str


@dataclass(frozen=True)
class PeerConfig:
    """Everything the Flower app needs to train what sealfl trained.

    Attributes
    ----------
    sealfl_src
        The directory holding the ``sealfl`` package (sealfl's ``src``).
    model
        A model name of ``sealfl.models.nn.MODEL_NAMES``.
    rounds, clients
        FedAvg rounds, and the SuperNodes every round must hear from.
    local_steps, batch_size, learning_rate, momentum, weight_decay
        Each client's local SGD per round.
    seed
        Seeds the clients' data order.
    shards
        One shard file per client, in client (SuperNode ``shard-index``) order.
    initial
        The flat float32 initial model (``.npy``).
    manifest
        sealfl's canonical manifest JSON of that flat model.
    out
        Directory the ServerApp writes its round log into.
    round_timeout_s
        How long the ServerApp waits for a round's replies.
    """

    sealfl_src: str
    model: str
    rounds: int
    clients: int
    local_steps: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float
    seed: int
    shards: tuple[PeerFile, ...]
    initial: PeerFile
    manifest: str
    out: str
    round_timeout_s: float


def sha256_file(path: str | Path) -> str:
    """Return the SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_peer_config(config: PeerConfig, path: str | Path) -> None:
    """Write ``config`` as JSON to ``path`` (what :func:`read_peer_config` reads)."""
    doc = {"format": PEER_FORMAT, **asdict(config)}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _peer_file(value: Any, where: str) -> PeerFile:
    if not isinstance(value, dict) or set(value) != {"path", "sha256"}:
        raise PeerConfigError(f"{where}: expected {{'path', 'sha256'}}, got {value!r}")
    if not all(isinstance(v, str) for v in value.values()):
        raise PeerConfigError(f"{where}: path and sha256 must be strings")
    return PeerFile(value["path"], value["sha256"])


def read_peer_config(path: str | Path) -> PeerConfig:
    """Read and check the configuration :func:`write_peer_config` wrote.

    Raises
    ------
    PeerConfigError
        If a field is missing, extra, of the wrong type or out of range (the message names it).
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PeerConfigError(f"{path}: cannot read the peer configuration: {exc}") from exc
    expected = {"format", "shards", "initial", *_INT_FIELDS, *_FLOAT_FIELDS, *_STR_FIELDS}
    if not isinstance(doc, dict) or set(doc) != expected:
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise PeerConfigError(f"{path}: expected keys {sorted(expected)}, got {got}")
    if doc["format"] != PEER_FORMAT:
        raise PeerConfigError(f"{path}: format must be {PEER_FORMAT!r}, got {doc['format']!r}")
    for name in _INT_FIELDS:
        value = doc[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PeerConfigError(f"{path}: {name} must be a non-negative integer, got {value!r}")
    for name in _FLOAT_FIELDS:
        value = doc[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise PeerConfigError(f"{path}: {name} must be a non-negative number, got {value!r}")
    for name in _STR_FIELDS:
        if not isinstance(doc[name], str):
            raise PeerConfigError(f"{path}: {name} must be a string, got {doc[name]!r}")
    if not isinstance(doc["shards"], list) or len(doc["shards"]) != doc["clients"]:
        raise PeerConfigError(f"{path}: shards must list one file per client ({doc['clients']})")
    shards = tuple(_peer_file(s, f"{path}: shards[{i}]") for i, s in enumerate(doc["shards"]))
    return PeerConfig(
        sealfl_src=doc["sealfl_src"],
        model=doc["model"],
        rounds=doc["rounds"],
        clients=doc["clients"],
        local_steps=doc["local_steps"],
        batch_size=doc["batch_size"],
        learning_rate=float(doc["learning_rate"]),
        momentum=float(doc["momentum"]),
        weight_decay=float(doc["weight_decay"]),
        seed=doc["seed"],
        shards=shards,
        initial=_peer_file(doc["initial"], f"{path}: initial"),
        manifest=doc["manifest"],
        out=doc["out"],
        round_timeout_s=float(doc["round_timeout_s"]),
    )


def use_sealfl_source(src: str) -> None:
    """Make sealfl's torch-only modules importable from its source tree ``src``.

    Raises
    ------
    PeerConfigError
        If ``sealfl.models.nn`` or ``sealfl.data.batches`` cannot be imported from there.
    """
    if src not in sys.path:
        sys.path.insert(0, src)
    try:
        for module in ("sealfl.data.batches", "sealfl.models.nn"):
            importlib.import_module(module)
    except ImportError as exc:
        raise PeerConfigError(
            f"cannot import sealfl's model and data code from {src}: {exc} (the peer needs "
            "torch and numpy)"
        ) from exc


def read_initial(config: PeerConfig) -> np.ndarray:
    """Return the initial flat model, checked against its digest and length (no pickle).

    Raises
    ------
    PeerConfigError
        If the file's digest, dtype, shape or length is not what the configuration says.
    """
    path = Path(config.initial.path)
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != config.initial.sha256:
        raise PeerConfigError(f"{path}: SHA-256 is {digest}, expected {config.initial.sha256}")
    values = np.load(io.BytesIO(blob), allow_pickle=False)
    if values.dtype != np.dtype("<f4") or values.ndim != 1:
        raise PeerConfigError(
            f"{path}: expected a 1-D little-endian float32 array, got {values.dtype.str} "
            f"{list(values.shape)}"
        )
    numel = sum(math.prod(e["shape"]) for e in json.loads(config.manifest)["entries"])
    if values.size != numel:
        raise PeerConfigError(f"{path}: {values.size} values, the manifest describes {numel}")
    return values


@dataclass(frozen=True)
class RoundResult:
    """One client's round: the flat update and what sealfl's worker would report."""

    values: np.ndarray
    loss: float
    seconds: float
    examples: int


def train_round(
    config: PeerConfig, shard_index: int, server_round: int, global_values: np.ndarray
) -> RoundResult:
    """Train ``config.local_steps`` minibatches from ``global_values`` on shard ``shard_index``.

    Raises
    ------
    PeerConfigError
        If the shard index is out of range or sealfl's code cannot be imported.
    sealfl.errors.ConfigError, sealfl.errors.ProtocolError
        If the shard file or the model's manifest is not the one sealfl used.
    """
    if not 0 <= shard_index < len(config.shards):
        raise PeerConfigError(f"shard-index {shard_index}: expected 0..{len(config.shards) - 1}")
    use_sealfl_source(config.sealfl_src)
    import torch
    import torch.nn.functional as F  # noqa: N812 (torch's convention)

    from sealfl.data import read_shard
    from sealfl.data.batches import Batches
    from sealfl.errors import ProtocolError
    from sealfl.models import FlatManifest
    from sealfl.models.nn import build_model, flatten, load_flat, manifest_of

    shard = config.shards[shard_index]
    data = read_shard(shard.path, index=shard_index, sha256=shard.sha256).data
    schema = data.schema
    model = build_model(
        config.model,
        num_classes=len(schema.class_names),
        in_channels=schema.channels,
        image_size=schema.height,
    )
    manifest = FlatManifest.from_json(config.manifest)
    difference = manifest_of(model).difference(manifest)
    if difference is not None:
        raise ProtocolError(f"the peer's {config.model} is not sealfl's: {difference}")
    # Made before the clock, as sealfl's worker makes its optimiser once at start-up.
    optimiser = torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    started = time.perf_counter()
    load_flat(model, global_values, manifest)
    seed = config.seed * 1_000_003 + server_round * 1_009 + shard_index
    torch.manual_seed(seed)
    model.train()
    batches = Batches(data, batch_size=config.batch_size, shuffle=True, seed=seed)
    epochs = itertools.chain.from_iterable(iter(batches) for _ in itertools.count())
    total, examples = 0.0, 0
    for x, y in itertools.islice(epochs, config.local_steps):
        optimiser.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(y)
        examples += len(y)
    values, _ = flatten(model)
    seconds = time.perf_counter() - started
    return RoundResult(values, total / examples if examples else math.nan, seconds, examples)

"""The torch half of hfl: the model a federation trains, a worker's local round, evaluation.

Everything here is a function of its inputs and the run's seed, so a worker keeps no state
between rounds: the round that trains on model version ``v`` seeds torch and the data order
from ``(seed, worker id, v)`` (:func:`derive_seed`) and starts a fresh local optimiser. Given
the same global model, a worker computes the same update bit for bit, whether it ran all along,
was restarted, or the PS was resumed from its checkpoint in between; that is what makes a
resumed run end with exactly the model of an uninterrupted one.

Run with one intra-op thread per process (:func:`use_threads`) where the PS and the workers
share a machine: on a busy box two threads per process measured 2-8x slower than one.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn

from sealfl.data import ImageSchema, ImageSet
from sealfl.data.augment import CIFAR10_MEAN, CIFAR10_STD, Augmentation
from sealfl.data.batches import Batches
from sealfl.errors import ConfigError
from sealfl.fl.hfl.settings import Aggregation, Pipeline, Settings
from sealfl.models import FlatManifest
from sealfl.models.nn import build_model, flatten, load_flat, manifest_of

__all__ = [
    "EvalResult",
    "LocalResult",
    "LocalTrainer",
    "derive_seed",
    "evaluate",
    "initial_model",
    "parameter_masks",
    "use_threads",
]

_EVAL_BATCH = 500
_REFERENCE_CROP = 24


def use_threads(threads: int) -> None:
    """Set torch's intra-op threads (1 where parties share the cores; see the module docstring).

    Raises
    ------
    ConfigError
        If ``threads`` is not positive.
    """
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def derive_seed(seed: int, *parts: object) -> int:
    """Return a 63-bit seed for one purpose of one run (``parts`` name it), from SHA-256."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def input_size(settings: Settings, schema: ImageSchema) -> int:
    """Return the side of the images the network sees (the reference crops to 24).

    Raises
    ------
    ConfigError
        If the images are not square, or too small for the pipeline.
    """
    if schema.height != schema.width:
        raise ConfigError(
            f"data: hfl's networks take square images, got {schema.height}x{schema.width}"
        )
    if settings.pipeline is Pipeline.REFERENCE:
        if schema.height < _REFERENCE_CROP:
            raise ConfigError(
                f"pipeline 'reference' crops {_REFERENCE_CROP}x{_REFERENCE_CROP}; the images are "
                f"{schema.height}x{schema.width}"
            )
        return _REFERENCE_CROP
    if settings.pipeline is Pipeline.CIFAR and schema.channels != 3:
        raise ConfigError(
            f"pipeline 'cifar' normalises 3 colour channels; the images have {schema.channels}"
        )
    return schema.height


def initial_model(settings: Settings, schema: ImageSchema) -> nn.Module:
    """Return the network of ``settings`` for ``schema``, initialised from the run's seed.

    Every party builds it the same way, so its manifest (and the PS's initial weights) follow
    from the settings and the schema alone.

    Raises
    ------
    ConfigError
        If the model cannot take this data.
    """
    size = input_size(settings, schema)
    torch.manual_seed(derive_seed(settings.seed, "init"))
    return build_model(
        settings.model,
        num_classes=len(schema.class_names),
        in_channels=schema.channels,
        image_size=size,
    )


def parameter_masks(
    model: nn.Module, manifest: FlatManifest
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Return two masks over the flat buffer: trainable parameters, and those that take L2.

    Buffer entries (batch-norm running statistics) are in neither: the PS averages them rather
    than stepping them. Batch-norm scales and shifts take no L2, as in the reference.
    """
    params = dict(model.named_parameters())
    no_decay = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for name, _ in module.named_parameters(recurse=False)
    }
    trainable = np.zeros(manifest.numel, dtype=bool)
    decay = np.zeros(manifest.numel, dtype=bool)
    for spec, start, stop in manifest.slices():
        if spec.name in params:
            trainable[start:stop] = True
            decay[start:stop] = spec.name not in no_decay
    return trainable, decay


def _batches(
    data: ImageSet, settings: Settings, *, train: bool, seed: int = 0, batch_size: int
) -> Batches:
    pipeline = settings.pipeline
    augment: Augmentation | None = None
    crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    standardize = False
    if pipeline is Pipeline.CIFAR:
        mean, std = CIFAR10_MEAN, CIFAR10_STD
        if train:
            augment = Augmentation(padding=4, flip=True)
    elif pipeline is Pipeline.REFERENCE:
        standardize = True
        if train:
            augment = Augmentation(padding=0, crop=_REFERENCE_CROP, flip=True)
        else:
            crop = _REFERENCE_CROP
    return Batches(
        data,
        batch_size=batch_size,
        shuffle=train,
        seed=seed,
        augment=augment,
        crop=crop,
        standardize=standardize,
        mean=mean,
        std=std,
    )


@dataclass(frozen=True)
class LocalResult:
    """One worker's contribution to one round.

    Attributes
    ----------
    values
        The flat float32 upload: the locally trained weights (FedAvg, FedAvgM), or the
        gradient at the global model with the updated batch-norm statistics (reference).
    loss
        Mean training loss over the round's minibatches.
    seconds
        Wall time of the local training.
    examples
        Examples the round was computed on (the FedAvg weight).
    steps
        Minibatch steps taken.
    """

    values: npt.NDArray[np.float32]
    loss: float
    seconds: float
    examples: int
    steps: int


class LocalTrainer:
    """A worker's model and shard; :meth:`train` runs one round from a global model.

    Parameters
    ----------
    settings
        The federation's settings.
    data
        This worker's shard.
    worker_id
        Part of every per-round seed, so workers draw different orders.

    Raises
    ------
    ConfigError
        If the model cannot take this data.
    """

    def __init__(self, settings: Settings, data: ImageSet, *, worker_id: int) -> None:
        self.settings = settings
        self.data = data
        self.worker_id = worker_id
        self.model = initial_model(settings, data.schema)
        self.manifest = manifest_of(self.model)
        self._params = dict(self.model.named_parameters())
        # Made once: the first optimiser a process makes imports torch._dynamo (about 2 s here),
        # which belongs to start-up, not to round 1. Its state is cleared every round.
        self._optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=settings.learning_rate,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )

    def _minibatches(self, version: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        s = self.settings
        batches = _batches(
            self.data,
            s,
            train=True,
            seed=derive_seed(s.seed, "data", self.worker_id, version),
            batch_size=s.batch_size,
        )
        if s.local_steps:
            epochs = itertools.chain.from_iterable(iter(batches) for _ in itertools.count())
            return itertools.islice(epochs, s.local_steps)
        return itertools.chain.from_iterable(iter(batches) for _ in range(s.local_epochs))

    def train(self, version: int, global_values: npt.NDArray[np.float32]) -> LocalResult:
        """Train one round on global model ``version`` and return the upload.

        Raises
        ------
        ProtocolError
            If ``global_values`` does not fit the model or holds non-finite values.
        """
        s = self.settings
        started = time.perf_counter()
        load_flat(self.model, global_values, self.manifest)
        torch.manual_seed(derive_seed(s.seed, "torch", self.worker_id, version))
        self.model.train()
        if s.aggregation is Aggregation.REFERENCE:
            return self._gradient(version, started)
        optimiser = self._optimizer
        optimiser.state.clear()  # a fresh local optimiser every round (no momentum carried)
        for group in optimiser.param_groups:
            group["lr"] = s.learning_rate_at(version)
        total, examples, steps = 0.0, 0, 0
        for x, y in self._minibatches(version):
            optimiser.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(y)
            examples += len(y)
            steps += 1
        values, _ = flatten(self.model)
        seconds = time.perf_counter() - started
        loss_mean = total / examples if examples else math.nan
        # FedAvg weighs a worker by its shard (what one pass covers), not by how often it
        # cycled through it in local steps.
        weight = len(self.data) if not s.local_steps else examples
        return LocalResult(values, loss_mean, seconds, weight, steps)

    def _gradient(self, version: int, started: float) -> LocalResult:
        """Return the reference's step: the gradient of one minibatch at the global model."""
        x, y = next(iter(self._minibatches(version)))
        self.model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        values, _ = flatten(self.model)  # batch-norm statistics after this batch
        for spec, start, stop in self.manifest.slices():
            param = self._params.get(spec.name)
            if param is not None:
                grad = param.grad
                values[start:stop] = 0.0 if grad is None else grad.detach().reshape(-1).numpy()
        seconds = time.perf_counter() - started
        return LocalResult(values, float(loss.detach()), seconds, len(y), 1)


@dataclass(frozen=True)
class EvalResult:
    """The global model on a held-out set.

    Attributes
    ----------
    loss
        Mean cross-entropy.
    accuracy
        Fraction classified correctly.
    per_class
        Accuracy per class in label order (NaN for a class without test examples).
    """

    loss: float
    accuracy: float
    per_class: tuple[float, ...]


def evaluate(model: nn.Module, data: ImageSet, settings: Settings) -> EvalResult:
    """Evaluate ``model`` on ``data`` with the pipeline's evaluation transform."""
    model.eval()
    classes = len(data.class_names)
    correct = np.zeros(classes, dtype=np.int64)
    total_loss = 0.0
    with torch.no_grad():
        for x, y in _batches(data, settings, train=False, batch_size=_EVAL_BATCH):
            logits = model(x)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            hits = (logits.argmax(dim=1) == y).numpy()
            correct += np.bincount(y.numpy()[hits], minlength=classes)
    counts = data.class_counts()
    per_class = tuple(float(c / n) if n else math.nan for c, n in zip(correct, counts, strict=True))
    n = len(data)
    return EvalResult(total_loss / n, float(correct.sum() / n), per_class)

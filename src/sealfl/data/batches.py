"""Minibatches of an :class:`~sealfl.data.images.ImageSet` as torch tensors, reproducibly.

A deliberately small replacement for ``torch.utils.data.DataLoader``: the data are already one
``uint8`` array in memory, so there is nothing to gain from worker processes, and everything to
lose in a TEE (forked workers, shared memory). Batches are gathered with one index operation,
converted to float32, augmented, normalised, and yielded with their labels.

Every random choice (the epoch's order, each augmentation) comes from this object's own
``torch.Generator``, seeded at construction: the same seed gives the same batches on any
machine, and :meth:`Batches.rng_state` / :meth:`Batches.set_rng_state` carry the position into a
checkpoint, so a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from sealfl.data.augment import Augmentation, center_crop, normalize, per_image_standardize
from sealfl.data.augment import to_float as _to_float
from sealfl.data.images import ImageSet
from sealfl.errors import ConfigError

__all__ = ["Batches"]


class Batches:
    """Iterate over ``(images, labels)`` minibatches, one epoch per ``iter()``.

    Parameters
    ----------
    data
        The images.
    batch_size
        Examples per batch.
    shuffle
        Draw a new order every epoch (training); ``False`` keeps the data's order (evaluation).
    drop_last
        Skip a final batch smaller than ``batch_size``.
    augment
        Training-time augmentation, or ``None``.
    crop
        Central crop to this size (evaluation counterpart of a random crop), or ``None``.
    standardize
        Per-image standardisation (the reference system's).
    mean, std
        Per-channel normalisation after scaling to [0, 1], or ``None`` for none.
    seed
        Seed of this object's generator.

    Raises
    ------
    ConfigError
        If ``batch_size`` is not positive, the set is empty, or only one of ``mean``/``std`` is
        given.
    """

    def __init__(
        self,
        data: ImageSet,
        *,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: Augmentation | None = None,
        crop: int | None = None,
        standardize: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batches: batch_size must be a positive integer, got {batch_size!r}")
        if len(data) == 0:
            raise ConfigError("batches: the image set is empty")
        if (mean is None) != (std is None):
            raise ConfigError("batches: give both mean and std, or neither")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.crop = crop
        self.standardize = standardize
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None
        self.generator = torch.Generator().manual_seed(seed)
        self._images = torch.from_numpy(np.ascontiguousarray(data.images))
        self._labels = torch.from_numpy(np.ascontiguousarray(data.labels))

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.data), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = _to_float(self._images[idx])
            if self.augment is not None:
                x = self.augment(x, generator=self.generator)
            if self.crop is not None:
                x = center_crop(x, self.crop)
            if self.standardize:
                x = per_image_standardize(x)
            if self.mean is not None and self.std is not None:
                x = normalize(x, self.mean, self.std)
            yield x, self._labels[idx]

    def rng_state(self) -> bytes:
        """Return the generator's state, to restore with :meth:`set_rng_state`."""
        return bytes(self.generator.get_state().numpy().tobytes())

    def set_rng_state(self, state: bytes) -> None:
        """Restore a state from :meth:`rng_state`.

        Raises
        ------
        ConfigError
            If ``state`` is not a torch CPU generator state.
        """
        try:
            self.generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"batches: not a generator state ({len(state)} bytes): {exc}"
            ) from exc

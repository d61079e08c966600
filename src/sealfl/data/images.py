"""The in-memory shape every image loader returns: uint8 pixels, int64 labels, class names.

Images stay ``uint8`` in ``(N, C, H, W)`` order (channel-major, as CIFAR's files store them)
until a batch is drawn: 50,000 CIFAR images are 153.6 MB as bytes and four times that as
float32, and augmentation works on the batch anyway (:mod:`sealfl.data.batches`).

:class:`ImageSchema` is what a federation must agree on before training together (channels,
size, class names); its digest goes into a run's settings so a worker with other data is refused
at join, not after a round of garbage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError

__all__ = ["ImageSchema", "ImageSet"]


@dataclass(frozen=True)
class ImageSchema:
    """What two image sets must share to be trained on together.

    Parameters
    ----------
    channels, height, width
        Image geometry.
    class_names
        Names of the classes, in label order.
    """

    channels: int
    height: int
    width: int
    class_names: tuple[str, ...]

    def to_json(self) -> str:
        """Return the canonical JSON form (sorted keys, no spaces)."""
        doc = {
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "class_names": list(self.class_names),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """Return the SHA-256 (hex) of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ImageSet:
    """Labelled images.

    Parameters
    ----------
    images
        ``uint8``, shape ``(n, channels, height, width)``.
    labels
        ``int64``, shape ``(n,)``, each in ``[0, len(class_names))``.
    class_names
        Class names in label order; at least one.

    Raises
    ------
    ConfigError
        If dtypes or shapes disagree or a label is outside the classes (a loader bug or a
        hand-built set that cannot be used).
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ConfigError(
                f"ImageSet: images must be uint8 of shape (n, channels, height, width), got "
                f"{self.images.dtype} {list(self.images.shape)}"
            )
        n = self.images.shape[0]
        if self.labels.dtype != np.int64 or self.labels.shape != (n,):
            raise ConfigError(
                f"ImageSet: labels must be int64 of shape ({n},), got "
                f"{self.labels.dtype} {list(self.labels.shape)}"
            )
        if not self.class_names:
            raise ConfigError("ImageSet: at least one class name is needed")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"ImageSet: class names repeat: {list(self.class_names)}")
        if n:
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= len(self.class_names):
                bad = lo if lo < 0 else hi
                raise ConfigError(
                    f"ImageSet: label {bad} at row {int(np.argmax(self.labels == bad))} is not "
                    f"in [0, {len(self.class_names)})"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Channels per image."""
        return int(self.images.shape[1])

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.images.shape[2])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        """Number of classes (not all need to occur: a label-skewed shard may miss some)."""
        return len(self.class_names)

    @property
    def schema(self) -> ImageSchema:
        """Geometry and class names, without the data."""
        return ImageSchema(self.channels, self.height, self.width, self.class_names)

    def class_counts(self) -> npt.NDArray[np.int64]:
        """Return how many images each class has, in label order."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def subset(self, indices: npt.ArrayLike) -> ImageSet:
        """Return the rows at ``indices`` (copied), with the same class names."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.images[idx], self.labels[idx], self.class_names)

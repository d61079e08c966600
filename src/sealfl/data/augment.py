"""Image augmentation in torch, on whole batches, from an explicit generator.

sealfl does not use torchvision (it does not import beside the CPU build of torch pinned here),
so the few transforms CIFAR training needs are written here, vectorised over the batch:

* :func:`pad_crop`: zero-pad by 4 and take a random crop of the original size: He et al.'s
  CIFAR augmentation, with :func:`random_flip`.
* :func:`random_crop` / :func:`center_crop`: the reference system's 24x24 crops (random for
  training, central for evaluation), and :func:`per_image_standardize`, its normalisation.
* :func:`normalize`: per-channel mean and standard deviation (:data:`CIFAR10_MEAN`,
  :data:`CIFAR10_STD`).

Every random draw comes from the ``torch.Generator`` passed in, never the global one, so a run is
reproducible from its seed and a resumed run can restore the generator's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 (torch's convention)
except ModuleNotFoundError as _exc:  # pragma: no cover - the test environment installs torch
    raise ModuleNotFoundError(
        "sealfl.data.augment needs torch, from the 'hfl' extra: pip install 'sealfl[hfl]'"
    ) from _exc

from sealfl.errors import ConfigError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Augmentation",
    "center_crop",
    "normalize",
    "pad_crop",
    "per_image_standardize",
    "random_crop",
    "random_flip",
    "to_float",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of CIFAR-10's training images (pixel values scaled to [0, 1])."""

CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of CIFAR-10's training images."""


def _check_batch(x: torch.Tensor, who: str) -> None:
    if x.ndim != 4:
        raise ConfigError(f"{who}: expected a batch (N, C, H, W), got shape {list(x.shape)}")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Return ``uint8`` images as float32 in ``[0, 1]``."""
    if images.dtype != torch.uint8:
        raise ConfigError(f"to_float: expected uint8 images, got {images.dtype}")
    return images.to(torch.float32).div_(255.0)


def _crop_at(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Crop ``h x w`` from each image of ``x`` at its own ``(top, left)`` with one gather."""
    n = x.shape[0]
    rows = (top[:, None] + torch.arange(h))[:, :, None]  # (N, h, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, :]  # (N, 1, w)
    batch = torch.arange(n)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts the indexed dims first: (N, h, w, C).
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_crop(x: torch.Tensor, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """Return a random ``size x size`` crop of each image (positions drawn per image).

    Raises
    ------
    ConfigError
        If ``size`` exceeds the images.
    """
    _check_batch(x, "random_crop")
    n, _, h, w = x.shape
    if not 1 <= size <= min(h, w):
        raise ConfigError(f"random_crop: size must be in [1, {min(h, w)}], got {size}")
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    return _crop_at(x, top, left, size, size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Return the central ``size x size`` crop of each image (evaluation's counterpart).

    Raises
    ------
    ConfigError
        If ``size`` exceeds the images.
    """
    _check_batch(x, "center_crop")
    _, _, h, w = x.shape
    if not 1 <= size <= min(h, w):
        raise ConfigError(f"center_crop: size must be in [1, {min(h, w)}], got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top : top + size, left : left + size].contiguous()


def pad_crop(x: torch.Tensor, *, padding: int = 4, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each side by ``padding`` and crop back to the original size at a random place."""
    _check_batch(x, "pad_crop")
    if padding < 0:
        raise ConfigError(f"pad_crop: padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    return _crop_at(padded, top, left, h, w)


def random_flip(x: torch.Tensor, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_batch(x, "random_flip")
    flip = torch.rand(x.shape[0], generator=generator) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    Raises
    ------
    ConfigError
        If the lengths do not match the channels or a deviation is not positive.
    """
    _check_batch(x, "normalize")
    c = x.shape[1]
    if len(mean) != c or len(std) != c or min(std) <= 0:
        raise ConfigError(
            f"normalize: need {c} means and {c} positive deviations, got {list(mean)} and "
            f"{list(std)}"
        )
    m = torch.tensor(mean, dtype=x.dtype).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, c, 1, 1)
    return (x - m) / s


def per_image_standardize(x: torch.Tensor) -> torch.Tensor:
    """Scale each image to mean 0 and variance 1, as TF's ``per_image_standardization``.

    The deviation is floored at ``1 / sqrt(pixels)`` so a flat image does not divide by zero.
    """
    _check_batch(x, "per_image_standardize")
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    floor = 1.0 / float(flat.shape[1]) ** 0.5
    return ((flat - mean) / std.clamp_min(floor)).view_as(x)


@dataclass(frozen=True)
class Augmentation:
    """A training-time recipe, applied to float batches by :class:`~sealfl.data.batches.Batches`.

    Parameters
    ----------
    padding
        :func:`pad_crop` padding (0 to skip); 4 is He et al.'s.
    crop
        :func:`random_crop` size (``None`` to skip); 24 is the reference system's.
    flip
        :func:`random_flip` with probability 0.5.
    """

    padding: int = 4
    crop: int | None = None
    flip: bool = True

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Apply the recipe to a float batch, drawing from ``generator``."""
        if self.padding:
            x = pad_crop(x, padding=self.padding, generator=generator)
        if self.crop is not None:
            x = random_crop(x, self.crop, generator=generator)
        if self.flip:
            x = random_flip(x, generator=generator)
        return x

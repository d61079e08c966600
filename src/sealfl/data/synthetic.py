"""Synthetic labelled images for tests and benchmarks: learnable, reproducible, any size.

Each class has a fixed random template image (drawn from ``template_seed``); an example is its
class's template plus Gaussian pixel noise (drawn from ``seed``), clipped to 0-255. With the
default noise a small network separates the classes within a few steps, so a test can check
that training *learns* without real data; two calls with the same ``template_seed`` and
different ``seed`` give a train and a test set of the same task.
"""

from __future__ import annotations

import numpy as np

from sealfl.data.images import ImageSet
from sealfl.errors import ConfigError

__all__ = ["synthetic_images"]


def synthetic_images(
    n: int,
    *,
    num_classes: int = 10,
    channels: int = 3,
    size: int = 32,
    seed: int = 0,
    template_seed: int = 0,
    noise: float = 48.0,
) -> ImageSet:
    """Return ``n`` noisy copies of per-class template images, classes balanced and shuffled.

    Parameters
    ----------
    n
        Number of images.
    num_classes, channels, size
        Classes, and the ``(channels, size, size)`` image shape.
    seed
        Seed of the labels' order and the noise.
    template_seed
        Seed of the class templates: keep it fixed across a task's train and test sets.
    noise
        Standard deviation of the pixel noise (0-255 scale).

    Raises
    ------
    ConfigError
        If a count is not positive or ``noise`` is negative.
    """
    for what, value in (
        ("n", n),
        ("num_classes", num_classes),
        ("channels", channels),
        ("size", size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"synthetic images: {what} must be a positive integer, got {value!r}")
    if not noise >= 0:
        raise ConfigError(f"synthetic images: noise must be >= 0, got {noise}")
    templates = np.random.default_rng(template_seed).uniform(
        0, 255, size=(num_classes, channels, size, size)
    )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    pixels = templates[labels] + rng.normal(0.0, noise, size=(n, channels, size, size))
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return ImageSet(images, labels, tuple(f"class{c}" for c in range(num_classes)))

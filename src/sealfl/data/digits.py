"""scikit-learn's handwritten digits as images: the data set of the quick hfl demo.

1,797 grayscale 8x8 images of the digits 0-9, bundled with scikit-learn (nothing is downloaded).
:func:`load_digits_split` makes the fixed, stratified 1,437 / 360 train/test split
(``random_state=0``) the demo's accuracy figures refer to. scikit-learn's pixel values are 0-16;
they are scaled to 0-255 (``round(v * 255 / 16)``), which keeps all 17 levels distinct, so the
images are ordinary ``uint8`` like every other :class:`~sealfl.data.images.ImageSet`.
"""

from __future__ import annotations

import numpy as np

from sealfl.data.images import ImageSet
from sealfl.errors import ConfigError

__all__ = ["DIGIT_CLASSES", "load_digits_split"]

DIGIT_CLASSES = tuple(str(d) for d in range(10))
"""Class names: ``"0"`` ... ``"9"``."""


def load_digits_split(
    *, channels: int = 1, test_size: int = 360, random_state: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Return ``(train, test)`` digits, stratified by class.

    Parameters
    ----------
    channels
        1 (grayscale), or 3 to repeat the gray channel for networks built for RGB input.
    test_size
        Images held out for testing (360 of 1,797 by default, as the demo's figures).
    random_state
        Seed of the split.

    Raises
    ------
    ConfigError
        If ``channels`` is not 1 or 3, or ``test_size`` leaves no room for training.
    """
    # Imported here: scikit-learn's model_selection takes ~0.6 s to import, which every
    # `import sealfl.data` would otherwise pay.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if channels not in (1, 3):
        raise ConfigError(f"digits: channels must be 1 or 3, got {channels}")
    X, y = load_digits(return_X_y=True)
    if not 10 <= test_size <= len(y) - 10:
        raise ConfigError(f"digits: test_size must be in [10, {len(y) - 10}], got {test_size}")
    pixels = np.rint(X * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    if channels == 3:
        pixels = np.repeat(pixels, 3, axis=1)
    labels = y.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_size, random_state=random_state, stratify=labels
    )
    return (
        ImageSet(pixels[idx_train], labels[idx_train], DIGIT_CLASSES),
        ImageSet(pixels[idx_test], labels[idx_test], DIGIT_CLASSES),
    )

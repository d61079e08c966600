"""ImageSet checks, the digits split the demo's figures refer to, and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl.data import ImageSet, load_digits_split, synthetic_images
from sealfl.errors import ConfigError


def test_digits_split_is_the_documented_one() -> None:
    train, test = load_digits_split()
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.uint8
    assert int(train.images.max()) == 255 and len(np.unique(train.images)) == 17
    # Stratified: every class has 35-37 of the 360 test images.
    assert set(test.class_counts().tolist()) <= {35, 36, 37}
    again, _ = load_digits_split()
    np.testing.assert_array_equal(train.labels, again.labels)
    rgb, _ = load_digits_split(channels=3)
    np.testing.assert_array_equal(rgb.images[:, 0], rgb.images[:, 2])
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        load_digits_split(channels=2)


def test_synthetic_images_are_reproducible_balanced_and_share_templates() -> None:
    a = synthetic_images(50, num_classes=5, size=6, seed=1)
    b = synthetic_images(50, num_classes=5, size=6, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.class_counts().tolist() == [10] * 5
    test = synthetic_images(50, num_classes=5, size=6, seed=2)
    assert not np.array_equal(a.images, test.images)
    # Same templates: the class means of two sets agree far better than across classes.
    means_a = np.stack([a.images[a.labels == c].mean(0) for c in range(5)])
    means_t = np.stack([test.images[test.labels == c].mean(0) for c in range(5)])
    same = np.abs(means_a - means_t).mean()
    across = np.abs(means_a - np.roll(means_t, 1, axis=0)).mean()
    assert same < across / 3
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        synthetic_images(0)


@pytest.mark.parametrize(
    ("images", "labels", "names", "match"),
    [
        (np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int64), ("a",), "images must be uint8"),
        (np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.int64), ("a",), "images must be uint8"),
        (
            np.zeros((2, 1, 8, 8), np.uint8),
            np.zeros(3, np.int64),
            ("a",),
            r"labels must be int64 of shape \(2,\)",
        ),
        (
            np.zeros((2, 1, 8, 8), np.uint8),
            np.array([0, 2]),
            ("a", "b"),
            "label 2 at row 1 is not in",
        ),
        (np.zeros((2, 1, 8, 8), np.uint8), np.array([0, -1]), ("a", "b"), "label -1 at row 1"),
        (np.zeros((1, 1, 8, 8), np.uint8), np.zeros(1, np.int64), ("a", "a"), "class names repeat"),
    ],
)
def test_imageset_refuses_inconsistent_arrays(images, labels, names, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ImageSet(images, labels, names)


def test_schema_digest_depends_on_geometry_and_classes() -> None:
    a = synthetic_images(4, num_classes=2, size=8)
    assert a.schema.digest() == synthetic_images(6, num_classes=2, size=8, seed=9).schema.digest()
    assert a.schema.digest() != synthetic_images(4, num_classes=3, size=8).schema.digest()
    assert a.schema.digest() != synthetic_images(4, num_classes=2, size=9).schema.digest()

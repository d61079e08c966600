"""Augmentation and minibatches in torch: correct crops and flips, seeded, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfl.data import ImageSet, synthetic_images
from sealfl.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Augmentation,
    center_crop,
    normalize,
    pad_crop,
    per_image_standardize,
    random_crop,
    random_flip,
    to_float,
)
from sealfl.data.batches import Batches
from sealfl.errors import ConfigError


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_pad_crop_is_a_window_of_the_zero_padded_image() -> None:
    x = torch.rand(12, 3, 6, 6) + 1.0  # no zeros inside, so padding is recognisable
    out = pad_crop(x, padding=2, generator=_gen(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(12):
        hits = [
            (t, l)
            for t in range(5)
            for l in range(5)  # noqa: E741
            if torch.equal(out[i], padded[i, :, t : t + 6, l : l + 6])
        ]
        assert hits, f"image {i} is not a crop of its padded input"
        offsets.add(hits[0])
    assert len(offsets) > 3  # positions are drawn per image


def test_random_and_center_crops() -> None:
    x = torch.arange(2 * 1 * 32 * 32, dtype=torch.float32).view(2, 1, 32, 32)
    c = center_crop(x, 24)
    torch.testing.assert_close(c, x[:, :, 4:28, 4:28])
    r = random_crop(x, 24, generator=_gen(1))
    assert r.shape == (2, 1, 24, 24)
    top = int(r[0, 0, 0, 0].item()) // 32
    left = int(r[0, 0, 0, 0].item()) % 32
    torch.testing.assert_close(r[0], x[0, :, top : top + 24, left : left + 24])
    with pytest.raises(ConfigError, match=r"size must be in \[1, 32\], got 33"):
        random_crop(x, 33, generator=_gen(1))


def test_flip_mirrors_some_images_and_p_controls_it() -> None:
    x = torch.rand(64, 3, 4, 4)
    out = random_flip(x, generator=_gen(2))
    flipped = [bool(torch.equal(o, xi.flip(2))) for o, xi in zip(out, x, strict=True)]
    kept = [bool(torch.equal(o, xi)) for o, xi in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    assert torch.equal(random_flip(x, generator=_gen(2), p=0.0), x)
    assert torch.equal(random_flip(x, generator=_gen(2), p=1.0), x.flip(3))


def test_same_generator_seed_same_augmentation() -> None:
    x = torch.rand(8, 3, 32, 32)
    aug = Augmentation(padding=4, crop=24, flip=True)
    a, b = aug(x, generator=_gen(5)), aug(x, generator=_gen(5))
    assert a.shape == (8, 3, 24, 24)
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, generator=_gen(6)))


def test_normalisations() -> None:
    x = torch.rand(4, 3, 8, 8)
    n = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    torch.testing.assert_close(n[:, 1], (x[:, 1] - CIFAR10_MEAN[1]) / CIFAR10_STD[1])
    s = per_image_standardize(x)
    torch.testing.assert_close(s.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.std(dim=(1, 2, 3), unbiased=False), torch.ones(4))
    flat = per_image_standardize(torch.full((1, 3, 8, 8), 0.5))
    assert torch.equal(flat, torch.zeros_like(flat))
    with pytest.raises(ConfigError, match="need 3 means"):
        normalize(x, (0.5,), (0.5,))
    with pytest.raises(ConfigError, match="expected uint8"):
        to_float(x)


@pytest.fixture
def data() -> ImageSet:
    return synthetic_images(50, num_classes=5, channels=3, size=8, seed=3)


def test_an_epoch_visits_every_example_once_with_its_label(data: ImageSet) -> None:
    batches = Batches(data, batch_size=16, seed=1)
    assert len(batches) == 4
    seen = []
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        for img, lab in zip(x, y, strict=True):
            pixels = np.rint(img.numpy() * 255).astype(np.uint8)
            row = int(np.flatnonzero((data.images == pixels).all(axis=(1, 2, 3)))[0])
            assert data.labels[row] == int(lab)
            seen.append(row)
    assert sorted(seen) == list(range(50))
    assert seen != list(range(50))  # shuffled
    assert len(Batches(data, batch_size=16, drop_last=True)) == 3
    ordered = [y for _, y in Batches(data, batch_size=50, shuffle=False)]
    assert torch.equal(ordered[0], torch.from_numpy(data.labels))


def test_same_seed_same_batches_and_state_resumes_the_stream(data: ImageSet) -> None:
    def epoch(b: Batches) -> list[torch.Tensor]:
        return [x for x, _ in b]

    aug = Augmentation(padding=2)
    a = Batches(data, batch_size=16, augment=aug, seed=7)
    b = Batches(data, batch_size=16, augment=aug, seed=7)
    first = epoch(a)
    assert all(torch.equal(p, q) for p, q in zip(first, epoch(b), strict=True))
    state = a.rng_state()
    second = epoch(a)
    c = Batches(data, batch_size=16, augment=aug, seed=999)
    c.set_rng_state(state)
    assert all(torch.equal(p, q) for p, q in zip(second, epoch(c), strict=True))
    assert not torch.equal(first[0], second[0])


def test_eval_pipeline_crops_and_normalises(data: ImageSet) -> None:
    b = Batches(data, batch_size=50, shuffle=False, crop=6, mean=(0.5,) * 3, std=(0.25,) * 3)
    x, _ = next(iter(b))
    expected = (torch.from_numpy(data.images[:, :, 1:7, 1:7]).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x, expected)


def test_batches_refusals(data: ImageSet) -> None:
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        Batches(data, batch_size=0)
    with pytest.raises(ConfigError, match="give both mean and std"):
        Batches(data, batch_size=4, mean=(0.5,) * 3)
    with pytest.raises(ConfigError, match="not a generator state"):
        Batches(data, batch_size=4).set_rng_state(b"\x01\x02")

"""The leak metrics: AUC as scikit-learn computes it, and both attacks on known gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sealfl.errors import ConfigError
from sealfl.fl.vfl import LeakMeter, binary_auc


def test_binary_auc_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, size=200)
        scores = np.round(rng.normal(size=200) + y * 0.7, 1)  # many ties
        assert binary_auc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert math.isnan(binary_auc(np.ones(4), np.ones(4, dtype=int)))


def _signed_gradients(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # the reference model's gradient: delta_i * (W3_f[:, 0] - W3_f[:, 1]), sign = label
    direction = rng.normal(size=64)
    delta = np.where(y == 1, -1.0, 1.0) * rng.uniform(0.01, 0.5, size=y.size)
    return (delta[:, None] * direction[None, :]).astype(np.float32)


def test_cosine_attack_recovers_every_label_of_raw_gradients() -> None:
    rng = np.random.default_rng(1)
    meter = LeakMeter()
    for _ in range(30):
        y = rng.integers(0, 2, size=32)
        meter.observe(_signed_gradients(y, rng), y)
    report = meter.report()
    assert report.cosine_auc == 1.0
    assert report.leak == 1.0
    assert report.steps == 30


def test_norm_attack_finds_the_larger_minority_gradients() -> None:
    rng = np.random.default_rng(2)
    meter = LeakMeter()
    for _ in range(20):
        y = (rng.random(64) < 0.2).astype(int)
        scale = np.where(y == 1, 2.0, 1.0)[:, None]
        meter.observe(rng.normal(size=(64, 8)) * scale, y)
    assert meter.report().norm_auc > 0.8


def test_random_gradients_leak_nothing() -> None:
    rng = np.random.default_rng(3)
    meter = LeakMeter()
    for _ in range(200):
        y = rng.integers(0, 2, size=32)
        meter.observe(rng.normal(size=(32, 16)), y)
    report = meter.report()
    assert abs(report.norm_auc - 0.5) < 0.03
    assert abs(report.cosine_auc - 0.5) < 0.03


def test_the_auc_pools_pairs_within_batches() -> None:
    # two batches: scores are compared only within each, weighted by their pairs
    rng = np.random.default_rng(4)
    meter = LeakMeter()
    batches = []
    for size in (10, 30):
        y = rng.integers(0, 2, size=size)
        g = rng.normal(size=(size, 4)) * (1 + y[:, None])
        meter.observe(g * (100 if size == 10 else 1), y)  # scale differences must not matter
        batches.append((np.linalg.norm(g, axis=1), y))
    pairs = [int(y.sum() * (y.size - y.sum())) for _, y in batches]
    expected = sum(roc_auc_score(y, s) * p for (s, y), p in zip(batches, pairs, strict=True)) / sum(
        pairs
    )
    assert meter.report().norm_auc == pytest.approx(expected, abs=1e-12)
    assert meter.report().norm_pairs == sum(pairs)


def test_a_batch_of_one_class_adds_nothing_and_mismatched_shapes_are_refused() -> None:
    meter = LeakMeter()
    meter.observe(np.ones((8, 4)), np.ones(8, dtype=int))
    report = meter.report()
    assert report.steps == 1 and report.norm_pairs == 0 and math.isnan(report.norm_auc)
    assert math.isnan(report.leak)
    with pytest.raises(ConfigError, match=r"gradient \[8, 4\] does not match 7 labels"):
        meter.observe(np.ones((8, 4)), np.ones(7, dtype=int))


def test_a_restored_meter_continues_the_same_sums() -> None:
    rng = np.random.default_rng(5)
    batches = [(rng.normal(size=(16, 4)), rng.integers(0, 2, size=16)) for _ in range(6)]
    whole, first = LeakMeter(), LeakMeter()
    for g, y in batches:
        whole.observe(g, y)
    for g, y in batches[:3]:
        first.observe(g, y)
    resumed = LeakMeter()
    resumed.restore(first.state())
    for g, y in batches[3:]:
        resumed.observe(g, y)
    assert resumed.report() == whole.report()
    with pytest.raises(ConfigError, match="norm_u must be a number >= 0"):
        LeakMeter().restore({**first.state(), "norm_u": float("nan")})

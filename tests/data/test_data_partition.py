"""IID and Dirichlet splits: disjoint, complete, reproducible from the recorded seed, skewed."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl.data import Partition, partition_dirichlet, partition_iid
from sealfl.errors import ConfigError

LABELS = np.repeat(np.arange(10), 100).astype(np.int64)  # 1,000 rows, 10 balanced classes


def _check_cover(p: Partition, n: int) -> None:
    joined = np.concatenate(p.indices)
    assert joined.size == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    for ix in p.indices:
        assert ix.dtype == np.int64 and np.all(np.diff(ix) > 0)


def test_iid_is_disjoint_complete_balanced_and_reproducible() -> None:
    p = partition_iid(LABELS, 3, seed=5)
    _check_cover(p, LABELS.size)
    assert p.sizes() == [334, 333, 333]
    assert p.describe() == {
        "method": "iid",
        "seed": 5,
        "alpha": None,
        "num_workers": 3,
        "sizes": [334, 333, 333],
    }
    again = partition_iid(LABELS, 3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(p.indices, again.indices, strict=True))
    other = partition_iid(LABELS, 3, seed=6)
    assert not np.array_equal(p.indices[0], other.indices[0])
    # Every worker sees every class.
    assert (p.class_counts(LABELS, 10) > 10).all()


def _skew(p: Partition) -> float:
    """Mean total-variation distance between a worker's label mix and the global one."""
    counts = p.class_counts(LABELS, 10).astype(float)
    mix = counts / counts.sum(axis=1, keepdims=True)
    return float(np.abs(mix - 0.1).sum(axis=1).mean() / 2)


def test_dirichlet_is_complete_reproducible_and_skews_with_small_alpha() -> None:
    skewed = partition_dirichlet(LABELS, 4, alpha=0.1, seed=1)
    _check_cover(skewed, LABELS.size)
    assert min(skewed.sizes()) >= 10
    assert skewed.describe()["alpha"] == 0.1 and skewed.method == "dirichlet"
    again = partition_dirichlet(LABELS, 4, alpha=0.1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(skewed.indices, again.indices, strict=True))
    near_iid = partition_dirichlet(LABELS, 4, alpha=1000.0, seed=1)
    _check_cover(near_iid, LABELS.size)
    assert _skew(skewed) > 0.4
    assert _skew(near_iid) < 0.05


def test_dirichlet_respects_min_size_by_redrawing() -> None:
    p = partition_dirichlet(LABELS, 10, alpha=0.05, seed=3, min_size=40)
    assert min(p.sizes()) >= 40


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "alpha must be a positive number"),
        ({"alpha": float("nan")}, "alpha must be a positive number"),
        ({"alpha": 1.0, "seed": -1}, "seed must be a non-negative integer"),
        ({"alpha": 1.0, "min_size": 300}, r"4 workers x min_size 300 exceeds 1000"),
        ({"alpha": 0.01, "min_size": 240}, "no Dirichlet.* draw in 1000"),
    ],
)
def test_dirichlet_refusals(kwargs: dict, match: str) -> None:
    args = {"seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        partition_dirichlet(LABELS, 4, **args)


def test_refuses_more_workers_than_rows_and_bad_labels() -> None:
    with pytest.raises(ConfigError, match="5 workers for only 3 examples"):
        partition_iid([0, 1, 0], 5, seed=0)
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        partition_iid(LABELS, 0, seed=0)
    with pytest.raises(ConfigError, match="labels must be a 1-D array of non-negative integers"):
        partition_iid(np.array([0.5, 1.0]), 1, seed=0)

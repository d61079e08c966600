"""Distinctness and membership of compared values: the 64-bit-prefix fast path and its fallback."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sealfl.psi.matching import all_distinct, members


def _values(count: int, width: int) -> np.ndarray:
    return np.frombuffer(os.urandom(count * width), dtype=f"S{width}").copy()


@pytest.mark.parametrize("width", [5, 8, 13, 32])
def test_members_and_distinctness_equal_numpys_exact_operations(width: int) -> None:
    own, other = _values(3000, width), _values(2000, width)
    within = np.concatenate([other, own[::3]])[np.random.default_rng(1).permutation(3000)]
    got = members(own, within)
    assert np.array_equal(got, np.isin(own, within))
    assert got.sum() == 1000
    assert all_distinct(own) and all_distinct(within)
    assert not all_distinct(np.concatenate([own, own[7:8]]))


def test_values_sharing_a_prefix_fall_back_to_whole_comparisons() -> None:
    # Equal first 8 bytes, different tails: a prefix-only comparison would call them equal.
    base = _values(200, 13)
    twins = base.view(np.uint8).reshape(-1, 13).copy()
    twins[:, 12] ^= 1
    twins = twins.view("S13").ravel()
    assert all_distinct(np.concatenate([base, twins]))
    assert not members(base, twins).any()
    assert np.array_equal(members(base, np.concatenate([twins, base[:50]])), np.arange(200) < 50)
    # a probe whose prefix matches a stored value's but whose tail does not
    assert not members(twins[:10], base).any()


def test_empty_sets() -> None:
    empty = np.zeros(0, dtype="S13")
    assert members(empty, _values(5, 13)).size == 0
    assert not members(_values(5, 13), empty).any()
    assert all_distinct(empty)

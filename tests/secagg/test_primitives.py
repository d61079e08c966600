"""Shamir sharing and quantisation on their own."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sealfl.errors import ProtocolError
from sealfl.secagg import Quantizer
from sealfl.secagg.shamir import PRIME, reconstruct, split


def test_shamir_any_threshold_subset_recovers() -> None:
    secret = os.urandom(32)
    shares = split(secret, [1, 2, 3, 4, 5], 3)
    for subset in ([1, 2, 3], [3, 4, 5], [1, 5, 2], [1, 2, 3, 4, 5]):
        assert reconstruct({x: shares[x] for x in subset}, 3) == secret
    with pytest.raises(ProtocolError, match="need 3 shares to reconstruct, got 2"):
        reconstruct({1: shares[1], 2: shares[2]}, 3)


def test_shamir_catches_a_bad_extra_share() -> None:
    shares = split(b"\xff" * 32, [1, 2, 3, 4], 3)
    bad = dict(shares)
    bad[4] = ((int.from_bytes(bad[4], "big") + 1) % PRIME).to_bytes(33, "big")
    with pytest.raises(ProtocolError, match="share of holder 4 is inconsistent"):
        reconstruct(bad, 3, what="seed")
    with pytest.raises(ProtocolError, match="expected 33 bytes, got 32"):
        reconstruct({1: shares[1][1:], 2: shares[2], 3: shares[3]}, 3)


@pytest.mark.parametrize(("workers", "bits"), [(2, 31), (3, 30), (4, 30), (5, 29), (100, 25)])
def test_quantizer_headroom(workers: int, bits: int) -> None:
    q = Quantizer(clip=8.0, workers=workers)
    assert q.bits == bits
    top = np.full(4, 8.0)
    total = sum((q.quantize(top).astype(np.uint64) for _ in range(workers)), np.zeros(4, np.uint64))
    assert int(total.max()) < 2**32  # the sum of `workers` maxima never wraps


def test_quantizer_error_bound_holds_and_is_tight() -> None:
    q = Quantizer(clip=1.0, workers=5)
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, 20000) for _ in range(5)]
    total = sum((q.quantize(x) for x in xs), np.zeros(20000, np.uint32))
    err = np.abs(q.dequantize_sum(total, 5) - np.sum(xs, axis=0))
    assert err.max() <= q.sum_error_bound(5) * (1 + 1e-9)
    assert err.max() > q.sum_error_bound(5) * 0.3  # the bound is not vacuous
    assert q.sum_error_bound(5) == pytest.approx(5 * 2.0 / (2**29 - 1) / 2)


def test_quantizer_clips_and_refuses_nan() -> None:
    q = Quantizer(clip=1.0, workers=2)
    assert q.dequantize_sum(q.quantize(np.array([5.0, -5.0])), 1).tolist() == [1.0, -1.0]
    with pytest.raises(ProtocolError, match="NaN or infinity"):
        q.quantize(np.array([np.nan]))

"""Encrypted matrix products X @ Enc(w) and Enc(v) @ X against numpy, both kernels."""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np
import pytest

from sealfl import he
from sealfl.errors import EncodingOverflowError, HEError
from sealfl.he import PaillierPrivateKey, _multiexp

pytestmark = pytest.mark.filterwarnings("ignore", category=he.WeakKeyWarning)


def quantised(matrix: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(matrix * 2.0**bits) / 2.0**bits


@pytest.mark.parametrize("shape", [(23, 5), (4, 17), (1, 1)])
def test_matvec_and_vecmat_match_numpy(key1024: PaillierPrivateKey, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    X = rng.normal(scale=3, size=shape)
    X[0, 0] = 0.0
    w = rng.normal(size=shape[1])
    v = rng.normal(size=shape[0])
    enc_w = he.encrypt_vector(key1024.public_key, w, fraction_bits=20)
    enc_v = he.encrypt_vector(key1024.public_key, v, fraction_bits=20)
    z = X @ enc_w
    g = enc_v @ X
    assert z.scale_bits == g.scale_bits == 20 + he.DEFAULT_MATRIX_FRACTION_BITS
    wq = np.rint(w * 2**20) / 2**20
    vq = np.rint(v * 2**20) / 2**20
    Xq = quantised(X, 16)
    assert np.allclose(he.decrypt_vector(key1024, z), Xq @ wq, atol=1e-12, rtol=0)
    assert np.allclose(he.decrypt_vector(key1024, g), vq @ Xq, atol=1e-12, rtol=0)
    z8 = he.matvec(X, enc_w, fraction_bits=8)
    assert z8.scale_bits == 28
    assert np.allclose(he.decrypt_vector(key1024, z8), quantised(X, 8) @ wq, atol=1e-12, rtol=0)


def test_shape_mismatch_and_bad_matrix(key1024: PaillierPrivateKey) -> None:
    enc = he.encrypt_vector(key1024.public_key, [1.0, 2.0])
    with pytest.raises(HEError, match="X has 3 columns, expected 2"):
        np.ones((4, 3)) @ enc
    with pytest.raises(HEError, match="X has 4 rows, expected 2"):
        enc @ np.ones((4, 3))
    with pytest.raises(HEError, match="must be 2-D"):
        he.matvec(np.ones(2), enc)
    with pytest.raises(HEError, match=r"matrix\[1, 0\] is inf"):
        he.matvec(np.array([[1.0, 2.0], [np.inf, 0.0]]), enc)
    with pytest.raises(EncodingOverflowError, match="does not fit"):
        he.matvec(np.array([[2.0**50, 0.0]]), enc)


def test_product_that_could_wrap_is_refused(key1024: PaillierPrivateKey) -> None:
    capacity = he.capacity_bits(key1024.public_key)
    enc = he.encrypt_vector(
        key1024.public_key, [1.0, 1.0], fraction_bits=capacity - 40, integer_bits=20
    )
    with pytest.raises(EncodingOverflowError, match="could need"):
        np.full((3, 2), 1000.0) @ enc


def _reference(bases: list, exponents: np.ndarray, modulus: gmpy2.mpz) -> list:
    out = []
    for row in exponents:
        acc = gmpy2.mpz(1)
        for b, e in zip(bases, row.tolist(), strict=True):
            acc = acc * gmpy2.powmod(b, e, modulus) % modulus
        out.append(acc)
    return out


@pytest.mark.parametrize("method", ["comb", "bucket"])
@pytest.mark.parametrize("window", [3, 5])
def test_both_kernels_agree_with_powmod(
    key1024: PaillierPrivateKey, method: str, window: int
) -> None:
    modulus = key1024.public_key.nsquare
    rng = np.random.default_rng(window)
    bases = [key1024.public_key.raw_encrypt(secrets.randbits(64)) for _ in range(6)]
    bases = [gmpy2.mpz(b) for b in bases]
    exponents = rng.integers(-(2**20), 2**20, size=(5, 6))
    exponents[0] = 0
    exponents[1, 2] = -(2**40)
    if method == "comb":
        digits = _multiexp.signed_digits(exponents, window)
        out = _multiexp._comb(bases, digits, window, modulus)
    else:
        out = _multiexp._bucket(bases, _multiexp.naf_digits(exponents, window), window, modulus)
    assert out == _reference(bases, exponents, modulus)


def test_signed_digits_reconstruct_the_exponents() -> None:
    rng = np.random.default_rng(0)
    exponents = rng.integers(-(2**61), 2**61, size=(7, 3))
    for window in range(2, 11):
        digits = _multiexp.signed_digits(exponents, window)
        half = 1 << (window - 1)
        assert digits.min() >= -half and digits.max() < half
        weights = [1 << (window * t) for t in range(digits.shape[0])]
        rebuilt = sum(d.astype(object) * w for d, w in zip(digits, weights, strict=True))
        assert (rebuilt == exponents.astype(object)).all()


def test_naf_digits_are_sparse_odd_and_reconstruct() -> None:
    rng = np.random.default_rng(1)
    exponents = rng.integers(-(2**61), 2**61, size=(5, 4))
    for window in range(2, 9):
        digits = _multiexp.naf_digits(exponents, window)
        nonzero = digits[digits != 0]
        assert np.all(nonzero % 2 == 1) and np.all(np.abs(nonzero) < 1 << (window - 1))
        for later in range(1, window):  # after a nonzero digit come w - 1 zeros
            assert not np.any((digits[:-later] != 0) & (digits[later:] != 0))
        weights = [1 << i for i in range(digits.shape[0])]
        rebuilt = sum(d.astype(object) * w for d, w in zip(digits, weights, strict=True))
        assert (rebuilt == exponents.astype(object)).all()


def test_parallel_split_matches_in_process(key1024: PaillierPrivateKey) -> None:
    rng = np.random.default_rng(9)
    X = rng.normal(size=(80, 12))
    assert X.size >= _multiexp.PARALLEL_MIN_ENTRIES  # else cores=2 would not split at all
    enc_w = he.encrypt_vector(key1024.public_key, rng.normal(size=12))
    one = he.matvec(X, enc_w, cores=1)
    two = he.matvec(X, enc_w, cores=2)
    assert two.ciphertexts == one.ciphertexts  # the products are exact, so identical
    expected = quantised(X, 16) @ he.decrypt_vector(key1024, enc_w)
    assert np.allclose(he.decrypt_vector(key1024, two), expected, atol=1e-12, rtol=0)

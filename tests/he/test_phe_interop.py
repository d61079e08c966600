"""Interoperability with python-paillier (phe): same n, p, q, both directions, exact."""

from __future__ import annotations

import secrets

import pytest
from phe import paillier

from sealfl.he import PaillierPrivateKey


@pytest.fixture(scope="module")
def phe_keys(
    key2048: PaillierPrivateKey,
) -> tuple[paillier.PaillierPublicKey, paillier.PaillierPrivateKey]:
    public_key = paillier.PaillierPublicKey(key2048.public_key.n)
    return public_key, paillier.PaillierPrivateKey(public_key, key2048.p, key2048.q)


@pytest.mark.parametrize("m", [0, 1, 987654321, 2**200 + 3, -5])
def test_phe_decrypts_our_raw_ciphertexts(
    key2048: PaillierPrivateKey, phe_keys: tuple, m: int
) -> None:
    _, phe_private = phe_keys
    ours = key2048.public_key.raw_encrypt(m)
    assert phe_private.raw_decrypt(ours) == m % key2048.public_key.n


@pytest.mark.parametrize("m", [0, 1, 987654321, 2**200 + 3])
def test_we_decrypt_phe_raw_ciphertexts(
    key2048: PaillierPrivateKey, phe_keys: tuple, m: int
) -> None:
    phe_public, _ = phe_keys
    assert key2048.raw_decrypt(phe_public.raw_encrypt(m)) == m


def test_same_randomness_gives_identical_ciphertexts(
    key2048: PaillierPrivateKey, phe_keys: tuple
) -> None:
    phe_public, _ = phe_keys
    r = secrets.randbelow(key2048.public_key.n - 2) + 1
    assert key2048.public_key.raw_encrypt(31337, r=r) == phe_public.raw_encrypt(31337, r_value=r)


def test_phe_decrypts_our_homomorphic_sum(key2048: PaillierPrivateKey, phe_keys: tuple) -> None:
    from sealfl import he

    _, phe_private = phe_keys
    a = he.encrypt_vector(key2048.public_key, [1.5, -2.25], fraction_bits=8)
    b = he.encrypt_vector(key2048.public_key, [0.5, 10.0], fraction_bits=8)
    total = a + b
    n = key2048.public_key.n
    decoded = [phe_private.raw_decrypt(int(c)) for c in total.ciphertexts]
    signed = [m - n if m > n // 2 else m for m in decoded]
    assert signed == [int(2.0 * 256), int(7.75 * 256)]

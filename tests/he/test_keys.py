"""Key generation, private keys from primes, raw encryption and CRT decryption."""

from __future__ import annotations

import warnings

import gmpy2
import pytest

from sealfl.errors import ConfigError, HEError
from sealfl.he import PaillierPrivateKey, PaillierPublicKey, WeakKeyWarning, generate_keypair


def test_generate_1024_warns_and_has_exact_size() -> None:
    with pytest.warns(WeakKeyWarning, match="1024-bit"):
        public_key, private_key = generate_keypair(1024)
    assert public_key.bits == 1024
    assert private_key.p * private_key.q == public_key.n
    assert gmpy2.is_prime(private_key.p) and gmpy2.is_prime(private_key.q)


def test_generate_default_is_2048_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        public_key, _ = generate_keypair()
    assert public_key.bits == 2048
    assert public_key.ciphertext_bytes == 512


@pytest.mark.parametrize("bits", [512, 1536, 4096, 2047])
def test_generate_refuses_other_sizes(bits: int) -> None:
    with pytest.raises(ConfigError, match=f"got {bits}"):
        generate_keypair(bits)


def test_private_key_rebuilt_from_primes(key1024: PaillierPrivateKey) -> None:
    rebuilt = PaillierPrivateKey.from_primes(key1024.q, key1024.p)
    assert rebuilt == key1024
    assert rebuilt.public_key.n == key1024.public_key.n
    c = key1024.public_key.raw_encrypt(12345)
    assert rebuilt.raw_decrypt(c) == 12345


def test_private_key_refuses_wrong_primes(key1024: PaillierPrivateKey) -> None:
    public_key = key1024.public_key
    with pytest.raises(HEError, match="p·q != n"):
        PaillierPrivateKey(public_key, key1024.p, key1024.q + 2)
    composite = key1024.p * 3
    with pytest.raises(HEError, match="not prime"):
        PaillierPrivateKey(PaillierPublicKey(composite * key1024.q), composite, key1024.q)


def test_public_key_refuses_small_or_even_modulus() -> None:
    with pytest.raises(HEError, match="at least 1024"):
        PaillierPublicKey(126869)
    with pytest.raises(HEError, match="odd"):
        PaillierPublicKey(1 << 1030)


@pytest.mark.parametrize("m", [0, 1, 2**64 + 7, -1, -(2**100)])
def test_raw_roundtrip_wraps_negatives_mod_n(key1024: PaillierPrivateKey, m: int) -> None:
    public_key = key1024.public_key
    assert key1024.raw_decrypt(public_key.raw_encrypt(m)) == m % public_key.n


def test_raw_encrypt_with_injected_r_is_textbook(key1024: PaillierPrivateKey) -> None:
    public_key = key1024.public_key
    n, nsquare = public_key.n, public_key.n**2
    r = 0x1234567890ABCDEF
    expected = (1 + 42 * n) * pow(r, n, nsquare) % nsquare
    assert public_key.raw_encrypt(42, r=r) == expected
    assert public_key.raw_encrypt(42, r=r) == public_key.raw_encrypt(42, r=r)
    assert public_key.raw_encrypt(42) != public_key.raw_encrypt(42)


@pytest.mark.parametrize("r", [0, -5, "n", "p"])
def test_raw_encrypt_refuses_bad_r(key1024: PaillierPrivateKey, r: object) -> None:
    value = {"n": key1024.public_key.n, "p": key1024.p}.get(r, r)  # type: ignore[call-overload]
    with pytest.raises(HEError, match="randomness r"):
        key1024.public_key.raw_encrypt(1, r=value)


def test_raw_decrypt_refuses_non_ciphertexts(key1024: PaillierPrivateKey) -> None:
    with pytest.raises(HEError, match=r"outside \[1, n²\)"):
        key1024.raw_decrypt(0)
    with pytest.raises(HEError, match=r"outside \[1, n²\)"):
        key1024.raw_decrypt(key1024.public_key.n**2)
    with pytest.raises(HEError, match="shares a factor"):
        key1024.raw_decrypt(key1024.p)


def test_fingerprint_names_the_modulus(
    key1024: PaillierPrivateKey, key2048: PaillierPrivateKey
) -> None:
    assert len(key1024.public_key.fingerprint) == 16
    assert key1024.public_key.fingerprint != key2048.public_key.fingerprint
    assert PaillierPublicKey(key1024.public_key.n) == key1024.public_key
    assert "fingerprint" in repr(key1024.public_key)
    assert str(key1024.p) not in repr(key1024)

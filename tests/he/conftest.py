"""Shared fixtures: fixed test keys from vectors/test_keys.json (key generation is slow)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gmpy2
import pytest

from sealfl.he import PaillierPrivateKey, WeakKeyWarning

VECTORS = Path(__file__).parent / "vectors"


def _load_key(bits: int) -> PaillierPrivateKey:
    entry = json.loads((VECTORS / "test_keys.json").read_text())["keys"][str(bits)]
    key = PaillierPrivateKey.from_primes(int(entry["p"], 16), int(entry["q"], 16))
    assert key.public_key.fingerprint_hex == entry["fingerprint"]
    return key


@pytest.fixture(scope="session")
def key1024() -> PaillierPrivateKey:
    """A 1024-bit key: fast, for tests of logic rather than of key size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakKeyWarning)
        return _load_key(1024)


@pytest.fixture(scope="session")
def key2048() -> PaillierPrivateKey:
    """A 2048-bit key, the default size."""
    return _load_key(2048)


@pytest.fixture(scope="session")
def other_key1024() -> PaillierPrivateKey:
    """A second 1024-bit key: the next primes after the 1024-bit vector's primes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakKeyWarning)
        entry = json.loads((VECTORS / "test_keys.json").read_text())["keys"]["1024"]
        p = int(gmpy2.next_prime(int(entry["p"], 16)))
        q = int(gmpy2.next_prime(int(entry["q"], 16)))
        return PaillierPrivateKey.from_primes(p, q)

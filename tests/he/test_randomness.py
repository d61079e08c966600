"""Random n-th residues: fixed-base tables, DJN parameters and every mode's residues."""

from __future__ import annotations

import secrets

import gmpy2
import pytest

from sealfl.errors import ConfigError
from sealfl.he import PaillierPrivateKey, Randomness
from sealfl.he._fixedbase import MAX_TABLE_BYTES, FixedBaseTable, choose_window, table_bytes
from sealfl.he._randomness import residue_source


@pytest.mark.parametrize("window", [3, 8, 10])
def test_fixed_base_table_matches_powmod(key1024: PaillierPrivateKey, window: int) -> None:
    modulus = key1024.public_key.nsquare
    base = gmpy2.mpz(key1024.public_key.raw_encrypt(7))
    table = FixedBaseTable(base, modulus, 100, window=window)
    for exponent in [0, 1, 2**100 - 1, *(secrets.randbits(100) for _ in range(5))]:
        assert table.pow(exponent) == gmpy2.powmod(base, exponent, modulus)
    with pytest.raises(ValueError, match="outside the range"):
        table.pow(1 << (window * -(-100 // window)))
    with pytest.raises(ValueError, match="outside the range"):
        table.pow(-1)


def test_window_choice_keeps_tables_bounded() -> None:
    assert choose_window(1024, 4096) == 10
    assert choose_window(1536, 6144) == 8
    for exponent_bits, modulus_bits in ((1024, 4096), (1536, 6144), (512, 2048)):
        window = choose_window(exponent_bits, modulus_bits)
        assert table_bytes(exponent_bits, modulus_bits, window) <= MAX_TABLE_BYTES


@pytest.mark.parametrize(
    ("randomness", "with_private"),
    [
        (Randomness.DJN, False),
        (Randomness.DJN, True),
        (Randomness.CRT, True),
        (Randomness.TEXTBOOK, False),
        (Randomness.TEXTBOOK, True),
    ],
)
def test_residues_are_fresh_nth_residues(
    key1024: PaillierPrivateKey, randomness: Randomness, with_private: bool
) -> None:
    public_key = key1024.public_key
    source = residue_source(public_key, randomness, key1024 if with_private else None)
    residues = source.draw(4)
    assert len(set(residues)) == 4
    for rho in residues:
        assert 0 < rho < public_key.nsquare
        # An n-th residue is an encryption of 0.
        assert key1024.raw_decrypt(int(rho)) == 0


def test_sources_are_cached_per_key_and_mode(key1024: PaillierPrivateKey) -> None:
    public_key = key1024.public_key
    assert residue_source(public_key, Randomness.DJN) is residue_source(public_key, Randomness.DJN)
    assert residue_source(public_key, Randomness.DJN) is not residue_source(
        public_key, Randomness.DJN, key1024
    )


def test_crt_without_private_key_is_refused(key1024: PaillierPrivateKey) -> None:
    with pytest.raises(ConfigError, match="CRT randomness needs the private key"):
        residue_source(key1024.public_key, Randomness.CRT)


def test_parallel_encryption_leaves_the_tables_to_the_workers(key1024: PaillierPrivateKey) -> None:
    import numpy as np

    from sealfl import he
    from sealfl.he import _randomness

    _randomness._cache.clear()
    vector = he.encrypt_vector(key1024.public_key, np.linspace(-1, 1, 200), cores=2)
    assert not _randomness._cache  # checked here, built (0.6 s, 58 MiB at 2048 bits) in workers
    assert np.allclose(he.decrypt_vector(key1024, vector), np.linspace(-1, 1, 200), atol=1e-6)
    with pytest.raises(ConfigError, match="CRT randomness needs the private key"):
        he.encrypt_vector(key1024.public_key, np.zeros(200), randomness=Randomness.CRT, cores=2)

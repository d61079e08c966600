"""Unpacked encrypted vectors: encoding, scale tracking, bounds and every operation."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl import he
from sealfl.errors import ConfigError, EncodingOverflowError, HEError
from sealfl.he import EncryptedVector, PaillierPrivateKey, Randomness

pytestmark = pytest.mark.filterwarnings("ignore", category=he.WeakKeyWarning)


def enc(
    key: PaillierPrivateKey, values: list[float] | np.ndarray, bits: int = 20
) -> EncryptedVector:
    return he.encrypt_vector(key.public_key, values, fraction_bits=bits)


def dec(key: PaillierPrivateKey, vector: he.EncryptedVector) -> np.ndarray:
    return he.decrypt_vector(key, vector)


@pytest.mark.parametrize("randomness", list(Randomness))
def test_every_randomness_mode_decrypts(
    key1024: PaillierPrivateKey, randomness: Randomness
) -> None:
    values = np.array([0.0, 1.5, -2.25, 1e-5, -32767.5])
    private = key1024 if randomness is Randomness.CRT else None
    vector = he.encrypt_vector(
        key1024.public_key, values, fraction_bits=20, randomness=randomness, private_key=private
    )
    assert np.allclose(dec(key1024, vector), values, atol=2.0**-20)
    again = he.encrypt_vector(
        key1024.public_key, values, fraction_bits=20, randomness=randomness, private_key=private
    )
    assert all(a != b for a, b in zip(vector.ciphertexts, again.ciphertexts, strict=True))


def test_djn_with_private_key_uses_crt_and_decrypts(key1024: PaillierPrivateKey) -> None:
    vector = he.encrypt_vector(key1024.public_key, [3.0, -4.0], private_key=key1024)
    assert dec(key1024, vector).tolist() == [3.0, -4.0]


def test_crt_randomness_needs_the_private_key(key1024: PaillierPrivateKey) -> None:
    with pytest.raises(ConfigError, match="CRT randomness needs the private key"):
        he.encrypt_vector(key1024.public_key, [1.0], randomness=Randomness.CRT)


def test_mismatched_private_key_is_refused(
    key1024: PaillierPrivateKey, other_key1024: PaillierPrivateKey
) -> None:
    with pytest.raises(ConfigError, match="does not match public key"):
        he.encrypt_vector(key1024.public_key, [1.0], private_key=other_key1024)
    with pytest.raises(HEError, match="cannot decrypt: vector is under key"):
        dec(other_key1024, enc(key1024, [1.0]))


def test_out_of_range_and_non_finite_values(key1024: PaillierPrivateKey) -> None:
    with pytest.raises(EncodingOverflowError, match=r"values\[1\] = 2000000.0 .*2\^20"):
        he.encrypt_vector(key1024.public_key, [1.0, 2e6], integer_bits=20)
    with pytest.raises(HEError, match=r"values\[0\] is nan"):
        enc(key1024, [float("nan")])
    with pytest.raises(HEError, match="1-D"):
        enc(key1024, np.zeros((2, 2)))


@pytest.mark.parametrize("operation", ["mul", "add_plain", "__sub__", "__rsub__"])
@pytest.mark.parametrize("scalar", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scalar_operand_is_refused(
    key1024: PaillierPrivateKey, operation: str, scalar: float
) -> None:
    with pytest.raises(HEError, match=r"operand\[0\] is -?(nan|inf); only finite values"):
        getattr(enc(key1024, [1.0, 2.0]), operation)(scalar)


def test_add_sub_neg_and_plain(key1024: PaillierPrivateKey) -> None:
    a, b = np.array([1.25, -3.5, 7.0]), np.array([-0.25, 10.0, -7.0])
    ea, eb = enc(key1024, a), enc(key1024, b)
    assert dec(key1024, ea + eb).tolist() == (a + b).tolist()
    assert dec(key1024, ea - eb).tolist() == (a - b).tolist()
    assert dec(key1024, -ea).tolist() == (-a).tolist()
    assert dec(key1024, ea + b).tolist() == (a + b).tolist()
    assert dec(key1024, b + ea).tolist() == (a + b).tolist()
    assert dec(key1024, ea - 1.0).tolist() == (a - 1.0).tolist()
    assert dec(key1024, 1.0 - ea).tolist() == (1.0 - a).tolist()
    assert (ea + eb).bound_bits == ea.bound_bits + 1


def test_add_checks_key_length_and_scale(
    key1024: PaillierPrivateKey, other_key1024: PaillierPrivateKey
) -> None:
    a = enc(key1024, [1.0, 2.0])
    with pytest.raises(HEError, match="different keys"):
        a + enc(other_key1024, [1.0, 2.0])
    with pytest.raises(HEError, match="length 3, expected 2"):
        a + enc(key1024, [1.0, 2.0, 3.0])
    with pytest.raises(HEError, match=r"scales differ \(2\^20 and 2\^8\)"):
        a + enc(key1024, [1.0, 2.0], bits=8)
    with pytest.raises(HEError, match="length 3, expected 2"):
        a + np.ones(3)


def test_mul_tracks_scale_exactly(key1024: PaillierPrivateKey) -> None:
    a = np.array([1.5, -2.0, 0.125])
    ea = enc(key1024, a, bits=10)
    quarter = ea.mul(0.25, fraction_bits=2)
    assert quarter.scale_bits == 12
    assert dec(key1024, quarter).tolist() == (a * 0.25).tolist()
    negative = ea.mul(-3, fraction_bits=0)
    assert negative.scale_bits == 10
    assert dec(key1024, negative).tolist() == (a * -3).tolist()
    k = np.array([2.0, -0.5, 4.0])
    assert dec(key1024, ea.mul(k, fraction_bits=1)).tolist() == (a * k).tolist()
    default = ea * 0.1
    assert default.scale_bits == 10 + he.DEFAULT_PLAIN_FRACTION_BITS
    assert np.allclose(dec(key1024, default), a * 0.1, atol=2.0**-16 * 2)
    assert dec(key1024, ea.mul(0.0)).tolist() == [0.0, 0.0, 0.0]


def test_rescale_and_align(key1024: PaillierPrivateKey) -> None:
    a = enc(key1024, [1.0, -2.0], bits=8)
    b = enc(key1024, [0.5, 0.5], bits=20)
    up = a.rescale_to(20)
    assert up.scale_bits == 20 and up.bound_bits == a.bound_bits + 12
    assert dec(key1024, up + b).tolist() == [1.5, -1.5]
    x, y = he.align_scales(a, b)
    assert x.scale_bits == y.scale_bits == 20
    with pytest.raises(HEError, match="cannot lower the scale"):
        b.rescale_to(8)
    assert a.rescale_up(0) is a


def test_sum_vectors(key1024: PaillierPrivateKey) -> None:
    rows = [np.array([1.0, -1.0]) * i for i in range(5)]
    total = he.sum_vectors(enc(key1024, r) for r in rows)
    assert dec(key1024, total).tolist() == [10.0, -10.0]
    assert total.bound_bits == enc(key1024, rows[0]).bound_bits + 3
    with pytest.raises(HEError, match="at least one"):
        he.sum_vectors([])
    with pytest.raises(HEError, match="scales differ"):
        he.sum_vectors([enc(key1024, rows[0]), enc(key1024, rows[0], bits=4)])


def test_bound_growth_is_refused_before_wrapping(key1024: PaillierPrivateKey) -> None:
    capacity = he.capacity_bits(key1024.public_key)
    a = he.encrypt_vector(key1024.public_key, [1.0], fraction_bits=900, integer_bits=20)
    with pytest.raises(EncodingOverflowError, match=f"more than the {capacity} bits"):
        a.rescale_up(capacity - 900)
    with pytest.raises(EncodingOverflowError, match=f"more than the {capacity} bits"):
        a.mul(2.0**200, fraction_bits=0)
    with pytest.raises(EncodingOverflowError, match="exceeds"):
        he.encrypt_vector(key1024.public_key, [1.0], fraction_bits=capacity, integer_bits=1)


def test_large_scales_decode_exactly(key1024: PaillierPrivateKey) -> None:
    a = he.encrypt_vector(key1024.public_key, [1.5, -0.75], fraction_bits=200, integer_bits=4)
    assert dec(key1024, a.mul(3.0, fraction_bits=100)).tolist() == [4.5, -2.25]


def test_tampered_ciphertext_breaks_the_bound(key1024: PaillierPrivateKey) -> None:
    a = enc(key1024, [1.0, 2.0])
    forged = EncryptedVector(
        key1024.public_key,
        [a.ciphertexts[0], key1024.public_key.raw_encrypt(2**400)],
        scale_bits=a.scale_bits,
        bound_bits=a.bound_bits,
    )
    with pytest.raises(EncodingOverflowError, match="entry 1 exceeds the vector's bound"):
        dec(key1024, forged)


def test_rerandomized_changes_ciphertexts_not_values(key1024: PaillierPrivateKey) -> None:
    a = enc(key1024, [1.0, -2.0])
    b = a.rerandomized()
    assert all(x != y for x, y in zip(a.ciphertexts, b.ciphertexts, strict=True))
    assert dec(key1024, b).tolist() == [1.0, -2.0]


def test_parallel_encryption_and_decryption_agree(key1024: PaillierPrivateKey) -> None:
    values = np.linspace(-100, 100, 200)
    vector = he.encrypt_vector(key1024.public_key, values, cores=2)
    assert np.array_equal(he.decrypt_vector(key1024, vector, cores=2), dec(key1024, vector))
    assert np.allclose(dec(key1024, vector), values, atol=2.0**-24)
    with pytest.raises(ConfigError, match="cores must be a positive integer"):
        he.encrypt_vector(key1024.public_key, values, cores=0)

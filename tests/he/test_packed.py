"""Packed vectors: layout arithmetic, biased slots, summand headroom and range checks."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl import he
from sealfl.errors import ConfigError, EncodingOverflowError, HEError
from sealfl.he import PackedLayout, PaillierPrivateKey

pytestmark = pytest.mark.filterwarnings("ignore", category=he.WeakKeyWarning)


def test_default_layout_meets_13_bytes_per_float_at_2048() -> None:
    layout = PackedLayout()
    assert layout.slot_bits == 45
    assert layout.slots_for(2048) == 45
    assert layout.slots_for(3072) == 68
    assert 512 / layout.slots_for(2048) <= 13
    assert layout.max_summands == 1024


@pytest.mark.parametrize(("summands", "headroom"), [(1, 0), (2, 1), (100, 7), (1024, 10)])
def test_layout_for_a_number_of_summands(summands: int, headroom: int) -> None:
    layout = PackedLayout.for_summands(summands)
    assert layout.headroom_bits == headroom
    assert layout.max_summands >= summands > layout.max_summands // 2 or summands == 1


@pytest.mark.parametrize(
    ("count", "bits"),
    [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (2**50, 50), (2**50 + 1, 51)],
)
def test_bits_for_sum_is_exact(count: int, bits: int) -> None:
    from sealfl.he._encoding import bits_for_sum

    assert bits_for_sum(count) == bits


def test_layout_for_summands_refuses_zero() -> None:
    with pytest.raises(ConfigError, match="summands must be a positive integer, got 0"):
        PackedLayout.for_summands(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction_bits": -1}, "fraction_bits must be an int >= 0"),
        ({"headroom_bits": 1.5}, "headroom_bits must be an int"),
        ({"fraction_bits": 40, "integer_bits": 20}, "exceeds the 62-bit maximum"),
    ],
)
def test_layout_is_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PackedLayout(**kwargs)


def test_roundtrip_with_negatives_and_extremes(key1024: PaillierPrivateKey) -> None:
    layout = PackedLayout()
    top = 2.0**10 - 2.0**-24
    values = np.array([0.0, -1.0, 1.0, -(2.0**10), top, 3.14159, -2.5e-8] * 20)
    vector = he.encrypt_packed(key1024.public_key, values)
    assert len(vector.ciphertexts) == -(-len(values) // layout.slots_for(1024))
    assert np.allclose(he.decrypt_vector(key1024, vector), values, atol=2.0**-25, rtol=0)


def test_sums_remove_the_bias_by_summand_count(key1024: PaillierPrivateKey) -> None:
    rng = np.random.default_rng(3)
    parts = [rng.uniform(-100, 100, size=57) for _ in range(6)]
    vectors = [he.encrypt_packed(key1024.public_key, p) for p in parts]
    total = he.sum_vectors(vectors)
    assert total.summands == 6
    expected = np.sum([np.rint(p * 2**24) / 2**24 for p in parts], axis=0)
    assert np.allclose(he.decrypt_vector(key1024, total), expected, atol=1e-12, rtol=0)
    pair = vectors[0] + vectors[1]
    assert pair.summands == 2


def test_headroom_exhaustion_raises_instead_of_wrapping(key1024: PaillierPrivateKey) -> None:
    layout = PackedLayout(headroom_bits=2)
    vector = he.encrypt_packed(key1024.public_key, [1.0, -1.0], layout=layout)
    four = he.sum_vectors([vector] * 4)
    assert he.decrypt_vector(key1024, four).tolist() == [4.0, -4.0]
    with pytest.raises(EncodingOverflowError, match=r"5 summands; .* at most 4"):
        he.sum_vectors([vector] * 5)
    with pytest.raises(EncodingOverflowError, match="at most 4"):
        four + vector


@pytest.mark.parametrize("value", [2.0**10, -(2.0**10) - 1.0, 1e300])
def test_out_of_range_values_raise(key1024: PaillierPrivateKey, value: float) -> None:
    with pytest.raises(EncodingOverflowError, match=r"values\[1\] = .* does not fit"):
        he.encrypt_packed(key1024.public_key, [0.0, value])


def test_out_of_range_names_the_first_value_and_the_range(key1024: PaillierPrivateKey) -> None:
    expected = r"values\[1\] = -1500.0 .* expected -2\^10 <= value < 2\^10 at 24 fraction bits"
    with pytest.raises(EncodingOverflowError, match=expected):
        he.encrypt_packed(key1024.public_key, [0.0, -1500.0, 1500.0])


def test_incompatible_packed_vectors(
    key1024: PaillierPrivateKey, other_key1024: PaillierPrivateKey
) -> None:
    a = he.encrypt_packed(key1024.public_key, [1.0, 2.0])
    with pytest.raises(HEError, match="different keys"):
        a + he.encrypt_packed(other_key1024.public_key, [1.0, 2.0])
    with pytest.raises(HEError, match="layouts differ"):
        a + he.encrypt_packed(key1024.public_key, [1.0, 2.0], layout=PackedLayout(headroom_bits=3))
    with pytest.raises(HEError, match="length 3, expected 2"):
        a + he.encrypt_packed(key1024.public_key, [1.0, 2.0, 3.0])
    with pytest.raises(HEError, match="is EncryptedVector, expected PackedVector"):
        he.sum_vectors([a, he.encrypt_vector(key1024.public_key, [1.0, 2.0])])  # type: ignore[list-item]


def test_overflowed_plaintext_is_detected_on_decrypt(key1024: PaillierPrivateKey) -> None:
    a = he.encrypt_packed(key1024.public_key, [1.0] * 3)
    slots = a.slots
    forged_plain = 1 << (a.layout.slot_bits * slots)
    forged = he.PackedVector(
        key1024.public_key,
        [key1024.public_key.raw_encrypt(forged_plain)],
        layout=a.layout,
        length=3,
    )
    with pytest.raises(EncodingOverflowError, match="bits above slot"):
        he.decrypt_vector(key1024, forged)


def test_empty_vector(key1024: PaillierPrivateKey) -> None:
    vector = he.encrypt_packed(key1024.public_key, [])
    assert len(vector) == 0 and vector.ciphertexts == []
    assert he.decrypt_vector(key1024, vector).shape == (0,)


def test_understated_summand_count_is_detected_on_decrypt(key1024: PaillierPrivateKey) -> None:
    """A header claiming fewer summands than were added must not decode to shifted values."""
    layout = PackedLayout.for_summands(4)
    a = he.encrypt_packed(key1024.public_key, [1.0, -2.0, 3.0], layout=layout)
    pair = he.sum_vectors([a, a])
    forged = he.PackedVector(
        key1024.public_key, pair.ciphertexts, layout=layout, length=3, summands=1
    )
    wire = he.vector_from_bytes(forged.to_bytes(), key1024.public_key)
    with pytest.raises(EncodingOverflowError, match=r"slot 0 .* than 1 summand\(s\) can hold"):
        he.decrypt_vector(key1024, wire)
    assert he.decrypt_vector(key1024, pair).tolist() == [2.0, -4.0, 6.0]


def test_data_beyond_the_length_is_detected_on_decrypt(key1024: PaillierPrivateKey) -> None:
    a = he.encrypt_packed(key1024.public_key, [1.0, -2.0, 3.0, 500.0])
    truncated = he.PackedVector(key1024.public_key, a.ciphertexts, layout=a.layout, length=3)
    with pytest.raises(EncodingOverflowError, match="slot 3 is beyond the vector's 3 values"):
        he.decrypt_vector(key1024, truncated)

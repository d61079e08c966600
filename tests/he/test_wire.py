"""Wire format: roundtrips, and refusal of other keys, truncation and flipped bytes."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl import he
from sealfl.errors import HEError
from sealfl.he import EncryptedVector, PackedLayout, PackedVector, PaillierPrivateKey
from sealfl.he._wire import HEADER_BYTES

pytestmark = pytest.mark.filterwarnings("ignore", category=he.WeakKeyWarning)


@pytest.fixture(scope="module")
def unpacked(key1024: PaillierPrivateKey) -> EncryptedVector:
    return he.encrypt_vector(key1024.public_key, [1.5, -2.0, 3.25], fraction_bits=12)


@pytest.fixture(scope="module")
def packed(key1024: PaillierPrivateKey) -> PackedVector:
    layout = PackedLayout(fraction_bits=16, integer_bits=10, headroom_bits=4)
    vector = he.encrypt_packed(key1024.public_key, np.arange(50) - 25.5, layout=layout)
    return vector + vector


def test_unpacked_roundtrip(key1024: PaillierPrivateKey, unpacked: EncryptedVector) -> None:
    data = unpacked.to_bytes()
    assert len(data) == HEADER_BYTES + 3 * key1024.public_key.ciphertext_bytes
    back = EncryptedVector.from_bytes(data, key1024.public_key)
    assert back.ciphertexts == unpacked.ciphertexts
    assert (back.scale_bits, back.bound_bits) == (unpacked.scale_bits, unpacked.bound_bits)
    assert he.decrypt_vector(key1024, back).tolist() == [1.5, -2.0, 3.25]


def test_packed_roundtrip(key1024: PaillierPrivateKey, packed: PackedVector) -> None:
    back = he.vector_from_bytes(packed.to_bytes(), key1024.public_key)
    assert isinstance(back, PackedVector)
    assert (back.layout, back.summands, back.length) == (packed.layout, 2, 50)
    assert he.decrypt_vector(key1024, back).tolist() == (2 * (np.arange(50) - 25.5)).tolist()


def test_kind_is_checked(
    key1024: PaillierPrivateKey, unpacked: EncryptedVector, packed: PackedVector
) -> None:
    with pytest.raises(HEError, match="expected an unpacked"):
        EncryptedVector.from_bytes(packed.to_bytes(), key1024.public_key)
    with pytest.raises(HEError, match="expected a packed"):
        PackedVector.from_bytes(unpacked.to_bytes(), key1024.public_key)


def test_other_key_is_refused(other_key1024: PaillierPrivateKey, unpacked: EncryptedVector) -> None:
    with pytest.raises(HEError, match=f"under key {unpacked.public_key.fingerprint_hex}, expected"):
        EncryptedVector.from_bytes(unpacked.to_bytes(), other_key1024.public_key)


@pytest.mark.parametrize("cut", [0, 10, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 100, -1])
def test_truncation_is_refused(
    key1024: PaillierPrivateKey, unpacked: EncryptedVector, cut: int
) -> None:
    data = unpacked.to_bytes()[:cut]
    with pytest.raises(HEError, match="truncated"):
        he.vector_from_bytes(data, key1024.public_key)


def test_trailing_data_is_refused(key1024: PaillierPrivateKey, unpacked: EncryptedVector) -> None:
    with pytest.raises(HEError, match="trailing data"):
        he.vector_from_bytes(unpacked.to_bytes() + b"\x00", key1024.public_key)


def test_every_flipped_header_byte_is_refused(
    key1024: PaillierPrivateKey, packed: PackedVector
) -> None:
    data = packed.to_bytes()
    for offset in range(HEADER_BYTES):
        corrupted = bytearray(data)
        corrupted[offset] ^= 0x01
        with pytest.raises(HEError, match=r"magic|header is corrupted"):
            he.vector_from_bytes(bytes(corrupted), key1024.public_key)


def test_flipped_payload_byte_is_refused(
    key1024: PaillierPrivateKey, unpacked: EncryptedVector
) -> None:
    corrupted = bytearray(unpacked.to_bytes())
    corrupted[HEADER_BYTES + 200] ^= 0x80
    with pytest.raises(HEError, match="payload is corrupted"):
        he.vector_from_bytes(bytes(corrupted), key1024.public_key)


def _forge(
    key: PaillierPrivateKey, kind: int, length: int, fields: tuple[int, int, int, int]
) -> bytes:
    """A well-formed buffer (valid checks) whose fields a peer chose badly on purpose."""
    from sealfl.he._wire import _FIELDS, MAGIC, VERSION, _digest

    width = key.public_key.ciphertext_bytes
    payload = key.public_key.raw_encrypt(1).to_bytes(width, "big")
    header = _FIELDS.pack(
        MAGIC,
        VERSION,
        kind,
        width,
        key.public_key.fingerprint,
        length,
        1,
        *fields,
        _digest(payload, 16),
    )
    return header + _digest(header, 8) + payload


@pytest.mark.parametrize(
    ("kind", "length", "fields", "message"),
    [
        (2, 1, (40, 20, 10, 1), "unusable packed layout"),
        (2, 1, (24, 10, 2, 9), "allow 1 to 4"),
        (2, 1000, (24, 10, 10, 1), "needs 46 ciphertexts at 22 slots"),
        (1, 2, (16, 20, 0, 0), "announces 2 values but holds 1"),
        (1, 1, (16, 5000, 0, 0), "more than the 1022 bits"),
        (1, 1, (2**32 - 1, 20, 0, 0), "scale 2\\^4294967295 exceeds the 1022-bit"),
        (7, 1, (16, 20, 0, 0), "kind 7"),
    ],
)
def test_checksummed_but_inconsistent_fields_are_refused(
    key1024: PaillierPrivateKey, kind: int, length: int, fields: tuple, message: str
) -> None:
    with pytest.raises(HEError, match=message):
        he.vector_from_bytes(_forge(key1024, kind, length, fields), key1024.public_key)

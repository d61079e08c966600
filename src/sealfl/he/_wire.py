"""Binary wire format of encrypted vectors: a checked header and fixed-width ciphertexts.

Layout (all integers big-endian)::

    offset  size  field
    0       4     magic b"SFHE"
    4       1     format version (1)
    5       1     kind: 1 = unpacked EncryptedVector, 2 = PackedVector
    6       2     ciphertext width W in bytes (= bytes of n², 512 for a 2048-bit key)
    8       16    key fingerprint (SHA-256 of n, see PaillierPublicKey.fingerprint)
    24      4     length: number of values
    28      4     ciphertext count C
    32      4     unpacked: scale_bits      packed: fraction_bits
    36      4     unpacked: bound_bits      packed: integer_bits
    40      4     unpacked: 0               packed: headroom_bits
    44      4     unpacked: 0               packed: summands
    48      16    SHA-256 of the payload, first 16 bytes
    64      8     SHA-256 of bytes 0..63, first 8 bytes (header check)
    72      C·W   ciphertexts, each exactly W bytes

The header check catches any flipped header byte before a field is trusted; the payload digest
catches corruption and truncation of the ciphertexts. Neither is authentication: the channel
(RA-TLS) authenticates, and a ciphertext is malleable by design. After the checks every
ciphertext must lie in ``[1, n²)`` and be a unit.
"""

from __future__ import annotations

import hashlib
import struct

from gmpy2 import mpz

from sealfl.errors import ConfigError, HEError
from sealfl.he._encoding import PackedLayout
from sealfl.he._keys import PaillierPublicKey
from sealfl.he._vector import EncryptedVector, PackedVector

MAGIC = b"SFHE"
VERSION = 1
KIND_UNPACKED = 1
KIND_PACKED = 2
_FIELDS = struct.Struct(">4sBBH16sIIIIII16s")
_CHECK_BYTES = 8
HEADER_BYTES = _FIELDS.size + _CHECK_BYTES


def _digest(data: bytes | memoryview, size: int) -> bytes:
    return hashlib.sha256(data).digest()[:size]


def vector_to_bytes(vector: EncryptedVector | PackedVector) -> bytes:
    """Serialise an encrypted vector (see the module docstring for the layout)."""
    key = vector.public_key
    width = key.ciphertext_bytes
    payload = b"".join(c.to_bytes(width, "big") for c in vector.ciphertexts)
    if isinstance(vector, PackedVector):
        layout = vector.layout
        kind = KIND_PACKED
        fields = (layout.fraction_bits, layout.integer_bits, layout.headroom_bits, vector.summands)
    else:
        kind = KIND_UNPACKED
        fields = (vector.scale_bits, vector.bound_bits, 0, 0)
    header = _FIELDS.pack(
        MAGIC,
        VERSION,
        kind,
        width,
        key.fingerprint,
        len(vector),
        len(vector.ciphertexts),
        *fields,
        _digest(payload, 16),
    )
    return header + _digest(header, _CHECK_BYTES) + payload


def vector_from_bytes(
    data: bytes | bytearray | memoryview, public_key: PaillierPublicKey
) -> EncryptedVector | PackedVector:
    """Parse, check and return an encrypted vector serialised by :func:`vector_to_bytes`.

    Raises
    ------
    HEError
        If the buffer is too short, has a wrong magic, version or kind, a corrupted header or
        payload, a different length than announced, another key's fingerprint, or a value that
        cannot be a ciphertext. The message names the field and what was expected.
    """
    view = memoryview(bytes(data))
    if len(view) < HEADER_BYTES:
        raise HEError(
            f"encrypted vector truncated: {len(view)} bytes, expected a {HEADER_BYTES}-byte "
            "header at least"
        )
    header = view[: _FIELDS.size]
    (magic, version, kind, width, fingerprint, length, count, f1, f2, f3, f4, payload_digest) = (
        _FIELDS.unpack(header)
    )
    if magic != MAGIC:
        raise HEError(f"not an encrypted vector: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if _digest(header, _CHECK_BYTES) != view[_FIELDS.size : HEADER_BYTES]:
        raise HEError("encrypted vector header is corrupted: header check does not match")
    if version != VERSION:
        raise HEError(f"encrypted vector format version {version}, expected {VERSION}")
    if fingerprint != public_key.fingerprint:
        raise HEError(
            f"encrypted vector is under key {fingerprint.hex()}, expected "
            f"{public_key.fingerprint_hex}"
        )
    if width != public_key.ciphertext_bytes:
        raise HEError(
            f"encrypted vector ciphertext width {width} bytes, expected "
            f"{public_key.ciphertext_bytes} for this key"
        )
    expected = HEADER_BYTES + count * width
    if len(view) != expected:
        raise HEError(
            f"encrypted vector of {count} ciphertexts should be {expected} bytes, got "
            f"{len(view)} ({'truncated' if len(view) < expected else 'trailing data'})"
        )
    payload = view[HEADER_BYTES:]
    if _digest(payload, 16) != payload_digest:
        raise HEError("encrypted vector payload is corrupted: digest does not match")
    ciphertexts = [
        public_key.check_ciphertext(
            mpz.from_bytes(payload[i * width : (i + 1) * width], "big"), where=f"ciphertext {i}"
        )
        for i in range(count)
    ]
    if kind == KIND_UNPACKED:
        if count != length:
            raise HEError(f"unpacked vector announces {length} values but holds {count}")
        return EncryptedVector(public_key, ciphertexts, scale_bits=f1, bound_bits=f2)
    if kind == KIND_PACKED:
        try:
            layout = PackedLayout(fraction_bits=f1, integer_bits=f2, headroom_bits=f3)
        except ConfigError as exc:
            raise HEError(f"encrypted vector has an unusable packed layout: {exc}") from exc
        return PackedVector(public_key, ciphertexts, layout=layout, length=length, summands=f4)
    raise HEError(f"encrypted vector kind {kind}, expected {KIND_UNPACKED} or {KIND_PACKED}")

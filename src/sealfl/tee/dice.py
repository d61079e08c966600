"""Encodings of RA-TLS evidence inside X.509 certificates (Gramine's formats, and ours).

TCG DICE "tagged evidence" (what current Gramine writes), extension 2.23.133.5.4.9::

    extnValue  = CBOR tag 60000 ( [ bstr quote, bstr claims ] )
    claims     = CBOR map { "pubkey-hash": bstr .cbor [ hash-alg-id, bstr digest ], ... }
    report_data[0:32] = SHA-256(claims), report_data[32:64] = zero

``hash-alg-id`` follows the IANA Named Information Hash Algorithm registry (1 = SHA-256,
7 = SHA-384, 8 = SHA-512) and ``digest`` is the hash of the certificate's SubjectPublicKeyInfo
DER. Any other claim (a nonce, the hash of a Paillier public key ...) is bound the same way,
because the whole claims buffer is hashed into the quote.

Gramine's legacy extension carries the raw quote, with ``report_data[0:32] = SHA-256(SPKI)``.
Gramine passed the OID's DER *with* its tag and length to mbedTLS, so certificates in the wild
carry the OID ``0.6.9.42.840.113741.1337.6``; the intended ``1.2.840.113741.1337.6`` is read too.

Simulated evidence uses the DICE layout under :data:`SIMULATED_EVIDENCE_OID`, a ``2.25`` (UUID)
arc that no real verifier recognises, so simulated certificates can never pass for real ones.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from typing import Any

import cbor2
from cryptography import x509

from sealfl.errors import AttestationError
from sealfl.tee.evidence import REPORT_DATA_SIZE

DICE_EVIDENCE_OID = x509.ObjectIdentifier("2.23.133.5.4.9")
GRAMINE_LEGACY_OIDS = (
    x509.ObjectIdentifier("0.6.9.42.840.113741.1337.6"),
    x509.ObjectIdentifier("1.2.840.113741.1337.6"),
)
#: UUID 83ed96d8-e3c1-4a3a-9b96-5b124654b773 as an OID: sealfl's simulated evidence.
SIMULATED_EVIDENCE_OID = x509.ObjectIdentifier("2.25.175362501348507154778894055936512800627")
TAGGED_EVIDENCE_CBOR_TAG = 60000
PUBKEY_HASH_CLAIM = "pubkey-hash"

#: IANA Named Information hash algorithm ids accepted in a ``pubkey-hash`` claim.
HASH_ALGORITHMS: Mapping[int, Callable[[bytes], Any]] = {
    1: hashlib.sha256,
    7: hashlib.sha384,
    8: hashlib.sha512,
}
_SHA256_ID = 1


def loads_exact(data: bytes, what: str) -> Any:
    """Decode one CBOR item that must span all of ``data`` (no unsigned trailing bytes).

    Raises
    ------
    AttestationError
        If ``data`` is not CBOR, or bytes follow the item.
    """
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, ValueError, EOFError, RecursionError) as exc:
        raise AttestationError(f"{what} is not CBOR: {exc}") from exc
    if stream.tell() != len(data):
        raise AttestationError(
            f"{what}: {len(data) - stream.tell()} unexpected bytes after the CBOR item"
        )
    return item


def encode_pubkey_hash(spki_der: bytes) -> bytes:
    """Return the ``pubkey-hash`` claim value for a SubjectPublicKeyInfo: ``[1, SHA-256]``."""
    return cbor2.dumps([_SHA256_ID, hashlib.sha256(spki_der).digest()])


def check_pubkey_hash(value: object, spki_der: bytes) -> None:
    """Check that a ``pubkey-hash`` claim value names ``spki_der``.

    Raises
    ------
    AttestationError
        If the value is malformed, uses an unknown hash, or hashes another key.
    """
    if not isinstance(value, bytes):
        raise AttestationError(
            f"claim {PUBKEY_HASH_CLAIM}: expected a byte string, got {type(value).__name__}"
        )
    entry = loads_exact(value, f"claim {PUBKEY_HASH_CLAIM}")
    if (
        not isinstance(entry, list | tuple)
        or len(entry) != 2
        or not isinstance(entry[0], int)
        or not isinstance(entry[1], bytes)
    ):
        raise AttestationError(
            f"claim {PUBKEY_HASH_CLAIM}: expected [hash-alg-id, digest], got {entry!r}"
        )
    algorithm = HASH_ALGORITHMS.get(entry[0])
    if algorithm is None:
        raise AttestationError(
            f"claim {PUBKEY_HASH_CLAIM}: hash algorithm id {entry[0]} not supported; expected "
            f"one of {sorted(HASH_ALGORITHMS)}"
        )
    expected = algorithm(spki_der).digest()
    if entry[1] != expected:
        raise AttestationError(
            f"claim {PUBKEY_HASH_CLAIM}: expected {expected.hex()} (hash of the certificate's "
            f"public key), found {entry[1].hex()}"
        )


def encode_claims(claims: Mapping[str, Any]) -> bytes:
    """Serialise a claims map as canonical CBOR (the bytes whose hash goes in report_data)."""
    return cbor2.dumps(dict(claims), canonical=True)


def decode_claims(buffer: bytes) -> dict[str, Any]:
    """Parse a claims buffer into a map with text keys.

    Raises
    ------
    AttestationError
        If it is not a CBOR map with text keys.
    """
    claims = loads_exact(buffer, "claims buffer")
    if not isinstance(claims, dict) or not all(isinstance(k, str) for k in claims):
        raise AttestationError(
            f"claims buffer: expected a CBOR map with text keys, got {type(claims).__name__}"
        )
    return claims


def report_data_for(payload: bytes) -> bytes:
    """Return ``SHA-256(payload)`` followed by 32 zero bytes: what the quote must carry."""
    return hashlib.sha256(payload).digest().ljust(REPORT_DATA_SIZE, b"\x00")


def encode_tagged_evidence(quote: bytes, claims_buffer: bytes) -> bytes:
    """Return the extension value ``tag 60000 ([quote, claims])``."""
    return cbor2.dumps(cbor2.CBORTag(TAGGED_EVIDENCE_CBOR_TAG, [quote, claims_buffer]))


def decode_tagged_evidence(value: bytes) -> tuple[bytes, bytes]:
    """Split a tagged-evidence extension value into ``(quote, claims_buffer)``.

    Raises
    ------
    AttestationError
        If the tag, array shape or item types are wrong.
    """
    item = loads_exact(value, "evidence extension")
    if not isinstance(item, cbor2.CBORTag) or item.tag != TAGGED_EVIDENCE_CBOR_TAG:
        found = item.tag if isinstance(item, cbor2.CBORTag) else type(item).__name__
        raise AttestationError(
            f"evidence extension: expected CBOR tag {TAGGED_EVIDENCE_CBOR_TAG}, found {found}"
        )
    content = item.value
    if (
        not isinstance(content, list | tuple)
        or len(content) != 2
        or not all(isinstance(part, bytes) for part in content)
    ):
        raise AttestationError(
            "evidence extension: expected [quote, claims] as two byte strings, "
            f"found {type(content).__name__}"
        )
    return content[0], content[1]

r"""Byte layout of a release envelope, format version 1, and the key wrapping (HPKE).

A release envelope carries a model to the recipients of a release policy. It is a prefix
followed by a sealed file. Integers are big-endian::

    offset  size  field
    0       8     magic       b"\x89SFLREL\n" (high bit and newline catch text-mode damage)
    8       1     version     1
    9       4     header_len  H, 2 .. 1 MiB
    13      H     header      canonical JSON (below), ASCII
    13 + H  ...   payload     a sealed file (sealfl.seal, format 1) under the data key

The payload is the model sealed with :mod:`sealfl.seal` (chunked AES-256-GCM, bounded memory)
under a fresh random 32-byte data key, with the sealed-file label
``"sealfl-release " + hex(SHA-256(prefix))``: the hash of every byte before the payload.

Header: a JSON object, canonical (keys sorted, no spaces, non-ASCII escaped; a reader refuses
any other encoding of the same values, so each header has exactly one byte form)::

    {"envelope_id": "<base64, 16 random bytes>",
     "label": "<content type chosen by the producer, at most 255 bytes of UTF-8>",
     "recipients": [{"broker_resource": null or "<resource>",
                     "enc": "<base64, 32 bytes: HPKE encapsulated key>",
                     "key_id": "<16 hex digits: SHA-256(public_key)[:8]>",
                     "name": "<recipient name>",
                     "public_key": "<base64, 32 bytes: X25519>",
                     "wrapped_key": "<base64, 48 bytes: HPKE ciphertext of the data key>"}, ...],
     "release_list": "<64 hex digits: the release-list digest of the recipients>",
     "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"}

Recipients appear in the order of the policy. ``release_list`` must equal the digest
(:func:`sealfl.seal._release_policy.release_list_digest`) of the entries' (name, public key,
broker resource), which is checked on reading: the header lists exactly the release list
the producer's RA-TLS claim names.

Key wrapping, for recipient ``i`` (0-based), RFC 9180 base mode, single shot::

    core      = the header with "enc" and "wrapped_key" removed from every recipient
    info_i    = b"sealfl release v1\0" || SHA-256(canonical JSON of core) || i (2 bytes)
    enc_i || wrapped_key_i = HPKE.Seal(pkR = public_key_i, info = info_i, aad = "",
                                       plaintext = data key)

Why each piece is there:

- ``info_i`` binds each wrap to the whole header except the wraps themselves (which cannot
  contain their own hash): the label, the release-list digest, the suite, the random
  ``envelope_id`` and every recipient's name, key and broker resource, and to the entry's
  position. Editing any of them, or pasting an entry from another envelope (another
  ``envelope_id``), makes HPKE decryption fail for every recipient. HPKE already binds the
  recipient's public key (the KEM context holds ``pkR``).
- The payload label holds the hash of the complete prefix, wraps included, and the sealed-file
  format authenticates its label in every chunk. So a recipient also detects a change to
  *another* recipient's wrap, which its own ``info`` cannot cover.
- A fresh data key per envelope: the payload key never encrypts two models, and the sealed-file
  format derives a fresh file key from it and a random salt in any case.

Hazard: HPKE base mode does not authenticate the sender. Anyone who knows the recipients'
public keys can make a valid envelope, and any recipient could re-wrap the data key for a
modified header. The envelope protects the model's confidentiality and integrity against
everyone who is not a recipient; where the model comes from is established by the producer's
RA-TLS identity (whose ``release-list`` claim names the recipients), not by the envelope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from sealfl.errors import ConfigError, SealError
from sealfl.seal._release_keys import KEY_LEN, ReleaseKey
from sealfl.seal._release_policy import Recipient, ReleasePolicy, release_list_digest

MAGIC = b"\x89SFLREL\n"
FORMAT_VERSION = 1
MAX_HEADER_LEN = 1024 * 1024
MAX_LABEL_BYTES = 255
DATA_KEY_LEN = 32
ENVELOPE_ID_LEN = 16
WRAPPED_KEY_LEN = DATA_KEY_LEN + 16
SUITE_NAME = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"
INFO_DOMAIN = b"sealfl release v1\x00"
PAYLOAD_LABEL_PREFIX = "sealfl-release "

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_FIXED = struct.Struct(">8sBI")
PREFIX_FIXED_LEN = _FIXED.size

_HEADER_FIELDS = frozenset({"envelope_id", "label", "recipients", "release_list", "suite"})
_ENTRY_FIELDS = frozenset({"broker_resource", "enc", "key_id", "name", "public_key", "wrapped_key"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical_json(document: Any) -> bytes:
    """Encode ``document`` as canonical JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_label(label: object) -> str:
    """Return ``label`` if it fits the header, else raise :class:`ConfigError`."""
    if not isinstance(label, str):
        raise ConfigError(f"label must be a string, got {type(label).__name__}")
    try:
        size = len(label.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ConfigError(f"label is not valid Unicode text ({exc.reason})") from exc
    if size > MAX_LABEL_BYTES:
        raise ConfigError(f"label is {size} bytes in UTF-8, at most {MAX_LABEL_BYTES} fit")
    return label


@dataclass(frozen=True)
class EnvelopeHeader:
    """The public header of a release envelope: who may open it, and their wrapped keys.

    Parameters
    ----------
    label : str
        Content type chosen by the producer (``"homo-lr/model"``); bound into every wrap.
    recipients : tuple of Recipient
        The release list, in the policy's order.
    wraps : tuple of (bytes, bytes)
        Per recipient, the HPKE encapsulated key and the wrapped data key.
    envelope_id : bytes
        16 random bytes that make every envelope's wraps its own.
    """

    label: str
    recipients: tuple[Recipient, ...]
    wraps: tuple[tuple[bytes, bytes], ...]
    envelope_id: bytes

    @property
    def release_list(self) -> bytes:
        """The release-list digest of :attr:`recipients` (the RA-TLS claim value)."""
        return release_list_digest(self.recipients)

    def _document(self, *, with_wraps: bool) -> dict[str, Any]:
        entries = []
        for recipient, (enc, wrapped) in zip(self.recipients, self.wraps, strict=True):
            entry = recipient.canonical()
            entry["key_id"] = recipient.key_id.hex()
            if with_wraps:
                entry["enc"] = _b64(enc)
                entry["wrapped_key"] = _b64(wrapped)
            entries.append(entry)
        return {
            "envelope_id": _b64(self.envelope_id),
            "label": self.label,
            "recipients": entries,
            "release_list": self.release_list.hex(),
            "suite": SUITE_NAME,
        }

    def core_hash(self) -> bytes:
        """SHA-256 of the header without the wraps: what every wrap's ``info`` binds."""
        return hashlib.sha256(canonical_json(self._document(with_wraps=False))).digest()

    def info(self, index: int) -> bytes:
        """HPKE ``info`` for the wrap of recipient ``index`` (module docstring)."""
        return INFO_DOMAIN + self.core_hash() + index.to_bytes(2, "big")

    def to_bytes(self) -> bytes:
        """Return the envelope prefix: magic, version, header length and header."""
        header = canonical_json(self._document(with_wraps=True))
        if len(header) > MAX_HEADER_LEN:
            raise ConfigError(
                f"envelope header would be {len(header)} bytes, at most {MAX_HEADER_LEN} fit"
            )
        return _FIXED.pack(MAGIC, FORMAT_VERSION, len(header)) + header

    @classmethod
    def wrap(
        cls, policy: ReleasePolicy, data_key: bytes, *, label: str, envelope_id: bytes
    ) -> EnvelopeHeader:
        """Wrap ``data_key`` for every recipient of ``policy`` and return the header.

        Raises
        ------
        ConfigError
            If the label does not fit.
        SealError
            If HPKE refuses a recipient's public key.
        """
        check_label(label)
        recipients = policy.recipients
        unsealed = cls(
            label=label,
            recipients=recipients,
            wraps=tuple((b"", b"") for _ in recipients),
            envelope_id=envelope_id,
        )
        wraps = []
        for index, recipient in enumerate(recipients):
            public = x25519.X25519PublicKey.from_public_bytes(recipient.public_key)
            try:
                sealed = SUITE.encrypt(data_key, public, info=unsealed.info(index))
            except ValueError as exc:
                raise SealError(
                    f"cannot wrap the data key for recipient {recipient.name!r}: {exc}"
                ) from exc
            wraps.append((sealed[:KEY_LEN], sealed[KEY_LEN:]))
        return cls(label=label, recipients=recipients, wraps=tuple(wraps), envelope_id=envelope_id)

    def index_of(self, key: ReleaseKey) -> int | None:
        """Return the position of the entry for ``key`` (by key id and public key), or None."""
        for index, recipient in enumerate(self.recipients):
            if recipient.key_id == key.key_id and recipient.public_key == key.public_key:
                return index
        return None

    def unwrap(self, index: int, key: ReleaseKey, *, name: str) -> bytes:
        """Return the data key from the wrap of recipient ``index``, opened with ``key``.

        Raises
        ------
        SealError
            If HPKE decryption fails: the header was changed after sealing (label, release
            list, any recipient entry), or the wrap comes from another envelope.
        """
        enc, wrapped = self.wraps[index]
        recipient = self.recipients[index]
        try:
            data_key = SUITE.decrypt(enc + wrapped, key.x25519, info=self.info(index))
        except (InvalidTag, ValueError):
            raise SealError(
                f"{name}: the wrapped data key for recipient {recipient.name!r} failed "
                "authentication: the envelope header (label, release list or a recipient "
                "entry) was changed after sealing, or the entry comes from another envelope"
            ) from None
        if len(data_key) != DATA_KEY_LEN:
            raise SealError(
                f"{name}: the data key for recipient {recipient.name!r} is {len(data_key)} "
                f"bytes, expected {DATA_KEY_LEN}"
            )
        return data_key


def payload_label(prefix: bytes) -> str:
    """Return the sealed-file label of the payload, which binds every byte of the prefix."""
    return PAYLOAD_LABEL_PREFIX + hashlib.sha256(prefix).hexdigest()


def read_prefix(read: Callable[[int], bytes], name: str) -> tuple[EnvelopeHeader, bytes]:
    """Read and parse an envelope prefix with ``read``; return the header and the exact bytes.

    The header is not authenticated here (there is no key yet): the wrap and the payload do
    that. It is checked for being well formed, canonical, and consistent (key ids and the
    release-list digest match the entries).

    Raises
    ------
    ConfigError
        If the input is empty or is not a release envelope at all (another magic).
    SealError
        If it is truncated, has another version, or its header is malformed in any way.
    """
    fixed = read(PREFIX_FIXED_LEN)
    if not fixed:
        raise ConfigError(f"{name} is empty, not a release envelope")
    head = fixed[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise ConfigError(
            f"{name} is not a sealfl release envelope: expected magic {MAGIC.hex()}, "
            f"got {head.hex()}"
        )
    if len(fixed) < PREFIX_FIXED_LEN:
        raise SealError(
            f"{name} is truncated: the envelope prefix needs {PREFIX_FIXED_LEN} bytes, "
            f"the file has {len(fixed)}"
        )
    _magic, version, header_len = _FIXED.unpack(fixed)
    if version != FORMAT_VERSION:
        raise SealError(
            f"{name} uses release envelope format version {version}; this sealfl reads "
            f"version {FORMAT_VERSION}"
        )
    if not 2 <= header_len <= MAX_HEADER_LEN:
        raise SealError(f"{name}: header length is {header_len}, expected 2..{MAX_HEADER_LEN}")
    raw = read(header_len)
    if len(raw) < header_len:
        raise SealError(
            f"{name} is truncated: the header announces {header_len} bytes, the file has {len(raw)}"
        )
    return parse_header(raw, name), fixed + raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key in {sorted(keys)}")
    return dict(pairs)


def _field(document: dict[str, Any], field: str, kind: type, where: str) -> Any:
    value = document[field]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SealError(
            f"{where}: field {field!r} is {type(value).__name__}, expected {kind.__name__}"
        )
    return value


def _b64_field(document: dict[str, Any], field: str, size: int, where: str) -> bytes:
    value = _field(document, field, str, where)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealError(f"{where}: field {field!r} is not valid base64 ({exc})") from exc
    if len(raw) != size:
        raise SealError(f"{where}: field {field!r} is {len(raw)} bytes, expected {size}")
    return raw


def _exact_fields(document: Any, fields: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise SealError(f"{where}: expected a JSON object, got {type(document).__name__}")
    keys = set(document)
    if keys != fields:
        raise SealError(
            f"{where}: expected fields {sorted(fields)}, missing {sorted(fields - keys)}, "
            f"unexpected {sorted(keys - fields)}"
        )
    return document


def parse_header(raw: bytes, name: str) -> EnvelopeHeader:
    """Parse and check the JSON header bytes of an envelope called ``name``.

    Raises
    ------
    SealError
        If the header is not canonical JSON of the documented shape, or is inconsistent.
    """
    where = f"{name}: header"
    try:
        document = json.loads(raw.decode("ascii"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SealError(f"{where} is not ASCII JSON ({exc})") from exc
    document = _exact_fields(document, _HEADER_FIELDS, where)
    suite = _field(document, "suite", str, where)
    if suite != SUITE_NAME:
        raise SealError(f"{where}: suite is {suite!r}, this sealfl reads {SUITE_NAME!r}")
    label = _field(document, "label", str, where)
    try:
        check_label(label)
    except ConfigError as exc:
        raise SealError(f"{where}: {exc}") from exc
    envelope_id = _b64_field(document, "envelope_id", ENVELOPE_ID_LEN, where)
    release_list = _field(document, "release_list", str, where)
    if not _HEX64.fullmatch(release_list):
        raise SealError(f"{where}: release_list {release_list!r} is not 64 lowercase hex digits")
    entries = _field(document, "recipients", list, where)
    recipients: list[Recipient] = []
    wraps: list[tuple[bytes, bytes]] = []
    for index, item in enumerate(entries):
        at = f"{where}: recipient {index}"
        entry = _exact_fields(item, _ENTRY_FIELDS, at)
        resource = entry["broker_resource"]
        if resource is not None:
            _field(entry, "broker_resource", str, at)
        try:
            recipient = Recipient(
                name=_field(entry, "name", str, at),
                public_key=_b64_field(entry, "public_key", KEY_LEN, at),
                broker_resource=resource,
            )
        except ConfigError as exc:
            raise SealError(f"{at}: {exc}") from exc
        if _field(entry, "key_id", str, at) != recipient.key_id.hex():
            raise SealError(
                f"{at}: key_id {entry['key_id']!r} does not match its public key "
                f"(id {recipient.key_id.hex()})"
            )
        recipients.append(recipient)
        wraps.append(
            (
                _b64_field(entry, "enc", KEY_LEN, at),
                _b64_field(entry, "wrapped_key", WRAPPED_KEY_LEN, at),
            )
        )
    try:
        ReleasePolicy(recipients, source=where)  # non-empty, bounded, no duplicates
    except ConfigError as exc:
        raise SealError(str(exc)) from exc
    header = EnvelopeHeader(
        label=label, recipients=tuple(recipients), wraps=tuple(wraps), envelope_id=envelope_id
    )
    if header.release_list.hex() != release_list:
        raise SealError(
            f"{where}: release_list {release_list} is not the digest of the recipients listed "
            f"({header.release_list.hex()})"
        )
    if canonical_json(header._document(with_wraps=True)) != raw:
        raise SealError(f"{where} is not in canonical form (sorted keys, no spaces, ASCII)")
    return header

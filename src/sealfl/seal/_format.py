r"""Byte layout of a sealed file, format version 1, and the per-chunk cryptography.

A sealed file is a header followed by one or more chunks. All integers are big-endian.

Header (``54 + L`` bytes)::

    offset  size  field
    0       8     magic        b"\x89SEALFL\n" (high bit and newline catch text-mode damage)
    8       1     version      1
    9       1     label_len    L, 0..255
    10      4     chunk_size   plaintext bytes per chunk, 1..16 MiB
    14      8     key_id       first 8 bytes of SHA-256("sealfl sealing key id\0" || key)
    22      32    salt         random per file; HKDF salt for the file key and nonce base
    54      L     label        UTF-8 content type chosen by the writer, e.g. "homo-lr/model"

Chunks, for ``i = 0, 1, ...``::

    ciphertext_i || tag_i (16 bytes)
        = AES-256-GCM(file_key, nonce_i, plaintext_i, aad_i)
    nonce_i = nonce_base XOR i            (i as a 12-byte big-endian integer)
    aad_i   = SHA-256(header) || i (8 bytes) || final_i (1 byte: 1 on the last chunk, else 0)
    file_key || nonce_base = HKDF-SHA256(ikm=key, salt=salt, info=HKDF_INFO, length=44)

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds
``0 .. chunk_size - 1`` bytes, so a plaintext that is an exact multiple of the chunk size (or
empty) ends with an empty final chunk. A reader therefore knows a chunk is final from its
length alone, and the final flag in the associated data makes the writer's claim binding.

Why each piece is there:

- The header hash is in every chunk's associated data, so a changed header (chunk size, salt,
  label, version) fails authentication; there is no separate header tag to keep in step.
- The chunk index in the nonce and the associated data makes reordering, duplicating or
  dropping a chunk fail authentication at the first chunk out of place.
- Truncation: the last chunk is always shorter than ``chunk_size``, so a file cut at a chunk
  boundary ends with a full chunk and is refused as incomplete, and a cut inside a chunk changes
  that chunk's length and so its tag. The final flag binds the claim "this is the last chunk"
  into the tag as well (as the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár
  does), so detection does not rest on the framing rule alone.
- A fresh random 32-byte salt per file yields a fresh file key. The caller's key never
  encrypts anything itself, so the NIST SP 800-38D limit of about 2^32 random 96-bit nonces
  per key does not apply across files, and nonces inside one file are a counter, so they never
  repeat. (Random nonces under one key for every chunk of every file would eventually collide,
  and a GCM nonce reuse leaks the authentication key.)
- The key id lets a reader say "sealed with another key" before trying to decrypt; it is a
  domain-separated hash of a 256-bit random key, so it reveals nothing useful about the key.

This module is the hazardous layer of :mod:`sealfl.seal`: it encrypts and checks single chunks.
Framing, streaming and files live in :mod:`sealfl.seal._stream` and :mod:`sealfl.seal._files`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import ConfigError, SealError
from sealfl.seal._keys import SealingKey

MAGIC = b"\x89SEALFL\n"
FORMAT_VERSION = 1
SALT_LEN = 32
TAG_LEN = 16
NONCE_LEN = 12
MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_LABEL_LEN = 255
MAX_CHUNKS = 2**32
"""Chunks per file: far beyond any checkpoint (256 TiB at the default chunk size)."""

HKDF_INFO = b"sealfl seal v1: file key and nonce base"

# magic, version, label_len, chunk_size, key_id, salt
_FIXED = struct.Struct(">8sBBI8s32s")
HEADER_FIXED_LEN = _FIXED.size


@dataclass(frozen=True)
class SealedHeader:
    """The public header of a sealed file: enough to pick the key, nothing secret.

    Parameters
    ----------
    chunk_size : int
        Plaintext bytes per chunk.
    key_id : bytes
        Id of the key the file was sealed with (:attr:`SealingKey.key_id`).
    salt : bytes
        The file's random salt.
    label : str
        Content type chosen by the writer; authenticated with every chunk.
    version : int
        Format version.
    """

    chunk_size: int
    key_id: bytes
    salt: bytes
    label: str = ""
    version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        """Encode the header in the layout of the module docstring.

        Raises
        ------
        ConfigError
            If the chunk size or the label do not fit the format.
        """
        check_chunk_size(self.chunk_size)
        label = self.label.encode("utf-8")
        if len(label) > MAX_LABEL_LEN:
            raise ConfigError(
                f"label is {len(label)} bytes in UTF-8, at most {MAX_LABEL_LEN} fit the header"
            )
        if len(self.salt) != SALT_LEN or len(self.key_id) != SealingKey.KEY_ID_LEN:
            raise SealError(
                f"salt and key id must be {SALT_LEN} and {SealingKey.KEY_ID_LEN} bytes, "
                f"got {len(self.salt)} and {len(self.key_id)}"
            )
        fixed = _FIXED.pack(
            MAGIC, self.version, len(label), self.chunk_size, self.key_id, self.salt
        )
        return fixed + label

    @classmethod
    def fresh(cls, key: SealingKey, *, chunk_size: int, label: str) -> SealedHeader:
        """Return a header for a new file sealed with ``key``, with a fresh random salt."""
        return cls(chunk_size=chunk_size, key_id=key.key_id, salt=os.urandom(SALT_LEN), label=label)


def check_chunk_size(chunk_size: int) -> None:
    """Raise :class:`ConfigError` unless ``chunk_size`` is an int within the allowed range.

    The upper bound keeps a reader's memory bounded whatever header it is given.
    """
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise ConfigError(
            f"chunk size must be an integer in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}, "
            f"got {chunk_size!r}"
        )


def read_header(read: Callable[[int], bytes], name: str) -> tuple[SealedHeader, bytes]:
    """Read and parse a header with ``read``; return it and its exact bytes.

    Parameters
    ----------
    read : callable
        Returns up to ``n`` bytes, fewer only at the end of the input.
    name : str
        What the input is called in error messages (a path, or ``"<bytes>"``).

    Raises
    ------
    SealError
        If the input is empty, is not a sealed file, has an unsupported version, or a field is
        out of range. The header is not authenticated here: the first chunk does that.
    """
    fixed = read(HEADER_FIXED_LEN)
    if not fixed:
        raise SealError(f"{name} is empty, not a sealed file")
    head = fixed[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise SealError(
            f"{name} is not a sealed file: expected magic {MAGIC.hex()}, got {head.hex()}"
        )
    if len(fixed) < HEADER_FIXED_LEN:
        raise SealError(
            f"{name} is truncated: the header needs {HEADER_FIXED_LEN} bytes, "
            f"the file has {len(fixed)}"
        )
    _magic, version, label_len, chunk_size, key_id, salt = _FIXED.unpack(fixed)
    if version != FORMAT_VERSION:
        raise SealError(
            f"{name} uses sealed-file format version {version}; "
            f"this sealfl reads version {FORMAT_VERSION}"
        )
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealError(
            f"{name}: header field chunk_size is {chunk_size}, "
            f"expected {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"
        )
    raw_label = read(label_len)
    if len(raw_label) < label_len:
        raise SealError(
            f"{name} is truncated: the header announces a {label_len}-byte label, "
            f"the file has {len(raw_label)}"
        )
    try:
        label = raw_label.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SealError(f"{name}: header field label is not UTF-8 ({exc.reason})") from exc
    header = SealedHeader(
        chunk_size=chunk_size, key_id=key_id, salt=salt, label=label, version=version
    )
    return header, fixed + raw_label


class ChunkCipher:
    """AES-256-GCM for the chunks of one file: file key, nonce base and header hash bound.

    Parameters
    ----------
    key : SealingKey
        The caller's key; only the derived file key touches AES.
    header : bytes
        The exact header bytes of the file (their hash goes into every chunk's associated data).
    salt : bytes
        The file's salt from that header.
    """

    def __init__(self, key: SealingKey, header: bytes, salt: bytes) -> None:
        okm = HKDF(
            algorithm=hashes.SHA256(), length=32 + NONCE_LEN, salt=salt, info=HKDF_INFO
        ).derive(key.secret_bytes)
        self._aead = AESGCM(okm[:32])
        self._nonce_base = int.from_bytes(okm[32:], "big")
        self._header_hash = hashlib.sha256(header).digest()

    def _nonce_and_aad(self, index: int, final: bool) -> tuple[bytes, bytes]:
        if not 0 <= index < MAX_CHUNKS:
            raise SealError(f"chunk index {index} is beyond the format's {MAX_CHUNKS} chunks")
        nonce = (self._nonce_base ^ index).to_bytes(NONCE_LEN, "big")
        aad = self._header_hash + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")
        return nonce, aad

    def seal(self, index: int, final: bool, plaintext: bytes) -> bytes:
        """Return ``ciphertext || tag`` of chunk ``index``."""
        nonce, aad = self._nonce_and_aad(index, final)
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, index: int, final: bool, record: bytes) -> bytes:
        """Return the plaintext of chunk ``index``.

        Raises
        ------
        cryptography.exceptions.InvalidTag
            If the record is not chunk ``index`` of this file with this final flag; the caller
            turns it into a :class:`SealError` that says where.
        """
        nonce, aad = self._nonce_and_aad(index, final)
        return self._aead.decrypt(nonce, record, aad)

"""Sealed files at rest (chunked AES-256-GCM) and the keys that open them.

The safe recipe on top of the hazardous layers: use it to keep models and checkpoints at rest.

Sealing a model::

    key = SealingKey.load("dev.key")              # or SealingKey.from_tee(provider)
    write_sealed("model.sealed", model_bytes, key, label="homo-lr/model")
    model_bytes = read_sealed("model.sealed", key, label="homo-lr/model")

What it guarantees:

- Confidentiality and integrity of the whole file, not just of each piece: a changed byte
  anywhere (header, ciphertext, tag), a truncated file, reordered, duplicated or dropped chunks,
  appended bytes, and another key all raise :class:`sealfl.errors.SealError`, whose message
  names the file, the chunk index and its byte offset. See :mod:`sealfl.seal._format` for the
  byte layout and why each field is there.
- Files are replaced atomically: a temporary file beside the destination, fsync, then rename.
  On any failure, including authentication failing halfway through a decryption, the
  destination keeps its old contents and no partial plaintext remains on disk.
- Bounded memory: files and streams are processed one chunk (64 KiB by default) at a time.

Errors: :class:`sealfl.errors.ConfigError` for a path that cannot be read or written (missing,
a directory, a key file others may read, a key file that already exists);
:class:`sealfl.errors.SealError` for bytes that are present but unacceptable (a sealed file or
key file that is corrupt, tampered, truncated, or for another key).

Releasing a model to its owner (issue 9): :func:`write_release` seals it under a fresh data
key wrapped (HPKE, RFC 9180) for every recipient of a :class:`ReleasePolicy`; a recipient opens
it offline with :func:`open_release` and its :class:`ReleaseKey`, or an attested TEE gets that
key from the key broker first. ``ReleasePolicy.digest()`` is the ``release-list`` RA-TLS claim.
See :mod:`sealfl.seal.release`; formats in :mod:`sealfl.seal._release_format`,
:mod:`sealfl.seal._release_policy` and :mod:`sealfl.seal._release_keys`.

Hazards: :func:`open_sealed_stream` writes authenticated chunks before the end is known, so
its output must be discarded if it raises. The header is readable without the key
(:func:`inspect_sealed`); do not put secrets in the label.
"""

from sealfl._files import TEMP_SUFFIX
from sealfl.seal._files import (
    inspect_sealed,
    open_sealed_file,
    read_sealed,
    seal_file,
    write_sealed,
)
from sealfl.seal._format import DEFAULT_CHUNK_SIZE, FORMAT_VERSION, MAX_CHUNK_SIZE, SealedHeader
from sealfl.seal._keys import DEFAULT_TEE_LABEL, SealingKey, SealingKeySource
from sealfl.seal._stream import open_sealed_bytes, open_sealed_stream, seal_bytes, seal_stream
from sealfl.seal.release import (
    RELEASE_LIST_CLAIM,
    Recipient,
    ReleaseInfo,
    ReleaseKey,
    ReleasePolicy,
    inspect_release,
    open_release,
    read_public_key,
    write_release,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_TEE_LABEL",
    "FORMAT_VERSION",
    "MAX_CHUNK_SIZE",
    "RELEASE_LIST_CLAIM",
    "TEMP_SUFFIX",
    "Recipient",
    "ReleaseInfo",
    "ReleaseKey",
    "ReleasePolicy",
    "SealedHeader",
    "SealingKey",
    "SealingKeySource",
    "inspect_release",
    "inspect_sealed",
    "open_release",
    "open_sealed_bytes",
    "open_sealed_file",
    "open_sealed_stream",
    "read_public_key",
    "read_sealed",
    "seal_bytes",
    "seal_file",
    "seal_stream",
    "write_release",
    "write_sealed",
]

"""Sealing keys: generated, loaded from a development key file, or derived from a TEE identity.

Key file format, version 1: a small UTF-8 JSON object, created with mode 0600 and never
overwritten (replacing a key would make every file sealed with it unreadable)::

    {
      "format": "sealfl-sealing-key",
      "version": 1,
      "key_id": "<16 hex digits: SealingKey.key_id>",
      "key": "<standard base64 of the 32 key bytes>"
    }

The file holds the key itself, so it is for development and CI. In production the key is
derived inside the TEE (:meth:`SealingKey.from_tee`), or released by the key broker to an
attested requester. ``key_id`` is redundant on purpose: it catches a key that was mistyped or
damaged in an edit, which would otherwise surface later as "authentication failed".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from sealfl._files import create_new_file, read_small_file
from sealfl.errors import SealError

KEY_FILE_FORMAT = "sealfl-sealing-key"
KEY_FILE_VERSION = 1
_KEY_FILE_FIELDS = frozenset({"format", "version", "key_id", "key"})
_KEY_FILE_MAX_BYTES = 4096
_KEY_ID_DOMAIN = b"sealfl sealing key id\x00"
DEFAULT_TEE_LABEL = b"sealfl/seal/v1"


@runtime_checkable
class SealingKeySource(Protocol):
    """Anything that derives a 32-byte key bound to its identity, such as a TEE evidence provider.

    ``sealfl.tee`` providers implement it: the simulated TEE as HKDF over its platform secret
    and measurement, SGX through Gramine's ``/dev/attestation/keys/_sgx_mrenclave``. The same
    enclave gets the same key for the same label; different code gets a different key.
    """

    def derive_sealing_key(self, label: bytes) -> bytes:
        """Return 32 bytes bound to this source's identity and to ``label``."""
        ...


class SealingKey:
    """A 256-bit AES key for sealed files, with a public id.

    Parameters
    ----------
    secret : bytes
        The 32 key bytes. Prefer :meth:`generate`, :meth:`load` or :meth:`from_tee`.

    Raises
    ------
    SealError
        If ``secret`` is not 32 bytes.

    Notes
    -----
    ``repr`` shows only the key id, so a key that ends up in a log or a traceback leaks nothing.
    """

    KEY_LEN: ClassVar[int] = 32
    KEY_ID_LEN: ClassVar[int] = 8

    __slots__ = ("_key_id", "_secret")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise SealError(f"a sealing key is {self.KEY_LEN} bytes, got {type(secret).__name__}")
        if len(secret) != self.KEY_LEN:
            raise SealError(f"a sealing key is {self.KEY_LEN} bytes, got {len(secret)}")
        self._secret = bytes(secret)
        self._key_id = hashlib.sha256(_KEY_ID_DOMAIN + self._secret).digest()[: self.KEY_ID_LEN]

    @property
    def key_id(self) -> bytes:
        """Public 8-byte fingerprint: written into every sealed file's header."""
        return self._key_id

    @property
    def secret_bytes(self) -> bytes:
        """The raw key. Hazard: only the sealed-file format and the key file need it."""
        return self._secret

    def __repr__(self) -> str:
        return f"SealingKey(key_id={self._key_id.hex()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SealingKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self._key_id)

    @classmethod
    def generate(cls) -> SealingKey:
        """Return a new random key from the operating system's CSPRNG."""
        return cls(os.urandom(cls.KEY_LEN))

    @classmethod
    def from_tee(cls, source: SealingKeySource, *, label: bytes = DEFAULT_TEE_LABEL) -> SealingKey:
        """Derive the key from a TEE identity, so only the same attested code can unseal.

        Parameters
        ----------
        source : SealingKeySource
            A ``sealfl.tee`` evidence provider, or anything with ``derive_sealing_key``.
        label : bytes
            Separates keys for different purposes (model, checkpoints) of the same enclave.

        Raises
        ------
        SealError
            If the source returns anything but 32 bytes.
        """
        derived = source.derive_sealing_key(label)
        if not isinstance(derived, bytes) or len(derived) != cls.KEY_LEN:
            got = f"{len(derived)} bytes" if isinstance(derived, bytes) else type(derived).__name__
            raise SealError(
                f"{type(source).__name__}.derive_sealing_key({label!r}) returned {got}, "
                f"expected {cls.KEY_LEN} bytes"
            )
        return cls(derived)

    def to_key_file_bytes(self) -> bytes:
        """Return the key file contents described in the module docstring."""
        document = {
            "format": KEY_FILE_FORMAT,
            "version": KEY_FILE_VERSION,
            "key_id": self._key_id.hex(),
            "key": base64.b64encode(self._secret).decode("ascii"),
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a new key file with mode 0600; never replace an existing file.

        Raises
        ------
        ConfigError
            If ``path`` exists or cannot be created.
        """
        create_new_file(
            Path(path),
            self.to_key_file_bytes(),
            what="key file",
            if_exists="refusing to overwrite a key (files sealed with it would become unreadable)",
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, allow_insecure_permissions: bool = False
    ) -> SealingKey:
        """Read and validate a key file.

        Parameters
        ----------
        path : path-like
            The key file.
        allow_insecure_permissions : bool
            Accept a file that group or others may read. Off by default, as ssh does for
            private keys: anyone who can read the file can open every file sealed with it.

        Raises
        ------
        ConfigError
            If the file is missing, unreadable, not a regular file, or readable by others.
        SealError
            If its contents are not a valid key file (each message names the field).
        """
        source = Path(path)
        raw = read_small_file(
            source,
            what="key file",
            max_bytes=_KEY_FILE_MAX_BYTES,
            private=True,
            allow_insecure_permissions=allow_insecure_permissions,
        )
        return cls.from_key_file_bytes(raw, name=str(source))

    @classmethod
    def from_key_file_bytes(cls, raw: bytes, *, name: str = "<key file>") -> SealingKey:
        """Parse key file contents; ``name`` is used in error messages.

        Raises
        ------
        SealError
            If ``raw`` is not a valid version-1 key file.
        """
        try:
            document: Any = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SealError(f"key file {name} is not UTF-8 text ({exc.reason})") from exc
        except json.JSONDecodeError as exc:
            raise SealError(
                f"key file {name} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc
        if not isinstance(document, dict):
            raise SealError(
                f"key file {name}: expected a JSON object, got {type(document).__name__}"
            )
        fields = set(document)
        if fields != _KEY_FILE_FIELDS:
            raise SealError(
                f"key file {name}: expected fields {sorted(_KEY_FILE_FIELDS)}, "
                f"missing {sorted(_KEY_FILE_FIELDS - fields)}, "
                f"unexpected {sorted(fields - _KEY_FILE_FIELDS)}"
            )
        if document["format"] != KEY_FILE_FORMAT:
            raise SealError(
                f"key file {name}: field 'format' is {document['format']!r}, "
                f"expected {KEY_FILE_FORMAT!r}"
            )
        version = document["version"]
        if type(version) is not int or version != KEY_FILE_VERSION:
            raise SealError(
                f"key file {name}: field 'version' is {version!r}, expected {KEY_FILE_VERSION}"
            )
        encoded = document["key"]
        if not isinstance(encoded, str):
            raise SealError(
                f"key file {name}: field 'key' must be a base64 string, "
                f"got {type(encoded).__name__}"
            )
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SealError(f"key file {name}: field 'key' is not valid base64 ({exc})") from exc
        if len(secret) != cls.KEY_LEN:
            raise SealError(
                f"key file {name}: field 'key' decodes to {len(secret)} bytes, "
                f"expected {cls.KEY_LEN}"
            )
        key = cls(secret)
        if document["key_id"] != key.key_id.hex():
            raise SealError(
                f"key file {name}: field 'key_id' is {document['key_id']!r}, but the key's id is "
                f"{key.key_id.hex()!r}: the key or its id was altered"
            )
        return key

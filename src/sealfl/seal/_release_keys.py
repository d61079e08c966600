"""Recipient keys for model release: X25519 key pairs with a name, and their key files.

A recipient of a released model holds an X25519 private key; the producing party lists the
matching public key in its release policy. Two files per key pair, both small UTF-8 JSON
objects, written by ``sealfl model keygen`` (never overwritten)::

    NAME.key  (mode 0600)                      NAME.pub
    {                                          {
      "format": "sealfl-release-private-key",    "format": "sealfl-release-public-key",
      "version": 1,                              "version": 1,
      "name": "model-owner",                     "name": "model-owner",
      "key_id": "<16 hex digits>",               "key_id": "<16 hex digits>",
      "private_key": "<base64, 32 bytes>"        "public_key": "<base64, 32 bytes>"
    }                                          }

The base64 values are the raw RFC 7748 encodings. ``key_id`` is the first 8 bytes of
SHA-256 over the raw public key, in hex, so anyone can recompute it from a ``.pub`` file; it is
redundant on purpose and catches a key that was damaged in an edit. The ``name`` in a key
file is a label for people: the name that counts is the one in the release policy.

PEM works too, for keys made by other tools (``openssl genpkey -algorithm X25519``): an
unencrypted PKCS#8 ``PRIVATE KEY`` or a SubjectPublicKeyInfo ``PUBLIC KEY``, X25519 only.

For release to an attested TEE (way b of issue 9), the contents of a ``.key`` file are stored
in the key broker as a resource; the TEE receives those bytes and reads them with
:meth:`ReleaseKey.from_bytes`. The ``.pub`` file goes into the producer's release policy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from sealfl._files import check_private_mode, create_new_file, make_directory, read_small_file
from sealfl.errors import ConfigError

PRIVATE_KEY_FORMAT = "sealfl-release-private-key"
PUBLIC_KEY_FORMAT = "sealfl-release-public-key"
KEY_FILE_VERSION = 1
KEY_LEN = 32
"""Bytes in a raw X25519 key, public or private (RFC 7748)."""
KEY_ID_LEN = 8
MAX_KEY_FILE_BYTES = 4096
DEFAULT_KEY_NAME = "recipient"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PRIVATE_FIELDS = frozenset({"format", "version", "name", "key_id", "private_key"})
_PUBLIC_FIELDS = frozenset({"format", "version", "name", "key_id", "public_key"})


def key_id(public_key: bytes) -> bytes:
    """Return the 8-byte id of a raw X25519 public key: the start of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:KEY_ID_LEN]


def check_name(name: object, where: str) -> str:
    """Return ``name`` if it is a valid recipient name, else raise :class:`ConfigError`.

    Names become file names (``NAME.key``) and appear in logs and in the release list, so they
    are short and plain: a letter or digit, then up to 63 letters, digits, ``.``, ``_``, ``-``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: name {name!r} is not a valid recipient name (expected 1 to 64 of "
            "A-Z a-z 0-9 . _ -, starting with a letter or digit)"
        )
    return name


def check_public_key(raw: bytes, where: str) -> bytes:
    """Return ``raw`` if it is a usable X25519 public key, else raise :class:`ConfigError`.

    A low-order point (all-zero shared secret) is refused here, where the policy is read,
    rather than when a model is released to it.
    """
    if len(raw) != KEY_LEN:
        raise ConfigError(f"{where}: an X25519 public key is {KEY_LEN} bytes, got {len(raw)}")
    try:
        x25519.X25519PrivateKey.generate().exchange(x25519.X25519PublicKey.from_public_bytes(raw))
    except ValueError as exc:
        raise ConfigError(
            f"{where}: public key {raw.hex()} is not usable (a low-order X25519 point)"
        ) from exc
    return raw


def _json_document(raw: bytes, name: str, fields: frozenset[str], fmt: str) -> dict[str, Any]:
    """Parse a version-1 key file with exactly ``fields``; every error names ``name``."""
    try:
        document: Any = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name} is not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{name} is neither PEM nor a JSON key file: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{name}: expected a JSON object, got {type(document).__name__}")
    if document.get("format") != fmt:
        raise ConfigError(f"{name}: field 'format' is {document.get('format')!r}, expected {fmt!r}")
    keys = set(document)
    if keys != fields:
        raise ConfigError(
            f"{name}: expected fields {sorted(fields)}, missing {sorted(fields - keys)}, "
            f"unexpected {sorted(keys - fields)}"
        )
    version = document["version"]
    if type(version) is not int or version != KEY_FILE_VERSION:
        raise ConfigError(f"{name}: field 'version' is {version!r}, expected {KEY_FILE_VERSION}")
    check_name(document["name"], f"{name}: field 'name'")
    return document


def _b64_field(document: dict[str, Any], field: str, name: str) -> bytes:
    value = document[field]
    if not isinstance(value, str):
        raise ConfigError(
            f"{name}: field {field!r} must be a base64 string, got {type(value).__name__}"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{name}: field {field!r} is not valid base64 ({exc})") from exc
    if len(raw) != KEY_LEN:
        raise ConfigError(
            f"{name}: field {field!r} decodes to {len(raw)} bytes, expected {KEY_LEN}"
        )
    return raw


def _check_key_id(document: dict[str, Any], public_key: bytes, name: str) -> None:
    if document["key_id"] != key_id(public_key).hex():
        raise ConfigError(
            f"{name}: field 'key_id' is {document['key_id']!r}, but the key's id is "
            f"{key_id(public_key).hex()!r}: the key or its id was altered"
        )


def public_key_file_bytes(public_key: bytes, *, name: str) -> bytes:
    """Return the contents of a ``.pub`` file (module docstring) for a raw public key."""
    document = {
        "format": PUBLIC_KEY_FORMAT,
        "version": KEY_FILE_VERSION,
        "name": check_name(name, "public key"),
        "key_id": key_id(public_key).hex(),
        "public_key": base64.b64encode(public_key).decode("ascii"),
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def parse_public_key(raw: bytes, *, name: str = "<public key>") -> bytes:
    """Return the raw 32-byte X25519 public key in a ``.pub`` file or a PEM public key.

    Raises
    ------
    ConfigError
        If ``raw`` (called ``name`` in messages) is neither, or holds another kind of key.
    """
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{name}: not a readable PEM public key ({exc})") from exc
        if not isinstance(key, x25519.X25519PublicKey):
            raise ConfigError(f"{name}: expected an X25519 public key, got {type(key).__name__}")
        public = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return check_public_key(public, name)
    document = _json_document(raw, name, _PUBLIC_FIELDS, PUBLIC_KEY_FORMAT)
    public = _b64_field(document, "public_key", name)
    _check_key_id(document, public, name)
    return check_public_key(public, name)


def read_public_key(path: str | os.PathLike[str]) -> bytes:
    """Read a ``.pub`` file or a PEM X25519 public key; return the raw 32 bytes.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable or not an X25519 public key.
    """
    source = Path(path)
    raw = read_small_file(source, what="public key file", max_bytes=MAX_KEY_FILE_BYTES)
    return parse_public_key(raw, name=str(source))


class ReleaseKey:
    """A recipient's X25519 private key, with the name it was made for.

    Parameters
    ----------
    private_key : X25519PrivateKey
        The key. Prefer :meth:`generate`, :meth:`load` or :meth:`from_bytes`.
    name : str
        A label for people (file names, logs); the release policy's name is the one that counts.

    Notes
    -----
    ``repr`` shows the name and key id only, so a key in a log or traceback leaks nothing.
    """

    __slots__ = ("_key", "_name", "_public")

    def __init__(self, private_key: x25519.X25519PrivateKey, *, name: str = DEFAULT_KEY_NAME):
        if not isinstance(private_key, x25519.X25519PrivateKey):
            raise ConfigError(
                f"a release key is an X25519 private key, got {type(private_key).__name__}"
            )
        self._key = private_key
        self._name = check_name(name, "release key")
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls, *, name: str = DEFAULT_KEY_NAME) -> ReleaseKey:
        """Return a new random key pair (the operating system's CSPRNG, through OpenSSL)."""
        return cls(x25519.X25519PrivateKey.generate(), name=name)

    @property
    def name(self) -> str:
        """The name the key was made for."""
        return self._name

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key, as listed in a release policy."""
        return self._public

    @property
    def key_id(self) -> bytes:
        """8-byte id of the public key (:func:`key_id`); envelopes name recipients by it."""
        return key_id(self._public)

    @property
    def x25519(self) -> x25519.X25519PrivateKey:
        """The private key object. Hazard: only HPKE decapsulation needs it."""
        return self._key

    def __repr__(self) -> str:
        return f"ReleaseKey(name={self._name!r}, key_id={self.key_id.hex()!r})"

    def to_bytes(self) -> bytes:
        """Return the contents of the ``.key`` file (module docstring): secret."""
        raw = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        document = {
            "format": PRIVATE_KEY_FORMAT,
            "version": KEY_FILE_VERSION,
            "name": self._name,
            "key_id": self.key_id.hex(),
            "private_key": base64.b64encode(raw).decode("ascii"),
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    def public_key_file_bytes(self) -> bytes:
        """Return the contents of the matching ``.pub`` file."""
        return public_key_file_bytes(self._public, name=self._name)

    def save(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``NAME.key`` (mode 0600) and ``NAME.pub`` (0644) into ``directory``.

        The directory is created if needed. Neither file may exist yet: replacing a private
        key would make every model released to it unreadable. If the second file cannot be
        written, the first is removed again, so a failure leaves nothing behind.

        Returns
        -------
        tuple of Path
            The private and public key files.

        Raises
        ------
        ConfigError
            If either file exists, or the directory or files cannot be created.
        """
        folder = Path(directory)
        make_directory(folder, what="key directory")
        private_path, public_path = folder / f"{self._name}.key", folder / f"{self._name}.pub"
        refuse = "refusing to overwrite a key (models released to it would become unreadable)"
        for path in (private_path, public_path):
            if path.exists() or path.is_symlink():
                raise ConfigError(f"key file {path} already exists: {refuse}")
        create_new_file(private_path, self.to_bytes(), what="private key file", if_exists=refuse)
        try:
            create_new_file(
                public_path, self.public_key_file_bytes(), what="public key file", if_exists=refuse
            )
            os.chmod(public_path, 0o644)  # a public key: others may read it
        except BaseException:
            private_path.unlink(missing_ok=True)
            raise
        return private_path, public_path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, allow_insecure_permissions: bool = False
    ) -> ReleaseKey:
        """Read a private key file (``.key`` JSON or PEM PKCS#8).

        Parameters
        ----------
        path : path-like
            The key file.
        allow_insecure_permissions : bool
            Accept a file that group or others may read. Off by default, as ssh does for
            private keys: whoever reads the file can open every model released to it.

        Raises
        ------
        ConfigError
            If the file is missing, unreadable, readable by others, or not an X25519 private
            key file (each message names the file and the field).
        """
        source = Path(path)
        raw = read_small_file(source, what="private key file", max_bytes=MAX_KEY_FILE_BYTES)
        key = cls.from_bytes(raw, name=str(source))  # first: a public key given here says so
        if not allow_insecure_permissions:
            check_private_mode(source, what="private key file")
        return key

    @classmethod
    def from_bytes(cls, raw: bytes, *, name: str = "<release key>") -> ReleaseKey:
        """Parse private key file contents, for example a resource the key broker released.

        Parameters
        ----------
        raw : bytes
            A ``.key`` file (JSON) or an unencrypted PEM PKCS#8 X25519 private key.
        name : str
            What ``raw`` is called in error messages.

        Raises
        ------
        ConfigError
            If ``raw`` is not an X25519 private key in one of those forms.
        """
        if raw.lstrip().startswith(b"-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(raw, password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"{name}: not a readable unencrypted PEM private key ({exc})"
                ) from exc
            if not isinstance(key, x25519.X25519PrivateKey):
                raise ConfigError(
                    f"{name}: expected an X25519 private key, got {type(key).__name__}"
                )
            return cls(key)
        document = _json_document(raw, name, _PRIVATE_FIELDS, PRIVATE_KEY_FORMAT)
        secret = _b64_field(document, "private_key", name)
        release_key = cls(x25519.X25519PrivateKey.from_private_bytes(secret), name=document["name"])
        _check_key_id(document, release_key.public_key, name)
        return release_key

"""Paillier key files: a small, documented JSON document, validated on load.

Format (UTF-8 JSON object, integers as lowercase hexadecimal strings without ``0x``)::

    {
      "format": "sealfl-paillier-key",
      "version": 1,
      "kind": "public" | "private",
      "bits": 2048,                 # bit length of n
      "fingerprint": "<32 hex>",    # PaillierPublicKey.fingerprint, checked against n
      "n": "<hex>",
      "p": "<hex>", "q": "<hex>"    # private keys only
    }

Nothing in the file is executed or unpickled. Loading checks every field's presence and type,
that the fingerprint matches ``n`` (so a corrupted ``n`` is caught), and for a private key that
``p·q = n`` with both factors prime. Private key files are written with mode 0600, through a
temporary file renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sealfl._files import make_directory, write_atomic
from sealfl.errors import ConfigError, HEError
from sealfl.he._keys import PaillierPrivateKey, PaillierPublicKey, _warn_if_weak

FORMAT = "sealfl-paillier-key"
VERSION = 1


def _document(public_key: PaillierPublicKey, kind: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "bits": public_key.bits,
        "fingerprint": public_key.fingerprint_hex,
        "n": format(public_key.n, "x"),
    }


def public_key_to_json(public_key: PaillierPublicKey) -> bytes:
    """Return the public key as a key-file document (also fit to send to a peer)."""
    return json.dumps(_document(public_key, "public"), indent=2).encode() + b"\n"


def private_key_to_json(private_key: PaillierPrivateKey) -> bytes:
    """Return the private key as a key-file document. Keep it secret."""
    document = _document(private_key.public_key, "private")
    document["p"] = format(private_key.p, "x")
    document["q"] = format(private_key.q, "x")
    return json.dumps(document, indent=2).encode() + b"\n"


def _write(path: Path, data: bytes, mode: int) -> None:
    make_directory(path.parent, what="key directory")
    write_atomic(path, data, mode=mode)


def save_public_key(public_key: PaillierPublicKey, path: str | os.PathLike[str]) -> None:
    """Write the public key file (mode 0644)."""
    _write(Path(path), public_key_to_json(public_key), 0o644)


def save_private_key(private_key: PaillierPrivateKey, path: str | os.PathLike[str]) -> None:
    """Write the private key file (mode 0600)."""
    _write(Path(path), private_key_to_json(private_key), 0o600)


def _hex_field(document: dict[str, Any], name: str, source: str) -> int:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        got = "missing" if value is None else "empty" if value == "" else type(value).__name__
        raise ConfigError(f"{source}: field {name!r} is {got}, expected a hexadecimal string")
    try:
        return int(value, 16)
    except ValueError:
        raise ConfigError(f"{source}: field {name!r} is not hexadecimal") from None


def _parse(data: bytes, source: str) -> tuple[str, dict[str, Any]]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source}: not a Paillier key file (invalid JSON: {exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(
            f"{source}: not a Paillier key file (a JSON {type(document).__name__}, expected an "
            "object)"
        )
    if document.get("format") != FORMAT:
        raise ConfigError(
            f"{source}: not a Paillier key file (field 'format' is {document.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    if document.get("version") != VERSION:
        raise ConfigError(
            f"{source}: key file version {document.get('version')!r}, expected {VERSION}"
        )
    kind = document.get("kind")
    if kind not in ("public", "private"):
        raise ConfigError(f"{source}: field 'kind' is {kind!r}, expected 'public' or 'private'")
    return kind, document


def _public_from_document(document: dict[str, Any], source: str) -> PaillierPublicKey:
    n = _hex_field(document, "n", source)
    try:
        public_key = PaillierPublicKey(n)
    except HEError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if document.get("bits") != public_key.bits:
        raise ConfigError(
            f"{source}: field 'bits' is {document.get('bits')!r}, but n has {public_key.bits} bits"
        )
    if document.get("fingerprint") != public_key.fingerprint_hex:
        raise ConfigError(
            f"{source}: fingerprint {document.get('fingerprint')!r} does not match n "
            f"({public_key.fingerprint_hex}); the file is corrupted"
        )
    _warn_if_weak(public_key.bits)
    return public_key


def public_key_from_json(data: bytes, *, source: str = "public key") -> PaillierPublicKey:
    """Parse and validate a public key document.

    Raises
    ------
    ConfigError
        If the document is not a public Paillier key file, or a field is missing or wrong. A
        private key document is refused: load it with :func:`private_key_from_json`, so that a
        private key is never handled as if it could be shared.
    """
    kind, document = _parse(data, source)
    if kind != "public":
        raise ConfigError(
            f"{source}: is a private key file, expected a public key; load it as a private key "
            "and use its .public_key"
        )
    return _public_from_document(document, source)


def private_key_from_json(data: bytes, *, source: str = "private key") -> PaillierPrivateKey:
    """Parse and validate a private key document.

    Raises
    ------
    ConfigError
        If the document is not a private Paillier key file, or ``p·q != n``, or a factor is
        not prime, or a field is missing or wrong.
    """
    kind, document = _parse(data, source)
    if kind != "private":
        raise ConfigError(f"{source}: is a public key file, expected a private key")
    return _private_from_document(document, source)


def _private_from_document(document: dict[str, Any], source: str) -> PaillierPrivateKey:
    public_key = _public_from_document(document, source)
    p = _hex_field(document, "p", source)
    q = _hex_field(document, "q", source)
    try:
        return PaillierPrivateKey(public_key, p, q)
    except HEError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from None


def load_public_key(path: str | os.PathLike[str]) -> PaillierPublicKey:
    """Read and validate a public key file (see the module docstring)."""
    return public_key_from_json(_read(path), source=str(path))


def load_private_key(path: str | os.PathLike[str]) -> PaillierPrivateKey:
    """Read and validate a private key file (see the module docstring)."""
    return private_key_from_json(_read(path), source=str(path))


def load_key(path: str | os.PathLike[str]) -> PaillierPublicKey | PaillierPrivateKey:
    """Read and validate a key file of either kind; the type of the result says which.

    For tools that inspect any key file. Code that needs one kind should call
    :func:`load_public_key` or :func:`load_private_key`, which refuse the other.
    """
    source = str(path)
    kind, document = _parse(_read(path), source)
    if kind == "private":
        return _private_from_document(document, source)
    return _public_from_document(document, source)

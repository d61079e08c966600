r"""Release policy: who will be able to open a model the producing party releases.

The producing party (the parameter server, a trainer) reads a TOML file listing recipients::

    [[recipient]]
    name = "model-owner"
    public_key = "owner.pub"          # a key file, relative to this file, or inline base64
    [[recipient]]
    name = "eval-enclave"
    public_key = "broker-eval.pub"
    broker_resource = "homo-lr/release-key/eval"   # private key held by the key broker

Every recipient is an X25519 public key with a name. ``broker_resource`` marks a recipient
whose private key lives in the key broker, which releases it only to attested TEEs that pass
that resource's policy (way b of issue 9); a recipient without it holds its private key itself
(way a). ``public_key`` is read as inline base64 when it decodes to exactly 32 bytes (a
44-character string ending in ``=``), and as a path otherwise; key files are described in
:mod:`sealfl.seal._release_keys`.

Parsing is strict: an unknown table or key, a missing field, an empty list, two recipients
with the same name, key or broker resource are all :class:`~sealfl.errors.ConfigError`, naming
the file and the entry (``recipient 2 ('eval-enclave')``), so a typo never silently drops a
recipient or adds one.

The release-list digest, :meth:`ReleasePolicy.digest`, is the value of the ``release-list``
claim in the producer's RA-TLS certificate, so its peers see who will be able to open the
model. It is SHA-256 over these exact ASCII bytes (canonical JSON: keys sorted, no spaces,
non-ASCII escaped; recipients sorted by name; ``broker_resource`` is ``null`` when absent)::

    {"format":"sealfl-release-list","recipients":[{"broker_resource":null,"name":"model-owner",
    "public_key":"<standard base64 of 32 bytes>"},...],"version":1}

so the order of the file does not matter, and anything else (a renamed recipient, another
key, a broker resource added or removed) changes it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl._files import read_small_file
from sealfl.errors import ConfigError
from sealfl.seal._release_keys import KEY_LEN, check_name, check_public_key, key_id, read_public_key

RELEASE_LIST_CLAIM = "release-list"
"""Name of the RA-TLS claim whose value is :meth:`ReleasePolicy.digest`."""
MAX_RECIPIENTS = 256
MAX_POLICY_BYTES = 1024 * 1024
RELEASE_LIST_FORMAT = "sealfl-release-list"
RELEASE_LIST_VERSION = 1

_RESOURCE_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_MAX_RESOURCE_LEN = 255
_ENTRY_FIELDS = frozenset({"name", "public_key", "broker_resource"})


def check_broker_resource(resource: object, where: str) -> str:
    """Return ``resource`` if it is a valid broker resource name, else raise ConfigError.

    A resource name is 1 to 255 characters: ``/``-separated segments of letters, digits,
    ``.``, ``_`` and ``-``, none empty, ``.`` or ``..`` (the broker may map names to paths).
    """
    if not isinstance(resource, str):
        raise ConfigError(
            f"{where}: broker_resource must be a string, got {type(resource).__name__}"
        )
    segments = resource.split("/")
    if not (
        0 < len(resource) <= _MAX_RESOURCE_LEN
        and all(_RESOURCE_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)
    ):
        raise ConfigError(
            f"{where}: broker_resource {resource!r} is not a valid resource name (expected "
            "'/'-separated segments of A-Z a-z 0-9 . _ -, at most 255 characters)"
        )
    return resource


@dataclass(frozen=True)
class Recipient:
    """One entry of a release list: a name, an X25519 public key, maybe a broker resource.

    Parameters
    ----------
    name : str
        Unique within the list; appears in logs, envelopes and refusals.
    public_key : bytes
        The raw 32-byte X25519 public key the data key is wrapped for.
    broker_resource : str or None
        Where the key broker holds the private key, for a recipient that is an attested TEE;
        ``None`` when the recipient holds its private key itself.

    Raises
    ------
    ConfigError
        If a field is invalid.
    """

    name: str
    public_key: bytes
    broker_resource: str | None = None

    def __post_init__(self) -> None:
        where = f"recipient {self.name!r}"
        check_name(self.name, where)
        if not isinstance(self.public_key, bytes):
            raise ConfigError(
                f"{where}: public_key must be bytes, got {type(self.public_key).__name__}"
            )
        check_public_key(self.public_key, where)
        if self.broker_resource is not None:
            check_broker_resource(self.broker_resource, where)

    @property
    def key_id(self) -> bytes:
        """8-byte id of the public key: the start of its SHA-256."""
        return key_id(self.public_key)

    def canonical(self) -> dict[str, Any]:
        """Return the recipient's entry in the release-list encoding (module docstring)."""
        return {
            "broker_resource": self.broker_resource,
            "name": self.name,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
        }

    def describe(self) -> str:
        """One line for logs: name, key id, and the broker resource if any."""
        via = f", via broker resource {self.broker_resource}" if self.broker_resource else ""
        return f"{self.name} (key {self.key_id.hex()}{via})"


def release_list_digest(recipients: Iterable[Recipient]) -> bytes:
    """Return SHA-256 of the canonical release-list encoding (module docstring)."""
    document = {
        "format": RELEASE_LIST_FORMAT,
        "recipients": [r.canonical() for r in sorted(recipients, key=lambda r: r.name)],
        "version": RELEASE_LIST_VERSION,
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode("ascii")).digest()


class ReleasePolicy:
    """The recipients a producing party releases models to (module docstring).

    Parameters
    ----------
    recipients : iterable of Recipient
        At least one, at most 256, with distinct names, public keys and broker resources.
    source : str
        Where the list came from, for messages (the policy file's path).

    Raises
    ------
    ConfigError
        If the list is empty, too long, or has duplicates.
    """

    def __init__(self, recipients: Iterable[Recipient], *, source: str = "<release policy>"):
        self._recipients = tuple(recipients)
        self._source = source
        if not self._recipients:
            raise ConfigError(
                f"{source}: the release list is empty; list at least one [[recipient]]"
            )
        if len(self._recipients) > MAX_RECIPIENTS:
            raise ConfigError(
                f"{source}: {len(self._recipients)} recipients, at most {MAX_RECIPIENTS} allowed"
            )
        seen: dict[tuple[str, object], int] = {}
        for index, recipient in enumerate(self._recipients, start=1):
            if not isinstance(recipient, Recipient):
                raise ConfigError(
                    f"{source}: recipient {index} is a {type(recipient).__name__}, "
                    "expected a Recipient"
                )
            keys: list[tuple[str, object]] = [
                ("name", recipient.name),
                ("public key", recipient.public_key),
            ]
            if recipient.broker_resource is not None:
                keys.append(("broker_resource", recipient.broker_resource))
            for what, value in keys:
                if (what, value) in seen:
                    shown = value.hex() if isinstance(value, bytes) else repr(value)
                    raise ConfigError(
                        f"{source}: recipient {index} ({recipient.name!r}) has the same {what} "
                        f"{shown} as recipient {seen[(what, value)]}; each must be unique"
                    )
                seen[(what, value)] = index

    @property
    def recipients(self) -> tuple[Recipient, ...]:
        """The recipients, in the order they were given."""
        return self._recipients

    @property
    def source(self) -> str:
        """Where the policy came from."""
        return self._source

    def digest(self) -> bytes:
        """Return the 32-byte release-list digest: the ``release-list`` RA-TLS claim value."""
        return release_list_digest(self._recipients)

    def describe(self) -> str:
        """One line for logs: the digest and every recipient."""
        names = ", ".join(r.describe() for r in self._recipients)
        return f"release list {self.digest().hex()[:16]}: {names}"

    def find(self, key_id: bytes) -> Recipient | None:
        """Return the recipient whose public key has ``key_id``, or ``None``."""
        return next((r for r in self._recipients if r.key_id == key_id), None)

    def __repr__(self) -> str:
        return f"ReleasePolicy({self.describe()!r})"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReleasePolicy:
        """Read and validate a release policy file; key file paths are relative to it.

        Raises
        ------
        ConfigError
            If the file cannot be read, is not TOML, or any entry is invalid; the message names
            the file, the entry and the field.
        """
        source = Path(path)
        raw = read_small_file(source, what="release policy", max_bytes=MAX_POLICY_BYTES)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"release policy {source} is not UTF-8 ({exc.reason})") from exc
        return cls.parse(text, source=str(source), base_dir=source.parent)

    @classmethod
    def parse(cls, text: str, *, source: str, base_dir: Path) -> ReleasePolicy:
        """Parse policy TOML ``text``; ``source`` names it, key paths are under ``base_dir``.

        Raises
        ------
        ConfigError
            As :meth:`load`.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"release policy {source} is not valid TOML: {exc}") from exc
        unknown = sorted(set(document) - {"recipient"})
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level key(s) {unknown}; a release policy holds only "
                "[[recipient]] tables"
            )
        entries = document.get("recipient", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(
                f"{source}: 'recipient' must be an array of tables ([[recipient]]), "
                f"got {type(entries).__name__}"
            )
        recipients = [
            _parse_entry(entry, f"{source}: recipient {index}", base_dir)
            for index, entry in enumerate(entries, start=1)
        ]
        return cls(recipients, source=source)


def _parse_entry(entry: dict[str, Any], where: str, base_dir: Path) -> Recipient:
    name = entry.get("name")
    if isinstance(name, str):
        where = f"{where} ({name!r})"
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected {sorted(_ENTRY_FIELDS)}")
    for field in ("name", "public_key"):
        if field not in entry:
            raise ConfigError(f"{where}: missing required key {field!r}")
    name = check_name(name, where)
    resource = entry.get("broker_resource")
    if resource is not None:
        check_broker_resource(resource, where)
    public_key = _public_key(entry["public_key"], where, base_dir)
    return Recipient(name=name, public_key=public_key, broker_resource=resource)


def _public_key(value: object, where: str, base_dir: Path) -> bytes:
    """Inline base64 when ``value`` decodes to exactly 32 bytes; otherwise a key file path."""
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{where}: public_key must be a key file path or base64 string, got {value!r}"
        )
    try:
        inline = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        inline = b""
    if len(inline) == KEY_LEN:
        return check_public_key(inline, f"{where}: public_key")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        return read_public_key(path)
    except ConfigError as exc:
        raise ConfigError(f"{where}: public_key: {exc}") from exc

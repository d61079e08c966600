"""The ``[kbs]`` table of a broker's role config (``kbs.toml``), checked before anything starts.

Layout (paths are relative to the config file's directory; unknown keys are errors naming the
file and the key, so a typo never silently drops a resource or an admin)::

    [kbs]
    listen = "0.0.0.0:50080"             # front door: Challenge and enrolment
    service_listen = "0.0.0.0:50081"     # mutual-TLS listener (default: a free port, same host)
    store = "kbs-store"                  # directory of sealed resources (made if absent)
    audit_log = "kbs-audit.jsonl"        # every decision, one JSON line each
    admins = ["<64 hex>", "admin-cert.pem"]   # admin certificates: fingerprints or PEM files
    nonce_ttl_s = 30                     # how long a challenge nonce may wait to be used

    [[kbs.resource]]
    name = "hfl/seal-key/checkpoints"    # repo/type/tag
    policy = "policy-hfl.toml"           # who may have it (sealfl.tee.load_policy)
    generate = true                      # the broker makes a random value on first start
    size = 32                            # exact length in bytes (checked on put; generate's size)

The rest of a role config (``[tee]``, ``[attestation]``, ``[sealing]``) belongs to the party
runtime; :func:`load_kbs_settings` reads only this table.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl.errors import ConfigError
from sealfl.net import certificate_fingerprint
from sealfl.net.addresses import split_address
from sealfl.net.certificates import load_certificate

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_NONCE_TTL_S",
    "GENERATED_SIZE",
    "MAX_VALUE_BYTES",
    "KbsSettings",
    "ResourceSettings",
    "check_resource_name",
    "load_kbs_settings",
]

DEFAULT_LISTEN = "127.0.0.1:50080"
DEFAULT_NONCE_TTL_S = 30.0
GENERATED_SIZE = 32
"""Bytes of a generated value when ``size`` is not given: an AES-256 / sealing key."""
MAX_VALUE_BYTES = 1 << 20
"""Largest resource value: the broker holds secrets (keys, tokens), not models."""
MAX_NAME_BYTES = 255

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HEX_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_KBS_KEYS = frozenset(
    {"listen", "service_listen", "store", "audit_log", "admins", "nonce_ttl_s", "resource"}
)
_RESOURCE_KEYS = frozenset({"name", "policy", "generate", "size"})


def check_resource_name(name: object, *, where: str = "resource name") -> str:
    """Return ``name`` if it is ``repo/type/tag``: three non-empty, path-safe segments.

    Each segment starts with a letter or digit and holds only letters, digits, ``.``, ``_`` and
    ``-``, so a name can never climb out of a directory or hide a separator.

    Raises
    ------
    ConfigError
        Naming ``where``, what was expected and what was found.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{where}: expected a string 'repo/type/tag', got {type(name).__name__}")
    segments = name.split("/")
    if (
        len(segments) != 3
        or len(name.encode()) > MAX_NAME_BYTES
        or not all(_SEGMENT.fullmatch(segment) for segment in segments)
    ):
        raise ConfigError(
            f"{where}: expected 'repo/type/tag' (three segments of letters, digits, '.', '_', "
            f"'-', each starting with a letter or digit; at most {MAX_NAME_BYTES} bytes), "
            f"got {name!r}"
        )
    return name


@dataclass(frozen=True)
class ResourceSettings:
    """One resource the broker serves.

    Attributes
    ----------
    name
        ``repo/type/tag``.
    policy
        Policy file for requesters (``None`` only when the caller of
        :func:`~sealfl.kbs.start_kbs` passes the policy itself).
    generate
        Make a random value of ``size`` bytes (32 by default) on the first start, if the store
        has none; for sealing keys nobody needs to see.
    size
        Exact value length in bytes, checked on every put.
    """

    name: str
    policy: Path | None = None
    generate: bool = False
    size: int | None = None

    def __post_init__(self) -> None:
        check_resource_name(self.name)
        if self.size is not None and not 1 <= self.size <= MAX_VALUE_BYTES:
            raise ConfigError(
                f"resource {self.name!r} size: expected 1 to {MAX_VALUE_BYTES} bytes, "
                f"got {self.size}"
            )

    @property
    def generated_size(self) -> int:
        """Length of a value the broker generates for this resource."""
        return self.size if self.size is not None else GENERATED_SIZE


@dataclass(frozen=True)
class KbsSettings:
    """Everything the broker needs from its config, validated.

    Attributes
    ----------
    listen
        Front-door address ``host:port`` (challenges and enrolment).
    service_listen
        Mutual-TLS listener; ``None`` picks a free port on the front door's host (clients learn
        it when they enrol).
    store
        Directory of sealed resources.
    audit_log
        JSON-lines file every decision is appended to.
    admins
        SHA-256 fingerprints (hex) of the certificates allowed to put and revoke.
    resources
        What the broker serves, by name.
    nonce_ttl_s
        Seconds a challenge nonce stays usable.
    source
        Where the settings came from, for messages.
    """

    store: Path
    audit_log: Path
    resources: tuple[ResourceSettings, ...]
    listen: str = DEFAULT_LISTEN
    service_listen: str | None = None
    admins: frozenset[str] = frozenset()
    nonce_ttl_s: float = DEFAULT_NONCE_TTL_S
    source: str = "<code>"

    def __post_init__(self) -> None:
        for key, address in (("listen", self.listen), ("service_listen", self.service_listen)):
            if address is not None:
                try:
                    split_address(address)
                except ConfigError as exc:
                    raise ConfigError(f"{self.source}: kbs.{key}: {exc}") from exc
        if not self.resources:
            raise ConfigError(
                f"{self.source}: the kbs table lists no resource: add a kbs.resource entry"
            )
        seen: set[str] = set()
        for resource in self.resources:
            if resource.name in seen:
                raise ConfigError(f"{self.source}: resource {resource.name!r} is listed twice")
            seen.add(resource.name)
        if not (math.isfinite(self.nonce_ttl_s) and self.nonce_ttl_s > 0):
            raise ConfigError(
                f"{self.source}: kbs.nonce_ttl_s: expected a positive number of seconds, "
                f"got {self.nonce_ttl_s}"
            )
        for fingerprint in self.admins:
            if not _HEX_FINGERPRINT.fullmatch(fingerprint):
                raise ConfigError(
                    f"{self.source}: admin fingerprint: expected 64 lowercase hex digits, "
                    f"got {fingerprint!r}"
                )

    def resource(self, name: str) -> ResourceSettings | None:
        """Return the settings of resource ``name``, or None if the broker does not serve it."""
        return next((r for r in self.resources if r.name == name), None)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, base_dir: Path, source: str) -> KbsSettings:
        """Build settings from the ``[kbs]`` table of a parsed TOML document.

        Parameters
        ----------
        table
            The value of the ``kbs`` key.
        base_dir
            Directory relative paths are resolved against (the config file's).
        source
            The file name, for messages.

        Raises
        ------
        ConfigError
            Naming the file and the key for any unknown key, wrong type or bad value.
        """
        reader = _Reader(source, base_dir)
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: kbs: expected a table, got {type(table).__name__}")
        reader.no_unknown(table, _KBS_KEYS, "kbs")
        raw_resources = table.get("resource", [])
        if not isinstance(raw_resources, list):
            raise ConfigError(
                f"{source}: kbs.resource: expected an array of tables (kbs.resource entries), "
                f"got {type(raw_resources).__name__}"
            )
        resources = tuple(
            reader.resource(raw, f"kbs.resource[{index}]")
            for index, raw in enumerate(raw_resources)
        )
        service_listen = table.get("service_listen")
        return cls(
            listen=reader.string(table, "listen", "kbs", default=DEFAULT_LISTEN),
            service_listen=None
            if service_listen is None
            else reader.string(table, "service_listen", "kbs"),
            store=reader.path(table, "store", "kbs"),
            audit_log=reader.path(table, "audit_log", "kbs"),
            admins=reader.admins(table.get("admins", [])),
            nonce_ttl_s=reader.number(table, "nonce_ttl_s", "kbs", DEFAULT_NONCE_TTL_S),
            resources=resources,
            source=source,
        )


def load_kbs_settings(path: Path) -> KbsSettings:
    """Read the ``[kbs]`` table of the TOML file ``path`` (other tables are left to others).

    Raises
    ------
    ConfigError
        If the file cannot be read, is not TOML, has no ``[kbs]`` table, or the table is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read broker config {path}: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if "kbs" not in document:
        raise ConfigError(f"{path}: no kbs table: a broker config needs one")
    return KbsSettings.from_table(document["kbs"], base_dir=path.parent, source=str(path))


class _Reader:
    """Typed access to TOML values, with messages naming the file and the key."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = Path(base_dir)

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {message}")

    def no_unknown(self, table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
        unknown = sorted(set(table) - known)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}",
                f"unknown key (expected some of {sorted(known)})",
            )

    def string(
        self, table: Mapping[str, Any], key: str, where: str, *, default: str | None = None
    ) -> str:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"{where}.{key}", "missing")
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
        return value

    def path(self, table: Mapping[str, Any], key: str, where: str) -> Path:
        return self.base_dir / self.string(table, key, where)

    def number(self, table: Mapping[str, Any], key: str, where: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}.{key}", f"expected a number, got {value!r}")
        return float(value)

    def admins(self, raw: Any) -> frozenset[str]:
        if not isinstance(raw, list):
            raise self.fail("kbs.admins", f"expected a list, got {type(raw).__name__}")
        found: set[str] = set()
        for index, entry in enumerate(raw):
            where = f"kbs.admins[{index}]"
            if not isinstance(entry, str) or not entry:
                raise self.fail(where, f"expected a fingerprint or a PEM file, got {entry!r}")
            compact = entry.strip().lower().replace(":", "")
            if _HEX_FINGERPRINT.fullmatch(compact):
                found.add(compact)
                continue
            path = self.base_dir / entry
            try:
                pem = path.read_bytes()
            except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
                raise self.fail(
                    where,
                    f"{entry!r} is neither a SHA-256 fingerprint (64 hex digits) nor a readable "
                    f"certificate file ({getattr(exc, 'strerror', None) or exc})",
                ) from exc
            try:
                load_certificate(pem, what=f"admin certificate {path}")
            except ConfigError as exc:
                raise self.fail(where, str(exc)) from exc
            found.add(certificate_fingerprint(pem))
        return frozenset(found)

    def resource(self, raw: Any, where: str) -> ResourceSettings:
        if not isinstance(raw, Mapping):
            raise self.fail(where, f"expected a table, got {type(raw).__name__}")
        self.no_unknown(raw, _RESOURCE_KEYS, where)
        name = check_resource_name(raw.get("name"), where=f"{self.source}: {where}.name")
        generate = raw.get("generate", False)
        if not isinstance(generate, bool):
            raise self.fail(f"{where}.generate", f"expected true or false, got {generate!r}")
        size = raw.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise self.fail(f"{where}.size", f"expected an integer, got {size!r}")
        try:
            return ResourceSettings(
                name=name, policy=self.path(raw, "policy", where), generate=generate, size=size
            )
        except ConfigError as exc:
            if str(exc).startswith(self.source):
                raise
            raise self.fail(where, str(exc)) from exc

"""The PS's list of admitted workers, beside its measurement policy (``--admit FILE``).

The policy decides *what code* may join (measurements, TCB, platform); this list decides *who*:
without it any party that runs the attested worker code can take a free seat. Each entry names
a worker by

- ``key_sha256``: the SHA-256 (hex) of its certificate's SubjectPublicKeyInfo, for a worker
  whose key persists (a plain-TLS deployment, or a TEE key kept sealed); or
- ``name``: the ``party-name`` claim in its attested evidence (``--name``), as strong as the
  binding of that name to the measured code or config (under Gramine the role config is a
  trusted file; on TDX bind it with ``mr_config_id``);

and optionally ``id``, the only seat that identity may take. An entry with both a key and a
name needs both to match. Format (TOML)::

    # who may train with this PS (sealfl homo-lr ps --admit admitted.toml)
    [[worker]]
    id = 1
    name = "hospital-a"

    [[worker]]
    id = 2
    key_sha256 = "5f1c..."

The PS checks the list at enrolment (a party not on it never reaches the training service) and
again at each join (the seat it asks for).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sealfl.errors import AttestationError, ConfigError, ProtocolError
from sealfl.fl.homo_lr.peers import Peer, check_party_name

_MAX_BYTES = 1 << 20
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class AdmittedWorker:
    """One entry of the list."""

    worker_id: int | None = None
    key_sha256: str | None = None
    name: str | None = None

    def matches(self, peer: Peer) -> bool:
        """Whether ``peer`` is this worker (every identity the entry gives must match)."""
        if self.key_sha256 is not None and self.key_sha256 != peer.key_sha256:
            return False
        return self.name is None or self.name == peer.name

    def describe(self) -> str:
        """Return the entry in words."""
        parts = [f"name {self.name!r}"] if self.name is not None else []
        if self.key_sha256 is not None:
            parts.append(f"key sha256:{self.key_sha256[:16]}…")
        seat = f" for worker id {self.worker_id}" if self.worker_id is not None else ""
        return " and ".join(parts) + seat


@dataclass(frozen=True)
class Admission:
    """The admitted workers of one PS (see the module docstring)."""

    entries: tuple[AdmittedWorker, ...]
    source: str

    @classmethod
    def load(cls, path: Path) -> Admission:
        """Read an admitted-workers list.

        Raises
        ------
        ConfigError
            Naming the file and the entry of the first problem.
        """
        try:
            with Path(path).open("rb") as handle:
                raw = handle.read(_MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(
                f"--admit {path}: cannot read the admitted-workers list: {exc.strerror or exc}"
            ) from None
        if len(raw) > _MAX_BYTES:
            raise ConfigError(f"{path}: larger than {_MAX_BYTES} bytes; not a list of workers")
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        unknown = sorted(set(document) - {"worker"})
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; expected [[worker]] entries")
        items = document.get("worker", [])
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{path}: expected at least one [[worker]] entry")
        entries = tuple(_entry(item, f"{path}: worker[{i}]") for i, item in enumerate(items))
        ids = [e.worker_id for e in entries if e.worker_id is not None]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ConfigError(f"{path}: worker id(s) {repeated} listed more than once")
        return cls(entries=entries, source=str(path))

    def check_peer(self, peer: Peer) -> None:
        """Refuse a party that no entry names (at enrolment).

        Raises
        ------
        AttestationError
            If no entry matches.
        """
        if not any(entry.matches(peer) for entry in self.entries):
            name = f"name {peer.name!r}" if peer.name else "no party-name claim"
            raise AttestationError(
                f"key sha256:{peer.key_sha256} ({name}) is not on this PS's list of admitted "
                "workers"
            )

    def check_seat(self, peer: Peer, worker_id: int) -> None:
        """Refuse ``peer`` a seat its entries do not allow (at join).

        Raises
        ------
        ProtocolError
            If no entry matches ``peer``, or every matching entry is for another worker id.
        """
        matching = [entry for entry in self.entries if entry.matches(peer)]
        if not matching:
            raise ProtocolError(
                f"worker {worker_id}: {peer.describe()} is not on the PS's list of admitted workers"
            )
        if all(e.worker_id is not None and e.worker_id != worker_id for e in matching):
            allowed = sorted({e.worker_id for e in matching if e.worker_id is not None})
            raise ProtocolError(
                f"worker {worker_id}: {peer.describe()} is admitted as worker id "
                f"{', '.join(map(str, allowed))} only"
            )


def _entry(item: object, where: str) -> AdmittedWorker:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table, got {item!r}")
    unknown = sorted(set(item) - {"id", "key_sha256", "name"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected id, key_sha256, name")
    worker_id = item.get("id")
    if worker_id is not None and (
        isinstance(worker_id, bool) or not isinstance(worker_id, int) or not 0 <= worker_id < 2**32
    ):
        raise ConfigError(f"{where}: id: expected an integer 0..{2**32 - 1}, got {worker_id!r}")
    key = item.get("key_sha256")
    if key is not None:
        compact = key.strip().lower().replace(":", "") if isinstance(key, str) else ""
        if len(compact) != 64 or not set(compact) <= _HEX:
            raise ConfigError(f"{where}: key_sha256: expected 64 hex digits, got {key!r}")
        key = compact
    name = item.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise ConfigError(f"{where}: name: expected a string, got {name!r}")
        check_party_name(name, where=f"{where}: name")
    if key is None and name is None:
        raise ConfigError(f"{where}: give key_sha256 or name (or both)")
    return AdmittedWorker(worker_id=worker_id, key_sha256=key, name=name)

"""The broker's audit log: one JSON line per decision, appended and flushed to disk.

Each line is an object with these fields (never a resource value)::

    time          ISO 8601 UTC, e.g. "2025-01-31T12:00:00.123456+00:00"
    unix          the same instant, Unix seconds
    action        "enrol" | "get" | "put" | "revoke" | "generate"
    resource      "repo/type/tag", or null (an enrolment that named no resource)
    decision      "allow" | "deny"
    reason        why, in words (for an allow too: which check it passed)
    role          "admin" | "requester" | null (not yet known: refused before identification)
    peer          the caller's address as gRPC reports it ("broker" for the broker's own acts)
    fingerprint   SHA-256 (hex) of the caller's certificate, or null (none presented)
    measurements  the caller's measurements as its evidence states them ({} for admins, and
                  for certificates refused before their evidence could be read); verified when
                  the decision is allow

A decision that cannot be written is not carried out: :meth:`AuditLog.record` raises, and the
broker releases nothing it could not record. Each line is written with one ``write`` on a file
opened for appending, then flushed and fsynced, so concurrent decisions never interleave and a
crash loses at most the line being written.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealfl.errors import ConfigError

__all__ = ["ALLOW", "DENY", "AuditLog", "AuditRecord", "read_audit_log"]

ALLOW = "allow"
DENY = "deny"
ACTIONS = frozenset({"enrol", "get", "put", "revoke", "generate"})
FIELDS = (
    "time",
    "unix",
    "action",
    "resource",
    "decision",
    "reason",
    "role",
    "peer",
    "fingerprint",
    "measurements",
)


@dataclass(frozen=True)
class AuditRecord:
    """One decision of the broker (see the module docstring for the fields)."""

    unix: float
    action: str
    resource: str | None
    decision: str
    reason: str
    role: str | None = None
    peer: str = "broker"
    fingerprint: str | None = None
    measurements: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"audit action: expected one of {sorted(ACTIONS)}, got {self.action}")
        if self.decision not in (ALLOW, DENY):
            raise ValueError(f"audit decision: expected allow or deny, got {self.decision}")

    @property
    def time(self) -> str:
        """The instant as ISO 8601 UTC."""
        return datetime.datetime.fromtimestamp(self.unix, datetime.UTC).isoformat()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object written for this record, fields in the documented order."""
        return {
            "time": self.time,
            "unix": self.unix,
            "action": self.action,
            "resource": self.resource,
            "decision": self.decision,
            "reason": self.reason,
            "role": self.role,
            "peer": self.peer,
            "fingerprint": self.fingerprint,
            "measurements": dict(self.measurements),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, where: str) -> AuditRecord:
        """Rebuild a record from one parsed line.

        Raises
        ------
        ConfigError
            If a field is missing or of the wrong type.
        """
        missing = [name for name in FIELDS if name not in document]
        if missing:
            raise ConfigError(f"{where}: audit record lacks {missing}")
        try:
            return cls(
                unix=float(document["unix"]),
                action=str(document["action"]),
                resource=None if document["resource"] is None else str(document["resource"]),
                decision=str(document["decision"]),
                reason=str(document["reason"]),
                role=None if document["role"] is None else str(document["role"]),
                peer=str(document["peer"]),
                fingerprint=None
                if document["fingerprint"] is None
                else str(document["fingerprint"]),
                measurements={str(k): str(v) for k, v in dict(document["measurements"]).items()},
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: malformed audit record: {exc}") from exc


class AuditLog:
    """An append-only JSON-lines file, written one fsynced line per decision.

    Parameters
    ----------
    path
        The log; created with mode 0600 (and its directory) if absent, appended to otherwise (a
        restarted broker continues the same log).
    fsync
        Flush each line to stable storage before the decision takes effect (the default). Turn
        it off only where the log's loss in a crash is acceptable (benchmarks of the protocol).

    Raises
    ------
    ConfigError
        If the file cannot be opened for appending.
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the audit log {self._path} for appending: {exc.strerror or exc}"
            ) from exc
        self._fd: int | None = fd

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    def record(self, record: AuditRecord) -> None:
        """Append ``record`` as one line and make it durable.

        Raises
        ------
        ConfigError
            If the line cannot be written (disk full, log closed): the caller must not carry
            out the decision.
        """
        line = (json.dumps(record.to_dict(), separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                raise ConfigError(f"audit log {self._path} is closed")
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(f"short write: {written} of {len(line)} bytes")
                if self._fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise ConfigError(f"cannot write the audit log {self._path}: {exc}") from exc

    def close(self) -> None:
        """Close the file (idempotent); later records raise."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_audit_log(path: Path) -> Iterator[AuditRecord]:
    """Yield the records of an audit log in order.

    Raises
    ------
    ConfigError
        If the file cannot be read, or a line is not a JSON audit record (naming the line).
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                document = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{where}: not a JSON line ({exc})") from exc
            if not isinstance(document, dict):
                raise ConfigError(f"{where}: expected a JSON object")
            yield AuditRecord.from_dict(document, where=where)

"""The server's allow-list of enrolled client certificates, and its record of refusals.

The allow-list is the trust store of the mutual-TLS listener (every enrolled certificate is a
root, so only an enrolled key completes the handshake) and the table the per-RPC check consults
(so a revoked or lapsed enrolment is refused even on a connection opened before).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["AllowList", "Enrolment", "Refusal", "RevokedError"]

IdentityT = TypeVar("IdentityT")


class RevokedError(Exception):
    """The certificate was revoked on this server and may not be enrolled again."""


@dataclass(frozen=True)
class Enrolment(Generic[IdentityT]):
    """One enrolled client: its certificate, what the verifier made of it, and until when."""

    fingerprint: str
    subject: str
    identity: IdentityT
    certificate_pem: bytes
    peer: str
    enrolled_at: float
    expires_at: float


@dataclass(frozen=True)
class Refusal:
    """A client the server turned away: who (address, certificate) and why."""

    peer: str
    fingerprint: str
    subject: str
    reason: str
    at: float


class AllowList(Generic[IdentityT]):
    """Thread-safe table of enrolments keyed by certificate fingerprint, bounded in size.

    ``version`` changes whenever the set of trusted certificates changes, so the TLS
    credential fetcher rebuilds its trust store only when it must.
    """

    def __init__(self, *, max_entries: int, max_refusals: int = 256) -> None:
        self._entries: dict[str, Enrolment[IdentityT]] = {}
        # Revoked fingerprints, for the life of the server (each entry is an operator's action).
        self._revoked: set[str] = set()
        self._refusals: deque[Refusal] = deque(maxlen=max_refusals)
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._version = 0

    @property
    def version(self) -> int:
        """A counter that changes whenever an entry is added, replaced or removed."""
        return self._version

    def add(self, enrolment: Enrolment[IdentityT]) -> None:
        """Add or replace the entry for ``enrolment.fingerprint``.

        Raises
        ------
        RevokedError
            If the certificate was revoked (checked under the lock, so an enrolment that was
            being verified while the revocation happened cannot slip back in).
        OverflowError
            If the table is full and this certificate is not already in it.
        """
        with self._lock:
            if enrolment.fingerprint in self._revoked:
                raise RevokedError(
                    f"certificate sha256:{enrolment.fingerprint} was revoked on this server; "
                    "enrol a new certificate"
                )
            known = enrolment.fingerprint in self._entries
            if not known and len(self._entries) >= self._max_entries:
                raise OverflowError(
                    f"allow-list full: {len(self._entries)} of {self._max_entries} entries used"
                )
            self._entries[enrolment.fingerprint] = enrolment
            self._version += 1

    def lookup(self, fingerprint: str, now: float) -> Enrolment[IdentityT] | None:
        """Return the live entry for ``fingerprint``, or None if absent or lapsed at ``now``."""
        entry = self._entries.get(fingerprint)
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def revoke(self, fingerprint: str) -> bool:
        """Remove an entry and refuse that certificate from now on; return whether there was one.

        Without the record, the holder of the key could simply enrol the same certificate again.
        """
        with self._lock:
            self._revoked.add(fingerprint)
            if self._entries.pop(fingerprint, None) is None:
                return False
            self._version += 1
            return True

    def purge(self, now: float) -> None:
        """Drop entries that lapsed at ``now`` (bumping ``version`` if any did)."""
        with self._lock:
            lapsed = [fp for fp, e in self._entries.items() if e.expires_at <= now]
            for fp in lapsed:
                del self._entries[fp]
            if lapsed:
                self._version += 1

    def entries(self) -> list[Enrolment[IdentityT]]:
        """Return a snapshot of the current entries, oldest enrolment first."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.enrolled_at)

    def certificates(self) -> list[bytes]:
        """Return the PEM of every entry (the trust store of the mutual-TLS listener)."""
        with self._lock:
            return [e.certificate_pem for e in self._entries.values()]

    def record_refusal(self, refusal: Refusal) -> None:
        """Keep ``refusal`` (the oldest records are dropped beyond the bound)."""
        with self._lock:
            self._refusals.append(refusal)

    def refusals(self) -> list[Refusal]:
        """Return the recent refusals, oldest first."""
        with self._lock:
            return list(self._refusals)

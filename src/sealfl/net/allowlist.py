"""The server's allow-list of enrolled client certificates, and its record of refusals.

The allow-list is the trust store of the mutual-TLS listener (every enrolled certificate is a
root, so only an enrolled key completes the handshake) and the table the per-RPC check consults
(so a revoked or lapsed enrolment is refused even on a connection opened before).

It is bounded, and what happens when it is full is the server's policy (:class:`WhenFull`):

* a server that admits only peers its verifier vouches for (attested workers) REFUSEs the
  newcomer: nobody can push an admitted worker out, and only verified peers take slots;
* a server that admits anyone (an inference server or a dealer: :func:`accept_any_certificate`)
  EVICTs the least recently used entry instead, so anonymous clients that never come back (or
  a flood of them) cannot lock everyone else out. An evicted client that returns is told it is
  not enrolled, enrols again and carries on.

A client's slot is its *lineage*: re-enrolling the same certificate refreshes its entry, and a
renewal (a new certificate, with a proof by the old key) replaces the old entry, so a client
never holds two. A client that is done leaves (:meth:`AllowList.leave`) and frees its slot.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "ENROLMENT_STATE_KEY",
    "AllowList",
    "Enrolment",
    "Predecessor",
    "Refusal",
    "RevokedError",
    "WhenFull",
]

IdentityT = TypeVar("IdentityT")

ENROLMENT_STATE_KEY = "sealfl-enrolment"
"""Trailing metadata of a call the per-RPC check refused: ``not-enrolled`` (never, lapsed,
evicted or left: the client may enrol again and repeat the call, which never ran) or
``revoked`` (the operator's decision: the client must not come back on its own)."""


class RevokedError(Exception):
    """The certificate was revoked on this server and may not be enrolled again."""


class WhenFull(enum.Enum):
    """What the allow-list does with a newcomer when it is full (see the module docstring)."""

    REFUSE = "refuse"
    EVICT_LEAST_RECENTLY_USED = "evict-least-recently-used"


@dataclass(frozen=True)
class Enrolment(Generic[IdentityT]):
    """One enrolled client: its certificate, what the verifier made of it, and until when.

    ``lineage`` is the fingerprint of the first certificate of the client's chain of renewals
    (:mod:`sealfl.net.callers`); it defaults to the certificate's own fingerprint.
    """

    fingerprint: str
    subject: str
    identity: IdentityT
    certificate_pem: bytes
    peer: str
    enrolled_at: float
    expires_at: float
    lineage: str = ""

    def __post_init__(self) -> None:
        if not self.lineage:
            object.__setattr__(self, "lineage", self.fingerprint)


@dataclass(frozen=True)
class Refusal:
    """A client the server turned away: who (address, certificate) and why."""

    peer: str
    fingerprint: str
    subject: str
    reason: str
    at: float


@dataclass(frozen=True)
class Predecessor:
    """A certificate enrolled here before, which a renewal may name: its lineage and PEM."""

    lineage: str
    certificate_pem: bytes


class AllowList(Generic[IdentityT]):
    """Thread-safe table of enrolments keyed by certificate fingerprint, bounded in size.

    ``version`` changes whenever the set of trusted certificates changes, so the TLS
    credential fetcher rebuilds its trust store only when it must.

    Parameters
    ----------
    max_entries
        Size bound.
    when_full
        Refuse newcomers or evict the least recently used entry (module docstring).
    max_refusals
        How many refusals are kept for :meth:`refusals`.
    remember_s
        How long a lapsed or evicted certificate can still be named as the predecessor of a
        renewal (its holder comes back with a new certificate and keeps its lineage).
    """

    def __init__(
        self,
        *,
        max_entries: int,
        when_full: WhenFull = WhenFull.REFUSE,
        max_refusals: int = 256,
        remember_s: float = 24 * 3600.0,
    ) -> None:
        # Least recently used first (kept in that order only when evicting by it).
        self._entries: OrderedDict[str, Enrolment[IdentityT]] = OrderedDict()
        self._pinned: set[str] = set()
        # Revoked fingerprints, for the life of the server (each entry is an operator's action).
        self._revoked: set[str] = set()
        # Lapsed or evicted entries that a renewal may still name: fingerprint -> (until, who).
        self._departed: OrderedDict[str, tuple[float, Predecessor]] = OrderedDict()
        self._refusals: deque[Refusal] = deque(maxlen=max_refusals)
        self._max_entries = max_entries
        self._when_full = when_full
        self._remember_s = remember_s
        self._lock = threading.Lock()
        self._version = 0
        self.evictions = 0
        """How many entries were evicted to make room, over the server's life."""

    @property
    def version(self) -> int:
        """A counter that changes whenever an entry is added, replaced or removed."""
        return self._version

    @property
    def when_full(self) -> WhenFull:
        """The policy for newcomers when the table is full."""
        return self._when_full

    def add(
        self,
        enrolment: Enrolment[IdentityT],
        *,
        pinned: bool = False,
        replaces: str | None = None,
    ) -> list[Enrolment[IdentityT]]:
        """Add or replace the entry for ``enrolment.fingerprint``; return the entries evicted.

        ``replaces`` names the certificate this one renews: its entry is removed, so the
        client keeps one slot. A ``pinned`` entry (provisioned by the operator) is never
        evicted.

        Raises
        ------
        RevokedError
            If the certificate (or the one it replaces) was revoked (checked under the lock,
            so an enrolment that was being verified while the revocation happened cannot slip
            back in).
        OverflowError
            If the table is full, this certificate is not in it, and nothing may be evicted.
        """
        fingerprint = enrolment.fingerprint
        with self._lock:
            for checked in (fingerprint, replaces):
                if checked is not None and checked in self._revoked:
                    raise RevokedError(
                        f"certificate sha256:{checked} was revoked on this server; "
                        "enrol a new certificate"
                    )
            if replaces is not None and replaces != fingerprint:
                self._entries.pop(replaces, None)
                self._departed.pop(replaces, None)
            evicted: list[Enrolment[IdentityT]] = []
            if fingerprint not in self._entries and len(self._entries) >= self._max_entries:
                self._purge_locked(enrolment.enrolled_at)
            if fingerprint not in self._entries and len(self._entries) >= self._max_entries:
                victim = self._victim_locked()
                if victim is None:
                    raise OverflowError(
                        f"allow-list full: {len(self._entries)} of {self._max_entries} entries "
                        "used by enrolled clients"
                    )
                evicted.append(self._entries.pop(victim))
                self._remember_locked(evicted[-1], enrolment.enrolled_at)
                self.evictions += 1
            self._entries[fingerprint] = enrolment
            self._entries.move_to_end(fingerprint)
            self._departed.pop(fingerprint, None)
            if pinned:
                self._pinned.add(fingerprint)
            self._version += 1
        return evicted

    def _victim_locked(self) -> str | None:
        if self._when_full is WhenFull.REFUSE:
            return None
        for fingerprint in self._entries:  # least recently used first
            if fingerprint not in self._pinned:
                return fingerprint
        return None

    def _remember_locked(self, entry: Enrolment[IdentityT], now: float) -> None:
        self._departed[entry.fingerprint] = (
            now + self._remember_s,
            Predecessor(entry.lineage, entry.certificate_pem),
        )
        while len(self._departed) > self._max_entries:
            self._departed.popitem(last=False)

    def lookup(self, fingerprint: str, now: float) -> Enrolment[IdentityT] | None:
        """Return the live entry for ``fingerprint``, or None if absent or lapsed at ``now``.

        On a table that evicts, this also marks the entry as used now.
        """
        entry = self._entries.get(fingerprint)
        if entry is None or entry.expires_at <= now:
            return None
        if self._when_full is WhenFull.EVICT_LEAST_RECENTLY_USED:
            with self._lock:
                if fingerprint in self._entries:
                    self._entries.move_to_end(fingerprint)
        return entry

    def predecessor(self, fingerprint: str, now: float) -> Predecessor | None:
        """Return what a renewal naming ``fingerprint`` continues, or None if unknown here.

        Enrolled certificates (lapsed or not) and recently departed ones qualify; revoked
        ones never do.
        """
        with self._lock:
            if fingerprint in self._revoked:
                return None
            entry = self._entries.get(fingerprint)
            if entry is not None:
                return Predecessor(entry.lineage, entry.certificate_pem)
            departed = self._departed.get(fingerprint)
            if departed is None or departed[0] <= now:
                return None
            return departed[1]

    def is_revoked(self, fingerprint: str) -> bool:
        """Whether ``fingerprint`` was revoked on this server."""
        with self._lock:
            return fingerprint in self._revoked

    def revoke(self, fingerprint: str) -> bool:
        """Remove an entry and refuse that certificate from now on; return whether there was one.

        Without the record, the holder of the key could simply enrol the same certificate again
        (or renew from it).
        """
        with self._lock:
            self._revoked.add(fingerprint)
            self._departed.pop(fingerprint, None)
            self._pinned.discard(fingerprint)
            if self._entries.pop(fingerprint, None) is None:
                return False
            self._version += 1
            return True

    def leave(self, fingerprint: str) -> bool:
        """Remove an entry at its client's request; return whether it was there.

        Entries the operator provisioned stay: their client could not enrol again by itself.
        """
        with self._lock:
            if fingerprint in self._pinned or self._entries.pop(fingerprint, None) is None:
                return False
            self._version += 1
            return True

    def purge(self, now: float) -> None:
        """Drop entries that lapsed at ``now`` (bumping ``version`` if any did)."""
        with self._lock:
            self._purge_locked(now)

    def _purge_locked(self, now: float) -> None:
        lapsed = [e for e in self._entries.values() if e.expires_at <= now]
        for entry in lapsed:
            del self._entries[entry.fingerprint]
            self._pinned.discard(entry.fingerprint)
            self._remember_locked(entry, now)
        if lapsed:
            self._version += 1

    def __len__(self) -> int:
        return len(self._entries)

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

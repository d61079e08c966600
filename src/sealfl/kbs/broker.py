"""The broker's decisions, apart from gRPC: who may enrol, and who gets, puts or revokes what.

Every decision method writes one audit line and then either returns or raises
:class:`RequestDeniedError` (whose message is the reason, also sent to the caller). A decision whose
audit line cannot be written is not carried out. An allowed put or revoke is recorded before
the store changes; if the store then fails to write, a second line (deny, with the reason)
follows and the store keeps its previous state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sealfl.errors import AttestationError, SealflError
from sealfl.kbs.audit import ALLOW, DENY, AuditLog, AuditRecord
from sealfl.kbs.config import MAX_VALUE_BYTES, ResourceSettings, check_resource_name
from sealfl.kbs.nonces import NonceBook, NonceRefusedError
from sealfl.kbs.store import ResourceStore
from sealfl.net import Enrolment, Refusal, certificate_fingerprint
from sealfl.net.certificates import load_certificate
from sealfl.tee import Policy, Verifier, inspect_ratls_certificate, verify_ratls_certificate
from sealfl.tee.ratls import NONCE_CLAIM, read_certificate_evidence

__all__ = [
    "RESOURCE_CLAIM",
    "ROLE_ADMIN",
    "ROLE_REQUESTER",
    "Broker",
    "KbsPeer",
    "RequestDeniedError",
]

_log = logging.getLogger(__name__)

RESOURCE_CLAIM = "kbs-resource"
"""Optional RA-TLS claim naming the one resource a certificate was made to fetch.

A certificate that carries it is judged at enrolment by that resource's policy alone (so the
audit line of a refused enrolment names the resource) and can fetch nothing else.
"""
ROLE_ADMIN = "admin"
ROLE_REQUESTER = "requester"
_MAX_STASHED = 256


class RequestDeniedError(Exception):
    """A refused request; the message is the reason (audited, and told to the caller).

    Attributes
    ----------
    kind
        ``"denied"`` (policy, identity, nonce, revocation), ``"not_found"`` (no such resource),
        ``"invalid"`` (a malformed put) or ``"unavailable"`` (the broker could not record or
        store the decision).
    """

    def __init__(self, reason: str, *, kind: str = "denied") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class KbsPeer:
    """Who an enrolled caller is, as the broker's enrolment verifier found.

    Attributes
    ----------
    role
        :data:`ROLE_ADMIN` (its certificate's fingerprint is listed in ``kbs.admins``) or
        :data:`ROLE_REQUESTER` (its RA-TLS evidence passed a resource's policy).
    measurements
        Verified measurements of a requester (empty for an admin).
    nonce
        The certificate's ``nonce`` claim, if any.
    resource
        The certificate's :data:`RESOURCE_CLAIM`, if any.
    """

    role: str
    fingerprint: str
    subject: str
    cert_pem: bytes = field(repr=False)
    measurements: Mapping[str, str] = field(default_factory=dict)
    nonce: bytes | None = None
    resource: str | None = None


@dataclass(frozen=True)
class _Rule:
    settings: ResourceSettings
    verifier: Verifier


class Broker:
    """The decision core of a key broker (the gRPC servicers in :mod:`sealfl.kbs.server` call it).

    Parameters
    ----------
    resources
        The resources served, each with its policy.
    store
        Where values live (already opened).
    audit
        Where decisions are written.
    admins
        Fingerprints of admin certificates.
    nonces
        Challenge nonces.
    collateral
        Passed to each resource's :class:`~sealfl.tee.Verifier` as it is (real quotes need it).
    clock
        Unix time source for verification, nonces and audit lines.
    """

    def __init__(
        self,
        *,
        resources: Mapping[str, tuple[ResourceSettings, Policy]],
        store: ResourceStore,
        audit: AuditLog,
        admins: frozenset[str],
        nonces: NonceBook,
        collateral: Any = None,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._audit = audit
        self._admins = admins
        self._nonces = nonces
        self._clock = clock
        # Resources with equal policies share one verifier, so enrolment checks each policy once.
        verifiers: dict[Policy, Verifier] = {}
        self._rules: dict[str, _Rule] = {}
        for name, (settings, policy) in resources.items():
            verifier = verifiers.get(policy)
            if verifier is None:
                verifier = verifiers[policy] = Verifier(policy, collateral=collateral, now=clock)
            self._rules[name] = _Rule(settings, verifier)
        # What the enrolment verifier saw of a certificate it refused, for the audit line that
        # the enrolment desk's refusal hook writes (it receives only the fingerprint).
        self._stash: OrderedDict[str, tuple[Mapping[str, str], str | None]] = OrderedDict()
        self._stash_lock = threading.Lock()

    @property
    def nonce_ttl_s(self) -> float:
        """Seconds a challenge nonce stays usable."""
        return self._nonces.ttl_s

    def resource_names(self) -> list[str]:
        """Return the names of the resources served, sorted."""
        return sorted(self._rules)

    # -- start ----------------------------------------------------------------------------------

    def generate_missing(self, make: Callable[[int], bytes]) -> list[str]:
        """Give every ``generate`` resource that has no state yet a value ``make(size)``.

        A revoked resource is not generated again. Returns the names generated.
        """
        made = []
        for name, rule in sorted(self._rules.items()):
            if not rule.settings.generate or self._store.state(name) is not None:
                continue
            size = rule.settings.generated_size
            self._write(
                AuditRecord(
                    unix=self._clock(),
                    action="generate",
                    resource=name,
                    decision=ALLOW,
                    reason=f"generated a random {size}-byte value on first start",
                )
            )
            generation = self._store.put(name, make(size), now=self._clock())
            _log.info("kbs: generated %s (generation %d)", name, generation)
            made.append(name)
        return made

    # -- enrolment ------------------------------------------------------------------------------

    def verify_enrolment(self, cert_pem: bytes) -> KbsPeer:
        """Peer verifier of the broker's server: admin by fingerprint, else attested requester.

        Raises
        ------
        AttestationError
            If the certificate is neither a listed admin's nor carries evidence that passes a
            resource's policy (or the policy of the resource it names).
        """
        fingerprint = certificate_fingerprint(cert_pem)
        subject = load_certificate(cert_pem).subject.rfc4514_string()
        if fingerprint in self._admins:
            return KbsPeer(ROLE_ADMIN, fingerprint, subject, cert_pem)
        try:
            evidence = read_certificate_evidence(cert_pem)
        except AttestationError as exc:
            raise AttestationError(
                f"certificate sha256:{fingerprint} is not a listed admin's and is not a usable "
                f"RA-TLS certificate ({exc})"
            ) from exc
        claimed = evidence.claims.get(RESOURCE_CLAIM)
        resource: str | None = None
        if claimed is not None:
            resource = self._claimed_resource(claimed, fingerprint)
        self._remember(fingerprint, _claimed_measurements(cert_pem), resource)
        names = [resource] if resource is not None else sorted(self._rules)
        failures: list[str] = []
        tried: set[int] = set()
        for name in names:
            verifier = self._rules[name].verifier
            if id(verifier) in tried:
                continue
            tried.add(id(verifier))
            try:
                peer = verify_ratls_certificate(cert_pem, verifier)
            except AttestationError as exc:
                failures.append(f"{name!r}: {exc}")
                continue
            self._remember(fingerprint, dict(peer.measurements), resource)
            return KbsPeer(
                ROLE_REQUESTER,
                fingerprint,
                subject,
                cert_pem,
                measurements=dict(peer.measurements),
                nonce=peer.claims.get(NONCE_CLAIM),
                resource=resource,
            )
        if resource is not None:
            raise AttestationError(f"evidence fails the policy of {failures[0]}")
        raise AttestationError(
            "evidence passes no resource's policy: " + "; ".join(failures or ["none served"])
        )

    def _claimed_resource(self, claimed: object, fingerprint: str) -> str:
        name = claimed.decode("utf-8", "replace") if isinstance(claimed, bytes) else repr(claimed)
        if name not in self._rules:
            self._remember(fingerprint, {}, None)
            raise AttestationError(
                f"certificate claims {RESOURCE_CLAIM} {name!r}, which this broker does not serve"
            )
        return name

    def _remember(
        self, fingerprint: str, measurements: Mapping[str, str], resource: str | None
    ) -> None:
        with self._stash_lock:
            self._stash[fingerprint] = (measurements, resource)
            self._stash.move_to_end(fingerprint)
            while len(self._stash) > _MAX_STASHED:
                self._stash.popitem(last=False)

    def _recall(self, fingerprint: str) -> tuple[Mapping[str, str], str | None]:
        with self._stash_lock:
            return self._stash.pop(fingerprint, ({}, None))

    def record_enrolment(self, enrolment: Enrolment[KbsPeer]) -> None:
        """Audit an admitted enrolment (the server's ``on_enrol`` hook)."""
        self._recall(enrolment.fingerprint)
        peer = enrolment.identity
        reason = (
            "certificate listed in kbs.admins"
            if peer.role == ROLE_ADMIN
            else "evidence passes "
            + (f"the policy of {peer.resource!r}" if peer.resource else "a resource's policy")
        )
        self._write(
            AuditRecord(
                unix=self._clock(),
                action="enrol",
                resource=peer.resource,
                decision=ALLOW,
                reason=reason,
                role=peer.role,
                peer=enrolment.peer,
                fingerprint=peer.fingerprint,
                measurements=peer.measurements,
            )
        )

    def record_refusal(self, refusal: Refusal) -> None:
        """Audit a refused enrolment (the server's ``on_refusal`` hook)."""
        known = refusal.fingerprint if refusal.fingerprint != "?" else None
        measurements, resource = self._recall(refusal.fingerprint) if known else ({}, None)
        # Refused either way; a failure to record it is logged by _write.
        with contextlib.suppress(RequestDeniedError):
            self._write(
                AuditRecord(
                    unix=self._clock(),
                    action="enrol",
                    resource=resource,
                    decision=DENY,
                    reason=refusal.reason,
                    peer=refusal.peer,
                    fingerprint=known,
                    measurements=measurements,
                )
            )

    # -- requests -------------------------------------------------------------------------------

    def challenge(self) -> tuple[bytes, float]:
        """Issue a nonce for a requester's next certificate; return it and when it lapses."""
        return self._nonces.issue()

    def release(self, peer: KbsPeer, name: str, *, address: str) -> tuple[bytes, int]:
        """Decide a GetResource: return ``(value, generation)``, or raise RequestDeniedError.

        Checks, in order: the caller is a requester; its certificate's nonce is one this broker
        issued, unused and not stale (used up here whatever the outcome); the resource is served,
        is the one the certificate was made for, has a value and is not revoked; and the
        certificate's evidence passes *that* resource's policy now.
        """
        audit = self._auditor("get", name, peer, address)
        if peer.role != ROLE_REQUESTER:
            audit.deny("admins put and revoke; resources are released only to attested requesters")
        if peer.nonce is None:
            audit.deny(
                f"certificate has no {NONCE_CLAIM!r} claim: ask Challenge and make the "
                "certificate with its nonce"
            )
        try:
            self._nonces.consume(peer.nonce)
        except NonceRefusedError as exc:
            audit.deny(str(exc))
        rule = self._rules.get(name)
        if rule is None:
            audit.deny(f"resource {name!r} is not served by this broker", kind="not_found")
        if peer.resource is not None and peer.resource != name:
            audit.deny(
                f"certificate was made for resource {peer.resource!r} (its {RESOURCE_CLAIM} "
                "claim), not this one"
            )
        state = self._store.state(name)
        if state is not None and state.revoked:
            audit.deny(f"resource {name!r} is revoked")
        if state is None:
            audit.deny(f"resource {name!r} has no value yet (an admin must put one)")
        try:
            verify_ratls_certificate(peer.cert_pem, rule.verifier)
        except AttestationError as exc:
            audit.deny(f"evidence fails the policy of {name!r}: {exc}")
        found = self._store.get(name)
        if found is None:  # revoked while the request was being checked
            audit.deny(f"resource {name!r} is revoked")
        value, generation = found
        audit.allow(f"evidence passes the policy of {name!r}; generation {generation} released")
        return value, generation

    def put(self, peer: KbsPeer, name: str, value: bytes, *, address: str) -> int:
        """Decide an admin's Put; return the new generation or raise :class:`RequestDeniedError`."""
        audit = self._auditor("put", name, peer, address)
        self._require_admin(peer, audit)
        rule = self._rules.get(name)
        if rule is None:
            audit.deny(
                f"resource {name!r} is not served by this broker (resources and their policies "
                "are listed in its config)",
                kind="not_found",
            )
        size = rule.settings.size
        if not value or len(value) > MAX_VALUE_BYTES or (size is not None and len(value) != size):
            expected = f"exactly {size}" if size is not None else f"1 to {MAX_VALUE_BYTES}"
            audit.deny(
                f"value for {name!r}: expected {expected} bytes, got {len(value)}", kind="invalid"
            )
        audit.allow(f"admin put a {len(value)}-byte value")
        try:
            return self._store.put(name, value, now=self._clock())
        except SealflError as exc:
            _log.error("kbs: storing %s failed: %s", name, exc)
            audit.deny(f"the broker could not store the value: {exc}", kind="unavailable")

    def revoke(self, peer: KbsPeer, name: str, *, address: str) -> bool:
        """Decide an admin's Revoke; return whether the resource was active."""
        audit = self._auditor("revoke", name, peer, address)
        self._require_admin(peer, audit)
        if name not in self._rules:
            audit.deny(f"resource {name!r} is not served by this broker", kind="not_found")
        state = self._store.state(name)
        active = state is not None and not state.revoked
        audit.allow("admin revoked it" if active else "admin revoked it (it had no active value)")
        try:
            return self._store.revoke(name, now=self._clock())
        except SealflError as exc:
            _log.error("kbs: revoking %s failed: %s", name, exc)
            audit.deny(f"the broker could not record the revocation: {exc}", kind="unavailable")

    def refuse_unenrolled(self, action: str, name: str, *, address: str) -> NoReturn:
        """Audit and refuse a request that reached the front door, where nobody is enrolled."""
        audit = self._auditor(action, name, None, address)
        audit.deny(
            "caller not enrolled: the front door serves only Challenge; enrol a certificate "
            "and call the mutual-TLS listener"
        )

    @staticmethod
    def _require_admin(peer: KbsPeer, audit: _Auditor) -> None:
        if peer.role != ROLE_ADMIN:
            audit.deny(
                f"certificate sha256:{peer.fingerprint} is not an admin's: only certificates "
                "listed in kbs.admins may put or revoke"
            )

    # -- audit ----------------------------------------------------------------------------------

    def _auditor(self, action: str, name: str, peer: KbsPeer | None, address: str) -> _Auditor:
        try:
            check_resource_name(name)
            resource: str | None = name
        except SealflError:
            resource = None
        return _Auditor(self, action, resource, name, peer, address)

    def _write(self, record: AuditRecord) -> None:
        try:
            self._audit.record(record)
        except SealflError as exc:
            _log.error("kbs: %s; refusing the decision it was to record", exc)
            raise RequestDeniedError(
                "the broker cannot write its audit log; nothing is released or changed",
                kind="unavailable",
            ) from exc


class _Auditor:
    """Writes the one audit line of a request, then allows or raises :class:`RequestDeniedError`."""

    def __init__(
        self,
        broker: Broker,
        action: str,
        resource: str | None,
        name: str,
        peer: KbsPeer | None,
        address: str,
    ) -> None:
        self._broker = broker
        self._action = action
        self._resource = resource
        self._name = name
        self._peer = peer
        self._address = address

    def write(self, decision: str, reason: str) -> None:
        peer = self._peer
        if self._resource is None and decision == DENY:
            reason = f"{reason} (requested name {self._name[:80]!r})"
        self._broker._write(
            AuditRecord(
                unix=self._broker._clock(),
                action=self._action,
                resource=self._resource,
                decision=decision,
                reason=reason,
                role=peer.role if peer else None,
                peer=self._address,
                fingerprint=peer.fingerprint if peer else None,
                measurements=peer.measurements if peer else {},
            )
        )

    def allow(self, reason: str) -> None:
        self.write(ALLOW, reason)

    def deny(self, reason: str, *, kind: str = "denied") -> NoReturn:
        """Record the refusal and raise it as :class:`RequestDeniedError`."""
        with contextlib.suppress(RequestDeniedError):  # refused either way; failure logged
            self.write(DENY, reason)
        raise RequestDeniedError(reason, kind=kind)


def _claimed_measurements(cert_pem: bytes) -> dict[str, str]:
    """Return the measurements a certificate's evidence states, unverified (for a refusal)."""
    try:
        return dict(inspect_ratls_certificate(cert_pem).measurements)
    except (AttestationError, ValueError):
        return {}

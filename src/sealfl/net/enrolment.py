"""Enrolment: admitting a client certificate into a server's allow-list.

Why a separate listener: the service listener demands a client certificate that is already in
its trust store, so a new client could never reach an enrolment RPC there. The server therefore
also runs a *front door*: TLS with the same server certificate, no client authentication,
serving only this enrolment service. It is safe to leave open because it grants nothing by
itself: a client gets in only by presenting a certificate the peer verifier accepts AND proving
it holds that certificate's key, by signing a fresh single-use nonce (see
:mod:`sealfl.net.possession`). The mutual-TLS handshake on the service listener then proves
possession again on every connection.

A client that renews its certificate enrols the new one with a second signature, by the key of
the certificate it enrolled before (:func:`~sealfl.net.possession.renewal_message`): the desk
then carries the client's lineage over and frees the old slot. The front door also serves the
chain of a renewing server's handovers (``Handover``), which grants nothing either: each step is
a public certificate signed by the key before it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net.allowlist import AllowList, Enrolment, Refusal, RevokedError
from sealfl.net.callers import caller_enrolment
from sealfl.net.certificates import certificate_fingerprint, load_certificate
from sealfl.net.possession import possession_message, renewal_message, verify_possession
from sealfl.net.protos import enrolment_pb2, enrolment_pb2_grpc
from sealfl.net.refusal_log import RateLimitedLog

__all__ = [
    "ChallengeStore",
    "EnrolmentDesk",
    "EnrolmentRefusedError",
    "EnrolmentServicer",
    "HandoverStep",
    "SessionServicer",
]

IdentityT = TypeVar("IdentityT")

_log = logging.getLogger(__name__)

NONCE_BYTES = 32


class EnrolmentRefusedError(ChannelError):
    """Why a client's enrolment was refused (also kept as a :class:`Refusal` and logged)."""


class ChallengeStore:
    """Single-use nonces that lapse after ``ttl_s``, at most ``max_pending`` outstanding.

    When full, the oldest pending nonce is forgotten: a flood of Challenge calls can delay an
    honest client (it asks again) but cannot grow memory.
    """

    def __init__(
        self, *, ttl_s: float = 30.0, max_pending: int = 4096, clock: Callable[[], float]
    ) -> None:
        self._ttl_s = ttl_s
        self._max_pending = max_pending
        self._clock = clock
        self._pending: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> bytes:
        """Return a fresh nonce and remember it."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        with self._lock:
            self._pending[nonce] = self._clock() + self._ttl_s
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
        return nonce

    def consume(self, nonce: bytes) -> bool:
        """Forget ``nonce``; return whether it was pending and unexpired."""
        with self._lock:
            deadline = self._pending.pop(nonce, None)
        return deadline is not None and self._clock() < deadline


@dataclass(frozen=True)
class EnrolmentPolicy:
    """How long enrolments last and how fresh a certificate must be."""

    ttl_s: float
    max_certificate_age_s: float | None
    disclose_reasons: bool

    def __post_init__(self) -> None:
        if self.ttl_s <= 0:
            raise ConfigError(f"enrolment_ttl_s: expected > 0, got {self.ttl_s}")
        if self.max_certificate_age_s is not None and self.max_certificate_age_s <= 0:
            raise ConfigError(
                f"max_certificate_age_s: expected > 0 or None, got {self.max_certificate_age_s}"
            )


class EnrolmentDesk(Generic[IdentityT]):
    """The checks that decide an enrolment, in order, independent of gRPC.

    1. the certificate parses; 2. the nonce is one this server issued, unused and unexpired;
    3. the signature proves possession of the certificate's key (signed for this server's
    current certificate or one it handed over from); 4. for a renewal, the predecessor's key
    signed the renewal and the predecessor was not revoked; 5. the certificate is inside its
    validity period (and not older than the policy allows); 6. the peer verifier accepts the
    certificate (evidence and policy); 7. the allow-list has room (or, on a server that admits
    anyone, makes room by evicting its least recently used entry).
    """

    def __init__(
        self,
        *,
        verifier: Callable[[bytes], IdentityT],
        allowlist: AllowList[IdentityT],
        challenges: ChallengeStore,
        policy: EnrolmentPolicy,
        server_certificates: Callable[[], Sequence[bytes]],
        clock: Callable[[], float],
        on_enrol: Callable[[Enrolment[IdentityT]], None] | None = None,
        on_refusal: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.policy = policy
        self._verifier = verifier
        self._allowlist = allowlist
        self._challenges = challenges
        self._server_certificates = server_certificates
        self._clock = clock
        self._on_enrol = on_enrol
        self._on_refusal = on_refusal
        self._log_refusal = RateLimitedLog(_log.warning, what="refused enrolments")

    def admit_preverified(self, cert_pem: bytes, *, peer: str) -> Enrolment[IdentityT]:
        """Enrol a certificate provisioned by the operator (no nonce: there is no live client).

        The verifier still runs. Raises :class:`ConfigError` naming the reason on refusal.
        """
        cert = load_certificate(cert_pem, what=f"allowed client certificate ({peer})")
        try:
            return self._check_and_add(cert, cert_pem, peer=peer, pinned=True)
        except EnrolmentRefusedError as exc:
            raise ConfigError(f"allowed client certificate ({peer}): {exc}") from exc

    def admit(
        self,
        cert_pem: bytes,
        nonce: bytes,
        signature: bytes,
        *,
        peer: str,
        predecessor: str = "",
        predecessor_signature: bytes = b"",
    ) -> Enrolment[IdentityT]:
        """Run every check and add the client, or raise :class:`EnrolmentRefusedError`.

        ``predecessor`` (a fingerprint) and ``predecessor_signature`` make it a renewal.
        """
        fingerprint, subject = "?", "?"
        try:
            try:
                cert = load_certificate(cert_pem, what="certificate_pem")
            except ConfigError as exc:  # the client's fault here, not the configuration's
                raise EnrolmentRefusedError(str(exc)) from exc
            fingerprint = certificate_fingerprint(cert_pem)
            subject = cert.subject.rfc4514_string()
            if not self._challenges.consume(nonce):
                raise EnrolmentRefusedError(
                    "nonce: not one this server issued, already used, or expired "
                    "(ask Challenge again)"
                )
            server_pem = self._proven_for(cert, nonce, cert_pem, signature)
            lineage, replaces = self._renewal(
                nonce, server_pem, cert_pem, fingerprint, predecessor, predecessor_signature
            )
            enrolment = self._check_and_add(
                cert, cert_pem, peer=peer, lineage=lineage, replaces=replaces
            )
        except EnrolmentRefusedError as exc:
            refusal = Refusal(peer, fingerprint, subject, str(exc), self._clock())
            self._allowlist.record_refusal(refusal)
            self._log_refusal(
                f"refused enrolment of {subject} (sha256:{fingerprint}) from {peer}: {exc}"
            )
            if self._on_refusal is not None:
                self._on_refusal(refusal)
            raise
        return enrolment

    def _proven_for(
        self, cert: x509.Certificate, nonce: bytes, cert_pem: bytes, signature: bytes
    ) -> bytes:
        """Check the possession proof; return the server certificate it was signed for.

        A client may have signed for the certificate this server presented before its latest
        renewal (it pinned that one a moment ago): every certificate of the server's handover
        chain is this server's, so each is accepted; the nonce keeps the proof fresh.
        """
        error: AttestationError | None = None
        for server_pem in self._server_certificates():
            try:
                verify_possession(cert, possession_message(nonce, server_pem, cert_pem), signature)
            except AttestationError as exc:
                error = error or exc
                continue
            return server_pem
        raise EnrolmentRefusedError(str(error or "possession proof: no server certificate"))

    def _renewal(
        self,
        nonce: bytes,
        server_pem: bytes,
        cert_pem: bytes,
        fingerprint: str,
        predecessor: str,
        signature: bytes,
    ) -> tuple[str | None, str | None]:
        """Return (lineage, replaced fingerprint) for a renewal, (None, None) otherwise."""
        if not predecessor:
            return None, None
        if predecessor == fingerprint:
            raise EnrolmentRefusedError(
                "renewal: the predecessor named is the certificate itself; re-enrol it without "
                "a predecessor"
            )
        if self._allowlist.is_revoked(predecessor):
            raise EnrolmentRefusedError(
                f"renewal: the predecessor certificate sha256:{predecessor} was revoked on this "
                "server, so its lineage ends; enrol without it"
            )
        known = self._allowlist.predecessor(predecessor, self._clock())
        if known is None:
            _log.info(
                "renewal of sha256:%s names sha256:%s, which this server does not know: "
                "enrolled as a new lineage",
                fingerprint,
                predecessor,
            )
            return None, None
        old = load_certificate(known.certificate_pem, what="predecessor certificate")
        try:
            verify_possession(
                old,
                renewal_message(nonce, server_pem, cert_pem, predecessor),
                signature,
                what="renewal proof",
                meaning="whoever enrols this certificate does not hold the predecessor's key",
            )
        except AttestationError as exc:
            raise EnrolmentRefusedError(str(exc)) from exc
        return known.lineage, predecessor

    def _check_and_add(
        self,
        cert: x509.Certificate,
        cert_pem: bytes,
        *,
        peer: str,
        pinned: bool = False,
        lineage: str | None = None,
        replaces: str | None = None,
    ) -> Enrolment[IdentityT]:
        # Only the certificate that was parsed, checked and proved is kept: the stored PEM
        # becomes a root of the mutual-TLS trust store, so anything the client appended to it
        # (another certificate, a CA) must never get there.
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        now = self._clock()
        not_before = cert.not_valid_before_utc.timestamp()
        not_after = cert.not_valid_after_utc.timestamp()
        if not not_before <= now < not_after:
            raise EnrolmentRefusedError(
                f"certificate validity: expected now ({_utc(now)}) within "
                f"[{_utc(not_before)}, {_utc(not_after)})"
            )
        max_age = self.policy.max_certificate_age_s
        if max_age is not None and now - not_before > max_age:
            raise EnrolmentRefusedError(
                f"certificate freshness: issued {now - not_before:.0f} s ago at "
                f"{_utc(not_before)}, at most {max_age:.0f} s allowed"
            )
        try:
            identity = self._verifier(cert_pem)
        except AttestationError as exc:
            raise EnrolmentRefusedError(f"attestation: {exc}") from exc
        except Exception as exc:  # a verifier bug must refuse this client, not kill the desk
            _log.exception("peer verifier failed on %s", cert.subject.rfc4514_string())
            # The exception's text stays in the local log: a bug's message may hold internals.
            raise EnrolmentRefusedError(
                f"verifier failed with an internal error ({type(exc).__name__}); "
                "the server's log has the details"
            ) from exc
        enrolment = Enrolment(
            fingerprint=certificate_fingerprint(cert_pem),
            subject=cert.subject.rfc4514_string(),
            identity=identity,
            certificate_pem=cert_pem,
            peer=peer,
            enrolled_at=now,
            expires_at=min(now + self.policy.ttl_s, not_after),
            lineage=lineage or "",
        )
        try:
            evicted = self._allowlist.add(enrolment, pinned=pinned, replaces=replaces)
        except (OverflowError, RevokedError) as exc:
            raise EnrolmentRefusedError(str(exc)) from exc
        for old in evicted:
            _log.info("evicted the least recently used client sha256:%s", old.fingerprint)
        _log.info(
            "enrolled %s (sha256:%s%s) from %s until %s",
            enrolment.subject,
            enrolment.fingerprint,
            f", renewing sha256:{replaces}" if replaces else "",
            peer,
            _utc(enrolment.expires_at),
        )
        if self._on_enrol is not None:
            self._on_enrol(enrolment)
        return enrolment


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclass(frozen=True)
class HandoverStep:
    """One renewal of the server's certificate: from which, to which, signed by the old key."""

    from_fingerprint: str
    certificate_pem: bytes
    signature: bytes


class EnrolmentServicer(enrolment_pb2_grpc.EnrolmentServicer, Generic[IdentityT]):
    """gRPC face of an :class:`EnrolmentDesk`, served on the front-door listener."""

    def __init__(
        self,
        desk: EnrolmentDesk[IdentityT],
        challenges: ChallengeStore,
        service_port: Callable[[], int],
        handovers: Callable[[str], Sequence[HandoverStep]] = lambda fingerprint: (),
    ) -> None:
        self._desk = desk
        self._challenges = challenges
        self._service_port = service_port
        self._handovers = handovers

    def Challenge(  # noqa: N802 - gRPC method name
        self, request: enrolment_pb2.ChallengeRequest, context: grpc.ServicerContext
    ) -> enrolment_pb2.ChallengeReply:
        """Issue a fresh single-use nonce."""
        return enrolment_pb2.ChallengeReply(nonce=self._challenges.issue())

    def Enrol(  # noqa: N802 - gRPC method name
        self, request: enrolment_pb2.EnrolRequest, context: grpc.ServicerContext
    ) -> enrolment_pb2.EnrolReply:
        """Admit the client or abort with PERMISSION_DENIED and (by default) the reason."""
        try:
            enrolment = self._desk.admit(
                request.certificate_pem,
                request.nonce,
                request.signature,
                peer=context.peer(),
                predecessor=request.predecessor_fingerprint,
                predecessor_signature=request.predecessor_signature,
            )
        except EnrolmentRefusedError as exc:
            detail = str(exc) if self._desk.policy.disclose_reasons else "see the server log"
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"enrolment refused: {detail}")
        return enrolment_pb2.EnrolReply(
            service_port=self._service_port(),
            expires_at=enrolment.expires_at,
            fingerprint=enrolment.fingerprint,
            lineage=enrolment.lineage,
        )

    def Handover(  # noqa: N802 - gRPC method name
        self, request: enrolment_pb2.HandoverRequest, context: grpc.ServicerContext
    ) -> enrolment_pb2.HandoverReply:
        """Return the server's renewals since ``from_fingerprint`` (public, signed data)."""
        steps = self._handovers(request.from_fingerprint)
        return enrolment_pb2.HandoverReply(
            steps=[
                enrolment_pb2.HandoverStep(certificate_pem=s.certificate_pem, signature=s.signature)
                for s in steps
            ]
        )


class SessionServicer(enrolment_pb2_grpc.SessionServicer):
    """Served on the mutual-TLS listener: an enrolled client that is done leaves."""

    def __init__(self, allowlist: AllowList[Any]) -> None:
        self._allowlist = allowlist

    def Leave(  # noqa: N802 - gRPC method name
        self, request: enrolment_pb2.LeaveRequest, context: grpc.ServicerContext
    ) -> enrolment_pb2.LeaveReply:
        """Remove the caller's enrolment, freeing its slot (the peer check admitted it)."""
        enrolment = caller_enrolment(context)
        if enrolment is None:
            return enrolment_pb2.LeaveReply(left=False)
        left = self._allowlist.leave(enrolment.fingerprint)
        if left:
            _log.info("client sha256:%s left", enrolment.fingerprint)
        return enrolment_pb2.LeaveReply(left=left)

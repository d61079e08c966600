"""Enrolment: admitting a client certificate into a server's allow-list.

Why a separate listener: the service listener demands a client certificate that is already in
its trust store, so a new client could never reach an enrolment RPC there. The server therefore
also runs a *front door*: TLS with the same server certificate, no client authentication,
serving only this enrolment service. It is safe to leave open because it grants nothing by
itself: a client gets in only by presenting a certificate the peer verifier accepts AND proving
it holds that certificate's key, by signing a fresh single-use nonce (see
:mod:`sealfl.net.possession`). The mutual-TLS handshake on the service listener then proves
possession again on every connection.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net.allowlist import AllowList, Enrolment, Refusal, RevokedError
from sealfl.net.certificates import certificate_fingerprint, load_certificate
from sealfl.net.possession import possession_message, verify_possession
from sealfl.net.protos import enrolment_pb2, enrolment_pb2_grpc

__all__ = ["ChallengeStore", "EnrolmentDesk", "EnrolmentRefusedError", "EnrolmentServicer"]

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
    3. the certificate is inside its validity period (and not older than the policy allows);
    4. the signature proves possession of the certificate's key; 5. the peer verifier accepts
    the certificate (evidence and policy); 6. the allow-list has room.
    """

    def __init__(
        self,
        *,
        verifier: Callable[[bytes], IdentityT],
        allowlist: AllowList[IdentityT],
        challenges: ChallengeStore,
        policy: EnrolmentPolicy,
        server_certificate: Callable[[], bytes],
        clock: Callable[[], float],
        on_enrol: Callable[[Enrolment[IdentityT]], None] | None = None,
        on_refusal: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.policy = policy
        self._verifier = verifier
        self._allowlist = allowlist
        self._challenges = challenges
        self._server_certificate = server_certificate
        self._clock = clock
        self._on_enrol = on_enrol
        self._on_refusal = on_refusal

    def admit_preverified(self, cert_pem: bytes, *, peer: str) -> Enrolment[IdentityT]:
        """Enrol a certificate provisioned by the operator (no nonce: there is no live client).

        The verifier still runs. Raises :class:`ConfigError` naming the reason on refusal.
        """
        cert = load_certificate(cert_pem, what=f"allowed client certificate ({peer})")
        try:
            return self._check_and_add(cert, cert_pem, peer=peer)
        except EnrolmentRefusedError as exc:
            raise ConfigError(f"allowed client certificate ({peer}): {exc}") from exc

    def admit(
        self, cert_pem: bytes, nonce: bytes, signature: bytes, *, peer: str
    ) -> Enrolment[IdentityT]:
        """Run every check and add the client, or raise :class:`EnrolmentRefusedError`."""
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
            message = possession_message(nonce, self._server_certificate(), cert_pem)
            try:
                verify_possession(cert, message, signature)
            except AttestationError as exc:
                raise EnrolmentRefusedError(str(exc)) from exc
            enrolment = self._check_and_add(cert, cert_pem, peer=peer)
        except EnrolmentRefusedError as exc:
            refusal = Refusal(peer, fingerprint, subject, str(exc), self._clock())
            self._allowlist.record_refusal(refusal)
            _log.warning(
                "refused enrolment of %s (sha256:%s) from %s: %s", subject, fingerprint, peer, exc
            )
            if self._on_refusal is not None:
                self._on_refusal(refusal)
            raise
        return enrolment

    def _check_and_add(
        self, cert: x509.Certificate, cert_pem: bytes, *, peer: str
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
        )
        try:
            self._allowlist.add(enrolment)
        except (OverflowError, RevokedError) as exc:
            raise EnrolmentRefusedError(str(exc)) from exc
        _log.info(
            "enrolled %s (sha256:%s) from %s until %s",
            enrolment.subject,
            enrolment.fingerprint,
            peer,
            _utc(enrolment.expires_at),
        )
        if self._on_enrol is not None:
            self._on_enrol(enrolment)
        return enrolment


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class EnrolmentServicer(enrolment_pb2_grpc.EnrolmentServicer, Generic[IdentityT]):
    """gRPC face of an :class:`EnrolmentDesk`, served on the front-door listener."""

    def __init__(
        self,
        desk: EnrolmentDesk[IdentityT],
        challenges: ChallengeStore,
        service_port: Callable[[], int],
    ) -> None:
        self._desk = desk
        self._challenges = challenges
        self._service_port = service_port

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
                request.certificate_pem, request.nonce, request.signature, peer=context.peer()
            )
        except EnrolmentRefusedError as exc:
            detail = str(exc) if self._desk.policy.disclose_reasons else "see the server log"
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"enrolment refused: {detail}")
        return enrolment_pb2.EnrolReply(
            service_port=self._service_port(),
            expires_at=enrolment.expires_at,
            fingerprint=enrolment.fingerprint,
        )

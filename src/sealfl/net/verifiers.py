"""Peer verifiers: the callables that decide whether a peer certificate is acceptable.

A verifier takes the peer's certificate PEM and returns an identity object, or raises
:class:`~sealfl.errors.AttestationError` with the reason. The transport never looks inside the
identity: an RA-TLS verifier from :mod:`sealfl.tee` returns its ``VerifiedPeer`` (claims,
measurements, backend), and the plain-TLS verifiers here return a :class:`CertificateIdentity`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from sealfl.errors import AttestationError
from sealfl.net.certificates import certificate_fingerprint, load_certificate

__all__ = [
    "CertificateIdentity",
    "PeerVerifier",
    "accept_any_certificate",
    "fingerprint_verifier",
]

IdentityT = TypeVar("IdentityT")

PeerVerifier = Callable[[bytes], IdentityT]
"""``verifier(cert_pem) -> identity``; raises :class:`AttestationError` to refuse the peer."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a plain-TLS peer is: its certificate's fingerprint and subject."""

    fingerprint: str
    subject: str


def _identity(cert_pem: bytes) -> CertificateIdentity:
    cert = load_certificate(cert_pem, what="peer certificate")
    return CertificateIdentity(certificate_fingerprint(cert_pem), cert.subject.rfc4514_string())


def fingerprint_verifier(fingerprints: Iterable[str]) -> PeerVerifier[CertificateIdentity]:
    """Accept exactly the certificates whose SHA-256 fingerprints (hex) are listed.

    This is plain TLS with pinned self-signed certificates, exchanged out of band: the baseline
    for the RA-TLS benchmark and the transport of the infer workload's non-TEE modes.
    """
    allowed = frozenset(f.lower().replace(":", "") for f in fingerprints)

    def verify(cert_pem: bytes) -> CertificateIdentity:
        identity = _identity(cert_pem)
        if identity.fingerprint not in allowed:
            raise AttestationError(
                f"certificate {identity.subject!r}: fingerprint sha256:{identity.fingerprint} "
                f"is not one of the {len(allowed)} pinned fingerprints"
            )
        return identity

    return verify


def accept_any_certificate(cert_pem: bytes) -> CertificateIdentity:
    """Accept every well-formed certificate: NO authentication of the peer.

    A named opt-out for local development and benchmarks only. The channel is still encrypted
    and pinned (a key swapped after the first contact is detected), but whoever answers first
    is trusted. Never use it where the peer's identity matters.
    """
    identity = _identity(cert_pem)
    _log.warning(
        "accepting certificate %s (sha256:%s) without verification",
        identity.subject,
        identity.fingerprint,
    )
    return identity

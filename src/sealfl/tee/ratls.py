"""RA-TLS certificates: a TLS key made inside the TEE, with evidence that vouches for it.

Hazardous layer. :func:`create_ratls_certificate` makes a fresh ECDSA P-384 key, hashes it into a
claims map (plus the caller's own claims and an issued-at time), asks the TEE for evidence over
``SHA-256(claims)`` and writes a self-signed certificate carrying both (format: see
:mod:`sealfl.tee.dice`). :func:`verify_ratls_certificate` checks, in order: the certificate's
self-signature and validity period, the evidence against the verifier's policy, that the
evidence's ``report_data`` is the hash of the claims, that the claims name this certificate's
key, and freshness. It raises :class:`~sealfl.errors.AttestationError` naming the failed field.

Every certificate has a fresh key, a random serial, and a subject and SKI derived from that key,
so no two certificates share a subject (gRPC's trust store confuses identical subjects).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee.dcap import parse_quote_report
from sealfl.tee.dice import (
    DICE_EVIDENCE_OID,
    GRAMINE_LEGACY_OIDS,
    PUBKEY_HASH_CLAIM,
    SIMULATED_EVIDENCE_OID,
    check_pubkey_hash,
    decode_claims,
    decode_tagged_evidence,
    encode_claims,
    encode_pubkey_hash,
    encode_tagged_evidence,
    report_data_for,
)
from sealfl.tee.evidence import EvidenceProvider
from sealfl.tee.simulated import is_simulated_quote, verify_simulated_quote
from sealfl.tee.verdict import Verdict
from sealfl.tee.verifier import Verifier

#: Claim holding the unix time (CBOR integer) at which the certificate was made.
ISSUED_AT_CLAIM = "iat"
#: Claim holding a verifier-chosen nonce (byte string), for per-session freshness.
NONCE_CLAIM = "nonce"
_RESERVED_CLAIMS = frozenset({PUBKEY_HASH_CLAIM, ISSUED_AT_CLAIM})
#: Tolerated clock difference between the certificate's maker and its verifier.
CLOCK_SKEW = timedelta(minutes=1)

FORMAT_DICE = "tcg-dice"
FORMAT_LEGACY = "gramine-legacy"
FORMAT_SIMULATED = "simulated"


@dataclass(frozen=True)
class RaTlsCredentials:
    """A certificate and its private key, both PEM; the key never leaves the TEE that made it."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


def _validate_claims(claims: Mapping[str, bytes] | None, nonce: bytes | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in (claims or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"claim names must be non-empty str, got {name!r}")
        if name in _RESERVED_CLAIMS:
            raise ConfigError(f"claim {name!r} is reserved: sealfl sets it itself")
        if not isinstance(value, bytes):
            raise ConfigError(f"claim {name!r}: expected bytes, got {type(value).__name__}")
        result[name] = value
    if nonce is not None:
        if NONCE_CLAIM in result:
            raise ConfigError(f"claim {NONCE_CLAIM!r} given twice (claims= and nonce=)")
        result[NONCE_CLAIM] = bytes(nonce)
    return result


def _subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def create_ratls_certificate(
    provider: EvidenceProvider,
    *,
    claims: Mapping[str, bytes] | None = None,
    nonce: bytes | None = None,
    lifetime: timedelta = timedelta(hours=1),
    now: datetime | None = None,
    hostnames: Sequence[str] = ("localhost",),
) -> RaTlsCredentials:
    """Make a key in this TEE and a self-signed RA-TLS certificate whose evidence binds it.

    Parameters
    ----------
    provider
        The TEE to ask for evidence; its backend decides the extension (DICE or simulated).
    claims
        Extra claims bound into the evidence, e.g. ``{"paillier-pk-hash": digest}``.
    nonce
        A verifier's challenge, stored in the ``nonce`` claim.
    lifetime
        Validity period; short lifetimes are part of freshness.
    now
        Issue time (defaults to the current time); ``iat`` claim and ``notBefore`` come from it.
    hostnames
        DNS names or IP addresses for subjectAltName (TLS name checks, e.g. gRPC's
        ``ssl_target_name_override``).

    Raises
    ------
    ConfigError
        If a claim is reserved or not bytes, or the lifetime is not positive.
    AttestationError
        If the TEE cannot produce evidence.
    """
    if lifetime <= timedelta(0):
        raise ConfigError(f"certificate lifetime must be positive, got {lifetime}")
    issued = (now or datetime.now(UTC)).astimezone(UTC)
    claims_map = _validate_claims(claims, nonce)
    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims_map[PUBKEY_HASH_CLAIM] = encode_pubkey_hash(spki)
    claims_map[ISSUED_AT_CLAIM] = int(issued.timestamp())
    claims_buffer = encode_claims(claims_map)
    quote = provider.quote(report_data_for(claims_buffer))
    oid = SIMULATED_EVIDENCE_OID if provider.backend == "simulated" else DICE_EVIDENCE_OID

    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"sealfl RA-TLS {provider.backend} {ski.digest.hex()[:24]}"
            ),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealfl"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(issued - CLOCK_SKEW)
        .not_valid_after(issued + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.UnrecognizedExtension(oid, encode_tagged_evidence(quote, claims_buffer)),
            critical=False,
        )
    )
    if hostnames:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_subject_alt_names(hostnames)), critical=False
        )
    certificate = builder.sign(key, hashes.SHA384())
    return RaTlsCredentials(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True)
class CertificateEvidence:
    """The evidence found in an RA-TLS certificate, not yet verified.

    Attributes
    ----------
    format
        ``"tcg-dice"``, ``"gramine-legacy"`` or ``"simulated"``.
    claims
        The decoded claims map (empty for the legacy format, which has none).
    """

    format: str
    quote: bytes
    claims_buffer: bytes | None
    claims: Mapping[str, Any]
    certificate: x509.Certificate
    spki_der: bytes

    @property
    def expected_report_data(self) -> bytes:
        """The report_data that binds this certificate's key (format-dependent)."""
        if self.claims_buffer is None:
            return report_data_for(self.spki_der)
        return report_data_for(self.claims_buffer)

    def check_key_binding(self, report_data: bytes | None) -> None:
        """Check the evidence's ``report_data`` and ``pubkey-hash`` name this certificate's key.

        Raises
        ------
        AttestationError
            Naming the field that does not match.
        """
        expected = self.expected_report_data
        what = "SHA-256(public key)" if self.claims_buffer is None else "SHA-256(claims)"
        if report_data is None or report_data[:32] != expected[:32]:
            found = "nothing" if report_data is None else report_data[:32].hex()
            raise AttestationError(
                f"report_data[0:32]: expected {expected[:32].hex()} ({what}), found {found}"
            )
        if report_data[32:] != expected[32:]:
            raise AttestationError(
                f"report_data[32:64]: expected zeros, found {report_data[32:].hex()}"
            )
        if self.claims_buffer is not None:
            if PUBKEY_HASH_CLAIM not in self.claims:
                raise AttestationError(f"claims: {PUBKEY_HASH_CLAIM!r} missing")
            check_pubkey_hash(self.claims[PUBKEY_HASH_CLAIM], self.spki_der)


def _load_certificate(cert_pem: bytes) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(bytes(cert_pem))
        # cryptography parses these fields on first use: a malformed one would raise a
        # ValueError wherever it is first read. Read them all here, once.
        certificate.version  # noqa: B018
        certificate.subject  # noqa: B018
        certificate.issuer  # noqa: B018
        certificate.extensions  # noqa: B018
        certificate.public_key()
    except (ValueError, TypeError) as exc:
        raise AttestationError(f"not a PEM X.509 certificate: {exc}") from exc
    except UnsupportedAlgorithm as exc:  # a key type or curve cryptography does not know
        raise AttestationError(f"certificate key: {exc}") from exc
    except (x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise AttestationError(f"certificate extensions: {exc}") from exc
    except x509.InvalidVersion as exc:
        raise AttestationError(f"certificate version: {exc}") from exc
    return certificate


def read_certificate_evidence(cert_pem: bytes) -> CertificateEvidence:
    """Find and decode the evidence extension of an RA-TLS certificate (no verification).

    The TCG DICE extension is preferred when a certificate also carries Gramine's legacy one.

    Raises
    ------
    AttestationError
        If the certificate cannot be parsed, has no evidence extension, mixes simulated and real
        evidence, or the extension is malformed.
    """
    certificate = _load_certificate(cert_pem)
    try:
        found = {ext.oid: ext.value for ext in certificate.extensions}
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise AttestationError(f"certificate extensions or key unreadable: {exc}") from exc
    legacy = [oid for oid in GRAMINE_LEGACY_OIDS if oid in found]
    real = DICE_EVIDENCE_OID in found or bool(legacy)
    if SIMULATED_EVIDENCE_OID in found and real:
        raise AttestationError(
            "certificate carries both simulated and real evidence extensions: refused"
        )

    def raw_value(oid: x509.ObjectIdentifier) -> bytes:
        value = found[oid]
        if not isinstance(value, x509.UnrecognizedExtension):
            raise AttestationError(f"evidence extension {oid.dotted_string} is not raw bytes")
        return bytes(value.value)

    if DICE_EVIDENCE_OID in found or SIMULATED_EVIDENCE_OID in found:
        simulated = SIMULATED_EVIDENCE_OID in found
        oid = SIMULATED_EVIDENCE_OID if simulated else DICE_EVIDENCE_OID
        quote, claims_buffer = decode_tagged_evidence(raw_value(oid))
        if simulated != is_simulated_quote(quote):
            raise AttestationError(
                "simulated quote inside a real evidence extension: refused"
                if not simulated
                else "simulated evidence extension holds a quote without the SIMULATED marker"
            )
        return CertificateEvidence(
            format=FORMAT_SIMULATED if simulated else FORMAT_DICE,
            quote=quote,
            claims_buffer=claims_buffer,
            claims=decode_claims(claims_buffer),
            certificate=certificate,
            spki_der=spki,
        )
    if legacy:
        quote = raw_value(legacy[0])
        if is_simulated_quote(quote):
            raise AttestationError("simulated quote inside a real evidence extension: refused")
        return CertificateEvidence(
            format=FORMAT_LEGACY,
            quote=quote,
            claims_buffer=None,
            claims={},
            certificate=certificate,
            spki_der=spki,
        )
    raise AttestationError(
        "certificate has no RA-TLS evidence extension (expected "
        f"{DICE_EVIDENCE_OID.dotted_string}, Gramine's legacy "
        f"{GRAMINE_LEGACY_OIDS[0].dotted_string}, or sealfl's simulated "
        f"{SIMULATED_EVIDENCE_OID.dotted_string})"
    )


@dataclass(frozen=True)
class VerifiedPeer:
    """A peer whose RA-TLS certificate passed every check.

    Attributes
    ----------
    claims
        The byte-string claims other than ``pubkey-hash`` (for example ``nonce`` or a workload's
        key hash); compare them with :meth:`require_claim`.
    issued_at
        From the ``iat`` claim, when the certificate has one.
    """

    backend: str
    measurements: Mapping[str, str]
    claims: Mapping[str, bytes]
    tcb_status: str
    cert_pem: bytes
    evidence_format: str = FORMAT_DICE
    issued_at: datetime | None = None
    advisories: tuple[str, ...] = ()

    def require_claim(self, name: str, expected: bytes) -> None:
        """Check that claim ``name`` is present and equals ``expected``.

        Raises
        ------
        AttestationError
            If it is missing or different.
        """
        found = self.claims.get(name)
        if found != expected:
            shown = "nothing" if found is None else found.hex()
            raise AttestationError(f"claim {name!r}: expected {expected.hex()}, found {shown}")


def _check_validity(certificate: x509.Certificate, at: datetime) -> None:
    if at < certificate.not_valid_before_utc:
        raise AttestationError(
            f"certificate not yet valid: notBefore {certificate.not_valid_before_utc.isoformat()}, "
            f"verification time {at.isoformat()}"
        )
    if at > certificate.not_valid_after_utc:
        raise AttestationError(
            f"certificate expired: notAfter {certificate.not_valid_after_utc.isoformat()}, "
            f"verification time {at.isoformat()}"
        )


def _check_self_signed(certificate: x509.Certificate) -> None:
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise AttestationError(
            f"certificate is not validly self-signed by its own key: {exc or type(exc).__name__}"
        ) from exc


def _issued_at(claims: Mapping[str, Any]) -> datetime | None:
    if ISSUED_AT_CLAIM not in claims:
        return None
    value = claims[ISSUED_AT_CLAIM]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AttestationError(
            f"claim {ISSUED_AT_CLAIM!r}: expected a non-negative integer, got {value!r}"
        )
    return datetime.fromtimestamp(value, UTC)


def _check_freshness(issued_at: datetime | None, max_age: timedelta | None, at: datetime) -> None:
    if issued_at is not None and issued_at > at + CLOCK_SKEW:
        raise AttestationError(
            f"claim {ISSUED_AT_CLAIM!r}: {issued_at.isoformat()} is in the future "
            f"(verification time {at.isoformat()})"
        )
    if max_age is None:
        return
    if issued_at is None:
        raise AttestationError(
            f"claim {ISSUED_AT_CLAIM!r} missing, but the policy requires evidence at most "
            f"{max_age} old"
        )
    if at - issued_at > max_age:
        raise AttestationError(
            f"claim {ISSUED_AT_CLAIM!r}: evidence is {at - issued_at} old, policy allows {max_age}"
        )


def _user_claims(claims: Mapping[str, Any]) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    for name, value in claims.items():
        if name in _RESERVED_CLAIMS:
            continue
        if not isinstance(value, bytes):
            raise AttestationError(
                f"claim {name!r}: expected a byte string, got {type(value).__name__}"
            )
        result[name] = value
    return result


def verify_ratls_certificate(
    cert_pem: bytes,
    verifier: Verifier,
    *,
    now: datetime | None = None,
    expected_nonce: bytes | None = None,
) -> VerifiedPeer:
    """Verify an RA-TLS certificate completely; return who the peer is.

    Parameters
    ----------
    verifier
        Policy, collateral and clock to appraise the evidence with.
    now
        Verification time; defaults to the verifier's clock.
    expected_nonce
        If given, the ``nonce`` claim must equal it (per-session freshness).

    Raises
    ------
    AttestationError
        Naming the first check that failed, with what was expected and what was found.
    """
    at = now.astimezone(UTC) if now is not None else datetime.fromtimestamp(verifier.time(), UTC)
    evidence = read_certificate_evidence(cert_pem)
    _check_self_signed(evidence.certificate)
    _check_validity(evidence.certificate, at)
    verdict: Verdict = verifier.appraise(evidence.quote, now=at.timestamp())
    verdict.raise_if_refused()
    evidence.check_key_binding(verdict.report_data)
    issued_at = _issued_at(evidence.claims)
    _check_freshness(issued_at, verifier.policy.max_evidence_age, at)
    peer = VerifiedPeer(
        backend=verdict.backend,
        measurements=dict(verdict.measurements),
        claims=_user_claims(evidence.claims),
        tcb_status=verdict.tcb_status or "Unknown",
        cert_pem=bytes(cert_pem),
        evidence_format=evidence.format,
        issued_at=issued_at,
        advisories=verdict.advisories,
    )
    if expected_nonce is not None:
        peer.require_claim(NONCE_CLAIM, expected_nonce)
    return peer


@dataclass(frozen=True)
class CertificateInspection:
    """What ``sealfl attest inspect`` reports about a certificate (evidence not appraised)."""

    format: str
    backend: str
    quote_version: int | None
    measurements: Mapping[str, str]
    report_data: bytes
    key_binding_holds: bool
    key_binding_detail: str
    claims: Mapping[str, str]
    subject: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return {
            "format": self.format,
            "backend": self.backend,
            "quote_version": self.quote_version,
            "measurements": dict(self.measurements),
            "report_data": self.report_data.hex(),
            "key_binding_holds": self.key_binding_holds,
            "key_binding_detail": self.key_binding_detail,
            "claims": dict(self.claims),
            "subject": self.subject,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "fingerprint_sha256": self.fingerprint_sha256,
        }


def inspect_ratls_certificate(cert_pem: bytes) -> CertificateInspection:
    """Describe an RA-TLS certificate: evidence format, measurements, key binding.

    The quote's signature chain is not checked (that needs collateral and a policy: use
    :func:`verify_ratls_certificate`); a simulated quote's own signature is.

    Raises
    ------
    AttestationError
        If the certificate carries no readable evidence.
    """
    evidence = read_certificate_evidence(cert_pem)
    if evidence.format == FORMAT_SIMULATED:
        simulated = verify_simulated_quote(evidence.quote)
        backend, version = "simulated", None
        measurements = simulated.measurements
        report_data = simulated.report_data
    else:
        report = parse_quote_report(evidence.quote)
        backend, version = report.tee, report.version
        measurements = dict(report.measurements)
        report_data = report.report_data
    try:
        evidence.check_key_binding(report_data)
        holds, detail = True, "report_data binds this certificate's public key"
    except AttestationError as exc:
        holds, detail = False, str(exc)
    claims = {
        name: value.hex() if isinstance(value, bytes) else repr(value)
        for name, value in evidence.claims.items()
    }
    certificate = evidence.certificate
    return CertificateInspection(
        format=evidence.format,
        backend=backend,
        quote_version=version,
        measurements=measurements,
        report_data=report_data,
        key_binding_holds=holds,
        key_binding_detail=detail,
        claims=claims,
        subject=certificate.subject.rfc4514_string(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(
            certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest(),
    )

"""X.509 helpers for the transport: credentials, fingerprints, throwaway certificates, fetching.

These are hazmat-level tools: they never decide whether a peer is trustworthy. That is the job
of a peer verifier (an RA-TLS verifier from :mod:`sealfl.tee`, or a pinned fingerprint set).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealfl.errors import ChannelError, ConfigError
from sealfl.net.addresses import split_address

__all__ = [
    "Credentials",
    "TlsCredentials",
    "certificate_fingerprint",
    "check_key_matches_certificate",
    "fetch_server_certificate",
    "load_certificate",
    "make_self_signed_credentials",
    "pinning_name",
    "validity_problem",
]


class Credentials(Protocol):
    """Anything with a PEM certificate and its PEM private key (``RaTlsCredentials`` too)."""

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        ...

    @property
    def key_pem(self) -> bytes:
        """Its private key, unencrypted PEM."""
        ...


@dataclass(frozen=True)
class TlsCredentials:
    """A certificate and its private key, both PEM.

    Any object with ``cert_pem`` and ``key_pem`` attributes is accepted where credentials are
    expected (``sealfl.tee``'s ``RaTlsCredentials`` is one); this class is the plain-TLS kind.
    """

    cert_pem: bytes
    key_pem: bytes


def load_certificate(cert_pem: bytes, *, what: str = "certificate") -> x509.Certificate:
    """Parse one PEM certificate, raising :class:`ConfigError` that names ``what`` on failure."""
    if not isinstance(cert_pem, bytes):
        raise ConfigError(f"{what}: expected PEM bytes, got {type(cert_pem).__name__}")
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"{what}: not a PEM X.509 certificate ({exc})") from exc


def certificate_fingerprint(cert_pem: bytes) -> str:
    """Return the SHA-256 of the certificate's DER encoding, lower-case hex.

    The fingerprint is what the allow-list and the pins compare: two PEM files that differ only
    in line breaks or headers are the same certificate.
    """
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def pinning_name(cert_pem: bytes) -> str:
    """Return the host name gRPC must check the pinned server certificate against.

    gRPC verifies the peer name even when the root set is exactly the pinned certificate, so the
    channel overrides the target name with a name the certificate actually carries: its first
    DNS subjectAltName, else its subject common name (which is what gRPC falls back to).

    Raises
    ------
    ChannelError
        If the certificate carries neither, so no name check could succeed.
    """
    cert = load_certificate(cert_pem, what="server certificate")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    if dns_names:
        return str(dns_names[0])
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names:
        return str(common_names[0].value)
    raise ChannelError(
        "server certificate has no DNS subjectAltName and no common name: gRPC cannot check "
        f"its name (subject {cert.subject.rfc4514_string()!r})"
    )


def validity_problem(cert_pem: bytes, now: float) -> str | None:
    """Return why the certificate is not valid at Unix time ``now`` (or None if it is)."""
    cert = load_certificate(cert_pem)
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    at = datetime.datetime.fromtimestamp(now, datetime.UTC)
    if at < not_before:
        return f"is not valid before {not_before.isoformat()} (now {at.isoformat()})"
    if at >= not_after:
        return f"expired at {not_after.isoformat()} (now {at.isoformat()})"
    return None


def check_key_matches_certificate(credentials: Credentials, *, party: str) -> None:
    """Raise :class:`ConfigError` unless ``credentials.key_pem`` is the key of ``cert_pem``.

    A mismatch would otherwise surface as an opaque handshake failure on the other side.
    """
    cert = load_certificate(credentials.cert_pem, what=f"{party} certificate")
    try:
        key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{party} private key: not an unencrypted PEM key ({exc})") from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    cert_pub = cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    key_pub = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    if cert_pub != key_pub:
        raise ConfigError(
            f"{party} credentials: the private key does not belong to the certificate "
            f"(certificate key sha256 {hashlib.sha256(cert_pub).hexdigest()[:16]}, "
            f"private key's public half sha256 {hashlib.sha256(key_pub).hexdigest()[:16]})"
        )


def make_self_signed_credentials(
    common_name: str | None = None,
    *,
    lifetime: datetime.timedelta = datetime.timedelta(days=1),
    now: datetime.datetime | None = None,
) -> TlsCredentials:
    """Make a throwaway self-signed ECDSA P-256 certificate for plain (non-attested) TLS.

    Each call draws a fresh key and a unique subject (a random suffix on the common name, also
    used as the DNS name), because gRPC's trust store confuses certificates with identical
    subjects. The certificate is usable for both server and client authentication.

    Parameters
    ----------
    common_name
        Prefix of the subject; a random ``.sealfl.invalid`` suffix keeps it unique.
    lifetime
        Validity period. Short lifetimes bound how long a leaked key is useful.
    now
        Start of validity (injectable for tests); defaults to the current UTC time.
    """
    start = now or datetime.datetime.now(datetime.UTC)
    name = f"{common_name or 'peer'}-{secrets.token_hex(8)}.sealfl.invalid"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(minutes=1))
        .not_valid_after(start + lifetime)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return TlsCredentials(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def fetch_server_certificate(address: str, *, timeout: float = 5.0) -> bytes:
    """Fetch the certificate a TLS server at ``address`` presents, WITHOUT verifying it.

    This is step 1 of the mutual RA-TLS scheme: the caller must verify the returned PEM (its
    evidence and policy) and then pin exactly this certificate for the gRPC channel, so that a
    server presenting any other key fails the handshake.

    Raises
    ------
    ChannelError
        If nothing answers, or the TLS handshake fails, within ``timeout`` seconds.
    """
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=None) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise ChannelError(f"cannot fetch the server certificate from {address}: {exc}") from exc
    if not der:
        raise ChannelError(f"server at {address} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")

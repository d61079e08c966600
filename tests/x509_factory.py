"""Hand-built X.509 certificates for tests that forge or bend what sealfl's code would make.

One builder instead of a near-copy in every test module: tests state only what matters to
them (key, subject, extensions, validity, signature hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


def self_signed_certificate(
    *,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    subject: str | x509.Name = "test",
    extensions: Sequence[tuple[x509.ObjectIdentifier, bytes] | x509.ExtensionType] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int = 1,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """Return a PEM certificate signed by its own ``key`` (a fresh P-384 key by default).

    ``subject`` is a common name or a whole name. Each of ``extensions`` is added as a
    non-critical extension: an ``(oid, raw value bytes)`` pair, or an extension object such as
    ``x509.SubjectAlternativeName``. Validity defaults to a day either side of now. The
    signature hash defaults to SHA-256, and is omitted for Ed25519/Ed448 keys.
    """
    key = key or ec.generate_private_key(ec.SECP384R1())
    name = (
        subject
        if isinstance(subject, x509.Name)
        else x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=1))
    )
    for extension in extensions:
        if not isinstance(extension, x509.ExtensionType):
            extension = x509.UnrecognizedExtension(*extension)
        builder = builder.add_extension(extension, critical=False)
    eddsa = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    cert = builder.sign(key, None if eddsa else hash_algorithm or hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """Return ``key`` as unencrypted PKCS#8 PEM, the form credentials carry."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

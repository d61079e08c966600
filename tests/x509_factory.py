"""Hand-built X.509 certificates for tests that forge or bend what sealfl's code would make.

One builder instead of a near-copy in every test module: tests state only what matters to
them (key, subject, extensions, validity, signature hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def self_signed_certificate(
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    subject: str | x509.Name = "test",
    extensions: Sequence[tuple[x509.ObjectIdentifier, bytes]] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int = 1,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """Return a PEM certificate signed by its own ``key`` (a fresh P-384 key by default).

    ``subject`` is a common name or a whole name; each of ``extensions`` is added as a
    non-critical extension with raw ``value`` bytes. Validity defaults to a day either side of
    now.
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
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    cert = builder.sign(key, hash_algorithm or hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)

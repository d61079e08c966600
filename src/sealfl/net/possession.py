"""Signed statements about keys: enrolment, a client's renewal, a server's handover.

* **Possession.** An enrolling client signs a domain tag, the server's single-use nonce, and
  the SHA-256 of both certificates' DER. The nonce makes the proof fresh (a recorded enrolment
  cannot be replayed), and the server certificate's hash makes it useless at any other server.
* **Renewal.** A client enrolling a new certificate in place of one it enrolled before also
  signs, with the OLD key, the same nonce and server with both its certificates' hashes: only
  the holder of the old key can carry its lineage (and its slot, and a workload's seat) over.
* **Handover.** A server that renews its certificate signs, with the OLD key, the hashes of the
  old and the new certificate, so a client that pinned the old one can follow to the new one
  (which it still verifies with its verifier); an unsigned swap breaks the pin as before.

Each statement has its own domain tag, so a signature made for one is never valid as another.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from sealfl.errors import AttestationError, ConfigError
from sealfl.net.certificates import certificate_fingerprint

__all__ = [
    "handover_message",
    "possession_message",
    "renewal_message",
    "sign_possession",
    "verify_possession",
]

_DOMAIN = b"sealfl-net-enrolment-v1\x00"
_RENEWAL_DOMAIN = b"sealfl-net-renewal-v1\x00"
_HANDOVER_DOMAIN = b"sealfl-net-server-handover-v1\x00"


def possession_message(nonce: bytes, server_cert_pem: bytes, client_cert_pem: bytes) -> bytes:
    """Return the bytes a client signs to enrol ``client_cert_pem`` at that server."""
    # Each certificate by its fingerprint, the SHA-256 of its DER: PEM formatting cannot matter.
    server = bytes.fromhex(certificate_fingerprint(server_cert_pem))
    client = bytes.fromhex(certificate_fingerprint(client_cert_pem))
    return _DOMAIN + nonce + server + client


def renewal_message(
    nonce: bytes, server_cert_pem: bytes, client_cert_pem: bytes, predecessor_fingerprint: str
) -> bytes:
    """Return the bytes the PREVIOUS client key signs to pass its lineage to ``client_cert_pem``."""
    server = bytes.fromhex(certificate_fingerprint(server_cert_pem))
    client = bytes.fromhex(certificate_fingerprint(client_cert_pem))
    return _RENEWAL_DOMAIN + nonce + server + client + _fingerprint_bytes(predecessor_fingerprint)


def handover_message(previous_fingerprint: str, next_cert_pem: bytes) -> bytes:
    """Return the bytes a server's previous key signs to hand over to ``next_cert_pem``."""
    following = bytes.fromhex(certificate_fingerprint(next_cert_pem))
    return _HANDOVER_DOMAIN + _fingerprint_bytes(previous_fingerprint) + following


def _fingerprint_bytes(fingerprint: str) -> bytes:
    try:
        raw = bytes.fromhex(fingerprint)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise AttestationError(
            f"certificate fingerprint: expected 64 hex digits (SHA-256), got {fingerprint[:80]!r}"
        )
    return raw


def sign_possession(key_pem: bytes, message: bytes) -> bytes:
    """Sign ``message`` with the PEM private key (ECDSA-SHA256, RSA-PSS-SHA256 or EdDSA).

    Raises
    ------
    ConfigError
        If the key cannot be loaded or is of a type the scheme does not support.
    """
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"client private key: not an unencrypted PEM key ({exc})") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, _pss(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key.sign(message)
    raise ConfigError(
        f"client private key: expected an EC, RSA or Ed25519/Ed448 key, got {type(key).__name__}"
    )


def verify_possession(
    cert: x509.Certificate,
    message: bytes,
    signature: bytes,
    *,
    what: str = "possession proof",
    meaning: str = "the client does not hold that key, or the nonce differs",
) -> None:
    """Check ``signature`` over ``message`` with the certificate's public key.

    ``what`` names the statement in errors, and ``meaning`` says what a bad signature implies.

    Raises
    ------
    AttestationError
        If the signature does not verify, or the key type is unsupported.
    """
    try:
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AttestationError(f"{what}: certificate key unreadable ({exc})") from exc
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, message, _pss(), hashes.SHA256())
        elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public.verify(signature, message)
        else:
            raise AttestationError(
                f"{what}: unsupported certificate key type {type(public).__name__}"
            )
    except InvalidSignature as exc:
        raise AttestationError(
            f"{what}: the signature does not verify with the certificate's public key ({meaning})"
        ) from exc


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)

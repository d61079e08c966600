"""Certificates, fingerprints, pinning names, possession proofs and certificate fetching."""

from __future__ import annotations

import datetime
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from x509_factory import private_key_pem, self_signed_certificate

from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net import (
    TlsCredentials,
    certificate_fingerprint,
    fetch_server_certificate,
    fingerprint_verifier,
    make_self_signed_credentials,
)
from sealfl.net.certificates import check_key_matches_certificate, pinning_name
from sealfl.net.possession import possession_message, sign_possession, verify_possession


def test_self_signed_certificates_have_unique_subjects_keys_and_names() -> None:
    first, second = make_self_signed_credentials("w"), make_self_signed_credentials("w")
    a = x509.load_pem_x509_certificate(first.cert_pem)
    b = x509.load_pem_x509_certificate(second.cert_pem)
    assert a.subject != b.subject
    ski = x509.SubjectKeyIdentifier
    assert a.extensions.get_extension_for_class(ski) != b.extensions.get_extension_for_class(ski)
    assert pinning_name(first.cert_pem).startswith("w-")
    assert pinning_name(first.cert_pem).endswith(".sealfl.invalid")
    check_key_matches_certificate(first, party="test")


def test_the_lifetime_is_respected() -> None:
    start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    creds = make_self_signed_credentials(lifetime=datetime.timedelta(hours=2), now=start)
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    assert cert.not_valid_after_utc == start + datetime.timedelta(hours=2)


def test_a_fingerprint_ignores_pem_formatting() -> None:
    creds = make_self_signed_credentials()
    reformatted = b"\n\n" + creds.cert_pem.replace(b"\n", b"\r\n")
    assert certificate_fingerprint(reformatted) == certificate_fingerprint(creds.cert_pem)
    assert len(certificate_fingerprint(creds.cert_pem)) == 64


def test_a_key_that_is_not_the_certificates_is_named() -> None:
    one, other = make_self_signed_credentials(), make_self_signed_credentials()
    with pytest.raises(ConfigError, match="client credentials: the private key does not belong"):
        check_key_matches_certificate(TlsCredentials(one.cert_pem, other.key_pem), party="client")


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(ConfigError, match=r"peer certificate: not a PEM X\.509"):
        fingerprint_verifier([])(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="expected PEM bytes, got str"):
        certificate_fingerprint("pem")  # type: ignore[arg-type]


def _cert_without_names() -> bytes:
    return self_signed_certificate(
        key=ec.generate_private_key(ec.SECP256R1()),
        subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no cn")]),
    )


def test_a_server_certificate_without_any_name_cannot_be_pinned() -> None:
    with pytest.raises(ChannelError, match="no DNS subjectAltName and no common name"):
        pinning_name(_cert_without_names())


def test_fingerprint_verifier_accepts_only_listed_certificates() -> None:
    allowed, stranger = make_self_signed_credentials(), make_self_signed_credentials("x")
    fingerprint = certificate_fingerprint(allowed.cert_pem)
    verify = fingerprint_verifier([fingerprint.upper()])  # case and colons do not matter
    assert verify(allowed.cert_pem).fingerprint == fingerprint
    with pytest.raises(AttestationError, match=r"fingerprint sha256:[0-9a-f]{64} is not one of"):
        verify(stranger.cert_pem)


def _key(kind: str) -> CertificateIssuerPrivateKeyTypes:
    return {
        "ec": lambda: ec.generate_private_key(ec.SECP384R1()),
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[kind]()


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_possession_proofs_verify_for_each_key_type_and_bind_the_nonce(kind: str) -> None:
    key = _key(kind)
    key_pem = private_key_pem(key)
    cert = x509.load_pem_x509_certificate(self_signed_certificate(key=key, subject="k"))
    server = make_self_signed_credentials("server").cert_pem
    client = cert.public_bytes(serialization.Encoding.PEM)
    message = possession_message(b"n" * 32, server, client)
    signature = sign_possession(key_pem, message)
    verify_possession(cert, message, signature)
    other_nonce = possession_message(b"m" * 32, server, client)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_possession(cert, other_nonce, signature)
    other_server = possession_message(b"n" * 32, make_self_signed_credentials().cert_pem, client)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_possession(cert, other_server, signature)


def test_a_possession_proof_for_an_unknown_key_type_is_refused_not_raised() -> None:
    der = x509.load_pem_x509_certificate(make_self_signed_credentials().cert_pem).public_bytes(
        serialization.Encoding.DER
    )
    ec_oid, unknown_oid = bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209")
    assert der.count(ec_oid) == 1
    cert = x509.load_der_x509_certificate(der.replace(ec_oid, unknown_oid))
    with pytest.raises(AttestationError, match="certificate key unreadable"):
        verify_possession(cert, b"message", b"signature")


def test_fetching_from_a_closed_port_names_the_address() -> None:
    with socket.socket() as sock:  # bind then close: a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        ChannelError, match=f"cannot fetch the server certificate from 127.0.0.1:{port}"
    ):
        fetch_server_certificate(f"127.0.0.1:{port}", timeout=2)


@pytest.mark.parametrize("address", ["localhost", "host:port", ":80"])
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="expected 'host:port'"):
        fetch_server_certificate(address)

"""Byte-level compatibility with Gramine's TCG DICE layout, and the package's public surface."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from cryptography import x509

import sealfl.tee
from sealfl.tee import create_ratls_certificate
from sealfl.tee.dice import (
    DICE_EVIDENCE_OID,
    SIMULATED_EVIDENCE_OID,
    check_pubkey_hash,
    encode_claims,
    encode_pubkey_hash,
    encode_tagged_evidence,
    report_data_for,
)
from sealfl.tee.ratls import read_certificate_evidence

INTERFACE = {
    "SimulatedPlatform",
    "measure_code",
    "EvidenceProvider",
    "SimulatedTee",
    "GramineSgx",
    "TdxConfigfs",
    "Policy",
    "load_policy",
    "Verifier",
    "RaTlsCredentials",
    "create_ratls_certificate",
    "VerifiedPeer",
    "verify_ratls_certificate",
}


def test_public_surface() -> None:
    public = {name for name in dir(sealfl.tee) if not name.startswith("_")}
    exported = set(sealfl.tee.__all__)
    assert exported >= INTERFACE
    assert exported <= public
    modules = {
        name for name in public - exported if isinstance(getattr(sealfl.tee, name), type(sealfl))
    }
    assert public - exported == modules, "public names missing from __all__"


def test_claims_and_evidence_bytes_match_gramine() -> None:
    spki = b"example public key"
    claims = encode_claims({"pubkey-hash": encode_pubkey_hash(spki)})
    # map(1) { "pubkey-hash": bstr(36) = [1 (SHA-256), bstr(32) digest] }
    assert claims == (
        b"\xa1\x6bpubkey-hash\x58\x24\x82\x01\x58\x20" + hashlib.sha256(spki).digest()
    )
    # tag(60000) array(2) [quote, claims]
    assert encode_tagged_evidence(b"Q", claims)[:4] == b"\xd9\xea\x60\x82"
    assert report_data_for(claims) == hashlib.sha256(claims).digest() + bytes(32)
    check_pubkey_hash(encode_pubkey_hash(spki), spki)


class FixedQuoteTee:
    """A stand-in "SGX" provider: real code paths pick the DICE extension for it."""

    backend: ClassVar[str] = "sgx"

    def __init__(self) -> None:
        self.report_data: bytes | None = None

    def quote(self, report_data: bytes) -> bytes:
        self.report_data = report_data
        return b"\x03\x00not-a-real-quote"

    def derive_sealing_key(self, label: bytes) -> bytes:
        return bytes(32)


def test_real_backends_use_the_dice_extension() -> None:
    provider = FixedQuoteTee()
    cert_pem = create_ratls_certificate(provider).cert_pem
    cert = x509.load_pem_x509_certificate(cert_pem)
    oids = {ext.oid for ext in cert.extensions}
    assert DICE_EVIDENCE_OID in oids and SIMULATED_EVIDENCE_OID not in oids
    assert not cert.extensions.get_extension_for_oid(DICE_EVIDENCE_OID).critical
    evidence = read_certificate_evidence(cert_pem)
    assert evidence.format == "tcg-dice"
    assert provider.report_data == evidence.expected_report_data
    evidence.check_key_binding(provider.report_data)

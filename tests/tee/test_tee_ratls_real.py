"""RA-TLS certificates carrying real quotes, in Gramine's TCG DICE and legacy formats.

No vector quote vouches for a key we hold, so these certificates are built around the real
quote: the evidence verifies, and the key binding is what must fail (or, with the exact
report_data a Gramine enclave would have produced, hold).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from x509_factory import self_signed_certificate

from sealfl.errors import AttestationError
from sealfl.tee import (
    Collateral,
    Policy,
    SgxIdentity,
    Verifier,
    inspect_ratls_certificate,
    verify_ratls_certificate,
)
from sealfl.tee.dice import (
    DICE_EVIDENCE_OID,
    GRAMINE_LEGACY_OIDS,
    encode_claims,
    encode_pubkey_hash,
    encode_tagged_evidence,
    report_data_for,
)
from sealfl.tee.ratls import read_certificate_evidence

SGX_AT = datetime.fromtimestamp(1752919277, UTC)
MR_ENCLAVE = bytes.fromhex("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")
LENIENT = Policy(
    sgx=(SgxIdentity(mr_enclave=MR_ENCLAVE),),
    tcb_statuses=frozenset({"ConfigurationAndSWHardeningNeeded"}),
)


def gramine_style_certificate(oid: x509.ObjectIdentifier, make_value) -> tuple[bytes, bytes]:
    """Self-signed certificate like Gramine's (fixed subject, serial 1, SKI/AKI)."""
    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    name = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "RATLS"),
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "GramineDevelopers"),
            x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "US"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2001, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.UnrecognizedExtension(oid, make_value(spki)), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), spki


def verifier_at_vector_time(sgx_vector, intel_root) -> Verifier:
    return Verifier(
        LENIENT,
        collateral=Collateral.load(sgx_vector.collateral_path),
        now=lambda: sgx_vector.at,
        root_ca_der=intel_root,
    )


def test_dice_certificate_with_real_quote(sgx_vector, intel_root) -> None:
    def dice(spki: bytes) -> bytes:
        claims = encode_claims({"pubkey-hash": encode_pubkey_hash(spki)})
        return encode_tagged_evidence(sgx_vector.quote, claims)

    cert_pem, _ = gramine_style_certificate(DICE_EVIDENCE_OID, dice)
    evidence = read_certificate_evidence(cert_pem)
    assert evidence.format == "tcg-dice"
    assert evidence.quote == sgx_vector.quote
    raw = cbor2.loads(
        x509.load_pem_x509_certificate(cert_pem)
        .extensions.get_extension_for_oid(DICE_EVIDENCE_OID)
        .value.value
    )
    assert raw.tag == 60000

    report = inspect_ratls_certificate(cert_pem)
    assert (report.format, report.backend, report.quote_version) == ("tcg-dice", "sgx", 3)
    assert report.measurements["mr_enclave"] == MR_ENCLAVE.hex()
    assert not report.key_binding_holds
    assert "SHA-256(claims)" in report.key_binding_detail

    # The evidence itself is accepted; only the binding to this key fails.
    with pytest.raises(
        AttestationError, match=r"report_data\[0:32\]: expected .*SHA-256\(claims\)"
    ):
        verify_ratls_certificate(cert_pem, verifier_at_vector_time(sgx_vector, intel_root))


@pytest.mark.parametrize("oid", GRAMINE_LEGACY_OIDS, ids=lambda o: o.dotted_string)
def test_legacy_certificate_with_real_quote(sgx_vector, intel_root, oid) -> None:
    cert_pem, spki = gramine_style_certificate(oid, lambda spki: sgx_vector.quote)
    evidence = read_certificate_evidence(cert_pem)
    assert evidence.format == "gramine-legacy" and evidence.claims == {}
    # What a Gramine enclave would have quoted for this key: SHA-256(SPKI), then zeros.
    evidence.check_key_binding(report_data_for(spki))
    with pytest.raises(AttestationError, match="SHA-256\\(public key\\)"):
        verify_ratls_certificate(cert_pem, verifier_at_vector_time(sgx_vector, intel_root))
    assert inspect_ratls_certificate(cert_pem).backend == "sgx"


def test_dice_is_preferred_when_both_extensions_are_present(sgx_vector) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = encode_claims({"pubkey-hash": encode_pubkey_hash(spki)})
    cert_pem = self_signed_certificate(
        key=key,
        subject="both",
        serial=2,
        extensions=[
            (GRAMINE_LEGACY_OIDS[0], sgx_vector.quote),
            (DICE_EVIDENCE_OID, encode_tagged_evidence(sgx_vector.quote, claims)),
        ],
        hash_algorithm=hashes.SHA384(),
    )
    evidence = read_certificate_evidence(cert_pem)
    assert evidence.format == "tcg-dice"


def test_real_evidence_refused_outside_collateral_window(sgx_vector, intel_root) -> None:
    cert_pem, _ = gramine_style_certificate(GRAMINE_LEGACY_OIDS[0], lambda spki: sgx_vector.quote)
    verifier = verifier_at_vector_time(sgx_vector, intel_root)
    with pytest.raises(AttestationError, match="DCAP verification"):
        verify_ratls_certificate(cert_pem, verifier, now=SGX_AT + timedelta(days=365))

"""RA-TLS certificates: creation, full verification, and every binding a forger could break."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from x509_factory import self_signed_certificate

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee import (
    Policy,
    SimulatedPlatform,
    SimulatedTee,
    Verifier,
    create_ratls_certificate,
    inspect_ratls_certificate,
    verify_ratls_certificate,
)
from sealfl.tee.dice import (
    DICE_EVIDENCE_OID,
    GRAMINE_LEGACY_OIDS,
    SIMULATED_EVIDENCE_OID,
    decode_tagged_evidence,
    encode_claims,
    encode_tagged_evidence,
    report_data_for,
)
from sealfl.tee.ratls import read_certificate_evidence

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def certificate_with(oid: x509.ObjectIdentifier, value: bytes) -> bytes:
    """A self-signed certificate with a fresh key carrying ``value`` under ``oid``."""
    return self_signed_certificate(
        subject="forged",
        extensions=[(oid, value)],
        not_before=T0 - timedelta(days=1),
        not_after=T0 + timedelta(days=1),
        hash_algorithm=hashes.SHA384(),
    )


def evidence_value(cert_pem: bytes, oid: x509.ObjectIdentifier) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_pem)
    value = cert.extensions.get_extension_for_oid(oid).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def test_round_trip_carries_claims(tee: SimulatedTee, simulated_policy: Policy) -> None:
    creds = create_ratls_certificate(
        tee, claims={"paillier-pk-hash": b"\x11" * 32}, nonce=b"n-1", now=T0
    )
    peer = verify_ratls_certificate(
        creds.cert_pem, Verifier(simulated_policy), now=T0, expected_nonce=b"n-1"
    )
    assert peer.backend == "simulated"
    assert peer.evidence_format == "simulated"
    assert peer.measurements["measurement"] == tee.measurement.hex()
    assert peer.claims == {"paillier-pk-hash": b"\x11" * 32, "nonce": b"n-1"}
    assert peer.issued_at == T0
    assert peer.tcb_status == "UpToDate"  # what the simulated platform states
    peer.require_claim("paillier-pk-hash", b"\x11" * 32)
    with pytest.raises(AttestationError, match="paillier-pk-hash"):
        peer.require_claim("paillier-pk-hash", b"\x22" * 32)
    key = serialization.load_pem_private_key(creds.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_each_certificate_is_unique(tee: SimulatedTee) -> None:
    certs = [
        x509.load_pem_x509_certificate(create_ratls_certificate(tee, now=T0).cert_pem)
        for _ in range(2)
    ]
    assert certs[0].subject != certs[1].subject
    ski = [c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value for c in certs]
    aki = [c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value for c in certs]
    assert ski[0] != ski[1]
    assert [a.key_identifier for a in aki] == [s.digest for s in ski]
    assert certs[0].serial_number != certs[1].serial_number


def test_validity_period_and_freshness(
    tee: SimulatedTee, platform: SimulatedPlatform, simulated_policy: Policy
) -> None:
    creds = create_ratls_certificate(tee, lifetime=timedelta(minutes=10), now=T0)
    verifier = Verifier(simulated_policy)
    with pytest.raises(AttestationError, match="expired"):
        verify_ratls_certificate(creds.cert_pem, verifier, now=T0 + timedelta(minutes=11))
    with pytest.raises(AttestationError, match="not yet valid"):
        verify_ratls_certificate(creds.cert_pem, verifier, now=T0 - timedelta(hours=1))
    strict = Verifier(
        Policy.for_simulated(
            measurements=[tee.measurement],
            platform_fingerprints=[platform.fingerprint],
            max_evidence_age=timedelta(minutes=5),
        )
    )
    verify_ratls_certificate(creds.cert_pem, strict, now=T0 + timedelta(minutes=4))
    with pytest.raises(AttestationError, match="iat"):
        verify_ratls_certificate(creds.cert_pem, strict, now=T0 + timedelta(minutes=6))
    with pytest.raises(AttestationError, match="nonce"):
        verify_ratls_certificate(creds.cert_pem, verifier, now=T0, expected_nonce=b"x")


def test_verifier_clock_is_used_by_default(tee: SimulatedTee, simulated_policy: Policy) -> None:
    creds = create_ratls_certificate(tee, lifetime=timedelta(minutes=10), now=T0)
    late = Verifier(simulated_policy, now=lambda: (T0 + timedelta(hours=1)).timestamp())
    with pytest.raises(AttestationError, match="expired"):
        verify_ratls_certificate(creds.cert_pem, late)


@pytest.mark.parametrize("name", ["pubkey-hash", "iat"])
def test_reserved_claims_are_refused(tee: SimulatedTee, name: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        create_ratls_certificate(tee, claims={name: b"x"})


def test_evidence_moved_to_another_key_is_refused(
    tee: SimulatedTee, simulated_policy: Policy
) -> None:
    genuine = create_ratls_certificate(tee, now=T0).cert_pem
    moved = certificate_with(
        SIMULATED_EVIDENCE_OID, evidence_value(genuine, SIMULATED_EVIDENCE_OID)
    )
    with pytest.raises(AttestationError, match="pubkey-hash"):
        verify_ratls_certificate(moved, Verifier(simulated_policy), now=T0)


def test_claims_changed_after_quoting_are_refused(
    tee: SimulatedTee, simulated_policy: Policy
) -> None:
    genuine = create_ratls_certificate(tee, now=T0).cert_pem
    quote, _ = decode_tagged_evidence(evidence_value(genuine, SIMULATED_EVIDENCE_OID))
    evidence = read_certificate_evidence(genuine)
    claims = dict(evidence.claims)
    claims["paillier-pk-hash"] = b"\x00" * 32
    tampered = certificate_with(
        SIMULATED_EVIDENCE_OID, encode_tagged_evidence(quote, encode_claims(claims))
    )
    with pytest.raises(AttestationError, match=r"report_data\[0:32\]"):
        verify_ratls_certificate(tampered, Verifier(simulated_policy), now=T0)


def test_simulated_quote_under_real_oid_is_refused(tee: SimulatedTee) -> None:
    claims = encode_claims({"pubkey-hash": b""})
    quote = tee.quote(report_data_for(claims))
    for oid, value in (
        (DICE_EVIDENCE_OID, encode_tagged_evidence(quote, claims)),
        (GRAMINE_LEGACY_OIDS[0], quote),
    ):
        with pytest.raises(AttestationError, match="simulated quote inside a real"):
            read_certificate_evidence(certificate_with(oid, value))


def test_certificate_without_evidence_is_refused(simulated_policy: Policy) -> None:
    plain = certificate_with(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00")
    with pytest.raises(AttestationError, match="no RA-TLS evidence extension"):
        verify_ratls_certificate(plain, Verifier(simulated_policy), now=T0)
    with pytest.raises(AttestationError, match="not a PEM"):
        verify_ratls_certificate(b"garbage", Verifier(simulated_policy), now=T0)


def test_inspect_simulated(tee: SimulatedTee) -> None:
    creds = create_ratls_certificate(tee, claims={"k": b"v"}, now=T0)
    report = inspect_ratls_certificate(creds.cert_pem)
    assert report.format == "simulated"
    assert report.key_binding_holds
    assert report.measurements["measurement"] == tee.measurement.hex()
    assert report.claims["k"] == b"v".hex()
    moved = certificate_with(
        SIMULATED_EVIDENCE_OID, evidence_value(creds.cert_pem, SIMULATED_EVIDENCE_OID)
    )
    assert not inspect_ratls_certificate(moved).key_binding_holds


def test_a_duplicated_extension_raises_attestation_error(
    tee: SimulatedTee, simulated_policy: Policy
) -> None:
    der = x509.load_pem_x509_certificate(create_ratls_certificate(tee, now=T0).cert_pem)
    der_bytes = der.public_bytes(serialization.Encoding.DER)
    ski_oid, aki_oid = bytes.fromhex("0603551d0e"), bytes.fromhex("0603551d23")
    assert der_bytes.count(ski_oid) == 1
    # Turn the SKI extension into a second AKI: the certificate still parses, its extensions don't.
    twice = x509.load_der_x509_certificate(der_bytes.replace(ski_oid, aki_oid))
    pem = twice.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(AttestationError, match="Duplicate"):
        verify_ratls_certificate(pem, Verifier(simulated_policy), now=T0)
    with pytest.raises(AttestationError, match="Duplicate"):
        inspect_ratls_certificate(pem)

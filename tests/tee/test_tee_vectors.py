"""Real SGX/TDX quotes from ../shared/vectors reach the verdicts their README states."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace

import pytest

from sealfl.errors import ConfigError
from sealfl.tee import Collateral, Policy, SgxIdentity, TdxIdentity, Verifier, parse_quote_report

SGX_MR_ENCLAVE = bytes.fromhex("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")
SGX_MR_SIGNER = bytes.fromhex("815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6")
TDX_MR_TD = bytes.fromhex(
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
)
TDX_RTMR0 = bytes.fromhex(
    "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
)
TDX_RTMR1 = bytes.fromhex(
    "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378"
)
TDX_RTMR2 = bytes.fromhex(
    "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
)
TDX_REPORT_DATA = bytes.fromhex(
    "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
    "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
)
INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
ONE_YEAR = 365 * 24 * 3600

SGX_STRICT = Policy(sgx=(SgxIdentity(mr_enclave=SGX_MR_ENCLAVE, mr_signer=SGX_MR_SIGNER),))
SGX_LENIENT = replace(
    SGX_STRICT, tcb_statuses=frozenset({"UpToDate", "ConfigurationAndSWHardeningNeeded"})
)
TDX_IDENTITY = TdxIdentity(mr_td=TDX_MR_TD, rtmrs=(TDX_RTMR0, TDX_RTMR1, TDX_RTMR2, bytes(48)))
TDX_DYNAMIC_OK = Policy(tdx=(TDX_IDENTITY,), allow_dynamic_platform=True, allow_cached_keys=True)


def verifier(policy, vector, intel_root):
    return Verifier(
        policy,
        collateral=Collateral.load(vector.collateral_path),
        now=lambda: vector.at,
        root_ca_der=intel_root,
    )


def test_pinned_root_is_intel(intel_root: bytes) -> None:
    assert hashlib.sha256(intel_root).hexdigest() == INTEL_ROOT_SHA256


def test_sgx_strict_policy_refuses_its_tcb(sgx_vector, intel_root) -> None:
    verdict = verifier(SGX_STRICT, sgx_vector, intel_root).appraise(sgx_vector.quote)
    assert not verdict.accepted
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verdict.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert any("ConfigurationAndSWHardeningNeeded" in r for r in verdict.reasons)
    assert verdict.backend == "sgx" and verdict.quote_version == 3


def test_sgx_lenient_policy_accepts(sgx_vector, intel_root) -> None:
    verdict = verifier(SGX_LENIENT, sgx_vector, intel_root).verify(sgx_vector.quote)
    assert verdict.accepted, verdict.reasons
    m = verdict.measurements
    assert m["mr_enclave"] == SGX_MR_ENCLAVE.hex()
    assert m["mr_signer"] == SGX_MR_SIGNER.hex()
    assert (m["isv_prod_id"], m["isv_svn"]) == ("0", "0")
    assert m["attributes"][:2] == "05"
    assert verdict.debug is False
    assert verdict.report_data == b"Hello, world!".ljust(64, b"\x00")


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (SgxIdentity(mr_enclave=bytes(32)), "mr_enclave: expected 0000"),
        (SgxIdentity(mr_signer=bytes(32)), "mr_signer: expected 0000"),
        (SgxIdentity(mr_signer=SGX_MR_SIGNER, isv_prod_id=1), "isv_prod_id: expected 1, found 0"),
        (SgxIdentity(mr_signer=SGX_MR_SIGNER, min_isv_svn=1), "isv_svn: expected at least 1"),
    ],
)
def test_sgx_identity_mismatch(sgx_vector, intel_root, identity, reason) -> None:
    policy = replace(SGX_LENIENT, sgx=(identity,))
    verdict = verifier(policy, sgx_vector, intel_root).appraise(sgx_vector.quote)
    assert not verdict.accepted
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_any_listed_identity_may_match(sgx_vector, intel_root) -> None:
    policy = replace(
        SGX_LENIENT, sgx=(SgxIdentity(mr_enclave=bytes(32)), SgxIdentity(mr_signer=SGX_MR_SIGNER))
    )
    assert verifier(policy, sgx_vector, intel_root).appraise(sgx_vector.quote).accepted
    only_wrong = replace(SGX_LENIENT, sgx=(SgxIdentity(mr_enclave=bytes(32)),) * 2)
    verdict = verifier(only_wrong, sgx_vector, intel_root).appraise(sgx_vector.quote)
    assert "matches none of the 2 SGX identities" in verdict.reasons[0]


def test_rejected_advisory(sgx_vector, intel_root) -> None:
    policy = replace(SGX_LENIENT, rejected_advisories=frozenset({"INTEL-SA-00615"}))
    verdict = verifier(policy, sgx_vector, intel_root).appraise(sgx_vector.quote)
    assert verdict.reasons == ("advisories refused by policy: INTEL-SA-00615",)


def test_sgx_quote_needs_an_sgx_identity(sgx_vector, intel_root) -> None:
    policy = replace(TDX_DYNAMIC_OK, tcb_statuses=SGX_LENIENT.tcb_statuses)
    verdict = verifier(policy, sgx_vector, intel_root).appraise(sgx_vector.quote)
    assert verdict.reasons == ("policy lists no acceptable SGX identity",)


def test_tdx_dynamic_platform_must_be_allowed_explicitly(tdx_vector, intel_root) -> None:
    strict = Policy(tdx=(TDX_IDENTITY,))
    verdict = verifier(strict, tdx_vector, intel_root).appraise(tdx_vector.quote)
    assert not verdict.accepted
    assert verdict.tcb_status == "UpToDate"
    assert any("allow_dynamic_platform = false" in r for r in verdict.reasons)
    assert any("allow_cached_keys = false" in r for r in verdict.reasons)


def test_tdx_accepted_with_explicit_platform_choice(tdx_vector, intel_root) -> None:
    verdict = verifier(TDX_DYNAMIC_OK, tdx_vector, intel_root).verify(
        tdx_vector.quote, report_data=TDX_REPORT_DATA
    )
    assert verdict.accepted and verdict.tcb_status == "UpToDate" and verdict.advisories == ()
    assert verdict.backend == "tdx" and verdict.quote_version == 4
    assert verdict.measurements["td_attributes"] == "0000001000000000"
    assert verdict.measurements["rtmr3"] == "00" * 48
    assert verdict.debug is False


def test_tdx_rtmr_mismatch(tdx_vector, intel_root) -> None:
    identity = TdxIdentity(mr_td=TDX_MR_TD, rtmrs=(None, None, None, b"\x01" * 48))
    policy = replace(TDX_DYNAMIC_OK, tdx=(identity,))
    verdict = verifier(policy, tdx_vector, intel_root).appraise(tdx_vector.quote)
    assert verdict.reasons == (f"rtmr3: expected {'01' * 48}, found {'00' * 48}",)


def test_tdx_v5_outdated_is_refused(tdx_outdated_vector, intel_root) -> None:
    policy = replace(TDX_DYNAMIC_OK, tcb_statuses=frozenset({"UpToDate", "OutOfDate"}))
    verdict = verifier(policy, tdx_outdated_vector, intel_root).appraise(tdx_outdated_vector.quote)
    assert not verdict.accepted
    assert verdict.quote_version == 5 and verdict.backend == "tdx"
    assert "No matching TCB level" in verdict.reasons[0]


@pytest.mark.parametrize("offset", [ONE_YEAR, -30 * 24 * 3600])
@pytest.mark.parametrize("name", ["sgx_vector", "tdx_vector"])
def test_time_outside_collateral_window_is_refused(request, intel_root, name, offset) -> None:
    vector = request.getfixturevalue(name)
    policy = replace(TDX_DYNAMIC_OK, sgx=SGX_LENIENT.sgx, tcb_statuses=SGX_LENIENT.tcb_statuses)
    v = verifier(policy, vector, intel_root)
    assert v.appraise(vector.quote).accepted
    late = v.appraise(vector.quote, now=vector.at + offset)
    assert not late.accepted
    assert "DCAP verification" in late.reasons[0]


def signed_ranges(quote: bytes) -> list[range]:
    """Byte ranges covered by a signature: body (attestation key), QE report and auth data."""
    version, _, tee_type = struct.unpack_from("<HHI", quote, 0)
    body_end = 48 + (384 if tee_type == 0 else 584)
    sig_start = body_end + 4
    after_key = sig_start + 128
    # v4: a certification-data header (type 6, size) wraps QE report, signature and auth data
    qe_start = after_key if version == 3 else after_key + 6
    auth_len_at = qe_start + 384 + 64
    (auth_len,) = struct.unpack_from("<H", quote, auth_len_at)
    return [
        range(0, body_end),
        range(sig_start, after_key),
        range(qe_start, auth_len_at + 2 + auth_len),
    ]


@pytest.mark.parametrize("name", ["sgx_vector", "tdx_vector"])
def test_every_flipped_signed_byte_is_refused(request, intel_root, name) -> None:
    vector = request.getfixturevalue(name)
    policy = replace(TDX_DYNAMIC_OK, sgx=SGX_LENIENT.sgx, tcb_statuses=SGX_LENIENT.tcb_statuses)
    v = verifier(policy, vector, intel_root)
    accepted = []
    for span in signed_ranges(vector.quote):
        for index in span:
            tampered = bytearray(vector.quote)
            tampered[index] ^= 0x01
            if v.appraise(bytes(tampered)).accepted:
                accepted.append(index)
    assert accepted == []


def test_no_collateral_refuses(sgx_vector) -> None:
    verdict = Verifier(SGX_LENIENT).appraise(sgx_vector.quote)
    assert verdict.reasons == ("no collateral given: real quotes cannot be verified",)
    assert verdict.measurements["mr_enclave"] == SGX_MR_ENCLAVE.hex()


def test_other_trust_anchor_refuses(sgx_vector, tdx_vector) -> None:
    # Pin a valid certificate that is not Intel's root: the PCK chain no longer verifies.
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import load_pem_x509_certificates

    pem_start = sgx_vector.quote.index(b"-----BEGIN CERTIFICATE-----")
    chain = load_pem_x509_certificates(sgx_vector.quote[pem_start:].rstrip(b"\x00"))
    not_root = chain[0].public_bytes(Encoding.DER)
    verdict = verifier(SGX_LENIENT, sgx_vector, not_root).appraise(sgx_vector.quote)
    assert not verdict.accepted


def test_garbage_is_refused_not_raised() -> None:
    for garbage in (b"", b"\x03\x00" + bytes(100), bytes(5000)):
        verdict = Verifier(SGX_LENIENT).appraise(garbage)
        assert not verdict.accepted and verdict.backend == "unknown"


def test_collateral_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match=str(bad)):
        Collateral.load(bad)
    with pytest.raises(ConfigError, match="cannot read collateral"):
        Collateral.load(tmp_path / "missing.json")


def test_parse_without_verifying(tdx_outdated_vector) -> None:
    report = parse_quote_report(tdx_outdated_vector.quote)
    assert (report.tee, report.version) == ("tdx", 5)


def test_collateral_is_chosen_per_platform_family(sgx_vector, tdx_vector, intel_root) -> None:
    both = [
        Collateral.load(sgx_vector.collateral_path),
        Collateral.load(tdx_vector.collateral_path),
    ]
    policy = replace(TDX_DYNAMIC_OK, sgx=SGX_LENIENT.sgx, tcb_statuses=SGX_LENIENT.tcb_statuses)
    v = Verifier(policy, collateral=both, root_ca_der=intel_root)
    assert v.appraise(sgx_vector.quote, now=sgx_vector.at).accepted
    assert v.appraise(tdx_vector.quote, now=tdx_vector.at).accepted
    only_tdx = Verifier(policy, collateral=both[1], root_ca_der=intel_root)
    verdict = only_tdx.appraise(sgx_vector.quote, now=sgx_vector.at)
    assert verdict.reasons == (
        "no collateral for SGX FMSPC 00A067110000: expected one of the given collateral to "
        "match, have TDX B0C06F000000",
    )

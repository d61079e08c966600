"""Platform and identity rules of a Policy, including the debug bits read from real quotes."""

from __future__ import annotations

import pytest

from sealfl.errors import ConfigError
from sealfl.tee import Policy, SgxIdentity, TdxIdentity, parse_quote_report

SGX_ATTRIBUTES_AT = 48 + 48  # quote header + ATTRIBUTES offset in the SGX report body
TDX_TD_ATTRIBUTES_AT = 48 + 120  # quote header + TD_ATTRIBUTES offset in the TD report
CLEAN = {"tee": "sgx", "tcb_status": "UpToDate", "advisories": (), "platform_flags": {}}


def test_debug_bits_are_read_from_the_report_body(sgx_vector, tdx_vector) -> None:
    assert not parse_quote_report(sgx_vector.quote).debug
    assert not parse_quote_report(tdx_vector.quote).debug
    sgx = bytearray(sgx_vector.quote)
    sgx[SGX_ATTRIBUTES_AT] |= 0x02
    assert parse_quote_report(bytes(sgx)).debug
    tdx = bytearray(tdx_vector.quote)
    assert tdx[TDX_TD_ATTRIBUTES_AT : TDX_TD_ATTRIBUTES_AT + 8].hex() == "0000001000000000"
    tdx[TDX_TD_ATTRIBUTES_AT] |= 0x01
    assert parse_quote_report(bytes(tdx)).debug


@pytest.mark.parametrize(("tee", "kind"), [("sgx", "enclave"), ("tdx", "trust domain")])
def test_debug_refused_unless_allowed(tee: str, kind: str) -> None:
    rules = {**CLEAN, "tee": tee, "debug": True}
    assert Policy().platform_refusals(**rules) == [
        f"debug {kind} refused: policy has allow_debug = false"
    ]
    assert Policy(allow_debug=True).platform_refusals(**rules) == []


def test_tcb_statuses_are_explicit() -> None:
    rules = {**CLEAN, "debug": False, "tcb_status": "SWHardeningNeeded"}
    assert "TCB status" in Policy().platform_refusals(**rules)[0]
    lenient = Policy(tcb_statuses=frozenset({"UpToDate", "SWHardeningNeeded"}))
    assert lenient.platform_refusals(**rules) == []
    with pytest.raises(ConfigError, match="Revoked"):
        Policy(tcb_statuses=frozenset({"Revoked"}))


def test_smt_only_when_allowed() -> None:
    rules = {**CLEAN, "debug": False, "platform_flags": {"smt_enabled": "True"}}
    assert Policy().platform_refusals(**rules) == []
    assert "allow_smt = false" in Policy(allow_smt=False).platform_refusals(**rules)[0]


def test_identities_need_a_pin_and_sizes() -> None:
    with pytest.raises(ConfigError, match="mr_enclave or mr_signer"):
        SgxIdentity(isv_prod_id=1)
    with pytest.raises(ConfigError, match="expected 32 bytes, got 48"):
        SgxIdentity(mr_enclave=bytes(48))
    with pytest.raises(ConfigError, match="mr_td or at least one RTMR"):
        TdxIdentity()
    with pytest.raises(ConfigError, match="4 entries"):
        TdxIdentity(mr_td=bytes(48), rtmrs=(None,))
    with pytest.raises(ConfigError, match=r"0\.\.65535"):
        SgxIdentity(mr_signer=bytes(32), min_isv_svn=70000)


def test_isv_svn_is_a_minimum() -> None:
    identity = SgxIdentity(mr_signer=bytes(32), min_isv_svn=2)
    measured = {"mr_signer": "00" * 32, "isv_svn": "3"}
    assert identity.mismatches(measured) == []
    assert identity.mismatches({**measured, "isv_svn": "1"}) == [
        "isv_svn: expected at least 2, found 1"
    ]

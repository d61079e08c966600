"""Policy files: TOML with strict keys, and cczoo's dynamic_config.json loaded as-is."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sealfl.errors import ConfigError
from sealfl.tee import Collateral, Policy, SgxIdentity, Verifier, load_policy
from sealfl.tee.policy_files import _strip_trailing_commas

MR_ENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MR_SIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
FULL_TOML = f"""
tcb_statuses = ["UpToDate", "ConfigurationAndSWHardeningNeeded"]
rejected_advisories = ["INTEL-SA-00334"]
allow_debug = false
allow_dynamic_platform = true
allow_cached_keys = true
allow_smt = false
max_evidence_age_seconds = 600

[[sgx]]
mr_enclave = "{MR_ENCLAVE}"
mr_signer = "{MR_SIGNER}"
isv_prod_id = 0
min_isv_svn = 0

[[sgx]]
mr_signer = "{"ab" * 32}"

[[tdx]]
mr_td = "{"11" * 48}"
rtmr3 = "{"00" * 48}"

[simulated]
allow = true
measurements = ["{"22" * 32}"]
platform_fingerprints = ["{"33" * 32}"]
"""
# cczoo's published template, trailing commas included.
CCZOO_JSON = f"""{{
    "verify_mr_enclave" : "on",
    "verify_mr_signer" : "on",
    "verify_isv_prod_id" : "on",
    "verify_isv_svn" : "on",
    "sgx_mrs": [
        {{
            "mr_enclave" : "{MR_ENCLAVE}",
            "mr_signer" : "{MR_SIGNER}",
            "isv_prod_id" : "0",
            "isv_svn" : "0"
        }},
    ],
}}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_toml(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "p.toml", FULL_TOML))
    assert policy.tcb_statuses == {"UpToDate", "ConfigurationAndSWHardeningNeeded"}
    assert policy.rejected_advisories == {"INTEL-SA-00334"}
    assert policy.allow_dynamic_platform and policy.allow_cached_keys and not policy.allow_smt
    assert policy.max_evidence_age == timedelta(minutes=10)
    assert policy.sgx[0] == SgxIdentity(
        mr_enclave=bytes.fromhex(MR_ENCLAVE),
        mr_signer=bytes.fromhex(MR_SIGNER),
        isv_prod_id=0,
        min_isv_svn=0,
    )
    assert policy.sgx[1].mr_enclave is None
    assert policy.tdx[0].rtmrs == (None, None, None, bytes(48))
    assert policy.allow_simulated
    assert policy.platform_fingerprints == {"33" * 32}


def test_empty_toml_is_the_strict_default(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "p.toml", ""))
    assert policy == Policy()
    assert policy.tcb_statuses == {"UpToDate"}
    assert not (policy.allow_debug or policy.allow_simulated or policy.allow_dynamic_platform)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow_debugging = true", "top level: unknown key(s) ['allow_debugging']"),
        ('[[sgx]]\nmr_enclave = "00"', "sgx[0].mr_enclave: expected 64 hex digits, got 2"),
        ('[[sgx]]\nmr_enclave = "zz"', "sgx[0].mr_enclave: expected 64 hex digits"),
        ("[[sgx]]\nisv_prod_id = 1", "must pin mr_enclave or mr_signer"),
        ('[[sgx]]\nmrenclave = "00"', "sgx[0]: unknown key(s) ['mrenclave']"),
        ('[[tdx]]\nrtmr4 = "00"', "tdx[0]: unknown key(s) ['rtmr4']"),
        ('tcb_statuses = ["Revoked"]', "unknown or unacceptable TCB status ['Revoked']"),
        ('allow_debug = "no"', "allow_debug: expected true or false"),
        ("[simulated]\nallow = true\nplatform_fingerprints = ['x']", "64 hex digits"),
        ("max_evidence_age_seconds = 0", "max_evidence_age must be positive"),
        ("[[sgx", "not valid TOML"),
    ],
)
def test_toml_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value).count(str(path)) == 1
    assert message in str(info.value)


def test_cczoo_template_loads_as_is(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "dynamic_config.json", CCZOO_JSON))
    assert policy.sgx == (
        SgxIdentity(
            mr_enclave=bytes.fromhex(MR_ENCLAVE),
            mr_signer=bytes.fromhex(MR_SIGNER),
            isv_prod_id=0,
            min_isv_svn=0,
        ),
    )
    assert policy.tcb_statuses == {"UpToDate"} and not policy.allow_debug


def test_cczoo_switched_off_fields_are_not_checked(tmp_path: Path) -> None:
    text = CCZOO_JSON.replace('"verify_mr_enclave" : "on"', '"verify_mr_enclave" : "off"')
    text = text.replace('"verify_isv_svn" : "on"', '"verify_isv_svn" : "off"')
    (identity,) = load_policy(write(tmp_path, "c.json", text)).sgx
    assert identity.mr_enclave is None and identity.min_isv_svn is None
    assert identity.mr_signer == bytes.fromhex(MR_SIGNER)


def test_cczoo_unfilled_template_is_refused(tmp_path: Path) -> None:
    text = CCZOO_JSON.replace(MR_ENCLAVE, "")
    with pytest.raises(ConfigError, match=r"sgx_mrs\[0\]\.mr_enclave: expected 64 hex digits"):
        load_policy(write(tmp_path, "c.json", text))
    everything_off = CCZOO_JSON.replace('"on"', '"off"')
    with pytest.raises(ConfigError, match="must pin mr_enclave or mr_signer"):
        load_policy(write(tmp_path, "off.json", everything_off))


@pytest.mark.parametrize(
    ("lists", "message"),
    [
        ("", "c.json: sgx_mrs: expected a non-empty list of measurements, got nothing"),
        ('"sgx_mrs": []', "c.json: sgx_mrs: expected a non-empty list of measurements, got []"),
        ('"mrs": {}', "c.json: mrs: expected a non-empty list of measurements, got {}"),
    ],
)
def test_cczoo_without_measurements_names_the_list(
    tmp_path: Path, lists: str, message: str
) -> None:
    text = '{"verify_mr_signer": "on"' + (f", {lists}" if lists else "") + "}"
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, "c.json", text))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        ("verify_mr_enclave", "true", 'verify_mr_enclave: expected "on" or "off", got True'),
        ("verify_mr_enclave", '"yes"', 'verify_mr_enclave: expected "on" or "off", got \'yes\''),
        ("verify_isv_svn", "1", 'verify_isv_svn: expected "on" or "off", got 1'),
        ("verify_config_svn", '"on"', "sealfl does not check config_svn"),
    ],
)
def test_cczoo_switches_that_would_silently_widen_are_refused(
    tmp_path: Path, switch: str, value: str, message: str
) -> None:
    text = CCZOO_JSON.replace(f'"{switch}" : "on",\n', "", 1)  # the template's own, if any
    text = text.replace("{\n", f'{{\n    "{switch}" : {value},\n', 1)
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, "c.json", text))
    assert message in str(info.value)


def test_trailing_comma_removal_leaves_strings_alone() -> None:
    assert _strip_trailing_commas('{"a": ",}", "b": [1, 2, ],}') == '{"a": ",}", "b": [1, 2 ]}'
    assert _strip_trailing_commas('{"a\\",}": 1,\n}') == '{"a\\",}": 1\n}'


def test_cczoo_policy_verdict_on_the_real_sgx_quote(sgx_vector, intel_root, tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "dynamic_config.json", CCZOO_JSON))
    verifier = Verifier(
        policy,
        collateral=Collateral.load(sgx_vector.collateral_path),
        now=lambda: sgx_vector.at,
        root_ca_der=intel_root,
    )
    verdict = verifier.appraise(sgx_vector.quote)
    # Identity matches; only the strict TCB default refuses it.
    assert len(verdict.reasons) == 1 and "TCB status" in verdict.reasons[0]

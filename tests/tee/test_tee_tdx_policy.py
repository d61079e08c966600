"""TDX identities beyond MRTD: host-set digests, the TDX module, masked attributes, config files.

Checked against the real TDX quote v4 in ../shared/vectors, verified at the README's time with
a policy that allows its dynamic platform and cached keys.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sealfl.errors import ConfigError
from sealfl.tee import (
    Collateral,
    Policy,
    TdxIdentity,
    Verifier,
    load_policy,
    mr_config_id_of,
    parse_quote_report,
)
from sealfl.tee.policy_files import policy_from_toml

# The TD report body of a v4 quote starts after the 48-byte header (Intel TDX DCAP quote layout).
BODY = 48
TD_REPORT_FIELDS = [
    ("tee_tcb_svn", 16),
    ("mr_seam", 48),
    ("mr_signer_seam", 48),
    ("seam_attributes", 8),
    ("td_attributes", 8),
    ("xfam", 8),
    ("mr_td", 48),
    ("mr_config_id", 48),
    ("mr_owner", 48),
    ("mr_owner_config", 48),
    ("rtmr0", 48),
    ("rtmr1", 48),
    ("rtmr2", 48),
    ("rtmr3", 48),
    ("report_data", 64),
]
# Values the vectors' README states.
README = {
    "mr_td": "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7",
    "rtmr0": "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c"
    "48aca29b220b80b6a540cf994b9bc9c0",
    "rtmr3": "00" * 48,
    "td_attributes": "0000001000000000",
    "report_data": "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
    "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20",
}
# Read from the vector at the offsets above (the README does not list them).
MR_SEAM = bytes.fromhex(
    "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c43"
    "6489d6c8e4f92f160b7cad34207b00c1"
)
XFAM = bytes.fromhex("e702060000000000")
TD_ATTRIBUTES = bytes.fromhex(README["td_attributes"])
ALL = b"\xff" * 8
SEPT_VE_DISABLE = bytes.fromhex("0000001000000000")  # bit 28, as stored (little-endian)

MATCHING = TdxIdentity(
    mr_td=bytes.fromhex(README["mr_td"]),
    rtmrs=(bytes.fromhex(README["rtmr0"]), None, None, bytes(48)),
    mr_config_id=bytes(48),
    mr_owner=bytes(48),
    mr_owner_config=bytes(48),
    mr_seam=MR_SEAM,
    td_attributes=(TD_ATTRIBUTES, ALL),
    xfam=(XFAM, ALL),
)
DYNAMIC_OK = Policy(tdx=(MATCHING,), allow_dynamic_platform=True, allow_cached_keys=True)


def td_report_fields(quote: bytes) -> dict[str, str]:
    fields, offset = {}, BODY
    for name, size in TD_REPORT_FIELDS:
        fields[name] = quote[offset : offset + size].hex()
        offset += size
    return fields


@pytest.fixture(scope="module")
def tdx_verifier(tdx_vector, intel_root):
    def build(policy: Policy) -> Verifier:
        return Verifier(
            policy,
            collateral=Collateral.load(tdx_vector.collateral_path),
            now=lambda: tdx_vector.at,
            root_ca_der=intel_root,
        )

    return build


def test_report_fields_sit_where_the_td_report_layout_says(tdx_vector) -> None:
    raw = td_report_fields(tdx_vector.quote)
    for name, value in README.items():
        assert raw[name] == value, name
    report = parse_quote_report(tdx_vector.quote)
    assert report.report_data.hex() == raw.pop("report_data")
    assert {name: report.measurements[name] for name in raw} == raw


def test_every_pinned_field_matching_is_accepted(tdx_vector, tdx_verifier) -> None:
    verdict = tdx_verifier(DYNAMIC_OK).appraise(tdx_vector.quote)
    assert verdict.accepted, verdict.reasons


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mr_config_id": b"\x01" * 48}, f"mr_config_id: expected {'01' * 48}, found {'00' * 48}"),
        ({"mr_owner": b"\x02" * 48}, f"mr_owner: expected {'02' * 48}, found {'00' * 48}"),
        (
            {"mr_owner_config": b"\x03" * 48},
            f"mr_owner_config: expected {'03' * 48}, found {'00' * 48}",
        ),
        (
            {"mr_seam": bytes(48)},
            f"mr_seam: expected {'00' * 48}, found {MR_SEAM.hex()}",
        ),
        (
            {"td_attributes": (bytes(8), ALL)},
            "td_attributes: expected 0000000000000000 under mask ffffffffffffffff, "
            "found 0000001000000000",
        ),
        (
            {"xfam": (bytes.fromhex("e700000000000000"), ALL)},
            "xfam: expected e700000000000000 under mask ffffffffffffffff, found e702060000000000",
        ),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else "",
)
def test_each_wrong_field_is_refused_by_name(tdx_vector, tdx_verifier, change, reason) -> None:
    policy = replace(DYNAMIC_OK, tdx=(replace(MATCHING, **change),))
    verdict = tdx_verifier(policy).appraise(tdx_vector.quote)
    assert not verdict.accepted
    assert verdict.reasons == (reason,)


def test_masks_check_only_the_masked_bits(tdx_vector, tdx_verifier) -> None:
    # Require SEPT_VE_DISABLE set and ignore every other bit, whatever "expected" says there.
    lenient = replace(MATCHING, td_attributes=(b"\xff" * 8, SEPT_VE_DISABLE))
    policy = replace(DYNAMIC_OK, tdx=(lenient,))
    assert tdx_verifier(policy).appraise(tdx_vector.quote).accepted
    # Require it clear: the vector has it set.
    strict = replace(MATCHING, td_attributes=(bytes(8), SEPT_VE_DISABLE))
    verdict = tdx_verifier(replace(DYNAMIC_OK, tdx=(strict,))).appraise(tdx_vector.quote)
    assert verdict.reasons == (
        "td_attributes: expected 0000000000000000 under mask 0000001000000000, "
        "found 0000001000000000",
    )
    # XFAM: pin only the low byte (x87, SSE, AVX ...), the rest may vary.
    with pytest.raises(ConfigError, match="expected 8 bytes, got 1"):
        TdxIdentity(mr_td=bytes(48), xfam=(bytes(8), b"\xff"))
    low = replace(
        MATCHING, xfam=(bytes.fromhex("e7ffffffffffffff"), bytes.fromhex("ff00000000000000"))
    )
    assert tdx_verifier(replace(DYNAMIC_OK, tdx=(low,))).appraise(tdx_vector.quote).accepted


def test_identity_checks_its_fields() -> None:
    with pytest.raises(ConfigError, match=r"tdx\.mr_seam: expected 48 bytes, got 32"):
        TdxIdentity(mr_td=bytes(48), mr_seam=bytes(32))
    with pytest.raises(ConfigError, match="zero mask checks nothing"):
        TdxIdentity(mr_td=bytes(48), td_attributes=(bytes(8), bytes(8)))
    with pytest.raises(ConfigError, match=r"\(expected value, mask\) pair"):
        TdxIdentity(mr_td=bytes(48), xfam=bytes(8))  # type: ignore[arg-type]
    # The host chooses MRCONFIGID and the owner fields: pinning only them admits any code.
    with pytest.raises(ConfigError, match="mr_td or at least one RTMR"):
        TdxIdentity(mr_config_id=bytes(48), mr_seam=MR_SEAM)


def toml_for(fields: str) -> str:
    return f"""
allow_dynamic_platform = true
allow_cached_keys = true
[[tdx]]
mr_td = "{README["mr_td"]}"
{fields}
"""


def test_toml_keys_load_and_match_the_vector(tmp_path: Path, tdx_vector, tdx_verifier) -> None:
    path = tmp_path / "tdx.toml"
    path.write_text(
        toml_for(
            f"""
rtmr0 = "{README["rtmr0"]}"
mr_config_id = "{"00" * 48}"
mr_owner = "{"00" * 48}"
mr_owner_config = "{"00" * 48}"
mr_seam = "{MR_SEAM.hex()}"
td_attributes = "0000001000000000"
td_attributes_mask = "0000001000000001"
xfam = "{XFAM.hex()}"
"""
        )
    )
    policy = load_policy(path)
    (identity,) = policy.tdx
    assert identity.td_attributes == (TD_ATTRIBUTES, bytes.fromhex("0000001000000001"))
    assert identity.xfam == (XFAM, ALL)  # no mask given: exact
    assert identity.mr_seam == MR_SEAM and identity.mr_owner == bytes(48)
    assert tdx_verifier(policy).appraise(tdx_vector.quote).accepted


def test_mr_config_id_of_is_sha384_of_the_file(tmp_path: Path, tdx_vector, tdx_verifier) -> None:
    role = tmp_path / "configs" / "ps.toml"
    role.parent.mkdir()
    role.write_bytes(b'role = "ps"\nworkload = "homo-lr"\n')
    expected = hashlib.sha384(role.read_bytes()).digest()
    assert mr_config_id_of(role) == expected
    policy_path = tmp_path / "configs" / "policy.toml"
    policy_path.write_text(toml_for('mr_config_id_of = "ps.toml"'))
    policy = load_policy(policy_path)
    assert policy.tdx[0].mr_config_id == expected
    # The vector's TD was launched with a zero MRCONFIGID, so this role config is refused.
    verdict = tdx_verifier(policy).appraise(tdx_vector.quote)
    assert verdict.reasons == (f"mr_config_id: expected {expected.hex()}, found {'00' * 48}",)
    # Loaded from elsewhere, the path is still relative to the policy file.
    assert policy_from_toml(policy_path.read_text(), base_dir=role.parent).tdx == policy.tdx
    with pytest.raises(ConfigError, match="needs the policy file's directory"):
        policy_from_toml(policy_path.read_text())
    absolute = policy_from_toml(toml_for(f"mr_config_id_of = {str(role)!r}"))
    assert absolute.tdx[0].mr_config_id == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            f'mr_config_id = "{"00" * 48}"\nmr_config_id_of = "role.toml"',
            "give mr_config_id or mr_config_id_of, not both",
        ),
        ('td_attributes_mask = "ffffffffffffffff"', "td_attributes_mask: a mask needs its value"),
        ('xfam = "e70206"', "tdx[0].xfam: expected 16 hex digits, got 6"),
        ('xfam = "e702060000000000"\nxfam_mask = "0000000000000000"', "zero mask checks nothing"),
        ('mr_seam = "00"', "tdx[0].mr_seam: expected 96 hex digits, got 2"),
        ('mr_owner_cfg = "00"', "unknown key(s) ['mr_owner_cfg']"),
        ("mr_config_id_of = 3", "mr_config_id_of: expected a file name, got 3"),
    ],
)
def test_bad_tdx_keys_are_errors(tmp_path: Path, fields: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml_for(fields))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_unreadable_config_file_names_both_files(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(toml_for('mr_config_id_of = "missing-role.toml"'))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message and str(tmp_path / "missing-role.toml") in message
    assert "SHA-384" in message

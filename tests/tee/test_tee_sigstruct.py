"""SIGSTRUCT reading, signature checks, and ``sealfl attest policy-from-sig``.

SIGSTRUCTs are built here the way an enclave signer does (SGX SDM layout, real RSA-3072 key with
exponent 3, PKCS#1 v1.5 SHA-256 over bytes 0..128 and 900..1028, integers little-endian), so
the parser is checked against an independent writer.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sealfl.errors import ConfigError
from sealfl.tee import SgxIdentity, load_policy, policy_from_sigstruct, read_sigstruct
from sealfl.tee.policy_files import policy_from_toml
from sealfl.tee.sigstruct import identity_from_sigstruct, parse_sigstruct, parse_sigstruct_json

ENCLAVE_HASH = bytes(range(32))
PROD_ID = 7
SVN = 3


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=3072)


def make_sigstruct(
    key: rsa.RSAPrivateKey,
    *,
    enclave_hash: bytes = ENCLAVE_HASH,
    isv_prod_id: int = PROD_ID,
    isv_svn: int = SVN,
    flags: int = 0x04,  # MODE64BIT, not DEBUG
) -> bytes:
    out = bytearray(1808)
    out[0:16] = bytes.fromhex("06000000e10000000000010000000000")  # HEADER
    struct.pack_into("<I", out, 16, 0)  # VENDOR
    struct.pack_into("<HBB", out, 20, 0x2025, 0x07, 0x19)  # DATE, BCD
    out[24:40] = bytes.fromhex("01010000600000006000000001000000")  # HEADER2
    struct.pack_into("<II", out, 900, 0, 0xFFFFFFFF)  # MISCSELECT, MISCMASK
    struct.pack_into("<QQ", out, 928, flags, 0x3)  # ATTRIBUTES: flags, xfrm
    struct.pack_into("<QQ", out, 944, 0xFFFFFFFFFFFFFFFD, 0)  # ATTRIBUTEMASK
    out[960:992] = enclave_hash
    struct.pack_into("<HH", out, 1024, isv_prod_id, isv_svn)
    n = key.public_key().public_numbers().n
    signed = bytes(out[0:128] + out[900:1028])
    s = int.from_bytes(key.sign(signed, padding.PKCS1v15(), hashes.SHA256()), "big")
    # Independent check of the encoding: s^3 mod n is the PKCS#1 v1.5 block for SHA-256.
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    block = digest_info + hashlib.sha256(signed).digest()
    assert pow(s, 3, n) == int.from_bytes(
        b"\x00\x01" + b"\xff" * (381 - len(block)) + b"\x00" + block
    )
    out[128:512] = n.to_bytes(384, "little")
    struct.pack_into("<I", out, 512, 3)
    out[516:900] = s.to_bytes(384, "little")
    out[1040:1424] = (s * s // n).to_bytes(384, "little")
    out[1424:1808] = ((s * s % n) * s // n).to_bytes(384, "little")
    return bytes(out)


def mr_signer_of(key: rsa.RSAPrivateKey) -> bytes:
    return hashlib.sha256(key.public_key().public_numbers().n.to_bytes(384, "little")).digest()


@pytest.fixture(scope="module")
def sigstruct(signer) -> bytes:
    return make_sigstruct(signer)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_values(tmp_path: Path, signer, sigstruct: bytes) -> None:
    sig = read_sigstruct(write(tmp_path, "ps.sig", sigstruct))
    assert sig.mr_signer == mr_signer_of(signer)
    assert sig.mr_enclave == ENCLAVE_HASH
    assert (sig.isv_prod_id, sig.isv_svn) == (PROD_ID, SVN)
    assert sig.debug is False and sig.signature_verified is True
    assert sig.date == "2025-07-19"
    assert sig.source == str(tmp_path / "ps.sig")
    debug = parse_sigstruct(make_sigstruct(signer, flags=0x06))
    assert debug.debug is True


def expected_failure(offset: int) -> str:
    """What a flipped byte at ``offset`` must be refused for."""
    if offset < 16:
        return "HEADER at offset 0"
    if 24 <= offset < 40:
        return "HEADER2 at offset 24"
    if 16 <= offset < 20:
        return "VENDOR"
    if offset == 128:  # the modulus's lowest byte: flipping bit 0 makes it even
        return "MODULUS at offset 128: expected an odd 3072-bit integer, got an even"
    if 512 <= offset < 516:
        return "EXPONENT"
    if 1028 <= offset < 1040:
        return "RESERVED"
    if 1040 <= offset < 1424:
        return "Q1"
    if offset >= 1424:
        return "Q2"
    return "SIGNATURE does not verify"  # signed fields, modulus, signature


def test_every_flipped_byte_is_refused_naming_the_check(sigstruct: bytes) -> None:
    wrong: list[tuple[int, str]] = []
    for offset in range(len(sigstruct)):
        tampered = bytearray(sigstruct)
        tampered[offset] ^= 0x01
        try:
            parse_sigstruct(bytes(tampered), source="t.sig")
        except ConfigError as exc:
            if expected_failure(offset) not in str(exc) or "SIGSTRUCT t.sig" not in str(exc):
                wrong.append((offset, str(exc)))
        else:
            wrong.append((offset, "accepted"))
    assert wrong == []


def test_another_key_cannot_sign_for_this_signer(signer, sigstruct: bytes) -> None:
    # Re-sign the same fields with another key but keep the original modulus (MRSIGNER).
    forged = bytearray(make_sigstruct(rsa.generate_private_key(public_exponent=3, key_size=3072)))
    forged[128:512] = sigstruct[128:512]
    with pytest.raises(ConfigError, match="SIGNATURE does not verify"):
        parse_sigstruct(bytes(forged))


def test_wrong_sizes_and_unreadable_files_name_the_file(tmp_path: Path, sigstruct: bytes) -> None:
    short = write(tmp_path, "short.sig", sigstruct[:-1])
    with pytest.raises(ConfigError, match=re.escape(f"SIGSTRUCT {short}: expected a 1808-byte")):
        read_sigstruct(short)
    with pytest.raises(ConfigError, match=r"cannot read SIGSTRUCT .*absent\.sig"):
        read_sigstruct(tmp_path / "absent.sig")


def gramine_json(signer, **changes: object) -> str:
    """What ``gramine-sgx-sigstruct-view --output-format json --verbose`` prints."""
    document: dict[str, object] = {
        "mr_signer": mr_signer_of(signer).hex(),
        "mr_enclave": ENCLAVE_HASH.hex(),
        "isv_prod_id": PROD_ID,
        "isv_svn": SVN,
        "attribute_flags": "0x4",
        "attribute_xfrms": "0x3",
        "misc_select": "0x0",
        "date": "2025-7-19",
        "debug_enclave": False,
    }
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}, indent=4)


def test_json_form(tmp_path: Path, signer) -> None:
    sig = read_sigstruct(write(tmp_path, "ps.json", gramine_json(signer)))
    assert sig.mr_signer == mr_signer_of(signer) and sig.mr_enclave == ENCLAVE_HASH
    assert (sig.isv_prod_id, sig.isv_svn, sig.debug) == (PROD_ID, SVN, False)
    assert sig.signature_verified is False
    # The default (quiet) output has fewer keys; unknown extra keys are ignored too.
    quiet = gramine_json(signer, attribute_flags=None, date=None, future_key=[1, 2])
    assert parse_sigstruct_json(quiet) == parse_sigstruct_json(gramine_json(signer))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mr_signer": None}, "mr_signer: expected 64 hex digits, got nothing"),
        ({"mr_enclave": "abcd"}, "mr_enclave: expected 64 hex digits, got 4"),
        ({"isv_svn": "3"}, "isv_svn: expected an integer 0..65535, got '3'"),
        ({"isv_prod_id": True}, "isv_prod_id: expected an integer 0..65535, got True"),
        ({"isv_prod_id": 70000}, "isv_prod_id: expected an integer 0..65535, got 70000"),
        ({"debug_enclave": "no"}, "debug_enclave: expected true or false, got 'no'"),
    ],
)
def test_json_fields_used_are_strict(tmp_path: Path, signer, changes, message) -> None:
    path = write(tmp_path, "bad.json", gramine_json(signer, **changes))
    with pytest.raises(ConfigError, match=re.escape(f"SIGSTRUCT JSON {path}: {message}")):
        read_sigstruct(path)


def test_policy_round_trips_and_admits_the_right_enclaves(tmp_path: Path, sigstruct) -> None:
    sig = parse_sigstruct(sigstruct, source="ps.sig")
    policy = policy_from_toml(policy_from_sigstruct(sig))
    (identity,) = policy.sgx
    assert identity == SgxIdentity(mr_signer=sig.mr_signer, isv_prod_id=PROD_ID, min_isv_svn=SVN)
    assert policy.tcb_statuses == {"UpToDate"} and not policy.allow_debug
    build = {
        "mr_signer": sig.mr_signer.hex(),
        "mr_enclave": "ee" * 32,  # a later build by the same signer
        "isv_prod_id": str(PROD_ID),
        "isv_svn": str(SVN + 1),
    }
    assert identity.mismatches(build) == []
    assert identity.mismatches({**build, "isv_prod_id": "8"}) == [
        "isv_prod_id: expected 7, found 8"
    ]
    assert identity.mismatches({**build, "isv_svn": "2"}) == [
        "isv_svn: expected at least 3, found 2"
    ]
    pinned = policy_from_toml(policy_from_sigstruct(sig, with_mr_enclave=True, min_isv_svn=1))
    assert pinned.sgx[0] == SgxIdentity(
        mr_signer=sig.mr_signer, mr_enclave=ENCLAVE_HASH, isv_prod_id=PROD_ID, min_isv_svn=1
    )
    assert pinned.sgx[0].mismatches(build) == [
        f"mr_enclave: expected {ENCLAVE_HASH.hex()}, found {'ee' * 32}"
    ]
    with pytest.raises(ConfigError, match=r"0\.\.65535"):
        identity_from_sigstruct(sig, min_isv_svn=-1)


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """Run the real entry point (with its error-to-exit-code mapping) in this process."""
    from sealfl.cli.main import main  # the whole CLI: only the CLI tests need it

    monkeypatch.setattr("sys.argv", ["sealfl", *args])
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping of long paths in error lines
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code or 0, captured.out, " ".join(captured.err.split())


def test_cli_writes_a_loadable_policy(monkeypatch, capsys, tmp_path: Path, sigstruct) -> None:
    sig_path = write(tmp_path, "ps.sig", sigstruct)
    code, out, _ = run(monkeypatch, capsys, "attest", "policy-from-sig", str(sig_path))
    assert code == 0
    expected = identity_from_sigstruct(read_sigstruct(sig_path))
    assert policy_from_toml(out).sgx == (expected,)

    out_path = tmp_path / "policies" / "ps.toml"
    out_path.parent.mkdir()
    args = ["--out", str(out_path), "--with-mr-enclave", "--min-isv-svn", "2"]
    code, out, err = run(monkeypatch, capsys, "attest", "policy-from-sig", str(sig_path), *args)
    assert code == 0 and out == "" and str(out_path) in err
    assert load_policy(out_path).sgx == (
        SgxIdentity(
            mr_signer=expected.mr_signer, mr_enclave=ENCLAVE_HASH, isv_prod_id=7, min_isv_svn=2
        ),
    )


def test_cli_json_and_warnings(monkeypatch, capsys, tmp_path: Path, signer) -> None:
    json_path = write(tmp_path, "ps.json", gramine_json(signer, debug_enclave=True))
    code, out, err = run(
        monkeypatch, capsys, "attest", "policy-from-sig", str(json_path), "--min-isv-svn", "9"
    )
    assert code == 0
    assert policy_from_toml(out).sgx[0].min_isv_svn == 9
    assert "carries no signature" in err
    assert "DEBUG enclave" in err
    assert "this build itself is refused" in err


def test_cli_bad_input_exits_2_naming_the_file(monkeypatch, capsys, tmp_path, sigstruct) -> None:
    tampered = bytearray(sigstruct)
    tampered[1024] ^= 0x01  # ISVPRODID
    bad = write(tmp_path, "tampered.sig", bytes(tampered))
    code, out, err = run(monkeypatch, capsys, "attest", "policy-from-sig", str(bad))
    assert (code, out) == (2, "")
    assert "tampered.sig" in err and "SIGNATURE does not verify" in err

    garbage = write(tmp_path, "garbage.sig", b"not a sigstruct")
    code, _, err = run(monkeypatch, capsys, "attest", "policy-from-sig", str(garbage))
    assert code == 2 and "garbage.sig" in err and "1808" in err

    code, _, err = run(monkeypatch, capsys, "attest", "policy-from-sig", str(tmp_path / "no.sig"))
    assert code == 2 and "no.sig" in err

"""``sealfl attest``: verdicts and exit codes (0 accepted, 1 refused, 2 unusable input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealfl.cli.main import main
from sealfl.tee import SimulatedTee, create_ratls_certificate

SGX_POLICY = """
tcb_statuses = ["UpToDate", "ConfigurationAndSWHardeningNeeded"]
[[sgx]]
mr_enclave = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
isv_prod_id = 0
"""
TDX_MR_TD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)
TDX_POLICY = f"""
allow_dynamic_platform = true
allow_cached_keys = true
[[tdx]]
mr_td = "{TDX_MR_TD}"
"""


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """Run the real entry point (with its error-to-exit-code mapping) in this process."""
    monkeypatch.setattr("sys.argv", ["sealfl", *args])
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps error lines at 80 columns otherwise
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code or 0, captured.out, captured.err


def verify_args(vector, *extra: str) -> list[str]:
    return [
        "attest",
        "verify",
        str(vector.quote_path),
        "--collateral",
        str(vector.collateral_path),
        "--at",
        str(vector.at),
        *extra,
    ]


def test_verify_without_policy_reports_and_refuses_the_tcb(monkeypatch, capsys, sgx_vector) -> None:
    code, out, _ = run(monkeypatch, capsys, *verify_args(sgx_vector))
    assert code == 1
    assert "verdict: REFUSED" in out
    assert "tcb status: ConfigurationAndSWHardeningNeeded" in out
    assert "INTEL-SA-00289, INTEL-SA-00615" in out
    assert "mr_enclave: 33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb" in out
    assert "measurements not checked" in out


def test_verify_with_policy_accepts(monkeypatch, capsys, sgx_vector, tmp_path: Path) -> None:
    policy = tmp_path / "sgx.toml"
    policy.write_text(SGX_POLICY)
    code, out, _ = run(monkeypatch, capsys, *verify_args(sgx_vector, "--policy", str(policy)))
    assert code == 0, out
    assert "verdict: ACCEPTED" in out


def test_verify_json(monkeypatch, capsys, tdx_vector, tmp_path: Path) -> None:
    policy = tmp_path / "tdx.toml"
    policy.write_text(TDX_POLICY)
    code, out, _ = run(
        monkeypatch, capsys, *verify_args(tdx_vector, "--policy", str(policy), "--json")
    )
    assert code == 0, out
    document = json.loads(out)
    assert document["accepted"] is True
    assert document["tcb_status"] == "UpToDate"
    assert document["quote_version"] == 4
    assert document["measurements"]["rtmr3"] == "00" * 48


def test_verify_outside_the_window_refuses(monkeypatch, capsys, tdx_vector, tmp_path: Path) -> None:
    policy = tmp_path / "tdx.toml"
    policy.write_text(TDX_POLICY)
    args = verify_args(tdx_vector, "--policy", str(policy))
    args[args.index("--at") + 1] = str(tdx_vector.at + 365 * 24 * 3600)
    code, out, _ = run(monkeypatch, capsys, *args)
    assert code == 1
    assert "collateral expired" in out


def test_verify_unusable_inputs_exit_2(monkeypatch, capsys, sgx_vector, tmp_path: Path) -> None:
    missing = verify_args(sgx_vector)
    missing[2] = str(tmp_path / "absent")
    assert run(monkeypatch, capsys, *missing)[0] == 2

    not_a_quote = tmp_path / "garbage"
    not_a_quote.write_bytes(b"\x03\x00" + bytes(64))
    garbage = verify_args(sgx_vector)
    garbage[2] = str(not_a_quote)
    code, _, err = run(monkeypatch, capsys, *garbage)
    assert code == 2 and "not a usable quote" in err

    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text("allow_everything = true")
    code, _, err = run(monkeypatch, capsys, *verify_args(sgx_vector, "--policy", str(bad_policy)))
    assert code == 2 and "allow_everything" in err

    bad_collateral = verify_args(sgx_vector)
    bad_collateral[4] = str(not_a_quote)
    assert run(monkeypatch, capsys, *bad_collateral)[0] == 2


def test_inspect(monkeypatch, capsys, tee: SimulatedTee, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(create_ratls_certificate(tee, claims={"model": b"\x01\x02"}).cert_pem)
    code, out, _ = run(monkeypatch, capsys, "attest", "inspect", str(cert))
    assert code == 0, out
    assert "format: simulated" in out
    assert f"measurement: {tee.measurement.hex()}" in out
    assert "key binding: holds" in out
    assert "model: 0102" in out

    code, out, _ = run(monkeypatch, capsys, "attest", "inspect", str(cert), "--json")
    assert code == 0 and json.loads(out)["key_binding_holds"] is True

    not_cert = tmp_path / "x.pem"
    not_cert.write_text("hello")
    code, _, err = run(monkeypatch, capsys, "attest", "inspect", str(not_cert))
    assert code == 2 and "not a PEM" in err


def test_inspect_reports_a_broken_binding(monkeypatch, capsys, sgx_vector, tmp_path: Path) -> None:
    from x509_factory import self_signed_certificate

    from sealfl.tee.dice import GRAMINE_LEGACY_OIDS

    cert_pem = self_signed_certificate(
        subject="RATLS", extensions=[(GRAMINE_LEGACY_OIDS[0], sgx_vector.quote)]
    )
    path = tmp_path / "legacy.pem"
    path.write_bytes(cert_pem)
    code, out, _ = run(monkeypatch, capsys, "attest", "inspect", str(path))
    assert code == 1
    assert "format: gramine-legacy" in out and "key binding: DOES NOT HOLD" in out


def test_measure_and_simulated_platform(monkeypatch, capsys, tmp_path: Path) -> None:
    from sealfl.tee import measure_code

    code, out, _ = run(monkeypatch, capsys, "attest", "measure", "--config", "role=ps")
    assert code == 0 and out.strip() == measure_code({"role": "ps"}).hex()
    assert run(monkeypatch, capsys, "attest", "measure", "--config", "role")[0] == 2

    code, out, _ = run(monkeypatch, capsys, "attest", "simulated-platform", str(tmp_path / "p"))
    assert code == 0 and len(json.loads(out)["fingerprint"]) == 64
    assert run(monkeypatch, capsys, "attest", "simulated-platform", str(tmp_path / "p"))[0] == 2

"""Simulated platform claims (debug, TCB status): signed, and judged by the real platform rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee import (
    Policy,
    SimulatedPlatform,
    SimulatedTee,
    Verifier,
    create_ratls_certificate,
    verify_ratls_certificate,
)
from sealfl.tee.policy_files import policy_from_toml
from sealfl.tee.simulated import SIMULATED_MARKER, verify_simulated_quote

REPORT_DATA = bytes(range(64))
T0 = datetime(2025, 7, 1, tzinfo=UTC)
DEBUG_REFUSED = "debug enclave refused: policy has allow_debug = false"


def status_refused(status: str) -> str:
    return f"TCB status: expected one of ['UpToDate'], found {status} (advisories: none)"


def test_default_evidence_is_up_to_date_and_accepted(tee: SimulatedTee, simulated_policy) -> None:
    verdict = Verifier(simulated_policy).verify(tee.quote(REPORT_DATA), report_data=REPORT_DATA)
    assert verdict.tcb_status == "UpToDate" and verdict.debug is False
    assert verdict.backend == "simulated"
    assert verdict.measurements["tcb_status"] == "UpToDate"
    assert verdict.measurements["debug"] == "false"


@pytest.mark.parametrize(
    ("claims", "reason", "relaxed"),
    [
        ({"debug": True}, DEBUG_REFUSED, {"allow_debug": True}),
        (
            {"tcb_status": "OutOfDate"},
            status_refused("OutOfDate"),
            {"tcb_statuses": frozenset({"UpToDate", "OutOfDate"})},
        ),
        (
            {"tcb_status": "SWHardeningNeeded"},
            status_refused("SWHardeningNeeded"),
            {"tcb_statuses": frozenset({"SWHardeningNeeded"})},
        ),
    ],
)
def test_platform_rules_apply_with_real_reason_texts(
    platform: SimulatedPlatform, tee: SimulatedTee, simulated_policy, claims, reason, relaxed
) -> None:
    claimed = SimulatedTee(platform, tee.measurement, **claims)
    verdict = Verifier(simulated_policy).appraise(claimed.quote(REPORT_DATA))
    assert not verdict.accepted
    assert verdict.reasons == (reason,)
    # The same text a real quote gets from the same rule.
    real_like = {"tee": "sgx", "tcb_status": "UpToDate", "advisories": (), "platform_flags": {}}
    real_like.update({"debug": False, **claims})
    assert Policy().platform_refusals(**real_like) == [reason]
    accepted = Verifier(replace(simulated_policy, **relaxed)).appraise(claimed.quote(REPORT_DATA))
    assert accepted.accepted, accepted.reasons
    assert accepted.tcb_status == claims.get("tcb_status", "UpToDate")
    assert accepted.debug is claims.get("debug", False)


def test_revoked_is_always_refused(platform: SimulatedPlatform, tee, simulated_policy) -> None:
    revoked = SimulatedTee(platform, tee.measurement, tcb_status="Revoked", debug=True)
    verdict = Verifier(simulated_policy).appraise(revoked.quote(REPORT_DATA))
    assert verdict.reasons == (status_refused("Revoked"), DEBUG_REFUSED)
    with pytest.raises(ConfigError, match="Revoked"):
        replace(simulated_policy, tcb_statuses=frozenset({"Revoked"}))


def test_claims_are_checked_when_made(platform: SimulatedPlatform, tee: SimulatedTee) -> None:
    with pytest.raises(ConfigError, match="simulated tcb_status: expected one of"):
        SimulatedTee(platform, tee.measurement, tcb_status="Fine")
    with pytest.raises(ConfigError, match="simulated debug flag: expected a bool, got int"):
        SimulatedTee(platform, tee.measurement, debug=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="simulated tcb_status"):
        platform.sign_quote(tee.measurement, REPORT_DATA, tcb_status="uptodate")


def decoded(quote: bytes) -> list:
    return cbor2.loads(quote[len(SIMULATED_MARKER) :])


def test_claims_are_inside_the_signature(platform, tee, simulated_policy) -> None:
    """The attack: strip the debug flag / improve the status of a signed quote."""
    items = decoded(SimulatedTee(platform, tee.measurement, debug=True).quote(REPORT_DATA))
    assert items[4] is True
    forged = SIMULATED_MARKER + cbor2.dumps([*items[:4], False, *items[5:]])
    verdict = Verifier(simulated_policy).appraise(forged)
    assert not verdict.accepted
    assert "signature does not verify" in verdict.reasons[0]

    items = decoded(
        SimulatedTee(platform, tee.measurement, tcb_status="OutOfDate").quote(REPORT_DATA)
    )
    forged = SIMULATED_MARKER + cbor2.dumps([*items[:5], "UpToDate", items[6]])
    with pytest.raises(AttestationError, match="signature does not verify"):
        verify_simulated_quote(forged)


def test_malformed_claims_and_old_versions_are_refused(tmp_path: Path, tee) -> None:
    platform = SimulatedPlatform.create(tmp_path / "p")
    pem = (tmp_path / "p" / "platform_key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    def signed(body: list) -> bytes:
        signature = key.sign(SIMULATED_MARKER + cbor2.dumps(body), ec.ECDSA(hashes.SHA256()))
        return SIMULATED_MARKER + cbor2.dumps([*body, signature])

    spki = platform.public_key_der
    with pytest.raises(AttestationError, match="version: expected 2, got 1"):
        verify_simulated_quote(signed([1, tee.measurement, REPORT_DATA, spki]))
    with pytest.raises(AttestationError, match="debug: expected a bool, got int"):
        verify_simulated_quote(signed([2, tee.measurement, REPORT_DATA, spki, 0, "UpToDate"]))
    with pytest.raises(AttestationError, match="tcb_status: expected one of"):
        verify_simulated_quote(signed([2, tee.measurement, REPORT_DATA, spki, False, "Simulated"]))
    with pytest.raises(AttestationError, match="array of 7 items, got 6"):
        verify_simulated_quote(SIMULATED_MARKER + cbor2.dumps([2, 1, 2, 3, 4, 5]))


def test_toml_policy_and_ratls_apply_the_rules(platform, tee: SimulatedTee) -> None:
    debug_tee = SimulatedTee(platform, tee.measurement, debug=True)
    cert = create_ratls_certificate(debug_tee, now=T0).cert_pem
    strict = policy_from_toml(
        f"""
[simulated]
allow = true
measurements = ["{tee.measurement.hex()}"]
platform_fingerprints = ["{platform.fingerprint}"]
"""
    )
    with pytest.raises(AttestationError, match=DEBUG_REFUSED):
        verify_ratls_certificate(cert, Verifier(strict), now=T0)
    peer = verify_ratls_certificate(cert, Verifier(replace(strict, allow_debug=True)), now=T0)
    assert peer.backend == "simulated" and peer.tcb_status == "UpToDate"


def test_inspect_says_simulated_loudly(monkeypatch, capsys, platform, tee, tmp_path: Path) -> None:
    from sealfl.cli.main import main  # the whole CLI: only this test needs it

    claimed = SimulatedTee(platform, tee.measurement, debug=True, tcb_status="OutOfDate")
    cert = tmp_path / "cert.pem"
    cert.write_bytes(create_ratls_certificate(claimed).cert_pem)
    monkeypatch.setattr("sys.argv", ["sealfl", "attest", "inspect", str(cert)])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr().out
    assert (info.value.code or 0) == 0
    assert out.startswith("*** SIMULATED evidence")
    assert "format: simulated" in out
    assert "debug: true" in out and "tcb_status: OutOfDate" in out

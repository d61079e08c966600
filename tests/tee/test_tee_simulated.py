"""The simulated backend: platform files, quotes, measurement, sealing keys, policy gate."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee import Policy, SimulatedPlatform, SimulatedTee, Verifier, measure_code
from sealfl.tee.dcap import parse_quote_report
from sealfl.tee.simulated import SIMULATED_MARKER, verify_simulated_quote

REPORT_DATA = bytes(range(64))


def test_platform_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    platform = SimulatedPlatform.create(tmp_path / "p")
    for path in (tmp_path / "p").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        SimulatedPlatform.create(tmp_path / "p")
    assert SimulatedPlatform.load(tmp_path / "p").fingerprint == platform.fingerprint


def test_load_names_the_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path / "absent")):
        SimulatedPlatform.load(tmp_path / "absent")


def test_load_names_the_file_that_does_not_fit(tmp_path: Path) -> None:
    SimulatedPlatform.create(tmp_path / "p")
    secret = tmp_path / "p" / "sealing_secret.bin"
    secret.write_bytes(bytes(16))
    with pytest.raises(
        ConfigError, match=re.escape(f"{secret}: expected a 32-byte sealing secret, got 16 bytes")
    ):
        SimulatedPlatform.load(tmp_path / "p")
    key = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "p" / "platform_key.pem").write_bytes(key)
    with pytest.raises(
        ConfigError, match=r"platform_key\.pem: expected a P-256 key, got secp384r1"
    ):
        SimulatedPlatform.load(tmp_path / "p")


def test_measurement_depends_on_configuration_not_its_order() -> None:
    a = measure_code({"role": "ps", "workload": "homo-lr"})
    assert a == measure_code({"workload": "homo-lr", "role": "ps"})
    assert a != measure_code({"role": "worker", "workload": "homo-lr"})
    assert a != measure_code()
    assert len(a) == 32
    with pytest.raises(ConfigError, match="must be str"):
        measure_code({"epochs": 3})  # type: ignore[dict-item]


def test_quote_round_trip(tee: SimulatedTee, platform: SimulatedPlatform) -> None:
    quote = tee.quote(REPORT_DATA)
    assert quote.startswith(SIMULATED_MARKER)
    parsed = verify_simulated_quote(quote)
    assert parsed.report_data == REPORT_DATA
    assert parsed.measurement == tee.measurement
    assert parsed.platform_fingerprint == platform.fingerprint


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_report_data_must_be_64_bytes(tee: SimulatedTee, size: int) -> None:
    with pytest.raises(AttestationError, match=f"64 bytes, got {size}"):
        tee.quote(bytes(size))


def test_every_flipped_byte_is_refused(tee: SimulatedTee, simulated_policy: Policy) -> None:
    quote = tee.quote(REPORT_DATA)
    verifier = Verifier(simulated_policy)
    assert verifier.appraise(quote).accepted
    for index in range(len(quote)):
        tampered = bytearray(quote)
        tampered[index] ^= 0x01
        verdict = verifier.appraise(bytes(tampered))
        assert not verdict.accepted, f"flip at byte {index} accepted"


def test_policy_gate(tee: SimulatedTee, platform: SimulatedPlatform, tmp_path: Path) -> None:
    quote = tee.quote(REPORT_DATA)
    refused = Verifier(Policy()).appraise(quote)
    assert not refused.accepted
    assert "allow_simulated" in refused.reasons[0]

    stranger = SimulatedPlatform.create(tmp_path / "stranger")
    untrusted = Verifier(
        Policy.for_simulated(
            measurements=[tee.measurement], platform_fingerprints=[stranger.fingerprint]
        )
    ).appraise(quote)
    assert not untrusted.accepted
    assert platform.fingerprint in untrusted.reasons[0]

    other_code = Verifier(
        Policy.for_simulated(
            measurements=[measure_code({"role": "other"})],
            platform_fingerprints=[platform.fingerprint],
        )
    ).appraise(quote)
    assert not other_code.accepted
    assert tee.measurement.hex() in other_code.reasons[0]


def test_real_verifier_never_accepts_simulated(tee: SimulatedTee) -> None:
    quote = tee.quote(REPORT_DATA)
    with pytest.raises(AttestationError, match="SIMULATED marker"):
        parse_quote_report(quote)


def test_generation_and_acceptance_warn_once_per_identity(
    platform: SimulatedPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    # A measurement no other test uses: this process has not announced it yet.
    fresh = SimulatedTee(platform, os.urandom(32))
    policy = Policy.for_simulated(
        measurements=[fresh.measurement], platform_fingerprints=[platform.fingerprint]
    )
    with caplog.at_level(logging.DEBUG, logger="sealfl.tee"):
        for _ in range(3):
            quote = fresh.quote(REPORT_DATA)
            Verifier(policy).verify(quote, report_data=REPORT_DATA)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("generating simulated evidence" in m for m in warnings) == 1
    assert sum("accepting simulated evidence" in m for m in warnings) == 1
    assert sum("SIMULATED TEE" in m for m in debug) == 4


def test_sealing_keys_bind_platform_code_and_label(
    tee: SimulatedTee, platform: SimulatedPlatform, tmp_path: Path
) -> None:
    key = tee.derive_sealing_key(b"model")
    assert len(key) == 32
    assert key == SimulatedTee(platform, tee.measurement).derive_sealing_key(b"model")
    assert key != tee.derive_sealing_key(b"checkpoint")
    assert key != SimulatedTee(platform, measure_code({"role": "x"})).derive_sealing_key(b"model")
    other = SimulatedPlatform.create(tmp_path / "other")
    assert key != SimulatedTee(other, tee.measurement).derive_sealing_key(b"model")


def test_for_simulated_requires_lists() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Policy.for_simulated(measurements=[], platform_fingerprints=["00" * 32])
    with pytest.raises(ConfigError, match="64 hex digits"):
        Policy.for_simulated(measurements=[bytes(32)], platform_fingerprints=["abc"])


def test_unsigned_trailing_bytes_are_refused(tee: SimulatedTee, simulated_policy: Policy) -> None:
    verdict = Verifier(simulated_policy).appraise(tee.quote(REPORT_DATA) + b"\x00")
    assert not verdict.accepted
    assert "unexpected bytes after the CBOR item" in verdict.reasons[0]

"""``--tee`` selection: auto-detection on fake Gramine and configfs-tsm trees, refusals, pools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from fake_devices import tsm_tree
from shared_files import shared_path

from sealfl.errors import ConfigError
from sealfl.runtime import PartyRuntime, TeeChoice, TeeDevices, TeeKind, detect_tee, parse_tee_kind
from sealfl.tee import (
    SimulatedPlatform,
    SimulatedTee,
    TdxConfigfs,
    inspect_ratls_certificate,
)

TESTS = Path(__file__).resolve().parents[1]


def _no_measurement() -> bytes:
    raise AssertionError("the simulated measurement hook must not be used on a real TEE")


def _vector(name: str) -> bytes:
    return shared_path("vectors", name).read_bytes()


def test_auto_finds_nothing_here_and_names_the_simulated_tee(tmp_path: Path) -> None:
    devices = TeeDevices(gramine_root=tmp_path / "attestation", tsm_root=tmp_path / "tsm")
    with pytest.raises(ConfigError, match="--tee simulated"):
        detect_tee(devices)
    with pytest.raises(ConfigError, match="no TEE found"):
        PartyRuntime.create(
            TeeChoice(TeeKind.AUTO, devices=devices), simulated_measurement=_no_measurement
        )


def test_auto_picks_tdx_and_the_certificate_carries_a_tdx_quote(tmp_path: Path) -> None:
    root = tmp_path / "tsm" / "report"
    responder = tsm_tree(root, _vector("tdx_quote"), entry=f"sealfl-{os.getpid()}")
    try:
        devices = TeeDevices(gramine_root=tmp_path / "no-gramine", tsm_root=root)
        runtime = PartyRuntime.create(
            TeeChoice(TeeKind.AUTO, devices=devices), simulated_measurement=_no_measurement
        )
        assert runtime.kind is TeeKind.TDX
        assert isinstance(runtime.provider, TdxConfigfs)
        inspection = inspect_ratls_certificate(runtime.credentials().cert_pem)
    finally:
        responder.close()
    assert (inspection.format, inspection.backend) == ("tcg-dice", "tdx")
    assert inspection.key_binding_holds  # the quote carries this certificate's claims hash
    assert responder.answered == 1


def test_tdx_has_no_sealing_key_of_its_own(tmp_path: Path) -> None:
    devices = TeeDevices(gramine_root=tmp_path / "none", tsm_root=tmp_path)
    runtime = PartyRuntime.create(
        TeeChoice(TeeKind.TDX, devices=devices), simulated_measurement=_no_measurement
    )
    with pytest.raises(Exception, match="key broker"):
        runtime.sealing_key("homo-lr/model")


def test_a_simulated_platform_is_refused_on_a_real_tee(tmp_path: Path) -> None:
    SimulatedPlatform.create(tmp_path / "platform")
    choice = TeeChoice(TeeKind.TDX, simulated_platform=tmp_path / "platform")
    with pytest.raises(ConfigError, match="applies to --tee simulated only"):
        PartyRuntime.create(choice, simulated_measurement=_no_measurement)


def test_the_simulated_tee_needs_its_platform_and_uses_the_hook(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--simulated-platform DIR"):
        PartyRuntime.create(TeeChoice(TeeKind.SIMULATED), simulated_measurement=lambda: b"")
    platform = SimulatedPlatform.create(tmp_path / "platform")
    runtime = PartyRuntime.create(
        TeeChoice(TeeKind.SIMULATED, simulated_platform=tmp_path / "platform"),
        simulated_measurement=lambda: b"\x07" * 32,
    )
    assert isinstance(runtime.provider, SimulatedTee)
    assert runtime.provider.measurement == b"\x07" * 32
    assert runtime.provider.platform.fingerprint == platform.fingerprint


def test_tee_kind_names() -> None:
    assert parse_tee_kind(" Gramine-SGX ") is TeeKind.GRAMINE_SGX
    with pytest.raises(ConfigError, match="expected one of simulated, gramine-sgx, tdx, auto"):
        parse_tee_kind("sev-snp")


_POOL_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from fake_devices import gramine_tree
    import numpy as np
    from sealfl import he
    from sealfl.runtime import PartyRuntime, SgxSealingKey, TeeChoice, TeeDevices, TeeKind
    from sealfl.tee import SimulatedPlatform, inspect_ratls_certificate

    mode, root, quote = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]).read_bytes()
    if mode == "gramine":
        responder = gramine_tree(root / "attestation", quote)
        devices = TeeDevices(gramine_root=root / "attestation", tsm_root=root / "no-tsm")
        key = SgxSealingKey(sys.argv[5])
        choice = TeeChoice(TeeKind.AUTO, devices=devices, sgx_sealing_key=key)
    else:
        SimulatedPlatform.create(root / "platform")
        choice = TeeChoice(TeeKind.SIMULATED, simulated_platform=root / "platform")
    runtime = PartyRuntime.create(choice, simulated_measurement=lambda: bytes(32))
    inspection = inspect_ratls_certificate(runtime.credentials().cert_pem)
    key_id = runtime.sealing_key("homo-lr/model").key_id.hex()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        public, private = he.generate_keypair(1024)
    values = np.linspace(-1, 1, 400)
    encrypted = he.encrypt_vector(public, values, cores=2)
    assert np.allclose(he.decrypt_vector(private, encrypted), values, atol=1e-6)
    print(json.dumps({
        "kind": runtime.kind.value,
        "backend": inspection.backend,
        "children": sum(
            len(task.joinpath("children").read_text().split())
            for task in Path("/proc/self/task").iterdir()
        ),
        "refusal": he.process_pool_refusal(),
        "key_id": key_id,
    }))
    """
)


def _run_pool_script(tmp_path: Path, mode: str, sealing: str = "mrenclave") -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix=f"{mode}-{sealing}-", dir=tmp_path))
    quote = shared_path("vectors", "sgx_quote")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _POOL_SCRIPT,
            str(Path(__file__).parent),
            mode,
            str(root),
            str(quote),
            sealing,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = result.stderr
    return report


def test_under_gramine_no_process_pool_is_started_and_it_is_said_once(tmp_path: Path) -> None:
    simulated = _run_pool_script(tmp_path, "simulated")
    assert simulated["children"] == 2  # the control: outside Gramine the pool does start
    assert simulated["refusal"] is None

    gramine = _run_pool_script(tmp_path, "gramine")
    assert (gramine["kind"], gramine["backend"]) == ("gramine-sgx", "sgx")
    assert gramine["children"] == 0
    assert "Gramine" in str(gramine["refusal"])
    stderr = str(gramine["stderr"])
    assert stderr.count("without worker processes") == 1


def test_sgx_sealing_keys_follow_the_chosen_gramine_key(tmp_path: Path) -> None:
    by_enclave = _run_pool_script(tmp_path, "gramine", "mrenclave")["key_id"]
    by_signer = _run_pool_script(tmp_path, "gramine", "mrsigner")["key_id"]
    again = _run_pool_script(tmp_path, "gramine", "mrsigner")["key_id"]
    assert by_enclave != by_signer
    assert by_signer == again

"""infer's TEE mode from role configs alone: ``sealfl run --config`` for the server and client."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sealfl.data import breast
from sealfl.fl.infer.common import tee_measurement
from sealfl.fl.infer.demo import train_breast_model
from sealfl.fl.infer.launch import PartyProcess
from sealfl.runtime import PEERS_ENV
from sealfl.tee import SimulatedPlatform

SERVER = """
workload = "infer"
role = "server"

[tee]
kind = "simulated"
simulated_platform = "platform"

[listen]
address = "127.0.0.1:0"

[options]
mode = "tee"
model = "model.npz"            # provisioned into the sealed file at the first start
sealed_model = "model.sealed"
allow_outputs = "probability"  # the default serves the label alone
"""

CLIENT = """
workload = "infer"
role = "client"

[attestation]
policy = "policy-client.toml"

[peers]
server = "127.0.0.1:1"

[options]
mode = "tee"
data = "test.csv"
out = "predictions.csv"
model_sha256 = "{digest}"
"""


def _policy(measurement: bytes, fingerprint: str) -> str:
    return (
        f'[simulated]\nallow = true\nmeasurements = ["{measurement.hex()}"]\n'
        f'platform_fingerprints = ["{fingerprint}"]\n'
    )


def _serve_and_query(
    root: Path, client_policy_measurement: bytes, client_toml: str
) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """Start the TEE server from server.toml, run the client from its config, stop the server."""
    platform = SimulatedPlatform.create(root / "platform")
    breast.write_split("homo_test", root / "test.csv")
    policy = _policy(client_policy_measurement, platform.fingerprint)
    (root / "policy-client.toml").write_text(policy)
    (root / "server.toml").write_text(SERVER)
    (root / "client.toml").write_text(client_toml)
    server = PartyProcess("server", ["run", "--config", str(root / "server.toml")], log_dir=root)
    try:
        ready = server.wait_ready()
        client = subprocess.run(
            [sys.executable, "-m", "sealfl.cli.main", "run", "--config", str(root / "client.toml")],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, PEERS_ENV: f"server={ready['address']}"},
        )
    finally:
        server.stop()
    return ready, client


def test_tee_server_and_client_run_from_role_configs(tmp_path: Path) -> None:
    model = train_breast_model()
    model.save(tmp_path / "model.npz")
    digest = hashlib.sha256(model.to_bytes()).hexdigest()
    ready, client = _serve_and_query(tmp_path, tee_measurement(), CLIENT.format(digest=digest))
    assert ready["tee"] == "simulated" and ready["mode"] == "tee"
    assert (tmp_path / "model.sealed").is_file()
    assert client.returncode == 0, client.stderr
    assert "rows answered" in client.stdout
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    test = breast.load_split("homo_test")
    assert len(rows) == test.n_rows + 1
    got = np.array([float(row.split(",")[1]) for row in rows[1:]])
    np.testing.assert_allclose(got, model.predict_proba(test.X), atol=1e-6)


def test_a_client_whose_policy_names_another_measurement_sends_nothing(tmp_path: Path) -> None:
    train_breast_model().save(tmp_path / "model.npz")
    client_toml = CLIENT.replace('model_sha256 = "{digest}"\n', "")
    _, client = _serve_and_query(tmp_path, bytes(32), client_toml)
    assert client.returncode == 1
    assert "measurement: expected one of" in client.stderr
    assert not (tmp_path / "predictions.csv").exists()


MPC_DEALER = """
workload = "infer"
role = "dealer"

[listen]
address = "127.0.0.1:0"

[options]
key_file = "dealer.key"
"""

MPC_SERVER = """
workload = "infer"
role = "server"

[listen]
address = "127.0.0.1:0"

[peers]
dealer = "127.0.0.1:1"

[options]
mode = "mpc"
model = "model.npz"
dealer_fingerprint = "{dealer}"
key_file = "server.key"
allow_outputs = "{outputs}"
row_budget = 1000
"""

MPC_CLIENT = """
workload = "infer"
role = "client"

[peers]
server = "127.0.0.1:1"

[options]
mode = "mpc"
data = "test.csv"
out = "predictions.csv"
output = "logit"
server_fingerprint = "{server}"
dealer_fingerprint = "{dealer}"
key_file = "client.key"
"""


def test_mpc_dealer_server_and_client_run_from_role_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    model = train_breast_model()
    model.save(tmp_path / "model.npz")
    breast.write_split("homo_test", tmp_path / "test.csv")
    (tmp_path / "dealer.toml").write_text(MPC_DEALER)
    dealer = PartyProcess(
        "dealer", ["run", "--config", str(tmp_path / "dealer.toml")], log_dir=tmp_path
    )
    parties = [dealer]
    try:
        dealer_ready = dealer.wait_ready()
        server_toml = MPC_SERVER.format(dealer=dealer_ready["fingerprint"], outputs="label,logit")
        (tmp_path / "server.toml").write_text(server_toml)
        monkeypatch.setenv(PEERS_ENV, f"dealer={dealer_ready['address']}")
        server = PartyProcess(
            "server", ["run", "--config", str(tmp_path / "server.toml")], log_dir=tmp_path
        )
        parties.append(server)
        ready = server.wait_ready()
        assert ready["outputs"] == "label,logit"
        client_toml = MPC_CLIENT.format(
            server=ready["fingerprint"], dealer=dealer_ready["fingerprint"]
        )
        (tmp_path / "client.toml").write_text(client_toml)
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "sealfl.cli.main",
                "run",
                "--config",
                str(tmp_path / "client.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, PEERS_ENV: f"server={ready['address']}"},
        )
    finally:
        for party in reversed(parties):
            party.stop()
    assert client.returncode == 0, client.stderr
    for name in ("dealer.key", "server.key", "client.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    rows = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    got = np.array([float(row.split(",")[1]) for row in rows])
    np.testing.assert_allclose(
        got, model.predict_proba(breast.load_split("homo_test").X), atol=1e-4
    )


def test_bad_infer_role_options_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sealfl.cli.main import run

    train_breast_model().save(tmp_path / "model.npz")
    config = tmp_path / "server.toml"
    for bad, message in (
        (MPC_SERVER.format(dealer="ab" * 32, outputs="logits"), "options.allow_outputs: 'logits'"),
        (MPC_SERVER.format(dealer="zz", outputs="label"), "options.dealer_fingerprint must be"),
    ):
        config.write_text(bad)
        assert run(["run", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert f"{config}: {message}" in err, err
    assert not (tmp_path / "server.key").exists()

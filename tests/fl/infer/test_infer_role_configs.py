"""infer's TEE mode from role configs alone: ``sealfl run --config`` for the server and client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

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


def test_tee_server_and_client_run_from_role_configs(tmp_path: Path) -> None:
    import hashlib

    platform = SimulatedPlatform.create(tmp_path / "platform")
    model = train_breast_model()
    model.save(tmp_path / "model.npz")
    breast.write_split("homo_test", tmp_path / "test.csv")
    (tmp_path / "policy-client.toml").write_text(_policy(tee_measurement(), platform.fingerprint))
    (tmp_path / "server.toml").write_text(SERVER)
    digest = hashlib.sha256(model.to_bytes()).hexdigest()
    (tmp_path / "client.toml").write_text(CLIENT.format(digest=digest))

    server = PartyProcess(
        "server", ["run", "--config", str(tmp_path / "server.toml")], log_dir=tmp_path
    )
    try:
        ready = server.wait_ready()
        assert ready["tee"] == "simulated"
        assert (tmp_path / "model.sealed").is_file()
        env = {**os.environ, PEERS_ENV: f"server={ready['address']}"}
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
            env=env,
        )
    finally:
        server.stop()
    assert client.returncode == 0, client.stderr
    assert "rows answered" in client.stdout
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    test = breast.load_split("homo_test")
    assert len(rows) == test.n_rows + 1
    got = np.array([float(row.split(",")[1]) for row in rows[1:]])
    np.testing.assert_allclose(got, model.predict_proba(test.X), atol=1e-6)


def test_a_client_whose_policy_names_another_measurement_sends_nothing(tmp_path: Path) -> None:
    platform = SimulatedPlatform.create(tmp_path / "platform")
    train_breast_model().save(tmp_path / "model.npz")
    breast.write_split("homo_test", tmp_path / "test.csv")
    (tmp_path / "policy-client.toml").write_text(_policy(bytes(32), platform.fingerprint))
    (tmp_path / "server.toml").write_text(SERVER)
    (tmp_path / "client.toml").write_text(CLIENT.replace('model_sha256 = "{digest}"\n', ""))
    server = PartyProcess(
        "server", ["run", "--config", str(tmp_path / "server.toml")], log_dir=tmp_path
    )
    try:
        ready = server.wait_ready()
        env = {**os.environ, PEERS_ENV: f"server={ready['address']}"}
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
            env=env,
        )
    finally:
        server.stop()
    assert client.returncode == 1
    assert "measurement: expected one of" in client.stderr
    assert not (tmp_path / "predictions.csv").exists()
    assert json.loads(json.dumps(ready))["mode"] == "tee"

"""infer's TEE mode from role configs alone: ``sealfl run --config`` for the server and client."""

from __future__ import annotations

import hashlib
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

"""The key broker from a role config, releasing a model's key to an attested TEE (model fetch)
and an inference server's sealing key (TDX-style: keys from the broker), all as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealfl.fl.infer.common import tee_measurement
from sealfl.fl.infer.demo import train_breast_model
from sealfl.fl.infer.launch import PartyProcess
from sealfl.kbs import KbsAdmin, read_audit_log
from sealfl.net import (
    TlsCredentials,
    certificate_fingerprint,
    fingerprint_verifier,
    make_self_signed_credentials,
)
from sealfl.runtime import PEERS_ENV
from sealfl.seal import ReleaseKey, ReleasePolicy, write_release
from sealfl.seal.release import Recipient
from sealfl.tee import SimulatedPlatform, measure_code

Site = tuple[Path, dict[str, Any], TlsCredentials]
"""The broker's directory, its ready line, and an admin's credentials."""

EVAL = "homo-lr/release-key/eval"
INFER = "infer/seal-key/model"


def _policy(measurement: bytes, fingerprint: str) -> str:
    return (
        f'[simulated]\nallow = true\nmeasurements = ["{measurement.hex()}"]\n'
        f'platform_fingerprints = ["{fingerprint}"]\n'
    )


def _role(workload: str, role: str, body: str) -> str:
    head = f'workload = "{workload}"\nrole = "{role}"\n\n'
    return head + '[tee]\nkind = "simulated"\nsimulated_platform = "platform"\n\n' + body


def _sealfl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealfl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A broker process run from kbs.toml, with an admin and two resources."""
    platform = SimulatedPlatform.create(tmp_path / "platform")
    admin = make_self_signed_credentials("kbs-admin")
    fp = platform.fingerprint
    broker_measurement = measure_code({"workload": "kbs", "role": "broker"})
    (tmp_path / "policy-kbs.toml").write_text(_policy(broker_measurement, fp))
    consumer = measure_code({"workload": "eval", "role": "consumer"})
    (tmp_path / "policy-eval.toml").write_text(_policy(consumer, fp))
    (tmp_path / "policy-infer.toml").write_text(_policy(tee_measurement(), fp))
    (tmp_path / "kbs.toml").write_text(
        _role(
            "kbs",
            "broker",
            '[listen]\naddress = "127.0.0.1:0"\n\n'
            "[kbs]\n"
            'store = "store"\naudit_log = "audit.jsonl"\n'
            f'admins = ["{certificate_fingerprint(admin.cert_pem)}"]\n\n'
            f'[[kbs.resource]]\nname = "{EVAL}"\npolicy = "policy-eval.toml"\n\n'
            f'[[kbs.resource]]\nname = "{INFER}"\npolicy = "policy-infer.toml"\ngenerate = true\n',
        )
    )
    broker = PartyProcess("kbs", ["run", "--config", str(tmp_path / "kbs.toml")], log_dir=tmp_path)
    try:
        ready = broker.wait_ready()
        yield tmp_path, ready, admin
    finally:
        broker.stop()


def _requester_config(path: Path, workload: str, role: str) -> Path:
    config = path / f"{role}.toml"
    body = '[peers]\nkbs = "127.0.0.1:1"\n\n[broker]\npeer = "kbs"\npolicy = "policy-kbs.toml"\n'
    config.write_text(_role(workload, role, body))
    return config


def test_model_fetch_releases_only_to_the_attested_tee_the_policy_names(site: Site) -> None:
    root, ready, admin = site
    assert ready["tee"] == "simulated"
    eval_key = ReleaseKey.generate(name="eval-enclave")
    owner = ReleaseKey.generate(name="owner")
    policy = ReleasePolicy(
        [
            Recipient("owner", owner.public_key),
            Recipient("eval-enclave", eval_key.public_key, broker_resource=EVAL),
        ]
    )
    model = os.urandom(200_000)
    write_release(root / "model.release", model, policy, label="homo-lr/model")
    KbsAdmin(
        ready["address"],
        server_verifier=fingerprint_verifier([ready["fingerprint"]]),
        credentials=admin,
    ).put(EVAL, eval_key.to_bytes())

    env = {PEERS_ENV: f"kbs={ready['address']}"}
    consumer = _requester_config(root, "eval", "consumer")
    fetched = _sealfl(
        "model",
        "fetch",
        str(root / "model.release"),
        "--config",
        str(consumer),
        "--out",
        str(root / "model.bin"),
        env=env,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert "as recipient 'eval-enclave'" in fetched.stdout
    assert (root / "model.bin").read_bytes() == model

    intruder = _requester_config(root, "eval", "intruder")  # same code, another role
    refused = _sealfl(
        "model",
        "fetch",
        str(root / "model.release"),
        "--config",
        str(intruder),
        "--out",
        str(root / "stolen.bin"),
        env=env,
    )
    assert refused.returncode == 1
    assert "measurement" in refused.stderr
    assert not (root / "stolen.bin").exists()

    records = read_audit_log(root / "audit.jsonl")
    gets = [r for r in records if r.resource == EVAL and r.action in ("enrol", "get")]
    assert [r.decision for r in gets if r.action == "get"] == ["allow"]
    denied = [r for r in gets if r.decision == "deny"]
    assert len(denied) == 1 and "measurement" in denied[0].reason


def test_an_inference_server_seals_its_model_with_a_key_from_the_broker(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, ready, _ = site
    train_breast_model().save(root / "model.npz")
    server_toml = root / "server.toml"

    def write_server(provision: bool) -> None:
        model = 'model = "model.npz"\n' if provision else ""
        server_toml.write_text(
            _role(
                "infer",
                "server",
                '[listen]\naddress = "127.0.0.1:0"\n\n[peers]\nkbs = "127.0.0.1:1"\n\n'
                f'[sealing]\nsource = "broker"\nresource = "{INFER}"\n\n'
                '[broker]\npeer = "kbs"\npolicy = "policy-kbs.toml"\n\n'
                f'[options]\nmode = "tee"\n{model}sealed_model = "model.sealed"\n',
            )
        )

    monkeypatch.setenv(PEERS_ENV, f"kbs={ready['address']}")  # the launched servers inherit it
    write_server(provision=True)
    first = PartyProcess("server", ["run", "--config", str(server_toml)], log_dir=root)
    first.wait_ready()
    first.stop()
    sealed = (root / "model.sealed").read_bytes()
    write_server(provision=False)  # a restart opens the sealed model with the broker's key
    again = PartyProcess("server", ["run", "--config", str(server_toml)], log_dir=root)
    assert again.wait_ready()["mode"] == "tee"
    again.stop()
    assert (root / "model.sealed").read_bytes() == sealed
    gets = [r for r in read_audit_log(root / "audit.jsonl") if r.resource == INFER]
    assert [r.decision for r in gets if r.action == "get"] == ["allow", "allow"]

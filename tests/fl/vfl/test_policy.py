"""Who may train with whom: each side's policy names the other's measurement (real processes).

- A follower whose measurement the leader's policy does not name is refused at enrolment (no
  PSI, no step), the refusal is logged with its reason, and the leader keeps waiting.
- cczoo's ``dynamic_config.json`` (mr_enclave/mr_signer lists, trailing commas and all) loads
  as-is as the policy of both parties' role configs, and is applied: it names SGX enclaves, so
  the simulated leader is refused by the follower, naming the policy's reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from vfl_parties import events, fresh_measurements, make_run, start_leader, start_role

from sealfl.runtime import load_role_config
from sealfl.tee import SgxIdentity

pytestmark = pytest.mark.timeout(300)

MR_ENCLAVE = "bda462c6483a15f18c92bbfd0acbb61b9702344202fcc6ceed194af00a00fc02"
MR_SIGNER = "dbf7a340bbed6c18345c6d202723364765d261fdb04e960deb4ca894d4274839"
DYNAMIC_CONFIG = f"""{{
    "verify_mr_enclave" : "on",
    "verify_mr_signer" : "on",
    "verify_isv_prod_id" : "on",
    "verify_isv_svn" : "on",
    "sgx_mrs": [
        {{
            "mr_enclave" : "{MR_ENCLAVE}",
            "mr_signer" : "{MR_SIGNER}",
            "isv_prod_id" : "0",
            "isv_svn" : "0"
        }},
    ],
}}
"""


def test_a_follower_with_another_measurement_is_refused(tmp_path: Path) -> None:
    measurements = fresh_measurements()
    measurements["follower"] = hashlib.sha256(b"some other follower build").digest()
    paths = make_run(tmp_path, measurements=measurements)
    leader, address = start_leader(paths)
    follower = start_role("follower", paths["follower-config"], paths["logs"], leader=address)
    try:
        assert follower.finish() == 1
        words = follower.words()
        assert "refused to enrol our certificate" in words, follower.output()
        metrics = tmp_path / "leader" / "leader_metrics.jsonl"
        leader.poll(lambda: any(events(metrics, "enrolment_refused")), "the refusal record")
        refusal = next(events(metrics, "enrolment_refused"))
        assert "measurement" in str(refusal["detail"]), refusal
        assert leader.proc.poll() is None  # still waiting for the right follower
        assert not any(events(metrics, "psi"))
    finally:
        leader.stop()
        follower.stop()


def test_cczoo_dynamic_config_is_both_parties_policy(tmp_path: Path) -> None:
    paths = make_run(tmp_path)
    (tmp_path / "dynamic_config.json").write_text(DYNAMIC_CONFIG)
    for role in ("leader", "follower"):
        config = paths[f"{role}-config"]
        text = config.read_text().replace(f'"policy-{role}.toml"', '"dynamic_config.json"')
        config.write_text(text)
        runtime = load_role_config(config).runtime(simulated_measurement=lambda: bytes(32))
        assert runtime.verifier is not None
        assert runtime.verifier.policy.sgx == (
            SgxIdentity(
                mr_enclave=bytes.fromhex(MR_ENCLAVE),
                mr_signer=bytes.fromhex(MR_SIGNER),
                isv_prod_id=0,
                min_isv_svn=0,
            ),
        )
    leader, address = start_leader(paths)
    follower = start_role("follower", paths["follower-config"], paths["logs"], leader=address)
    try:
        assert follower.finish() == 1
        assert "simulated evidence" in follower.words(), follower.output()
        assert leader.proc.poll() is None
    finally:
        leader.stop()
        follower.stop()

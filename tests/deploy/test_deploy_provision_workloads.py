"""Provisioning vfl and infer: who trusts whom, by evidence or by certificate pin.

vfl's leader and follower each accept only the other. infer is the workload whose parties
are not all attested: in tee mode a client trusts the server by policy, with the measurement
infer's server really has (its workload and mode, not its role); in plaintext and mpc modes
the server and the dealer are pinned by the fingerprints of key files they made themselves,
which provision writes into the configs of those that pin them. The policies are applied to
real simulated quotes, and the bundles are checked as a host would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from federation import ORGS, ROLES, Federation, write_infer_project, write_vfl_project

from sealfl.deploy import bundle as bundles
from sealfl.deploy.project import load_project
from sealfl.deploy.provision import provision
from sealfl.errors import ConfigError
from sealfl.fl.infer.common import tee_measurement
from sealfl.runtime import load_role_config
from sealfl.tee import SimulatedPlatform, SimulatedTee, Verifier, load_policy, measure_code

INFER_AT = {"server": "10.231.0.10:50100", "dealer": "10.231.0.12:50110"}


def _provision(root: Path, project: Path) -> Federation:
    result = provision(load_project(project), out=root / "b", key_file=root / "k", roles=ROLES)
    return Federation(root, project, root / "k", root / "b", result.fingerprint)


def _reasons(policy: Path | None, root: Path, org: str, measurement: bytes) -> str:
    """Why ``policy`` refuses a quote of ``measurement`` from ``org``'s platform ("": accepted)."""
    assert policy is not None
    platform = SimulatedPlatform.load(root / "hosts" / org / "platform")
    quote = SimulatedTee(platform, measurement).quote(b"\x00" * 64)
    return " ".join(Verifier(load_policy(policy)).appraise(quote).reasons)


def _all_verify(federation: Federation) -> dict[str, list[str]]:
    """Verify every bundle written as a host would; return each org's parties."""
    found = {}
    for org in ORGS:
        if federation.bundle(org).is_dir():
            manifest = bundles.verify_bundle(
                federation.bundle(org), provisioner=federation.fingerprint
            )
            found[org] = sorted(f"{p.name}:{p.kind}" for p in manifest.parties.values())
    return found


def test_vfl_leader_and_follower_accept_only_each_other(tmp_path: Path) -> None:
    data = {"leader-train": tmp_path / "l.csv", "follower-train": tmp_path / "f.csv"}
    project = write_vfl_project(
        tmp_path, leader_address="10.231.0.10:50090", data=data, settings={"preset": "breast"}
    )
    federation = _provision(tmp_path, project)
    assert _all_verify(federation) == {
        "hospital-a": ["leader:vfl/leader"],
        "clinic-b": ["follower:vfl/follower"],
    }
    follower = load_role_config(federation.bundle("clinic-b") / "follower.toml", environ={})
    assert follower.peers == {"leader": "10.231.0.10:50090"}
    leader = load_role_config(federation.bundle("hospital-a") / "leader.toml", environ={})
    assert leader.listen == "0.0.0.0:50090" and leader.release is None
    vfl = {role: measure_code({"workload": "vfl", "role": role}) for role in ("leader", "follower")}
    assert _reasons(leader.policy, tmp_path, "clinic-b", vfl["follower"]) == ""
    assert _reasons(follower.policy, tmp_path, "hospital-a", vfl["leader"]) == ""
    # a leader played by the follower's organisation, or a follower's code posing as the leader
    assert "platform" in _reasons(follower.policy, tmp_path, "clinic-b", vfl["leader"])
    assert "measurement" in _reasons(follower.policy, tmp_path, "hospital-a", vfl["follower"])
    assert "measurement" in _reasons(leader.policy, tmp_path, "clinic-b", vfl["leader"])


def test_infer_tee_client_trusts_the_servers_real_measurement(tmp_path: Path) -> None:
    project, _ = write_infer_project(tmp_path, mode="tee", addresses=INFER_AT)
    federation = _provision(tmp_path, project)
    assert _all_verify(federation) == {
        "hospital-a": ["server:infer/server"],
        "clinic-b": ["client:infer/client"],
    }
    server = load_role_config(federation.bundle("hospital-a") / "server.toml", environ={})
    client = load_role_config(federation.bundle("clinic-b") / "client.toml", environ={})
    assert server.tee is not None and server.policy is None  # it takes any client's certificate
    assert client.tee is None and client.peers == {"server": INFER_AT["server"]}
    assert _reasons(client.policy, tmp_path, "hospital-a", tee_measurement()) == ""
    # the value a role-based measurement would give is not what infer's server runs with
    by_role = measure_code({"workload": "infer", "role": "server"})
    assert "measurement" in _reasons(client.policy, tmp_path, "hospital-a", by_role)
    assert "platform" in _reasons(client.policy, tmp_path, "clinic-b", tee_measurement())


def test_infer_mpc_pins_the_server_and_the_dealer_by_their_own_keys(tmp_path: Path) -> None:
    project, files = write_infer_project(tmp_path, mode="mpc", addresses=INFER_AT)
    federation = _provision(tmp_path, project)
    assert _all_verify(federation) == {
        "hospital-a": ["server:infer/server"],
        "clinic-b": ["client:infer/client"],
        "clinic-c": ["dealer:infer/dealer"],
    }
    configs = {
        name: load_role_config(federation.bundle(org) / f"{name}.toml", environ={})
        for name, org in (("server", "hospital-a"), ("client", "clinic-b"), ("dealer", "clinic-c"))
    }
    pins = files.fingerprints
    server, client, dealer = (
        configs["server"].options.raw(),
        configs["client"].options.raw(),
        configs["dealer"].options.raw(),
    )
    assert server["dealer_fingerprint"] == pins["dealer"]
    assert client["server_fingerprint"] == pins["server"]
    assert client["dealer_fingerprint"] == pins["dealer"]  # the client's own choice of dealer
    assert "server_fingerprint" not in dealer and "dealer_fingerprint" not in dealer
    assert configs["server"].peers == {"dealer": INFER_AT["dealer"]}
    assert all(c.tee is None and c.policy is None for c in configs.values())  # nobody attests
    # no private key went through the provisioner
    for org in ORGS:
        for path in federation.bundle(org).glob("*"):
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def _edit(project: Path, old: str, new: str) -> None:
    text = project.read_text()
    assert old in text, old
    project.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("mode", "old", "new", "message"),
    [
        ("mpc", '\nfingerprint = "', '\nfingerprint_ = "', "party[0].fingerprint_: unknown key"),
        ("mpc", '\nfingerprint = "', '\n# fingerprint = "', "party[0].fingerprint: missing"),
        ("plaintext", 'key_file = "', 'keyfile = "', "party[0].options.key_file: missing"),
        ("tee", '\naddress = "', '\nfingerprint = "' + "ab" * 32 + '"\naddress = "',
         "party[0].fingerprint: only for infer's dealer and its plaintext or mpc server"),
        ("tee", 'csv"\n', 'csv"\nserver_fingerprint = "' + "ab" * 32 + '"\n',
         "party[1].options.server_fingerprint: written by provision"),
        ("tee", 'mode = "tee"\ndata', 'mode = "mpc"\ndata',
         "client' (infer/client) pins its dealer_fingerprint: expected exactly one party"),
        ("plaintext", 'mode = "plaintext"\ndata', 'mode = "tee"\ndata',
         "must share one options.mode, got server: plaintext, client: tee"),
        ("tee", 'mode = "tee"\ndata', 'mode = "secure"\ndata',
         "party[1].options.mode: expected one of plaintext, tee, mpc"),
        ("tee", 'role = "client"\n', 'role = "client"\nsealing = "broker"\n',
         "party[1].sealing: 'broker' needs a party that runs in a TEE"),
    ],
)  # fmt: skip
def test_infer_project_errors_name_the_party_and_field(
    tmp_path: Path, mode: str, old: str, new: str, message: str
) -> None:
    project, _ = write_infer_project(tmp_path, mode=mode, addresses=INFER_AT)
    _edit(project, old, new)
    with pytest.raises(ConfigError) as raised:
        load_project(project)
    assert str(project) in str(raised.value)
    assert message in str(raised.value)

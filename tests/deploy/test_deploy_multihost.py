"""Federations across separate network namespaces, each host started from its own bundle alone.

One ``project.toml`` is provisioned into three organisations' bundles; every party then runs as
``sealfl bundle run BUNDLE --party NAME`` in its own namespace (10.x addresses on a bridge), so
the only things the hosts share are the bundles' contents and the network. Root only (CI runs
as root); elsewhere the tests skip and say why. Every workload: homo-lr with the key broker,
hfl, vfl, and an infer query in tee and mpc modes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from federation import (
    Federation,
    metrics,
    provision,
    write_infer_project,
    write_project,
    write_vfl_project,
)
from netns import Lan, lan, skip_reason
from party_processes import PartyProcess

from sealfl.data import breast

CLI = [sys.executable, "-m", "sealfl.cli.main"]
TIMEOUT_S = 180.0
HOSTS = ["ps", "kbs", "worker-1", "worker-2"]

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


def _bundle_run(federation: Federation, org: str, party: str, role: str) -> list[str]:
    return [
        *CLI, "bundle", "run", str(federation.bundle(org)), "--party", party,
        "--role", role, "--provisioner", federation.fingerprint,
        "--state", str(federation.host(org) / f"{party}.state"),
    ]  # fmt: skip


def start_party(
    net: Lan, federation: Federation, host: str, org: str, party: str, role: str
) -> PartyProcess:
    """Start ``party`` from ``org``'s bundle on ``host``; its log is ``logs/<party>.log``."""
    logs = federation.root / "logs"
    logs.mkdir(exist_ok=True)
    argv = _bundle_run(federation, org, party, role)
    return net.start(host, party, argv, logs, timeout_s=TIMEOUT_S)


def run_vfl(net: Lan, federation: Federation) -> dict[str, str]:
    """Start the leader and the follower in their namespaces; wait for both; return their logs."""
    leader = start_party(net, federation, "leader", "hospital-a", "leader", "vfl/leader")
    follower = start_party(net, federation, "follower", "clinic-b", "follower", "vfl/follower")
    codes = {party.name: party.finish() for party in (follower, leader)}
    assert codes == {"leader": 0, "follower": 0}, "\n".join(
        f"--- {p.name}\n{p.output()}" for p in (leader, follower)
    )
    return {"leader": leader.output(), "follower": follower.output()}


def run_federation(
    net: Lan, federation: Federation, workload: str, *, broker: bool
) -> dict[str, Any]:
    """Start every party in its namespace; wait for the PS and workers; return their logs."""
    logs = federation.root / "logs"
    logs.mkdir(exist_ok=True)
    if broker:
        kbs = net.start(
            "kbs", "kbs", _bundle_run(federation, "hospital-a", "kbs", "kbs/broker"), logs,
            timeout_s=TIMEOUT_S,
        )  # fmt: skip
        kbs.poll(lambda: '"event": "ready"' in kbs.output(), "ready line")
    ps = net.start(
        "ps", "ps", _bundle_run(federation, "hospital-a", "ps", f"{workload}/ps"), logs,
        timeout_s=TIMEOUT_S,
    )  # fmt: skip
    workers = []
    for name, org in (("worker-1", "clinic-b"), ("worker-2", "clinic-c")):
        argv = _bundle_run(federation, org, name, f"{workload}/worker")
        workers.append(net.start(name, name, argv, logs, timeout_s=TIMEOUT_S))
    codes = {party.name: party.finish() for party in (*workers, ps)}
    assert codes == {"worker-1": 0, "worker-2": 0, "ps": 0}, "\n".join(
        f"--- {p.name}\n{p.output()}" for p in (ps, *workers)
    )
    return {"ps": ps.output(), **{w.name: w.output() for w in workers}}


def test_homo_lr_with_broker_across_namespaces(tmp_path: Path) -> None:
    with lan(HOSTS) as net:
        assert net.reachable("worker-1", "ps")
        addresses = {"ps": f"{net.address('ps')}:50070", "kbs": f"{net.address('kbs')}:50080"}
        federation = provision(tmp_path, write_project(tmp_path, addresses=addresses))
        outputs = run_federation(net, federation, "homo-lr", broker=True)
    assert "iter: 19" in outputs["worker-1"] and "iter: 19" in outputs["worker-2"]
    sealed = federation.host("hospital-a") / "out" / "ps" / "homo_lr_model.sealed"
    assert sealed.is_file()
    assert (sealed.parent / "homo_lr_model.release").is_file()
    # the broker released the PS's sealing key, and only to the PS
    audit = metrics(federation.host("hospital-a") / "out" / "kbs-audit.jsonl")
    decisions = {(r["resource"], r["decision"]) for r in audit}
    assert decisions == {("homo-lr/seal-key/ps", "allow")}
    # the workers saw the same final model as the PS: same last line
    last = [line for line in outputs["worker-1"].splitlines() if line.startswith("iter: 19")]
    assert last and last[0] in outputs["worker-2"]


def test_a_worker_from_a_tampered_bundle_never_starts(tmp_path: Path) -> None:
    with lan(["ps", "worker-1"]) as net:
        addresses = {"ps": f"{net.address('ps')}:50070", "kbs": "10.0.0.1:50080"}
        federation = provision(tmp_path, write_project(tmp_path, addresses=addresses))
        policy = federation.bundle("clinic-b") / "policy-worker-1.toml"
        policy.write_text(policy.read_text() + "allow_debug = true\n")
        logs = tmp_path / "logs"
        logs.mkdir()
        worker = net.start(
            "worker-1", "worker-1",
            _bundle_run(federation, "clinic-b", "worker-1", "homo-lr/worker"), logs,
            timeout_s=60,
        )  # fmt: skip
        assert worker.finish() == 1
    assert "policy-worker-1.toml: SHA-256 differs from the signed manifest" in worker.words()
    assert "SIMULATED TEE" not in worker.output()  # refused before any party code ran


def test_hfl_across_namespaces(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sealfl.fl.hfl.demo import write_data
    from sealfl.fl.hfl.settings import Settings

    data = write_data(tmp_path / "data-source", workers=2, channels=1)
    spelled = {"preset": "demo", **Settings(model="small-cnn", rounds=2).as_dict()}
    with lan(["ps", "worker-1", "worker-2"]) as net:
        addresses = {"ps": f"{net.address('ps')}:50071"}
        project = write_project(
            tmp_path,
            addresses=addresses,
            workload="hfl",
            broker=False,
            ps_options={"test_set": str(data["test"]), **spelled},
            worker_options={
                "worker-1": {"shard": str(data["shard-1"]), "wait_for_server": 60.0, **spelled},
                "worker-2": {"shard": str(data["shard-2"]), "wait_for_server": 60.0, **spelled},
            },
        )
        federation = provision(tmp_path, project)
        run_federation(net, federation, "hfl", broker=False)
    out = federation.host("hospital-a") / "out" / "ps"
    assert any(out.glob("*.release")), sorted(p.name for p in out.iterdir())


@pytest.mark.slow  # two processes importing torch
def test_vfl_across_namespaces(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sealfl.fl.vfl.demo import write_data
    from sealfl.fl.vfl.export import MANIFEST_FILE, half_file

    data = write_data(tmp_path / "data-source", "breast")
    with lan(["leader", "follower"]) as net:
        project = write_vfl_project(
            tmp_path,
            leader_address=f"{net.address('leader')}:50090",
            data=data,
            settings={"preset": "breast", "epochs": 1},
        )
        run_vfl(net, provision(tmp_path, project))
    leader = tmp_path / "hosts" / "hospital-a" / "out" / "leader"
    follower = tmp_path / "hosts" / "clinic-b" / "out" / "follower"
    assert (leader / MANIFEST_FILE).is_file() and (leader / half_file("leader")).is_file()
    assert (follower / half_file("follower")).is_file()
    assert not (follower / half_file("leader")).exists()  # each side holds its own half only


@pytest.mark.parametrize("mode", ["tee", "mpc"])
def test_infer_query_across_namespaces(tmp_path: Path, mode: str) -> None:
    import numpy as np

    from sealfl.models import LogisticRegression

    hosts = ["server", "client", *(["dealer"] if mode == "mpc" else [])]
    with lan(hosts) as net:
        addresses = {host: f"{net.address(host)}:50100" for host in hosts}
        project, files = write_infer_project(tmp_path, mode=mode, addresses=addresses)
        federation = provision(tmp_path, project)
        if mode == "mpc":
            dealer = start_party(net, federation, "dealer", "clinic-c", "dealer", "infer/dealer")
            dealer.poll(lambda: '"event": "ready"' in dealer.output(), "ready line")
        server = start_party(net, federation, "server", "hospital-a", "server", "infer/server")
        server.poll(lambda: '"event": "ready"' in server.output(), "ready line")
        client = start_party(net, federation, "client", "clinic-b", "client", "infer/client")
        assert client.finish() == 0, client.output() + server.output()
    assert "rows answered" in client.output()
    rows = (federation.host("clinic-b") / "out" / "predictions.csv").read_text().splitlines()
    got = np.array([float(row.split(",")[1]) for row in rows[1:]])
    expected = LogisticRegression.load(files.model).predict_proba(breast.load_split("homo_test").X)
    np.testing.assert_allclose(got, expected, atol=1e-6 if mode == "tee" else 1e-4)
    if mode == "tee":  # the model was sealed inside the server's (simulated) enclave
        assert (federation.host("hospital-a") / "out" / "model.sealed").is_file()

"""A three-organisation federation described in one project.toml, for the provisioning tests.

hospital-a runs the PS (the model owner's side) and the key broker, which holds the PS's
sealing key; clinic-b and clinic-c each run one worker. Every organisation has its own host
directory (``hosts/<org>/``) with its simulated platform, its data and its outputs, the way
separate machines would; only the bundles ``sealfl provision`` writes cross between them.

The same three organisations run vfl (:func:`write_vfl_project`: hospital-a leads, clinic-b
follows) and infer (:func:`write_infer_project`: hospital-a serves its model, clinic-b
queries it, clinic-c deals in mpc mode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl_command import sealfl

from sealfl.data import breast
from sealfl.fl.common.demo_files import toml_value
from sealfl.seal import ReleaseKey
from sealfl.tee import SimulatedPlatform

ORGS = ("hospital-a", "clinic-b", "clinic-c")
WORKER_ORGS = {"worker-1": "clinic-b", "worker-2": "clinic-c"}
SPLITS = {"worker-1": "homo_guest", "worker-2": "homo_host"}
REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "deploy" / "gramine" / "roles.toml"


@dataclass(frozen=True)
class Federation:
    """Paths of a provisioned federation."""

    root: Path
    project: Path
    key: Path
    bundles: Path
    fingerprint: str

    def host(self, org: str) -> Path:
        return self.root / "hosts" / org

    def bundle(self, org: str) -> Path:
        return self.bundles / org


def _table(name: str, values: Mapping[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


def write_project(
    root: Path,
    *,
    addresses: Mapping[str, str],
    workload: str = "homo-lr",
    isv_svn: int = 1,
    ps_options: Mapping[str, Any] | None = None,
    worker_options: Mapping[str, Mapping[str, Any]] | None = None,
    broker: bool = True,
) -> Path:
    """Write platforms, the owner's key and ``project.toml`` under ``root``; return the project.

    ``addresses`` gives ``ps`` and ``kbs`` (host:port where peers reach them). Data for homo-lr
    is written here; other workloads bring theirs through the options.
    """
    hosts = root / "hosts"
    orgs = _orgs(root)
    owner = root / "owner"
    _, owner_pub = ReleaseKey.generate(name="model-owner").save(owner)
    a_out = hosts / "hospital-a" / "out"
    ps: dict[str, Any] = {"worker_num": 2, "out": str(a_out / "ps")}
    if workload == "homo-lr":
        test_set = breast.write_split("homo_test", hosts / "hospital-a" / "data" / "test.csv")
        ps |= {"validate_set": str(test_set), "epochs": 20, "key_bits": 1024}
    ps |= dict(ps_options or {})
    parties = [
        "[[party]]\n"
        f'name = "ps"\norg = "hospital-a"\nworkload = "{workload}"\nrole = "ps"\n'
        f'address = "{addresses["ps"]}"\n'
        + ('sealing = "broker"\n' if broker else "")
        + _table("party.options", ps)
    ]
    if broker:
        parties.append(
            "[[party]]\n"
            'name = "kbs"\norg = "hospital-a"\nworkload = "kbs"\nrole = "broker"\n'
            f'address = "{addresses["kbs"]}"\n'
            + _table(
                "party.options",
                {
                    "store": str(a_out / "kbs-store"),
                    "audit_log": str(a_out / "kbs-audit.jsonl"),
                    "admins": ["0" * 64],
                },
            )
        )
    for k, (name, org) in enumerate(WORKER_ORGS.items(), start=1):
        out = hosts / org / "out"
        options: dict[str, Any] = {
            "id": k,
            "metrics": str(out / f"{name}_metrics.jsonl"),
            "seat_file": str(out / f"{name}.seat"),
        }
        if workload == "homo-lr":
            data = breast.write_split(SPLITS[name], hosts / org / "data" / "train.csv")
            options |= {"train_set": str(data), "epochs": 20, "wait_for_server": 60.0}
        options |= dict((worker_options or {}).get(name, {}))
        parties.append(
            "[[party]]\n"
            f'name = "{name}"\norg = "{org}"\nworkload = "{workload}"\nrole = "worker"\n'
            + _table("party.options", options)
        )
    return _write_project(
        root,
        orgs,
        parties,
        isv_svn=isv_svn,
        tail=('\n[broker]\nparty = "kbs"\n' if broker else "")
        + f'\n[[recipient]]\nname = "model-owner"\npublic_key = {toml_value(owner_pub)}\n',
    )


def _orgs(root: Path) -> list[str]:
    """Make each organisation's host directory (platform, out/); return their [[org]] tables."""
    hosts = root / "hosts"
    orgs = []
    for org in ORGS:
        platform = SimulatedPlatform.create(hosts / org / "platform")
        (hosts / org / "out").mkdir(parents=True)
        orgs.append(
            "[[org]]\n"
            f'name = "{org}"\ntee = "simulated"\n'
            f'platform_fingerprint = "{platform.fingerprint}"\n'
            f"platform_dir = {toml_value(hosts / org / 'platform')}\n"
        )
    return orgs


def _party(
    name: str, org: str, workload: str, role: str, options: Mapping[str, Any], **more: str
) -> str:
    return (
        "[[party]]\n"
        f'name = "{name}"\norg = "{org}"\nworkload = "{workload}"\nrole = "{role}"\n'
        + "".join(f"{k} = {toml_value(v)}\n" for k, v in more.items())
        + _table("party.options", options)
    )


def _write_project(
    root: Path, orgs: list[str], parties: list[str], *, isv_svn: int = 1, tail: str = ""
) -> Path:
    text = (
        _table("project", {"name": "breast-federation", "isv_svn": isv_svn})
        + "\n"
        + "\n".join(orgs)
        + "\n"
        + "\n".join(parties)
        + tail
    )
    project = root / "project.toml"
    project.write_text(text)
    return project


def write_vfl_project(
    root: Path, *, leader_address: str, data: Mapping[str, Path], settings: Mapping[str, Any]
) -> Path:
    """vfl: hospital-a's leader (labels) and clinic-b's follower; ``data`` from vfl's demo."""
    hosts = root / "hosts"
    orgs = _orgs(root)
    leader = {
        "data": str(data["leader-train"]),
        "out": str(hosts / "hospital-a" / "out" / "leader"),
    }
    follower = {
        "data": str(data["follower-train"]),
        "out": str(hosts / "clinic-b" / "out" / "follower"),
        "wait_for_leader": 60.0,
    }
    parties = [
        _party(
            "leader", "hospital-a", "vfl", "leader", {**leader, **settings}, address=leader_address
        ),
        _party("follower", "clinic-b", "vfl", "follower", {**follower, **settings}),
    ]
    return _write_project(root, orgs, parties)


@dataclass(frozen=True)
class InferFiles:
    """What each infer host holds before provisioning, and the pins it made."""

    model: Path
    query: Path
    fingerprints: Mapping[str, str]


def write_infer_project(
    root: Path, *, mode: str, addresses: Mapping[str, str]
) -> tuple[Path, InferFiles]:
    """infer: hospital-a serves a model, clinic-b queries it, clinic-c deals (mpc mode).

    Outside a TEE the server and the dealer each make their key file on their own host, as
    an operator would before provisioning, and only its certificate's fingerprint goes into
    ``project.toml``. ``addresses`` gives ``server`` (and ``dealer`` in mpc mode).
    """
    from sealfl.fl.infer.demo import train_breast_model
    from sealfl.fl.infer.keyfile import load_or_create_identity
    from sealfl.net import certificate_fingerprint

    hosts = root / "hosts"
    orgs = _orgs(root)
    model = hosts / "hospital-a" / "data" / "model.npz"
    model.parent.mkdir(parents=True)
    train_breast_model().save(model)
    query = breast.write_split("homo_test", hosts / "clinic-b" / "data" / "query.csv")

    def key(org: str, name: str) -> tuple[Path, str]:
        path = hosts / org / f"{name}.key"
        made = load_or_create_identity(path, party=f"infer-{name}")
        return path, certificate_fingerprint(made.cert_pem)

    out = hosts / "clinic-b" / "out" / "predictions.csv"
    client: dict[str, Any] = {"mode": mode, "data": str(query), "out": str(out)}
    server: dict[str, Any] = {"mode": mode, "model": str(model), "allow_outputs": "probability"}
    server_more = {"address": addresses["server"]}
    pins: dict[str, str] = {}
    if mode == "tee":
        server["sealed_model"] = str(hosts / "hospital-a" / "out" / "model.sealed")
    else:
        server["key_file"], pins["server"] = key("hospital-a", "server")
        server_more["fingerprint"] = pins["server"]
    if mode == "mpc":
        client["output"] = "logit"
        server["allow_outputs"] = "label,logit"
    parties = [
        _party("server", "hospital-a", "infer", "server", server, **server_more),
        _party("client", "clinic-b", "infer", "client", client),
    ]
    if mode == "mpc":
        dealer_key, pins["dealer"] = key("clinic-c", "dealer")
        parties.append(
            _party(
                "dealer", "clinic-c", "infer", "dealer", {"key_file": str(dealer_key)},
                address=addresses["dealer"], fingerprint=pins["dealer"],
            )
        )  # fmt: skip
    return _write_project(root, orgs, parties), InferFiles(model, query, pins)


def provision(root: Path, project: Path) -> Federation:
    """Run ``sealfl provision`` as a user would (a fresh process measures the code)."""
    key, bundles = root / "provisioner.key", root / "bundles"
    done = sealfl("provision", project, "--out", bundles, "--key", key, "--roles", ROLES, cwd=root)
    assert done.returncode == 0, done.stderr
    fingerprint = done.stdout.strip().rsplit(" ", 1)[-1]
    assert len(fingerprint) == 64, done.stdout
    return Federation(root, project, key, bundles, fingerprint)


def bundle_manifest(federation: Federation, org: str) -> dict[str, Any]:
    import tomllib

    parsed: dict[str, Any] = tomllib.loads((federation.bundle(org) / "bundle.toml").read_text())
    return parsed


def metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]

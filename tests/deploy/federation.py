"""A three-organisation federation described in one project.toml, for the provisioning tests.

hospital-a runs the PS (the model owner's side) and the key broker, which holds the PS's
sealing key; clinic-b and clinic-c each run one worker. Every organisation has its own host
directory (``hosts/<org>/``) with its simulated platform, its data and its outputs, the way
separate machines would; only the bundles ``sealfl provision`` writes cross between them.
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
    text = (
        _table("project", {"name": "breast-federation", "isv_svn": isv_svn})
        + "\n"
        + "\n".join(orgs)
        + "\n"
        + "\n".join(parties)
        + ('\n[broker]\nparty = "kbs"\n' if broker else "")
        + f'\n[[recipient]]\nname = "model-owner"\npublic_key = {toml_value(owner_pub)}\n'
    )
    project = root / "project.toml"
    project.write_text(text)
    return project


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

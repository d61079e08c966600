"""The static deployment files: they parse, and they name parties, roles and paths that exist.

No Docker engine or cluster is needed: compose and Kubernetes files are read as YAML, the
example project is provisioned for real, and the image recipe is held to its promises
(non-root, no benchmark-only packages, argv fixed under Gramine).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sealfl_command import sealfl

from sealfl.deploy import load_role_table
from sealfl.deploy.bundle import read_bundle_parties
from sealfl.deploy.project import PEER_RULES, load_project

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ROLES = load_role_table(DEPLOY / "gramine" / "roles.toml")
BENCHMARK_ONLY = {"matplotlib"}
_BUNDLE_RUN = re.compile(r"^bundle run /bundle --party (\S+) --role (\S+)$")


def _example_project(tmp_path: Path) -> Path:
    text = (DEPLOY / "compose" / "project.example.toml").read_text()
    for name in ("FP_A", "FP_B", "FP_C"):
        text = text.replace(f"@{name}@", name[-1].lower() * 64)
    text = text.replace("@ITERATIONS@", "20")
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "model-owner.pub").write_text("not read by load_project\n")
    project = tmp_path / "project.toml"
    project.write_text(text)
    return project


def _party_command(args: list[str]) -> tuple[str, str]:
    match = _BUNDLE_RUN.match(" ".join(args))
    assert match, args
    return match.group(1), match.group(2)


def test_runtime_requirements_are_pyprojects_without_benchmark_packages() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = [d for d in deps if re.split(r"[<>=!\[ ]", d)[0] not in BENCHMARK_ONLY]
    lines = (DEPLOY / "docker" / "requirements-runtime.txt").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == expected


def test_dockerfile_runs_as_non_root_from_the_slim_list() -> None:
    text = (REPO / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    assert "USER 10001:10001" in final
    assert "requirements-runtime.txt" in text and "--no-deps ." in text
    assert "build-ca" not in final  # the CA bundle for pip stays in the build stage
    gramine = (REPO / "Dockerfile.gramine").read_text()
    assert "insecure" not in gramine
    assert "--bundle /bundle" in gramine and "gramine-sgx-sign" in gramine
    ignored = (REPO / ".dockerignore").read_text()
    assert ignored.startswith("#") and "\n*\n" in ignored


def test_compose_services_start_the_example_projects_parties(tmp_path: Path) -> None:
    project = load_project(_example_project(tmp_path))
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())
    assert compose["networks"]["federation"]["internal"] is True
    services = compose["services"]
    assert set(services) == set(project.parties)
    for name, service in services.items():
        party_name, role = _party_command(service["command"])
        party = project.parties[party_name]
        assert name == party_name
        assert role == f"{party.workload}/{party.role}" and role in ROLES
        assert (party.workload, party.role) in PEER_RULES
        assert f"./bundles/{party.org}:/bundle:ro" in service["volumes"]
        assert f"./hosts/{party.org}:/host" in service["volumes"]
        assert service["user"] == "10001:10001" and service["read_only"] is True
        assert service["networks"] == ["federation"]
    for party in project.parties.values():
        if party.address is not None:
            assert party.address.split(":")[0] in services  # compose DNS names


def test_every_workload_is_in_the_example_the_compose_file_and_kubernetes(tmp_path: Path) -> None:
    project = load_project(_example_project(tmp_path))
    kinds = {f"{p.workload}/{p.role}" for p in project.parties.values()}
    # every provisionable role but the dealer of infer's mpc mode (the example is tee mode)
    assert kinds == {f"{w}/{r}" for w, r in PEER_RULES} - {"infer/dealer"}
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())
    by_profile = {
        name: service.get("profiles", []) for name, service in compose["services"].items()
    }
    for name, party in project.parties.items():
        expected = [] if party.workload in ("homo-lr", "kbs") else [party.workload]
        assert by_profile[name] == expected, name  # `compose up` alone starts homo-lr only
    started = set()
    for document in _k8s_documents():  # the example's parties, in their roles, at their sites
        site = document["metadata"].get("labels", {}).get("sealfl.dev/org")
        for container in _containers(document):
            name, kind = _party_command(container["args"])
            party = project.parties[name]
            assert kind == f"{party.workload}/{party.role}", name
            assert site in (None, party.org), name
            started.add(kind)
    assert started == kinds


def _k8s_documents() -> list[dict[str, Any]]:
    return [
        document
        for manifest in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for document in yaml.safe_load_all(manifest.read_text())
        if document
    ]


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    if document["kind"] not in ("Deployment", "Job"):
        return []
    containers: list[dict[str, Any]] = document["spec"]["template"]["spec"]["containers"]
    return containers


def test_kubernetes_ports_are_served_and_let_in() -> None:
    documents = _k8s_documents()
    allowed = {
        port["port"]
        for d in documents
        if d["kind"] == "NetworkPolicy"
        for rule in d["spec"]["ingress"]
        for port in rule["ports"]
    }
    served = {
        port["targetPort"]
        for d in documents
        if d["kind"] == "Service"
        for port in d["spec"]["ports"]
    }
    listening = {
        port["containerPort"]
        for d in documents
        for c in _containers(d)
        for port in c.get("ports", [])
    }
    assert served == listening and served <= allowed
    for document in documents:  # a file for several sites is applied per site by this label
        site = document["metadata"].get("labels", {}).get("sealfl.dev/org")
        template = document.get("spec", {}).get("template", {})
        labels = template.get("metadata", {}).get("labels", {})
        assert not template or labels.get("sealfl.dev/org") == site, document["metadata"]["name"]


def test_sgx_override_gives_devices_aesmd_and_pccs_config(tmp_path: Path) -> None:
    project = load_project(_example_project(tmp_path))
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())
    override = yaml.safe_load((DEPLOY / "compose" / "sgx.override.yml").read_text())
    # every party that runs in a TEE; infer's client checks evidence but shows none
    attesting = {name for name in compose["services"] if project.parties[name].attests}
    assert set(override["services"]) == attesting
    assert "infer-client" not in attesting
    for name, service in override["services"].items():
        assert "/dev/sgx_enclave:/dev/sgx_enclave" in service["devices"], name
        assert "/dev/sgx_provision:/dev/sgx_provision" in service["devices"], name
        assert "/var/run/aesmd:/var/run/aesmd" in service["volumes"], name
        assert "./sgx_default_qcnl.conf:/etc/sgx_default_qcnl.conf:ro" in service["volumes"]
        assert service["entrypoint"] == ["gramine-sgx"] and service["command"] == [name]
    qcnl = json.loads((DEPLOY / "compose" / "sgx_default_qcnl.conf").read_text())
    assert qcnl["pccs_url"].startswith("https://") and qcnl["use_secure_cert"] is True


@pytest.mark.parametrize("manifest", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_parse_and_run_parties_non_root(manifest: Path) -> None:
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert documents
    pods = 0
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), document
        if document["kind"] not in ("Deployment", "Job"):
            continue
        pods += 1
        spec = document["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        selector = document["spec"].get("selector", {}).get("matchLabels")
        labels = document["spec"]["template"]["metadata"]["labels"]
        assert selector is None or selector.items() <= labels.items()
        for container in spec["containers"]:
            party, role = _party_command(container["args"])
            assert role in ROLES
            if role.startswith(("hfl/", "vfl/")):  # torch: the image built with the hfl extra
                assert container["image"] == "sealfl:hfl", party
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts["/bundle"]["readOnly"] is True
    assert pods


def test_example_project_provisions(tmp_path: Path) -> None:
    from sealfl.deploy.provision import provision

    project = _example_project(tmp_path)
    (tmp_path / "owner" / "model-owner.pub").unlink()
    keys = sealfl("model", "keygen", "--out", tmp_path / "owner", "--name", "model-owner", cwd=REPO)
    assert keys.returncode == 0, keys.stderr
    result = provision(
        load_project(project),
        out=tmp_path / "bundles",
        key_file=tmp_path / "k",
        roles=DEPLOY / "gramine" / "roles.toml",
    )
    assert sorted(result.bundles) == ["clinic-b", "clinic-c", "hospital-a"]
    parties = {
        org: sorted(p.name for p in read_bundle_parties(d)) for org, d in result.bundles.items()
    }
    assert parties == {
        "hospital-a": ["hfl-ps", "infer-server", "kbs", "ps", "vfl-leader"],
        "clinic-b": ["hfl-worker-1", "vfl-follower", "worker-1"],
        "clinic-c": ["hfl-worker-2", "infer-client", "worker-2"],
    }


def test_smoke_script_is_valid_shell() -> None:
    done = subprocess.run(["sh", "-n", str(DEPLOY / "docker" / "smoke.sh")], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_deploy_doc_links_exist() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", doc):
        assert (REPO / "docs" / target).resolve().exists(), target

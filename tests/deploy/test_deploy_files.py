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


def test_sgx_override_gives_devices_aesmd_and_pccs_config() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())
    override = yaml.safe_load((DEPLOY / "compose" / "sgx.override.yml").read_text())
    assert set(override["services"]) == set(compose["services"])
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
            _, role = _party_command(container["args"])
            assert role in ROLES
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


def test_smoke_script_is_valid_shell() -> None:
    done = subprocess.run(["sh", "-n", str(DEPLOY / "docker" / "smoke.sh")], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_deploy_doc_links_exist() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", doc):
        assert (REPO / "docs" / target).resolve().exists(), target

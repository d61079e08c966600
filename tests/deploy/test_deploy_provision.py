"""``sealfl provision``: one project file, three organisations' signed bundles, and every refusal.

The attacks are tried for real: a file of a bundle edited, a file planted, a bundle re-signed by
someone else, an older bundle replayed, a bundle started in another role's place; and the
policies provision wrote are applied to real evidence: simulated quotes from each
organisation's platform, and Intel's real SGX quote for the ``isv_svn`` floor.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from federation import ORGS, ROLES, Federation, bundle_manifest, provision, write_project
from sealfl_command import one_line, sealfl
from shared_files import shared_path

from sealfl.deploy import bundle as bundles
from sealfl.deploy.project import load_project
from sealfl.deploy.provision import provision as provision_api
from sealfl.errors import AttestationError, ConfigError, SealError
from sealfl.runtime import load_role_config
from sealfl.tee import (
    SimulatedPlatform,
    SimulatedTee,
    Verifier,
    load_policy,
    measure_code,
)
from sealfl.tee.collateral import collateral_source

ADDRESSES = {"ps": "10.231.0.10:50070", "kbs": "10.231.0.10:50080"}
SGX_SIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
SGX_AT = 1752919277  # inside the real SGX vector's collateral window (shared/vectors/README.md)


def _provision_here(root: Path, **project_options: object) -> Federation:
    """Provision in this process (measurements from the code this test process loaded)."""
    project = write_project(root, addresses=ADDRESSES, **project_options)  # type: ignore[arg-type]
    result = provision_api(
        load_project(project), out=root / "bundles", key_file=root / "provisioner.key", roles=ROLES
    )
    return Federation(root, project, root / "provisioner.key", root / "bundles", result.fingerprint)


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return _provision_here(tmp_path)


def test_three_bundles_each_verifying_and_naming_their_parties(federation: Federation) -> None:
    parties = {
        org: sorted(p["name"] for p in bundle_manifest(federation, org)["party"]) for org in ORGS
    }
    assert parties == {
        "hospital-a": ["kbs", "ps"],
        "clinic-b": ["worker-1"],
        "clinic-c": ["worker-2"],
    }
    for org in ORGS:
        manifest = bundles.verify_bundle(federation.bundle(org), provisioner=federation.fingerprint)
        assert manifest.isv_svn == 1
        for name in manifest.parties:
            config = load_role_config(manifest.config(name), environ={})
            assert config.base_dir == federation.bundle(org)
    worker = load_role_config(federation.bundle("clinic-b") / "worker-1.toml", environ={})
    assert worker.peers == {"ps": ADDRESSES["ps"]}
    ps = load_role_config(federation.bundle("hospital-a") / "ps.toml", environ={})
    assert ps.listen == "0.0.0.0:50070"
    assert ps.peers == {"kbs": ADDRESSES["kbs"]}
    assert ps.release == federation.bundle("hospital-a") / "release.toml"
    # a bundle holds only its own organisation's parties and the policies they need
    assert not list(federation.bundle("clinic-b").glob("ps.toml"))
    assert not list(federation.bundle("clinic-b").glob("*.pub"))[1:]  # provisioner.pub only


def test_provisioning_is_deterministic(tmp_path: Path) -> None:
    first = _provision_here(tmp_path)
    before = {p: p.read_bytes() for p in first.bundles.rglob("*") if p.is_file()}
    result = provision_api(
        load_project(first.project), out=first.bundles, key_file=first.key, roles=ROLES
    )
    assert not result.new_key
    after = {p: p.read_bytes() for p in first.bundles.rglob("*") if p.is_file()}
    assert after == before


def _platform(federation: Federation, org: str) -> SimulatedPlatform:
    return SimulatedPlatform.load(federation.host(org) / "platform")


def _appraise(policy: Path, platform: SimulatedPlatform, workload: str, role: str) -> list[str]:
    tee = SimulatedTee(platform, measure_code({"workload": workload, "role": role}))
    verdict = Verifier(load_policy(policy)).appraise(tee.quote(b"\x00" * 64))
    return list(verdict.reasons)


def test_policies_accept_exactly_the_peers_of_each_role(federation: Federation) -> None:
    ps_policy = federation.bundle("hospital-a") / "policy-ps.toml"
    worker_policy = federation.bundle("clinic-b") / "policy-worker-1.toml"
    resource = federation.bundle("hospital-a") / "resource-ps.toml"
    broker_policy = federation.bundle("hospital-a") / "policy-broker.toml"
    a, b, c = (_platform(federation, org) for org in ORGS)
    # the PS accepts the workers, from the workers' organisations
    assert _appraise(ps_policy, b, "homo-lr", "worker") == []
    assert _appraise(ps_policy, c, "homo-lr", "worker") == []
    # ... not a worker run on hospital-a's machine, nor another role from clinic-b
    assert any("platform" in r for r in _appraise(ps_policy, a, "homo-lr", "worker"))
    assert any("measurement" in r for r in _appraise(ps_policy, b, "homo-lr", "ps"))
    assert any("measurement" in r for r in _appraise(ps_policy, b, "hfl", "worker"))
    # a worker accepts hospital-a's PS only: a worker playing the PS is a wrong role
    assert _appraise(worker_policy, a, "homo-lr", "ps") == []
    assert any("measurement" in r for r in _appraise(worker_policy, c, "homo-lr", "worker"))
    assert any("platform" in r for r in _appraise(worker_policy, c, "homo-lr", "ps"))
    # the broker hands the PS's sealing key to the PS only; the PS trusts only the broker
    assert _appraise(resource, a, "homo-lr", "ps") == []
    assert _appraise(resource, b, "homo-lr", "worker") != []
    assert _appraise(broker_policy, a, "kbs", "broker") == []
    assert _appraise(broker_policy, a, "homo-lr", "ps") != []


def _verify_fails(federation: Federation, org: str, pattern: str) -> None:
    with pytest.raises(SealError, match=pattern):
        bundles.verify_bundle(federation.bundle(org), provisioner=federation.fingerprint)


def test_an_edited_policy_is_refused(federation: Federation) -> None:
    policy = federation.bundle("clinic-b") / "policy-worker-1.toml"
    widened = policy.read_text().replace("tcb_statuses = [", 'tcb_statuses = ["OutOfDate", ')
    policy.write_text(widened)
    _verify_fails(federation, "clinic-b", "policy-worker-1.toml: SHA-256 differs")


def test_a_planted_or_missing_file_is_refused(federation: Federation) -> None:
    bundle = federation.bundle("clinic-c")
    (bundle / "policy-extra.toml").write_text("[simulated]\nallow = true\n")
    _verify_fails(federation, "clinic-c", re.escape("not in the signed manifest: ['policy-extra"))
    (bundle / "policy-extra.toml").unlink()
    (bundle / "policy-worker-2.toml").unlink()
    _verify_fails(federation, "clinic-c", "policy-worker-2.toml: missing")


def test_an_edited_manifest_is_refused(federation: Federation) -> None:
    manifest = federation.bundle("clinic-b") / "bundle.toml"
    manifest.write_text(manifest.read_text().replace("isv_svn = 1", "isv_svn = 9"))
    _verify_fails(federation, "clinic-b", "signature does not verify: tampered")


def test_a_bundle_signed_by_someone_else_is_refused(federation: Federation, tmp_path: Path) -> None:
    bundle = federation.bundle("clinic-b")
    config = bundle / "worker-1.toml"
    config.write_text(config.read_text().replace("10.231.0.10", "10.66.6.6"))
    impostor, _ = bundles.ProvisionerKey.load_or_create(tmp_path / "impostor.key")
    bundles.sign_bundle(
        bundle,
        key=impostor,
        project="breast-federation",
        org="clinic-b",
        isv_svn=1,
        parties=[bundles.BundleParty("worker-1", "homo-lr", "worker", "worker-1.toml")],
    )
    _verify_fails(federation, "clinic-b", "is not the pinned one")


def test_wrong_role_refused_before_start(federation: Federation) -> None:
    with pytest.raises(SealError, match="party worker-1 is homo-lr/worker, this host runs "):
        bundles.check_start(
            federation.bundle("clinic-b"),
            party="worker-1",
            provisioner=federation.fingerprint,
            expect_role="homo-lr/ps",
        )
    with pytest.raises(ConfigError, match=r"no party 'ps' in this bundle; it has \['worker-1'\]"):
        bundles.check_start(
            federation.bundle("clinic-b"), party="ps", provisioner=federation.fingerprint
        )


def test_an_older_bundle_is_refused_after_a_newer_one_ran(tmp_path: Path) -> None:
    new = _provision_here(tmp_path / "new", isv_svn=2)
    state = tmp_path / "host-state.json"
    started = bundles.check_start(
        new.bundle("clinic-b"), party="worker-1", provisioner=new.fingerprint, state=state
    )
    assert started.isv_svn == 2
    old = tmp_path / "new" / "bundles-old"
    write_project(tmp_path / "old", addresses=ADDRESSES, isv_svn=1)
    provision_api(
        load_project(tmp_path / "old" / "project.toml"), out=old, key_file=new.key, roles=ROLES
    )
    with pytest.raises(SealError, match=r"isv_svn 1 is older than 2 .* rollback refused"):
        bundles.check_start(
            old / "clinic-b", party="worker-1", provisioner=new.fingerprint, state=state
        )
    with pytest.raises(SealError, match="rollback refused"):
        bundles.check_start(
            old / "clinic-b", party="worker-1", provisioner=new.fingerprint, min_isv_svn=2
        )
    # the newer one still starts, and the state kept its floor
    bundles.check_start(
        new.bundle("clinic-b"), party="worker-1", provisioner=new.fingerprint, state=state
    )
    assert '"breast-federation/clinic-b": 2' in state.read_text()


def _sgx_project(root: Path, vectors: Path, isv_svn: int) -> Path:
    """hospital-a on SGX (the real vector's signer; its enclave has isv_prod_id 0)."""
    project = write_project(root, addresses=ADDRESSES, isv_svn=isv_svn, broker=False)
    text = project.read_text()
    first_org = text.index("[[org]]")
    end = text.index("[[org]]", first_org + 1)
    sgx_org = (
        '[[org]]\nname = "hospital-a"\ntee = "gramine-sgx"\n'
        f'collateral = "{vectors / "sgx_quote_collateral.json"}"\n\n'
    )
    text = text[:first_org] + sgx_org + text[end:]
    text = text.replace(
        "isv_svn = 1\n" if isv_svn == 1 else f"isv_svn = {isv_svn}\n",
        f'isv_svn = {isv_svn}\ntcb_statuses = ["UpToDate", "ConfigurationAndSWHardeningNeeded"]\n',
        1,
    )
    text += f'\n[sgx]\nmr_signer = "{SGX_SIGNER}"\n[sgx.isv_prod_id]\n"homo-lr/ps" = 0\n'
    project.write_text(text)
    return project


@pytest.mark.parametrize(("isv_svn", "accepted"), [(0, True), (1, False)])
def test_sgx_policy_floor_on_a_real_quote(tmp_path: Path, isv_svn: int, accepted: bool) -> None:
    vectors = shared_path("vectors")
    project = _sgx_project(tmp_path, vectors, isv_svn)
    provision_api(load_project(project), out=tmp_path / "b", key_file=tmp_path / "k", roles=ROLES)
    worker = load_role_config(tmp_path / "b" / "clinic-b" / "worker-1.toml", environ={})
    policy = load_policy(worker.policy)
    assert [(i.isv_prod_id, i.min_isv_svn, i.mr_signer.hex()) for i in policy.sgx] == [
        (0, isv_svn, SGX_SIGNER)
    ]
    ps = load_role_config(tmp_path / "b" / "hospital-a" / "ps.toml", environ={})
    assert ps.tee is not None and ps.tee.kind.value == "gramine-sgx"
    assert ps.collateral == str(vectors / "sgx_quote_collateral.json")
    verifier = Verifier(policy, collateral=collateral_source(str(ps.collateral)))
    quote = (vectors / "sgx_quote").read_bytes()
    if accepted:
        verifier.verify(quote, now=SGX_AT)
    else:
        with pytest.raises(AttestationError, match="isv_svn: expected at least 1, found 0"):
            verifier.verify(quote, now=SGX_AT)


def test_tdx_peers_pinned_to_their_role_config(tmp_path: Path) -> None:
    project = write_project(tmp_path, addresses=ADDRESSES, broker=False)
    mr_td = "91" * 48
    text = project.read_text().replace(
        'tee = "simulated"\nplatform_fingerprint',
        'tee = "tdx"\ncollateral = "https://pccs.example:8081"\nplatform_fingerprint',
        1,
    )
    text = re.sub(
        r'(tee = "tdx"\ncollateral = "[^"]+"\n)'
        r'platform_fingerprint = "\w+"\nplatform_dir = "[^"]+"\n',
        r"\1",
        text,
    )
    project.write_text(text + f'\n[tdx]\nmr_td = "{mr_td}"\n')
    provision_api(load_project(project), out=tmp_path / "b", key_file=tmp_path / "k", roles=ROLES)
    ps_config = (tmp_path / "b" / "hospital-a" / "ps.toml").read_bytes()
    policy = load_policy(tmp_path / "b" / "clinic-b" / "policy-worker-1.toml")
    (identity,) = policy.tdx
    assert identity.mr_td == bytes.fromhex(mr_td)
    assert identity.mr_config_id == hashlib.sha384(ps_config).digest()
    assert b'kind = "tdx"' in ps_config


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('org = "clinic-b"', 'org = "clinic-x"'), "party[2].org: no [[org]] named 'clinic-x'"),
        (('address = "10.231.0.10:50070"\n', ""), "party[0].address: missing (required)"),
        (('name = "worker-2"', 'name = "worker-1"'), "party[3].name: a second party"),
        (('role = "worker"', 'role = "aggregator"'), "party[2].role: no homo-lr/aggregator"),
        (('fingerprint = "', 'fingerprint = "zz'), "org[0].platform_fingerprint: "),
        (("[broker]\n", "[brokers]\n"), "unknown table(s) ['brokers']"),
        (('sealing = "broker"', 'sealng = "broker"'), "party[0].sealng: unknown key(s)"),
        (('0.10:50080"', '0.10:99999"'), "port must be 0..65535"),
    ],
)  # fmt: skip
def test_project_errors_name_the_file_and_field(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    project = write_project(tmp_path, addresses=ADDRESSES)
    project.write_text(project.read_text().replace(*edit, 1))
    with pytest.raises(ConfigError) as raised:
        load_project(project)
    assert str(project) in str(raised.value)
    assert message in str(raised.value)


def test_cli_provisions_verifies_and_refuses(tmp_path: Path) -> None:
    project = write_project(tmp_path, addresses=ADDRESSES)
    federation = provision(tmp_path, project)
    ok = sealfl(
        "bundle",
        "verify",
        federation.bundle("clinic-b"),
        "--provisioner",
        federation.fingerprint,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "isv_svn 1, 2 files intact; parties: worker-1 (homo-lr/worker)" in ok.stdout
    shutil.copy(
        federation.bundle("clinic-c") / "policy-worker-2.toml",
        federation.bundle("clinic-b") / "policy-worker-1.toml",
    )
    bad = sealfl(
        "bundle",
        "run",
        federation.bundle("clinic-b"),
        "--party",
        "worker-1",
        "--provisioner",
        federation.fingerprint,
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert "policy-worker-1.toml: SHA-256 differs from the signed manifest" in one_line(bad.stderr)
    wrong = sealfl(
        "bundle",
        "run",
        federation.bundle("clinic-c"),
        "--party",
        "worker-2",
        "--role",
        "homo-lr/ps",
        "--provisioner",
        federation.fingerprint,
        cwd=tmp_path,
    )
    assert wrong.returncode == 1
    assert "wrong role refused" in one_line(wrong.stderr)

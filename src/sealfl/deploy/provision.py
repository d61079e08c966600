"""``sealfl provision project.toml``: write each organisation's signed bundle.

For every party of the project this writes, into its organisation's bundle directory:

- ``<party>.toml``, its role config: TEE, policy, collateral source, sealing source, the key
  broker and its address, the release list, where it listens, its peers' addresses and the
  options given in the project, plus the fingerprints of the peers it pins (infer outside a
  TEE);
- ``policy-<party>.toml``, for a party that checks its peers' evidence: the identities of
  exactly the peers it must accept, by their organisations' TEEs (simulated: the role's
  measurement, :func:`simulated_measurement`, on that organisation's platform; SGX: the
  release signer, the role's ``isv_prod_id`` and ``min_isv_svn`` = the project's
  ``isv_svn``; TDX: the image plus ``mr_config_id`` = SHA-384 of the peer's role config);
- ``policy-broker.toml`` when it uses the broker, and for the broker one
  ``resource-<party>.toml`` per party whose sealing key it holds;
- ``release.toml`` and the recipients' public keys, for the parties that produce a model;

then signs it (:func:`sealfl.deploy.bundle.sign_bundle`). Output is deterministic for a given
project, key and code.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl._files import make_directory, read_small_file, write_atomic
from sealfl.deploy.bundle import BundleParty, ProvisionerKey, sign_bundle
from sealfl.deploy.gramine import load_role_table
from sealfl.deploy.project import LISTENING, PRODUCERS, Org, Party, Project
from sealfl.errors import ConfigError
from sealfl.fl.common.demo_files import toml_value
from sealfl.fl.infer.common import tee_measurement
from sealfl.runtime import load_role_config
from sealfl.tee import load_policy, measure_code

__all__ = [
    "BROKER_PEER",
    "ProvisionResult",
    "provision",
    "seal_key_resource",
    "simulated_measurement",
]

BROKER_PEER = "kbs"
"""The name the broker has in every party's ``[peers]``."""
_KBS_OPTIONS = frozenset({"store", "audit_log", "admins", "nonce_ttl_s", "service_listen"})
_HEADER = "# Written by `sealfl provision` from {project} for {org}; signed: do not edit.\n"


def simulated_measurement(party: Party) -> bytes:
    """Return the measurement ``party``'s run handler gives its simulated TEE.

    Every role measures sealfl's code with its workload and role
    (:meth:`sealfl.runtime.RoleConfig.default_measurement`) except infer's server, which
    measures its workload and mode, the value ``sealfl infer serve --mode tee`` has and
    ``sealfl infer query`` computes (:func:`sealfl.fl.infer.common.tee_measurement`), so a
    server started from a bundle and one started by hand are the same identity.
    """
    if party.kind == ("infer", "server"):
        return tee_measurement()
    return measure_code({"workload": party.workload, "role": party.role})


def seal_key_resource(party: Party) -> str:
    """Return the broker resource holding ``party``'s sealing key (``repo/type/tag``)."""
    return f"{party.workload}/seal-key/{party.name}"


@dataclass(frozen=True)
class ProvisionResult:
    """What :func:`provision` wrote: one bundle directory per organisation."""

    bundles: Mapping[str, Path]
    fingerprint: str
    new_key: bool


def _identity_blocks(
    project: Project,
    peers: list[Party],
    *,
    measurement: Callable[[Party], bytes],
    config_digest: Callable[[Party], bytes],
    prod_ids: Mapping[str, int],
) -> str:
    """Return the TOML of the identities of ``peers`` (any TEE mix)."""
    text = ""
    simulated = [p for p in peers if project.orgs[p.org].tee == "simulated"]
    if simulated:
        measured = sorted({measurement(p).hex() for p in simulated})
        platforms = sorted({str(project.orgs[p.org].platform_fingerprint) for p in simulated})
        text += (
            "\n[simulated]\nallow = true\n"
            f"measurements = {toml_value(measured)}\n"
            f"platform_fingerprints = {toml_value(platforms)}\n"
        )
    for party in (p for p in peers if project.orgs[p.org].tee == "gramine-sgx"):
        kind = f"{party.workload}/{party.role}"
        if kind not in prod_ids:
            raise ConfigError(f"{project.path}: [sgx] roles: no isv_prod_id for {kind}")
        text += (
            f"\n[[sgx]]  # {party.name}\nmr_signer = {toml_value(project.sgx['mr_signer'])}\n"
            f"isv_prod_id = {prod_ids[kind]}\nmin_isv_svn = {project.isv_svn}\n"
        )
        pins = project.sgx.get("mr_enclave", {})
        if isinstance(pins, dict) and kind in pins:
            text += f"mr_enclave = {toml_value(pins[kind])}\n"
    for party in (p for p in peers if project.orgs[p.org].tee == "tdx"):
        text += f"\n[[tdx]]  # {party.name}\nmr_td = {toml_value(project.tdx['mr_td'])}\n"
        for register in ("rtmr0", "rtmr1", "rtmr2"):
            if register in project.tdx:
                text += f"{register} = {toml_value(project.tdx[register])}\n"
        text += f"mr_config_id = {toml_value(config_digest(party).hex())}\n"
    return text


def _policy_toml(project: Project, org: Org, about: str, identities: str) -> str:
    return (
        _HEADER.format(project=project.name, org=org.name)
        + f"# Accepts: {about}.\n"
        + f"tcb_statuses = {toml_value(list(project.tcb_statuses))}\n"
        + "max_evidence_age_seconds = 3600\n"
        + identities
    )


def _tee_lines(org: Org) -> list[str]:
    lines = ["[tee]", f"kind = {toml_value(org.tee)}"]
    if org.tee == "simulated":
        lines.append(f"simulated_platform = {toml_value(org.platform_dir)}")
    return lines


class _Writer:
    """Holds the project while the bundles are written (configs first, then policies)."""

    def __init__(self, project: Project, out: Path, roles: Path) -> None:
        self.project = project
        self.out = out
        self.prod_ids = {name: spec.isv_prod_id for name, spec in load_role_table(roles).items()}
        overrides = project.sgx.get("isv_prod_id", {})
        if isinstance(overrides, dict):
            self.prod_ids.update({str(k): int(v) for k, v in overrides.items()})
        self.configs: dict[str, bytes] = {}

    def bundle(self, org: str) -> Path:
        return self.out / org

    def measurement(self, party: Party) -> bytes:
        kind = f"{party.workload}/{party.role}"
        given = self.project.simulated_measurements.get(kind)
        if given is not None:
            return bytes.fromhex(str(given))
        return simulated_measurement(party)

    def config_digest(self, party: Party) -> bytes:
        return hashlib.sha384(self.configs[party.name]).digest()

    def identities(self, peers: list[Party]) -> str:
        return _identity_blocks(
            self.project,
            peers,
            measurement=self.measurement,
            config_digest=self.config_digest,
            prod_ids=self.prod_ids,
        )

    def role_config(self, party: Party) -> bytes:
        project, org = self.project, self.project.orgs[party.org]
        lines = [
            _HEADER.format(project=project.name, org=org.name).rstrip("\n"),
            f"workload = {toml_value(party.workload)}",
            f"role = {toml_value(party.role)}",
        ]
        if party.attests:
            lines += ["", *_tee_lines(org)]
        attestation = []
        if party.checks_evidence:
            attestation.append(f'policy = "policy-{party.name}.toml"')
        if org.collateral is not None and (party.attests or party.checks_evidence):
            attestation.append(f"collateral = {toml_value(org.collateral)}")
        if attestation:
            lines += ["", "[attestation]", *attestation]
        options = dict(party.options)
        for option, kind in party.pins().items():
            (pinned,) = project.of_kind(kind)
            options[option] = pinned.fingerprint
        kbs_options = {}
        if party.kind == ("kbs", "broker"):
            kbs_options = {k: options.pop(k) for k in list(options) if k in _KBS_OPTIONS}
            key_file = options.pop("key_file", None)
            if key_file is not None:
                lines += ["", "[sealing]", 'source = "file"', f"key_file = {toml_value(key_file)}"]
        elif party.sealing == "broker":
            lines += [
                "",
                "[sealing]",
                'source = "broker"',
                f"resource = {toml_value(seal_key_resource(party))}",
                "",
                "[broker]",
                f'peer = "{BROKER_PEER}"',
                'policy = "policy-broker.toml"',
            ]
        if party.kind in PRODUCERS and project.recipients:
            lines += ["", "[release]", 'policy = "release.toml"']
        if party.listen is not None and party.kind in LISTENING:
            lines += ["", "[listen]", f"address = {toml_value(party.listen)}"]
        peers = self.peer_addresses(party)
        if peers:
            lines += ["", "[peers]", *(f"{k} = {toml_value(v)}" for k, v in peers.items())]
        if options:
            lines += ["", "[options]", *(f"{k} = {_option(v)}" for k, v in options.items())]
        if party.kind == ("kbs", "broker"):
            lines += self.kbs_lines(party, kbs_options)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def peer_addresses(self, party: Party) -> dict[str, str]:
        peers = {}
        for name, kind in party.dials().items():
            (target,) = self.project.of_kind(kind)
            peers[name] = str(target.address)
        if party.sealing == "broker" and party.kind != ("kbs", "broker"):
            assert self.project.broker is not None
            peers[BROKER_PEER] = str(self.project.parties[self.project.broker].address)
        return peers

    def requesters(self, broker: Party) -> list[Party]:
        del broker
        return [p for p in self.project.parties.values() if p.sealing == "broker"]

    def kbs_lines(self, party: Party, options: Mapping[str, Any]) -> list[str]:
        for required in ("store", "audit_log", "admins"):
            if required not in options:
                raise ConfigError(
                    f"{self.project.path}: party {party.name!r}: options.{required} missing "
                    "(a key broker needs its store, audit log and admins)"
                )
        lines = ["", "[kbs]", *(f"{k} = {_option(v)}" for k, v in options.items())]
        for requester in self.requesters(party):
            lines += [
                "",
                "[[kbs.resource]]",
                f"name = {toml_value(seal_key_resource(requester))}",
                f'policy = "resource-{requester.name}.toml"',
                "generate = true",
            ]
        return lines

    def policies(self, party: Party) -> dict[str, str]:
        """Return the policy files (name -> text) that ``party``'s config names."""
        project, org = self.project, self.project.orgs[party.org]
        files = {}
        if party.kind == ("kbs", "broker"):
            for requester in self.requesters(party):
                files[f"resource-{requester.name}.toml"] = _policy_toml(
                    project,
                    org,
                    f"{requester.name} ({requester.workload}/{requester.role}): its sealing key",
                    self.identities([requester]),
                )
            return files
        if party.checks_evidence:
            peers = project.trusted_peers(party)
            about = ", ".join(f"{p.name} ({p.workload}/{p.role}, {p.org})" for p in peers)
            files[f"policy-{party.name}.toml"] = _policy_toml(
                project, org, about or "no peer", self.identities(peers)
            )
        if party.sealing == "broker":
            assert project.broker is not None
            broker = project.parties[project.broker]
            files["policy-broker.toml"] = _policy_toml(
                project, org, f"the key broker {broker.name}", self.identities([broker])
            )
        return files


def _option(value: Any) -> str:
    if isinstance(value, dict):
        raise ConfigError(f"options: nested tables are not role config options, got {value!r}")
    return toml_value(value)


def provision(project: Project, *, out: Path, key_file: Path, roles: Path) -> ProvisionResult:
    """Write and sign every organisation's bundle under ``out/<org>/``.

    An existing bundle directory is replaced whole (a stale file would fail the signature).

    Raises
    ------
    ConfigError
        If the project cannot be turned into valid role configs and policies (each written
        file is read back by the code that will read it at start).
    """
    key, new_key = ProvisionerKey.load_or_create(key_file)
    writer = _Writer(project, out, roles)
    for party in project.parties.values():
        writer.configs[party.name] = writer.role_config(party)
    make_directory(out, what="output directory")
    bundles: dict[str, Path] = {}
    for org in project.orgs.values():
        members = [p for p in project.parties.values() if p.org == org.name]
        if not members:
            continue
        directory = writer.bundle(org.name)
        if directory.exists():
            shutil.rmtree(directory)
        make_directory(directory, what="bundle directory")
        for party in members:
            write_atomic(directory / f"{party.name}.toml", writer.configs[party.name], mode=0o644)
            for name, text in writer.policies(party).items():
                write_atomic(directory / name, text.encode("utf-8"), mode=0o644)
        if any(p.kind in PRODUCERS for p in members) and project.recipients:
            _write_release(project, directory)
        for party in members:
            _read_back(directory, party)
        sign_bundle(
            directory,
            key=key,
            project=project.name,
            org=org.name,
            isv_svn=project.isv_svn,
            parties=[BundleParty(p.name, p.workload, p.role, f"{p.name}.toml") for p in members],
        )
        bundles[org.name] = directory
    return ProvisionResult(bundles=bundles, fingerprint=key.fingerprint, new_key=new_key)


def _write_release(project: Project, directory: Path) -> None:
    lines = [_HEADER.format(project=project.name, org=directory.name)]
    for name, public_key in project.recipients:
        data = read_small_file(public_key, what=f"recipient {name}'s public key", max_bytes=1 << 16)
        write_atomic(directory / f"{name}.pub", data, mode=0o644)
        lines.append(f'[[recipient]]\nname = "{name}"\npublic_key = "{name}.pub"\n')
    write_atomic(directory / "release.toml", "\n".join(lines).encode("utf-8"), mode=0o644)


def _read_back(directory: Path, party: Party) -> None:
    """Load what was written the way the party will, so a mistake shows now, not at start."""
    config = load_role_config(directory / f"{party.name}.toml", environ={})
    for policy in sorted(directory.glob("*.toml")):
        if policy.name.startswith(("policy-", "resource-")):
            load_policy(policy)
    if config.broker_table:
        config.sealing_plan()

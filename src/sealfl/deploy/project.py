"""``project.toml``: one description of a federation, from which each organisation's bundle is made.

Layout (paths are relative to the file; unknown keys are errors naming the file and the key)::

    [project]
    name = "breast-homo-lr"
    isv_svn = 1                  # security version of the release every party runs: SGX
                                 # enclaves are built with it, peers require at least it, a
                                 # host refuses a bundle older than one it already ran
    tcb_statuses = ["UpToDate"]  # real TEEs: TCB statuses the policies accept

    [sgx]                        # organisations on SGX: one release signer, one id per role
    mr_signer = "<64 hex>"
    roles = "roles.toml"         # isv_prod_id per role (default: deploy/gramine/roles.toml)
    [sgx.mr_enclave]             # optional exact pins, from the same release build
    "homo-lr/ps" = "<64 hex>"

    [tdx]                        # organisations on TDX: the image every TD boots
    mr_td = "<96 hex>"
    rtmr0 = "<96 hex>"           # rtmr0..rtmr2 optional; each peer's role config is bound
                                 # through mr_config_id = SHA-384 of the file provision wrote

    [simulated.measurements]     # optional: default is this sealfl's code and the role
    "homo-lr/ps" = "<64 hex>"

    [[org]]
    name = "hospital-a"
    tee = "simulated"            # simulated | gramine-sgx | tdx
    platform_fingerprint = "<64 hex>"     # simulated: the host's platform
    platform_dir = "/srv/sealfl/platform" # simulated: where that host keeps it
    collateral = "https://pccs.example:8081/sgx/certification/v4/"  # real TEEs

    [[party]]
    name = "ps"                  # unique; how peers and the host name it
    org = "hospital-a"
    workload = "homo-lr"
    role = "ps"
    address = "10.231.0.10:50070"  # where peers reach it (a listening role)
    listen = "0.0.0.0:50070"       # default: 0.0.0.0 and the address's port
    sealing = "broker"             # tee (default) | broker: key from the project's broker
    fingerprint = "<64 hex>"       # infer's dealer, and its server in plaintext or mpc mode:
                                   # SHA-256 of the certificate in the key file (options.key_file)
                                   # the party made on its own host; its peers pin it
    [party.options]                # the workload's own options, checked when it starts
    worker_num = 2

    [broker]
    party = "kbs"                # a party with workload = "kbs", role = "broker"

    [[recipient]]                # who can open the trained models (sealfl model open)
    name = "model-owner"
    public_key = "owner.pub"

Which peers a party needs and trusts follows from its workload and role (:data:`PEER_RULES`):
a homo-lr or hfl worker dials its workload's PS and trusts only that role; a PS trusts only
its workload's workers; a vfl follower dials the leader, and each trusts only the other.

infer is the one workload whose parties are not all attested (``options.mode`` of its server
and clients decides, and they must agree). In ``tee`` mode the server runs in a TEE and each
client trusts it by policy; clients and the server's callers are not attested (a client is an
input owner; the server budgets rows per client certificate). In ``plaintext`` and ``mpc``
modes nobody is attested: the server, and in ``mpc`` the dealer it dials, are trusted by the
fingerprint of a certificate each made on its own host (``fingerprint``), which provision
writes into the options of those that pin them (``server_fingerprint``,
``dealer_fingerprint``); no private key passes through the provisioner. The client pins the
dealer itself (a dealer chosen by the server could be its accomplice).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealfl._files import read_small_file
from sealfl.errors import ConfigError
from sealfl.runtime import Table, check_address

__all__ = [
    "LISTENING",
    "PEER_RULES",
    "Org",
    "Party",
    "Project",
    "load_project",
]

_MAX_PROJECT_BYTES = 1 << 20
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TEES = ("simulated", "gramine-sgx", "tdx")
_PARTY_KEYS = frozenset(
    {"name", "org", "workload", "role", "address", "listen", "sealing", "fingerprint", "options"}
)

#: (workload, role) -> {peer name in its config: (workload, role) it dials}. A party trusts
#: exactly the roles it dials and the roles that dial it, those of them that are attested
#: (:meth:`Party.dials`, :meth:`Project.trusted_peers`).
PEER_RULES: Mapping[tuple[str, str], Mapping[str, tuple[str, str]]] = {
    ("homo-lr", "ps"): {},
    ("homo-lr", "worker"): {"ps": ("homo-lr", "ps")},
    ("hfl", "ps"): {},
    ("hfl", "worker"): {"ps": ("hfl", "ps")},
    ("vfl", "leader"): {},
    ("vfl", "follower"): {"leader": ("vfl", "leader")},
    ("infer", "server"): {"dealer": ("infer", "dealer")},  # mpc mode only
    ("infer", "client"): {"server": ("infer", "server")},
    ("infer", "dealer"): {},
    ("kbs", "broker"): {},
}
#: Roles that listen for peers (they need an address).
LISTENING = frozenset(
    {
        ("homo-lr", "ps"),
        ("hfl", "ps"),
        ("vfl", "leader"),
        ("infer", "server"),
        ("infer", "dealer"),
        ("kbs", "broker"),
    }
)
#: Roles that produce a model, so they get the project's release list.
PRODUCERS = frozenset({("homo-lr", "ps"), ("hfl", "ps")})
#: infer's modes (``options.mode`` of its server and clients).
INFER_MODES = ("plaintext", "tee", "mpc")
#: Options provision fills in from the pinned parties' fingerprints (never given by hand).
PIN_OPTIONS = ("server_fingerprint", "dealer_fingerprint")


@dataclass(frozen=True)
class Org:
    """One organisation: its TEE and, for the simulated TEE, its platform."""

    name: str
    tee: str
    platform_fingerprint: str | None = None
    platform_dir: str | None = None
    collateral: str | None = None


@dataclass(frozen=True)
class Party:
    """One party of the federation, run by ``org``."""

    name: str
    org: str
    workload: str
    role: str
    address: str | None
    listen: str | None
    sealing: str
    options: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def kind(self) -> tuple[str, str]:
        """``(workload, role)``."""
        return (self.workload, self.role)

    @property
    def infer_mode(self) -> str | None:
        """The ``options.mode`` of an infer server or client (``None`` for any other party)."""
        mode = self.options.get("mode") if self.workload == "infer" else None
        return None if mode is None else str(mode)

    def dials(self) -> Mapping[str, tuple[str, str]]:
        """Return the peers it dials: name in its ``[peers]`` -> ``(workload, role)``."""
        if self.kind == ("infer", "server") and self.infer_mode != "mpc":
            return {}
        return PEER_RULES[self.kind]

    def pins(self) -> Mapping[str, tuple[str, str]]:
        """Return the peers it pins by certificate: option name -> ``(workload, role)``."""
        if self.kind == ("infer", "server") and self.infer_mode == "mpc":
            return {"dealer_fingerprint": ("infer", "dealer")}
        if self.kind == ("infer", "client") and self.infer_mode in ("plaintext", "mpc"):
            pins = {"server_fingerprint": ("infer", "server")}
            if self.infer_mode == "mpc":
                pins["dealer_fingerprint"] = ("infer", "dealer")
            return pins
        return {}

    @property
    def attests(self) -> bool:
        """Whether it runs in a TEE and shows its peers evidence (they trust it by policy)."""
        if self.workload == "infer":
            return self.role == "server" and self.infer_mode == "tee"
        return True

    @property
    def pinned(self) -> bool:
        """Whether peers trust it by its certificate's fingerprint (infer outside a TEE)."""
        return self.kind == ("infer", "dealer") or (
            self.kind == ("infer", "server") and self.infer_mode in ("plaintext", "mpc")
        )

    @property
    def checks_evidence(self) -> bool:
        """Whether it judges peers' evidence by a policy of its own (``policy-<name>.toml``).

        The key broker judges each requester by the resource's policy instead; of infer's
        parties only a client in ``tee`` mode checks evidence (the server's).
        """
        if self.kind == ("kbs", "broker"):
            return False
        if self.workload == "infer":
            return self.role == "client" and self.infer_mode == "tee"
        return True


@dataclass(frozen=True)
class Project:
    """A parsed ``project.toml`` (see the module docstring)."""

    path: Path
    name: str
    isv_svn: int
    tcb_statuses: tuple[str, ...]
    orgs: Mapping[str, Org]
    parties: Mapping[str, Party]
    sgx: Mapping[str, Any]
    tdx: Mapping[str, Any]
    simulated_measurements: Mapping[str, str]
    broker: str | None
    recipients: tuple[tuple[str, Path], ...]

    def of_kind(self, kind: tuple[str, str]) -> list[Party]:
        """Return the parties of ``(workload, role)``, in the file's order."""
        return [p for p in self.parties.values() if p.kind == kind]

    def trusted_peers(self, party: Party) -> list[Party]:
        """Return the attested parties whose evidence ``party`` must accept, in file order.

        Those it dials and those that dial it; a party that shows no evidence (infer's
        clients and dealer) is trusted by certificate pin or not at all, never by policy.
        """
        dialled = set(party.dials().values())
        return [
            p
            for p in self.parties.values()
            if p.attests and (p.kind in dialled or party.kind in p.dials().values())
        ]


def _name(table: Table, key: str) -> str:
    value = table.string(key, required=True)
    if not _NAME.match(value):
        raise table.fail(key, f"expected lower-case letters, digits and '-', got {value!r}")
    return str(value)


def _hex(table: Table, key: str, size: int, *, required: bool = False) -> str | None:
    value = table.string(key, required=required)
    if value is None:
        return None
    text = value.strip().lower()
    if len(text) != 2 * size or any(c not in "0123456789abcdef" for c in text):
        raise table.fail(key, f"expected {2 * size} hex digits, got {value!r}")
    return str(text)


def _tables(document: Mapping[str, Any], key: str, source: str, base: Path) -> list[Table]:
    rows = document.get(key, [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{source}: {key}: expected [[{key}]] tables")
    return [
        Table(row, source=source, where=f"{key}[{index}]", base_dir=base)
        for index, row in enumerate(rows)
    ]


def _org(table: Table) -> Org:
    name = _name(table, "name")
    tee = table.string("tee", required=True)
    if tee not in _TEES:
        raise table.fail("tee", f"expected one of {', '.join(_TEES)}, got {tee!r}")
    simulated = tee == "simulated"
    org = Org(
        name=name,
        tee=tee,
        platform_fingerprint=_hex(table, "platform_fingerprint", 32, required=simulated),
        platform_dir=table.string("platform_dir", required=simulated),
        collateral=table.string("collateral", required=not simulated),
    )
    if not simulated and org.platform_fingerprint is not None:
        raise table.fail("platform_fingerprint", f"only for tee = 'simulated', not {tee!r}")
    table.finish()
    return org


def _party(table: Table, orgs: Mapping[str, Org]) -> Party:
    # The options table is taken whole (raw), which counts every key as read: check them here.
    unknown = sorted(set(table.raw()) - _PARTY_KEYS)
    if unknown:
        raise table.fail(
            ", ".join(unknown), f"unknown key(s); expected some of {sorted(_PARTY_KEYS)}"
        )
    name = _name(table, "name")
    org = table.string("org", required=True)
    if org not in orgs:
        raise table.fail("org", f"no [[org]] named {org!r}; expected one of {sorted(orgs)}")
    workload, role = table.string("workload", required=True), table.string("role", required=True)
    if (workload, role) not in PEER_RULES:
        known = ", ".join(f"{w}/{r}" for w, r in PEER_RULES)
        raise table.fail("role", f"no {workload}/{role} to provision; expected one of {known}")
    address = table.string("address", required=(workload, role) in LISTENING)
    if address is not None:
        check_address(address, where=f"{table.source}: {name}.address")
    listen = table.string("listen")
    if listen is None and address is not None:
        listen = f"0.0.0.0:{address.rpartition(':')[2]}"
    if listen is not None:
        check_address(listen, where=f"{table.source}: {name}.listen")
    sealing = table.string("sealing", "tee")
    if sealing not in ("tee", "broker"):
        raise table.fail("sealing", f"expected 'tee' or 'broker', got {sealing!r}")
    options = table.raw()["options"] if table.has("options") else {}
    if not isinstance(options, dict):
        raise table.fail("options", f"expected a table, got {options!r}")
    fingerprint = _hex(table, "fingerprint", 32)
    table.finish()
    party = Party(name, org, workload, role, address, listen, sealing, dict(options), fingerprint)
    _check_trust(table, party)
    return party


def _check_trust(table: Table, party: Party) -> None:
    """Check what decides how peers trust ``party``: infer's mode, pins and fingerprint."""
    if party.workload == "infer" and party.role != "dealer" and party.infer_mode not in INFER_MODES:
        raise table.fail(
            "options.mode",
            f"expected one of {', '.join(INFER_MODES)} for an infer {party.role}, "
            f"got {party.options.get('mode')!r}",
        )
    given = sorted(set(PIN_OPTIONS) & set(party.options))
    if given:
        raise table.fail(
            f"options.{given[0]}",
            "written by provision from the pinned party's fingerprint; give that party's "
            "fingerprint instead",
        )
    if party.pinned:
        if party.fingerprint is None:
            raise table.fail(
                "fingerprint",
                f"missing: peers pin this infer {party.role} by its certificate; give the "
                "SHA-256 its key file's certificate has (its ready line prints it)",
            )
        if "key_file" not in party.options:
            raise table.fail(
                "options.key_file",
                "missing: without its key file the party makes a new certificate at every "
                "start, and the pinned fingerprint stops matching",
            )
    elif party.fingerprint is not None:
        raise table.fail(
            "fingerprint",
            f"only for infer's dealer and its plaintext or mpc server, not a "
            f"{party.workload} {party.role}"
            + (f" in {party.infer_mode} mode" if party.infer_mode else ""),
        )
    if party.sealing == "broker" and not party.attests:
        raise table.fail(
            "sealing", f"'broker' needs a party that runs in a TEE, not this {party.kind}"
        )


def load_project(path: Path) -> Project:
    """Read and check ``project.toml``.

    Raises
    ------
    ConfigError
        Naming the file, the table and the key of the first problem.
    """
    path = Path(path)
    raw = read_small_file(path, what="project file", max_bytes=_MAX_PROJECT_BYTES)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    source, base = str(path), path.parent
    unknown = sorted(
        set(document)
        - {"project", "sgx", "tdx", "simulated", "org", "party", "broker", "recipient"}
    )
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {unknown}")

    def table(name: str) -> Table:
        value = document.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {name}: expected a table [{name}]")
        return Table(value, source=source, where=name, base_dir=base)

    head = table("project")
    name = _name(head, "name")
    isv_svn = head.integer("isv_svn", required=True)
    if isv_svn > 0xFFFF:
        raise head.fail("isv_svn", f"expected 0..65535, got {isv_svn}")
    statuses = head.raw().get("tcb_statuses", ["UpToDate"])
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
        raise head.fail("tcb_statuses", f"expected a list of strings, got {statuses!r}")
    head.finish()

    orgs: dict[str, Org] = {}
    for row in _tables(document, "org", source, base):
        org = _org(row)
        if org.name in orgs:
            raise row.fail("name", f"a second org named {org.name!r}")
        orgs[org.name] = org
    parties: dict[str, Party] = {}
    for row in _tables(document, "party", source, base):
        party = _party(row, orgs)
        if party.name in parties:
            raise row.fail("name", f"a second party named {party.name!r}")
        parties[party.name] = party
    if not parties:
        raise ConfigError(f"{path}: no [[party]]; a federation needs at least one")

    sgx, tdx = table("sgx"), table("tdx")
    sgx_raw = dict(sgx.raw())
    tdx_raw = dict(tdx.raw())
    tees = {org.tee for org in orgs.values()}
    if "gramine-sgx" in tees:
        _hex(
            Table(sgx_raw, source=source, where="sgx", base_dir=base),
            "mr_signer",
            32,
            required=True,
        )
    if "tdx" in tees:
        _hex(Table(tdx_raw, source=source, where="tdx", base_dir=base), "mr_td", 48, required=True)
    simulated = table("simulated")
    measurements = simulated.raw().get("measurements", {})
    if not isinstance(measurements, dict):
        raise simulated.fail("measurements", "expected a table of 'workload/role' = hex")
    broker_table = table("broker")
    broker = broker_table.string("party")
    broker_table.finish()
    if broker is not None and (broker not in parties or parties[broker].kind != ("kbs", "broker")):
        raise broker_table.fail(
            "party", f"expected a party with workload kbs, role broker; got {broker!r}"
        )
    for party in parties.values():
        if party.sealing == "broker" and broker is None:
            raise ConfigError(
                f"{path}: party {party.name!r}: sealing = 'broker' needs [broker] party"
            )
    recipients = []
    for row in _tables(document, "recipient", source, base):
        recipients.append((_name(row, "name"), row.path("public_key", required=True)))
        row.finish()
    project = Project(
        path=path,
        name=name,
        isv_svn=isv_svn,
        tcb_statuses=tuple(statuses),
        orgs=orgs,
        parties=parties,
        sgx=sgx_raw,
        tdx=tdx_raw,
        simulated_measurements=dict(measurements),
        broker=broker,
        recipients=tuple(recipients),
    )
    for party in parties.values():
        needs = [("dials its", peer, kind) for peer, kind in party.dials().items()]
        needs += [("pins its", option, kind) for option, kind in party.pins().items()]
        for verb, peer, kind in needs:
            if len(project.of_kind(kind)) != 1:
                raise ConfigError(
                    f"{path}: party {party.name!r} ({party.workload}/{party.role}) {verb} "
                    f"{peer}: expected exactly one party with workload {kind[0]}, role "
                    f"{kind[1]}, found {len(project.of_kind(kind))}"
                )
    modes = {p.infer_mode for p in parties.values() if p.infer_mode is not None}
    if len(modes) > 1:
        raise ConfigError(
            f"{path}: infer's server and clients must share one options.mode, got "
            f"{', '.join(f'{p.name}: {p.infer_mode}' for p in parties.values() if p.infer_mode)}"
        )
    return project

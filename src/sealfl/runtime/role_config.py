"""Role configs: one measured TOML file per role, so the host cannot change what a party trusts.

Under Gramine a party starts as ``sealfl run --config ROLE.toml`` with that argv fixed in the
manifest and the config among its trusted files; on TDX the config's SHA-384 can be bound through
``mr_config_id``. Everything that decides a check lives in the file: the workload and role, the
TEE, the policy files, the collateral source, the sealing-key source, the release list, the data
paths and the options. Only addresses come from the host, through two environment variables
that are validated and cannot weaken a check (peers are still verified by policy, whatever
address they answer on):

- ``SEALFL_LISTEN=host:port`` replaces ``[listen] address``;
- ``SEALFL_PEERS=name=host:port,name=host:port`` replaces addresses of peers the file declares
  in ``[peers]`` (an undeclared name is refused, so the host cannot add a peer).

Layout (paths are relative to the config file's directory)::

    workload = "homo-lr"                 # homo-lr | infer | kbs
    role = "ps"                          # homo-lr: ps | worker; infer: server | client | dealer

    [tee]
    kind = "simulated"                   # simulated | gramine-sgx | tdx | auto
    simulated_platform = "platform"      # simulated only
    sgx_sealing_key = "mrenclave"        # gramine-sgx only: mrenclave | mrsigner

    [attestation]
    policy = "policy-ps.toml"            # how this party judges its peers' evidence
    collateral = "collateral/"           # real TEEs: a file, a directory, or a PCCS https URL
    collateral_cache = "collateral-cache"
    disclose_refusals = false            # tell refused peers why (development); off by default

    [sealing]
    source = "tee"                       # tee | broker | file
    key_file = "dev.key"                 # file only
    resource = "homo-lr/seal-key/model"  # broker only: the resource holding the base key

    [broker]                             # the key broker, for sealing keys and model fetch
    peer = "kbs"                         # a name in [peers]
    policy = "policy-kbs.toml"           # its RA-TLS evidence must pass this; or:
    fingerprint = "<64 hex>"             # a broker on a trusted node, pinned

    [release]
    policy = "release.toml"              # who can open what this party produces

    [listen]
    address = "127.0.0.1:50070"

    [peers]
    kbs = "127.0.0.1:50080"

    [options]                            # the workload's own settings, checked by the workload
    worker_num = 2

A key broker's config (``workload = "kbs"``, ``role = "broker"``) has a ``[kbs]`` table instead
(:mod:`sealfl.kbs.config`); its ``[listen]`` address, when given, replaces ``kbs.listen``.

Unknown keys are errors naming the file and the key, so a typo never silently drops a setting.
"""

from __future__ import annotations

import enum
import hashlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sealfl.errors import ConfigError
from sealfl.net.addresses import split_address
from sealfl.runtime.party import (
    BrokerRef,
    PartyRuntime,
    SealingPlan,
    SealingSource,
    broker_verifier,
)
from sealfl.runtime.tee_select import (
    DEFAULT_DEVICES,
    SgxSealingKey,
    TeeChoice,
    TeeDevices,
    TeeKind,
)
from sealfl.tee import Verifier, load_policy, measure_code
from sealfl.tee.collateral import CollateralSource, collateral_source

E = TypeVar("E", bound=enum.Enum)

LISTEN_ENV = "SEALFL_LISTEN"
PEERS_ENV = "SEALFL_PEERS"
_MAX_CONFIG_BYTES = 1 << 20
_TOP_KEYS = frozenset(
    {
        "workload",
        "role",
        "tee",
        "attestation",
        "sealing",
        "broker",
        "release",
        "listen",
        "peers",
        "options",
        "kbs",
    }
)
_TABLE_KEYS: Mapping[str, frozenset[str]] = {
    "tee": frozenset({"kind", "simulated_platform", "sgx_sealing_key"}),
    "attestation": frozenset({"policy", "collateral", "collateral_cache", "disclose_refusals"}),
    "sealing": frozenset({"source", "key_file", "resource"}),
    "broker": frozenset({"peer", "policy", "fingerprint"}),
    "release": frozenset({"policy"}),
    "listen": frozenset({"address"}),
}


def check_address(text: str, *, where: str) -> str:
    """Return ``text`` if it is ``host:port`` with a port in 0..65535.

    Raises
    ------
    ConfigError
        Naming ``where`` and the value.
    """
    try:
        _, port = split_address(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port must be 0..65535, got {port} in {text!r}")
    return text


class Table:
    """Typed, strict access to one TOML table; every error names the file and the key.

    Keys read are remembered, so :meth:`finish` can refuse the ones nobody read (typos).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        source: str,
        where: str,
        base_dir: Path,
        allowed: frozenset[str] | None = None,
    ) -> None:
        self._allowed = allowed
        self._data = data
        self._source = source
        self._where = where
        self._base_dir = base_dir
        self._read: set[str] = set()

    @property
    def source(self) -> str:
        """The file the table came from."""
        return self._source

    def fail(self, key: str, message: str) -> ConfigError:
        """Return the error for ``key`` (to raise)."""
        prefix = f"{self._where}." if self._where else ""
        return ConfigError(f"{self._source}: {prefix}{key}: {message}")

    def has(self, key: str) -> bool:
        """Whether ``key`` is present."""
        return key in self._data

    def _get(self, key: str, default: Any, required: bool) -> Any:
        self._read.add(key)
        if key not in self._data:
            if required:
                raise self.fail(key, "missing (required)")
            return default
        return self._data[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        """Return a string value (``default`` if absent)."""
        value = self._get(key, default, required)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def choice(self, key: str, kind: type[E], default: E | None = None) -> E:
        """Return one of the values of the string enum ``kind`` (required without a default)."""
        text = self.string(
            key, None if default is None else default.value, required=default is None
        )
        try:
            return kind(text)
        except ValueError:
            choices = ", ".join(member.value for member in kind)
            raise self.fail(key, f"expected one of {choices}, got {text!r}") from None

    def path(self, key: str, *, required: bool = False) -> Any:
        """Return a path, relative to the config file's directory (``None`` if absent)."""
        value = self.string(key, required=required)
        return None if value is None else (self._base_dir / value)

    def integer(
        self, key: str, default: int | None = None, *, required: bool = False, minimum: int = 0
    ) -> Any:
        """Return an integer of at least ``minimum``."""
        value = self._get(key, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"expected at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float | None = None, *, required: bool = False) -> Any:
        """Return a finite number."""
        value = self._get(key, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        return float(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        """Return ``true`` or ``false``."""
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def raw(self) -> Mapping[str, Any]:
        """Return the table as parsed, for a part that checks its own keys (all count as read)."""
        self._read.update(self._data)
        return self._data

    def finish(self) -> None:
        """Refuse keys that were never read (a typo would otherwise be ignored).

        Raises
        ------
        ConfigError
            Naming the unknown keys.
        """
        known = self._read if self._allowed is None else self._allowed | self._read
        unknown = sorted(set(self._data) - known)
        if unknown:
            raise self.fail(", ".join(unknown), f"unknown key(s); expected some of {sorted(known)}")


@dataclass(frozen=True)
class RoleConfig:
    """A parsed role config (see the module docstring for the layout).

    Attributes
    ----------
    path
        The file.
    sha384
        SHA-384 of its bytes: what a TDX policy's ``mr_config_id_of`` pins.
    options
        The ``[options]`` table, for the workload to read with :class:`Table` and finish.
    """

    path: Path
    sha384: bytes
    workload: str
    role: str
    tee: TeeChoice | None
    policy: Path | None
    collateral: str | None
    collateral_cache: Path | None
    disclose_refusals: bool
    sealing_table: Mapping[str, Any]
    broker_table: Mapping[str, Any]
    kbs_table: Mapping[str, Any] | None
    release: Path | None
    listen: str | None
    peers: Mapping[str, str]
    options: Table = field(repr=False)

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the file are resolved against."""
        return self.path.parent

    def peer(self, name: str) -> str:
        """Return the address of peer ``name``.

        Raises
        ------
        ConfigError
            If the config declares no such peer.
        """
        if name not in self.peers:
            raise ConfigError(
                f"{self.path}: [peers] has no {name!r} (this {self.workload} {self.role} needs "
                f"its address; declared: {sorted(self.peers) or 'none'})"
            )
        return self.peers[name]

    def require_listen(self) -> str:
        """Return the listen address (config or ``SEALFL_LISTEN``).

        Raises
        ------
        ConfigError
            If neither gives one.
        """
        if self.listen is None:
            raise ConfigError(f"{self.path}: [listen] address missing (or set {LISTEN_ENV})")
        return self.listen

    def runtime(self, *, simulated_measurement: Callable[[], bytes]) -> PartyRuntime:
        """Build the party runtime this config describes.

        Raises
        ------
        ConfigError
            If a file it names is unusable, the TEE cannot be selected, or the config has no
            ``[tee] kind``.
        """
        if self.tee is None:
            raise ConfigError(
                f"{self.path}: [tee] kind missing: a {self.workload} {self.role} runs in a TEE "
                "(simulated, gramine-sgx, tdx or auto)"
            )
        return PartyRuntime.create(
            self.tee,
            simulated_measurement=simulated_measurement,
            policy=self.policy,
            collateral=self.collateral,
            collateral_cache=self.collateral_cache,
            sealing=self.sealing_plan(),
            broker=self.broker(),
            release=self.release,
            disclose_refusals=self.disclose_refusals,
        )

    def default_measurement(self) -> bytes:
        """Return the simulated measurement of this role: sealfl's code, workload and role."""
        return measure_code({"workload": self.workload, "role": self.role})

    def peer_verifier(self) -> Verifier:
        """Return the verifier of ``[attestation]`` for a party that runs outside a TEE.

        Raises
        ------
        ConfigError
            If the config names no policy.
        """
        if self.policy is None:
            raise ConfigError(f"{self.path}: [attestation] policy missing")
        return Verifier(load_policy(self.policy), collateral=self._collateral_source())

    def _collateral_source(self) -> CollateralSource | None:
        if self.collateral is None:
            return None
        return collateral_source(self.collateral, cache_dir=self.collateral_cache)

    def sealing_plan(self) -> SealingPlan:
        """Return where this party's sealing keys come from (``[sealing]``).

        Raises
        ------
        ConfigError
            If the source is unknown or lacks what it needs (key file, broker, resource).
        """
        table = Table(
            self.sealing_table,
            source=str(self.path),
            where="sealing",
            base_dir=self.base_dir,
            allowed=_TABLE_KEYS["sealing"],
        )
        source = table.choice("source", SealingSource, SealingSource.TEE)
        key_file = table.path("key_file")
        resource = table.string("resource", required=source is SealingSource.BROKER)
        table.finish()
        try:
            return SealingPlan(source=source, key_file=key_file, resource=resource)
        except ConfigError as exc:
            raise table.fail("source", str(exc)) from None

    def broker(self) -> BrokerRef | None:
        """Return the key broker of ``[broker]``, or ``None`` without one.

        Raises
        ------
        ConfigError
            If the peer is undeclared, or not exactly one of policy and fingerprint is given.
        """
        if not self.broker_table:
            return None
        table = Table(
            self.broker_table,
            source=str(self.path),
            where="broker",
            base_dir=self.base_dir,
            allowed=_TABLE_KEYS["broker"],
        )
        address = self.peer(table.string("peer", required=True))
        verify = broker_verifier(
            policy=table.path("policy"),
            fingerprint=table.string("fingerprint"),
            collateral=self._collateral_source() if table.has("policy") else None,
            prefix=f"{self.path}: ",
        )
        table.finish()
        return BrokerRef(address, verify)


def _parse_peers_env(text: str, declared: Mapping[str, str], source: str) -> dict[str, str]:
    peers = dict(declared)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"{PEERS_ENV}: expected name=host:port entries, got {item!r}")
        if name not in declared:
            raise ConfigError(
                f"{PEERS_ENV}: peer {name!r} is not declared in {source} [peers] "
                f"(declared: {sorted(declared) or 'none'}); the host may move peers, not add them"
            )
        peers[name] = check_address(address.strip(), where=f"{PEERS_ENV} {name}")
    return peers


def load_role_config(
    path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    devices: TeeDevices = DEFAULT_DEVICES,
) -> RoleConfig:
    """Read and check a role config; apply ``SEALFL_LISTEN`` and ``SEALFL_PEERS``.

    Parameters
    ----------
    path
        The role config.
    environ
        The environment to read the two address variables from (default: ``os.environ``).
    devices
        Where the TEE interfaces are (tests point these at fake trees).

    Raises
    ------
    ConfigError
        Naming the file and key of the first problem.
    """
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read role config {path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes; not a role config")
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    source, base = str(path), path.parent
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {unknown}; expected some of {sorted(_TOP_KEYS)}"
        )
    top = Table(document, source=source, where="", base_dir=base)
    workload = top.string("workload", required=True)
    role = top.string("role", required=True)
    tables: dict[str, Table] = {}
    for name in (*_TABLE_KEYS, "peers", "options"):
        value = document.get(name, {})
        if not isinstance(value, dict):
            raise top.fail(name, f"expected a table ([{name}]), got {type(value).__name__}")
        tables[name] = Table(
            value, source=source, where=name, base_dir=base, allowed=_TABLE_KEYS.get(name)
        )

    tee_table = tables["tee"]
    tee = None
    if tee_table.has("kind"):
        tee = TeeChoice(
            kind=tee_table.choice("kind", TeeKind),
            simulated_platform=tee_table.path("simulated_platform"),
            sgx_sealing_key=tee_table.choice(
                "sgx_sealing_key", SgxSealingKey, SgxSealingKey.MRENCLAVE
            ),
            devices=devices,
        )
    tee_table.finish()

    attestation = tables["attestation"]
    policy = attestation.path("policy")
    collateral = attestation.string("collateral")
    if collateral is not None and "://" not in collateral:
        collateral = str(base / collateral)
    collateral_cache = attestation.path("collateral_cache")
    disclose_refusals = attestation.boolean("disclose_refusals", False)
    attestation.finish()

    release_table = tables["release"]
    release = release_table.path("policy")
    release_table.finish()

    listen_table = tables["listen"]
    listen = listen_table.string("address")
    listen_table.finish()
    if listen is not None:
        listen = check_address(listen, where=f"{source} [listen] address")
    if LISTEN_ENV in environ:
        listen = check_address(environ[LISTEN_ENV], where=LISTEN_ENV)

    tables["sealing"].choice("source", SealingSource, SealingSource.TEE)  # checked early
    for name in ("sealing", "broker"):
        tables[name].finish()  # the rest is read when the runtime is built
    kbs = document.get("kbs")
    if kbs is not None and (workload != "kbs" or not isinstance(kbs, dict)):
        raise top.fail("kbs", "a [kbs] table belongs in a key broker's config (workload = 'kbs')")
    declared = {
        name: check_address(_peer_text(value, source, name), where=f"{source} [peers] {name}")
        for name, value in tables["peers"].raw().items()
    }
    peers = _parse_peers_env(environ.get(PEERS_ENV, ""), declared, source)

    return RoleConfig(
        path=path,
        sha384=hashlib.sha384(raw).digest(),
        workload=workload,
        role=role,
        tee=tee,
        policy=policy,
        collateral=collateral,
        collateral_cache=collateral_cache,
        disclose_refusals=disclose_refusals,
        sealing_table=tables["sealing"].raw(),
        broker_table=tables["broker"].raw(),
        kbs_table=kbs,
        release=release,
        listen=listen,
        peers=peers,
        options=tables["options"],
    )


def _peer_text(value: Any, source: str, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: peers.{name}: expected 'host:port', got {value!r}")
    return value

"""Read a :class:`~sealfl.tee.Policy` from a TOML file, or from cczoo's ``dynamic_config.json``.

TOML layout (every key optional except the identities you need; unknown keys are errors, so a
typo never silently widens a policy)::

    tcb_statuses = ["UpToDate"]            # acceptable TCB statuses, listed explicitly
    rejected_advisories = []
    allow_debug = false
    allow_dynamic_platform = false         # e.g. the TDX vector's PCK cert marks one
    allow_cached_keys = false
    allow_smt = true
    max_evidence_age_seconds = 600         # RA-TLS issued-at freshness

    [[sgx]]                                # any number; evidence must match one
    mr_enclave = "<64 hex>"
    mr_signer = "<64 hex>"
    isv_prod_id = 0                        # exact
    min_isv_svn = 0                        # at least

    [[tdx]]                                # any number; evidence must match one
    mr_td = "<96 hex>"
    rtmr0 = "<96 hex>"                     # rtmr0..rtmr3, each optional
    mr_seam = "<96 hex>"                   # the TDX module
    mr_config_id = "<96 hex>"              # or: mr_config_id_of = "role.toml"
    mr_owner = "<96 hex>"
    mr_owner_config = "<96 hex>"
    td_attributes = "<16 hex>"             # bytes as in the report (as `attest verify` prints)
    td_attributes_mask = "<16 hex>"        # default ffffffffffffffff: exact
    xfam = "<16 hex>"
    xfam_mask = "<16 hex>"

    [simulated]
    allow = true
    measurements = ["<64 hex>"]
    platform_fingerprints = ["<64 hex>"]

cczoo's JSON (``verify_mr_enclave: "on"`` ..., ``sgx_mrs: [{mr_enclave, mr_signer, isv_prod_id,
isv_svn}]``) loads as-is, including the trailing commas its published template contains; fields
whose ``verify_*`` switch is ``"off"`` (or absent) are not checked, and ``isv_svn`` is a minimum.
A switch set to anything but ``"on"`` or ``"off"`` is an error, as is ``verify_config_svn = "on"``
(config_svn is not checked): either would otherwise leave a check off that the file asks for.
Debug enclaves are refused whatever ``verify_enclave_debuggable`` says.

``mr_config_id_of = "role.toml"`` pins ``mr_config_id`` to the SHA-384 of that file's bytes
(:func:`mr_config_id_of`), read when the policy is loaded, from a path relative to the policy
file's directory. It binds a TD's role configuration into its quote; the host passes the same
digest as the TD's MRCONFIGID at launch. Giving both ``mr_config_id`` and ``mr_config_id_of`` is
an error, as is a mask without its value.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from sealfl.errors import ConfigError
from sealfl.tee.policy import TDX_ATTRIBUTES_SIZE, Policy, SgxIdentity, TdxIdentity

_TOP_KEYS = frozenset(
    {
        "tcb_statuses",
        "rejected_advisories",
        "allow_debug",
        "allow_dynamic_platform",
        "allow_cached_keys",
        "allow_smt",
        "max_evidence_age_seconds",
        "sgx",
        "tdx",
        "simulated",
    }
)
_MAX_EVIDENCE_AGE_S = 10 * 365 * 24 * 3600  # ten years: longer is no freshness check at all
_SGX_KEYS = frozenset({"mr_enclave", "mr_signer", "isv_prod_id", "min_isv_svn"})
_TDX_DIGEST_KEYS = ("mr_config_id", "mr_owner", "mr_owner_config", "mr_seam")
_TDX_MASKED_KEYS = ("td_attributes", "xfam")
_TDX_KEYS = frozenset(
    {"mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id_of"}
    | set(_TDX_DIGEST_KEYS)
    | set(_TDX_MASKED_KEYS)
    | {f"{key}_mask" for key in _TDX_MASKED_KEYS}
)
_SIMULATED_KEYS = frozenset({"allow", "measurements", "platform_fingerprints"})
_CCZOO_SWITCHES = frozenset(
    {
        "verify_mr_enclave",
        "verify_mr_signer",
        "verify_isv_prod_id",
        "verify_isv_svn",
        "verify_in_enclave",
        "verify_enclave_debuggable",
        "verify_config_svn",
    }
)
_CCZOO_LISTS = ("sgx_mrs", "mrs")
_CCZOO_ENTRY_KEYS = frozenset(
    {"mr_enclave", "mr_signer", "isv_prod_id", "isv_svn", "config_svn", "debuggable"}
)


class _Reader:
    """Typed access to a parsed document that names the file and key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"policy {self.source}: {where}: {message}")

    def check_keys(self, table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {unknown}; expected some of {sorted(allowed)}")

    def table(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {type(value).__name__}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{where}{key}", f"expected true or false, got {value!r}")
        return value

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{where}{key}", f"expected a list of strings, got {value!r}")
        return value

    def digest(self, value: Any, size: int, where: str) -> bytes:
        if not isinstance(value, str):
            raise self.fail(where, f"expected {2 * size} hex digits, got {type(value).__name__}")
        try:
            raw = bytes.fromhex(value.strip())
        except ValueError as exc:
            raise self.fail(where, f"expected {2 * size} hex digits, got {value!r}") from exc
        if len(raw) != size:
            raise self.fail(where, f"expected {2 * size} hex digits, got {2 * len(raw)}")
        return raw

    def integer(self, value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {value!r}")
        return value


def _build(reader: _Reader, where: str, build: Any) -> Any:
    """Call a constructor, re-raising its ConfigError with the file and location named."""
    try:
        return build()
    except ConfigError as exc:
        raise reader.fail(where, str(exc)) from exc


def _sgx_from_toml(reader: _Reader, raw: Any, index: int) -> SgxIdentity:
    where = f"sgx[{index}]"
    table = reader.table(raw, where)
    reader.check_keys(table, _SGX_KEYS, where)
    fields: dict[str, Any] = {}
    for key in ("mr_enclave", "mr_signer"):
        if key in table:
            fields[key] = reader.digest(table[key], 32, f"{where}.{key}")
    for key in ("isv_prod_id", "min_isv_svn"):
        if key in table:
            fields[key] = reader.integer(table[key], f"{where}.{key}")
    return _build(reader, where, lambda: SgxIdentity(**fields))


def mr_config_id_of(path: Path) -> bytes:
    """Return the TDX ``mr_config_id`` that binds the file at ``path``: SHA-384 of its bytes.

    The host passes this value as the TD's MRCONFIGID at launch; a policy pins it with
    ``mr_config_id_of``.

    Raises
    ------
    ConfigError
        If the file cannot be read.
    """
    try:
        return hashlib.sha384(Path(path).read_bytes()).digest()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _config_id_from_file(reader: _Reader, value: Any, base_dir: Path | None, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise reader.fail(where, f"expected a file name, got {value!r}")
    path = Path(value)
    if not path.is_absolute():
        if base_dir is None:
            raise reader.fail(
                where,
                f"relative path {value!r} needs the policy file's directory (load the policy with "
                "load_policy, or pass base_dir)",
            )
        path = base_dir / path
    try:
        return mr_config_id_of(path)
    except ConfigError as exc:
        raise reader.fail(where, f"{exc} (mr_config_id = SHA-384 of that file's bytes)") from exc


def _masked(reader: _Reader, table: Mapping[str, Any], key: str, where: str) -> Any:
    mask_key = f"{key}_mask"
    if key not in table:
        if mask_key in table:
            raise reader.fail(f"{where}.{mask_key}", f"a mask needs its value: {key} is missing")
        return None
    expected = reader.digest(table[key], TDX_ATTRIBUTES_SIZE, f"{where}.{key}")
    mask = (
        reader.digest(table[mask_key], TDX_ATTRIBUTES_SIZE, f"{where}.{mask_key}")
        if mask_key in table
        else b"\xff" * TDX_ATTRIBUTES_SIZE
    )
    return (expected, mask)


def _tdx_from_toml(reader: _Reader, raw: Any, index: int, base_dir: Path | None) -> TdxIdentity:
    where = f"tdx[{index}]"
    table = reader.table(raw, where)
    reader.check_keys(table, _TDX_KEYS, where)
    fields: dict[str, Any] = {}
    if "mr_td" in table:
        fields["mr_td"] = reader.digest(table["mr_td"], 48, f"{where}.mr_td")
    fields["rtmrs"] = tuple(
        reader.digest(table[f"rtmr{i}"], 48, f"{where}.rtmr{i}") if f"rtmr{i}" in table else None
        for i in range(4)
    )
    for key in _TDX_DIGEST_KEYS:
        if key in table:
            fields[key] = reader.digest(table[key], 48, f"{where}.{key}")
    if "mr_config_id_of" in table:
        if "mr_config_id" in table:
            raise reader.fail(
                where, "give mr_config_id or mr_config_id_of, not both (they could disagree)"
            )
        fields["mr_config_id"] = _config_id_from_file(
            reader, table["mr_config_id_of"], base_dir, f"{where}.mr_config_id_of"
        )
    for key in _TDX_MASKED_KEYS:
        fields[key] = _masked(reader, table, key, where)
    return _build(reader, where, lambda: TdxIdentity(**fields))


def policy_from_toml(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> Policy:
    """Parse a TOML policy (layout in the module docstring).

    Parameters
    ----------
    source
        Names the policy in every error.
    base_dir
        Directory that relative ``mr_config_id_of`` paths are read from (:func:`load_policy`
        passes the policy file's own directory); ``None`` allows absolute paths only.

    Raises
    ------
    ConfigError
        Naming the file and key of the first problem.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy {source}: not valid TOML ({exc})") from exc
    return policy_from_document(document, source=source, base_dir=base_dir)


def policy_from_document(
    document: Mapping[str, Any], *, source: str = "<string>", base_dir: Path | None = None
) -> Policy:
    """Build a policy from an already parsed TOML document (for a policy table inside a file).

    Parameters are those of :func:`policy_from_toml`.

    Raises
    ------
    ConfigError
        Naming the file and key of the first problem.
    """
    reader = _Reader(source)
    document = reader.table(document, "top level")
    reader.check_keys(document, _TOP_KEYS, "top level")
    sgx_list = document.get("sgx", [])
    tdx_list = document.get("tdx", [])
    if not isinstance(sgx_list, list) or not isinstance(tdx_list, list):
        raise reader.fail("sgx/tdx", "expected arrays of tables ([[sgx]], [[tdx]])")
    simulated = reader.table(document.get("simulated", {}), "simulated")
    reader.check_keys(simulated, _SIMULATED_KEYS, "simulated")
    max_age = document.get("max_evidence_age_seconds")
    if max_age is not None:
        seconds = reader.integer(max_age, "max_evidence_age_seconds")
        if abs(seconds) > _MAX_EVIDENCE_AGE_S:  # far beyond it, timedelta overflows
            raise reader.fail(
                "max_evidence_age_seconds", f"expected at most {_MAX_EVIDENCE_AGE_S}, got {seconds}"
            )
        max_age = timedelta(seconds=seconds)
    statuses = (
        reader.strings(document, "tcb_statuses", "") if "tcb_statuses" in document else ["UpToDate"]
    )
    measurements = [
        reader.digest(value, 32, f"simulated.measurements[{i}]")
        for i, value in enumerate(reader.strings(simulated, "measurements", "simulated."))
    ]
    fingerprints = reader.strings(simulated, "platform_fingerprints", "simulated.")
    sgx = tuple(_sgx_from_toml(reader, raw, i) for i, raw in enumerate(sgx_list))
    tdx = tuple(_tdx_from_toml(reader, raw, i, base_dir) for i, raw in enumerate(tdx_list))
    flags = {
        name: reader.boolean(document, name, default, "")
        for name, default in (
            ("allow_debug", False),
            ("allow_dynamic_platform", False),
            ("allow_cached_keys", False),
            ("allow_smt", True),
        )
    }
    allow_simulated = reader.boolean(simulated, "allow", False, "simulated.")
    rejected = reader.strings(document, "rejected_advisories", "")
    return Policy(  # names ``source`` in its own errors
        sgx=sgx,
        tdx=tdx,
        tcb_statuses=frozenset(statuses),
        rejected_advisories=frozenset(rejected),
        allow_simulated=allow_simulated,
        simulated_measurements=frozenset(measurements),
        platform_fingerprints=frozenset(fingerprints),
        max_evidence_age=max_age,
        source=source,
        **flags,
    )


def _strip_trailing_commas(text: str) -> str:
    """Drop commas that directly precede ``]`` or ``}`` outside strings (cczoo's template)."""
    out: list[str] = []
    in_string = escaped = False
    pending_comma: list[str] = []
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if pending_comma:
            if char.isspace():
                pending_comma.append(char)
                continue
            if char in "]}":
                out.extend(pending_comma[1:])
            else:
                out.extend(pending_comma)
            pending_comma = []
        if char == ",":
            pending_comma = [char]
            continue
        if char == '"':
            in_string = True
        out.append(char)
    out.extend(pending_comma)
    return "".join(out)


def policy_from_cczoo_json(text: str, *, source: str = "<string>") -> Policy:
    """Parse cczoo's ``dynamic_config.json`` into an SGX policy (strict TCB, no debug).

    Raises
    ------
    ConfigError
        If the JSON is malformed, lists no measurements, or a switched-on field is empty.
    """
    reader = _Reader(source)
    try:
        document = json.loads(_strip_trailing_commas(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"policy {source}: not valid JSON ({exc})") from exc
    document = reader.table(document, "top level")
    reader.check_keys(document, _CCZOO_SWITCHES | frozenset(_CCZOO_LISTS), "top level")
    switches: dict[str, bool] = {}
    for key in sorted(_CCZOO_SWITCHES):
        value = document.get(key, "off")
        setting = value.strip().lower() if isinstance(value, str) else None
        if setting not in ("on", "off"):
            # Anything but "on" would switch the check off: a typo must not widen the policy.
            raise reader.fail(key, f'expected "on" or "off", got {value!r}')
        switches[key] = setting == "on"
    if switches["verify_config_svn"]:
        raise reader.fail(
            "verify_config_svn",
            'sealfl does not check config_svn, so "on" would be silently ignored; set it to "off"',
        )
    list_key = next((key for key in _CCZOO_LISTS if key in document), _CCZOO_LISTS[0])
    entries = document.get(list_key)
    if not isinstance(entries, list) or not entries:
        found = "nothing" if entries is None else repr(entries)
        raise reader.fail(list_key, f"expected a non-empty list of measurements, got {found}")
    identities: list[SgxIdentity] = []
    for index, raw in enumerate(entries):
        where = f"{list_key}[{index}]"
        entry = reader.table(raw, where)
        reader.check_keys(entry, _CCZOO_ENTRY_KEYS, where)
        fields: dict[str, Any] = {}
        for key in ("mr_enclave", "mr_signer"):
            if switches[f"verify_{key}"]:
                fields[key] = reader.digest(entry.get(key), 32, f"{where}.{key}")
        if switches["verify_isv_prod_id"]:
            fields["isv_prod_id"] = reader.integer(entry.get("isv_prod_id"), f"{where}.isv_prod_id")
        if switches["verify_isv_svn"]:
            fields["min_isv_svn"] = reader.integer(entry.get("isv_svn"), f"{where}.isv_svn")
        identities.append(_build(reader, where, lambda fields=fields: SgxIdentity(**fields)))
    return Policy(sgx=tuple(identities), source=source)


def load_policy(path: Path) -> Policy:
    """Read a policy file: ``.json`` as cczoo's format, anything else as TOML.

    Relative ``mr_config_id_of`` paths in a TOML policy are read from the policy's directory.

    Raises
    ------
    ConfigError
        If the file cannot be read or is not a valid policy; the message names file and key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        return policy_from_cczoo_json(text, source=str(path))
    return policy_from_toml(text, source=str(path), base_dir=path.parent)

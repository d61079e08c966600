"""Organisation bundles: what ``sealfl provision`` writes, and what a host checks before a start.

A bundle is one organisation's directory of everything that decides what its parties trust:
one role config per party (``sealfl run --config``), one policy per party naming its peers'
identities, the key broker's identity, the release list and the recipients' public keys. It is
made from ``project.toml`` (:mod:`.project`) by the federation's provisioner, and it ends with

- ``bundle.toml``: project, organisation, ``isv_svn``, the parties (name, workload, role,
  config) and the SHA-256 of every other file;
- ``bundle.sig``: the provisioner's Ed25519 signature over ``bundle.toml``;
- ``provisioner.pub``: the provisioner's public key, which a host accepts only if its SHA-256
  equals the fingerprint the host was given out of band (:func:`verify_bundle`).

What protects a bundle, and from whom:

- **In transit and on the host's disk**, the signature: a host starts a party only from a
  bundle whose every file matches the signed digests, with no file added
  (:func:`check_start`), so an edited policy, a swapped role config or a planted file is
  refused before anything runs.
- **Rollback**: a host keeps the highest ``isv_svn`` it has started per project and
  organisation (a small state file outside the bundle) and refuses an older bundle; peers
  refuse an older enclave by policy (``min_isv_svn`` on SGX, the exact measurement otherwise).
- **Inside a TEE**, the host is not trusted to run that check. On SGX the bundle directory is
  a trusted directory of the enclave's manifest (``deploy/gramine``): Gramine refuses any file
  whose hash differs from the signed manifest. On TDX the peers' policies pin each party's
  role config through ``mr_config_id``; the policy files the config names must sit on the
  measured root filesystem (docs/deploy.md).

The host-side check is what the simulated TEE, CI and operators get; the enclave-side
protection is what the federation relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sealfl._files import create_new_file, read_small_file, write_atomic
from sealfl.errors import ConfigError, SealError

__all__ = [
    "MANIFEST",
    "PUBLIC_KEY",
    "SIGNATURE",
    "BundleManifest",
    "BundleParty",
    "ProvisionerKey",
    "check_start",
    "read_bundle_parties",
    "sign_bundle",
    "verify_bundle",
]

MANIFEST = "bundle.toml"
SIGNATURE = "bundle.sig"
PUBLIC_KEY = "provisioner.pub"
_FORMAT = 1
_MAX_FILE_BYTES = 4 << 20
_MAX_FILES = 256
_DOMAIN = b"sealfl bundle v1\x00"


class ProvisionerKey:
    """The federation provisioner's Ed25519 signing key (PEM, PKCS#8, mode 0600)."""

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[ProvisionerKey, bool]:
        """Read the key at ``path``, or make one there; return it and whether it is new.

        Raises
        ------
        ConfigError
            If the file is unreadable, readable by others, or not an Ed25519 key.
        """
        if not path.exists():
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            create_new_file(path, pem, what="provisioner key", if_exists="refusing to replace it")
            return cls(key), True
        pem = read_small_file(path, what="provisioner key", max_bytes=1 << 16, private=True)
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{path}: expected an Ed25519 key, got {type(loaded).__name__}")
        return cls(loaded), False

    def public_pem(self) -> bytes:
        """Return the public key, PEM SubjectPublicKeyInfo (``provisioner.pub``)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the public key's DER: what each host pins."""
        return _fingerprint(self._key.public_key())

    def sign(self, manifest: bytes) -> bytes:
        """Sign a bundle manifest's bytes."""
        return self._key.sign(_DOMAIN + manifest)


def _fingerprint(key: ed25519.Ed25519PublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class BundleParty:
    """A party a bundle can start: its name, ``workload/role`` and role config file."""

    name: str
    workload: str
    role: str
    config: str

    @property
    def kind(self) -> str:
        """``workload/role``."""
        return f"{self.workload}/{self.role}"


@dataclass(frozen=True)
class BundleManifest:
    """A verified ``bundle.toml``."""

    directory: Path
    project: str
    org: str
    isv_svn: int
    parties: Mapping[str, BundleParty]
    files: Mapping[str, str]

    def config(self, party: str) -> Path:
        """Return the role config of ``party``."""
        return self.directory / self.parties[party].config


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def sign_bundle(
    directory: Path,
    *,
    key: ProvisionerKey,
    project: str,
    org: str,
    isv_svn: int,
    parties: list[BundleParty],
) -> Path:
    """Write ``bundle.toml`` (digests of every file in ``directory``), its signature and key.

    Returns
    -------
    Path
        The manifest.
    """
    files = _listed_files(directory)
    lines = [
        "# Written by `sealfl provision`; signed (bundle.sig). Check: sealfl bundle verify.",
        f"format = {_FORMAT}",
        f"project = {_quote(project)}",
        f"org = {_quote(org)}",
        f"isv_svn = {isv_svn}",
        "",
    ]
    for party in parties:
        lines += [
            "[[party]]",
            f"name = {_quote(party.name)}",
            f"workload = {_quote(party.workload)}",
            f"role = {_quote(party.role)}",
            f"config = {_quote(party.config)}",
            "",
        ]
    lines.append("[files]")
    lines += [f"{_quote(name)} = {_quote(_sha256(directory / name))}" for name in files]
    manifest = ("\n".join(lines) + "\n").encode("utf-8")
    write_atomic(directory / MANIFEST, manifest, mode=0o644)
    write_atomic(directory / SIGNATURE, key.sign(manifest).hex().encode() + b"\n", mode=0o644)
    write_atomic(directory / PUBLIC_KEY, key.public_pem(), mode=0o644)
    return directory / MANIFEST


def _sha256(path: Path) -> str:
    return hashlib.sha256(
        read_small_file(path, what="bundle file", max_bytes=_MAX_FILE_BYTES)
    ).hexdigest()


def _listed_files(directory: Path) -> list[str]:
    """Every file under ``directory`` but the three the signature itself adds, sorted."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in names:
            relative = (Path(root) / name).relative_to(directory).as_posix()
            if relative not in (MANIFEST, SIGNATURE, PUBLIC_KEY):
                found.append(relative)
        if len(found) > _MAX_FILES:
            raise ConfigError(f"{directory}: more than {_MAX_FILES} files; not a bundle")
    return sorted(found)


def verify_bundle(directory: Path, *, provisioner: str) -> BundleManifest:
    """Check a bundle's signature and every file's digest; return its manifest.

    Parameters
    ----------
    directory
        The bundle.
    provisioner
        The SHA-256 fingerprint (hex) of the provisioner's public key, given to this host out
        of band; ``provisioner.pub`` must match it.

    Raises
    ------
    SealError
        If the key is not the pinned one, the signature fails, a file differs from its digest,
        is missing, or a file is not listed.
    ConfigError
        If a file cannot be read or the manifest is malformed.
    """
    directory = Path(directory)
    pinned = provisioner.strip().lower().replace(":", "")
    if len(pinned) != 64 or any(c not in "0123456789abcdef" for c in pinned):
        raise ConfigError(f"provisioner fingerprint: expected 64 hex digits, got {provisioner!r}")
    manifest = read_small_file(directory / MANIFEST, what="bundle manifest", max_bytes=1 << 20)
    signature_text = read_small_file(directory / SIGNATURE, what="bundle signature", max_bytes=512)
    public = read_small_file(directory / PUBLIC_KEY, what="provisioner key", max_bytes=1 << 16)
    try:
        key = serialization.load_pem_public_key(public)
        signature = bytes.fromhex(signature_text.decode("ascii").strip())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SealError(f"{directory}: unreadable signature or provisioner key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SealError(f"{directory / PUBLIC_KEY}: expected an Ed25519 key")
    if _fingerprint(key) != pinned:
        raise SealError(
            f"{directory / PUBLIC_KEY}: provisioner key {_fingerprint(key)} is not the pinned "
            f"one ({pinned}); the bundle was made by someone else"
        )
    try:
        key.verify(signature, _DOMAIN + manifest)
    except InvalidSignature:
        raise SealError(f"{directory / MANIFEST}: signature does not verify: tampered") from None
    parsed = _parse_manifest(directory, manifest)
    present = set(_listed_files(directory))
    added = sorted(present - set(parsed.files))
    if added:
        raise SealError(f"{directory}: file(s) not in the signed manifest: {added}")
    for name, digest in parsed.files.items():
        if name not in present:
            raise SealError(f"{directory / name}: missing (listed in the signed manifest)")
        if _sha256(directory / name) != digest:
            raise SealError(f"{directory / name}: SHA-256 differs from the signed manifest")
    return parsed


def _parse_manifest(directory: Path, raw: bytes) -> BundleManifest:
    where = directory / MANIFEST
    try:
        document = tomllib.loads(raw.decode("utf-8"))
        if document.get("format") != _FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {_FORMAT}")
        parties = {
            row["name"]: BundleParty(row["name"], row["workload"], row["role"], row["config"])
            for row in document["party"]
        }
        files = {str(k): str(v) for k, v in document["files"].items()}
        manifest = BundleManifest(
            directory=directory,
            project=str(document["project"]),
            org=str(document["org"]),
            isv_svn=int(document["isv_svn"]),
            parties=parties,
            files=files,
        )
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: not a bundle manifest ({exc})") from None
    for party in parties.values():
        if party.config not in files:
            raise SealError(f"{where}: party {party.name}'s config {party.config} is not signed")
    return manifest


def read_bundle_parties(directory: Path) -> list[BundleParty]:
    """Return the parties ``bundle.toml`` lists, unverified (for building the bundle's image).

    Raises
    ------
    ConfigError
        If the manifest is missing or malformed.
    """
    raw = read_small_file(directory / MANIFEST, what="bundle manifest", max_bytes=1 << 20)
    return list(_parse_manifest(Path(directory), raw).parties.values())


def check_start(
    directory: Path,
    *,
    party: str,
    provisioner: str,
    expect_role: str | None = None,
    min_isv_svn: int = 0,
    state: Path | None = None,
) -> BundleManifest:
    """Everything a host checks before starting ``party`` from a bundle; return the manifest.

    Parameters
    ----------
    party
        The party to start (a name in the bundle).
    provisioner
        The pinned provisioner fingerprint (:func:`verify_bundle`).
    expect_role
        ``workload/role`` this host is meant to run; a bundle whose party is another role is
        refused (a worker's bundle started in the PS's place).
    min_isv_svn
        The oldest security version this host accepts.
    state
        A file where the host records the highest ``isv_svn`` it started per project and
        organisation; an older bundle is then refused (rollback), and a newer one raises it.

    Raises
    ------
    SealError
        If the bundle fails :func:`verify_bundle`, is older than allowed, or the role differs.
    ConfigError
        If the party is not in the bundle, or the state file is unusable.
    """
    manifest = verify_bundle(directory, provisioner=provisioner)
    if party not in manifest.parties:
        raise ConfigError(
            f"{directory}: no party {party!r} in this bundle; it has {sorted(manifest.parties)}"
        )
    entry = manifest.parties[party]
    if expect_role is not None and entry.kind != expect_role:
        raise SealError(
            f"{directory}: party {party} is {entry.kind}, this host runs {expect_role}: "
            "wrong role refused"
        )
    seen: dict[str, int] = {}
    if state is not None and state.exists():
        try:
            loaded = json.loads(read_small_file(state, what="bundle state", max_bytes=1 << 20))
            seen = {str(k): int(v) for k, v in loaded.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{state}: not a bundle state file ({exc})") from None
    key = f"{manifest.project}/{manifest.org}"
    floor = max(min_isv_svn, seen.get(key, 0))
    if manifest.isv_svn < floor:
        raise SealError(
            f"{directory}: isv_svn {manifest.isv_svn} is older than {floor} (the minimum this "
            "host accepts or has already run): rollback refused"
        )
    if state is not None and manifest.isv_svn > seen.get(key, -1):
        seen[key] = manifest.isv_svn
        write_atomic(state, (json.dumps(seen, sort_keys=True) + "\n").encode(), mode=0o600)
    return manifest

"""Sealed export: each half under its own party's key, and the joint manifest that ties them.

At the end of a run each party seals its trained half (:func:`seal_half`: the shared settings,
the weights as a flat float32 buffer with its manifest, the run id and its data's digest;
label ``vfl/leader-half`` or ``vfl/follower-half``) with its own sealing key, so neither the
other party nor either operator can read it, and a copy taken elsewhere opens nowhere else.

The leader then writes the joint manifest (:func:`build_manifest`), which both parties keep:
both halves' SHA-256 (of the sealed plaintext), the PSI transcript hash, the shared settings'
digest, each half's configuration digest, each party's data and policy digests and the
measurement each side verified of the other. Joint inference (:mod:`sealfl.fl.vfl.predict`)
needs both halves: each party opens its own and checks it is the one the manifest names
(:func:`check_half`), and the two parties bind the manifest's digest into their RA-TLS claims,
so a half from another run, a tampered half or another manifest is refused before any row is
scored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from sealfl._files import read_small_file, write_atomic
from sealfl.errors import ConfigError, SealError
from sealfl.fl.vfl.checkpoint import state_message, state_values
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.settings import VflSettings
from sealfl.models import FlatManifest
from sealfl.seal import SealingKey, read_sealed, write_sealed

__all__ = [
    "ALIGNED_LABEL",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "OpenedHalf",
    "aligned_record",
    "build_manifest",
    "check_half",
    "file_sha256",
    "half_file",
    "half_label",
    "manifest_digest",
    "open_half",
    "read_manifest",
    "seal_half",
    "write_manifest",
]

MANIFEST_FILE = "vfl_manifest.json"
"""The joint manifest, in both parties' ``--out`` directories."""
MANIFEST_FORMAT = "sealfl-vfl-manifest/1"
ALIGNED_LABEL = "vfl/aligned-ids"
"""Sealing label of the leader's key for the keyed digest of the aligned ids (enclave-only)."""
_HALF_FORMAT = 1
_MAX_MANIFEST_BYTES = 1 << 20
_ROLES = ("leader", "follower")


def half_file(role: str) -> str:
    """Return the file name of ``role``'s sealed half."""
    return f"vfl_{role}_half.sealed"


def half_label(role: str) -> str:
    """Return the sealing label of ``role``'s half (and of the key it is sealed with)."""
    return f"vfl/{role}-half"


def file_sha256(path: Path) -> str:
    """Return the SHA-256 (hex) of a file's bytes, read in chunks.

    Raises
    ------
    ConfigError
        If the file cannot be read.
    """
    h = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def seal_half(
    path: Path,
    key: SealingKey,
    *,
    role: str,
    settings: VflSettings,
    values: npt.NDArray[np.float32],
    manifest: FlatManifest,
    run_id: str,
    data_sha256: str,
) -> str:
    """Seal a trained half at ``path``; return the SHA-256 (hex) of its plaintext."""
    manifest_json, raw = state_message(values, manifest)
    blob = pb.ExportedHalf(
        format=_HALF_FORMAT,
        role=role,
        settings_json=settings.to_json(),
        manifest_json=manifest_json,
        values=raw,
        run_id=run_id,
        data_sha256=data_sha256,
    ).SerializeToString()
    write_sealed(path, blob, key, label=half_label(role))
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class OpenedHalf:
    """A sealed half, opened: its settings, weights, and the digest the manifest must name."""

    role: str
    settings: VflSettings
    values: npt.NDArray[np.float32]
    manifest: FlatManifest
    run_id: str
    sha256: str


def open_half(path: Path, key: SealingKey, *, role: str) -> OpenedHalf:
    """Open ``role``'s sealed half.

    Raises
    ------
    SealError
        If it is tampered with, sealed by another party or TEE identity, or not ``role``'s.
    ConfigError
        If the file is missing or unreadable.
    """
    blob = read_sealed(path, key, label=half_label(role))
    try:
        half = pb.ExportedHalf.FromString(blob)
    except DecodeError:
        raise SealError(f"{path}: not a sealed vfl half") from None
    if half.format != _HALF_FORMAT or half.role != role:
        raise SealError(f"{path}: a {half.role or '?'} half, expected the {role}'s")
    try:
        settings = VflSettings.from_json(half.settings_json)
    except ConfigError as exc:
        raise SealError(f"{path}: its settings are unreadable ({exc})") from None
    values, manifest = state_values(half.manifest_json, half.values, source=str(path))
    return OpenedHalf(
        role=role,
        settings=settings,
        values=values,
        manifest=manifest,
        run_id=half.run_id,
        sha256=hashlib.sha256(blob).hexdigest(),
    )


def build_manifest(
    *,
    run_id: str,
    settings: VflSettings,
    psi: Mapping[str, Any],
    aligned: Mapping[str, str],
    steps: int,
    final_loss: float,
    leader: Mapping[str, Any],
    follower: Mapping[str, Any],
) -> bytes:
    """Return the joint manifest as canonical JSON (sorted keys, no spaces), UTF-8.

    ``aligned`` is the record of the aligned ids, from :func:`aligned_record`.
    """
    document = {
        "format": MANIFEST_FORMAT,
        "run_id": run_id,
        "settings_sha256": settings.digest(),
        "settings": json.loads(settings.to_json()),
        "psi": dict(psi),
        **aligned,
        "steps": steps,
        "final_loss": final_loss,
        "leader": dict(leader),
        "follower": dict(follower),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def aligned_record(ids_sha256: bytes, *, key: SealingKey | None) -> dict[str, str]:
    """Return the manifest's record of the aligned ids, given their digest.

    ``{"aligned_sha256": ...}`` (``key`` None): anyone holding the ids can check it. With a
    key (PSI mode ``enclave-only``), ``{"aligned_hmac_sha256": ...}``, HMAC-SHA256 under the
    leader's sealing key for :data:`ALIGNED_LABEL`: a plain digest would let an operator, who
    knows its own ids and the count, test guesses of which ids are in common (with ``n`` ids
    and ``n - 1`` in common, ``n`` guesses find the one the other side lacks); the keyed one
    can be checked only inside the leader's enclave.
    """
    if key is None:
        return {"aligned_sha256": ids_sha256.hex()}
    return {"aligned_hmac_sha256": hmac.new(key.secret_bytes, ids_sha256, "sha256").hexdigest()}


def manifest_digest(text: bytes) -> bytes:
    """Return the SHA-256 of a manifest's bytes (the ``vfl-manifest`` RA-TLS claim)."""
    return hashlib.sha256(text).digest()


def write_manifest(path: Path, text: bytes) -> None:
    """Write the manifest atomically (readable by anyone: it holds digests only)."""
    write_atomic(path, text, mode=0o644)


def read_manifest(path: Path) -> tuple[bytes, dict[str, Any]]:
    """Return a manifest's bytes and its parsed document.

    Raises
    ------
    ConfigError
        If it cannot be read, is not JSON of this format, or lacks a half's entry.
    """
    text = read_small_file(path, what="vfl manifest", max_bytes=_MAX_MANIFEST_BYTES)
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a vfl manifest (JSON): {exc}") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{path}: not a vfl manifest (format {MANIFEST_FORMAT!r})")
    for role in _ROLES:
        entry = document.get(role)
        if not isinstance(entry, dict) or not isinstance(entry.get("half_sha256"), str):
            raise ConfigError(f"{path}: {role}.half_sha256 missing")
    return text, document


def check_half(document: Mapping[str, Any], half: OpenedHalf, *, source: str) -> None:
    """Refuse a half the manifest does not name (another run's, or altered and resealed).

    Raises
    ------
    SealError
        Naming the digests.
    """
    expected = document[half.role]["half_sha256"]
    if half.sha256 != expected:
        raise SealError(
            f"{source}: the {half.role} half has sha256 {half.sha256[:16]}…, the joint manifest "
            f"names {expected[:16]}… (a half of another run, or altered); refused"
        )
    if document.get("settings_sha256") != half.settings.digest():
        raise SealError(f"{source}: the {half.role} half was trained with other settings")

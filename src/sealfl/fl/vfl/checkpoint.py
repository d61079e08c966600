"""Each party's sealed checkpoints, one file per step, and the two-phase rule that prunes them.

A checkpoint holds one half's state after ``step`` steps (weights and optimiser state as a flat
float32 buffer with its manifest, plus the leader's losses so far), sealed with the party's own
sealing key (label ``vfl/checkpoint``: the TEE's key, the broker's on TDX). Neither party can
read the other's.

The two halves checkpoint the same steps, agreed on the step stream (see
:mod:`sealfl.fl.vfl.leader`): the leader asks on a step's GRADIENT (prepare), the follower seals
its state before it sends COMMIT with ``checkpointed`` (its vote), the leader seals its own, and
only once both are on disk does the leader announce the step as durable (commit), after which
each side deletes its older checkpoints. A party killed at any moment therefore always leaves a
step that both sides hold; ``--resume`` picks the latest such step (:func:`common_step`).
Files are written atomically (:func:`sealfl.seal.write_sealed`), so a kill mid-write leaves the
previous checkpoints as they were.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from sealfl._files import make_directory
from sealfl.errors import ConfigError, SealError
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.models import FlatManifest
from sealfl.seal import SealingKey, read_sealed, write_sealed

__all__ = [
    "CHECKPOINT_LABEL",
    "CheckpointStore",
    "common_step",
    "state_message",
    "state_values",
]

CHECKPOINT_LABEL = "vfl/checkpoint"
"""Label of the sealed checkpoints (and of the sealing key they are sealed with)."""
_FORMAT = 1
_NAME = re.compile(r"^vfl-checkpoint-(\d{1,12})\.sealed$")


def state_message(values: npt.NDArray[np.float32], manifest: FlatManifest) -> tuple[str, bytes]:
    """Return a half's state as (manifest JSON, little-endian float32 bytes)."""
    return manifest.to_json(), np.ascontiguousarray(values, dtype="<f4").tobytes()


def state_values(
    manifest_json: str, values: bytes, *, source: str
) -> tuple[npt.NDArray[np.float32], FlatManifest]:
    """Return the (buffer, manifest) a checkpoint or an exported half holds, checked.

    Raises
    ------
    SealError
        If the manifest is unreadable or the buffer's length is not the manifest's.
    """
    try:
        manifest = FlatManifest.from_json(manifest_json)
    except (ConfigError, ValueError) as exc:
        raise SealError(f"{source}: its state manifest is unreadable ({exc})") from None
    if len(values) != manifest.nbytes:
        raise SealError(
            f"{source}: state holds {len(values):,} bytes, its manifest {manifest.nbytes:,}"
        )
    return np.frombuffer(values, dtype="<f4").astype(np.float32), manifest


class CheckpointStore:
    """A party's checkpoints in a directory: ``vfl-checkpoint-<step>.sealed``.

    Parameters
    ----------
    directory
        Where they live (the party's ``--out``).
    key
        The party's sealing key for :data:`CHECKPOINT_LABEL`.
    role
        ``"leader"`` or ``"follower"``: a checkpoint of the other role is refused.
    """

    def __init__(self, directory: Path, key: SealingKey, *, role: str) -> None:
        self.directory = directory
        self._key = key
        self.role = role

    def path(self, step: int) -> Path:
        """Return the file of the checkpoint at ``step``."""
        return self.directory / f"vfl-checkpoint-{step:08d}.sealed"

    def steps(self) -> list[int]:
        """Return the steps that have a checkpoint file, ascending."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _NAME.match(entry.name)
            if match and entry.is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def save(self, checkpoint: pb.Checkpoint) -> int:
        """Seal ``checkpoint`` at its step (atomically); return the file's plaintext size."""
        checkpoint.format = _FORMAT
        checkpoint.role = self.role
        make_directory(self.directory, what="checkpoint directory")
        blob = checkpoint.SerializeToString()
        write_sealed(self.path(checkpoint.step), blob, self._key, label=CHECKPOINT_LABEL)
        return len(blob)

    def load(self, step: int) -> pb.Checkpoint:
        """Open the checkpoint at ``step``.

        Raises
        ------
        SealError
            If it was sealed by another party or TEE identity, altered, or is of another role
            or step than its name says.
        ConfigError
            If the file is missing or unreadable.
        """
        path = self.path(step)
        blob = read_sealed(path, self._key, label=CHECKPOINT_LABEL)
        try:
            checkpoint = pb.Checkpoint.FromString(blob)
        except DecodeError:
            raise SealError(f"{path}: not a vfl checkpoint") from None
        if checkpoint.format != _FORMAT or checkpoint.role != self.role:
            raise SealError(
                f"{path}: a {checkpoint.role or '?'} checkpoint (format {checkpoint.format}), "
                f"expected the {self.role}'s (format {_FORMAT})"
            )
        if checkpoint.step != step:
            raise SealError(f"{path}: holds step {checkpoint.step}, its name says {step}")
        return checkpoint

    def prune(self, keep_from: int) -> None:
        """Delete the checkpoints before step ``keep_from`` (both sides hold ``keep_from``)."""
        for step in self.steps():
            if step < keep_from:
                with contextlib.suppress(FileNotFoundError):
                    self.path(step).unlink()


def common_step(mine: Iterable[int], theirs: Iterable[int]) -> int | None:
    """Return the latest step both parties hold a checkpoint of, or ``None``."""
    both = set(mine) & set(theirs)
    return max(both) if both else None

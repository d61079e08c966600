"""The PS's sealed checkpoint: enough state to resume a federation with the same results.

Every ``--checkpoint-every`` iterations (and when training stops for any reason) the PS seals
its state to its TEE (:meth:`sealfl.runtime.PartyRuntime.sealing_key` with
:data:`CHECKPOINT_LABEL`; written to a temporary file and renamed, so a crash never leaves half
a checkpoint). ``--resume`` opens it and carries on from ``next_iteration``:

- the plaintext model after ``next_iteration`` iterations, as float64 bit for bit: the PS
  encrypts it afresh, and since every later step is exact fixed-point arithmetic the resumed
  run computes the same models as one that never stopped;
- the Paillier private key, so the resumed PS decrypts the workers' next submissions and its new
  RA-TLS certificate binds the same public-key hash the workers already checked;
- the session id, the settings and feature columns (a resumed PS given other ones refuses to
  start), and the seats with their tokens (:mod:`.seats`), so workers take their seats back.

The private key is why the file is sealed and never written any other way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from sealfl import he
from sealfl.errors import ConfigError, HEError, ProtocolError, SealError
from sealfl.fl.homo_lr.algorithm import FloatArray, Hyperparameters
from sealfl.fl.homo_lr.evaluation import Evaluation
from sealfl.fl.homo_lr.messages import (
    evaluation_from_proto,
    evaluation_to_proto,
    settings_from_proto,
    settings_to_proto,
)
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.seats import TOKEN_BYTES, Seat
from sealfl.seal import SealingKey, read_sealed, write_sealed

CHECKPOINT_FILE = "homo_lr_checkpoint.sealed"
"""The checkpoint, in the PS's ``--out`` directory."""
CHECKPOINT_LABEL = "homo-lr/checkpoint"
"""Label of the sealed checkpoint and of the sealing key it is sealed with."""
FORMAT = 1


@dataclass(frozen=True)
class SeatState:
    """One seat as a checkpoint keeps it."""

    seat: Seat
    dropped: bool = False


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """The PS's state after ``next_iteration`` iterations (see the module docstring)."""

    session_id: str
    hp: Hyperparameters
    feature_names: tuple[str, ...]
    worker_num: int
    min_workers: int
    next_iteration: int
    weights: FloatArray
    seats: tuple[SeatState, ...]
    last_evaluation: tuple[int, Evaluation] | None
    private_key: bytes
    contributors: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialise (protobuf ``Checkpoint``)."""
        msg = pb.Checkpoint(
            format=FORMAT,
            session_id=self.session_id,
            feature_names=list(self.feature_names),
            worker_num=self.worker_num,
            min_workers=self.min_workers,
            next_iteration=self.next_iteration,
            weights=[float(v) for v in self.weights],
            seats=[
                pb.CheckpointSeat(
                    worker_id=s.seat.worker_id,
                    fingerprint=s.seat.fingerprint,
                    seat_token=s.seat.token,
                    n_samples=s.seat.n_samples,
                    dropped=s.dropped,
                )
                for s in self.seats
            ],
            paillier_private_key=self.private_key,
            contributors=list(self.contributors),
        )
        msg.settings.CopyFrom(settings_to_proto(self.hp, len(self.feature_names)))
        if self.last_evaluation is not None:
            msg.last_evaluation.CopyFrom(evaluation_to_proto(self.last_evaluation))
        return msg.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> Checkpoint:
        """Parse and check a checkpoint.

        Raises
        ------
        SealError
            If the content is not a usable checkpoint (another format, or inconsistent fields).
        """

        def bad(what: str) -> SealError:
            return SealError(f"{source}: not a usable homo-lr checkpoint: {what}")

        try:
            msg = pb.Checkpoint.FromString(data)
        except DecodeError as exc:
            raise bad(f"not a Checkpoint message ({exc})") from None
        if msg.format != FORMAT:
            raise bad(f"format {msg.format}, expected {FORMAT}")
        try:
            hp, n_features = settings_from_proto(msg.settings)
        except ProtocolError as exc:
            raise bad(str(exc)) from None
        weights = np.array(msg.weights, dtype=np.float64)
        if n_features != len(msg.feature_names) or weights.shape != (n_features + 1,):
            raise bad(
                f"{len(msg.feature_names)} feature names and {weights.size} weights for "
                f"{n_features} features"
            )
        if not np.all(np.isfinite(weights)):
            raise bad("a weight is not a finite number")
        if not 0 <= msg.next_iteration <= hp.iterations:
            raise bad(f"next_iteration {msg.next_iteration} beyond {hp.iterations} iterations")
        if not 1 <= msg.min_workers <= msg.worker_num:
            raise bad(f"min_workers {msg.min_workers} for worker_num {msg.worker_num}")
        seats = []
        for s in msg.seats:
            if len(s.seat_token) != TOKEN_BYTES:
                raise bad(f"worker {s.worker_id}: a seat token of {len(s.seat_token)} bytes")
            seat = Seat(s.worker_id, s.fingerprint, bytes(s.seat_token), int(s.n_samples))
            seats.append(SeatState(seat=seat, dropped=s.dropped))
        if not seats or len({s.seat.worker_id for s in seats}) != len(seats):
            raise bad("no seats, or a worker id seated twice")
        evaluation = None
        if msg.HasField("last_evaluation"):
            evaluation = evaluation_from_proto(msg.last_evaluation)
        try:
            he.private_key_from_json(msg.paillier_private_key, source=f"{source} private key")
        except (ConfigError, HEError) as exc:
            raise bad(str(exc)) from None
        return cls(
            session_id=msg.session_id,
            hp=hp,
            feature_names=tuple(msg.feature_names),
            worker_num=msg.worker_num,
            min_workers=msg.min_workers,
            next_iteration=msg.next_iteration,
            weights=weights,
            seats=tuple(seats),
            last_evaluation=evaluation,
            private_key=bytes(msg.paillier_private_key),
            contributors=tuple(msg.contributors),
        )

    def check_matches(
        self,
        *,
        hp: Hyperparameters,
        feature_names: tuple[str, ...],
        worker_num: int,
        min_workers: int,
        source: str,
    ) -> None:
        """Refuse to resume under other settings than the checkpoint's (results would differ).

        Raises
        ------
        ConfigError
            Naming every setting that differs, the checkpoint's value and this run's.
        """
        differences = []
        if hp != self.hp:
            differences.append(f"settings: checkpoint {self.hp.describe()}, now {hp.describe()}")
        if feature_names != self.feature_names:
            differences.append(
                f"validation columns: checkpoint [{', '.join(self.feature_names)}], now "
                f"[{', '.join(feature_names)}]"
            )
        if worker_num != self.worker_num:
            differences.append(f"--worker-num: checkpoint {self.worker_num}, now {worker_num}")
        if min_workers != self.min_workers:
            differences.append(f"--min-workers: checkpoint {self.min_workers}, now {min_workers}")
        if differences:
            raise ConfigError(
                f"--resume {source}: the checkpoint was made with other settings, and resuming "
                f"under these would not give the run's results: {'; '.join(differences)}"
            )

    def describe(self) -> str:
        """One line for logs: session, iteration, seats."""
        return (
            f"session {self.session_id} after {self.next_iteration} of {self.hp.iterations} "
            f"iterations, workers {', '.join(str(s.seat.worker_id) for s in self.seats)}"
        )


def save_checkpoint(path: Path, checkpoint: Checkpoint, key: SealingKey) -> None:
    """Seal ``checkpoint`` to ``path`` (atomically: the old checkpoint stays until renamed over).

    Raises
    ------
    ConfigError
        If the file cannot be written.
    """
    write_sealed(path, checkpoint.to_bytes(), key, label=CHECKPOINT_LABEL)


def load_checkpoint(path: Path, key: SealingKey) -> Checkpoint:
    """Open and check the sealed checkpoint at ``path``.

    Raises
    ------
    ConfigError
        If there is no checkpoint at ``path``.
    SealError
        If it was sealed by another TEE identity, was altered, or is not a usable checkpoint.
    """
    if not Path(path).is_file():
        raise ConfigError(
            f"--resume: no checkpoint at {path} (the PS writes one every --checkpoint-every "
            "iterations into its --out directory)"
        )
    return Checkpoint.from_bytes(read_sealed(path, key, label=CHECKPOINT_LABEL), source=str(path))

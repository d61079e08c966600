"""The parameter server's core: seats, blocking model hand-out, rounds with deadlines, quorum.

Independent of gRPC (:mod:`.service` adapts it) and of torch (evaluation, checkpoints and the
final model come in as :class:`PsHooks`), so the round logic runs in tests without sockets.
Thread-safe: gRPC calls arrive on a thread pool while :meth:`ParameterServer.run` drives the
rounds on the caller's thread, all under one condition variable.

What the PS decides, and where:

- **Joins.** The federation's settings are the operator's; a worker whose settings, data schema
  or model manifest differ is refused, naming what differs. A seat belongs to the certificate
  that took it, or to whoever presents its seat token (a restarted worker); anyone else asking
  for the same id is refused ("a second seat"), unless the holder was dropped.
- **Rounds.** Round ``v + 1`` trains on model version ``v``: it opens when the PS publishes
  version ``v`` to every worker blocked in :meth:`ParameterServer.get_global`, and closes when
  every active seat's update is in (and at least ``min_workers``), or at its deadline. Workers
  that sent nothing by the deadline are dropped, logged by id, and not waited for again until
  they come back (any call reinstates them; a worker that comes back gets the current model).
  A round that closes with fewer than ``min_workers`` updates stops training.
- **Updates.** Refused with a reason, the round going on, when late, a second one, for an
  unknown seat, of the wrong shape, NaN, absurd (:func:`.aggregation.screen_upload`) or
  truncated (:mod:`.service`).
- **After a round.** The next round opens first. The PS then waits until the new model has
  gone out to every active worker (at most :data:`HANDOUT_WAIT_S`) and only then evaluates and
  checkpoints it, while the workers train: on a shared host the sealing and evaluation would
  otherwise compete with streaming the model (for the cores and for Python's interpreter lock)
  and delay the round. Neither is on a round's critical path unless it outlasts the workers'
  training; the ``checkpoint`` record says how long it was (``critical_s``), beside its wall and
  CPU time.
- **Secure aggregation** (``secure``, :mod:`.secure`): updates arrive masked; the round moves
  through the protocol's stages (each closing when every expected worker's message is in, or
  at the deadline), the state is sealed at every stage, and the PS learns only the survivors'
  sum. Before it opens the next round the PS checkpoints the model, so its sealed round state
  is never ahead of its checkpoint by more than the open round.
"""

from __future__ import annotations

import enum
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.hfl.aggregation import ScreeningLimits, ServerOptimizer, Upload, screen_upload
from sealfl.fl.hfl.secure import SecAggOptions, SecureRound, aggregate, session_of
from sealfl.fl.hfl.settings import Aggregation, Settings
from sealfl.models import FlatManifest
from sealfl.secagg import MaskedInput, Params, RoundTag, SecAggAggregator, Stage

__all__ = [
    "HANDOUT_WAIT_S",
    "FinalModel",
    "GlobalView",
    "JoinInfo",
    "ParameterServer",
    "Phase",
    "PsHooks",
    "PsState",
    "RoundEval",
    "RoundRules",
    "TrainingResult",
]

F32 = npt.NDArray[np.float32]
U32 = npt.NDArray[np.uint32]
T = TypeVar("T")
_WAIT_SLICE_S = 0.5  # how often a blocked hand-out looks whether its caller is still there
HANDOUT_WAIT_S = 1.0
"""Longest the PS holds its evaluation and checkpoint back while the model is handed out (a
worker that died without being dropped yet must not delay the checkpoint until the deadline)."""


class Phase(enum.Enum):
    """Lifecycle of a parameter server."""

    JOINING = "joining"
    TRAINING = "training"
    DONE = "done"
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class RoundRules:
    """Counts and deadlines of a parameter server.

    Parameters
    ----------
    worker_num
        Seats.
    min_workers
        Quorum: a round needs this many updates; training starts once this many joined and
        the join deadline passed (or all seats are taken).
    round_deadline_s
        Longest a round waits for updates.
    join_deadline_s
        Longest the PS waits for all seats before starting with a quorum.
    wait_s
        Longest one model request blocks before answering "waiting" (the worker asks again).
    final_grace_s
        After training, how long the PS keeps answering so every worker hears it is done.
    evaluate_every
        Evaluate the model every this many rounds (and after the last).

    Raises
    ------
    ConfigError
        Naming the option of a value out of range.
    """

    worker_num: int
    min_workers: int
    round_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    wait_s: float = 60.0
    final_grace_s: float = 10.0
    evaluate_every: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.worker_num <= 2**32 - 1:
            raise ConfigError(f"--worker-num must be at least 1, got {self.worker_num}")
        if not 1 <= self.min_workers <= self.worker_num:
            raise ConfigError(
                f"--min-workers must be between 1 and --worker-num ({self.worker_num}), got "
                f"{self.min_workers}"
            )
        if self.evaluate_every < 1:
            raise ConfigError(f"--evaluate-every must be at least 1, got {self.evaluate_every}")
        for name in ("round_deadline_s", "join_deadline_s", "wait_s", "final_grace_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                option = "--" + name.removesuffix("_s").replace("_", "-")
                raise ConfigError(f"{option} must be a positive number of seconds, got {value}")


@dataclass(frozen=True)
class RoundEval:
    """The global model after ``round`` rounds on the PS's held-out test set."""

    round: int
    loss: float
    accuracy: float
    per_class: tuple[float, ...] = ()


def record_evaluation(metrics: MetricsLog, rounds_done: int, evaluation: RoundEval) -> str:
    """Write a round's ``evaluation`` record and return the progress line's suffix.

    The record is what ``sealfl hfl report`` reads; ``sealfl sim hfl`` writes its own with this
    too, so the two never drift apart.
    """
    metrics.write(
        "evaluation",
        round=rounds_done,
        loss=evaluation.loss,
        accuracy=evaluation.accuracy,
        per_class=list(evaluation.per_class),
    )
    return f"; test accuracy {evaluation.accuracy:.4f} loss {evaluation.loss:.4f}"


@dataclass(frozen=True)
class JoinInfo:
    """What a worker learns when it joins."""

    run_id: str
    next_version: int
    seat_token: bytes
    worker_num: int
    round_deadline_s: float


@dataclass(frozen=True)
class GlobalView:
    """The answer to a model request: a state and, for ``"model"``, the buffer to train on."""

    state: str  # "model", "waiting", "done" or "stopped"
    version: int
    values: F32 | None = None
    reason: str = ""
    evaluation: RoundEval | None = None
    deadline_in_s: float = 0.0
    model_path: str = ""
    release_path: str = ""
    secagg: tuple[RoundTag, Params] | None = None


@dataclass(frozen=True)
class PsState:
    """What a checkpoint holds: the PS after ``next_version`` rounds."""

    run_id: str
    next_version: int
    model: F32
    server_state: bytes
    evaluations: tuple[RoundEval, ...]
    contributors: tuple[int, ...]


@dataclass(frozen=True)
class FinalModel:
    """Where the trained model went (paths on the PS), and anything the workers should know."""

    model_path: str = ""
    release_path: str = ""
    note: str = ""


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :meth:`ParameterServer.run`."""

    completed: bool
    rounds_done: int
    model: F32
    evaluation: RoundEval | None
    contributors: tuple[int, ...]
    stop_reason: str = ""
    final: FinalModel = field(default_factory=FinalModel)
    run_id: str = ""


class PsHooks(Protocol):
    """What the core asks of the process around it (torch, sealing, release)."""

    def evaluate(self, rounds_done: int, values: F32) -> RoundEval:
        """Evaluate the global model on the held-out test set."""
        ...

    def checkpoint(self, state: PsState) -> None:
        """Seal ``state``; raise ConfigError if it cannot be written (training goes on)."""
        ...

    def finish(self, result: TrainingResult) -> FinalModel:
        """Seal and release the trained model; say where it went."""
        ...


@dataclass
class _Seat:
    worker_id: int
    fingerprint: str
    token: bytes
    num_examples: int
    dropped: bool = False


@dataclass(frozen=True)
class _Pending:
    upload: Upload
    loss: float
    train_s: float
    nbytes: int


class ParameterServer:
    """Seats workers, hands out the global model, collects and aggregates updates.

    Parameters
    ----------
    settings
        The federation's settings (workers must declare the same).
    manifest
        The model's flat-buffer manifest (workers must have the same digest).
    schema_digest
        The data schema's digest (workers' shards must have the same).
    initial
        The global model to start from (version ``start_version``).
    optimizer
        The server optimiser (FedAvg, FedAvgM, reference), possibly restored.
    rules
        Counts and deadlines.
    hooks
        Evaluation, checkpoint and final sealing.
    metrics
        JSON-lines sink.
    on_line
        Receives the human-readable lines.
    limits
        Screening bounds for uploads.
    run_id
        Id of this run (kept across a resume).
    start_version
        Rounds already done (from a checkpoint).
    evaluations
        Evaluations of the rounds already done (from a checkpoint).
    clock
        Monotonic clock.
    secure
        Secure aggregation's options, or ``None`` (updates in the clear, inside the TEE).
    secure_round
        A round's secure-aggregation state from before a restart (used if it is the round
        the PS resumes at).
    save_secure
        Seals a round's secure-aggregation state (called at every stage).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        manifest: FlatManifest,
        schema_digest: str,
        initial: F32,
        optimizer: ServerOptimizer,
        rules: RoundRules,
        hooks: PsHooks,
        metrics: MetricsLog,
        on_line: Callable[[str], None] = print,
        limits: ScreeningLimits = ScreeningLimits(),  # noqa: B008 (a frozen value)
        run_id: str | None = None,
        start_version: int = 0,
        evaluations: tuple[RoundEval, ...] = (),
        contributors: tuple[int, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        secure: SecAggOptions | None = None,
        secure_round: SecureRound | None = None,
        save_secure: Callable[[bytes], None] | None = None,
    ) -> None:
        if initial.shape != (manifest.numel,):
            raise ConfigError(
                f"initial model: expected {manifest.numel} values, got shape {initial.shape}"
            )
        if not 0 <= start_version <= settings.rounds:
            raise ConfigError(
                f"start version {start_version} is outside the run's {settings.rounds} rounds"
            )
        self.settings = settings
        self.manifest = manifest
        self.manifest_digest = manifest.digest()
        self.schema_digest = schema_digest
        self.optimizer = optimizer
        self.rules = rules
        self.hooks = hooks
        self.metrics = metrics
        self.on_line = on_line
        self.limits = limits
        self.run_id = run_id or secrets.token_hex(8)
        self.clock = clock
        self._cond = threading.Condition()
        self._phase = Phase.JOINING
        self._seats: dict[int, _Seat] = {}
        self._model = initial
        self._version = start_version
        self._open: int | None = None  # the version the open round trains on
        self._deadline = 0.0
        self._round_started = 0.0
        self._pending: dict[int, _Pending] = {}
        self._ready_at: float | None = None  # when the open round could first close
        self._handed: dict[int, int] = {}  # worker id -> latest version handed out to it
        self._evaluations = list(evaluations)
        self._contributors = contributors
        self._stop_reason = ""
        self._final = FinalModel()
        self._final_ready = False
        self._told_done: set[int] = set()
        self.secure = secure
        self.session = session_of(self.run_id)
        self._restored = secure_round
        self._save_secure = save_secure
        self._secure_round: SecureRound | None = None
        self._secure_deadline = 0.0

    # ---- state for callers and tests ------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """Where the PS is in its lifecycle."""
        with self._cond:
            return self._phase

    @property
    def version(self) -> int:
        """Rounds done."""
        with self._cond:
            return self._version

    def seated(self) -> dict[int, bool]:
        """Return ``{worker id: dropped}`` for every seat."""
        with self._cond:
            return {k: s.dropped for k, s in self._seats.items()}

    def _latest_evaluation(self) -> RoundEval | None:
        return self._evaluations[-1] if self._evaluations else None

    # ---- calls from workers (gRPC threads) --------------------------------------------------

    def join(
        self,
        worker_id: int,
        settings: Settings,
        schema_digest: str,
        manifest_digest: str,
        num_examples: int,
        fingerprint: str,
        seat_token: bytes = b"",
    ) -> JoinInfo:
        """Seat a worker, or give a returning one its seat back.

        Raises
        ------
        ProtocolError
            If training has ended, the settings, schema or manifest differ from the
            federation's, the shard is empty, the federation is full, or the seat is held by
            another live certificate and no valid seat token was shown.
        """
        who = f"worker {worker_id}"
        with self._cond:
            try:
                if self._phase in (Phase.DONE, Phase.STOPPED):
                    raise ProtocolError(f"{who}: training has ended ({self._phase.value})")
                differences = self.settings.differences(settings)
                if differences:
                    raise ProtocolError(
                        f"{who}: settings differ from the federation's: {'; '.join(differences)}"
                    )
                if schema_digest != self.schema_digest:
                    raise ProtocolError(
                        f"{who}: data schema differs (image shape or class names): expected "
                        f"sha256 {self.schema_digest[:16]}…, got {schema_digest[:16]}…"
                    )
                if manifest_digest != self.manifest_digest:
                    raise ProtocolError(
                        f"{who}: model manifest differs: expected sha256 "
                        f"{self.manifest_digest[:16]}…, got {manifest_digest[:16]}…"
                    )
                if num_examples < 1:
                    raise ProtocolError(f"{who}: a shard without examples cannot contribute")
                if self.secure is not None and not 1 <= worker_id < 2**31:
                    raise ProtocolError(
                        f"{who}: with secure aggregation worker ids must be 1 to {2**31 - 1}"
                    )
                seat = self._seat_for(worker_id, fingerprint, seat_token, num_examples)
            except ProtocolError as exc:
                self._refused("join", worker_id, None, str(exc))
                raise
            self._cond.notify_all()
            next_version = self._open if self._open is not None else self._version
            return JoinInfo(
                run_id=self.run_id,
                next_version=next_version,
                seat_token=seat.token,
                worker_num=self.rules.worker_num,
                round_deadline_s=self.rules.round_deadline_s,
            )

    def _seat_for(self, worker_id: int, fingerprint: str, token: bytes, num_examples: int) -> _Seat:
        """Return the worker's seat (taken, retaken or re-seated); the caller holds the lock."""
        seat = self._seats.get(worker_id)
        if seat is None:
            if len(self._seats) >= self.rules.worker_num:
                raise ProtocolError(
                    f"worker {worker_id}: the federation is full ({self.rules.worker_num} seats, "
                    f"held by workers {sorted(self._seats)})"
                )
            seat = _Seat(worker_id, fingerprint, secrets.token_bytes(32), num_examples)
            self._seats[worker_id] = seat
            self.metrics.write("joined", worker=worker_id, num_examples=num_examples)
            self.on_line(
                f"PS: worker {worker_id} joined ({num_examples} examples); "
                f"{len(self._seats)}/{self.rules.worker_num} seats taken"
            )
            return seat
        if seat.fingerprint == fingerprint or (token and hmac.compare_digest(token, seat.token)):
            how = "the same certificate" if seat.fingerprint == fingerprint else "its seat token"
            seat.fingerprint = fingerprint
        elif seat.dropped:
            how = "a new certificate (the previous holder had been dropped)"
            seat.fingerprint = fingerprint
            seat.token = secrets.token_bytes(32)
        else:
            raise ProtocolError(
                f"worker {worker_id}: a second seat for the same id is refused: the seat is held "
                f"by certificate sha256:{seat.fingerprint[:16]}…, which has not been dropped "
                "(a restarted worker takes its seat back with its seat token)"
            )
        seat.num_examples = num_examples
        was_dropped, seat.dropped = seat.dropped, False
        self.metrics.write("rejoined", worker=worker_id, was_dropped=was_dropped)
        self.on_line(f"PS: worker {worker_id} rejoined with {how}")
        return seat

    def _prove(self, worker_id: int, fingerprint: str, token: bytes) -> _Seat:
        """Return the caller's seat if it holds it; the caller holds the lock.

        A worker whose certificate changed (renewed, or a reconnect with a fresh key) keeps its
        seat by showing the seat token.
        """
        seat = self._seats.get(worker_id)
        if seat is None:
            raise ProtocolError(f"worker {worker_id}: no such seat (join first)")
        if seat.fingerprint == fingerprint:
            return seat
        if token and hmac.compare_digest(token, seat.token):
            seat.fingerprint = fingerprint
            return seat
        raise ProtocolError(
            f"worker {worker_id}: the seat is held by certificate sha256:{seat.fingerprint[:16]}"
            f"…, this call comes from sha256:{fingerprint[:16]}… without the seat token"
        )

    def _reinstate(self, seat: _Seat) -> None:
        if seat.dropped:
            seat.dropped = False
            self.metrics.write("reinstated", worker=seat.worker_id, version=self._version)
            self.on_line(f"PS: worker {seat.worker_id} is back; it gets the current model")

    def get_global(
        self,
        worker_id: int,
        version: int,
        fingerprint: str,
        seat_token: bytes = b"",
        *,
        is_active: Callable[[], bool] = lambda: True,
        confirm_delivery: bool = False,
    ) -> GlobalView:
        """Block until the round training on ``version`` opens, then return its model.

        A worker that is behind (``version`` older than the open round) gets the current
        model at once. Returns ``"done"`` or ``"stopped"`` when training has ended, and
        ``"waiting"`` after :attr:`RoundRules.wait_s` or when the caller has gone.

        The model counts as handed out when this returns, or, with ``confirm_delivery``, when
        the caller reports it sent with :meth:`handed_out` (the gRPC service does, once the
        model is streamed): the PS evaluates and checkpoints only after that.

        Raises
        ------
        ProtocolError
            If the caller does not hold the seat.
        """
        with self._cond:
            seat = self._prove(worker_id, fingerprint, seat_token)
            self._reinstate(seat)
            give_up = self.clock() + self.rules.wait_s
            while True:
                if self._phase is Phase.STOPPED:
                    return GlobalView("stopped", self._version, reason=self._stop_reason)
                if self._phase is Phase.DONE and self._final_ready:
                    self._told_done.add(worker_id)
                    self._cond.notify_all()
                    return GlobalView(
                        "done",
                        self._version,
                        evaluation=self._latest_evaluation(),
                        model_path=self._final.model_path,
                        release_path=self._final.release_path,
                        reason=self._final.note,
                    )
                if self._open is not None and self._open >= version:
                    if not confirm_delivery:
                        self._handed_out(worker_id, self._open)
                    rnd = self._secure_round
                    return GlobalView(
                        "model",
                        self._open,
                        values=self._model,
                        evaluation=self._latest_evaluation(),
                        deadline_in_s=max(0.0, self._deadline - self.clock()),
                        secagg=None if rnd is None else (rnd.tag, rnd.params),
                    )
                remaining = give_up - self.clock()
                if remaining <= 0 or not is_active():
                    return GlobalView("waiting", self._version)
                self._cond.wait(min(remaining, _WAIT_SLICE_S))

    def handed_out(self, worker_id: int, version: int) -> None:
        """Record that model ``version`` went out to ``worker_id`` (or that its stream ended)."""
        with self._cond:
            self._handed_out(worker_id, version)

    def _handed_out(self, worker_id: int, version: int) -> None:
        if self._handed.get(worker_id, -1) < version:
            self._handed[worker_id] = version
            self._cond.notify_all()

    def check_update(self, worker_id: int, version: int, fingerprint: str, token: bytes) -> None:
        """Refuse an update before its buffer is received, if it cannot be taken anyway.

        Raises
        ------
        ProtocolError
            If the caller does not hold the seat, training is not under way, the update is
            late or early (not for the open round), or this worker's update for the round is
            already in.
        """
        with self._cond:
            try:
                self._plain_updates(worker_id)
                self._check_open(self._prove(worker_id, fingerprint, token), version)
            except ProtocolError as exc:
                self._refused("update", worker_id, version, str(exc))
                raise

    def _plain_updates(self, worker_id: int) -> None:
        if self.secure is not None:
            raise ProtocolError(
                f"worker {worker_id}: this federation uses secure aggregation; an update in the "
                "clear is refused (it travels masked)"
            )

    def _check_open(self, seat: _Seat, version: int) -> None:
        who = f"worker {seat.worker_id}"
        if self._phase is not Phase.TRAINING:
            raise ProtocolError(f"{who}: not accepting updates ({self._phase.value})")
        if self._open is None or version != self._open:
            current = (
                f"the open round trains on version {self._open}"
                if self._open is not None
                else f"round {self._version + 1} has not opened yet"
            )
            late = self._open is None or version < self._open
            raise ProtocolError(
                f"{who}: {'late' if late else 'early'} update for round {version + 1} "
                f"(computed from version {version}); {current}"
            )
        if seat.worker_id in self._pending:
            raise ProtocolError(
                f"{who}: a second update for round {version + 1} (its first was accepted)"
            )

    def submit(
        self,
        worker_id: int,
        version: int,
        fingerprint: str,
        token: bytes,
        values: F32,
        *,
        num_examples: int,
        train_loss: float = math.nan,
        train_seconds: float = 0.0,
    ) -> None:
        """Take a worker's received, shape-checked buffer for the open round.

        Raises
        ------
        ProtocolError
            If it is no longer acceptable (the round closed while it streamed, a second one),
            has no examples, or its values are absurd. Nothing accepted earlier changes.
        """
        try:
            self._plain_updates(worker_id)
            if num_examples < 1:
                raise ProtocolError(f"worker {worker_id}: an update needs at least one example")
            with self._cond:
                seat = self._prove(worker_id, fingerprint, token)
                self._check_open(seat, version)
                model = self._model
            # Screening reads the whole buffer: outside the lock, re-checked on recording.
            screen_upload(values, model, self.settings, self.limits)
            with self._cond:
                seat = self._prove(worker_id, fingerprint, token)
                self._check_open(seat, version)
                self._reinstate(seat)
                self._pending[worker_id] = _Pending(
                    Upload(worker_id, num_examples, values),
                    train_loss,
                    train_seconds,
                    values.nbytes,
                )
                if self._ready_at is None and self._can_close():
                    self._ready_at = self.clock()
                self._cond.notify_all()
        except ProtocolError as exc:
            self._refused("update", worker_id, version, str(exc))
            raise

    # ---- secure aggregation: calls from workers (gRPC threads) ------------------------------

    def _secure_open(
        self, worker_id: int, fingerprint: str, token: bytes, tag: RoundTag
    ) -> SecureRound:
        """Return the open round's secure state for a caller holding its seat; lock held."""
        seat = self._prove(worker_id, fingerprint, token)
        self._reinstate(seat)
        rnd = self._secure_round
        if self.secure is None:
            raise ProtocolError(
                f"worker {worker_id}: this federation does not use secure aggregation"
            )
        if self._phase is not Phase.TRAINING or rnd is None or self._open is None:
            raise ProtocolError(f"worker {worker_id}: no round is open ({self._phase.value})")
        rnd.tag.check(tag, what=f"secure-aggregation message of worker {worker_id}")
        return rnd

    def secure_call(
        self,
        worker_id: int,
        fingerprint: str,
        token: bytes,
        tag: RoundTag,
        call: Callable[[SecureRound], T | None],
        *,
        what: str,
        is_active: Callable[[], bool] = lambda: True,
    ) -> T | None:
        """Hand a worker's stage message to the open round; wait until its stage closes.

        ``call`` is repeated on every wake-up (the round's methods take the identical message
        again). Returns its answer, or ``None`` after :attr:`RoundRules.wait_s` or when the
        caller has gone (the worker asks again).

        Raises
        ------
        ProtocolError
            If the caller does not hold the seat, no round with this tag is open, or the
            round refuses the message.
        """
        with self._cond:
            try:
                rnd = self._secure_open(worker_id, fingerprint, token, tag)
                give_up = self.clock() + self.rules.wait_s
                while True:
                    answer = call(rnd)
                    if answer is None and self._close_if_complete(rnd):
                        answer = call(rnd)
                    self._cond.notify_all()
                    if answer is not None:
                        return answer
                    remaining = give_up - self.clock()
                    if remaining <= 0 or not is_active():
                        return None
                    self._cond.wait(min(remaining, _WAIT_SLICE_S))
                    if self._secure_round is not rnd or self._phase is not Phase.TRAINING:
                        raise ProtocolError(
                            f"worker {worker_id}: round {tag.round + 1} closed without its {what}"
                        )
            except ProtocolError as exc:
                self._refused(f"secagg {what}", worker_id, tag.round, str(exc))
                raise

    def check_masked(
        self, worker_id: int, version: int, fingerprint: str, token: bytes, tag: RoundTag
    ) -> None:
        """Refuse a masked update before its buffer is received, if it cannot be taken.

        Raises
        ------
        ProtocolError
            If the caller does not hold the seat, the tag is not the open round's, or the
            round does not take this worker's masked input now.
        """
        with self._cond:
            try:
                if version != tag.round:
                    raise ProtocolError(
                        f"worker {worker_id}: masked update for version {version} carries the "
                        f"tag of round {tag.round + 1}"
                    )
                self._secure_open(worker_id, fingerprint, token, tag).check_masked(worker_id, tag)
            except ProtocolError as exc:
                self._refused("masked update", worker_id, version, str(exc))
                raise

    def submit_masked(
        self,
        worker_id: int,
        fingerprint: str,
        token: bytes,
        tag: RoundTag,
        values: U32,
        *,
        train_loss: float = math.nan,
        train_seconds: float = 0.0,
    ) -> None:
        """Take a worker's received masked update (uint32) for the open round.

        Raises
        ------
        ProtocolError
            As :meth:`check_masked`, or if the vector is not the round's length, or differs
            from one this worker already sent.
        """
        with self._cond:
            try:
                rnd = self._secure_open(worker_id, fingerprint, token, tag)
                rnd.masked(MaskedInput(tag, worker_id, values), train_loss, train_seconds)
                self._cond.notify_all()
            except ProtocolError as exc:
                self._refused("masked update", worker_id, tag.round, str(exc))
                raise

    def refuse(
        self, worker_id: int, version: int | None, reason: str, *, what: str = "update"
    ) -> None:
        """Record a message refused by the transport layer (truncated, malformed, misdirected)."""
        self._refused(what, worker_id, version, reason)

    def _refused(self, what: str, worker_id: int, version: int | None, reason: str) -> None:
        self.metrics.write("refused", what=what, worker=worker_id, version=version, reason=reason)
        self.on_line(f"PS: refused {what} from worker {worker_id}: {reason}")

    # ---- the operator ----------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stop training: workers blocked on the PS are told ``reason`` at once."""
        with self._cond:
            if self._phase in (Phase.DONE, Phase.STOPPED):
                return
            self._phase = Phase.STOPPED
            self._stop_reason = reason
            self._open = None
            self._cond.notify_all()
        self.metrics.write("stopped", reason=reason, version=self.version)
        self.on_line(f"PS: training stopped: {reason}")

    # ---- the driver (the caller's thread) ---------------------------------------------------

    def run(self) -> TrainingResult:
        """Wait for the workers, train every round, seal the model; return the outcome."""
        if self.secure is not None and self._version == 0:
            # The run (its id, hence its secure-aggregation session) is durable from the
            # start: a PS killed in round 1 resumes that round's state instead of beginning a
            # new run, which workers that already answered round 1 would rightly refuse.
            self._checkpoint(0, self._model, self.optimizer.state_bytes(), ())
        if self._wait_for_joins():
            with self._cond:
                if self._version < self.settings.rounds:
                    self._open_round(self._version)  # later rounds open in _after_round
            while True:
                with self._cond:
                    version = self._open
                    if self._phase is not Phase.TRAINING or version is None:
                        break
                closed = self._close_round(version)
                if closed is None:
                    break
                self._after_round(*closed)
        return self._finish()

    def _wait_for_joins(self) -> bool:
        deadline = self.clock() + self.rules.join_deadline_s
        with self._cond:
            while self._phase is Phase.JOINING:
                seats = len(self._seats)
                if seats >= self.rules.worker_num or (
                    self.clock() >= deadline and seats >= self.rules.min_workers
                ):
                    self._phase = Phase.TRAINING
                    break
                if self.clock() >= deadline:
                    self.stop(  # the condition's lock is re-entrant
                        f"only {seats} of the {self.rules.min_workers} workers needed joined "
                        f"within the join deadline ({self.rules.join_deadline_s:g} s)"
                    )
                    return False
                self._cond.wait(max(0.0, deadline - self.clock()))
            return self._phase is Phase.TRAINING

    def _open_round(self, version: int) -> None:
        """Publish ``version`` to the workers; the caller holds the lock."""
        self._pending = {}
        self._ready_at = None
        self._open = version
        self._round_started = self.clock()
        self._deadline = self._round_started + self.rules.round_deadline_s
        if self.secure is not None:
            self._secure_round = self._new_secure_round(version)
        self.metrics.write("round_open", round=version + 1, version=version)
        self._cond.notify_all()

    def _new_secure_round(self, version: int) -> SecureRound:
        """Return the round's secure state: restored from before a restart, or a fresh attempt 0."""
        restored, self._restored = self._restored, None
        if restored is not None and restored.version == version:
            self.on_line(
                f"PS: round {version + 1}: resuming secure aggregation at stage "
                f"{restored.stage.value} (same attempt, same masks)"
            )
            return restored
        assert self.secure is not None
        params = self.secure.params(tuple(sorted(self._seats)), self.manifest.numel)
        tag = RoundTag(self.session, version, 0)
        return SecureRound(version=version, agg=SecAggAggregator(params=params, tag=tag))

    def _close_round(self, version: int) -> tuple[int, F32, list[_Pending], list[int]] | None:
        """Wait for the round's updates, close it, aggregate; ``None`` if training stopped."""
        if self.secure is not None:
            return self._close_secure_round(version)
        with self._cond:
            while self._phase is Phase.TRAINING:
                if self._can_close():
                    break
                now = self.clock()
                if now >= self._deadline:
                    break
                self._cond.wait(self._deadline - now)
            if self._phase is not Phase.TRAINING:
                return None
            self._open = None
            pending = [self._pending[k] for k in sorted(self._pending)]
            missing = sorted(k for k, s in self._seats.items() if k not in self._pending)
            newly_dropped = [k for k in missing if not self._seats[k].dropped]
            for k in newly_dropped:
                self._seats[k].dropped = True
            model = self._model
        if newly_dropped:
            self.metrics.write(
                "dropped", round=version + 1, workers=newly_dropped, reason="no update by deadline"
            )
            self.on_line(
                f"PS: round {version + 1} closed at its deadline "
                f"({self.rules.round_deadline_s:g} s) with {len(pending)} update(s); dropped: "
                + ", ".join(f"worker {k} (no update by the deadline)" for k in newly_dropped)
            )
        if len(pending) < self.rules.min_workers:
            self.stop(
                f"round {version + 1} closed with {len(pending)} update(s), fewer than the "
                f"{self.rules.min_workers} needed (--min-workers); missing: workers {missing}"
            )
            return None
        new_model = self.optimizer.step(version, model, [p.upload for p in pending])
        return version, new_model, pending, missing

    def _seal_secure(self, rnd: SecureRound) -> float:
        """Seal the round's secure state (the caller holds the lock: no message slips in).

        Returns the seconds it took.
        """
        if self._save_secure is None:
            return 0.0
        started = self.clock()
        try:
            self._save_secure(rnd.to_bytes(self.run_id))
        except ConfigError as exc:
            self.metrics.write("secagg_state_failed", round=rnd.version + 1, reason=str(exc))
            self.on_line(f"PS: could not seal the secure-aggregation state: {exc}")
        return self.clock() - started

    def _secure_waiting(self, rnd: SecureRound) -> set[int]:
        """Return whom the open stage still waits for; the caller holds the lock."""
        return rnd.waiting_for(self._active() & set(rnd.params.workers))

    def _close_if_complete(self, rnd: SecureRound) -> bool:
        """Close the open stage if it waits for no one; whether it closed. The lock is held."""
        return (
            rnd.closable
            and not self._secure_waiting(rnd)
            and self._close_secure_stage(rnd, set(), quiet=True)
        )

    def _close_secure_stage(
        self, rnd: SecureRound, waiting: set[int], *, quiet: bool = False
    ) -> bool:
        """Close the open stage, seal the state, log it; the caller holds the lock.

        Called by the driver (every message in, or the deadline) and by the gRPC thread of the
        last message a stage waited for (``quiet``: a stage that cannot close yet is left to the
        driver), so a stage never waits for the driver's evaluation or checkpoint. Returns
        whether it closed; the driver stops training when it cannot.
        """
        now = self.clock()
        try:
            closed = rnd.close_stage()
        except ProtocolError as exc:
            if quiet:
                return False
            self._seal_secure(rnd)
            self.stop(f"round {rnd.version + 1}: secure aggregation failed: {exc}")
            return False
        seal_s = self._seal_secure(rnd)
        self.metrics.write(
            "secagg_stage",
            round=rnd.version + 1,
            closed=closed,
            at_deadline=bool(waiting),
            missing=sorted(waiting),
            seconds=now - self._round_started,
            seal_s=seal_s,
        )
        if closed == "masked inputs":
            self._secure_deadline = self.clock() + self.rules.round_deadline_s  # stage 4's own
        self._cond.notify_all()
        return True

    def _close_secure_round(
        self, version: int
    ) -> tuple[int, F32, list[_Pending], list[int]] | None:
        """Drive the open round through secure aggregation's stages; aggregate the sum."""
        with self._cond:
            rnd = self._secure_round
            assert rnd is not None
            self._secure_deadline = self._deadline
            if rnd.stage in (Stage.UNMASK, Stage.DONE):  # resumed past stage 3
                self._secure_deadline = self.clock() + self.rules.round_deadline_s
            while rnd.stage is not Stage.DONE:
                if self._phase is not Phase.TRAINING:
                    return None
                waiting = self._secure_waiting(rnd)
                now = self.clock()
                if waiting and now < self._secure_deadline:
                    self._cond.wait(self._secure_deadline - now)
                    continue
                if not rnd.closable:
                    break  # every answer in, or the deadline: finish with what came
                if not self._close_secure_stage(rnd, waiting):
                    return None
            try:
                mean, survivors, weight = rnd.finish()
            except ProtocolError as exc:
                self._seal_secure(rnd)
                self.stop(f"round {version + 1}: secure aggregation failed: {exc}")
                return None
            seal_s = self._seal_secure(rnd)
            self._open = None
            self._cond.notify_all()
            missing = sorted(k for k in self._seats if k not in survivors)
            newly_dropped = [k for k in missing if not self._seats[k].dropped]
            for k in newly_dropped:
                self._seats[k].dropped = True
            model = self._model
        if newly_dropped:
            self.metrics.write(
                "dropped", round=version + 1, workers=newly_dropped, reason="not a survivor"
            )
            self.on_line(
                f"PS: round {version + 1} closed with {len(survivors)} masked update(s); "
                "dropped: " + ", ".join(f"worker {k}" for k in newly_dropped)
            )
        if len(survivors) < self.rules.min_workers:
            self.stop(
                f"round {version + 1} closed with {len(survivors)} update(s), fewer than the "
                f"{self.rules.min_workers} needed (--min-workers); missing: workers {missing}"
            )
            return None
        values = aggregate(mean, model, gradient=self.settings.aggregation is Aggregation.REFERENCE)
        try:
            screen_upload(values, model, self.settings, self.limits)
        except ProtocolError as exc:
            self.stop(f"round {version + 1}: the survivors' aggregate is refused: {exc}")
            return None
        new_model = self.optimizer.step(version, model, [Upload(0, 1, values)])
        numel = self.manifest.numel
        pending = [
            _Pending(
                Upload(k, rnd.weights[k], np.empty(0, dtype=np.float32)),
                rnd.train_loss.get(k, math.nan),
                rnd.train_seconds.get(k, 0.0),
                4 * numel,
            )
            for k in survivors
        ]
        self.metrics.write(
            "secagg",
            round=version + 1,
            survivors=list(survivors),
            examples=weight,
            seconds=self.clock() - self._round_started,
            seal_s=seal_s,
        )
        return version, new_model, pending, missing

    def _active(self) -> set[int]:
        return {k for k, s in self._seats.items() if not s.dropped}

    def _can_close(self) -> bool:
        """Whether every active seat's update is in, and a quorum; the caller holds the lock."""
        active, have = self._active(), set(self._pending)
        return bool(active) and active <= have and len(have) >= self.rules.min_workers

    def _await_handout(self, version: int) -> None:
        """Wait until model ``version`` went out to every active seat, or its round is over.

        At most :data:`HANDOUT_WAIT_S` (and never past the round's deadline).
        """
        with self._cond:
            give_up = min(self._deadline, self.clock() + HANDOUT_WAIT_S)
            while self._phase is Phase.TRAINING and self._open == version:
                if all(self._handed.get(k, -1) >= version for k in self._active()):
                    return
                now = self.clock()
                if now >= give_up:
                    return
                self._cond.wait(give_up - now)

    def _critical(self, started: float, ended: float) -> float:
        """Return how much of ``[started, ended]`` the open round could have closed in."""
        with self._cond:
            if self._open is None:
                return 0.0
            ready = self._deadline
            if self._ready_at is not None:
                ready = min(ready, self._ready_at)
        return max(0.0, ended - max(started, ready))

    def _after_round(
        self, version: int, new_model: F32, pending: list[_Pending], missing: list[int]
    ) -> None:
        rounds_done = version + 1
        state_bytes = self.optimizer.state_bytes()
        contributors = tuple(p.upload.worker_id for p in pending)
        wall = self.clock() - self._round_started
        if self.secure is not None:
            # Before the next round's sealed secure state can replace this one's (on the
            # critical path: the next round waits for it).
            self._checkpoint(rounds_done, new_model, state_bytes, contributors, blocking=True)
        with self._cond:
            self._model = new_model
            self._version = rounds_done
            self._contributors = contributors
            if rounds_done < self.settings.rounds and self._phase is Phase.TRAINING:
                self._open_round(rounds_done)  # the workers start at once; we evaluate meanwhile
        slowest = max(p.train_s for p in pending)
        weight = sum(p.upload.weight for p in pending)
        train_loss = sum(p.loss * p.upload.weight for p in pending) / weight
        self.metrics.write(
            "round",
            round=rounds_done,
            contributors=list(contributors),
            missing=missing,
            wall_s=wall,
            slowest_train_s=slowest,
            overhead_s=max(0.0, wall - slowest),
            train_loss=train_loss,
            bytes_in=sum(p.nbytes for p in pending),
            examples=weight,
        )
        line = (
            f"round {rounds_done}/{self.settings.rounds}: {len(pending)} update(s), train loss "
            f"{train_loss:.4f}, round {wall:.2f} s (overhead {1000 * max(0.0, wall - slowest):.0f}"
            " ms)"
        )
        self._await_handout(rounds_done)
        if rounds_done % self.rules.evaluate_every == 0 or rounds_done == self.settings.rounds:
            evaluation = self.hooks.evaluate(rounds_done, new_model)
            with self._cond:
                self._evaluations.append(evaluation)
            line += record_evaluation(self.metrics, rounds_done, evaluation)
        self.on_line(f"PS: {line}")
        if self.secure is not None and rounds_done < self.settings.rounds:
            return  # checkpointed before the round opened; the next one adds this evaluation
        self._checkpoint(rounds_done, new_model, state_bytes, contributors)

    def _checkpoint(
        self,
        rounds_done: int,
        new_model: F32,
        state_bytes: bytes,
        contributors: tuple[int, ...],
        *,
        blocking: bool = False,
    ) -> None:
        started, cpu = self.clock(), time.thread_time()
        with self._cond:
            evaluations = tuple(self._evaluations)
        state = PsState(
            run_id=self.run_id,
            next_version=rounds_done,
            model=new_model,
            server_state=state_bytes,
            evaluations=evaluations,
            contributors=contributors,
        )
        try:
            self.hooks.checkpoint(state)
        except ConfigError as exc:
            self.metrics.write("checkpoint_failed", round=rounds_done, reason=str(exc))
            self.on_line(f"PS: could not write the checkpoint after round {rounds_done}: {exc}")
        else:
            ended = self.clock()
            # seconds: sealing and writing it; cpu_s: this thread's CPU for that; critical_s:
            # how long it held up the next round's close (0 when it finished while the workers
            # were still training).
            self.metrics.write(
                "checkpoint",
                round=rounds_done,
                seconds=ended - started,
                cpu_s=time.thread_time() - cpu,
                critical_s=ended - started if blocking else self._critical(started, ended),
            )

    def _finish(self) -> TrainingResult:
        with self._cond:
            completed = self._phase is Phase.TRAINING and self._version >= self.settings.rounds
            result = TrainingResult(
                completed=completed,
                rounds_done=self._version,
                model=self._model,
                evaluation=self._latest_evaluation(),
                contributors=self._contributors,
                stop_reason=self._stop_reason,
                run_id=self.run_id,
            )
        if not completed:
            return result
        final = self.hooks.finish(result)
        with self._cond:
            self._phase = Phase.DONE
            self._final = final
            self._final_ready = True
            self._cond.notify_all()
        self.metrics.write(
            "done", rounds=result.rounds_done, model_path=final.model_path, note=final.note
        )
        self._wait_for_goodbyes()
        return TrainingResult(
            completed=True,
            rounds_done=result.rounds_done,
            model=result.model,
            evaluation=result.evaluation,
            contributors=result.contributors,
            final=final,
            run_id=self.run_id,
        )

    def _wait_for_goodbyes(self) -> None:
        """Keep serving until every active worker heard training is done (bounded)."""
        deadline = self.clock() + self.rules.final_grace_s
        with self._cond:
            while True:
                active = {k for k, s in self._seats.items() if not s.dropped}
                if active <= self._told_done or self.clock() >= deadline:
                    return
                self._cond.wait(max(0.0, deadline - self.clock()))

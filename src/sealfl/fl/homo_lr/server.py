"""The parameter server's core: seats, submissions, rounds with deadlines, the encrypted model.

Independent of gRPC (the servicer in :mod:`.service` is a thin adapter) and of the key
material's type (the PS-side operations come in through :class:`ServerCrypto`), so the whole
round logic runs in tests with real keys and without sockets. Thread-safe: gRPC calls arrive on
a thread pool while :meth:`ParameterServer.run` drives the rounds on the caller's thread.

What the PS decides, and where:

- the federation's settings are the operator's (:class:`ServerSettings`); a worker whose
  settings or feature columns differ is refused at join, naming both;
- seats: :mod:`.seats` (a seat follows its token), :mod:`.admission` (who may sit at all);
- each submission is checked for form (:meth:`ServerCrypto.parse_submission`), then decrypted
  inside the enclave and checked for value (:mod:`.screening`) before it can enter the average;
  a failing one drops that worker's round only (:mod:`.rounds`);
- state is sealed every ``checkpoint_every`` iterations and at any stop (:mod:`.checkpoint`); a
  PS built with ``resume=`` carries on from it;
- :meth:`ParameterServer.stop` (the operator's Ctrl-C or SIGTERM) wakes every worker waiting on
  the PS with the reason at once.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

import numpy as np

from sealfl.errors import ConfigError, HEError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.admission import Admission
from sealfl.fl.homo_lr.algorithm import (
    FloatArray,
    Hyperparameters,
    average,
    initial_weights,
    with_bias,
)
from sealfl.fl.homo_lr.checkpoint import Checkpoint, SeatState
from sealfl.fl.homo_lr.encrypted import WEIGHT_INTEGER_BITS
from sealfl.fl.homo_lr.evaluation import Evaluation, evaluate, format_iteration
from sealfl.fl.homo_lr.peers import Peer
from sealfl.fl.homo_lr.rounds import RoundBook, RoundOutcome
from sealfl.fl.homo_lr.screening import PUBLIC_REASON, MagnitudeBound, UpdateCheck
from sealfl.fl.homo_lr.seats import SeatRegistry
from sealfl.fl.homo_lr.timing import Spans

V = TypeVar("V")

WEIGHT_BOUND_BITS = WEIGHT_INTEGER_BITS
"""Range of a model weight, ``|w| < 2^20``: the PS encrypts the model in it, so an update must
lie in it too (then so does the average, and no one worker can make the refresh fail)."""

_NAMES_SHOWN = 64
_PREPARE_WAIT_S = 1.0
"""Longest the PS waits for the model's hand-outs before drawing the next randomness."""


class ServerCrypto(Protocol[V]):
    """What the PS does with its Paillier key pair (implemented in :mod:`.encrypted`)."""

    def public_key_bytes(self) -> bytes:
        """Return the serialised public key (sent to workers, hashed into the RA-TLS claims)."""
        ...

    def private_key_bytes(self) -> bytes:
        """Return the serialised private key (only ever written into the sealed checkpoint)."""
        ...

    def encrypt(self, w: FloatArray) -> bytes:
        """Encrypt a weight vector freshly (the refresh that resets the scale).

        Raise HEError if a weight is out of the encoding's range.
        """
        ...

    def prepare_encryption(self, length: int) -> None:
        """Draw the randomness of the next :meth:`encrypt` now (while the workers compute)."""
        ...

    def parse_submission(self, data: bytes, length: int) -> V:
        """Parse a worker's vector; raise ProtocolError if malformed, foreign or mis-sized."""
        ...

    def decrypt_submission(self, vector: V) -> FloatArray:
        """Decrypt one parsed submission; raise HEError if it breaks its declared bound."""
        ...


class Phase(Enum):
    """Lifecycle of a parameter server."""

    JOINING = "joining"
    TRAINING = "training"
    DONE = "done"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ModelView:
    """What :meth:`ParameterServer.get_model` returns: a state and, when ready, the model."""

    state: str  # "ready", "waiting" or "aborted"
    version: int
    encrypted_weights: bytes = b""
    evaluation: tuple[int, Evaluation] | None = None
    reason: str = ""
    missing: tuple[int, ...] = ()
    sealed_model_path: str = ""
    model_note: str = ""


@dataclass(frozen=True)
class JoinInfo:
    """What a worker learns when it joins."""

    public_key: bytes
    worker_num: int
    round_deadline_s: float
    session_id: str
    next_iteration: int = 0
    seat_token: bytes = b""


class SubmitStatus(Enum):
    """How the PS took a well-formed submission."""

    ACCEPTED = "accepted"
    DROPPED = "dropped"
    """Its decrypted value failed the check: left out of this iteration only."""
    STOPPED = "stopped"
    """Training has stopped; the reason says why."""


@dataclass(frozen=True)
class SubmitOutcome:
    """The answer to a submission that was not refused."""

    status: SubmitStatus
    reason: str = ""


@dataclass(frozen=True)
class SavedModel:
    """Where the trained model went.

    Attributes
    ----------
    path
        The sealed model; empty if it could not be written anywhere.
    note
        What the operator and the workers should know (a fallback path and why), or empty.
    """

    path: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """The operator's settings of a parameter server.

    Parameters
    ----------
    hp
        The federation's training settings; workers must declare the same.
    checkpoint_every
        Seal a checkpoint every this many iterations (0: only when training stops).
    stop_grace_s
        After a stop, how long the PS keeps answering so every worker learns why.

    Raises
    ------
    ConfigError
        If a count or a duration is out of range.
    """

    worker_num: int
    min_workers: int
    hp: Hyperparameters = field(default_factory=Hyperparameters)
    round_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    final_grace_s: float = 10.0
    stop_grace_s: float = 3.0
    evaluate_every: int = 10
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.worker_num < 1:
            raise ConfigError(f"--worker-num must be at least 1, got {self.worker_num}")
        if not 1 <= self.min_workers <= self.worker_num:
            raise ConfigError(
                f"--min-workers must be between 1 and --worker-num ({self.worker_num}), "
                f"got {self.min_workers}"
            )
        if self.evaluate_every < 1:
            raise ConfigError(f"evaluate_every must be at least 1, got {self.evaluate_every}")
        if self.checkpoint_every < 0:
            raise ConfigError(
                f"--checkpoint-every must be 0 (off) or more, got {self.checkpoint_every}"
            )
        for name in ("round_deadline_s", "join_deadline_s", "final_grace_s", "stop_grace_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :meth:`ParameterServer.run`."""

    completed: bool
    weights: FloatArray
    iterations_done: int
    evaluation: tuple[int, Evaluation] | None
    contributors: tuple[int, ...]
    stop_reason: str = ""
    settings: Hyperparameters | None = None
    session_id: str = ""
    stopped_by_operator: bool = False
    saved: SavedModel | None = None


@dataclass
class ParameterServer(Generic[V]):
    """Collects encrypted updates, checks and averages them inside the enclave, serves the model.

    Parameters
    ----------
    crypto
        The PS's key pair operations.
    validation
        ``(X, y)`` of the validation set, features without the bias column.
    settings
        Counts, deadlines and the federation's training settings.
    metrics
        JSON-lines sink.
    feature_names
        The validation set's columns, in order: every worker must have the same, in the same
        order (default ``x0, x1, ...``).
    on_line
        Receives human-readable lines (the ``iter:`` lines and events).
    clock
        Monotonic clock (injectable for tests).
    wall_clock
        Wall clock, for the ``published`` stamp of each ``round`` record (when the model the
        round started from was handed out; a worker stamps when it ``received`` it).
    seal_model
        Called with the finished result before the last model is published; returns where the
        model was saved, which the final replies tell the workers.
    save_checkpoint
        Called with the state to seal (every ``checkpoint_every`` iterations and at any stop);
        it raises :class:`~sealfl.errors.ConfigError` if it cannot write (training goes on).
    check_update
        Decides whether a decrypted update may enter the average.
    admission
        Who may take a seat, beside the measurement policy; ``None``: any attested party.
    resume
        A checkpoint to continue from instead of waiting for joins.
    """

    crypto: ServerCrypto[V]
    validation: tuple[FloatArray, FloatArray]
    settings: ServerSettings
    metrics: MetricsLog
    feature_names: tuple[str, ...] = ()
    on_line: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    seal_model: Callable[[TrainingResult], SavedModel] | None = None
    save_checkpoint: Callable[[Checkpoint], None] | None = None
    check_update: UpdateCheck = field(default_factory=lambda: MagnitudeBound(WEIGHT_BOUND_BITS))
    admission: Admission | None = None
    resume: Checkpoint | None = None
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    _cond: threading.Condition = field(init=False, default_factory=threading.Condition)
    _phase: Phase = field(init=False, default=Phase.JOINING)
    _seats: SeatRegistry = field(init=False, default_factory=SeatRegistry)
    _book: RoundBook[FloatArray] | None = field(init=False, default=None)
    _models: dict[int, bytes] = field(init=False, default_factory=dict)
    _evaluations: dict[int, tuple[int, Evaluation]] = field(init=False, default_factory=dict)
    _stop_reason: str = field(init=False, default="")
    _by_operator: bool = field(init=False, default=False)
    _missing: tuple[int, ...] = field(init=False, default=())
    _saved: SavedModel = field(init=False, default_factory=lambda: SavedModel(path=""))
    _informed: set[int] = field(init=False, default_factory=set)
    _checks: dict[tuple[int, int], float] = field(init=False, default_factory=dict)
    _published: dict[int, float] = field(init=False, default_factory=dict)
    _served: dict[int, set[int]] = field(init=False, default_factory=dict)
    _cpu_mark: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        width = self.validation[0].shape[1]
        if not self.feature_names:
            self.feature_names = tuple(f"x{j}" for j in range(width))
        if len(self.feature_names) != width:
            raise ConfigError(
                f"{len(self.feature_names)} feature names for a validation set of {width} columns"
            )
        if self.resume is not None:
            self._restore(self.resume)

    @property
    def n_features(self) -> int:
        """Feature columns of the federation (without the bias)."""
        return len(self.feature_names)

    # ---- calls from workers (gRPC threads) ----------------------------------------------

    def join(
        self,
        worker_id: int,
        hp: Hyperparameters,
        feature_names: Sequence[str],
        n_samples: int,
        peer: Peer,
        seat_token: bytes = b"",
    ) -> JoinInfo:
        """Seat a worker, or give it its seat back (same certificate, or its seat token).

        Raises
        ------
        ProtocolError
            If training has ended, the settings or feature columns differ from the
            federation's, the admitted-workers list does not allow this seat, the federation
            is full or training has started (for a new seat), or the seat is another party's.
        """
        with self._cond:
            if self._phase in (Phase.DONE, Phase.STOPPED):
                raise ProtocolError(f"worker {worker_id}: training has ended ({self._phase.value})")
            self._check_data(worker_id, hp, tuple(feature_names), n_samples)
            if self.admission is not None:
                self.admission.check_seat(peer, worker_id)
            seat = self._seats.get(worker_id)
            if seat is None:
                self._check_free_seat(worker_id, peer)
                seat = self._seats.take(worker_id, peer, n_samples)
                self.metrics.write("joined", worker=worker_id, n_samples=n_samples)
                self.on_line(
                    f"worker {worker_id} joined ({n_samples} rows); "
                    f"{len(self._seats)}/{self.settings.worker_num}"
                )
            else:
                moved = self._seats.prove(worker_id, peer, seat_token, joining=True)
                if moved:
                    self.on_line(
                        f"worker {worker_id} took its seat back with its seat token "
                        f"({peer.describe()})"
                    )
                self._rejoined(worker_id, peer, moved)
            self._cond.notify_all()
            book = self._book
            next_iteration = 0
            if book is not None:
                next_iteration = book.iteration + (1 if book.answered(worker_id) else 0)
            return JoinInfo(
                public_key=self.crypto.public_key_bytes(),
                worker_num=self.settings.worker_num,
                round_deadline_s=self.settings.round_deadline_s,
                session_id=self.session_id,
                next_iteration=next_iteration,
                seat_token=seat.token,
            )

    def submit(
        self, worker_id: int, iteration: int, data: bytes, peer: Peer, seat_token: bytes = b""
    ) -> SubmitOutcome:
        """Take one worker's encrypted weights for ``iteration``.

        Returns ``ACCEPTED``; ``DROPPED`` when its decrypted value fails the check (that
        worker's round is left out, the round goes on); ``STOPPED`` with the reason once
        training has stopped.

        Raises
        ------
        ProtocolError
            If refused (identity, duplicate, wrong iteration, malformed or foreign vector).
            Nothing accepted earlier changes, and the round goes on.
        """
        try:
            with self._cond:
                self._prove_seat(worker_id, peer, seat_token)
                if self._phase is Phase.STOPPED:
                    self._informed.add(worker_id)
                    self._cond.notify_all()
                    return SubmitOutcome(SubmitStatus.STOPPED, self._stop_reason)
                if self._phase is not Phase.TRAINING or self._book is None:
                    raise ProtocolError(
                        f"worker {worker_id}: not accepting submissions ({self._phase.value})"
                    )
                self._book.check(worker_id, iteration)
                book = self._book
            # Parsing and decryption take a while: done outside the lock, re-checked on recording.
            checking = time.perf_counter()
            vector = self.crypto.parse_submission(data, self.n_features + 1)
            values, problem = self._screen(vector)
            checked = time.perf_counter() - checking
            with self._cond:
                self._checks[(iteration, worker_id)] = checked
                if problem is not None:
                    book.reject(worker_id, iteration, problem)
                    self._cond.notify_all()
                else:
                    book.submit(worker_id, iteration, values)
                    self._cond.notify_all()
                    return SubmitOutcome(SubmitStatus.ACCEPTED)
        except ProtocolError as exc:
            self.metrics.write("refused", worker=worker_id, iteration=iteration, reason=str(exc))
            self.on_line(f"refused: {exc}")
            raise
        self.metrics.write("update_dropped", worker=worker_id, iteration=iteration, reason=problem)
        self.on_line(
            f"iteration {iteration}: dropped worker {worker_id}'s update: {problem}; "
            "the round goes on without it"
        )
        return SubmitOutcome(
            SubmitStatus.DROPPED,
            f"iteration {iteration}: {PUBLIC_REASON}; it was left out of this iteration's "
            "average and training goes on",
        )

    def get_model(
        self, worker_id: int, version: int, peer: Peer, wait_s: float, seat_token: bytes = b""
    ) -> ModelView:
        """Return model ``version`` (after ``version`` iterations), waiting at most ``wait_s``.

        Raises
        ------
        ProtocolError
            If ``peer`` does not hold seat ``worker_id``.
        """
        deadline = self.clock() + wait_s
        with self._cond:
            self._prove_seat(worker_id, peer, seat_token)
            if self._models and version < min(self._models):
                return ModelView(
                    state="aborted",
                    version=version,
                    reason=f"model version {version} is no longer kept (the federation is at "
                    f"version {max(self._models)}); join again to learn where to continue",
                )
            self._wait_until(
                lambda: version in self._models or self._phase is Phase.STOPPED, deadline
            )
            if version in self._models:
                return self._ready(worker_id, version)
            if self._phase is Phase.STOPPED:
                self._informed.add(worker_id)
                self._cond.notify_all()
                return ModelView(
                    state="aborted",
                    version=version,
                    reason=self._stop_reason,
                    missing=self._missing,
                )
            return ModelView(state="waiting", version=version)

    # ---- the operator -------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stop training now: every worker waiting on the PS is told ``reason`` at once.

        For the operator's Ctrl-C or SIGTERM; safe from any thread. The round in progress is
        abandoned, the state is checkpointed by :meth:`run`, and the PS keeps answering for
        ``stop_grace_s`` so the remaining workers learn why.
        """
        with self._cond:
            if self._phase in (Phase.DONE, Phase.STOPPED):
                return
            self._phase = Phase.STOPPED
            self._stop_reason = reason
            self._by_operator = True
            self._cond.notify_all()

    # ---- the round driver ---------------------------------------------------------------

    def run(self) -> TrainingResult:
        """Wait for the workers (or resume), drive every iteration, and return the final model.

        Never hangs: joining and every round have deadlines. A result with
        ``completed=False`` carries the reason (for example, who is missing).
        """
        hp = self.settings.hp
        last_eval: tuple[int, Evaluation] | None = None
        contributors: tuple[int, ...] = ()
        # While the workers start and join: the first drawing also builds the key's tables.
        self.crypto.prepare_encryption(self.n_features + 1)
        if self.resume is None:
            w = initial_weights(self.n_features)
            if not self._wait_for_joins():
                return self._halt(w, done=0, last=None, contributors=())
            start = 0
        else:
            start = self.resume.next_iteration
            w = np.array(self.resume.weights, dtype=np.float64)
            last_eval, contributors = self.resume.last_evaluation, self.resume.contributors
        X1 = with_bias(self.validation[0])
        y = self.validation[1]
        refreshed = self.crypto.encrypt(w)
        self._publish(start, refreshed)
        evaluation: tuple[int, Evaluation] | None = None
        spans = Spans(self.clock)
        self._cpu_mark = time.process_time()
        for t in range(start, hp.iterations):
            started = self.clock()
            # After a resume the workers must first find the PS again: give them the join time.
            first_resumed = self.resume is not None and t == start
            deadline_s = self.settings.round_deadline_s
            if first_resumed:
                deadline_s = max(deadline_s, self.settings.join_deadline_s)
            deadline = started + deadline_s
            with spans.span("prepare"):  # off the critical path: the workers are computing
                self._prepare_encryption(t, deadline)
            with spans.span("wait"):
                outcome = self._wait_for_round(deadline)
            if outcome is None:  # stopped by the operator
                return self._halt(w, done=t, last=last_eval, contributors=contributors)
            if outcome.stop_reason is not None:
                self._missing = outcome.missing
                self._end(outcome.stop_reason)
                return self._halt(w, done=t, last=last_eval, contributors=contributors)
            self._report_round(t, outcome)
            if not outcome.contributions:
                reasons = "; ".join(f"worker {k}: {r}" for k, r in outcome.rejected.items())
                self._end(f"iteration {t}: no usable update ({reasons}): stopping")
                return self._halt(w, done=t, last=last_eval, contributors=contributors)
            contributors = tuple(outcome.contributions)
            with spans.span("average"):
                w_next = average(list(outcome.contributions.values()))
            try:
                with spans.span("encrypt"):
                    refreshed = self.crypto.encrypt(w_next)
            except HEError as exc:  # defensive: every update was checked to be in range
                self._end(
                    f"iteration {t}: the average of worker(s) "
                    f"{', '.join(map(str, contributors))} cannot be encrypted ({exc}): stopping"
                )
                return self._halt(w, done=t, last=last_eval, contributors=contributors)
            w = w_next
            evaluation = None
            if t % self.settings.evaluate_every == 0 or t == hp.iterations - 1:
                with spans.span("evaluate"):
                    ev = evaluate(w, X1, y)
                evaluation = last_eval = (t, ev)
                self.on_line(format_iteration(t, ev))
                self.metrics.write("evaluation", iteration=t, accuracy=ev.accuracy, loss=ev.loss)
            self._write_round(t, started, contributors, spans)
            if t + 1 < hp.iterations:
                self._publish(t + 1, refreshed, evaluation)
            every = self.settings.checkpoint_every
            if every and ((t + 1) % every == 0 or t + 1 == hp.iterations):
                # After the hand-out, while the workers compute: a PS lost before it is durable
                # resumes from the one before, and the workers repeat those iterations exactly.
                with spans.span("checkpoint"):
                    self._checkpoint(t + 1, w, last_eval, contributors)
        result = TrainingResult(
            completed=True,
            weights=w,
            iterations_done=hp.iterations,
            evaluation=last_eval,
            contributors=contributors,
            settings=hp,
            session_id=self.session_id,
        )
        with self._cond:  # trained: a stop from now on would only lose the model
            self._phase = Phase.DONE
        if self.seal_model is not None:
            saved = self.seal_model(result)
            with self._cond:
                self._saved = saved
            self.metrics.write("sealed", path=saved.path, note=saved.note)
            result = dataclasses.replace(result, saved=saved)
        self._publish(hp.iterations, refreshed, evaluation)
        return result

    def wait_for_final_fetches(self) -> None:
        """Give active workers time to fetch the last model or learn why training stopped.

        Returns once every active worker has, or after ``final_grace_s`` (``stop_grace_s``
        when stopped by the operator, who wants the PS gone soon).
        """
        with self._cond:
            grace = self.settings.stop_grace_s if self._by_operator else self.settings.final_grace_s
            deadline = self.clock() + grace
            active = set(self._book.active) if self._book is not None else set(self._seats.ids())
            self._wait_until(lambda: active <= self._informed, deadline)

    # ---- internals ----------------------------------------------------------------------

    def _wait_until(self, ready: Callable[[], bool], deadline: float) -> None:
        """Wait on ``_cond`` (held by the caller) until ``ready()`` or ``deadline`` on ``clock``."""
        while not ready():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self._cond.wait(timeout=remaining)

    def _check_data(
        self, worker_id: int, hp: Hyperparameters, names: tuple[str, ...], n_samples: int
    ) -> None:
        """Refuse a worker whose settings, columns or row count cannot join this federation."""
        if n_samples < 1:
            raise ProtocolError(f"worker {worker_id}: no training rows (n_samples=0)")
        if len(names) != self.n_features:
            raise ProtocolError(
                f"worker {worker_id}: {len(names)} features, but the validation set has "
                f"{self.n_features}"
            )
        if names != self.feature_names:
            raise ProtocolError(
                f"worker {worker_id}: {_column_difference(names, self.feature_names)}"
            )
        if hp != self.settings.hp:
            raise ProtocolError(
                f"worker {worker_id}: settings ({hp.describe()}) differ from the federation's "
                f"({self.settings.hp.describe()}), which the PS's operator set"
            )

    def _check_free_seat(self, worker_id: int, peer: Peer) -> None:
        """Raise unless a new worker may take a seat now (called with ``_cond`` held)."""
        holder = self._seats.holder_of(peer.fingerprint)
        if holder is not None:
            raise ProtocolError(
                f"worker {worker_id}: this certificate already joined as worker {holder}; one "
                "party takes one seat"
            )
        if self._phase is not Phase.JOINING:
            raise ProtocolError(f"worker {worker_id}: training has started; joining is closed")
        if len(self._seats) >= self.settings.worker_num:
            raise ProtocolError(
                f"worker {worker_id}: federation is full "
                f"({self.settings.worker_num} workers joined)"
            )

    def _rejoined(self, worker_id: int, peer: Peer, moved: bool) -> None:
        """Record a join to a seat already held (a reconnect, a restart, a resumed PS)."""
        book = self._book
        if book is None:
            return  # still joining: asking twice changes nothing
        self.metrics.write(
            "rejoined",
            worker=worker_id,
            iteration=book.iteration,
            certificate=peer.fingerprint,
            new_certificate=moved,
        )
        if worker_id in book.dropped:
            book.reinstate(worker_id)
            self.on_line(f"worker {worker_id} rejoined after being dropped; reinstated")
        else:
            self.on_line(f"worker {worker_id} rejoined at iteration {book.iteration}")

    def _prove_seat(self, worker_id: int, peer: Peer, token: bytes) -> None:
        if self._seats.prove(worker_id, peer, token):
            self.metrics.write("seat_moved", worker=worker_id, certificate=peer.fingerprint)
            self.on_line(f"worker {worker_id}: seat now held by {peer.describe()} (seat token)")

    def _screen(self, vector: V) -> tuple[FloatArray, str | None]:
        """Decrypt a submission inside the enclave and check its values."""
        try:
            values = self.crypto.decrypt_submission(vector)
        except HEError as exc:
            return np.zeros(0), f"it does not decrypt within its declared bound ({exc})"
        return values, self.check_update(values)

    def _restore(self, checkpoint: Checkpoint) -> None:
        """Take the state of a checkpoint: session, seats, where the rounds stand."""
        self.session_id = checkpoint.session_id
        self._seats = SeatRegistry(s.seat for s in checkpoint.seats)
        active = [s.seat.worker_id for s in checkpoint.seats if not s.dropped]
        if not active:  # every seat was dropped: each may come back
            active = [s.seat.worker_id for s in checkpoint.seats]
        self._book = RoundBook(
            workers=active,
            min_workers=min(self.settings.min_workers, len(active)),
            iteration=checkpoint.next_iteration,
        )
        self._book.dropped = {s.seat.worker_id for s in checkpoint.seats} - set(active)
        self._phase = Phase.TRAINING

    def _wait_for_joins(self) -> bool:
        deadline = self.clock() + self.settings.join_deadline_s
        with self._cond:
            self._wait_until(
                lambda: (
                    len(self._seats) >= self.settings.worker_num or self._phase is Phase.STOPPED
                ),
                deadline,
            )
            if self._phase is Phase.STOPPED:
                return False
            joined = len(self._seats)
            if joined < self.settings.min_workers:
                self._end_locked(
                    f"only {joined} of {self.settings.worker_num} workers joined "
                    f"within {self.settings.join_deadline_s:g} s (--min-workers "
                    f"{self.settings.min_workers}): stopping"
                )
                return False
            if joined < self.settings.worker_num:
                self.on_line(
                    f"join deadline passed: training with {joined} of "
                    f"{self.settings.worker_num} workers"
                )
            self._book = RoundBook(
                workers=self._seats.ids(),
                min_workers=min(self.settings.min_workers, joined),
            )
            self._phase = Phase.TRAINING
            self.metrics.write(
                "training_started",
                workers=self._seats.ids(),
                session=self.session_id,
                iterations=self.settings.hp.iterations,
            )
            return True

    def _prepare_encryption(self, t: int, deadline: float) -> None:
        """Draw the next encryption's randomness once every worker has model ``t``.

        The drawing is Python work that holds the GIL for a few milliseconds at a time: started
        while the gRPC threads are still handing out the model, it delayed that by ~10 ms per
        round. Waiting for the hand-outs costs nothing, as the workers compute meanwhile; a
        worker that does not come for the model within ``_PREPARE_WAIT_S`` is not waited for.
        """
        assert self._book is not None
        book = self._book
        with self._cond:
            self._wait_until(
                lambda: (
                    book.active <= self._served.get(t, set())
                    or book.is_complete()
                    or self._phase is Phase.STOPPED
                ),
                min(deadline, self.clock() + _PREPARE_WAIT_S),
            )
            self._served.pop(t, None)
        self.crypto.prepare_encryption(self.n_features + 1)

    def _wait_for_round(self, deadline: float) -> RoundOutcome[FloatArray] | None:
        """Close the current round when complete or at ``deadline``; ``None`` if stopped."""
        assert self._book is not None
        book = self._book
        with self._cond:
            self._wait_until(lambda: book.is_complete() or self._phase is Phase.STOPPED, deadline)
            if self._phase is Phase.STOPPED:
                return None
            return book.close()

    def _write_round(
        self, t: int, started: float, contributors: tuple[int, ...], spans: Spans
    ) -> None:
        """Write iteration ``t``'s ``round`` record: its seconds, and where they went.

        ``prepare_s`` is the randomness of the next encryption, drawn once the workers have
        the model, ``wait_s`` the rest of the barrier (until every worker answered),
        ``check_s`` each worker's submission check (parse, decrypt, value check; on the gRPC
        threads, inside the wait), then ``average_s``, ``encrypt_s``, and ``evaluate_s`` in the
        rounds that evaluate. ``checkpoint_s`` is a sealed checkpoint written after the previous
        round's hand-out (inside this round's barrier). ``published`` is when the model of this
        iteration was handed out (wall clock). ``cpu_s`` is the CPU time the PS's process spent
        since the previous record, every thread (what a PS machine must provide per round).
        """
        with self._cond:
            checks = {str(k): round(v, 6) for (i, k), v in sorted(self._checks.items()) if i == t}
            self._checks = {key: v for key, v in self._checks.items() if key[0] > t}
            published = self._published.get(t)
        cpu, self._cpu_mark = self._cpu_mark, time.process_time()
        self.metrics.write(
            "round",
            iteration=t,
            seconds=round(self.clock() - started, 6),
            contributors=list(contributors),
            published=published,
            check_s=checks,
            cpu_s=round(self._cpu_mark - cpu, 6),
            **spans.take(),
        )

    def _report_round(self, t: int, outcome: RoundOutcome[FloatArray]) -> None:
        if outcome.missing:
            names = ", ".join(map(str, outcome.missing))
            self.on_line(f"iteration {t}: worker(s) {names} missed the deadline; dropped")
            self.metrics.write("dropped", iteration=t, workers=list(outcome.missing))

    def _checkpoint(
        self,
        next_iteration: int,
        w: FloatArray,
        last: tuple[int, Evaluation] | None,
        contributors: tuple[int, ...],
    ) -> None:
        """Seal the state after ``next_iteration`` iterations; a failure is logged, not fatal."""
        if self.save_checkpoint is None:
            return
        with self._cond:
            dropped = self._book.dropped if self._book is not None else set()
            seats = tuple(
                SeatState(seat=seat, dropped=seat.worker_id in dropped)
                for seat in self._seats.seats()
            )
        if not seats:
            return
        checkpoint = Checkpoint(
            session_id=self.session_id,
            hp=self.settings.hp,
            feature_names=self.feature_names,
            worker_num=self.settings.worker_num,
            min_workers=self.settings.min_workers,
            next_iteration=next_iteration,
            weights=np.array(w, dtype=np.float64),
            seats=seats,
            last_evaluation=last,
            private_key=self.crypto.private_key_bytes(),
            contributors=contributors,
        )
        try:
            self.save_checkpoint(checkpoint)
        except ConfigError as exc:
            self.on_line(
                f"PS: could not write the checkpoint after iteration {next_iteration}: {exc}"
            )
            self.metrics.write("checkpoint_failed", iteration=next_iteration, reason=str(exc))
            return
        self.metrics.write("checkpoint", next_iteration=next_iteration)

    def _publish(
        self, version: int, data: bytes, evaluation: tuple[int, Evaluation] | None = None
    ) -> None:
        with self._cond:
            self._models[version] = data
            self._models.pop(version - 2, None)  # bounded: a worker needs at most the last two
            self._published[version] = round(self.wall_clock(), 6)
            self._published.pop(version - 2, None)
            if evaluation is not None:
                self._evaluations[version] = evaluation
                self._evaluations.pop(version - 20, None)
            self._cond.notify_all()

    def _ready(self, worker_id: int, version: int) -> ModelView:
        if version == (self._book.iteration if self._book is not None else -1):
            self._served.setdefault(version, set()).add(worker_id)
            self._cond.notify_all()
        final = version == self.settings.hp.iterations
        if final:
            self._informed.add(worker_id)
            self._cond.notify_all()
        return ModelView(
            state="ready",
            version=version,
            encrypted_weights=self._models[version],
            evaluation=self._evaluations.get(version),
            sealed_model_path=self._saved.path if final else "",
            model_note=self._saved.note if final else "",
        )

    def _end(self, reason: str) -> None:
        with self._cond:
            self._end_locked(reason)

    def _end_locked(self, reason: str) -> None:
        """Stop for ``reason`` (not the operator's): workers asking are told it."""
        self._phase = Phase.STOPPED
        self._stop_reason = reason
        self._cond.notify_all()

    def _halt(
        self,
        weights: FloatArray,
        *,
        done: int,
        last: tuple[int, Evaluation] | None,
        contributors: tuple[int, ...],
    ) -> TrainingResult:
        """Return the result of a stopped run, after sealing its state for ``--resume``."""
        with self._cond:
            reason, by_operator = self._stop_reason, self._by_operator
        self.metrics.write(
            "stopped", reason=reason, missing=list(self._missing), by_operator=by_operator
        )
        self.on_line(f"stopped: {reason}")
        if self._book is not None:
            self._checkpoint(done, weights, last, contributors)
        return TrainingResult(
            completed=False,
            weights=np.asarray(weights, dtype=np.float64),
            iterations_done=done,
            evaluation=last,
            contributors=contributors,
            stop_reason=reason,
            settings=self.settings.hp,
            session_id=self.session_id,
            stopped_by_operator=by_operator,
        )


def _column_difference(worker: tuple[str, ...], federation: tuple[str, ...]) -> str:
    """Say how a worker's feature columns differ from the federation's, naming both orders."""

    def shown(names: tuple[str, ...]) -> str:
        more = f", … ({len(names)} in all)" if len(names) > _NAMES_SHOWN else ""
        return "[" + ", ".join(names[:_NAMES_SHOWN]) + more + "]"

    orders = (
        f"the worker's order is {shown(worker)}, the PS's validation set's is {shown(federation)}"
    )
    if sorted(worker) == sorted(federation):
        first = next(i for i, (a, b) in enumerate(zip(worker, federation, strict=True)) if a != b)
        return (
            f"the same feature columns in another order (column {first + 1} is "
            f"{worker[first]!r} at the worker, {federation[first]!r} at the PS): {orders}; "
            "reorder the worker's CSV columns to match"
        )
    extra = sorted(set(worker) - set(federation))
    lacking = sorted(set(federation) - set(worker))
    return (
        f"feature columns differ (the worker has {extra or 'no extra'} and lacks "
        f"{lacking or 'none'}): {orders}"
    )

"""The parameter server's core: joins, submissions, rounds with deadlines, the encrypted model.

Independent of gRPC (the servicer in :mod:`.service` is a thin adapter) and of the key
material's type (the PS-side operations come in through :class:`ServerCrypto`), so the whole
round logic runs in tests with real keys and without sockets. Thread-safe: gRPC calls arrive on
a thread pool while :meth:`ParameterServer.run` drives the rounds on the caller's thread.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

import numpy as np

from sealfl.errors import ConfigError, HEError, ProtocolError
from sealfl.fl.homo_lr.algorithm import FloatArray, Hyperparameters, initial_weights, with_bias
from sealfl.fl.homo_lr.evaluation import Evaluation, evaluate, format_iteration
from sealfl.fl.homo_lr.metrics import MetricsLog
from sealfl.fl.homo_lr.rounds import RoundBook, RoundOutcome

V = TypeVar("V")


class ServerCrypto(Protocol[V]):
    """What the PS does with its Paillier key pair (implemented in :mod:`.encrypted`)."""

    def public_key_bytes(self) -> bytes:
        """Return the serialised public key (sent to workers, hashed into the RA-TLS claims)."""
        ...

    def encrypt(self, w: FloatArray) -> bytes:
        """Encrypt a weight vector freshly (the refresh that resets the scale).

        Raise HEError if a weight is out of the encoding's range (the run then stops).
        """
        ...

    def parse_submission(self, data: bytes, length: int) -> V:
        """Parse a worker's vector; raise ProtocolError if malformed, foreign or mis-sized."""
        ...

    def average(self, vectors: list[V]) -> FloatArray:
        """Add the vectors homomorphically, decrypt the sum, divide by their number.

        Raise HEError if the sum breaks its bound (the run then stops with the reason).
        """
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


@dataclass(frozen=True)
class JoinInfo:
    """What a worker learns when it joins."""

    public_key: bytes
    worker_num: int
    round_deadline_s: float
    session_id: str


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Operator's settings of a parameter server.

    Raises
    ------
    ConfigError
        If a count or a duration is out of range.
    """

    worker_num: int
    min_workers: int
    round_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    final_grace_s: float = 10.0
    evaluate_every: int = 10

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
        for name in ("round_deadline_s", "join_deadline_s", "final_grace_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")


@dataclass
class _Joined:
    fingerprint: str
    n_samples: int


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


@dataclass
class ParameterServer(Generic[V]):
    """Collects encrypted updates, averages them inside the enclave and serves the model.

    Parameters
    ----------
    crypto
        The PS's key pair operations.
    validation
        ``(X, y)`` of the validation set, features without the bias column.
    settings
        Counts and deadlines.
    metrics
        JSON-lines sink.
    on_line
        Receives human-readable lines (the ``iter:`` lines and events).
    clock
        Monotonic clock (injectable for tests).
    seal_model
        Called with the finished result before the last model is published; returns where the
        model was saved (sealed), which the final replies tell the workers.
    """

    crypto: ServerCrypto[V]
    validation: tuple[FloatArray, FloatArray]
    settings: ServerSettings
    metrics: MetricsLog
    on_line: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    seal_model: Callable[[TrainingResult], str] | None = None
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    _cond: threading.Condition = field(init=False, default_factory=threading.Condition)
    _phase: Phase = field(init=False, default=Phase.JOINING)
    _joined: dict[int, _Joined] = field(init=False, default_factory=dict)
    _hp: Hyperparameters | None = field(init=False, default=None)
    _n_features: int = field(init=False, default=0)
    _book: RoundBook[V] | None = field(init=False, default=None)
    _models: dict[int, bytes] = field(init=False, default_factory=dict)
    _evaluations: dict[int, tuple[int, Evaluation]] = field(init=False, default_factory=dict)
    _stop_reason: str = field(init=False, default="")
    _missing: tuple[int, ...] = field(init=False, default=())
    _sealed_path: str = field(init=False, default="")
    _fetched_final: set[int] = field(init=False, default_factory=set)

    # ---- calls from workers (gRPC threads) ----------------------------------------------

    def join(
        self, worker_id: int, hp: Hyperparameters, n_features: int, n_samples: int, peer: str
    ) -> JoinInfo:
        """Admit a worker, binding its id to its certificate fingerprint ``peer``.

        Raises
        ------
        ProtocolError
            If the federation is full or already training, the id is taken by another
            certificate, the certificate already holds another id, or the settings differ from
            those of the workers already joined.
        """
        with self._cond:
            known = self._joined.get(worker_id)
            if known is None:
                self._check_free_seat(worker_id, peer)
            elif known.fingerprint != peer:
                raise ProtocolError(f"worker id {worker_id} is already taken by another party")
            if n_samples < 1:
                raise ProtocolError(f"worker {worker_id}: no training rows (n_samples=0)")
            if n_features != self.validation[0].shape[1]:
                raise ProtocolError(
                    f"worker {worker_id}: {n_features} features, but the validation set has "
                    f"{self.validation[0].shape[1]}"
                )
            if self._hp is None:
                self._hp, self._n_features = hp, n_features
            elif (hp, n_features) != (self._hp, self._n_features):
                raise ProtocolError(
                    f"worker {worker_id}: settings ({hp.describe()}) differ from the "
                    f"federation's ({self._hp.describe()})"
                )
            if known is None:
                self._joined[worker_id] = _Joined(fingerprint=peer, n_samples=n_samples)
                self.metrics.write("joined", worker=worker_id, n_samples=n_samples)
                self.on_line(
                    f"worker {worker_id} joined ({n_samples} rows); "
                    f"{len(self._joined)}/{self.settings.worker_num}"
                )
                self._cond.notify_all()
            return JoinInfo(
                public_key=self.crypto.public_key_bytes(),
                worker_num=self.settings.worker_num,
                round_deadline_s=self.settings.round_deadline_s,
                session_id=self.session_id,
            )

    def submit(self, worker_id: int, iteration: int, data: bytes, peer: str) -> None:
        """Accept one worker's encrypted weights for ``iteration``.

        Raises
        ------
        ProtocolError
            If refused (identity, duplicate, wrong iteration, malformed or foreign vector).
            Nothing accepted earlier changes, and the round goes on.
        """
        try:
            with self._cond:
                self._check_identity(worker_id, peer)
                if self._phase is not Phase.TRAINING or self._book is None:
                    raise ProtocolError(
                        f"worker {worker_id}: not accepting submissions ({self._phase.value})"
                    )
                self._book.check(worker_id, iteration)
                book = self._book
            # Parsing checks a whole vector: done outside the lock, re-checked on recording.
            vector = self.crypto.parse_submission(data, self._n_features + 1)
            with self._cond:
                book.submit(worker_id, iteration, vector)
                self._cond.notify_all()
        except ProtocolError as exc:
            self.metrics.write("refused", worker=worker_id, iteration=iteration, reason=str(exc))
            self.on_line(f"refused: {exc}")
            raise

    def get_model(self, worker_id: int, version: int, peer: str, wait_s: float) -> ModelView:
        """Return model ``version`` (after ``version`` iterations), waiting at most ``wait_s``.

        Raises
        ------
        ProtocolError
            If ``worker_id`` is not bound to ``peer``.
        """
        deadline = self.clock() + wait_s
        with self._cond:
            self._check_identity(worker_id, peer)
            self._wait_until(
                lambda: version in self._models or self._phase is Phase.STOPPED, deadline
            )
            if version in self._models:
                return self._ready(worker_id, version)
            if self._phase is Phase.STOPPED:
                return ModelView(
                    state="aborted",
                    version=version,
                    reason=self._stop_reason,
                    missing=self._missing,
                )
            return ModelView(state="waiting", version=version)

    # ---- the round driver ---------------------------------------------------------------

    def run(self) -> TrainingResult:
        """Wait for the workers, drive every iteration, and return the final model.

        Never hangs: joining and every round have deadlines. A result with
        ``completed=False`` carries the reason (for example, who is missing).
        """
        if not self._wait_for_joins():
            return self._stop(self._stop_reason, weights=initial_weights(self._n_features))
        assert self._hp is not None and self._book is not None
        hp = self._hp
        w = initial_weights(self._n_features)
        X1 = with_bias(self.validation[0])
        y = self.validation[1]
        last_eval: tuple[int, Evaluation] | None = None
        contributors: tuple[int, ...] = ()
        evaluation: tuple[int, Evaluation] | None = None
        self._publish(0, self.crypto.encrypt(w))
        for t in range(hp.iterations):
            started = self.clock()
            outcome = self._wait_for_round(t)
            if outcome.stop_reason is not None:
                self._missing = outcome.missing
                return self._stop(outcome.stop_reason, weights=w, done=t, last=last_eval)
            if outcome.missing:
                names = ", ".join(map(str, outcome.missing))
                self.on_line(f"iteration {t}: worker(s) {names} missed the deadline; dropped")
                self.metrics.write("dropped", iteration=t, workers=list(outcome.missing))
            contributors = tuple(outcome.contributions)
            try:
                w_next = self.crypto.average(list(outcome.contributions.values()))
                refreshed = self.crypto.encrypt(w_next)
            except HEError as exc:
                # Only the sum is decrypted, so no single worker can be blamed or dropped.
                reason = (
                    f"iteration {t}: the aggregate of worker(s) "
                    f"{', '.join(map(str, contributors))} cannot be used ({exc}); a worker sent "
                    "a vector outside its declared bound, or the model diverged (try a smaller "
                    "learning rate): stopping"
                )
                return self._stop(reason, weights=w, done=t, last=last_eval)
            w = w_next
            evaluation = None
            if t % self.settings.evaluate_every == 0 or t == hp.iterations - 1:
                ev = evaluate(w, X1, y)
                evaluation = (t, ev)
                last_eval = evaluation
                self.on_line(format_iteration(t, ev))
                self.metrics.write("evaluation", iteration=t, accuracy=ev.accuracy, loss=ev.loss)
            self.metrics.write(
                "round",
                iteration=t,
                seconds=round(self.clock() - started, 6),
                contributors=list(contributors),
            )
            if t + 1 < hp.iterations:
                self._publish(t + 1, refreshed, evaluation)
        result = TrainingResult(
            completed=True,
            weights=w,
            iterations_done=hp.iterations,
            evaluation=last_eval,
            contributors=contributors,
            settings=hp,
            session_id=self.session_id,
        )
        if self.seal_model is not None:
            self._sealed_path = self.seal_model(result)
            self.metrics.write("sealed", path=self._sealed_path)
        self._publish(hp.iterations, refreshed, evaluation)
        with self._cond:
            self._phase = Phase.DONE
        return result

    def wait_for_final_fetches(self) -> None:
        """Give active workers up to ``final_grace_s`` to fetch the last model, then return."""
        deadline = self.clock() + self.settings.final_grace_s
        with self._cond:
            active = self._book.active if self._book is not None else set()
            self._wait_until(lambda: active <= self._fetched_final, deadline)

    # ---- internals ----------------------------------------------------------------------

    def _wait_until(self, ready: Callable[[], bool], deadline: float) -> None:
        """Wait on ``_cond`` (held by the caller) until ``ready()`` or ``deadline`` on ``clock``."""
        while not ready():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self._cond.wait(timeout=remaining)

    def _check_free_seat(self, worker_id: int, peer: str) -> None:
        """Raise unless a new worker may take a seat now (called with ``_cond`` held)."""
        # One seat per certificate: else one party could submit twice per round.
        for other_id, other in self._joined.items():
            if other.fingerprint == peer:
                raise ProtocolError(
                    f"worker {worker_id}: this certificate already joined as worker "
                    f"{other_id}; one party takes one seat"
                )
        if self._phase is not Phase.JOINING:
            raise ProtocolError(f"worker {worker_id}: training has started; joining is closed")
        if len(self._joined) >= self.settings.worker_num:
            raise ProtocolError(
                f"worker {worker_id}: federation is full "
                f"({self.settings.worker_num} workers joined)"
            )

    def _check_identity(self, worker_id: int, peer: str) -> None:
        known = self._joined.get(worker_id)
        if known is None:
            raise ProtocolError(f"worker {worker_id} has not joined")
        if known.fingerprint != peer:
            raise ProtocolError(f"worker id {worker_id} belongs to another party's certificate")

    def _wait_for_joins(self) -> bool:
        deadline = self.clock() + self.settings.join_deadline_s
        with self._cond:
            self._wait_until(lambda: len(self._joined) >= self.settings.worker_num, deadline)
            if len(self._joined) < self.settings.min_workers or self._hp is None:
                self._stop_reason = (
                    f"only {len(self._joined)} of {self.settings.worker_num} workers joined "
                    f"within {self.settings.join_deadline_s:g} s (--min-workers "
                    f"{self.settings.min_workers}): stopping"
                )
                return False
            if len(self._joined) < self.settings.worker_num:
                self.on_line(
                    f"join deadline passed: training with {len(self._joined)} of "
                    f"{self.settings.worker_num} workers"
                )
            self._book = RoundBook(
                workers=list(self._joined),
                min_workers=min(self.settings.min_workers, len(self._joined)),
            )
            self._phase = Phase.TRAINING
            self.metrics.write(
                "training_started",
                workers=sorted(self._joined),
                session=self.session_id,
                iterations=self._hp.iterations,
            )
            return True

    def _wait_for_round(self, t: int) -> RoundOutcome[V]:
        assert self._book is not None
        book = self._book
        deadline = self.clock() + self.settings.round_deadline_s
        with self._cond:
            self._wait_until(book.is_complete, deadline)
            return book.close()

    def _publish(
        self, version: int, data: bytes, evaluation: tuple[int, Evaluation] | None = None
    ) -> None:
        with self._cond:
            self._models[version] = data
            self._models.pop(version - 2, None)  # bounded: a worker needs at most the last two
            if evaluation is not None:
                self._evaluations[version] = evaluation
            self._cond.notify_all()

    def _ready(self, worker_id: int, version: int) -> ModelView:
        final = self._hp is not None and version == self._hp.iterations
        if final:
            self._fetched_final.add(worker_id)
            self._cond.notify_all()
        return ModelView(
            state="ready",
            version=version,
            encrypted_weights=self._models[version],
            evaluation=self._evaluations.get(version),
            sealed_model_path=self._sealed_path if final else "",
        )

    def _stop(
        self,
        reason: str,
        *,
        weights: FloatArray,
        done: int = 0,
        last: tuple[int, Evaluation] | None = None,
    ) -> TrainingResult:
        with self._cond:
            self._phase = Phase.STOPPED
            self._stop_reason = reason
            self._cond.notify_all()
        self.metrics.write("stopped", reason=reason, missing=list(self._missing))
        self.on_line(f"stopped: {reason}")
        return TrainingResult(
            completed=False,
            weights=np.asarray(weights, dtype=np.float64),
            iterations_done=done,
            evaluation=last,
            contributors=(),
            stop_reason=reason,
            settings=self._hp,
            session_id=self.session_id,
        )

"""A worker's training loop: join, then for each iteration fetch Enc(w), step, submit.

The worker holds its data and the PS's public key, never the private key nor a plaintext
weight. It talks to the PS through :class:`PsLink` (gRPC in :mod:`.service`) and computes with
:class:`WorkerCrypto` (Paillier in :mod:`.encrypted`), so the loop is the same code in tests and
in the real process.

A worker's state is its data and the iteration it is at, so it can carry on after losing the PS:
with ``reconnect_s`` it reconnects (the PS restarted, perhaps resumed from its checkpoint),
checks that it is the same session under the same Paillier key, joins again with its seat token
and continues from the iteration the PS names. Every step is exact fixed-point arithmetic, so
repeating iterations the PS lost changes nothing in the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sealfl.data import Dataset
from sealfl.errors import ChannelError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import (
    FloatArray,
    Hyperparameters,
    affine_from_gram,
    gram_statistics,
    with_bias,
)
from sealfl.fl.homo_lr.evaluation import format_iteration
from sealfl.fl.homo_lr.server import JoinInfo, ModelView, SubmitOutcome, SubmitStatus
from sealfl.fl.homo_lr.timing import Spans


class PsLink(Protocol):
    """The calls a worker makes to the parameter server."""

    def join(
        self,
        worker_id: int,
        hp: Hyperparameters,
        feature_names: Sequence[str],
        n_samples: int,
        seat_token: bytes = b"",
    ) -> JoinInfo:
        """Join the federation (or take a seat back); raise ProtocolError if refused."""
        ...

    def submit(
        self, worker_id: int, iteration: int, data: bytes, seat_token: bytes = b""
    ) -> SubmitOutcome:
        """Submit encrypted weights; raise ProtocolError if refused or training stopped."""
        ...

    def get_model(self, worker_id: int, version: int, seat_token: bytes = b"") -> ModelView:
        """Ask for a model version; the PS answers within its bounded wait."""
        ...

    def reconnect(self, wait_s: float) -> None:
        """Open a new connection to the PS, waiting at most ``wait_s`` for it to come back."""
        ...


class WorkerCrypto(Protocol):
    """The worker's only encrypted operation."""

    def step(
        self, encrypted_weights: bytes, A: FloatArray, b: FloatArray, *, spans: Spans | None = None
    ) -> bytes:
        """Return ``Enc(A·w + b)`` from ``Enc(w)``, serialised (timing its parts into ``spans``)."""
        ...


@dataclass(frozen=True)
class WorkerResult:
    """How a worker's run ended."""

    iterations_done: int
    sealed_model_path: str
    last_line: str
    seconds_per_iteration: float
    model_note: str = ""
    dropped_rounds: int = 0


@dataclass(kw_only=True)
class Worker:
    """One data owner's side of homo-lr.

    Parameters
    ----------
    worker_id
        The ``--id`` of this worker.
    data
        Training rows (labels required).
    hp
        Settings; the PS refuses this worker unless they are the federation's.
    link
        Calls to the PS.
    open_key
        Turns the PS's public key bytes into the crypto to compute with; it must raise
        :class:`~sealfl.errors.AttestationError` if the key is not the one bound into the PS's
        verified RA-TLS claims (of the connection in use).
    metrics
        JSON-lines sink.
    on_line
        Receives the ``iter:`` lines and events.
    on_progress
        Called with ``(iterations done, total)`` after each submission.
    on_joined
        Called with each join's answer (the launcher seals the seat token to the seat file).
    seat_token
        The token of an earlier join (from the seat file), to take the seat back.
    reconnect_s
        How long to try to get the PS back after losing it (0: give up at once).
    max_wait_s
        Longest this worker keeps asking for one model version before giving up.
    clock
        Monotonic clock (injectable).
    wall_clock
        Wall clock, for the ``received`` stamp of each ``iteration`` record (the PS stamps when
        it published the model with its own; on one host the difference is the hand-over).
    """

    worker_id: int
    data: Dataset
    hp: Hyperparameters
    link: PsLink
    open_key: Callable[[bytes], WorkerCrypto]
    metrics: MetricsLog
    on_line: Callable[[str], None] = print
    on_progress: Callable[[int, int], None] = lambda done, total: None
    on_joined: Callable[[JoinInfo], None] = lambda info: None
    seat_token: bytes = b""
    reconnect_s: float = 0.0
    max_wait_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    def run(self) -> WorkerResult:
        """Train to the end.

        Raises
        ------
        AttestationError
            If the PS's public key does not match its attested key binding.
        ProtocolError
            If the PS refuses this worker or stops the training (the reason is in the message),
            or comes back from a restart as another session.
        ChannelError
            If the PS cannot be reached (within ``reconnect_s`` after losing it), or no model
            arrives within ``max_wait_s``.
        """
        X1 = with_bias(self.data.X)
        G, c, m = gram_statistics(X1, self.data.labels().astype(np.float64))
        first = self._join()
        crypto = self.open_key(first.public_key)
        self.metrics.write(
            "joined", session=first.session_id, worker_num=first.worker_num, rows=self.data.n_rows
        )
        where = f" at iteration {first.next_iteration}" if first.next_iteration else ""
        self.on_line(
            f"worker {self.worker_id}: joined session {first.session_id}{where} "
            f"({first.worker_num} workers, {self.data.n_rows} rows)"
        )
        last_line = ""
        started = self.clock()
        busy = 0.0
        steps = 0
        dropped = 0
        t = first.next_iteration
        iterations = self.hp.iterations
        spans = Spans()
        while True:
            try:
                while t < iterations:
                    cpu = time.process_time()
                    with spans.span("fetch"):
                        view = self._fetch(t)
                    received = self.wall_clock()
                    last_line = self._report(view) or last_line
                    step_started = self.clock()
                    A, b = affine_from_gram(G, c, m, eta=self.hp.step_size(t), alpha=self.hp.alpha)
                    update = crypto.step(view.encrypted_weights, A, b, spans=spans)
                    busy += self.clock() - step_started
                    steps += 1
                    with spans.span("submit"):
                        outcome = self.link.submit(self.worker_id, t, update, self.seat_token)
                    self.metrics.write(
                        "iteration",
                        iteration=t,
                        received=round(received, 6),
                        cpu_s=round(time.process_time() - cpu, 6),  # this process, all threads
                        **spans.take(),
                    )
                    if outcome.status is SubmitStatus.DROPPED:
                        dropped += 1
                        self.metrics.write("update_dropped", iteration=t, reason=outcome.reason)
                        self.on_line(
                            f"worker {self.worker_id}: the PS left this update out: "
                            f"{outcome.reason}"
                        )
                    t += 1
                    self.on_progress(t, iterations)
                final = self._fetch(iterations)
                break
            except ChannelError as exc:
                t = self._rejoin(exc, first)
        last_line = self._report(final) or last_line
        per_iteration = busy / max(steps, 1)
        self.metrics.write(
            "finished",
            iterations=iterations,
            seconds=round(self.clock() - started, 6),
            step_seconds_per_iteration=round(per_iteration, 6),
            sealed_model_path=final.sealed_model_path,
            model_note=final.model_note,
            dropped_rounds=dropped,
        )
        if final.sealed_model_path:
            self.on_line(
                f"worker {self.worker_id}: PS sealed the model at {final.sealed_model_path}"
            )
        if final.model_note:
            self.on_line(f"worker {self.worker_id}: the PS says: {final.model_note}")
        return WorkerResult(
            iterations_done=iterations,
            sealed_model_path=final.sealed_model_path,
            last_line=last_line,
            seconds_per_iteration=per_iteration,
            model_note=final.model_note,
            dropped_rounds=dropped,
        )

    def _join(self) -> JoinInfo:
        info = self.link.join(
            self.worker_id, self.hp, self.data.feature_names, self.data.n_rows, self.seat_token
        )
        self.seat_token = info.seat_token
        self.on_joined(info)
        return info

    def _rejoin(self, lost: ChannelError, first: JoinInfo) -> int:
        """Get the PS back after ``lost``; return the iteration to continue from."""
        if self.reconnect_s <= 0:
            raise lost
        self.on_line(
            f"worker {self.worker_id}: lost the PS ({lost}); trying to reconnect for up to "
            f"{self.reconnect_s:g} s"
        )
        self.metrics.write("reconnecting", reason=str(lost))
        self.link.reconnect(self.reconnect_s)
        info = self._join()
        if info.session_id != first.session_id or info.public_key != first.public_key:
            raise ProtocolError(
                f"worker {self.worker_id}: the PS came back as another session "
                f"({info.session_id}, not {first.session_id}) or with another Paillier key: the "
                "federation this worker trained in is gone; stopping"
            )
        self.open_key(info.public_key)  # the new certificate must bind the same key
        self.metrics.write("rejoined", session=info.session_id, iteration=info.next_iteration)
        self.on_line(
            f"worker {self.worker_id}: rejoined session {info.session_id} at iteration "
            f"{info.next_iteration}"
        )
        return info.next_iteration

    def _fetch(self, version: int) -> ModelView:
        deadline = self.clock() + self.max_wait_s
        while True:
            view = self.link.get_model(self.worker_id, version, self.seat_token)
            if view.state == "ready":
                return view
            if view.state == "aborted":
                missing = f" (missing: {', '.join(map(str, view.missing))})" if view.missing else ""
                self.metrics.write("aborted", version=version, reason=view.reason)
                raise ProtocolError(f"the PS stopped training: {view.reason}{missing}")
            if self.clock() >= deadline:
                raise ChannelError(
                    f"worker {self.worker_id}: no model version {version} from the PS within "
                    f"{self.max_wait_s:g} s"
                )

    def _report(self, view: ModelView) -> str:
        if view.evaluation is None:
            return ""
        iteration, ev = view.evaluation
        line = format_iteration(iteration, ev)
        self.on_line(line)
        self.metrics.write("evaluation", iteration=iteration, accuracy=ev.accuracy, loss=ev.loss)
        return line

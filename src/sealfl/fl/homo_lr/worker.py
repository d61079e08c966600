"""A worker's training loop: join, then for each iteration fetch Enc(w), step, submit.

The worker holds its data and the PS's public key, never the private key nor a plaintext
weight. It talks to the PS through :class:`PsLink` (gRPC in :mod:`.service`) and computes with
:class:`WorkerCrypto` (Paillier in :mod:`.encrypted`), so the loop is the same code in tests and
in the real process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sealfl.data import Dataset
from sealfl.errors import ChannelError, ProtocolError
from sealfl.fl.homo_lr.algorithm import (
    FloatArray,
    Hyperparameters,
    affine_from_gram,
    gram_statistics,
    with_bias,
)
from sealfl.fl.homo_lr.evaluation import format_iteration
from sealfl.fl.homo_lr.metrics import MetricsLog
from sealfl.fl.homo_lr.server import JoinInfo, ModelView


class PsLink(Protocol):
    """The three calls a worker makes to the parameter server."""

    def join(
        self, worker_id: int, hp: Hyperparameters, n_features: int, n_samples: int
    ) -> JoinInfo:
        """Join the federation; raise ProtocolError if refused."""
        ...

    def submit(self, worker_id: int, iteration: int, data: bytes) -> None:
        """Submit encrypted weights; raise ProtocolError if refused."""
        ...

    def get_model(self, worker_id: int, version: int) -> ModelView:
        """Ask for a model version; the PS answers within its bounded wait."""
        ...


class WorkerCrypto(Protocol):
    """The worker's only encrypted operation."""

    def step(self, encrypted_weights: bytes, A: FloatArray, b: FloatArray) -> bytes:
        """Return ``Enc(A·w + b)`` from ``Enc(w)``, serialised."""
        ...


@dataclass(frozen=True)
class WorkerResult:
    """How a worker's run ended."""

    iterations_done: int
    sealed_model_path: str
    last_line: str
    seconds_per_iteration: float


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
        Settings, shared with every other worker.
    link
        Calls to the PS.
    open_key
        Turns the PS's public key bytes into the crypto to compute with; it must raise
        :class:`~sealfl.errors.AttestationError` if the key is not the one bound into the PS's
        verified RA-TLS claims.
    metrics
        JSON-lines sink.
    on_line
        Receives the ``iter:`` lines and events.
    on_progress
        Called with ``(iterations done, total)`` after each submission.
    max_wait_s
        Longest this worker keeps asking for one model version before giving up.
    clock
        Monotonic clock (injectable).
    """

    worker_id: int
    data: Dataset
    hp: Hyperparameters
    link: PsLink
    open_key: Callable[[bytes], WorkerCrypto]
    metrics: MetricsLog
    on_line: Callable[[str], None] = print
    on_progress: Callable[[int, int], None] = lambda done, total: None
    max_wait_s: float = 900.0
    clock: Callable[[], float] = time.monotonic

    def run(self) -> WorkerResult:
        """Train to the end.

        Raises
        ------
        AttestationError
            If the PS's public key does not match its attested key binding.
        ProtocolError
            If the PS refuses this worker or stops the training (the reason is in the message).
        ChannelError
            If the PS cannot be reached, or no model arrives within ``max_wait_s``.
        """
        X1 = with_bias(self.data.X)
        G, c, m = gram_statistics(X1, self.data.labels().astype(np.float64))
        info = self.link.join(self.worker_id, self.hp, self.data.n_features, self.data.n_rows)
        crypto = self.open_key(info.public_key)
        self.metrics.write(
            "joined", session=info.session_id, worker_num=info.worker_num, rows=self.data.n_rows
        )
        self.on_line(
            f"worker {self.worker_id}: joined session {info.session_id} "
            f"({info.worker_num} workers, {self.data.n_rows} rows)"
        )
        last_line = ""
        started = self.clock()
        busy = 0.0
        for t in range(self.hp.iterations):
            view = self._fetch(t)
            last_line = self._report(view) or last_line
            step_started = self.clock()
            A, b = affine_from_gram(G, c, m, eta=self.hp.step_size(t), alpha=self.hp.alpha)
            update = crypto.step(view.encrypted_weights, A, b)
            busy += self.clock() - step_started
            self.link.submit(self.worker_id, t, update)
            self.on_progress(t + 1, self.hp.iterations)
        final = self._fetch(self.hp.iterations)
        last_line = self._report(final) or last_line
        per_iteration = busy / self.hp.iterations
        self.metrics.write(
            "finished",
            iterations=self.hp.iterations,
            seconds=round(self.clock() - started, 6),
            step_seconds_per_iteration=round(per_iteration, 6),
            sealed_model_path=final.sealed_model_path,
        )
        if final.sealed_model_path:
            self.on_line(
                f"worker {self.worker_id}: PS sealed the model at {final.sealed_model_path}"
            )
        return WorkerResult(
            iterations_done=self.hp.iterations,
            sealed_model_path=final.sealed_model_path,
            last_line=last_line,
            seconds_per_iteration=per_iteration,
        )

    def _fetch(self, version: int) -> ModelView:
        deadline = self.clock() + self.max_wait_s
        while True:
            view = self.link.get_model(self.worker_id, version)
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

"""The leader's side of the step stream: steps, deadlines, refusals, resync and checkpoints.

Independent of gRPC: the loop reads :class:`~sealfl.fl.vfl.stream.Event` s from an inbox that
the service's ``Train`` handler feeds (one :class:`~sealfl.fl.vfl.stream.Duplex` per follower
stream) and sends on the current stream. Per step ``s``::

    START(s)  ->  ACTIVATION(s)  ->  GRADIENT(s), START(s + 1)  ->  own update  ->  COMMIT(s)

The gradient leaves before the leader's own tower runs its backward pass, and START(s + 1)
right behind it, so the follower's backward and next forward overlap the leader's backward.

Rules that make the stream safe to lose and impossible to confuse:

- Every follower message must be the one expected for the current step; anything else (an
  earlier step: replayed; a later one or another kind: out of order), an activation of another
  dtype or shape, or with a NaN or infinity, is refused: the stream gets STOP with the reason
  and is closed, the leader's state is untouched, and it goes on waiting for a correct message
  (a reconnect) until the step's deadline.
- A follower that reconnects says in HELLO how many steps it applied and which activation it
  has outstanding; the leader resends exactly the messages the follower has not acted on, the
  same bytes as before (a resent activation must have the digest of the one received).
- Every ``checkpoint_every`` steps (and after the last), the GRADIENT asks the follower to seal
  its state (prepare); the follower's COMMIT says it did (vote); the leader seals its own and
  from then on announces the step as durable (commit), and both delete older checkpoints.
- Nothing from the follower within the per-step deadline (it disappeared, or keeps sending
  refused messages) ends the run with an error that names the step, the reason the stream was
  lost and the checkpoint both halves hold.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from sealfl.errors import ChannelError, ConfigError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.vfl import cut
from sealfl.fl.vfl.checkpoint import CheckpointStore, common_step, state_message, state_values
from sealfl.fl.vfl.leak import LeakReport
from sealfl.fl.vfl.limits import check_count, check_seconds
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.schedule import BatchPlan
from sealfl.fl.vfl.stream import (
    Duplex,
    Inbox,
    cut_message,
    cut_values,
    ids_digest,
    message_kind,
    tensor_digest,
)
from sealfl.models import FlatManifest

__all__ = ["LeaderHalfLike", "LeaderLoop", "LeaderRules", "LeaderRun", "StepOutcome"]

F32 = npt.NDArray[np.float32]
T = TypeVar("T")


class StepOutcome(Protocol):
    """What the leader half returns for a step: the loss and the gradient to send."""

    @property
    def loss(self) -> float: ...  # noqa: D102

    @property
    def grad(self) -> F32: ...  # noqa: D102


class LeakMeterLike(Protocol):
    """The leader half's leak meter (:class:`sealfl.fl.vfl.leak.LeakMeter`)."""

    def report(self) -> LeakReport: ...


class LeaderHalfLike(Protocol):
    """The leader's half as the stream drives it (:class:`sealfl.fl.vfl.halves.LeaderHalf`)."""

    @property
    def leak(self) -> LeakMeterLike: ...  # noqa: D102

    def forward_loss(  # noqa: D102
        self, step: int, x: npt.NDArray[Any], act: F32, y: npt.NDArray[np.int64]
    ) -> StepOutcome: ...

    def update(self) -> None: ...  # noqa: D102

    def state(self) -> tuple[F32, FlatManifest]: ...  # noqa: D102

    def load_state(self, buffer: F32, manifest: FlatManifest) -> None: ...  # noqa: D102


@dataclass(frozen=True, kw_only=True)
class LeaderRules:
    """The leader's deadlines and checkpoint interval.

    Parameters
    ----------
    step_deadline_s
        How long the leader waits for the follower's next message of a step (reconnects
        included) before it gives up.
    join_deadline_s
        How long it waits for the follower's first HELLO.
    checkpoint_every
        Steps between coordinated checkpoints (0: only after the last step).
    resume
        Continue from the latest checkpoint both halves hold.
    log_every
        Print a progress line every this many steps.
    """

    step_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    checkpoint_every: int = 50
    resume: bool = False
    log_every: int = 10

    def __post_init__(self) -> None:
        check_seconds(self.step_deadline_s, "--step-deadline")
        check_seconds(self.join_deadline_s, "--join-deadline")
        check_count(self.checkpoint_every, "--checkpoint-every", low=0)
        check_count(self.log_every, "--log-every", low=1)


@dataclass
class LeaderRun:
    """What the leader's loop did: the losses of every step, and how it ended."""

    run_id: str
    start_step: int
    steps: int
    losses: list[float] = field(default_factory=list)
    leak: LeakReport | None = None
    manifest_json: bytes = b""
    step_seconds: list[float] = field(default_factory=list)
    wire_bytes: int = 0

    @property
    def final_loss(self) -> float:
        """The last step's loss (NaN if no step ran)."""
        return self.losses[-1] if self.losses else math.nan


class _Phase(enum.Enum):
    HANDSHAKE = "handshake"
    ACTIVATION = "activation"  # START(s) sent; waiting for ACTIVATION(s)
    COMMIT = "commit"  # GRADIENT(s) sent; waiting for COMMIT(s)
    EXPORT = "export"  # FINISH sent; waiting for EXPORTED


def _step_of(message: Any) -> int | None:
    kind = message_kind(message)
    inner = getattr(message, kind, None) if kind != "none" else None
    step = getattr(inner, "step", None)
    return int(step) if isinstance(step, int) else None


class LeaderLoop:
    """The leader's training loop over follower streams (see the module docstring).

    Parameters
    ----------
    half
        The leader's half.
    ids, x, y
        The leader's aligned rows: ids, features and labels in the agreed order.
    plan
        The batches of the run.
    cut_width
        Width of the follower's activation.
    rules
        Deadlines, checkpoints, resume.
    store
        The leader's sealed checkpoints.
    settings_sha256
        Digest of the shared settings (checked against checkpoints).
    run_id
        This run's id (a resumed run keeps its checkpoint's).
    export
        Called once the follower has sealed its half, with its EXPORTED and the run; seals the
        leader's half and returns the joint manifest's JSON.
    wire_dtype
        The settings' ``train.wire_dtype``: how activations arrive and gradients leave.
    """

    def __init__(
        self,
        *,
        half: LeaderHalfLike,
        ids: Sequence[str],
        x: npt.NDArray[Any],
        y: npt.NDArray[np.int64],
        plan: BatchPlan,
        cut_width: int,
        rules: LeaderRules,
        store: CheckpointStore,
        settings_sha256: str,
        run_id: str,
        export: Callable[[pb.Exported, LeaderRun], bytes],
        metrics: MetricsLog,
        on_line: Callable[[str], None] = print,
        line_style: str = "plain",
        wire_dtype: str = "float32",
    ) -> None:
        self.inbox = Inbox()
        self._dtype = cut.wire_dtype(wire_dtype)
        self._half = half
        self._ids = list(ids)
        self._x = x
        self._y = y
        self._plan = plan
        self._width = cut_width
        self._rules = rules
        self._store = store
        self._settings_sha = settings_sha256
        self._aligned_sha = ids_digest(self._ids)
        self._export = export
        self._metrics = metrics
        self._on_line = on_line
        self._line_style = line_style
        self._run = LeaderRun(run_id=run_id, start_step=0, steps=plan.steps)
        self._phase = _Phase.HANDSHAKE
        self._step = 0
        self._current: Duplex | None = None
        self._lost = "the follower has not connected yet"
        self._resend: list[pb.LeaderMessage] = []
        self._act_sha = b""
        self._durable = 0
        self._synthetic: pb.FollowerMessage | None = None
        self.refusals: list[str] = []

    @property
    def aligned_sha256(self) -> bytes:
        """SHA-256 of the leader's aligned ids (the follower's must be equal)."""
        return self._aligned_sha

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> LeaderRun:
        """Train every step, then have both halves exported; return what happened.

        Raises
        ------
        ChannelError
            If the follower sends nothing usable within a deadline.
        ProtocolError
            If the follower stops, or cannot be brought back in step.
        """
        self._receive("hello", 0, lambda m: m, deadline_s=self._rules.join_deadline_s)
        for step in range(self._step, self._plan.steps):
            self._train_step(step)
        return self._finish()

    def _train_step(self, s: int) -> None:
        started = time.perf_counter()
        rows = self._plan.rows(s)
        if self._phase is not _Phase.ACTIVATION or self._step != s:
            self._enter_activation(s)
        what = f"activation of step {s} from the follower"
        message = self._receive(
            "activation",
            s,
            lambda m: (
                m,
                cut_values(
                    m.activation.value,
                    rows=len(rows),
                    width=self._width,
                    what=what,
                    dtype=self._dtype,
                ),
            ),
        )
        act_message, act = message
        out = self._half.forward_loss(s, self._x[rows], act, self._y[rows])
        due = self._checkpoint_due(s)
        gradient = pb.LeaderMessage(
            gradient=pb.Gradient(
                step=s, value=cut_message(out.grad, self._dtype), checkpoint=due, loss=out.loss
            )
        )
        self._phase, self._act_sha = _Phase.COMMIT, tensor_digest(act_message.activation.value)
        self._resend = []
        self._send(gradient)
        if s + 1 < self._plan.steps:
            self._send(self._start_message(s + 1))
        self._half.update()
        loss = float(out.loss)
        self._run.losses.append(loss)
        commit = self._receive("commit", s, lambda m: m.commit)
        if due and not commit.checkpointed:
            raise ProtocolError(
                f"the follower committed step {s} without the checkpoint the leader asked "
                "for; the halves would no longer hold the same steps"
            )
        self._phase, self._step = _Phase.ACTIVATION, s + 1
        self._resend = self._resend[1:]  # START(s + 1), if any, is still unanswered
        elapsed = time.perf_counter() - started
        self._run.step_seconds.append(elapsed)
        # The step's record goes out before the leader's checkpoint of it, so the metrics log
        # never lags the durable state: a kill in between resumes from the previous common
        # checkpoint and redoes the step (its record is then written again).
        self._record(s, loss, elapsed)
        if due:
            self._save_checkpoint(s + 1)
            self._durable = s + 1
            self._store.prune(self._durable)

    def _record(self, s: int, loss: float, elapsed: float) -> None:
        leak = self._half.leak.report()
        self._run.leak = leak
        wire = self._current.sent_bytes if self._current is not None else 0
        self._metrics.write(
            "step",
            step=s + 1,
            loss=loss,
            norm_auc=leak.norm_auc,
            cosine_auc=leak.cosine_auc,
            leak=leak.leak,
            step_s=elapsed,
            leader_sent_bytes=wire,
        )
        steps = self._plan.steps
        if self._line_style == "reference":
            # The reference system's bridge lines for every iteration, and its loss line.
            self._on_line(f"[Bridge] send start iter_id: {s}")
            self._on_line(f"[Bridge] received data iter_id: {s}, name: act1_f")
            self._on_line(f"[Bridge] Data: send iter_id: {s}, name: act1_f_grad")
            self._on_line(f"[Bridge] receive peer commit iter_id: {s}")
            if s % self._rules.log_every == 0 or s + 1 == steps:
                self._on_line(f"loss = {loss:.7f}, step = {s}")
        elif (s + 1) % self._rules.log_every == 0 or s + 1 == steps:
            self._on_line(
                f"leader: step {s + 1}/{steps}: loss {loss:.4f}; leak of the gradients sent so "
                f"far: norm AUC {leak.norm_auc:.3f}, cosine AUC {leak.cosine_auc:.3f}"
            )

    def _checkpoint_due(self, s: int) -> bool:
        every = self._rules.checkpoint_every
        return s + 1 == self._plan.steps or (every > 0 and (s + 1) % every == 0)

    def _save_checkpoint(self, step: int) -> int:
        values, manifest = self._half.state()
        manifest_json, raw = state_message(values, manifest)
        written = self._store.save(
            pb.Checkpoint(
                run_id=self._run.run_id,
                step=step,
                settings_sha256=self._settings_sha,
                aligned_sha256=self._aligned_sha,
                manifest_json=manifest_json,
                values=raw,
                losses=self._run.losses,
            )
        )
        self._metrics.write("checkpoint", step=step, bytes=written)
        return written

    def _finish(self) -> LeaderRun:
        self._phase, self._step = _Phase.EXPORT, self._plan.steps
        finish = pb.LeaderMessage(
            finish=pb.Finish(steps=self._plan.steps, final_loss=self._run.final_loss)
        )
        self._resend = []
        self._send(finish)
        exported = self._receive("exported", self._plan.steps, lambda m: m.exported)
        self._run.manifest_json = self._export(exported, self._run)
        done = pb.LeaderMessage(
            finish=pb.Finish(
                steps=self._plan.steps,
                final_loss=self._run.final_loss,
                manifest_json=self._run.manifest_json,
            )
        )
        self._send(done)
        if self._current is not None:
            self._run.wire_bytes = self._current.sent_bytes
            self._current.close()
        return self._run

    # -- sending ------------------------------------------------------------------------------

    def _start_message(self, s: int) -> pb.LeaderMessage:
        rows = self._plan.rows(s)
        return pb.LeaderMessage(
            start=pb.Start(
                step=s,
                batch=len(rows),
                ids_sha256=ids_digest([self._ids[r] for r in rows]),
                durable_step=self._durable,
            )
        )

    def _enter_activation(self, s: int) -> None:
        self._phase, self._step = _Phase.ACTIVATION, s
        self._resend = []
        self._send(self._start_message(s))

    def _send(self, message: pb.LeaderMessage) -> None:
        """Send on the current stream (if any) and keep it for a resend after a reconnect."""
        self._resend.append(message)
        if self._current is not None:
            self._current.send(message)

    # -- receiving ----------------------------------------------------------------------------

    def _receive(
        self,
        kind: str,
        step: int,
        accept: Callable[[Any], T],
        *,
        deadline_s: float | None = None,
    ) -> T:
        """Wait for the follower's ``kind`` message of ``step``; refuse anything else.

        ``accept`` checks and converts the message; a ProtocolError from it is a refusal.
        """
        wait = self._rules.step_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + wait
        while True:
            if self._synthetic is not None and kind != "hello":
                synthetic, self._synthetic = self._synthetic, None
                return accept(synthetic)
            event = self.inbox.get(deadline)
            if event is None:
                raise self._timeout(kind, step, wait)
            stream, message = event.stream, event.message
            if message is None:
                if stream is self._current:
                    self._current = None
                    self._lost = event.reason
                    self._on_line(
                        f"leader: lost the follower's stream at step {step} ({event.reason}); "
                        f"waiting up to {wait:g} s for it to reconnect"
                    )
                    self._metrics.write("stream_lost", step=step, reason=event.reason)
                continue
            got = message_kind(message)
            if got == "hello":
                self._attach(stream, message.hello)
                if kind == "hello" and self._current is stream:
                    return accept(message)
                continue
            if stream is not self._current:
                continue  # a replaced stream's last messages
            if got == "stop":
                self._current = None
                raise ProtocolError(f"the follower stopped at step {step}: {message.stop.reason}")
            try:
                self._check_expected(message, got, kind, step)
                return accept(message)
            except ProtocolError as exc:
                self._refuse(stream, str(exc), step)

    def _check_expected(self, message: Any, got: str, kind: str, step: int) -> None:
        got_step = _step_of(message)
        if got == kind and (got_step is None or got_step == step):
            return
        shown = f"{got} for step {got_step}" if got_step is not None else got
        if got_step is not None and (
            got_step < step or (got_step == step and self._phase is not _Phase.ACTIVATION)
        ):
            how = "replayed"
        else:
            how = "out of order"
        raise ProtocolError(
            f"{shown} from the follower: {how} (expected {kind} for step {step}); refused"
        )

    def _refuse(self, stream: Duplex, reason: str, step: int) -> None:
        self.refusals.append(reason)
        self._on_line(f"leader: refused: {reason}")
        self._metrics.write("refused", step=step, reason=reason)
        stream.send(pb.LeaderMessage(stop=pb.Stop(reason=reason, refused=True)))
        stream.close()
        if stream is self._current:
            self._current = None
            self._lost = f"its last stream was refused: {reason}"

    def _timeout(self, kind: str, step: int, wait: float) -> ChannelError:
        where = f"step {step}" if self._phase is not _Phase.HANDSHAKE else "the start"
        saved = self._store.steps()
        kept = (
            f"the last checkpoint both halves hold is step {self._durable} "
            f"({self._store.path(self._durable)}): restart both parties with --resume to go on"
            if self._durable in saved
            else "no checkpoint was made yet: restart both parties to train again"
        )
        return ChannelError(
            f"leader: no {kind} from the follower for {where} within the deadline of "
            f"{wait:g} s ({self._lost}); {kept}"
        )

    # -- streams and resync -------------------------------------------------------------------

    def _attach(self, stream: Duplex, hello: pb.Hello) -> None:
        """Take ``stream`` as the follower's, and bring it in step (or refuse it)."""
        if hello.aligned_sha256 != self._aligned_sha:
            self._refuse(
                stream,
                "the follower's aligned rows differ from the leader's (another PSI, other data "
                "or another order); refused",
                self._step,
            )
            return
        if self._phase is _Phase.HANDSHAKE:
            if not self._handshake(stream, hello):
                return
        else:
            try:
                self._resync(hello)
            except ProtocolError as exc:
                self._refuse(stream, str(exc), self._step)
                return
            stream.send(
                pb.LeaderMessage(
                    welcome=pb.Welcome(
                        run_id=self._run.run_id,
                        start_step=hello.committed,
                        total_steps=self._plan.steps,
                    )
                )
            )
        if self._current is not None and self._current is not stream:
            self._current.close()
        self._current = stream
        resend = self._resend
        if self._synthetic is not None:
            resend = resend[1:]  # the follower applied GRADIENT(s): only START(s + 1) is left
        for message in resend:
            stream.send(message)
        if self._phase is not _Phase.HANDSHAKE:
            self._on_line(
                f"leader: the follower reconnected at step {hello.committed}; resent "
                f"{len(resend)} message(s)"
            )
            self._metrics.write("reconnected", step=hello.committed, resent=len(resend))

    def _resync(self, hello: pb.Hello) -> None:
        s, committed = self._step, hello.committed
        if self._phase is _Phase.COMMIT and committed == s + 1:
            # The follower applied GRADIENT(s) and its COMMIT was lost with the stream.
            checkpointed = (s + 1) in hello.checkpoints
            self._synthetic = pb.FollowerMessage(
                commit=pb.Commit(step=s, checkpointed=checkpointed)
            )
            return
        if self._phase is _Phase.EXPORT and committed == self._plan.steps:
            return
        if committed != s:
            raise ProtocolError(
                f"the follower reconnected having applied {committed} steps, the leader is at "
                f"step {s}; they cannot be brought in step (restart both with --resume)"
            )
        if self._phase is _Phase.COMMIT and hello.pending_activation_sha256 != self._act_sha:
            raise ProtocolError(
                f"the follower reconnected with another activation outstanding for step {s} "
                "than the one the leader answered; refused"
            )

    def _handshake(self, stream: Duplex, hello: pb.Hello) -> bool:
        """Agree where the run starts (fresh, or the latest checkpoint both hold)."""
        resume = self._rules.resume
        if hello.resume != resume:
            mine, theirs = ("resumes", "starts afresh") if resume else ("starts afresh", "resumes")
            self._stop(
                stream,
                f"the leader {mine} but the follower {theirs}: start both with --resume, or "
                "neither",
            )
            return False
        start = 0
        if resume:
            mine_steps = self._store.steps()
            found = common_step(mine_steps, hello.checkpoints)
            if found is None and (mine_steps or hello.checkpoints):
                self._stop(
                    stream,
                    f"no checkpoint both halves hold (leader: steps {mine_steps or 'none'}, "
                    f"follower: {list(hello.checkpoints) or 'none'}); cannot resume",
                )
                return False
            if found is not None:
                start = found
                self._load_checkpoint(found)
        self._run.start_step = start
        self._durable = start
        self._phase, self._step = _Phase.ACTIVATION, start
        stream.send(
            pb.LeaderMessage(
                welcome=pb.Welcome(
                    run_id=self._run.run_id,
                    start_step=start,
                    total_steps=self._plan.steps,
                    load_checkpoint=resume and start > 0,
                )
            )
        )
        self._metrics.write("started", start_step=start, steps=self._plan.steps, resume=resume)
        self._resend = []
        if start < self._plan.steps:
            self._resend = [self._start_message(start)]
        return True

    def _load_checkpoint(self, step: int) -> None:
        checkpoint = self._store.load(step)
        source = str(self._store.path(step))
        if checkpoint.settings_sha256 != self._settings_sha:
            raise ConfigError(f"{source}: a checkpoint of other settings; cannot resume")
        if checkpoint.aligned_sha256 != self._aligned_sha:
            raise ConfigError(f"{source}: a checkpoint of other aligned rows; cannot resume")
        values, manifest = state_values(checkpoint.manifest_json, checkpoint.values, source=source)
        self._half.load_state(values, manifest)
        self._run.run_id = checkpoint.run_id
        self._run.losses = list(checkpoint.losses)
        self._on_line(f"leader: resuming run {checkpoint.run_id} at step {step} from {source}")

    def _stop(self, stream: Duplex, reason: str) -> None:
        self._on_line(f"leader: {reason}")
        stream.send(pb.LeaderMessage(stop=pb.Stop(reason=reason, refused=False)))
        stream.close()
        raise ProtocolError(reason)

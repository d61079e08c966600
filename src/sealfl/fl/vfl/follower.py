"""The follower's side of the step stream: answer the leader, reconnect, checkpoint, export.

Independent of gRPC: ``connect()`` opens a stream to the leader (a
:class:`~sealfl.fl.vfl.stream.Duplex` feeding this loop's inbox) and the loop reacts to what the
leader sends (see :mod:`sealfl.fl.vfl.leader` for the protocol):

- START(s): checks the batch (its size and the digest of its ids, computed from this side's own
  aligned ids) and sends ACTIVATION(s); a START for a step whose activation is already out
  (after a reconnect) resends the same bytes;
- GRADIENT(s): checks and applies it (backward and optimiser step), seals a checkpoint when
  asked, and sends COMMIT(s);
- FINISH: seals the half for export and answers EXPORTED; the second FINISH carries the joint
  manifest, and the run is over;
- STOP: the leader gave up or refused a message: the run ends with its reason.

A lost stream is reopened (``connect`` again) until the step's deadline; HELLO then tells the
leader how many steps this side applied and which activation it has outstanding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sealfl.errors import ChannelError, ConfigError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.vfl import cut
from sealfl.fl.vfl.checkpoint import CheckpointStore, state_message, state_values
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.schedule import BatchPlan
from sealfl.fl.vfl.stream import (
    Duplex,
    Inbox,
    check_step,
    cut_message,
    cut_values,
    ids_digest,
    message_kind,
    tensor_digest,
)
from sealfl.models import FlatManifest

__all__ = ["FollowerHalfLike", "FollowerLoop", "FollowerRun"]

F32 = npt.NDArray[np.float32]


class FollowerHalfLike(Protocol):
    """The follower's half as the stream drives it (:class:`sealfl.fl.vfl.halves.FollowerHalf`)."""

    def forward(self, step: int, x: npt.NDArray[Any]) -> F32: ...  # noqa: D102

    def backward(self, step: int, grad: F32) -> None: ...  # noqa: D102

    def state(self) -> tuple[F32, FlatManifest]: ...  # noqa: D102

    def load_state(self, buffer: F32, manifest: FlatManifest) -> None: ...  # noqa: D102


@dataclass
class FollowerRun:
    """What the follower's loop did."""

    run_id: str = ""
    start_step: int = 0
    steps: int = 0
    final_loss: float = float("nan")
    manifest_json: bytes = b""
    reconnects: int = 0
    losses: list[float] = field(default_factory=list)


class FollowerLoop:
    """The follower's training loop (see the module docstring).

    Parameters
    ----------
    half
        The follower's half.
    ids, x
        Its aligned rows: ids and features in the agreed order.
    plan, cut_width
        The batches and the activation width.
    connect
        Opens a new stream to the leader feeding the given inbox (raises ChannelError).
    store
        The follower's sealed checkpoints.
    resume
        Continue from the latest checkpoint both halves hold.
    step_deadline_s
        How long to wait for the leader's next message (reconnects included).
    export
        Seals the follower's half at the end and returns what EXPORTED tells the leader.
    save_manifest
        Keeps the joint manifest the leader sends last.
    wire_dtype
        The settings' ``train.wire_dtype``: how activations leave and gradients arrive.
    """

    def __init__(
        self,
        *,
        half: FollowerHalfLike,
        ids: Sequence[str],
        x: npt.NDArray[Any],
        plan: BatchPlan,
        cut_width: int,
        connect: Callable[[Inbox], Duplex],
        store: CheckpointStore,
        settings_sha256: str,
        resume: bool,
        step_deadline_s: float,
        export: Callable[[FollowerRun], pb.Exported],
        save_manifest: Callable[[bytes], None],
        metrics: MetricsLog,
        on_line: Callable[[str], None] = print,
        wire_dtype: str = "float32",
    ) -> None:
        self.inbox = Inbox()
        self._dtype = cut.wire_dtype(wire_dtype)
        self._half = half
        self._ids = list(ids)
        self._x = x
        self._plan = plan
        self._width = cut_width
        self._connect = connect
        self._store = store
        self._settings_sha = settings_sha256
        self._resume = resume
        self._deadline_s = step_deadline_s
        self._export = export
        self._save_manifest = save_manifest
        self._metrics = metrics
        self._on_line = on_line
        self._aligned_sha = ids_digest(self._ids)
        self._stream: Duplex | None = None
        self._committed = 0
        self._pending: tuple[int, pb.FollowerMessage] | None = None
        self._welcomed = False
        self._run = FollowerRun(steps=plan.steps)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> FollowerRun:
        """Follow the leader until the joint manifest arrives; return what happened.

        Raises
        ------
        ChannelError
            If the leader cannot be reached, or sends nothing, within the deadline.
        ProtocolError
            If the leader stops or refuses, or sends something out of step.
        """
        self._open(first=True)
        while True:
            message = self._next()
            kind = message_kind(message)
            if kind == "welcome":
                self._welcome(message.welcome)
            elif kind == "start":
                self._start(message.start)
            elif kind == "gradient":
                self._gradient(message.gradient)
            elif kind == "finish":
                if self._finish(message.finish):
                    return self._run
            elif kind == "stop":
                what = "refused a message" if message.stop.refused else "stopped"
                raise ProtocolError(f"the leader {what}: {message.stop.reason}")
            else:
                raise ProtocolError(f"the leader sent {kind!r}, which a follower never expects")

    def _welcome(self, welcome: pb.Welcome) -> None:
        if not self._welcomed:
            self._welcomed = True
            self._run.run_id = welcome.run_id
            if welcome.total_steps != self._plan.steps:
                raise ProtocolError(
                    f"the leader plans {welcome.total_steps} steps, this follower "
                    f"{self._plan.steps} (other data or settings)"
                )
            if welcome.load_checkpoint:
                self._load_checkpoint(welcome.start_step)
            elif welcome.start_step != 0:
                raise ProtocolError(
                    f"the leader starts at step {welcome.start_step} without a checkpoint"
                )
            self._committed = welcome.start_step
            self._run.start_step = welcome.start_step
            how = "resuming" if welcome.load_checkpoint else "starting"
            self._on_line(
                f"follower: run {welcome.run_id}: {how} at step {welcome.start_step} of "
                f"{welcome.total_steps}"
            )
        elif welcome.start_step != self._committed:
            raise ProtocolError(
                f"after a reconnect the leader resumes at step {welcome.start_step}, this "
                f"follower applied {self._committed}"
            )

    def _start(self, start: pb.Start) -> None:
        s = start.step
        check_step(s, self._committed, what="START", peer="the leader")
        if start.durable_step:
            self._store.prune(start.durable_step)
        if self._pending is not None:
            pending_step, message = self._pending
            if pending_step != s:  # pragma: no cover - guarded by check_step
                raise ProtocolError(f"START for step {s} with step {pending_step} outstanding")
            self._send(message)  # a resend after a reconnect: the same bytes
            return
        rows = self._plan.rows(s)
        if start.batch != len(rows):
            raise ProtocolError(
                f"START of step {s}: the leader's batch has {start.batch} rows, this follower's "
                f"{len(rows)}"
            )
        if start.ids_sha256 != ids_digest([self._ids[r] for r in rows]):
            raise ProtocolError(
                f"START of step {s}: the leader's batch holds other ids than this follower's "
                "(the aligned orders differ)"
            )
        act = self._half.forward(s, self._x[rows])
        value = cut_message(act, self._dtype)
        message = pb.FollowerMessage(activation=pb.Activation(step=s, value=value))
        self._pending = (s, message)
        self._send(message)

    def _gradient(self, gradient: pb.Gradient) -> None:
        s = gradient.step
        if self._pending is None or self._pending[0] != s:
            raise ProtocolError(
                f"GRADIENT for step {s} from the leader, but no activation of that step is "
                "outstanding"
            )
        rows = len(self._plan.rows(s))
        grad = cut_values(
            gradient.value,
            rows=rows,
            width=self._width,
            what=f"gradient of step {s} from the leader",
            dtype=self._dtype,
        )
        self._half.backward(s, grad)
        self._pending = None
        self._committed = s + 1
        self._run.losses.append(gradient.loss)
        checkpointed = False
        if gradient.checkpoint:
            self._save_checkpoint(s + 1)
            checkpointed = True
        self._send(pb.FollowerMessage(commit=pb.Commit(step=s, checkpointed=checkpointed)))
        sent = self._stream.sent_bytes if self._stream is not None else 0
        self._metrics.write(
            "step",
            step=s + 1,
            loss=gradient.loss,
            checkpointed=checkpointed,
            follower_sent_bytes=sent,
        )

    def _finish(self, finish: pb.Finish) -> bool:
        if self._committed != self._plan.steps:
            raise ProtocolError(
                f"the leader finished after {finish.steps} steps, this follower applied "
                f"{self._committed}"
            )
        self._run.final_loss = finish.final_loss
        if not finish.manifest_json:
            self._send(pb.FollowerMessage(exported=self._export(self._run)))
            return False
        self._run.manifest_json = bytes(finish.manifest_json)
        self._save_manifest(self._run.manifest_json)
        self._store.prune(self._plan.steps)
        if self._stream is not None:
            self._stream.close()
        return True

    # -- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self, step: int) -> None:
        values, manifest = self._half.state()
        manifest_json, raw = state_message(values, manifest)
        self._store.save(
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

    def _load_checkpoint(self, step: int) -> None:
        checkpoint = self._store.load(step)
        source = str(self._store.path(step))
        if checkpoint.settings_sha256 != self._settings_sha:
            raise ConfigError(f"{source}: a checkpoint of other settings; cannot resume")
        if checkpoint.aligned_sha256 != self._aligned_sha:
            raise ConfigError(f"{source}: a checkpoint of other aligned rows; cannot resume")
        values, manifest = state_values(checkpoint.manifest_json, checkpoint.values, source=source)
        self._half.load_state(values, manifest)
        self._run.losses = list(checkpoint.losses)
        self._on_line(f"follower: resuming at step {step} from {source}")

    # -- the stream ---------------------------------------------------------------------------

    def _hello(self) -> pb.FollowerMessage:
        pending = b""
        if self._pending is not None:
            pending = tensor_digest(self._pending[1].activation.value)
        return pb.FollowerMessage(
            hello=pb.Hello(
                committed=self._committed,
                pending_activation_sha256=pending,
                checkpoints=self._store.steps(),
                resume=self._resume,
                aligned_sha256=self._aligned_sha,
            )
        )

    def _open(self, *, first: bool, deadline: float | None = None) -> None:
        """Open a stream and say HELLO; retry until ``deadline`` (first: once)."""
        pause = 0.1
        while True:
            try:
                stream = self._connect(self.inbox)
                break
            except ChannelError:
                if deadline is None or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(1.0, 2 * pause)
        self._stream = stream
        stream.send(self._hello())
        if not first:
            self._run.reconnects += 1
            self._metrics.write("reconnected", committed=self._committed)

    def _send(self, message: pb.FollowerMessage) -> None:
        if self._stream is not None:
            self._stream.send(message)

    def _next(self) -> Any:
        """Return the leader's next message; reconnect a lost stream until the deadline."""
        deadline = time.monotonic() + self._deadline_s
        lost = ""
        while True:
            event = self.inbox.get(deadline)
            if event is None:
                raise ChannelError(
                    f"follower: nothing from the leader for step {self._committed} within the "
                    f"deadline of {self._deadline_s:g} s"
                    + (f" ({lost})" if lost else "")
                    + self._kept()
                )
            if event.stream is not self._stream:
                continue
            if event.message is not None:
                return event.message
            lost = event.reason
            self._stream = None
            if not self._welcomed:
                raise ChannelError(f"follower: the leader ended the stream at once: {lost}")
            self._on_line(
                f"follower: lost the leader's stream at step {self._committed} ({lost}); "
                "reconnecting"
            )
            try:
                self._open(first=False, deadline=deadline)
            except ChannelError as exc:
                lost = f"{lost}; reconnecting failed: {exc}"

    def _kept(self) -> str:
        steps = self._store.steps()
        if not steps:
            return "; no checkpoint was made yet"
        return f"; this follower's checkpoints: steps {steps} in {self._store.directory}"

"""The step protocol of the two loops, back to back in one process (real halves, no gRPC)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from vfl_loops import make_loops, plan_of, run_both, wire

from sealfl.data.vertical import breast_hetero
from sealfl.errors import ChannelError
from sealfl.fl.vfl.halves import FollowerHalf
from sealfl.fl.vfl.leader import LeaderRules
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.settings import TrainSpec, preset
from sealfl.fl.vfl.split import train_central
from sealfl.fl.vfl.stream import Duplex, Inbox, cut_message, ids_digest

SETTINGS = preset("breast").replace(
    train=TrainSpec(optimizer="adam", lr=0.01, batch_size=64, epochs=2, seed=3)
)


def test_the_two_loops_train_as_the_central_model(tmp_path: Path) -> None:
    pair = breast_hetero("train")
    leader, follower, _ = make_loops(SETTINGS, pair, tmp_path)
    run, followed = run_both(leader, follower)
    central = train_central(SETTINGS, pair)
    assert run.losses == central.losses
    assert followed.losses == run.losses
    assert run.manifest_json == followed.manifest_json == b'{"manifest": true}'


class _DropOnce:
    """Wraps the follower's half: closes the stream once at chosen points, as a network would."""

    def __init__(self, half: object, streams: list, *, after_backward: int, before_forward: int):
        self._half = half
        self._streams = streams
        self._after_backward = after_backward
        self._before_forward = before_forward

    def __getattr__(self, name: str) -> object:
        return getattr(self._half, name)

    def _drop(self) -> None:
        self._streams[-1].close()

    def forward(self, step: int, x: object) -> object:
        if step == self._before_forward:
            self._before_forward = -1
            self._drop()
        return self._half.forward(step, x)

    def backward(self, step: int, grad: object) -> None:
        self._half.backward(step, grad)
        if step == self._after_backward:
            self._after_backward = -1
            self._drop()  # the COMMIT of this step is lost with the stream


def test_a_lost_stream_is_reopened_and_the_run_is_unchanged(tmp_path: Path) -> None:
    pair = breast_hetero("train")
    leader, follower, streams = make_loops(SETTINGS, pair, tmp_path)
    follower._half = _DropOnce(follower._half, streams, after_backward=2, before_forward=4)
    run, followed = run_both(leader, follower)
    assert followed.reconnects == 2
    assert run.losses == train_central(SETTINGS, pair).losses


def _next(inbox: Inbox, stream: object) -> pb.LeaderMessage:
    while True:
        event = inbox.get(time.monotonic() + 10)
        assert event is not None, "no message from the leader"
        if event.stream is stream and event.message is not None:
            return event.message


def test_refused_messages_get_a_reason_and_the_leader_waits_until_its_deadline(
    tmp_path: Path,
) -> None:
    pair = breast_hetero("train")
    rules = LeaderRules(step_deadline_s=3.0, checkpoint_every=1)
    leader, _, _ = make_loops(SETTINGS, pair, tmp_path, rules=rules)
    plan = plan_of(SETTINGS, pair.n_rows)
    half = FollowerHalf(SETTINGS)
    aligned = ids_digest(pair.follower.ids)
    errors: list[BaseException] = []

    def lead() -> None:
        try:
            leader.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=lead, daemon=True)
    thread.start()
    inbox = Inbox()
    k = SETTINGS.model.cut_width

    def stream(committed: int) -> tuple[Duplex, Duplex]:
        to_leader, to_rogue = wire(leader.inbox, inbox)
        hello = pb.Hello(committed=committed, aligned_sha256=aligned)
        to_rogue.send(pb.FollowerMessage(hello=hello))
        assert _next(inbox, to_rogue).WhichOneof("kind") == "welcome"
        assert _next(inbox, to_rogue).start.step == committed
        return to_leader, to_rogue

    def activation(step: int, values: np.ndarray) -> pb.FollowerMessage:
        return pb.FollowerMessage(activation=pb.Activation(step=step, value=cut_message(values)))

    act0 = half.forward(0, pair.follower.X[plan.rows(0)])
    bad = {
        "holds nan": act0.copy(),
        "expected shape [64, 8], got [64, 7]": act0[:, :7].copy(),
        "out of order (expected activation for step 0)": act0,
    }
    bad["holds nan"][3, 1] = np.nan
    for expected, values in bad.items():
        _, to_rogue = stream(0)
        step = 1 if "out of order" in expected else 0
        to_rogue.send(activation(step, values))
        reply = _next(inbox, to_rogue)
        assert reply.stop.refused and expected in reply.stop.reason.lower(), reply
    _, to_rogue = stream(0)
    to_rogue.send(activation(0, act0))
    gradient = _next(inbox, to_rogue).gradient
    assert gradient.step == 0 and list(gradient.value.shape) == [len(plan.rows(0)), k]
    assert _next(inbox, to_rogue).start.step == 1
    to_rogue.send(activation(0, act0))  # the same activation again: a replay
    reply = _next(inbox, to_rogue)
    assert reply.stop.refused and "replayed" in reply.stop.reason
    thread.join(timeout=20)
    assert len(errors) == 1 and isinstance(errors[0], ChannelError)
    assert "no commit from the follower for step 0 within the deadline" in str(errors[0])
    assert "no checkpoint was made yet" in str(errors[0])
    assert len(leader.refusals) == 4

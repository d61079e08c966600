"""Split training equals centralised training exactly; the step API's order and refusals.

The halves run as separate objects that see each other's tensors only as wire bytes; the
central trainer runs the same networks as one model. Equal means equal: the loss of every step
and every final weight, compared with ``==``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfl.data.vertical import (
    VerticalPair,
    breast_hetero,
    digits_vertical,
    wide_deep_learnable,
    wide_deep_reference,
)
from sealfl.errors import ProtocolError
from sealfl.fl.vfl import BatchPlan, decode_cut, encode_cut, preset
from sealfl.fl.vfl.central import CentralTrainer
from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.split import train_central, train_split
from sealfl.models.nn import flatten


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _assert_same_run(name: str, pair: VerticalPair, steps: int | None) -> list[float]:
    settings = preset(name)
    split = train_split(settings, pair, steps=steps)
    central = train_central(settings, pair, steps=steps)
    assert len(split.losses) == len(central.losses) > 0
    assert split.losses == central.losses  # max |delta| = 0
    for a, b in ((split.follower, central.follower), (split.leader, central.leader)):
        assert np.array_equal(flatten(a.model)[0], flatten(b.model)[0])
    return split.losses


def test_breast_split_equals_central_at_every_step() -> None:
    losses = _assert_same_run("breast", breast_hetero("train"), None)
    assert len(losses) == 400 and losses[-1] < losses[0] / 3


def test_digits_split_equals_central() -> None:
    _assert_same_run("digits", digits_vertical("train"), 40)


def test_reference_wide_deep_split_equals_central() -> None:
    # plain SGD with sparse embedding gradients, the reference's +-0.01 initialisation
    _assert_same_run("reference", wide_deep_reference(), 8)


def test_default_wide_deep_split_equals_central() -> None:
    # Adam with dense embedding gradients, batch 256
    _assert_same_run("default", wide_deep_learnable(768), 3)


def test_central_at_two_threads_equals_split_at_one() -> None:
    # What `sealfl bench vfl` compares: parties with one torch thread each against a two-thread
    # centralised step; the kernels (oneDNN's products, fused Adam) must not depend on threads.
    settings, pair = preset("default"), wide_deep_learnable(768)
    split = train_split(settings, pair, steps=3)
    torch.set_num_threads(2)
    central = train_central(settings, pair, steps=3)
    assert len(split.losses) == 3 and split.losses == central.losses
    for a, b in ((split.follower, central.follower), (split.leader, central.leader)):
        assert np.array_equal(flatten(a.model)[0], flatten(b.model)[0])


def test_gradient_sent_before_the_leader_backward_is_centrals_activation_gradient() -> None:
    settings = preset("default")
    pair = wide_deep_learnable(256)
    y = pair.leader.labels()
    central = CentralTrainer(settings)
    xf = torch.from_numpy(pair.follower.X.astype(np.int64))
    xl = torch.from_numpy(pair.leader.X.astype(np.int64))
    act = central.follower.model(xf)
    act.retain_grad()
    loss = torch.nn.functional.cross_entropy(central.leader.model(xl, act), torch.from_numpy(y))
    loss.backward()
    assert act.grad is not None

    follower, leader = FollowerHalf(settings), LeaderHalf(settings)
    sent = encode_cut(follower.forward(0, pair.follower.X))
    out = leader.forward_loss(0, pair.leader.X, decode_cut(sent, rows=256, width=64, what="a"), y)
    # nothing of the leader's own weights has moved yet: the gradient went out first
    assert leader.pending_step == 0
    assert np.array_equal(
        flatten(leader.model)[0], flatten(CentralTrainer(settings).leader.model)[0]
    )
    assert np.array_equal(out.grad, act.grad.numpy())
    assert out.loss == float(loss.item())
    assert len(sent) == 256 * 64 * 4


def test_run_reports_wire_bytes_per_step() -> None:
    run = train_split(preset("reference"), wide_deep_reference(64), steps=1)
    assert run.bytes_per_step == 2 * 32 * 64 * 4  # 16 KiB at B=32


def test_batch_plan_drops_the_last_partial_batch_like_the_reference() -> None:
    plan = BatchPlan(2000, batch_size=32, epochs=2, seed=0)
    assert plan.steps == 124
    first_epoch = np.concatenate([plan.rows(s) for s in range(62)])
    assert len(set(first_epoch.tolist())) == 62 * 32
    assert plan.epoch_of(62) == 1
    assert not np.array_equal(plan.rows(0), plan.rows(62))
    again = BatchPlan(2000, batch_size=32, epochs=2, seed=0)
    assert np.array_equal(again.rows(100), plan.rows(100))  # a resumed party jumps to its step
    assert not np.array_equal(
        BatchPlan(2000, batch_size=32, epochs=2, seed=1).rows(0), plan.rows(0)
    )


# -- order and refusals ------------------------------------------------------------------------


def _breast_step(step: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pair = breast_hetero("train")
    rows = BatchPlan.for_run(preset("breast").train, pair.n_rows).rows(step)
    return pair.leader.X[rows], pair.follower.X[rows], pair.leader.labels()[rows]


def test_steps_must_come_in_order() -> None:
    xl, xf, y = _breast_step()
    follower, leader = FollowerHalf(preset("breast")), LeaderHalf(preset("breast"))
    act = follower.forward(0, xf)
    with pytest.raises(ProtocolError, match="follower: step 1 begun while step 0 is still pending"):
        follower.forward(1, xf)
    with pytest.raises(ProtocolError, match="leader: update for step 0, but no step is pending"):
        leader.update(0)
    with pytest.raises(ProtocolError, match="leader: update, but no step is pending"):
        leader.update()
    out = leader.forward_loss(0, xl, act, y)
    with pytest.raises(ProtocolError, match="follower: gradient for step 1, but step 0 is pending"):
        follower.backward(1, out.grad)
    leader.update()
    follower.backward(0, out.grad)
    assert follower.pending_step is None and leader.pending_step is None


def test_a_discarded_step_is_redone_identically() -> None:
    xl, xf, y = _breast_step()
    follower, leader = FollowerHalf(preset("breast")), LeaderHalf(preset("breast"))
    act = follower.forward(0, xf)
    first = leader.forward_loss(0, xl, act, y)
    leader.discard()
    follower.discard()  # a reconnect lost the step: both redo it from scratch
    act_again = follower.forward(0, xf)
    again = leader.forward_loss(0, xl, act_again, y)
    assert np.array_equal(act, act_again) and np.array_equal(first.grad, again.grad)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (
            lambda a: a[:-1],
            r"activation of step 0: expected float32 \[128, 8\], got float32 \[127, 8\]",
        ),
        (lambda a: a.astype(np.float64), r"expected float32 \[128, 8\], got float64 \[128, 8\]"),
        (
            lambda a: np.where(np.arange(a.size).reshape(a.shape) == 9, np.nan, a).astype(
                np.float32
            ),
            "NaN or infinite",
        ),
        (lambda a: np.full_like(a, np.inf), "NaN or infinite"),
    ],
)
def test_a_bad_activation_is_refused_and_nothing_changes(mangle, message) -> None:  # type: ignore[no-untyped-def]
    xl, xf, y = _breast_step()
    follower, leader = FollowerHalf(preset("breast")), LeaderHalf(preset("breast"))
    act = follower.forward(0, xf)
    before = flatten(leader.model)[0]
    with pytest.raises(ProtocolError, match=message):
        leader.forward_loss(0, xl, mangle(act), y)
    assert leader.pending_step is None
    assert leader.leak.report().steps == 0
    # the honest activation still goes through, and equals a run that never saw the bad one
    out = leader.forward_loss(0, xl, act, y)
    leader.update()
    follower.backward(0, out.grad)
    assert not np.array_equal(flatten(leader.model)[0], before)
    run = train_split(preset("breast"), breast_hetero("train"), steps=1)
    assert np.array_equal(flatten(leader.model)[0], flatten(run.leader.model)[0])
    assert np.array_equal(flatten(follower.model)[0], flatten(run.follower.model)[0])


def test_a_bad_gradient_is_refused_and_the_step_stays_pending() -> None:
    _, xf, _ = _breast_step()
    follower = FollowerHalf(preset("breast"))
    act = follower.forward(0, xf)
    before = flatten(follower.model)[0]
    bad = np.zeros_like(act)
    bad[3, 2] = np.nan
    with pytest.raises(ProtocolError, match="gradient of step 0: holds NaN or infinite values"):
        follower.backward(0, bad)
    with pytest.raises(ProtocolError, match=r"expected float32 \[128, 8\], got float32 \[128, 7\]"):
        follower.backward(0, np.zeros((128, 7), dtype=np.float32))
    assert follower.pending_step == 0
    assert np.array_equal(flatten(follower.model)[0], before)
    follower.backward(0, np.zeros_like(act))


def test_wire_bytes_are_checked() -> None:
    data = encode_cut(np.ones((4, 8), dtype=np.float32))
    with pytest.raises(ProtocolError, match=r"expected 4x8 float32 \(128 bytes\), got 124 bytes"):
        decode_cut(data[:-4], rows=4, width=8, what="activation of step 3")
    nan = np.ones((4, 8), dtype=np.float32)
    nan[2, 5] = np.nan
    with pytest.raises(ProtocolError, match="activation of step 3: holds nan at row 2, column 5"):
        decode_cut(encode_cut(nan), rows=4, width=8, what="activation of step 3")
    values = decode_cut(data, rows=4, width=8, what="x")
    assert values.dtype == np.float32 and not values.flags.writeable

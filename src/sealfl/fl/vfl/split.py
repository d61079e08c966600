"""Whole runs in one process: split (tensors through bytes) and centralised, and evaluation.

These drive the same :class:`~sealfl.fl.vfl.halves.FollowerHalf` and
:class:`~sealfl.fl.vfl.halves.LeaderHalf` the networked parties use, with the activation and
the gradient serialised to their wire bytes and parsed back between them (exactly what crosses
the RA-TLS stream), so a test or a benchmark in one process checks the arithmetic of a real run:
:func:`train_split` and :func:`train_central` on the same settings and rows return equal losses
at every step.

Usage::

    pair = breast_hetero("train")
    run = train_split(preset("breast"), pair)
    evaluate(run.leader, run.follower, breast_hetero("test")).auc
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.data.vertical import VerticalPair
from sealfl.errors import ConfigError
from sealfl.fl.vfl.central import CentralTrainer
from sealfl.fl.vfl.cut import decode_cut, encode_cut, wire_dtype
from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.leak import LeakReport, binary_auc
from sealfl.fl.vfl.schedule import BatchPlan
from sealfl.fl.vfl.settings import VflSettings

__all__ = ["Evaluation", "Run", "evaluate", "scores", "train_central", "train_split"]

StepCallback = Callable[[int, float], None]


@dataclass
class Run:
    """A finished in-process run.

    Parameters
    ----------
    losses
        Mean loss of every step, in order.
    leader, follower
        The trained halves.
    bytes_per_step
        Activation plus gradient bytes of one step (0 for a centralised run).
    """

    losses: list[float]
    leader: LeaderHalf
    follower: FollowerHalf
    bytes_per_step: int = 0

    @property
    def leak(self) -> LeakReport:
        """The leak of the gradients the leader returned (a centralised run returns none)."""
        return self.leader.leak.report()


def _plan(settings: VflSettings, pair: VerticalPair) -> BatchPlan:
    return BatchPlan.for_run(settings.train, pair.n_rows)


def train_split(
    settings: VflSettings,
    pair: VerticalPair,
    *,
    steps: int | None = None,
    on_step: StepCallback | None = None,
) -> Run:
    """Train the two halves as separate objects that exchange only wire bytes.

    Parameters
    ----------
    settings
        The run's settings.
    pair
        Aligned training rows of both parties (the leader's with labels).
    steps
        Stop after this many steps (all of the plan's by default).
    on_step
        Called with ``(step, loss)`` after every step.
    """
    plan = _plan(settings, pair)
    labels = pair.leader.labels()
    follower = FollowerHalf(settings)
    leader = LeaderHalf(settings)
    k = settings.model.cut_width
    dtype = wire_dtype(settings.train.wire_dtype)
    losses: list[float] = []
    sent = 0
    for step in range(plan.steps if steps is None else min(steps, plan.steps)):
        rows = plan.rows(step)
        act_bytes = encode_cut(follower.forward(step, pair.follower.X[rows]), dtype)
        what = f"activation of step {step}"
        act = decode_cut(act_bytes, rows=rows.size, width=k, what=what, dtype=dtype)
        out = leader.forward_loss(step, pair.leader.X[rows], act, labels[rows])
        grad_bytes = encode_cut(out.grad, dtype)
        leader.update(step)
        what = f"gradient of step {step}"
        grad = decode_cut(grad_bytes, rows=rows.size, width=k, what=what, dtype=dtype)
        follower.backward(step, grad)
        losses.append(out.loss)
        sent = len(act_bytes) + len(grad_bytes)
        if on_step is not None:
            on_step(step, out.loss)
    return Run(losses=losses, leader=leader, follower=follower, bytes_per_step=sent)


def train_central(
    settings: VflSettings,
    pair: VerticalPair,
    *,
    steps: int | None = None,
    on_step: StepCallback | None = None,
) -> Run:
    """Train the same model centrally on the same rows, step for step (see :func:`train_split`)."""
    plan = _plan(settings, pair)
    labels = pair.leader.labels()
    trainer = CentralTrainer(settings)
    losses: list[float] = []
    for step in range(plan.steps if steps is None else min(steps, plan.steps)):
        rows = plan.rows(step)
        loss = trainer.step(pair.leader.X[rows], pair.follower.X[rows], labels[rows])
        losses.append(loss)
        if on_step is not None:
            on_step(step, loss)
    return Run(losses=losses, leader=trainer.leader, follower=trainer.follower)


@dataclass(frozen=True)
class Evaluation:
    """Joint test metrics.

    Parameters
    ----------
    auc
        ROC AUC of the probability of class 1 (binary tasks; NaN otherwise or if one class is
        missing).
    accuracy
        Fraction of rows whose most probable class is the label.
    loss
        Mean cross-entropy.
    rows
        Rows evaluated.
    """

    auc: float
    accuracy: float
    loss: float
    rows: int


def scores(probs: npt.NDArray[np.float64], labels: npt.NDArray[np.integer]) -> Evaluation:
    """Return :class:`Evaluation` metrics of class probabilities ``[n, classes]`` for labels."""
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ConfigError(
            f"evaluation: {list(probs.shape)} probabilities for {labels.shape[0]} labels"
        )
    picked = probs[np.arange(labels.shape[0]), labels]
    auc = binary_auc(probs[:, 1], labels) if probs.shape[1] == 2 else float("nan")
    return Evaluation(
        auc=auc,
        accuracy=float(np.mean(np.argmax(probs, axis=1) == labels)),
        loss=float(-np.mean(np.log(np.maximum(picked, 1e-300)))),
        rows=int(labels.shape[0]),
    )


def evaluate(
    leader: LeaderHalf, follower: FollowerHalf, pair: VerticalPair, *, batch_size: int = 4096
) -> Evaluation:
    """Evaluate the joint model on aligned labelled rows (in batches, nothing recorded)."""
    labels = pair.leader.labels()
    parts = []
    for start in range(0, pair.n_rows, batch_size):
        stop = min(start + batch_size, pair.n_rows)
        act = follower.embed(pair.follower.X[start:stop])
        parts.append(leader.predict_proba(pair.leader.X[start:stop], act))
    return scores(np.concatenate(parts), labels)

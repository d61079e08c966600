"""What one client learns about the model from its outputs: the figures docs/trust.md quotes.

These are the model-extraction attacks a client can make with legitimate queries, measured on
the breast-cancer model (30 features) through the whole protocol. No protocol prevents them;
a server limits them by the outputs it serves and a row budget per client.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from sealfl.data import breast
from sealfl.models import LogisticRegression, TrainConfig
from sealfl.mpc import Output, QueryPlan, evaluate_locally
from sealfl.mpc.spline import sigmoid_spline

FloatArray = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def weights() -> FloatArray:
    train = [breast.load_split(s) for s in ("homo_guest", "homo_host")]
    X = np.vstack([t.X for t in train])
    y = np.concatenate([t.labels() for t in train])
    return LogisticRegression.fit(X, y, TrainConfig())[0].weights


def _ask(x: FloatArray, output: Output, w: FloatArray) -> FloatArray:
    plan = QueryPlan(rows=x.shape[0], features=x.shape[1], output=output)
    return np.asarray(evaluate_locally(plan, x, w)[0], dtype=np.float64)


def _invert_spline(p: FloatArray) -> FloatArray:
    """Undo the public sigmoid spline: piecewise linear and increasing between its knots."""
    spline = sigmoid_spline()
    knots = spline.knots
    values = spline(knots)
    return np.asarray(np.interp(p, values, knots), dtype=np.float64)


def test_one_logit_query_of_the_unit_rows_returns_the_model(weights: FloatArray) -> None:
    got = _ask(np.eye(weights.size), Output.LOGIT, weights)
    assert np.abs(got - weights).max() < 1e-6  # measured 4.7e-7


def test_one_probability_query_returns_the_model_too(weights: FloatArray) -> None:
    # The spline is public and linear between knots, so each probability inside the outer
    # knots gives the logit back: scaled unit rows keep every logit there.
    scale = 0.25
    p = _ask(np.eye(weights.size) * scale, Output.PROBABILITY, weights)
    got = _invert_spline(p) / scale
    assert np.abs(got - weights).max() < 5e-5  # measured 4.2e-6


def test_labels_give_the_weights_direction_by_bisection(weights: FloatArray) -> None:
    # One bit per row: one query of the unit rows gives the signs; then each row
    # e_i - t * sign(w_0) * e_0 asks whether w_i > t |w_0|, and a bisection per feature, all
    # features in one query, gives every ratio w_i / |w_0|: the decision boundary, never the
    # scale of w.
    d = weights.size
    signs = _ask(np.eye(d), Output.LABEL, weights)
    np.testing.assert_array_equal(signs, (weights >= 0).astype(np.float64))
    s0 = 1.0 if signs[0] else -1.0
    lo, hi = np.full(d, -64.0), np.full(d, 64.0)
    queries, rows = 1, d
    for _ in range(30):
        t = (lo + hi) / 2
        x = np.eye(d) - s0 * np.outer(t, np.eye(d)[0])
        x[0] = np.eye(d)[0]
        above = _ask(x, Output.LABEL, weights) > 0
        lo, hi = np.where(above, t, lo), np.where(above, hi, t)
        queries, rows = queries + 1, rows + d
    ratios = (lo + hi)[1:] / 2
    assert queries == 31 and rows == 930
    assert np.abs(ratios - weights[1:] / abs(weights[0])).max() < 1e-6

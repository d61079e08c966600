"""The plaintext mathematics: the reference run's published numbers and the better default."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl.data import breast
from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import (
    ACCURATE,
    REFERENCE,
    Hyperparameters,
    Schedule,
    affine_update,
    local_update,
    with_bias,
)
from sealfl.fl.homo_lr.evaluation import evaluate, format_iteration
from sealfl.fl.homo_lr.plaintext import train_plaintext


def _parties() -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for name in ("homo_guest", "homo_host"):
        ds = breast.load_split(name)
        out.append((with_bias(ds.X), ds.labels().astype(np.float64)))
    return out


def _final_line(hp: Hyperparameters) -> str:
    test = breast.load_split("homo_test")
    *_, last = train_plaintext(_parties(), hp)
    return format_iteration(
        last.iteration, evaluate(last.weights, with_bias(test.X), test.labels())
    )


def test_reference_settings_reproduce_published_line() -> None:
    assert _final_line(REFERENCE) == "iter: 340  acc: 0.930  loss: 0.297"


def test_accurate_preset_reaches_096() -> None:
    line = _final_line(ACCURATE)
    acc = float(line.split("acc: ")[1].split()[0])
    assert acc >= 0.96, line


def test_affine_form_equals_textbook_step() -> None:
    rng = np.random.default_rng(4)
    X1 = with_bias(rng.normal(size=(40, 5)))
    y = rng.integers(0, 2, 40).astype(np.float64)
    w = rng.normal(size=6)
    A, b = affine_update(X1, y, eta=0.07, alpha=0.01)
    np.testing.assert_allclose(A @ w + b, local_update(w, X1, y, eta=0.07, alpha=0.01), atol=1e-13)


def test_schedules() -> None:
    hp = Hyperparameters(learning_rate=0.2, schedule=Schedule.SQRT_DECAY)
    assert hp.step_size(0) == 0.2 and hp.step_size(3) == pytest.approx(0.1)
    assert Hyperparameters(learning_rate=0.2, schedule=Schedule.CONSTANT).step_size(99) == 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": 0.0}, "learning rate must be a positive number, got 0.0"),
        ({"alpha": -1.0}, "alpha must be a non-negative number, got -1.0"),
        ({"iterations": 0}, "at least 1, got 0"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Hyperparameters(**kwargs)  # type: ignore[arg-type]


def test_evaluation_is_finite_for_confident_mistakes() -> None:
    ev = evaluate(np.array([1000.0]), np.array([[1.0]]), np.array([0.0]))
    assert ev.accuracy == 0.0 and ev.loss == pytest.approx(1000.0)

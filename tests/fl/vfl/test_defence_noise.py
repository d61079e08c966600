"""Defences on the returned gradient: what the noise does, and what it buys on breast hetero."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfl.data.vertical import breast_hetero
from sealfl.errors import ConfigError
from sealfl.fl.vfl import DefenceSpec, VflSettings, defend, preset
from sealfl.fl.vfl.defence import max_norm_noise
from sealfl.fl.vfl.split import evaluate, train_split


def _grad(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(64, 8)).astype(np.float32) * rng.uniform(0.1, 3.0, size=(64, 1)).astype(
        np.float32
    )
    g[5] = 0.0
    return g


def test_no_defence_returns_the_gradient_unchanged() -> None:
    g = _grad()
    out = defend(g, DefenceSpec(), seed=0, step=3)
    assert out.dtype == np.float32 and np.array_equal(out, g)


def test_max_norm_noise_lies_along_each_row_and_keeps_zero_rows() -> None:
    g = _grad()
    out = defend(g, DefenceSpec(kind="max-norm"), seed=0, step=0)
    assert out.dtype == np.float32 and out.shape == g.shape
    assert np.array_equal(out[5], np.zeros(8, dtype=np.float32))
    norms = np.linalg.norm(g, axis=1)
    top = int(np.argmax(norms))
    np.testing.assert_allclose(out[top], g[top], rtol=1e-6)  # the largest row gets no noise
    for i in np.flatnonzero(norms > 0):
        cos = out[i] @ g[i] / (np.linalg.norm(out[i]) * norms[i])
        assert abs(abs(cos) - 1.0) < 1e-5
    # some rows are flipped: that is what blinds the cosine attack
    flips = sum(float(out[i] @ g[i]) < 0 for i in range(64))
    assert 5 < flips < 40


def test_max_norm_matches_every_rows_expected_norm_to_the_largest() -> None:
    g = _grad().astype(np.float64)
    norms_sq = np.einsum("ij,ij->i", g, g)
    draws = np.stack(
        [max_norm_noise(g, np.random.default_rng(s)).astype(np.float64) for s in range(4000)]
    )
    mean_sq = np.einsum("sij,sij->si", draws, draws).mean(axis=0)
    nonzero = norms_sq > 0
    np.testing.assert_allclose(mean_sq[nonzero], norms_sq.max(), rtol=0.12)


def test_noise_is_fixed_by_seed_and_step() -> None:
    g = _grad()
    spec = DefenceSpec(kind="max-norm")
    a = defend(g, spec, seed=4, step=10)
    assert np.array_equal(a, defend(g, spec, seed=4, step=10))  # a resumed run redraws it
    assert not np.array_equal(a, defend(g, spec, seed=4, step=11))
    assert not np.array_equal(a, defend(g, spec, seed=5, step=10))


def test_gaussian_noise_has_the_set_sigma() -> None:
    g = np.zeros((500, 64), dtype=np.float32)
    out = defend(g, DefenceSpec(kind="gaussian", sigma=0.25), seed=0, step=0)
    assert abs(float(out.mean())) < 0.005
    assert 0.245 < float(out.std()) < 0.255


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "gaussian"}, "defence 'gaussian' needs sigma > 0"),
        ({"kind": "max-norm", "sigma": 0.1}, "sigma applies to 'gaussian' only"),
        ({"kind": "dp"}, r"defence.kind must be one of \['none', 'max-norm', 'gaussian'\]"),
        ({"kind": "gaussian", "sigma": float("nan")}, "defence.sigma must be >= 0"),
    ],
)
def test_bad_defence_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DefenceSpec(**kwargs)  # type: ignore[arg-type]


def _breast(defence: DefenceSpec) -> tuple[float, float, float]:
    torch.set_num_threads(1)
    settings: VflSettings = preset("breast").replace(defence=defence)
    run = train_split(settings, breast_hetero("train"))
    auc = evaluate(run.leader, run.follower, breast_hetero("test")).auc
    return auc, run.leak.cosine_auc, run.leak.norm_auc


def test_max_norm_blinds_both_attacks_on_breast_at_little_cost() -> None:
    plain_auc, plain_cos, _ = _breast(DefenceSpec())
    auc, cos, norm = _breast(DefenceSpec(kind="max-norm"))
    assert plain_cos > 0.95  # the direction is the label (ties: rows with a zero gradient)
    assert cos <= 0.55 and norm <= 0.55
    assert auc >= plain_auc - 0.002

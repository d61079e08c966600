"""The halves' networks: the reference's shapes and initialisation, seeding, inputs, state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sealfl.data.vertical import breast_hetero, wide_deep_reference
from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.vfl import VflSettings, preset
from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.model import build_follower, build_leader, features_to_tensor
from sealfl.fl.vfl.split import train_split
from sealfl.models import FlatManifest
from sealfl.models.nn import flatten


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(p.shape) for name, p in model.named_parameters()}


def test_wide_deep_halves_have_the_reference_shapes() -> None:
    spec = preset("reference").model
    assert _shapes(build_follower(spec, 0)) == {
        "embed.table.weight": [512 * 101, 16],
        "fc1.weight": [64, 8192],
        "fc1.bias": [64],
    }
    assert _shapes(build_leader(spec, 0)) == {
        "embed.table.weight": [512 * 101, 16],
        "fc1.weight": [256, 8192],
        "fc1.bias": [256],
        "fc2.weight": [64, 256],
        "fc2.bias": [64],
        "top.weight": [2, 128],  # W3 [128 x 2], no bias
    }


def test_reference_init_is_uniform_001_with_zero_biases() -> None:
    for model in (
        build_follower(preset("reference").model, 0),
        build_leader(preset("reference").model, 0),
    ):
        for name, p in model.named_parameters():
            values = p.detach()
            if name.endswith("bias"):
                assert torch.count_nonzero(values) == 0, name
            else:
                assert values.abs().max() <= 0.01, name
                assert values.abs().max() > 0.0099, name  # the whole range is used
                assert abs(float(values.mean())) < 1e-3, name


def test_torch_init_is_torchs_own() -> None:
    follower = build_follower(dataclasses.replace(preset("default").model, init="torch"), 0)
    emb = follower.embed.table.weight.detach()
    assert 0.98 < float(emb.std()) < 1.02  # N(0, 1)
    bound = 1 / np.sqrt(8192)
    largest = float(follower.fc1.weight.detach().abs().max())
    assert 0.99 * bound < largest <= bound


def test_each_half_is_fixed_by_the_seed_and_its_role_alone() -> None:
    spec = dataclasses.replace(preset("default").model, init="torch")
    torch.manual_seed(1)
    a, _ = flatten(build_follower(spec, 7))
    torch.manual_seed(2)  # the global RNG plays no part
    torch.rand(1000)
    b, _ = flatten(build_follower(spec, 7))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, flatten(build_follower(spec, 8))[0])
    # the two roles draw from different streams
    lf = flatten(build_leader(spec, 7).embed)[0]
    assert not np.array_equal(lf[:100], flatten(build_follower(spec, 7).embed)[0][:100])


def test_one_id_per_slot_makes_mean_pooling_a_lookup() -> None:
    model = build_follower(preset("reference").model, 0)
    ids = wide_deep_reference(3).follower.X
    table = model.embed.table.weight.detach().numpy()
    expected = np.concatenate([table[s * 101 + int(ids[0, s])] for s in range(512)])
    got = model.embed(features_to_tensor(preset("reference").model, "follower", ids))
    np.testing.assert_array_equal(got[0].detach().numpy(), expected)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.full((2, 512), 101), r"row 0, slot 0: expected an id in 0\.\.100, got 101"),
        (np.full((2, 512), -1), r"expected an id in 0\.\.100, got -1"),
        (np.full((2, 512), 2.5), r"expected an id in 0\.\.100, got 2\.5"),
        (np.zeros((2, 511)), r"follower features: expected \[B, 512\], got \[2, 511\]"),
    ],
)
def test_slot_features_are_checked(values: np.ndarray, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        features_to_tensor(preset("reference").model, "follower", values)


def test_dense_features_must_be_finite() -> None:
    x = np.zeros((3, 20))
    x[1, 4] = np.nan
    with pytest.raises(ConfigError, match="row 1, column 4 is not finite"):
        features_to_tensor(preset("breast").model, "follower", x)


def test_export_is_a_flat_buffer_that_another_process_can_load() -> None:
    run = train_split(preset("breast"), breast_hetero("train"), steps=5)
    values, manifest = run.follower.export()
    wire, text = values.tobytes(), manifest.to_json()
    other = FollowerHalf(_settings_with_seed("breast", 99))
    assert not np.array_equal(flatten(other.model)[0], values)
    from sealfl.models.nn import load_flat

    load_flat(other.model, wire, FlatManifest.from_json(text))
    x = breast_hetero("test").follower.X
    np.testing.assert_array_equal(other.embed(x), run.follower.embed(x))


def _settings_with_seed(name: str, seed: int) -> VflSettings:
    s = preset(name)
    return s.replace(train=type(s.train)(**{**s.train.__dict__, "seed": seed}))


def test_state_resumes_adam_bit_for_bit() -> None:
    pair = breast_hetero("train")
    settings = preset("breast")
    full = train_split(settings, pair, steps=12).losses
    first = train_split(settings, pair, steps=6)
    f_state, l_state = first.follower.state(), first.leader.state()
    assert any(s.name == "optimizer.bottom.weight.exp_avg_sq" for s in f_state[1].entries)
    # a fresh pair of halves (another process), restored from the state's bytes and manifests
    follower, leader = FollowerHalf(settings), LeaderHalf(settings)
    follower.load_state(f_state[0].tobytes(), FlatManifest.from_json(f_state[1].to_json()))
    leader.load_state(l_state[0].tobytes(), FlatManifest.from_json(l_state[1].to_json()))
    from sealfl.fl.vfl.schedule import BatchPlan

    plan = BatchPlan.for_run(settings.train, pair.n_rows)
    losses = []
    for step in range(6, 12):
        rows = plan.rows(step)
        act = follower.forward(step, pair.follower.X[rows])
        out = leader.forward_loss(step, pair.leader.X[rows], act, pair.leader.labels()[rows])
        leader.update(step)
        follower.backward(step, out.grad)
        losses.append(out.loss)
    assert losses == full[6:]


def test_a_bad_state_is_refused_and_changes_nothing() -> None:
    settings = preset("breast")
    half = FollowerHalf(settings)
    before = flatten(half.model)[0]
    donor = train_split(settings, breast_hetero("train"), steps=2).follower
    values, manifest = donor.state()
    poisoned = values.copy()
    poisoned[3] = np.nan
    with pytest.raises(ProtocolError, match=r"'bottom\.weight' holds nan at element 3"):
        half.load_state(poisoned, manifest)
    digits = FollowerHalf(preset("digits"))
    with pytest.raises(ProtocolError, match="state does not match the model"):
        digits.load_state(values, manifest)
    truncated = FlatManifest(manifest.entries[:-1])
    with pytest.raises(ProtocolError, match="optimiser state does not match adam"):
        half.load_state(values[: truncated.numel], truncated)
    np.testing.assert_array_equal(flatten(half.model)[0], before)


def test_state_is_refused_while_a_step_is_pending() -> None:
    half = FollowerHalf(preset("breast"))
    half.forward(0, breast_hetero("train").follower.X[:4])
    with pytest.raises(ProtocolError, match="state taken while step 0 is pending"):
        half.state()


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_lookup_has_nn_embeddings_gradient_bit_for_bit(threads: int) -> None:
    # The dense wide-deep table's lookup has its own (faster) backward; it must add the same
    # rows in the same order as nn.Embedding's, or split and central runs (and every result
    # measured before) would change. Few distinct ids (many repeats per row) and gradients
    # across twelve orders of magnitude make any other summation order show.
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        spec = preset("default").model
        model = build_follower(spec, 3)
        assert not model.embed.table.sparse
        rng = np.random.default_rng(threads)
        ids = rng.integers(0, 3, size=(64, spec.follower_features))
        x = features_to_tensor(spec, "follower", ids)
        scale = torch.from_numpy(10.0 ** rng.uniform(-6, 6, size=(64, 1))).float()
        grad = torch.randn(64, spec.follower_features * spec.embed_dim) * scale
        model.embed(x).backward(grad)
        got = model.embed.table.weight.grad
        weight = model.embed.table.weight.detach().clone().requires_grad_(True)
        looked_up = torch.nn.functional.embedding(x + model.embed.offsets, weight)
        looked_up.reshape(64, -1).backward(grad)
        assert got is not None and weight.grad is not None
        assert torch.equal(got, weight.grad)
        assert torch.count_nonzero(got) > 0
        with torch.no_grad():
            assert torch.equal(model.embed(x), looked_up.reshape(64, -1))
    finally:
        torch.set_num_threads(before)


def test_fused_adam_trains_as_the_loop_form_within_rounding() -> None:
    # The halves' Adam runs torch's fused kernel for speed; it rounds differently from the
    # default loop form, but only in the last bits, and its state (what checkpoints hold) has
    # the same float32 entries.
    pair = breast_hetero("train")
    settings = preset("breast")
    x_l, x_f, y = pair.leader.X[:128], pair.follower.X[:128], pair.leader.labels()[:128]
    initial, weights, state_keys = [], [], []
    for fused in (True, False):
        follower, leader = FollowerHalf(settings), LeaderHalf(settings)
        assert isinstance(leader.optimizer, torch.optim.Adam)
        assert leader.optimizer.defaults["fused"] is True
        initial.append(np.concatenate([leader.export()[0], follower.export()[0]]))
        if not fused:
            for half in (follower, leader):
                half.optimizer = torch.optim.Adam(
                    half.model.parameters(), lr=settings.train.lr, foreach=False
                )
        for step in range(5):
            act = follower.forward(step, x_f)
            out = leader.forward_loss(step, x_l, act, y)
            leader.update(step)
            follower.backward(step, out.grad)
        weights.append(np.concatenate([leader.export()[0], follower.export()[0]]))
        names = [s.name for s in leader.state()[1].entries if s.name.startswith("optimizer.")]
        state_keys.append(names)
    np.testing.assert_array_equal(initial[0], initial[1])
    assert np.abs(weights[0] - initial[0]).max() > 1e-3  # it trained
    assert state_keys[0] == state_keys[1] and {n.rsplit(".", 1)[1] for n in state_keys[0]} == {
        "exp_avg",
        "exp_avg_sq",
        "step",
    }
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)

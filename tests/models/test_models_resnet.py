"""CIFAR ResNets: exact parameter counts, shapes, structure, and that one CPU step trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sealfl.errors import ConfigError
from sealfl.models.nn import MODEL_NAMES, CifarResNet, SmallCNN, build_model, count_parameters

# He et al. 2016, Table 6 (0.27M ... 0.85M); the reference's TF v2 model re-implemented.
PARAMS = {
    "resnet8": 75_290,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet56-v2": 855_834,
}


@pytest.mark.parametrize(("name", "expected"), sorted(PARAMS.items()))
def test_parameter_counts(name: str, expected: int) -> None:
    assert count_parameters(build_model(name)) == expected


def test_state_entries_of_the_paper_sizes() -> None:
    # Parameters plus batch-norm buffers, as measured for the background study.
    for name, entries in (("resnet20", 271_117), ("resnet56", 857_137), ("resnet56-v2", 859_953)):
        state = build_model(name).state_dict()
        assert sum(t.numel() for t in state.values()) == entries


def test_small_cnn_count_and_every_name_builds() -> None:
    assert count_parameters(SmallCNN()) == 151_402
    assert set(MODEL_NAMES) == {*PARAMS, "small-cnn"}


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [("resnet20", 3, 32), ("resnet56-v2", 3, 24), ("resnet8", 1, 8), ("small-cnn", 1, 8)],
)
def test_forward_shapes(name: str, channels: int, size: int) -> None:
    model = build_model(name, in_channels=channels, num_classes=7, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.rand(5, channels, size, size))
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()


def test_option_a_shortcuts_have_no_parameters_and_pad_with_zeros() -> None:
    model = CifarResNet(20)
    first_of_stage2 = model.layer2[0]
    assert sum(p.numel() for p in first_of_stage2.shortcut.parameters()) == 0
    x = torch.rand(2, 16, 8, 8)
    y = first_of_stage2.shortcut(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


def test_v2_projects_in_the_first_block_of_every_stage_only() -> None:
    model = CifarResNet(56, variant="v2")
    for stage in (model.layer1, model.layer2, model.layer3):
        blocks = list(stage)
        assert len(blocks) == 9
        assert isinstance(blocks[0].projection, nn.Conv2d)
        assert all(b.projection is None for b in blocks[1:])
    assert model.layer1[0].projection.in_channels == model.layer1[0].projection.out_channels == 16
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.momentum == pytest.approx(0.003) for bn in bns)


@pytest.mark.parametrize("depth", [0, 7, 9, 21, 56.0, True])
def test_refuses_depths_that_are_not_6n_plus_2(depth: object) -> None:
    with pytest.raises(ConfigError, match="depth must be 6n \\+ 2"):
        CifarResNet(depth)  # type: ignore[arg-type]


def test_refuses_unknown_names_and_variants() -> None:
    with pytest.raises(ConfigError, match=r"expected one of .*got 'resnet50'"):
        build_model("resnet50")
    with pytest.raises(ConfigError, match="variant must be 'a' or 'v2', got 'b'"):
        CifarResNet(20, variant="b")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="image_size must be even"):
        SmallCNN(image_size=7)


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    a = build_model("resnet20")
    torch.manual_seed(3)
    b = build_model("resnet20")
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name


def test_resnet20_trains_one_step_on_cpu() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20").train()
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient reached {missing}"
    opt.step()
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # Every parameter moved, and batch norm updated its running statistics.
    assert {n for n, _ in model.named_parameters()} <= set(changed)
    assert "bn1.running_mean" in changed


def test_resnet8_overfits_a_small_batch() -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", in_channels=1, image_size=8).train()
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]

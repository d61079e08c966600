"""OneDnnLinear: nn.Linear's values and gradients, the same bits at one and two threads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn

from sealfl.models.nn.gemm import ONEDNN, OneDnnLinear, linear

# (batch, in, out): the vfl wide-and-deep layers at the benchmark's batches, and an odd one.
SHAPES = [(256, 8192, 256), (32, 8192, 64), (256, 256, 64), (100, 128, 2), (7, 30, 16)]


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _step(
    layer: nn.Linear, x: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    layer.zero_grad(set_to_none=True)
    inputs = x.clone().requires_grad_(True)
    out = layer(inputs)
    out.backward(grad)
    assert inputs.grad is not None and layer.weight.grad is not None
    bias = None if layer.bias is None or layer.bias.grad is None else layer.bias.grad.clone()
    return out.detach(), inputs.grad, layer.weight.grad.clone(), bias


def _pair(fan_in: int, fan_out: int, bias: bool = True) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(fan_in * 31 + fan_out)
    fast = OneDnnLinear(fan_in, fan_out, bias=bias)
    plain = nn.Linear(fan_in, fan_out, bias=bias)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def test_torch_here_runs_the_onednn_path() -> None:
    # The speed-up and the thread checks below mean something only if the path is taken.
    assert ONEDNN


@pytest.mark.parametrize(("batch", "fan_in", "fan_out"), SHAPES)
def test_values_and_gradients_match_nn_linear(batch: int, fan_in: int, fan_out: int) -> None:
    fast, plain = _pair(fan_in, fan_out)
    x, grad = torch.randn(batch, fan_in), torch.randn(batch, fan_out)
    got, want = _step(fast, x, grad), _step(plain, x, grad)
    for a, b in zip(got, want, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))
    # the bias gradient is the same column sum, bit for bit
    assert got[3] is not None and torch.equal(got[3], grad.sum(0))


@pytest.mark.parametrize(("batch", "fan_in", "fan_out"), SHAPES)
def test_one_and_two_threads_give_the_same_bits(batch: int, fan_in: int, fan_out: int) -> None:
    # A split step (one thread per party) equals the centralised step (two threads) only if
    # every product is independent of the thread count.
    fast, _ = _pair(fan_in, fan_out)
    x, grad = torch.randn(batch, fan_in), torch.randn(batch, fan_out)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(_step(fast, x, grad))
    for a, b in zip(*results, strict=True):
        assert a is not None and b is not None and torch.equal(a, b)


def test_a_layer_without_bias_and_a_frozen_input() -> None:
    fast, plain = _pair(128, 2, bias=False)
    x = torch.randn(64, 128)  # no gradient wanted for the input
    out = fast(x)
    out.sum().backward()
    plain(x).sum().backward()
    assert fast.bias is None and fast.weight.grad is not None and plain.weight.grad is not None
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad)


def test_other_inputs_take_torchs_own_linear() -> None:
    # float64 and 3-D inputs are not for oneDNN's float32 inner product: F.linear, exactly.
    weight, bias = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    x = torch.randn(4, 16, dtype=torch.float64)
    assert torch.equal(linear(x, weight, bias), F.linear(x, weight, bias))
    w32, x3 = weight.float(), torch.randn(2, 4, 16)
    assert torch.equal(linear(x3, w32, None), F.linear(x3, w32, None))


def test_state_and_initialisation_are_nn_linears() -> None:
    # Parameter names, shapes and isinstance checks (initialisers, manifests) do not change.
    layer = OneDnnLinear(5, 3)
    assert isinstance(layer, nn.Linear)
    assert sorted(layer.state_dict()) == ["bias", "weight"]
    assert layer.weight.shape == (3, 5)

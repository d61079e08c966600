"""A linear layer whose three matrix products run on oneDNN: 2.3x faster on AMD CPUs.

torch sends a float32 ``nn.Linear`` on the CPU to MKL's ``sgemm``. MKL picks its kernels by CPU
vendor, and on AMD processors it takes a generic AVX2 path even where the CPU has AVX-512 (the
project's AMD EPYC VM: ``MKL_VERBOSE`` names no instruction set, and ``[256 x 8192] @ [8192 x
256]`` runs at 112 GFLOP/s on one core). oneDNN, which torch also ships, picks its JIT kernels by
instruction set instead: the same product takes 4.1 ms there against 9.5 ms in MKL, and the two
products of the backward pass likewise (4.1 and 4.2 against 9.5 and 9.6 ms). On Intel CPUs both
libraries run AVX-512 and this layer is about as fast as ``nn.Linear``.

:class:`OneDnnLinear` is an ``nn.Linear`` (same parameters, names, initialisation and state) whose
forward is one autograd function that computes ``y = x W^T + b`` and, in its backward,
``dx = dy W`` and ``dW = dy^T x`` with oneDNN's inner-product primitive
(``torch.ops.mkldnn._linear_pointwise``, the op torch's own compiler emits for CPU linear layers;
torch is pinned exactly, so this op is stable for us), and ``db`` as the column sum of ``dy``.

Its numbers differ from MKL's in the last bits (another summation order: relative difference
about 5e-7), and are the same at one and at two threads for the shapes of the vfl models, which
is what keeps a split step equal to the centralised step bit for bit
(``tests/models/test_models_gemm.py`` checks both). Inputs that are not 2-D float32 CPU tensors,
and a torch built without oneDNN, take ``F.linear``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn

__all__ = ["ONEDNN", "OneDnnLinear", "linear"]


def _inner_product() -> Any:
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a torch without the op
        return None


_PRODUCT = _inner_product()
ONEDNN: bool = _PRODUCT is not None
"""Whether this torch can run :func:`linear` on oneDNN."""


def _product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x @ w.T + b`` on oneDNN (``w`` is ``[out, in]``; strided views are fine)."""
    out: torch.Tensor = _PRODUCT(x, w, b, "none", [], "")
    return out


class _Linear(torch.autograd.Function):
    """``y = x W^T + b`` with every matrix product on oneDNN."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _product(x, weight, bias)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        # needs_input_grad is False for an absent bias, as for any input that is not a tensor
        need_x, need_w, need_b = ctx.needs_input_grad  # type: ignore[attr-defined]
        grad_x = _product(grad, weight.t(), None) if need_x else None
        grad_w = _product(grad.t(), x.t(), None) if need_w else None
        grad_b = grad.sum(0) if need_b else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, on oneDNN for 2-D float32 CPU inputs when torch has it."""
    if (
        ONEDNN
        and x.dim() == 2
        and x.dtype == weight.dtype == torch.float32
        and x.device.type == weight.device.type == "cpu"
    ):
        out: torch.Tensor = _Linear.apply(x, weight, bias)
        return out
    return F.linear(x, weight, bias)


class OneDnnLinear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear` (see the module docstring for why)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x W^T + b``."""
        return linear(x, self.weight, self.bias)

"""The two halves' networks: the reference's wide-and-deep model, and linear/MLP bottoms.

**wide-deep** (Fedlearner's ``example/wide_n_deep``, which cczoo runs). Each party has
``S = 512`` slots holding one id in ``0..100``; slot ``s`` has its own ``101 x 16`` embedding
table, and with one id per slot the reference's "mean" pooling is a lookup. All ``S`` tables
are one ``nn.Embedding(S * 101, 16)`` indexed with per-slot offsets ``s * 101``, and the
lookups are concatenated to ``E`` ``[B, S * 16 = 8192]``:

- follower: ``act1_f = relu(E_f @ W1f + b1f)``, ``W1f`` ``[8192, 64]``: the cut activation;
- leader: ``act2_l = relu(E_l @ W1l + b1l) @ W2 + b2`` (``[8192, 256]``, ``[256, 64]``),
  ``logits = concat(act2_l, act1_f) @ W3`` with ``W3`` ``[128, 2]`` and no bias; softmax
  cross-entropy.

Its linear layers are :class:`~sealfl.models.nn.gemm.OneDnnLinear`: the products of ``E @ W1``
dominate the step, and oneDNN runs them 2.3x faster than MKL on AMD CPUs.

**mlp** (FATE's hetero-NN breast benchmark): follower ``act = bottom_f(x_f)``, leader
``h = bottom_l(x_l)``, ``logits = top(agg(concat(h, act)))`` with ``Linear`` layers
``bottom: d -> k``, ``agg: 2k -> hidden``, ``top: hidden -> classes``; ReLU after the bottoms
and ``agg`` when ``activation = "relu"``, none in FATE's (linear) network.

Initialisation is drawn from the half's own ``torch.Generator`` (seeded by the caller from the
run seed and the role), in parameter order, so a half is the same whichever process builds it
and whatever else that process drew: ``"uniform"`` is uniform +-0.01 for embeddings and
weights with zero biases, as ``leader.py``; ``"torch"`` is torch's own (embeddings N(0, 1);
linear layers Kaiming-uniform with ``a = sqrt(5)`` and biases uniform +-1/sqrt(fan_in)).

The leader network separates ``tower`` (its own features to ``h``) from ``head`` (``h`` and the
follower's activation to logits), so the leader can compute the activation's gradient through
the head alone and send it before it backpropagates through its tower.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn

from sealfl.errors import ConfigError
from sealfl.fl.common.seeds import derive_seed
from sealfl.fl.vfl.settings import ModelSpec, Role
from sealfl.models.nn.gemm import OneDnnLinear

__all__ = [
    "LeaderNet",
    "MlpFollower",
    "MlpLeader",
    "WideDeepFollower",
    "WideDeepLeader",
    "build_follower",
    "build_leader",
    "features_to_tensor",
]


class _DenseLookup(torch.autograd.Function):
    """``weight[ids]`` whose backward is one ``index_add_``: 3x faster than torch's, same bits.

    ``nn.Embedding``'s dense backward on the CPU (``embedding_dense_backward``) adds the ``B * S``
    looked-up rows' gradients (131,072 rows of 16 at B = 256) into the zeroed table gradient one
    small add at a time: 5.9 ms a half per step on one core here, against 1.7 ms for
    ``index_add_`` (zeroing included), the largest item of the wide-and-deep step after the big
    matrix products and Adam. ``index_add_`` adds the same rows in the same order (ascending
    position in the batch, from zero), so the gradient is bit for bit the same, at any thread
    count (``tests/fl/vfl/test_model_halves.py`` checks it against ``nn.Embedding`` with many
    repeated ids and values across twelve orders of magnitude); it only drops the per-row
    overhead.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, ids: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        flat = ids.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.rows = weight.shape[0]  # type: ignore[attr-defined]
        return weight.index_select(0, flat).reshape(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[None, torch.Tensor]:
        (flat,) = ctx.saved_tensors  # type: ignore[attr-defined]
        rows = grad.reshape(flat.shape[0], grad.shape[-1])
        table = grad.new_zeros(ctx.rows, grad.shape[-1])  # type: ignore[attr-defined]
        return None, table.index_add_(0, flat, rows)


class _SlotEmbedding(nn.Module):
    """``S`` per-slot tables of ``vocab x dim`` as one embedding with offsets.

    With dense gradients the lookup is :class:`_DenseLookup` (``nn.Embedding``'s numbers, a
    faster backward); with sparse ones (plain SGD) it is ``nn.Embedding``'s own. The table stays
    an ``nn.Embedding`` either way, so the parameter's name and initialisation do not change.
    """

    def __init__(self, slots: int, vocab: int, dim: int, *, sparse: bool) -> None:
        super().__init__()
        self.slots = slots
        self.vocab = vocab
        self.table = nn.Embedding(slots * vocab, dim, sparse=sparse)
        self.offsets: torch.Tensor
        self.register_buffer(
            "offsets", torch.arange(slots, dtype=torch.int64) * vocab, persistent=False
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Return ``[B, slots * dim]`` for slot ids ``[B, slots]``."""
        slot_ids = ids + self.offsets
        out: torch.Tensor
        if self.table.sparse:
            out = self.table(slot_ids)
        else:
            out = _DenseLookup.apply(slot_ids, self.table.weight)
        return out.reshape(ids.shape[0], -1)


class WideDeepFollower(nn.Module):
    """The follower's wide-and-deep half: ``relu(E_f @ W1f + b1f)``."""

    def __init__(self, spec: ModelSpec, *, sparse: bool) -> None:
        super().__init__()
        self.embed = _SlotEmbedding(
            spec.follower_features, spec.vocab, spec.embed_dim, sparse=sparse
        )
        self.fc1 = OneDnnLinear(spec.follower_features * spec.embed_dim, spec.cut_width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Return the cut activation ``[B, k]`` for slot ids ``[B, S]``."""
        return F.relu(self.fc1(self.embed(ids)))


class LeaderNet(nn.Module):
    """A leader network: ``forward(x, act) = head(tower(x), act)``."""

    def tower(self, x: torch.Tensor) -> torch.Tensor:
        """Return the leader's own representation of its features."""
        raise NotImplementedError

    def head(self, h: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Return logits ``[B, classes]`` from the tower's output and the follower's activation."""
        raise NotImplementedError

    def head_parameters(self) -> list[nn.Parameter]:
        """Return the parameters the head uses (those updated before the tower's backward)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Return logits for the leader's features and the follower's activation."""
        return self.head(self.tower(x), act)


class WideDeepLeader(LeaderNet):
    """The leader's wide-and-deep half, with the reference's ``W3`` top (no bias)."""

    def __init__(self, spec: ModelSpec, *, sparse: bool) -> None:
        super().__init__()
        self.embed = _SlotEmbedding(spec.leader_features, spec.vocab, spec.embed_dim, sparse=sparse)
        self.fc1 = OneDnnLinear(spec.leader_features * spec.embed_dim, spec.hidden)
        self.fc2 = OneDnnLinear(spec.hidden, spec.cut_width)
        self.top = OneDnnLinear(2 * spec.cut_width, spec.classes, bias=False)

    def tower(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``act2_l = relu(E_l @ W1l + b1l) @ W2 + b2``."""
        return self.fc2(F.relu(self.fc1(self.embed(x))))

    def head(self, h: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Return ``concat(act2_l, act1_f) @ W3``."""
        return self.top(torch.cat([h, act], dim=1))

    def head_parameters(self) -> list[nn.Parameter]:
        """Return ``[W3]``."""
        return [p for name, p in self.top.named_parameters() if name == "weight"]


class MlpFollower(nn.Module):
    """The follower's dense bottom: ``Linear(d_f, k)``, ReLU if the spec says so."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.bottom = nn.Linear(spec.follower_features, spec.cut_width)
        self.relu = spec.activation == "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the cut activation ``[B, k]``."""
        out = self.bottom(x)
        return F.relu(out) if self.relu else out


class MlpLeader(LeaderNet):
    """The leader's dense bottom, aggregate layer and top."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.bottom = nn.Linear(spec.leader_features, spec.cut_width)
        self.agg = nn.Linear(2 * spec.cut_width, spec.hidden)
        self.top = nn.Linear(spec.hidden, spec.classes)
        self.relu = spec.activation == "relu"

    def tower(self, x: torch.Tensor) -> torch.Tensor:
        """Return the leader's bottom output."""
        out = self.bottom(x)
        return F.relu(out) if self.relu else out

    def head(self, h: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Return ``top(agg(concat(h, act)))``."""
        z = self.agg(torch.cat([h, act], dim=1))
        return self.top(F.relu(z) if self.relu else z)

    def head_parameters(self) -> list[nn.Parameter]:
        """Return the aggregate layer's and the top's parameters."""
        return [*self.agg.parameters(), *self.top.parameters()]


def _initialise(model: nn.Module, init: str, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                if init == "uniform":
                    nn.init.uniform_(module.weight, -0.01, 0.01, generator=generator)
                else:
                    nn.init.normal_(module.weight, 0.0, 1.0, generator=generator)
            elif isinstance(module, nn.Linear):
                if init == "uniform":
                    nn.init.uniform_(module.weight, -0.01, 0.01, generator=generator)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                else:
                    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                    if module.bias is not None:
                        bound = 1.0 / math.sqrt(module.weight.shape[1])
                        nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def _generator(seed: int, role: Role) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, "vfl", role, "init"))


def build_follower(spec: ModelSpec, seed: int, *, sparse: bool = False) -> nn.Module:
    """Return the follower's network, initialised from ``(seed, "follower")``.

    Parameters
    ----------
    spec
        The run's model.
    seed
        The run seed.
    sparse
        wide-deep: sparse embedding gradients (what plain SGD should use: the step then touches
        only the looked-up rows). Adam needs dense ones.
    """
    model: nn.Module = (
        WideDeepFollower(spec, sparse=sparse) if spec.kind == "wide-deep" else MlpFollower(spec)
    )
    _initialise(model, spec.init, _generator(seed, "follower"))
    return model


def build_leader(spec: ModelSpec, seed: int, *, sparse: bool = False) -> LeaderNet:
    """Return the leader's network, initialised from ``(seed, "leader")``.

    Parameters are as :func:`build_follower`'s.
    """
    model: LeaderNet = (
        WideDeepLeader(spec, sparse=sparse) if spec.kind == "wide-deep" else MlpLeader(spec)
    )
    _initialise(model, spec.init, _generator(seed, "leader"))
    return model


def features_to_tensor(spec: ModelSpec, role: Role, x: npt.NDArray[np.generic]) -> torch.Tensor:
    """Return one party's feature rows as the tensor its network takes, after checks.

    wide-deep: int64 slot ids, each in ``0..vocab-1``; mlp: float32 values.

    Raises
    ------
    ConfigError
        If ``x`` is not ``[B, features]`` for this role, is not numeric, or (wide-deep) holds a
        value that is not a slot id; the message names the role, row and column.
    """
    width = spec.leader_features if role == "leader" else spec.follower_features
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ConfigError(f"{role} features: expected [B, {width}], got {list(arr.shape)}")
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{role} features: expected numbers, got dtype {arr.dtype}")
    if spec.kind == "mlp":
        values = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if not torch.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(arr))[0]
            raise ConfigError(f"{role} features: row {row}, column {col} is not finite")
        return values
    ids = arr.astype(np.int64)
    bad = (ids < 0) | (ids >= spec.vocab) | (ids != arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(
            f"{role} features: row {row}, slot {col}: expected an id in 0..{spec.vocab - 1}, "
            f"got {arr[row, col].item()!r}"
        )
    return torch.from_numpy(ids)

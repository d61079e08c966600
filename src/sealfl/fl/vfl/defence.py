"""Noise on the gradient the leader returns, against label inference by the follower.

The gradient of the loss with respect to the follower's activation carries the labels: with two
classes and the reference's linear top, row ``i`` is ``delta_i * (W3_f[:, 0] - W3_f[:, 1])``, so
its *direction* is the label (the cosine attack of Li et al., ICLR 2022, arXiv 2102.08504), and
under class imbalance its *norm* is too. Two defences, both applied by the leader to the matrix
it is about to send and nothing else:

- ``max-norm`` (Li et al.'s heuristic, as Fedlearner's ``label_protection`` demo and SecretFlow's
  ``max_norm``): row ``i`` becomes ``g_i * (1 + sigma_i * z_i)`` with ``z_i ~ N(0, 1)`` and
  ``sigma_i = sqrt(max_j |g_j|^2 / |g_i|^2 - 1)``, so every row's expected squared norm equals the
  batch's largest and the noise lies along the row, flipping its sign often enough to blind the
  cosine attack. Zero rows stay zero. No parameter.
- ``gaussian``: i.i.d. ``N(0, sigma^2)`` added to every element (``sigma`` from the settings).

The noise of step ``s`` comes from ``numpy.random.default_rng(derive_seed(seed, "vfl",
"defence", s))``: a resumed run draws exactly the noise it drew before. Arithmetic is float64,
the result float32. numpy-only, so the leak report and the protocol need no torch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError
from sealfl.fl.common.seeds import derive_seed
from sealfl.fl.vfl.settings import DefenceSpec

__all__ = ["defend", "gaussian_noise", "max_norm_noise"]


def max_norm_noise(
    grad: npt.NDArray[np.floating], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Return ``grad`` ``[B, k]`` with max-norm noise along each row (see the module docstring)."""
    g = np.asarray(grad, dtype=np.float64)
    norms_sq = np.einsum("ij,ij->i", g, g)
    largest = float(norms_sq.max(initial=0.0))
    sigma = np.zeros_like(norms_sq)
    nonzero = norms_sq > 0
    sigma[nonzero] = np.sqrt(np.maximum(largest / norms_sq[nonzero] - 1.0, 0.0))
    z = rng.standard_normal(g.shape[0])
    return (g * (1.0 + sigma * z)[:, None]).astype(np.float32)


def gaussian_noise(
    grad: npt.NDArray[np.floating], sigma: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Return ``grad`` plus i.i.d. ``N(0, sigma^2)`` noise on every element."""
    g = np.asarray(grad, dtype=np.float64)
    return (g + rng.normal(0.0, sigma, size=g.shape)).astype(np.float32)


def defend(
    grad: npt.NDArray[np.floating], spec: DefenceSpec, *, seed: int, step: int
) -> npt.NDArray[np.float32]:
    """Return the gradient to send for ``step``: ``grad`` after the defence of ``spec``.

    Parameters
    ----------
    grad
        The leader's ``[B, k]`` gradient with respect to the follower's activation.
    spec
        The run's defence; ``"none"`` returns ``grad`` as float32 unchanged.
    seed, step
        The run seed and the step, which fix the noise.

    Raises
    ------
    ConfigError
        If ``grad`` is not a 2-D matrix.
    """
    if grad.ndim != 2:
        raise ConfigError(f"defence: expected a [B, k] gradient, got shape {list(grad.shape)}")
    if spec.kind == "none":
        return np.ascontiguousarray(grad, dtype=np.float32)
    rng = np.random.default_rng(derive_seed(seed, "vfl", "defence", step))
    if spec.kind == "max-norm":
        return max_norm_noise(grad, rng)
    return gaussian_noise(grad, spec.sigma, rng)

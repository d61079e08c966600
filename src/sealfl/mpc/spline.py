"""The sigmoid as a continuous piecewise-linear spline, in the integer form MPC evaluates.

Inside MPC the sigmoid is ``f(z) = c0 + sum_k [z >= t_k] * (da_k * z + db_k)``: each knot
``t_k`` adds a change of slope and intercept once a secure comparison says ``z`` is past it.
The spline is continuous, so a comparison that comes out wrong for ``z`` within a hair of a
knot (the comparisons run on a coarsened copy of ``z``) costs only ``|da_k| * hair``, never a
jump. Beyond the outer knots the spline is constant.

Every knot costs a secure comparison per row, so the spline uses as few as the error bound
allows. It does not interpolate: where the sigmoid is concave (``z > 0``) the spline's value
at each knot is raised by almost ``max_error``, where convex lowered, so the error swings
between ``-max_error`` and ``+max_error`` across a segment instead of from 0 to
``max_error``; each segment can then be about sqrt(2) times longer. Knots are placed greedily
outward from 0 (whose value stays 1/2, by symmetry), each segment as long as possible within
``max_error`` on a fine grid, and the tails start where the constant they take is within
``max_error`` of the sigmoid. The default 7e-4 gives 23 knots (5e-4 would give 29; the
interpolating spline needs 33 and 39 for the same bounds) and leaves room under the
workload's 1e-3 agreement target for the comparisons' rounding: a comparison is wrong only
for ``z`` within 2^-9 of a knot, which costs at most ``2^-9 * max |da_k|``, about 6e-5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

DEFAULT_MAX_ERROR = 7e-4
_GRID = 256  # points per segment at which the error is checked
_LIFT = 0.999  # knot values move by this fraction of max_error (a hair inside the bound)


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def _segment_error(lo: float, hi: float, value: Callable[[float], float]) -> float:
    z = np.linspace(lo, hi, _GRID)
    line = value(lo) + (value(hi) - value(lo)) * (z - lo) / (hi - lo)
    return float(np.max(np.abs(_sigmoid(z) - line)))


@dataclass(frozen=True)
class Spline:
    """A continuous piecewise-linear approximation of the sigmoid.

    Attributes
    ----------
    knots
        Increasing knot positions ``t_k``.
    slope_steps, intercept_steps
        ``da_k`` and ``db_k``: what crossing knot ``k`` adds to the slope and the intercept.
    base
        ``c0``, the value left of the first knot.
    """

    knots: npt.NDArray[np.float64]
    slope_steps: npt.NDArray[np.float64]
    intercept_steps: npt.NDArray[np.float64]
    base: float

    def __call__(self, z: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Evaluate the spline in floating point (the reference for the MPC evaluation)."""
        z = np.asarray(z, dtype=np.float64)
        past = (z[..., None] >= self.knots).astype(np.float64)
        terms = past * (self.slope_steps * z[..., None] + self.intercept_steps)
        return np.asarray(self.base + terms.sum(axis=-1), dtype=np.float64)


@cache
def sigmoid_spline(max_error: float = DEFAULT_MAX_ERROR) -> Spline:
    """Return the spline whose maximum distance from the sigmoid is at most ``max_error``."""
    lift = _LIFT * max_error

    def value(t: float) -> float:  # the spline's value at a knot t
        return 0.5 if t == 0 else float(_sigmoid(np.array(t))) + (lift if t > 0 else -lift)

    top = 1.0 - max_error - lift  # the last knot's sigmoid: its tail is then within max_error
    tail = float(np.log(top / (1.0 - top)))
    right = [0.0]
    while right[-1] < tail:
        lo = right[-1]
        step = 4.0
        while step > 1e-3 and _segment_error(lo, min(lo + step, tail), value) > max_error:
            step *= 0.97
        right.append(min(lo + step, tail))
    knots = np.array([-t for t in reversed(right[1:])] + right)
    values = np.array([value(t) for t in knots])
    slopes = np.diff(values) / np.diff(knots)  # slope on (t_k, t_{k+1})
    # Slope left of the first knot and right of the last is 0 (constant tails).
    seg_slopes = np.concatenate([[0.0], slopes, [0.0]])
    seg_intercepts = np.concatenate([[values[0]], values[:-1] - slopes * knots[:-1], [values[-1]]])
    return Spline(
        knots=knots,
        slope_steps=np.diff(seg_slopes),
        intercept_steps=np.diff(seg_intercepts),
        base=float(values[0]),
    )

"""The PS's arithmetic on flat buffers: screening an upload, FedAvg, FedAvgM and the reference.

Pure numpy, no torch and no transport, so it is tested on small arrays. Uploads are summed in
the order of the workers' ids, in float64, whatever order they arrived in: the average is then
the same bit for bit in a resumed run, where the updates of a round may arrive in another order.

Which positions of the buffer are trainable parameters (stepped by the server optimiser) and
which take L2 comes from masks made once from the model (:func:`.training.parameter_masks`);
the other positions, batch-norm running statistics, are always the plain weighted average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError
from sealfl.fl.hfl.settings import Aggregation, Settings

__all__ = ["ScreeningLimits", "ServerOptimizer", "Upload", "screen_upload"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Upload:
    """One accepted contribution to a round.

    Attributes
    ----------
    worker_id
        Who sent it (the summation order).
    weight
        Examples it was computed on.
    values
        The flat float32 buffer.
    """

    worker_id: int
    weight: int
    values: F32


@dataclass(frozen=True)
class ScreeningLimits:
    """What the PS accepts beyond shape and finiteness.

    Parameters
    ----------
    max_abs
        Largest magnitude of any value.
    max_relative_change
        For weight uploads: largest ``||upload - global|| / (||global|| + 1)``. A worker that
        trained honestly moves the model by a fraction of its norm in a round; an upload ten
        times the model away is garbage or an attack on the average.
    """

    max_abs: float = 1e4
    max_relative_change: float = 10.0


def _norm(x: npt.NDArray[np.float64]) -> float:
    """Return the L2 norm of ``x``, overwriting ``x`` (a scratch copy).

    Not ``np.linalg.norm``: it calls BLAS, whose worker threads (OpenBLAS's) then spin on every
    core for a while after each call. On a host the PS shares with workers, that measured 7 ms
    of CPU per norm of a ResNet-56 buffer plus ~80 ms/s of spinning, taken from the workers'
    training and from the round's hand-out.
    """
    np.square(x, out=x)
    return math.sqrt(float(x.sum()))


def screen_upload(
    values: F32,
    global_values: F32,
    settings: Settings,
    limits: ScreeningLimits = ScreeningLimits(),
) -> None:
    """Refuse an upload whose values are absurd (shape and NaN were checked on receipt).

    Raises
    ------
    ProtocolError
        Naming the bound, the limit and what arrived.
    """
    peak = max(float(values.max()), -float(values.min())) if values.size else 0.0
    if not math.isfinite(peak) or peak > limits.max_abs:
        at = int(np.argmax(np.abs(values)))
        raise ProtocolError(
            f"absurd value {values[at]!r} at buffer index {at}: every value must be within "
            f"+-{limits.max_abs:g}"
        )
    if settings.aggregation is Aggregation.REFERENCE:
        return  # a gradient, not weights: only the magnitude bound applies
    change = _norm(np.subtract(values, global_values, dtype=np.float64))
    scale = _norm(global_values.astype(np.float64)) + 1.0
    if change / scale > limits.max_relative_change:
        raise ProtocolError(
            f"absurd update: it moves the model by {change:.4g} (L2), "
            f"{change / scale:.3g}x the model's norm + 1; at most "
            f"{limits.max_relative_change:g}x is accepted"
        )


_BLOCK = 1 << 16
"""Values per block of a step, so that its float64 temporaries (512 KiB each) stay in the CPU's
cache: over whole ResNet-56 buffers (6.9 MB per temporary) the server-momentum steps took 13-16
ms here, by blocks 6-10 ms, with the same results bit for bit (every operation is elementwise)."""


def _weighted_mean(
    ordered: Sequence[Upload], total: float, block: slice
) -> npt.NDArray[np.float64]:
    """Return the weighted mean of ``block`` of the uploads, summed in the order given."""
    acc = np.zeros(len(ordered[0].values[block]), dtype=np.float64)
    for u in ordered:
        acc += np.multiply(u.values[block], u.weight / total, dtype=np.float64)
    return acc


class ServerOptimizer:
    """Turns a round's uploads into the next global model (see :class:`.settings.Aggregation`).

    Parameters
    ----------
    settings
        The federation's settings (aggregation, server learning rate and momentum, L2).
    trainable, decay
        Masks over the buffer: trainable parameters, and those that take L2.
    """

    def __init__(
        self,
        settings: Settings,
        trainable: npt.NDArray[np.bool_],
        decay: npt.NDArray[np.bool_],
    ) -> None:
        self.settings = settings
        self.trainable = trainable
        self.decay = decay
        self.momentum: F32 | None = None

    def step(self, version: int, global_values: F32, uploads: Sequence[Upload]) -> F32:
        """Return the model after the round that trained on ``version``.

        Raises
        ------
        ProtocolError
            If there are no uploads, or weights that sum to nothing.
        """
        if not uploads or sum(u.weight for u in uploads) <= 0:
            raise ProtocolError("a round needs at least one upload with examples")
        ordered = sorted(uploads, key=lambda u: u.worker_id)
        total = float(sum(u.weight for u in ordered))
        out = np.empty(global_values.shape, dtype=np.float32)
        s = self.settings
        if s.aggregation is Aggregation.FEDAVG:
            for start in range(0, out.size, _BLOCK):
                block = slice(start, start + _BLOCK)
                out[block] = _weighted_mean(ordered, total, block)
            return out
        rate = s.learning_rate_at(version, base=s.server_learning_rate)
        previous = self.momentum
        momentum = np.empty(global_values.shape, dtype=np.float32)
        for start in range(0, out.size, _BLOCK):
            block = slice(start, start + _BLOCK)
            mean = _weighted_mean(ordered, total, block)
            g = global_values[block].astype(np.float64)
            mask = self.trainable[block]
            if s.aggregation is Aggregation.FEDAVGM:
                direction = g - mean  # the pseudo-gradient
            else:
                direction = mean + s.weight_decay * g * self.decay[block]
            m = np.zeros_like(g) if previous is None else previous[block].astype(np.float64)
            m = np.where(mask, s.server_momentum * m + direction, 0.0)
            momentum[block] = m
            out[block] = np.where(mask, g - rate * m, mean)  # statistics: the plain average
        self.momentum = momentum
        return out

    # -- checkpoints ------------------------------------------------------------------------

    def state_bytes(self) -> bytes:
        """Return the momentum buffer as little-endian float32 bytes (empty if none yet)."""
        return b"" if self.momentum is None else self.momentum.astype("<f4").tobytes()

    def load_state(self, raw: bytes, numel: int) -> None:
        """Restore :meth:`state_bytes`.

        Raises
        ------
        ProtocolError
            If the length does not fit a buffer of ``numel`` values.
        """
        if not raw:
            self.momentum = None
            return
        if len(raw) != 4 * numel:
            raise ProtocolError(
                f"server optimiser state: expected {4 * numel} bytes, got {len(raw)}"
            )
        self.momentum = np.frombuffer(raw, dtype="<f4").astype(np.float32)

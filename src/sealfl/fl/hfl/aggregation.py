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
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if not math.isfinite(peak) or peak > limits.max_abs:
        at = int(np.argmax(np.abs(values)))
        raise ProtocolError(
            f"absurd value {values[at]!r} at buffer index {at}: every value must be within "
            f"+-{limits.max_abs:g}"
        )
    if settings.aggregation is Aggregation.REFERENCE:
        return  # a gradient, not weights: only the magnitude bound applies
    change = float(np.linalg.norm(values.astype(np.float64) - global_values))
    scale = float(np.linalg.norm(global_values.astype(np.float64))) + 1.0
    if change / scale > limits.max_relative_change:
        raise ProtocolError(
            f"absurd update: it moves the model by {change:.4g} (L2), "
            f"{change / scale:.3g}x the model's norm + 1; at most "
            f"{limits.max_relative_change:g}x is accepted"
        )


def _weighted_mean(uploads: Sequence[Upload]) -> npt.NDArray[np.float64]:
    ordered = sorted(uploads, key=lambda u: u.worker_id)
    total = float(sum(u.weight for u in ordered))
    acc = np.zeros(ordered[0].values.shape, dtype=np.float64)
    for u in ordered:
        acc += (u.weight / total) * u.values.astype(np.float64)
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
        mean = _weighted_mean(uploads)
        s = self.settings
        if s.aggregation is Aggregation.FEDAVG:
            return mean.astype(np.float32)
        g = global_values.astype(np.float64)
        mask = self.trainable
        if s.aggregation is Aggregation.FEDAVGM:
            direction = g - mean  # the pseudo-gradient
            rate = s.learning_rate_at(version, base=s.server_learning_rate)
        else:
            direction = mean + s.weight_decay * g * self.decay
            rate = s.learning_rate_at(version, base=s.server_learning_rate)
        momentum = np.zeros_like(g) if self.momentum is None else self.momentum.astype(np.float64)
        momentum = np.where(mask, s.server_momentum * momentum + direction, 0.0)
        self.momentum = momentum.astype(np.float32)
        out = np.where(mask, g - rate * momentum, mean)  # statistics: the plain average
        return out.astype(np.float32)

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

"""Fixed-point quantisation of fp32 vectors into the ring Z_2^32 and back.

Each coordinate is clipped to ``[-clip, clip]`` and mapped to an integer in
``[0, 2^bits - 1]`` by rounding to the nearest of ``2^bits`` evenly spaced levels, with
``bits = 32 - ceil(log2(workers))``. The sum of up to ``workers`` such integers is below
``workers * 2^bits <= 2^32``, so it never wraps in uint32 and the masked sum mod 2^32 is the
exact integer sum: the headroom is ``ceil(log2(workers))`` bits.

Error bound (per coordinate, for inputs inside the clip range): rounding moves each input by at
most half a step ``delta = 2 * clip / (2^bits - 1)``, so the dequantised sum of ``n`` inputs is
within ``n * delta / 2`` of the true sum (:meth:`Quantizer.sum_error_bound`). For clip 8 and 5
workers (bits 29) that is 5 * 2.98e-8 / 2 = 7.5e-8 per coordinate, below fp32's resolution
near 1. Inputs beyond the clip range are clipped first (their error is their excess).

Rounding is deterministic (no dithering), so a worker that re-sends its input after an
aggregator restart produces the same integers, and a resumed round is bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError

__all__ = ["Quantizer"]

U32 = npt.NDArray[np.uint32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Quantizer:
    """Clip-and-round into Z_2^32 with headroom for summing ``workers`` vectors.

    Attributes
    ----------
    clip
        Inputs are clipped to ``[-clip, clip]``; positive and finite.
    workers
        The most vectors that will be summed (the round's worker count).
    """

    clip: float
    workers: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"secagg clip: expected a positive finite number, got {self.clip}")
        if not 1 <= self.workers <= 2**16:
            raise ConfigError(f"secagg workers: expected 1..65536, got {self.workers}")

    @property
    def bits(self) -> int:
        """Bits per quantised input: 32 minus the headroom for the sum."""
        return 32 - math.ceil(math.log2(self.workers)) if self.workers > 1 else 32

    @property
    def step(self) -> float:
        """Distance between adjacent quantisation levels."""
        return 2.0 * self.clip / float(2**self.bits - 1)

    def sum_error_bound(self, count: int) -> float:
        """Largest absolute error per coordinate of a dequantised sum of ``count`` inputs."""
        return count * self.step / 2.0

    def quantize(self, values: npt.NDArray[np.floating]) -> U32:
        """Clip and round a vector into ``[0, 2^bits - 1]`` (uint32)."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ProtocolError("secagg input: expected finite values, got NaN or infinity")
        levels = float(2**self.bits - 1)
        scaled = (np.clip(x, -self.clip, self.clip) + self.clip) * (levels / (2.0 * self.clip))
        return np.rint(scaled).astype(np.uint32)

    def dequantize_sum(self, total: U32, count: int) -> F64:
        """Map the integer sum of ``count`` quantised inputs back to the sum of the inputs."""
        if not 1 <= count <= self.workers:
            raise ProtocolError(f"secagg sum count: expected 1..{self.workers}, got {count}")
        return total.astype(np.float64) * self.step - count * self.clip

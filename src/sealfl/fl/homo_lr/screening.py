"""The PS's check of each worker's decrypted update, before it enters the average.

A vector's header declares a bound on its plaintexts, but that bound is only the submitter's
word: a well-formed submission can hold ``1e30``. Only the PS can see a plaintext, and only
inside its enclave, so it decrypts every submission there and asks an :class:`UpdateCheck`
whether the values may be used. A failing update is left out of that iteration's average with
the reason recorded, and the round goes on with the others: one party can spoil its own
contribution, never the federation's run (:mod:`.rounds` keeps the book).

The check is a plain function of the decrypted values, so a workload with other needs (hfl's
norm bounds, say) passes its own.

Hazard: the reason names decrypted values, so it goes to the PS's log and metrics only. What
the worker is told (:data:`PUBLIC_REASON`) must not carry a value: a worker that could read
back a decryption of whatever it submitted would have a decryption oracle for the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sealfl.fl.homo_lr.algorithm import FloatArray


class UpdateCheck(Protocol):
    """Decide whether a decrypted update may enter the average."""

    def __call__(self, values: FloatArray) -> str | None:
        """Return ``None`` to accept ``values``, or the reason to drop them (for the PS's log)."""
        ...


@dataclass(frozen=True)
class MagnitudeBound:
    """Accept finite values below ``2^bits`` in magnitude.

    Parameters
    ----------
    bits
        The bound's exponent. homo-lr uses the range the PS re-encrypts the model at
        (:data:`~sealfl.fl.homo_lr.encrypted.WEIGHT_INTEGER_BITS`): when every update lies in
        it, so does their average, and the refresh can never fail because of one worker.
    """

    bits: int

    @property
    def limit(self) -> float:
        """The bound, ``2^bits``."""
        return math.ldexp(1.0, self.bits)

    def describe(self) -> str:
        """Return the bound in words, for messages."""
        return f"|w| < 2^{self.bits} ({self.limit:g})"

    def __call__(self, values: FloatArray) -> str | None:
        """Return why ``values`` are unusable, or ``None``."""
        array = np.asarray(values, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            i = int(bad[0])
            return f"entry {i} decrypts to {array[i]} (not a finite number)"
        if array.size == 0:
            return None
        i = int(np.argmax(np.abs(array)))
        if abs(array[i]) >= self.limit:
            return (
                f"entry {i} decrypts to {array[i]:.3g}, beyond the protocol's bound "
                f"{self.describe()}"
            )
        return None


PUBLIC_REASON = (
    "its decrypted value failed the PS's check (outside the protocol's bound, or not a finite "
    "number)"
)
"""What a worker is told about its dropped update: no value (see the module's hazard note)."""

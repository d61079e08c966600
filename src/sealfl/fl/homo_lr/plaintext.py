"""The whole federation computed in plaintext: the yardstick the encrypted run must match."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sealfl.fl.homo_lr.algorithm import (
    FloatArray,
    Hyperparameters,
    average,
    initial_weights,
    local_update,
)


@dataclass(frozen=True)
class IterationResult:
    """The averaged model after one iteration."""

    iteration: int
    weights: FloatArray


def train_plaintext(
    parties: Sequence[tuple[FloatArray, FloatArray]], hp: Hyperparameters
) -> Iterator[IterationResult]:
    """Yield the averaged weights after each iteration of a plaintext federation.

    Parameters
    ----------
    parties
        Per worker, ``(X1, y)`` with the bias column already prepended.
    hp
        Shared settings; ``hp.iterations`` results are yielded.
    """
    w = initial_weights(parties[0][0].shape[1] - 1)
    for t in range(hp.iterations):
        eta = hp.step_size(t)
        w = average([local_update(w, X1, y, eta=eta, alpha=hp.alpha) for X1, y in parties])
        yield IterationResult(iteration=t, weights=w)

"""A worker's training data, checked before it takes a seat.

Data the protocol cannot carry would otherwise surface only after the worker joined: as an
encoding error naming neither file nor column, while the federation waits out a round deadline
for it. Two checks, at the largest step size the settings use (the first iteration's):

- every entry of the step matrix ``A`` (:func:`~sealfl.fl.homo_lr.algorithm.affine_from_gram`)
  must be finite and encodable (:data:`~sealfl.fl.homo_lr.encrypted.MATRIX_ENTRY_BITS`);
- the first update, from the initial weights, must be finite and within the bound the PS's
  check accepts (:data:`~sealfl.fl.homo_lr.server.WEIGHT_BOUND_BITS`): else the PS would drop
  every round of this worker.

A failure names the file and the column responsible (the one whose values blow the entry up)
and the row holding its largest value.
"""

from __future__ import annotations

import math
import os

import numpy as np

from sealfl.data import Dataset
from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import (
    Hyperparameters,
    affine_from_gram,
    gram_statistics,
    initial_weights,
    with_bias,
)
from sealfl.fl.homo_lr.encrypted import MATRIX_ENTRY_BITS
from sealfl.fl.homo_lr.server import WEIGHT_BOUND_BITS


def check_training_data(data: Dataset, source: str | os.PathLike[str], hp: Hyperparameters) -> None:
    """Refuse data whose training step this protocol cannot encode, naming file and column.

    Raises
    ------
    ConfigError
        ``{source}: column 'x3': values up to 1e+300 (row id 17) ...``.
    """
    X1 = with_bias(data.X)
    eta = hp.step_size(0)
    with np.errstate(over="ignore", invalid="ignore"):
        G, c, m = gram_statistics(X1, data.labels().astype(np.float64))
        A, b = affine_from_gram(G, c, m, eta=eta, alpha=hp.alpha)
        first = A @ initial_weights(data.n_features) + b
    magnitude = np.where(np.isfinite(A), np.abs(A), np.inf)
    i, j = np.unravel_index(int(np.argmax(magnitude)), A.shape)
    if magnitude[i, j] >= math.ldexp(1.0, MATRIX_ENTRY_BITS):
        column = _culprit(X1, (int(i), int(j)))
        why = (
            f"its step matrix would hold {A[i, j]:.3g} at learning rate {eta:g}, beyond the "
            f"|entry| < 2^{MATRIX_ENTRY_BITS} the protocol's fixed point encodes"
        )
        raise _error(data, source, column, why)
    size = np.where(np.isfinite(first), np.abs(first), np.inf)
    k = int(np.argmax(size))
    if size[k] >= math.ldexp(1.0, WEIGHT_BOUND_BITS):
        column = _culprit(X1, (k,))
        why = (
            f"its first update would reach {first[k]:.3g} at learning rate {eta:g}, beyond the "
            f"protocol's bound |w| < 2^{WEIGHT_BOUND_BITS}, so the PS would drop every round"
        )
        raise _error(data, source, column, why)


def _culprit(X1: np.ndarray, indices: tuple[int, ...]) -> int:
    """Return the feature column (0-based, no bias) most to blame for an entry at ``indices``.

    An entry of ``XᵀX`` or of the update in row/column ``k`` grows with column ``k``'s values;
    the bias (index 0) grows with none, so then the column with the largest value is named.
    """
    peaks = np.max(np.abs(X1), axis=0)
    candidates = [k for k in indices if k > 0] or list(range(1, X1.shape[1]))
    return max(candidates, key=lambda k: peaks[k]) - 1


def _error(data: Dataset, source: str | os.PathLike[str], column: int, why: str) -> ConfigError:
    values = np.abs(data.X[:, column])
    row = int(np.argmax(values))
    return ConfigError(
        f"{source}: column {data.feature_names[column]!r}: values up to "
        f"{data.X[row, column]:.3g} (row id {int(data.ids[row])}) make this worker's training "
        f"step unusable ({why}); rescale the column (z-score it, for example) before training"
    )

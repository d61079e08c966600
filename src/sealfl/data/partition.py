"""Splitting one data set among workers: IID, or label-skewed by a Dirichlet distribution.

Federated results depend on how the data were split, so a split is a value with its recipe
attached (:class:`Partition`: method, seed, alpha), and the same recipe on the same labels gives
the same split on any machine (numpy's PCG64 generator, drawn in a fixed order).

``iid``
    A random permutation cut into near-equal parts: every worker sees every class in about the
    data set's proportions.
``dirichlet``
    Label skew as in Hsu et al. 2019 ("Measuring the effects of non-identical data
    distribution"), the usual FL benchmark split: for each class, the share each worker gets is
    drawn from Dirichlet(alpha, ..., alpha), and that class's examples are dealt out in those
    proportions. Small alpha (0.1-0.5) gives workers a few dominant classes; large alpha tends to
    IID. If a draw leaves a worker with fewer than ``min_size`` examples it is redrawn (from the
    same generator, so still reproducible), as NIID-Bench does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError

__all__ = ["Partition", "partition_dirichlet", "partition_iid"]

Method = Literal["iid", "dirichlet"]

_MAX_DRAWS = 1000


@dataclass(frozen=True)
class Partition:
    """Which rows each worker gets, and how that was decided.

    Parameters
    ----------
    method
        ``"iid"`` or ``"dirichlet"``.
    seed
        Seed of the generator that made the split.
    alpha
        Dirichlet concentration (``None`` for IID).
    indices
        One sorted ``int64`` array of row numbers per worker; disjoint, and together every row.
    """

    method: Method
    seed: int
    alpha: float | None
    indices: tuple[npt.NDArray[np.int64], ...]

    @property
    def num_workers(self) -> int:
        """Number of shards."""
        return len(self.indices)

    def sizes(self) -> list[int]:
        """Examples per worker."""
        return [int(ix.size) for ix in self.indices]

    def class_counts(
        self, labels: npt.NDArray[np.int64], num_classes: int
    ) -> npt.NDArray[np.int64]:
        """Return a ``(workers, classes)`` table of example counts."""
        return np.stack([np.bincount(labels[ix], minlength=num_classes) for ix in self.indices])

    def describe(self) -> dict[str, Any]:
        """Return the recipe and the sizes as JSON-ready values (for logs and shard metadata)."""
        return {
            "method": self.method,
            "seed": self.seed,
            "alpha": self.alpha,
            "num_workers": self.num_workers,
            "sizes": self.sizes(),
        }


def _check_common(n: int, num_workers: int, seed: int) -> None:
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ConfigError(f"partition: workers must be a positive integer, got {num_workers!r}")
    if num_workers > n:
        raise ConfigError(f"partition: {num_workers} workers for only {n} examples")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"partition: seed must be a non-negative integer, got {seed!r}")


def _labels(labels: npt.ArrayLike) -> npt.NDArray[np.int64]:
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and (y.dtype.kind not in "iu" or int(y.min()) < 0)):
        raise ConfigError(
            f"partition: labels must be a 1-D array of non-negative integers, got "
            f"{y.dtype} {list(y.shape)}"
        )
    return y.astype(np.int64, copy=False)


def partition_iid(labels: npt.ArrayLike, num_workers: int, *, seed: int) -> Partition:
    """Shuffle the rows and cut them into ``num_workers`` near-equal shards.

    Parameters
    ----------
    labels
        The data set's labels (only their count is used; passed for symmetry with
        :func:`partition_dirichlet`).
    num_workers
        Number of shards.
    seed
        Generator seed, recorded in the result.

    Raises
    ------
    ConfigError
        If there are fewer rows than workers, or an argument is out of range.
    """
    y = _labels(labels)
    _check_common(y.size, num_workers, seed)
    order = np.random.default_rng(seed).permutation(y.size)
    parts = np.array_split(order, num_workers)
    return Partition("iid", seed, None, tuple(np.sort(p).astype(np.int64) for p in parts))


def partition_dirichlet(
    labels: npt.ArrayLike,
    num_workers: int,
    *,
    alpha: float,
    seed: int,
    min_size: int = 10,
) -> Partition:
    """Deal each class out among workers in Dirichlet(alpha)-distributed proportions.

    Parameters
    ----------
    labels
        The data set's labels.
    num_workers
        Number of shards.
    alpha
        Concentration: > 0; smaller is more skewed.
    seed
        Generator seed, recorded in the result.
    min_size
        Redraw until every worker has at least this many examples (at most 1,000 draws).

    Raises
    ------
    ConfigError
        If an argument is out of range, or no draw within 1,000 gives every worker
        ``min_size`` examples (lower ``min_size`` or raise ``alpha``).
    """
    y = _labels(labels)
    _check_common(y.size, num_workers, seed)
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"partition: alpha must be a positive number, got {alpha!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise ConfigError(f"partition: min_size must be a non-negative integer, got {min_size!r}")
    if min_size * num_workers > y.size:
        raise ConfigError(
            f"partition: {num_workers} workers x min_size {min_size} exceeds {y.size} examples"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(_MAX_DRAWS):
        shards: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(num_workers)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(num_workers, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * rows.size).astype(np.int64)
            for w, part in enumerate(np.split(rows, cuts)):
                shards[w].append(part)
        indices = tuple(np.sort(np.concatenate(s)).astype(np.int64) for s in shards)
        if min(ix.size for ix in indices) >= min_size:
            return Partition("dirichlet", seed, float(alpha), indices)
    raise ConfigError(
        f"partition: no Dirichlet({alpha}) draw in {_MAX_DRAWS} gave each of {num_workers} "
        f"workers at least {min_size} examples; lower min_size or raise alpha"
    )

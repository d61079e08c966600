"""Which aligned rows each step trains on, computed by each party from the settings alone.

Both parties hold their rows in the same aligned order (the PSI's), so agreeing on a step's
batch is agreeing on a list of row indices. Nothing about batches crosses the wire: each side
computes :meth:`BatchPlan.rows` itself from the run seed, and a resumed party jumps straight to
its step. Epoch ``e`` is the permutation of ``numpy.random.default_rng(derive_seed(seed, "vfl",
"order", e))``. The last partial batch of every epoch is dropped, as in the reference (2,000
rows at batch 32: 62 steps per epoch, 124 in two), unless the settings keep it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError
from sealfl.fl.common.seeds import derive_seed
from sealfl.fl.vfl.settings import TrainSpec

__all__ = ["BatchPlan"]


class BatchPlan:
    """The batches of a run: ``steps`` steps, each ``batch_size`` row indices.

    Parameters
    ----------
    n_rows
        Aligned rows (at least ``batch_size``).
    batch_size, epochs, seed
        As in :class:`~sealfl.fl.vfl.settings.TrainSpec`.
    drop_last
        Drop each epoch's last partial batch (the reference), or train on it as a smaller
        batch (every row every epoch, as FATE's and torch's loaders).

    Raises
    ------
    ConfigError
        If there are fewer rows than one batch.
    """

    def __init__(
        self, n_rows: int, *, batch_size: int, epochs: int, seed: int, drop_last: bool = True
    ) -> None:
        for what, value in (("n_rows", n_rows), ("batch_size", batch_size), ("epochs", epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"batch plan: {what} must be a positive integer, got {value!r}")
        if n_rows < batch_size:
            raise ConfigError(
                f"batch plan: {n_rows} aligned rows are fewer than one batch of {batch_size}"
            )
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.drop_last = drop_last
        self.steps_per_epoch = n_rows // batch_size if drop_last else -(-n_rows // batch_size)
        self.steps = self.steps_per_epoch * epochs
        self._order = lru_cache(maxsize=2)(self._epoch_order)

    @classmethod
    def for_run(cls, train: TrainSpec, n_rows: int) -> BatchPlan:
        """Return the plan of a run's training settings over ``n_rows`` aligned rows."""
        return cls(
            n_rows,
            batch_size=train.batch_size,
            epochs=train.epochs,
            seed=train.seed,
            drop_last=train.drop_last,
        )

    def __repr__(self) -> str:
        return (
            f"BatchPlan(n_rows={self.n_rows}, batch_size={self.batch_size}, "
            f"epochs={self.epochs}, steps={self.steps})"
        )

    def _epoch_order(self, epoch: int) -> npt.NDArray[np.int64]:
        rng = np.random.default_rng(derive_seed(self.seed, "vfl", "order", epoch))
        order = rng.permutation(self.n_rows).astype(np.int64)
        order.setflags(write=False)
        return order

    def _check(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < self.steps:
            raise ConfigError(f"batch plan: step must be in [0, {self.steps}), got {step!r}")

    def epoch_of(self, step: int) -> int:
        """Return the epoch (from 0) that ``step`` belongs to."""
        self._check(step)
        return step // self.steps_per_epoch

    def rows(self, step: int) -> npt.NDArray[np.int64]:
        """Return the aligned row indices of ``step`` (read-only int64).

        ``batch_size`` of them, except in the last step of an epoch when ``drop_last`` is off.
        """
        self._check(step)
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.batch_size
        return self._order(epoch)[start : min(start + self.batch_size, self.n_rows)]

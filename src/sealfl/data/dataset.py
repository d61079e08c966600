"""The one in-memory shape every loader returns: ids, a feature matrix, labels, column names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """Rows of one party's data, in file order.

    Parameters
    ----------
    ids
        Row identifiers (``int64``, shape ``(n,)``). Federations align and audit rows by id, so
        ids travel with the rows rather than being implied by position.
    X
        Features, ``float64``, shape ``(n, d)``.
    y
        Labels, ``int64``, shape ``(n,)``, or ``None`` for a party without labels (the passive
        party of a vertical split).
    feature_names
        Column names of ``X`` in order (``x0``, ``x1`` ... in FATE's files).

    Raises
    ------
    ConfigError
        If the shapes disagree (a loader bug or a hand-built dataset that cannot be used).
    """

    ids: npt.NDArray[np.int64]
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64] | None
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.ids.shape[0]
        if self.X.ndim != 2 or self.X.shape[0] != n:
            raise ConfigError(f"Dataset: X must have shape ({n}, d), got {self.X.shape}")
        if self.X.shape[1] != len(self.feature_names):
            raise ConfigError(
                f"Dataset: {len(self.feature_names)} feature names for {self.X.shape[1]} columns"
            )
        if self.y is not None and self.y.shape != (n,):
            raise ConfigError(f"Dataset: y must have shape ({n},), got {self.y.shape}")

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.ids.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns (without the id and label)."""
        return int(self.X.shape[1])

    def labels(self) -> npt.NDArray[np.int64]:
        """Return ``y``, raising if this party holds no labels.

        Raises
        ------
        ConfigError
            If the dataset was loaded without a label column.
        """
        if self.y is None:
            raise ConfigError("this dataset has no label column 'y' (a party without labels)")
        return self.y

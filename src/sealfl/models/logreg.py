"""Logistic regression in numpy: a dense layer without bias, then a sigmoid.

This is the model served by the private-inference workload (:mod:`sealfl.fl.infer`): it is
kept bias-free on purpose, because the reference model it reproduces has none, and because a
bias-free logit ``X @ w`` is a single matrix product, the operation the MPC input-owner
protocol is built around. Training is full-batch or mini-batch Adam on the mean binary
cross-entropy; everything is deterministic given ``seed``.

The model is saved as an ``.npz`` archive read back with ``allow_pickle=False``: a file written
by another party is data, never code.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sealfl._files import write_atomic
from sealfl.errors import ConfigError

FORMAT = "sealfl-logreg-v1"
"""Format tag stored in every saved model, checked on load."""

FloatArray = npt.NDArray[np.float64]


def sigmoid(z: npt.ArrayLike) -> FloatArray:
    """Return ``1 / (1 + exp(-z))`` without overflow warnings for large ``|z|``."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def binary_cross_entropy(p: FloatArray, y: npt.ArrayLike, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy of probabilities ``p`` against labels ``y`` in {0, 1}."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of Adam on binary cross-entropy.

    Attributes
    ----------
    epochs
        Passes over the training data.
    learning_rate, beta1, beta2, eps
        Adam's step size and moment decay rates (Kingma and Ba's defaults for the last three).
    batch_size
        Rows per step; ``0`` means full batch.
    l2
        Ridge penalty added to the loss (``l2/2 * |w|^2``); keeps weights small, which also
        keeps the fixed-point logit of the MPC mode far from its range limits.
    seed
        Seeds the initial weights and the shuffling, so training is reproducible.
    """

    epochs: int = 200
    learning_rate: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch_size: int = 0
    l2: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be 0 (full batch) or more, got {self.batch_size}")
        if self.l2 < 0:
            raise ConfigError(f"l2 must be non-negative, got {self.l2}")


class LogisticRegression:
    """A bias-free logistic-regression model ``p = sigmoid(X @ w)``.

    Parameters
    ----------
    weights
        The weight vector, one entry per feature; must be finite.
    """

    def __init__(self, weights: npt.ArrayLike) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ConfigError(f"weights must be a non-empty vector, got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ConfigError("weights must be finite, got NaN or infinity")
        self._w = w.copy()
        self._w.setflags(write=False)

    @property
    def weights(self) -> FloatArray:
        """The weight vector (read-only view)."""
        return self._w

    @property
    def n_features(self) -> int:
        """Number of input features the model expects."""
        return int(self._w.size)

    def check_input(self, X: npt.ArrayLike) -> FloatArray:
        """Return ``X`` as a float64 matrix, or raise naming the expected and received shape."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ConfigError(f"input must have shape (rows, {self.n_features}), got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ConfigError("input must be finite, got NaN or infinity")
        return X

    def logits(self, X: npt.ArrayLike) -> FloatArray:
        """Return ``X @ w``, the logit of every row."""
        return self.check_input(X) @ self._w

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """Return the probability of class 1 for every row."""
        return sigmoid(self.logits(X))

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Return the predicted label (1 when the logit is non-negative) of every row."""
        return (self.logits(X) >= 0).astype(np.int64)

    @classmethod
    def fit(
        cls, X: npt.ArrayLike, y: npt.ArrayLike, config: TrainConfig | None = None
    ) -> tuple[LogisticRegression, list[float]]:
        """Train with Adam on the mean binary cross-entropy.

        Returns
        -------
        tuple
            The model and the training loss after each epoch (for progress display).
        """
        cfg = config or TrainConfig()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ConfigError(f"training data must be a non-empty matrix, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ConfigError(f"labels must have shape ({X.shape[0]},), got {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ConfigError("labels must be 0 or 1")
        rng = np.random.default_rng(cfg.seed)
        n, d = X.shape
        w: FloatArray = np.asarray(rng.normal(0.0, 0.01, size=d), dtype=np.float64)
        m = np.zeros(d)
        v = np.zeros(d)
        step = 0
        batch = n if cfg.batch_size == 0 else min(cfg.batch_size, n)
        losses: list[float] = []
        for _ in range(cfg.epochs):
            order = rng.permutation(n) if batch < n else np.arange(n)
            for start in range(0, n, batch):
                rows = order[start : start + batch]
                grad = gradient(w, X[rows], y[rows], cfg.l2)
                step += 1
                m = cfg.beta1 * m + (1 - cfg.beta1) * grad
                v = cfg.beta2 * v + (1 - cfg.beta2) * grad**2
                m_hat = m / (1 - cfg.beta1**step)
                v_hat = v / (1 - cfg.beta2**step)
                w = w - cfg.learning_rate * m_hat / (np.sqrt(v_hat) + cfg.eps)
            losses.append(binary_cross_entropy(sigmoid(X @ w), y) + 0.5 * cfg.l2 * float(w @ w))
        return cls(w), losses

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as an ``.npz`` archive (no pickled objects) and return its path.

        The file is replaced atomically (:func:`sealfl._files.write_atomic`), so a reader never
        sees half a model.

        Raises
        ------
        ConfigError
            If the file cannot be written.
        """
        out = Path(path)
        write_atomic(out, self.to_bytes(), mode=0o644)
        return out

    def to_bytes(self) -> bytes:
        """Return the model as ``.npz`` bytes, e.g. to seal them."""
        buf = io.BytesIO()
        np.savez(buf, format=np.array(FORMAT), weights=self._w)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model bytes") -> LogisticRegression:
        """Read a model written by :meth:`to_bytes` or :meth:`save`, validating every field."""
        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ConfigError(
                    f"{source}: not a sealfl model archive (a single .npy array, expected an "
                    "archive of 'format' and 'weights')"
                )
            with loaded as archive:
                names = set(archive.files)
                if names != {"format", "weights"}:
                    raise ConfigError(
                        f"{source}: expected arrays ['format', 'weights'], got {sorted(names)}"
                    )
                tag = str(archive["format"])
                weights = archive["weights"]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ConfigError(f"{source}: not a sealfl model archive ({exc})") from exc
        if tag != FORMAT:
            raise ConfigError(f"{source}: expected format {FORMAT!r}, got {tag!r}")
        if weights.dtype != np.float64:
            raise ConfigError(f"{source}: weights must be float64, got {weights.dtype}")
        try:
            return cls(weights)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LogisticRegression:
        """Read a model written by :meth:`save`, validating every field."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read model file {p}: {exc.strerror}") from exc
        return cls.from_bytes(data, source=str(p))


def gradient(w: FloatArray, X: FloatArray, y: FloatArray, l2: float = 0.0) -> FloatArray:
    """Gradient of the mean binary cross-entropy (plus ``l2/2 |w|^2``) with respect to ``w``.

    A pure function so that it can be checked against finite differences.
    """
    p = sigmoid(X @ w)
    return X.T @ (p - y) / X.shape[0] + l2 * w

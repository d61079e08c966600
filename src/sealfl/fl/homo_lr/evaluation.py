"""Accuracy and log-loss of a decrypted model, with the exact sigmoid (what the PS reports).

Training uses the Taylor sigmoid; evaluation uses the exact one, as the reference does:
accuracy of ``σ(z) > 0.5`` (that is, ``z > 0``) and the mean log-loss
``−mean(y·log σ(z) + (1 − y)·log(1 − σ(z)))``. With these two definitions the reference settings
reproduce the published ``iter: 340  acc: 0.930  loss: 0.297``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sealfl.fl.homo_lr.algorithm import FloatArray


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one labelled set."""

    accuracy: float
    loss: float


def evaluate(w: FloatArray, X1: FloatArray, y: FloatArray) -> Evaluation:
    """Score weights ``w`` on features ``X1`` (bias column included) against labels ``y``.

    The log-loss is computed as ``log(1 + e^{∓z})`` with ``logaddexp``, so a confident wrong
    prediction gives a large finite loss rather than ``inf``.
    """
    z = X1 @ w
    yf = np.asarray(y, dtype=np.float64)
    accuracy = float(np.mean((z > 0) == (yf > 0.5)))
    loss = float(np.mean(yf * np.logaddexp(0.0, -z) + (1.0 - yf) * np.logaddexp(0.0, z)))
    return Evaluation(accuracy=accuracy, loss=loss)


def format_iteration(iteration: int, ev: Evaluation) -> str:
    """Return the progress line the reference prints: ``iter: {i}  acc: {acc}  loss: {loss}``."""
    return f"iter: {iteration}  acc: {ev.accuracy:.3f}  loss: {ev.loss:.3f}"

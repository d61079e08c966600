"""How much of the labels the returned gradients give away, measured by the leader on its own run.

The follower sees the gradient ``g_i`` of every row it contributed. Two attacks from Li et al.
("Label Leakage and Protection in Two-party Split Learning", ICLR 2022) turn that into a label
score; the leader, which holds the true labels, runs both on exactly what it sends and reports
their ROC AUC, so every run states its own leak:

- **norm**: score ``|g_i|``. Strong under class imbalance (the minority class has the larger
  gradients).
- **cosine** (direction): the attacker knows the label of one row of the batch (here the first)
  and scores every other row by its cosine to that row's gradient, sign-flipped when the known
  row is negative. With two classes and a linear top the raw gradient's direction *is* the
  label, so this reaches 1.0 without a defence.

Scores are only compared within a batch: gradients shrink as training proceeds, and an attacker
ranks what it receives together. The reported AUC is the Mann-Whitney statistic pooled over the
positive/negative pairs of every batch (the pair-weighted mean of the per-batch AUCs), which
:class:`LeakMeter` accumulates in constant memory, however long the run. 0.5 is no leak; below
0.5 the score points the wrong way, which an attacker who knows it simply flips, so
:attr:`LeakReport.leak` reports ``max(auc, 1 - auc)`` over both attacks.

numpy-only: the protocol layer and reports use it without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError

__all__ = ["LeakMeter", "LeakReport", "binary_auc", "mann_whitney"]


def mann_whitney(
    scores: npt.NDArray[np.floating], positive: npt.NDArray[np.bool_]
) -> tuple[float, int]:
    """Return ``(U, pairs)``: positive/negative pairs where the positive scores higher, and all.

    Ties count one half, so ``U / pairs`` is the ROC AUC (scikit-learn's ``roc_auc_score``
    gives the same value).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(positive, dtype=bool).reshape(-1)
    if s.shape != pos.shape:
        raise ConfigError(f"AUC: {s.size} scores for {pos.size} labels")
    n_pos = int(pos.sum())
    n_neg = s.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.0, 0
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # 1-based rank of each distinct value, averaged over its ties
    mid_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(mid_rank[inverse][pos].sum())
    return rank_sum - n_pos * (n_pos + 1) / 2.0, n_pos * n_neg


def binary_auc(scores: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> float:
    """Return the ROC AUC of ``scores`` for ``labels == 1`` (NaN if a class is absent).

    Parameters
    ----------
    scores
        Higher means more likely positive.
    labels
        0/1 labels (anything but 1 counts as negative).
    """
    u, pairs = mann_whitney(scores, np.asarray(labels) == 1)
    return u / pairs if pairs else math.nan


@dataclass(frozen=True)
class LeakReport:
    """The leak of one run's returned gradients.

    Parameters
    ----------
    norm_auc, cosine_auc
        ROC AUC of the norm and cosine attacks against the true labels (NaN before any batch
        had both classes).
    steps
        Batches observed.
    norm_pairs, cosine_pairs
        Positive/negative pairs behind each AUC.
    """

    norm_auc: float
    cosine_auc: float
    steps: int
    norm_pairs: int
    cosine_pairs: int

    @property
    def leak(self) -> float:
        """The stronger attack, orientation-free: ``max(auc, 1 - auc)`` over both."""
        values = [max(a, 1.0 - a) for a in (self.norm_auc, self.cosine_auc) if not math.isnan(a)]
        return max(values) if values else math.nan

    def to_dict(self) -> dict[str, float | int]:
        """Return the report as JSON-able values (for metrics lines)."""
        return {
            "norm_auc": self.norm_auc,
            "cosine_auc": self.cosine_auc,
            "leak": self.leak,
            "steps": self.steps,
            "norm_pairs": self.norm_pairs,
            "cosine_pairs": self.cosine_pairs,
        }


class LeakMeter:
    """Accumulates the norm and cosine attacks' AUC over a run, in constant memory.

    Parameters
    ----------
    positive_class
        The label the attacks try to find (1 for binary tasks; with more classes, one class
        against the rest).

    Usage::

        meter = LeakMeter()
        meter.observe(sent_gradient, labels)     # every step, on what the follower receives
        meter.report().cosine_auc
    """

    def __init__(self, *, positive_class: int = 1) -> None:
        self.positive_class = positive_class
        self._steps = 0
        self._norm = [0.0, 0]
        self._cosine = [0.0, 0]

    def observe(self, grad: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> None:
        """Score one batch: ``grad`` ``[B, k]`` as sent, ``labels`` ``[B]`` the true labels.

        Raises
        ------
        ConfigError
            If the shapes disagree.
        """
        g = np.asarray(grad, dtype=np.float64)
        y = np.asarray(labels).reshape(-1) == self.positive_class
        if g.ndim != 2 or g.shape[0] != y.size:
            raise ConfigError(
                f"leak meter: gradient {list(g.shape)} does not match {y.size} labels"
            )
        self._steps += 1
        norms = np.sqrt(np.einsum("ij,ij->i", g, g))
        u, pairs = mann_whitney(norms, y)
        self._norm[0] += u
        self._norm[1] += pairs
        if g.shape[0] < 3:
            return
        known = g[0]
        known_norm = norms[0]
        rest = norms[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (g[1:] @ known) / (rest * known_norm)
        cos = np.where((rest > 0) & (known_norm > 0), cos, 0.0)
        if not y[0]:
            cos = -cos
        u, pairs = mann_whitney(cos, y[1:])
        self._cosine[0] += u
        self._cosine[1] += pairs

    def state(self) -> dict[str, float | int]:
        """Return the accumulated sums (JSON-able), for a checkpoint."""
        return {
            "steps": self._steps,
            "norm_u": self._norm[0],
            "norm_pairs": int(self._norm[1]),
            "cosine_u": self._cosine[0],
            "cosine_pairs": int(self._cosine[1]),
        }

    def restore(self, state: dict[str, float | int]) -> None:
        """Continue from :meth:`state`'s sums (a resumed run reports what an unbroken one would).

        Raises
        ------
        ConfigError
            If a key is missing or a value is not a finite, non-negative number.
        """
        keys = ("steps", "norm_u", "norm_pairs", "cosine_u", "cosine_pairs")
        if set(state) != set(keys):
            raise ConfigError(
                f"leak meter state: expected keys {sorted(keys)}, got {sorted(state)}"
            )
        for key in keys:
            value = state[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ConfigError(f"leak meter state: {key} must be a number >= 0, got {value!r}")
        self._steps = int(state["steps"])
        self._norm = [float(state["norm_u"]), int(state["norm_pairs"])]
        self._cosine = [float(state["cosine_u"]), int(state["cosine_pairs"])]

    def report(self) -> LeakReport:
        """Return the AUCs so far."""
        n_u, n_p = self._norm
        c_u, c_p = self._cosine
        return LeakReport(
            norm_auc=n_u / n_p if n_p else math.nan,
            cosine_auc=c_u / c_p if c_p else math.nan,
            steps=self._steps,
            norm_pairs=int(n_p),
            cosine_pairs=int(c_p),
        )

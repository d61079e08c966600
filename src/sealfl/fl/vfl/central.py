"""Centralised training of the same two networks: the yardstick split training must equal.

:class:`CentralTrainer` builds the follower's and the leader's networks and optimisers exactly as
the halves do (it *is* a :class:`~sealfl.fl.vfl.halves.FollowerHalf` and a
:class:`~sealfl.fl.vfl.halves.LeaderHalf` side by side) and trains them as one model: one
forward pass from both parties' features to the loss, one ``backward``, both optimisers step.
No tensor is copied or serialised on the way, and no defence applies, so any difference from a
split run is a difference in the split machinery.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)

from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.settings import VflSettings

__all__ = ["CentralTrainer"]


class CentralTrainer:
    """One process, one model: the follower's network feeding the leader's.

    Parameters
    ----------
    settings
        The run's settings (the defence is ignored: nothing is sent anywhere).

    Attributes
    ----------
    follower, leader
        The two halves, whose networks and optimisers this trains (and evaluates with).
    """

    def __init__(self, settings: VflSettings) -> None:
        self.settings = settings
        self.follower = FollowerHalf(settings)
        self.leader = LeaderHalf(settings)

    def step(
        self,
        x_leader: npt.NDArray[np.generic],
        x_follower: npt.NDArray[np.generic],
        y: npt.NDArray[np.integer],
    ) -> float:
        """Train one step on aligned rows; return the batch's mean loss."""
        xf = self.follower._features(x_follower)
        xl = self.leader._features(x_leader)
        labels = self.leader._labels(y, xl.shape[0])
        self.follower.model.train()
        self.leader.model.train()
        act = self.follower.model(xf)
        loss = F.cross_entropy(self.leader.model(xl, act), labels)
        loss.backward()
        for opt in (self.follower.optimizer, self.leader.optimizer):
            opt.step()
            opt.zero_grad(set_to_none=True)
        return float(loss.item())

    def predict_proba(
        self, x_leader: npt.NDArray[np.generic], x_follower: npt.NDArray[np.generic]
    ) -> npt.NDArray[np.float64]:
        """Return class probabilities ``[B, classes]`` for aligned rows."""
        with torch.no_grad():
            return self.leader.predict_proba(x_leader, self.follower.embed(x_follower))

"""Run secure-aggregation rounds in one process, with dropouts at any stage."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from sealfl.secagg import Params, RoundTag, SecAggAggregator, SecAggWorker


class Round:
    """Five (or n) workers and an aggregator, with a knob for who drops at which stage."""

    def __init__(self, params: Params, *, round_: int = 0, seed: int = 0) -> None:
        self.params = params
        self.session = os.urandom(32)
        self.tag = RoundTag(self.session, round_, 0)
        self.workers = {w: SecAggWorker(worker_id=w, params=params) for w in params.workers}
        rng = np.random.default_rng(seed)
        self.inputs = {
            w: rng.uniform(-params.clip, params.clip, params.numel).astype(np.float32)
            for w in params.workers
        }
        self.agg = SecAggAggregator(params=params, tag=self.tag)

    def advertise(self, drop: Iterable[int] = ()) -> None:
        for w in sorted(set(self.workers) - set(drop)):
            self.agg.receive_advert(self.workers[w].advertise(self.tag))

    def share(self, drop: Iterable[int] = ()) -> None:
        roster = self.agg.roster()
        for w in sorted({a.worker for a in roster} - set(drop)):
            self.agg.receive_shares(self.workers[w].share_keys(self.tag, roster))
        self.agg.close_sharing()

    def mask(self, drop: Iterable[int] = ()) -> None:
        for w in sorted(set(self.agg.bundles) - set(drop)):
            masked = self.workers[w].masked_input(self.tag, self.agg.delivery(w), self.inputs[w])
            self.agg.receive_masked(masked)

    def unmask(self, drop: Iterable[int] = ()) -> None:
        request = self.agg.unmask_request()
        for w in sorted(request.survivors - set(drop)):
            self.agg.receive_unmask(self.workers[w].unmask(request))

    def plain_sum(self, ids: Iterable[int]) -> np.ndarray:
        return np.sum([self.inputs[w].astype(np.float64) for w in ids], axis=0)

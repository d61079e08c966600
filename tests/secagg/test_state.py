"""Aggregator restart: serialise after every stage, resume from a new object, same result."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_rounds import Round

from sealfl.errors import ProtocolError
from sealfl.secagg import Params, RoundTag, SecAggAggregator, UnmaskRequest

STAGES = ("advertise", "share", "mask", "unmask")


def _reload(r: Round) -> None:
    raw = r.agg.state_bytes()
    r.agg = SecAggAggregator.from_state(raw)
    assert r.agg.state_bytes() == raw


@pytest.mark.parametrize("kill_after", range(len(STAGES) + 1))
def test_resume_after_each_stage_equals_uninterrupted(five: Params, kill_after: int) -> None:
    plain = Round(five, seed=11)
    resumed = Round(five, seed=11)
    for r in (plain, resumed):
        for i, stage in enumerate(STAGES):
            getattr(r, stage)(drop=[5] if stage == "mask" else [])
            if r is resumed and i == kill_after - 1:
                _reload(r)
    a, b = plain.agg.finish(), resumed.agg.finish()
    assert np.max(np.abs(a - plain.plain_sum((1, 2, 3, 4)))) <= five.quantizer.sum_error_bound(4)
    # Same inputs, different masks: the dequantised sums are identical (masks cancel exactly).
    assert np.array_equal(a, b)


def test_resumed_aggregator_gets_identical_resends(five: Params) -> None:
    r = Round(five, seed=12)
    r.advertise()
    r.share()
    r.mask()
    del r.agg.masked[5]
    request = r.agg.unmask_request()
    r.agg.receive_unmask(r.workers[1].unmask(request))
    _reload(r)  # killed in the unmask stage, after one answer
    again = r.workers[1].unmask(r.agg.unmask_request())
    assert again == r.agg.responses[1]  # the worker answers the same request identically
    # The restarted (possibly malicious) aggregator cannot now flip worker 5 to a survivor.
    with pytest.raises(ProtocolError, match="already answered"):
        r.workers[1].unmask(UnmaskRequest(r.tag, frozenset({1, 2, 3, 5}), frozenset({4})))
    for w in (2, 3, 4):
        r.agg.receive_unmask(r.workers[w].unmask(r.agg.unmask_request()))
    assert np.max(np.abs(r.agg.finish() - r.plain_sum((1, 2, 3, 4)))) < 1e-5


def test_a_new_attempt_gets_fresh_masks_and_not_after_unmasking(five: Params) -> None:
    r = Round(five, seed=13)
    r.advertise()
    r.share()
    r.mask()
    first = {w: m.values.copy() for w, m in r.agg.masked.items()}
    # State lost: restart the round as attempt 1 with fresh keys.
    r.tag = RoundTag(r.session, 0, 1)
    r.agg = SecAggAggregator(params=five, tag=r.tag)
    r.advertise()
    r.share()
    r.mask()
    for w in five.workers:
        assert not np.array_equal(first[w], r.agg.masked[w].values)
    r.unmask()
    assert np.max(np.abs(r.agg.finish() - r.plain_sum(five.workers))) < 1e-5
    # Once a round is unmasked, no worker joins another attempt of it.
    with pytest.raises(ProtocolError, match="already unmasked in attempt 1"):
        r.workers[2].advertise(RoundTag(r.session, 0, 2))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda raw: b"XXXX" + raw[4:], "magic"),
        (lambda raw: raw[:-4], "vectors: expected"),
        (
            lambda raw: raw.replace(b"sealfl-secagg-aggregator/1", b"sealfl-secagg-aggregator/9"),
            "format",
        ),
    ],
)
def test_bad_state_is_refused(five: Params, mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    r = Round(five)
    r.advertise()
    r.share()
    r.mask()
    with pytest.raises(ProtocolError, match=match):
        SecAggAggregator.from_state(mutate(r.agg.state_bytes()))

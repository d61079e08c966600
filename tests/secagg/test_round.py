"""Whole rounds in one process: sums, dropouts, what the aggregator holds, fresh masks."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_rounds import Round

from sealfl.errors import ProtocolError
from sealfl.secagg import DropoutError, MaskedInput, Params, SecAggAggregator, Stage
from sealfl.secagg.masks import expand, pair_seed


def _assert_uniform_and_unrelated(masked: np.ndarray, update: np.ndarray, params: Params) -> None:
    q = params.quantizer.quantize(update)
    assert not np.any(masked == q) or np.mean(masked == q) < 0.01
    # A uniform uint32 vector: mean of the top byte near 127.5, each of 16 buckets near 1/16.
    counts = np.bincount(masked >> 28, minlength=16) / masked.size
    assert np.all(np.abs(counts - 1 / 16) < 0.03), counts
    # The quantised update itself is far from uniform in its top bits (it never reaches the
    # top 2**29 levels when bits < 32), so this check could fail if the mask were missing.
    assert np.corrcoef(masked.astype(np.float64), q.astype(np.float64))[0, 1] < 0.2


def test_no_dropouts_gives_the_sum(five: Params) -> None:
    r = Round(five)
    r.advertise()
    r.share()
    r.mask()
    r.unmask()
    total = r.agg.finish()
    bound = five.quantizer.sum_error_bound(5)
    assert np.max(np.abs(total - r.plain_sum(five.workers))) <= bound * (1 + 1e-6)
    assert r.agg.stage is Stage.DONE


def test_two_dropped_after_masking_gives_the_survivors_sum(five: Params) -> None:
    r = Round(five, seed=1)
    r.advertise()
    r.share()
    r.mask()  # all five sent masked inputs ...
    # ... but 4 and 5 vanish before the aggregator closes the stage: drop their uploads.
    for w in (4, 5):
        del r.agg.masked[w]
    r.unmask()
    total = r.agg.finish()
    survivors = (1, 2, 3)
    err = np.max(np.abs(total - r.plain_sum(survivors)))
    assert err <= five.quantizer.sum_error_bound(3) * (1 + 1e-6)
    # The full sum would be far off: the result really is the survivors' sum.
    assert np.max(np.abs(total - r.plain_sum(five.workers))) > 0.1
    # Everything the aggregator received: no masked vector is (close to) its worker's update.
    for w, m in r.agg.masked.items():
        assert m.values.dtype == np.uint32
        _assert_uniform_and_unrelated(m.values, r.inputs[w], five)
    for resp in r.agg.responses.values():  # shares: 33-byte field elements, no vectors
        assert all(len(v) == 33 for v in [*resp.seed_shares.values(), *resp.key_shares.values()])


@pytest.mark.parametrize(
    ("advert", "share", "mask"), [((5,), (4,), ()), ((5,), (), (4,)), ((), (5,), (4,))]
)
def test_dropouts_before_masking_are_left_out(
    five: Params, advert: tuple[int, ...], share: tuple[int, ...], mask: tuple[int, ...]
) -> None:
    r = Round(five, seed=2)
    r.advertise(drop=advert)
    r.share(drop=share)
    r.mask(drop=mask)
    r.unmask()
    assert r.agg.unmask_request().survivors == {1, 2, 3}
    total = r.agg.finish()
    assert np.max(np.abs(total - r.plain_sum((1, 2, 3)))) <= five.quantizer.sum_error_bound(3)


def test_too_many_dropouts_gives_no_partial_result(five: Params) -> None:
    r = Round(five, seed=3)
    r.advertise()
    r.share()
    r.mask(drop=[3, 4, 5])
    with pytest.raises(DropoutError, match="masked inputs: 2 workers, fewer than threshold 3"):
        r.agg.unmask_request()
    assert r.agg.stage is Stage.MASKED


def test_too_few_unmask_answers_gives_no_partial_result(five: Params) -> None:
    r = Round(five, seed=4)
    r.advertise()
    r.share()
    r.mask(drop=[5])
    r.unmask(drop=[3, 4])
    with pytest.raises(DropoutError, match="unmask responses: 2 workers"):
        r.agg.finish()
    assert r.agg.stage is Stage.UNMASK


def test_dropouts_at_every_stage_before_unmask(five: Params) -> None:
    params = Params(workers=(1, 2, 3, 4, 5, 6, 7), threshold=4, numel=500, clip=1.0)
    r = Round(params, seed=5)
    r.advertise(drop=[7])
    r.share(drop=[6])
    r.mask(drop=[5])
    r.unmask(drop=[4])  # answers from 1, 2, 3: fewer than 4 ... so let 4 answer after all
    r.agg.receive_unmask(r.workers[4].unmask(r.agg.unmask_request()))
    total = r.agg.finish()
    err = np.max(np.abs(total - r.plain_sum((1, 2, 3, 4))))
    assert err <= params.quantizer.sum_error_bound(4) * (1 + 1e-6)


def test_harary_graph_round() -> None:
    params = Params(workers=tuple(range(1, 9)), threshold=3, numel=300, clip=1.0, degree=4)
    r = Round(params, seed=6)
    r.advertise()
    r.share()
    for b in r.agg.bundles.values():
        assert len(b.ciphertexts) == 4
    r.mask()
    del r.agg.masked[8]
    r.unmask()
    total = r.agg.finish()
    assert np.max(np.abs(total - r.plain_sum(range(1, 8)))) <= params.quantizer.sum_error_bound(7)


def test_mask_streams_differ_per_round_and_attempt(five: Params) -> None:
    masks = []
    for round_, attempt in ((0, 0), (1, 0), (1, 1)):
        r = Round(five, round_=round_)
        r.tag = type(r.tag)(r.session, round_, attempt)
        r.agg = SecAggAggregator(params=five, tag=r.tag)
        r.advertise()
        r.share()
        r.mask()
        masks.append(r.agg.masked[1].values)
        # Same keys, another round tag: another stream (the tag is in the derivation).
        w = r.workers[1]._attempt
        assert w is not None and w.roster is not None
        peer = w.roster[2].mask_public
        other = type(r.tag)(r.session, round_ + 7, attempt)
        assert not np.array_equal(
            expand(pair_seed(w.mask_private, peer, r.tag, 1, 2), 64),
            expand(pair_seed(w.mask_private, peer, other, 1, 2), 64),
        )
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])


def test_stage_order_is_enforced(five: Params) -> None:
    r = Round(five)
    r.advertise()
    with pytest.raises(ProtocolError, match="sharing is not closed"):
        r.agg.delivery(1)
    with pytest.raises(ProtocolError, match="has not shared its keys"):
        r.workers[1].masked_input(r.tag, {}, r.inputs[1])
    early = MaskedInput(r.tag, 1, np.zeros(five.numel, dtype=np.uint32))
    with pytest.raises(ProtocolError, match="expected during stage masked, now advertise"):
        r.agg.receive_masked(early)

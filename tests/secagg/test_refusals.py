"""Attacks and malformed messages: each is refused with the field named, and nothing is lost."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from secagg_rounds import Round

from sealfl.errors import ConfigError, ProtocolError
from sealfl.secagg import (
    MaskedInput,
    Params,
    RoundTag,
    SecAggWorker,
    ShareBundle,
    UnmaskRequest,
)


def _to_unmask(params: Params) -> Round:
    r = Round(params, seed=9)
    r.advertise()
    r.share()
    r.mask()
    del r.agg.masked[5]
    return r


def test_double_share_attack_is_refused(five: Params) -> None:
    r = _to_unmask(five)
    honest = r.agg.unmask_request()  # survivors 1-4, dropped 5
    first = r.workers[1].unmask(honest)
    assert 5 in first.key_shares and 5 not in first.seed_shares
    # The same request again (a resumed aggregator) gets the very same answer ...
    assert r.workers[1].unmask(honest) == first
    # ... but now asking for 5's self-mask seed as a survivor is refused.
    flipped = UnmaskRequest(r.tag, frozenset({1, 2, 3, 5}), frozenset({4}))
    with pytest.raises(ProtocolError, match="already answered"):
        r.workers[1].unmask(flipped)
    # Listing a peer as both in one request is refused by a fresh worker too.
    both = UnmaskRequest(r.tag, frozenset({1, 2, 3, 5}), frozenset({5}))
    with pytest.raises(ProtocolError, match=r"\[5\] listed as both survivor and dropped"):
        r.workers[2].unmask(both)
    # And the worker that refused can still answer the honest request: nothing was lost.
    assert 5 in r.workers[2].unmask(honest).key_shares


def test_double_share_refused_across_worker_restart(five: Params) -> None:
    r = _to_unmask(five)
    honest = r.agg.unmask_request()
    answer = r.workers[3].unmask(honest)
    ledger = r.workers[3].ledger_bytes()
    restarted = SecAggWorker(worker_id=3, params=five, ledger=ledger)
    assert restarted.unmask(honest) == answer
    flipped = UnmaskRequest(r.tag, frozenset({1, 2, 3, 5}), frozenset({4}))
    with pytest.raises(ProtocolError, match="already answered"):
        restarted.unmask(flipped)
    with pytest.raises(ProtocolError, match="already unmasked in attempt 0"):
        restarted.advertise(RoundTag(r.session, 0, 1))


@pytest.mark.parametrize(
    ("survivors", "dropped", "match"),
    [
        ({2, 3, 4}, {1, 5}, "lists this worker as dropped"),
        ({1, 2, 3}, {5}, r"neighbours \[4\] sent shares but are listed neither"),
        ({1, 2}, {3, 4, 5}, "expected at least threshold 3, got 2"),
    ],
)
def test_bad_unmask_requests_are_refused(
    five: Params, survivors: set[int], dropped: set[int], match: str
) -> None:
    r = _to_unmask(five)
    bad = UnmaskRequest(r.tag, frozenset(survivors), frozenset(dropped))
    with pytest.raises(ProtocolError, match=match):
        r.workers[1].unmask(bad)
    r.unmask()  # the honest request still completes the round
    assert np.max(np.abs(r.agg.finish() - r.plain_sum((1, 2, 3, 4)))) < 1e-5


def test_unmask_before_masking_is_refused(five: Params) -> None:
    r = Round(five)
    r.advertise()
    r.share()
    request = UnmaskRequest(r.tag, frozenset({1, 2, 3}), frozenset())
    with pytest.raises(ProtocolError, match="has not sent its masked input"):
        r.workers[1].unmask(request)


def test_other_round_and_session_are_refused(five: Params) -> None:
    r = Round(five)
    r.advertise()
    other = RoundTag(r.session, 1, 0)
    with pytest.raises(ProtocolError, match="round tag mismatch, expected round 0"):
        r.agg.receive_advert(r.workers[1].advertise(other))  # worker moved on; agg refuses
    roster = r.agg.roster()
    with pytest.raises(ProtocolError, match="round tag mismatch"):
        r.workers[2].share_keys(other, roster)
    with pytest.raises(ProtocolError, match="session: expected"):
        r.workers[2].advertise(RoundTag(bytes(32), 0, 0))
    with pytest.raises(ProtocolError, match="older than the current round 1"):
        r.workers[1].advertise(r.tag)


def test_shares_sealed_for_another_round_are_refused(five: Params) -> None:
    r = Round(five)
    r.advertise()
    r.share()
    delivery = r.agg.delivery(1)
    # Re-address 2's ciphertext as if it came from 3: authentication fails, named.
    forged = dict(delivery)
    forged[3] = delivery[2]
    with pytest.raises(ProtocolError, match="shares from worker 3 to worker 1: authentication"):
        r.workers[1].masked_input(r.tag, forged, r.inputs[1])
    # The honest delivery still works afterwards.
    r.agg.receive_masked(r.workers[1].masked_input(r.tag, delivery, r.inputs[1]))


def test_replays_and_duplicates_are_refused(five: Params) -> None:
    r = Round(five)
    advert = r.workers[1].advertise(r.tag)
    r.agg.receive_advert(advert)
    with pytest.raises(ProtocolError, match="worker 1 already sent one in this attempt"):
        r.agg.receive_advert(advert)
    for w in (2, 3, 4, 5):
        r.agg.receive_advert(r.workers[w].advertise(r.tag))
    roster = r.agg.roster()
    with pytest.raises(ProtocolError, match="worker 2 appears twice"):
        r.workers[1].share_keys(r.tag, (*roster, roster[1]))
    bundles = {w: r.workers[w].share_keys(r.tag, roster) for w in five.workers}
    r.agg.receive_shares(bundles[1])
    with pytest.raises(ProtocolError, match="already sent one"):
        r.agg.receive_shares(bundles[1])
    for w in (2, 3, 4, 5):
        r.agg.receive_shares(bundles[w])
    r.agg.close_sharing()
    masked = r.workers[1].masked_input(r.tag, r.agg.delivery(1), r.inputs[1])
    r.agg.receive_masked(masked)
    with pytest.raises(ProtocolError, match="already sent one"):
        r.agg.receive_masked(masked)
    # The same input again gives the identical bytes; another value under the same masks: no.
    assert r.workers[1].masked_input(r.tag, r.agg.delivery(1), r.inputs[1]) is masked
    with pytest.raises(ProtocolError, match="a mask is never reused on a new value"):
        r.workers[1].masked_input(r.tag, r.agg.delivery(1), r.inputs[1] + 0.5)


def test_malformed_messages_are_refused(five: Params) -> None:
    r = Round(five)
    advert = r.workers[1].advertise(r.tag)
    for field, value, match in [
        ("worker", 9, "worker: expected one of"),
        ("mask_public", b"x" * 31, "mask_public: expected a 32-byte"),
        ("cipher_public", advert.mask_public, "must be different keys"),
    ]:
        with pytest.raises(ProtocolError, match=match):
            r.agg.receive_advert(dataclasses.replace(advert, **{field: value}))
    r.agg.receive_advert(advert)
    for w in (2, 3, 4, 5):
        r.agg.receive_advert(r.workers[w].advertise(r.tag))
    roster = r.agg.roster()
    bundle = r.workers[2].share_keys(r.tag, roster)
    short = ShareBundle(r.tag, 2, {**bundle.ciphertexts, 1: bundle.ciphertexts[1][:-1]})
    with pytest.raises(ProtocolError, match="ciphertext for worker 1: expected 102 bytes, got 101"):
        r.agg.receive_shares(short)
    missing = ShareBundle(r.tag, 2, {v: c for v, c in bundle.ciphertexts.items() if v != 3})
    with pytest.raises(ProtocolError, match=r"expected one for each of \[1, 3, 4, 5\]"):
        r.agg.receive_shares(missing)
    altered = tuple(
        dataclasses.replace(a, mask_public=roster[0].cipher_public) if a.worker == 3 else a
        for a in roster
    )
    with pytest.raises(ProtocolError, match="differs from the roster already used"):
        r.workers[2].share_keys(r.tag, altered)
    for w in five.workers:
        r.agg.receive_shares(r.workers[w].share_keys(r.tag, roster))
    r.agg.close_sharing()
    wrong = MaskedInput(r.tag, 1, np.zeros(five.numel - 1, dtype=np.uint32))
    with pytest.raises(ProtocolError, match=r"values: expected uint32\[1000\], got uint32\[999\]"):
        r.agg.receive_masked(wrong)
    assert 1 not in r.agg.masked


def test_params_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"threshold: expected 3\.\.5"):
        Params(workers=(1, 2, 3, 4, 5), threshold=2, numel=10, clip=1.0)
    with pytest.raises(ConfigError, match="degree: expected an even number"):
        Params(workers=(1, 2, 3, 4, 5), threshold=3, numel=10, clip=1.0, degree=3)
    with pytest.raises(ConfigError, match="clip"):
        Params(workers=(1, 2, 3), threshold=2, numel=10, clip=float("nan"))


def test_public_surface_is_exactly_all() -> None:
    import sealfl.secagg as secagg

    public = {n for n in vars(secagg) if not n.startswith("_")} - {"annotations"}
    public -= {"aggregator", "masks", "messages", "quantize", "shamir", "worker"}
    assert public == set(secagg.__all__)

"""hfl's secure-aggregation layer in one process: replays, other rounds, its sealed state.

The PS's :class:`SecureRound` answers an identical message again (how a resumed PS and a
reconnecting worker continue an attempt) and refuses a different one; the worker's
:class:`UpdateLedger` refuses to unmask one update twice, even for a PS that starts a new run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.hfl.demo import prepare_run_dir, write_data, write_role_configs
from sealfl.fl.hfl.roles import ps_options, worker_options
from sealfl.fl.hfl.secure import (
    SecAggOptions,
    SecureRound,
    UpdateLedger,
    planned_weight,
    session_of,
)
from sealfl.fl.hfl.settings import Settings
from sealfl.runtime.role_config import load_role_config
from sealfl.secagg import (
    KeyAdvert,
    MaskedInput,
    Params,
    RoundTag,
    SecAggAggregator,
    SecAggWorker,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
)

PARAMS = Params(workers=(1, 2, 3), threshold=2, numel=64, clip=4.0)


def _round() -> tuple[SecureRound, dict[int, SecAggWorker], RoundTag]:
    tag = RoundTag(session_of("run-a"), 0)
    rnd = SecureRound(version=0, agg=SecAggAggregator(params=PARAMS, tag=tag))
    workers = {w: SecAggWorker(worker_id=w, params=PARAMS, consistency=True) for w in (1, 2, 3)}
    return rnd, workers, tag


def _through_masking(rnd: SecureRound, workers: dict[int, SecAggWorker], tag: RoundTag) -> None:
    for w, sa in workers.items():
        assert rnd.advert(sa.advertise(tag), 10 * w, f"cert-{w}") is None
    rnd.close_stage()
    roster = [a for _, a in sorted(rnd.agg.adverts.items())]
    for sa in workers.values():
        assert rnd.bundle(sa.share_keys(tag, roster)) is None
    rnd.close_stage()
    for w, sa in workers.items():
        delivered = rnd.bundle(rnd.agg.bundles[w])
        assert delivered is not None
        rnd.masked(sa.masked_input(tag, delivered, np.full(64, 0.5 * w)), 1.0, 2.0)


def test_identical_messages_are_answered_again_different_ones_refused() -> None:
    rnd, workers, tag = _round()
    advert = workers[1].advertise(tag)
    assert rnd.advert(advert, 10, "cert-1") is None  # stage 1 still open
    assert rnd.advert(advert, 10, "cert-1") is None  # the same again: fine
    other = KeyAdvert(tag, 1, os.urandom(32), os.urandom(32))
    with pytest.raises(ProtocolError, match="differs from its advert already taken"):
        rnd.advert(other, 10, "cert-1")
    with pytest.raises(ProtocolError, match="differs from its advert already taken"):
        rnd.advert(advert, 11, "cert-1")  # another weight
    rnd2, workers2, tag2 = _round()
    _through_masking(rnd2, workers2, tag2)
    # After stage 1 closed, the identical advert gets the roster back, with identities.
    roster = rnd2.advert(rnd2.agg.adverts[2], 20, "cert-2")
    assert roster is not None and [a.identity for a in roster] == ["cert-1", "cert-2", "cert-3"]
    # A masked input of another round, or different bytes for this one, is refused.
    with pytest.raises(ProtocolError, match="round tag mismatch"):
        rnd2.check_masked(1, RoundTag(tag2.session, 1))
    changed = rnd2.agg.masked[1].values.copy()
    changed[0] ^= 1
    with pytest.raises(ProtocolError, match="differs from its input already taken"):
        rnd2.masked(MaskedInput(tag2, 1, changed), 1.0, 2.0)
    rnd2.masked(rnd2.agg.masked[1], 1.0, 2.0)  # identical: accepted again
    # Confirmations and answers only from survivors, in order.
    with pytest.raises(ProtocolError, match="no unmask request yet"):
        rnd2.confirm(1, {})
    rnd2.close_stage()
    request = rnd2.unmask_poll(1)
    assert request is not None and request.survivors == {1, 2, 3}
    with pytest.raises(ProtocolError, match="did not take part in the confirmation"):
        rnd2.answer(UnmaskResponse(request.tag, 1, {}, {}))


def test_a_round_completes_and_its_sealed_state_resumes_at_every_stage() -> None:
    rnd, workers, tag = _round()
    states = [rnd.to_bytes("run-a")]
    _through_masking(rnd, workers, tag)
    states.append(rnd.to_bytes("run-a"))
    rnd.close_stage()
    request = rnd.request()
    tags = {w: sa.confirm(request) for w, sa in workers.items()}
    for w in workers:
        assert rnd.confirm(w, tags[w]) is None
    rnd.close_stage()
    states.append(rnd.to_bytes("run-a"))
    for w, sa in workers.items():
        theirs = rnd.confirm(w, tags[w])
        assert theirs is not None
        sa.check_confirmations(request, theirs)
        rnd.answer(sa.unmask(request))
    mean, survivors, weight = rnd.finish()
    assert survivors == (1, 2, 3) and weight == 60
    # The inputs 0.5, 1.0, 1.5 (unweighted here), times roster weight / survivors' (60 / 60).
    assert np.allclose(mean, 3.0, atol=PARAMS.quantizer.sum_error_bound(3))
    # The sealed state after the round gives the same sum, bit for bit.
    run_id, again = SecureRound.from_bytes(rnd.to_bytes("run-a"))
    assert run_id == "run-a" and again.stage is Stage.DONE
    assert np.array_equal(again.finish()[0], mean)
    for raw in states:
        assert SecureRound.from_bytes(raw)[1].to_bytes("run-a") == raw
    with pytest.raises(ProtocolError, match="secure-aggregation state"):
        SecureRound.from_bytes(b"\x0a\xff" + states[1][2:])


def test_the_ledger_refuses_a_second_unmasking_of_one_update_in_a_new_run() -> None:
    values = np.arange(64, dtype=np.float32)
    key = UpdateLedger.update_digest(0, values)
    first = UnmaskRequest(RoundTag(session_of("run-a"), 0), frozenset({1, 2}), frozenset({3}))
    ledger = UpdateLedger(1)
    ledger.check(key, first)
    ledger.record(key, first, b'{"core": 1}')
    restored = UpdateLedger(1, ledger.to_bytes())
    restored.check(key, first)  # the same request again: the same answer may go out
    new_run = UnmaskRequest(RoundTag(session_of("run-b"), 0), frozenset({1, 2, 3}), frozenset())
    with pytest.raises(ProtocolError, match="already unmasked in another session"):
        restored.check(key, new_run)
    other = UpdateLedger.update_digest(0, values + 1)
    restored.check(other, new_run)  # another update: fine
    with pytest.raises(ProtocolError, match="ledger: unreadable"):
        UpdateLedger(2, ledger.to_bytes())  # worker 1's ledger


def test_the_weight_is_known_before_training() -> None:
    s = Settings(model="small-cnn", batch_size=32)
    assert planned_weight(s, 100) == 100
    assert planned_weight(s.replace(local_steps=5), 100) == 32 * 3 + 4 + 32
    assert planned_weight(s.replace(local_steps=1), 20) == 20


def test_secure_aggregation_in_role_configs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    paths = prepare_run_dir(run, measurements={"ps": bytes(32), "worker": bytes(32)})
    paths |= write_data(run, workers=3, channels=1)
    configs = write_role_configs(
        run,
        paths,
        workers=3,
        settings=Settings(model="small-cnn"),
        ps_options={"secure_aggregation": True, "secagg_threshold": 2, "secagg_clip": 4.0},
        worker_options={"secure_aggregation": True},
    )
    ps = ps_options(load_role_config(configs["ps"], environ={}))
    assert ps.secure_aggregation == SecAggOptions(threshold=2, clip=4.0)
    assert worker_options(load_role_config(configs["worker 1"], environ={})).secure_aggregation
    original = configs["ps"].read_text()
    cases = [
        ("secagg_threshold = 2", "secagg_threshold = 1", "at least 2"),
        ("secagg_threshold = 2", "secagg_threshold = 4", r"expected 2\.\.3"),
        ("secagg_clip = 4.0", "secagg_clip = -1.0", "positive number"),
    ]
    for line, edited, message in cases:
        assert line in original
        configs["ps"].write_text(original.replace(line, edited))
        with pytest.raises(ConfigError, match=message):
            ps_options(load_role_config(configs["ps"], environ={}))
    configs["ps"].write_text(original.replace("secure_aggregation = true", ""))
    with pytest.raises(ConfigError, match="secagg_threshold: needs secure_aggregation = true"):
        ps_options(load_role_config(configs["ps"], environ={}))

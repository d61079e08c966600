"""SecAgg's consistency check: workers confirm the survivor list to each other before unmasking.

An aggregator that shows worker 1 "5 survived" and worker 2 "5 dropped" (to collect 5's
self-mask seed shares from some and its mask-key shares from others) is caught: a worker only
answers a list that at least ``threshold - 1`` surviving neighbours tagged too, and each worker
tags one list per attempt, so two lists cannot both gather ``threshold`` (more than half).
"""

from __future__ import annotations

import pytest
from secagg_rounds import Round

from sealfl.errors import ProtocolError
from sealfl.secagg import Params, SecAggWorker, UnmaskRequest


def _round(params: Params) -> Round:
    r = Round(params, seed=3)
    r.workers = {
        w: SecAggWorker(worker_id=w, params=params, consistency=True) for w in params.workers
    }
    r.advertise()
    r.share()
    r.mask()
    return r


def test_an_agreed_list_is_answered(five: Params) -> None:
    r = _round(five)
    request = r.agg.unmask_request()
    tags = {w: r.workers[w].confirm(request) for w in sorted(request.survivors)}
    for w in sorted(request.survivors):
        mine = {v: t[w] for v, t in tags.items() if w in t}
        r.workers[w].check_confirmations(request, mine)
        r.agg.receive_unmask(r.workers[w].unmask(request))
    assert r.agg.finish().shape == (five.numel,)


def test_unconfirmed_and_split_lists_are_refused(five: Params) -> None:
    r = _round(five)
    honest = UnmaskRequest(r.tag, frozenset({1, 2, 3, 4, 5}), frozenset())
    split = UnmaskRequest(r.tag, frozenset({1, 2, 3, 4}), frozenset({5}))  # "5 dropped"
    with pytest.raises(ProtocolError, match="not confirmed"):
        r.workers[1].unmask(honest)  # no confirmations checked yet
    tags = {w: r.workers[w].confirm(honest) for w in (1, 2, 5)}
    tags |= {w: r.workers[w].confirm(split) for w in (3, 4)}
    with pytest.raises(ProtocolError, match="already confirmed a different survivor list"):
        r.workers[3].confirm(honest)  # one list per attempt
    # Worker 1: 2 and 5 vouch for the honest list (threshold - 1 = 2): it answers.
    r.workers[1].check_confirmations(honest, {2: tags[2][1], 5: tags[5][1]})
    assert 5 in r.workers[1].unmask(honest).seed_shares
    # Worker 4, shown the split list: only 3 tagged it.
    with pytest.raises(ProtocolError, match="fewer than threshold - 1"):
        r.workers[4].check_confirmations(split, {3: tags[3][4]})
    # Tags made for the honest list do not verify for the split one (nor would forged ones).
    with pytest.raises(ProtocolError, match="does not verify"):
        r.workers[4].check_confirmations(split, {3: tags[3][4], 2: tags[2][4]})
    with pytest.raises(ProtocolError, match="not confirmed"):
        r.workers[4].unmask(split)  # nothing of 5's mask key was revealed

"""The dealer's bookkeeping: one-shot material, derived sessions, bounds per client, expiry."""

from __future__ import annotations

import numpy as np
import pytest

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.infer.common import UnknownSessionError
from sealfl.fl.infer.dealer import DealerLimits, DealerStore, _DrawingBudget
from sealfl.fl.infer.quota import QuotaExceededError
from sealfl.mpc import Output, QueryPlan
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.wire import deal_from_proto, header_to_proto


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _header(
    session_id: str, rows: int = 3, features: int = 4, output: Output = Output.PROBABILITY
) -> mpc_pb2.QueryHeader:
    plan = QueryPlan(rows=rows, features=features, output=output)
    return header_to_proto(plan, session_id=session_id, query_id="")


def test_material_is_handed_out_once_and_only_with_the_token() -> None:
    store = DealerStore()
    sid, session = store.open_session(4)
    query_id, seed = store.prepare(_header(sid), owner="client")
    assert len(seed) == 32
    with pytest.raises(ProtocolError, match="wrong session token"):
        store.fetch(sid, b"x" * 32, query_id)
    deal = store.fetch(sid, session.token, query_id)
    assert deal.header.query_id == query_id and deal.header.rows == 3
    assert deal_from_proto(deal).logit.shape == (3,)
    with pytest.raises(UnknownSessionError, match="already fetched"):
        store.fetch(sid, session.token, query_id)


def test_unknown_session_and_width_mismatch() -> None:
    store = DealerStore()
    with pytest.raises(UnknownSessionError, match="unknown or expired session"):
        store.prepare(_header("nope"))
    sid, _ = store.open_session(4)
    with pytest.raises(ProtocolError, match="query has 5 features, session has 4"):
        store.prepare(_header(sid, features=5))
    with pytest.raises(ConfigError, match="between 1 and 65536, got 0"):
        store.open_session(0)


def test_sessions_are_derived_from_the_secret_so_they_survive_a_restart() -> None:
    # A dealer keeps nothing per session: the id is authenticated with its secret, and the
    # token and mask are derived from both. The same secret (the same key file) after a
    # restart still knows the session; any other secret, a forged id, or time does not.
    clock = Clock()
    secret = bytes(range(32))
    first = DealerStore(secret=secret, clock=clock)
    sid, session = first.open_session(4)
    again = DealerStore(secret=secret, clock=clock).session(sid)
    assert again is not None
    assert again.token == session.token and np.array_equal(again.mask, session.mask)
    assert DealerStore(secret=bytes(32), clock=clock).session(sid) is None
    forged = sid[:-2] + ("00" if sid[-2:] != "00" else "01")
    assert first.session(forged) is None
    wider = sid[:6] + "ff" + sid[8:]  # the width is inside the authenticated id
    assert first.session(wider) is None
    clock.now += first.limits.session_ttl_s
    assert first.session(sid) is None
    with pytest.raises(UnknownSessionError, match="open a new session"):
        first.prepare(_header(sid))


def test_pending_material_expires_and_is_bounded() -> None:
    clock = Clock()
    store = DealerStore(limits=DealerLimits(pending=2, ttl_s=10.0), clock=clock)
    sid, session = store.open_session(4)
    old, _ = store.prepare(_header(sid))
    clock.now += 11.0
    with pytest.raises(ProtocolError, match="expired"):
        store.fetch(sid, session.token, old)
    ids = [store.prepare(_header(sid))[0] for _ in range(3)]
    with pytest.raises(ProtocolError, match="no material"):
        store.fetch(sid, session.token, ids[0])  # dropped: only the newest two are kept
    store.fetch(sid, session.token, ids[2])


def test_one_client_cannot_push_out_another_clients_material() -> None:
    # The flood attack: one client prepares far more than its share. It loses its own oldest
    # material; the honest client's waits for its server untouched.
    big = QueryPlan(rows=4096, features=4, output=Output.PROBABILITY).server_material_bytes
    limits = DealerLimits(
        pending_per_client=3, pending_bytes_per_client=3 * big, pending=8, pending_bytes=5 * big
    )
    store = DealerStore(limits=limits)
    sid, session = store.open_session(4)
    honest, _ = store.prepare(_header(sid, rows=5), owner="honest")
    flood = [store.prepare(_header(sid, rows=4096), owner="attacker")[0] for _ in range(12)]
    assert store.held("attacker") == (3, 3 * big)
    # Sybil: more certificates, each within its own bound, fill the total; the client holding
    # the most loses first, and the honest client holds the least.
    for n in range(4):
        store.prepare(_header(sid, rows=4096), owner=f"sybil-{n}")
    assert store.pending_bytes <= limits.pending_bytes
    assert store.fetch(sid, session.token, honest).header.rows == 5
    with pytest.raises(UnknownSessionError, match="no material"):
        store.fetch(sid, session.token, flood[0])


def test_large_draws_wait_for_each_other_and_a_lone_one_always_runs() -> None:
    budget = _DrawingBudget(100)
    budget.acquire(500, timeout_s=0.01)  # alone: runs even though it exceeds the budget
    with pytest.raises(QuotaExceededError, match="dealer busy"):
        budget.acquire(10, timeout_s=0.01)
    budget.release(500)
    budget.acquire(60, timeout_s=0.01)
    budget.acquire(40, timeout_s=0.01)
    with pytest.raises(QuotaExceededError):
        budget.acquire(1, timeout_s=0.01)

"""The dealer's bookkeeping: one-shot material, session tokens, bounds and expiry."""

from __future__ import annotations

import pytest

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.infer.dealer import DealerStore
from sealfl.mpc import Output, QueryPlan
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.wire import deal_from_proto, header_to_proto


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _header(session_id: str, rows: int = 3, features: int = 4) -> mpc_pb2.QueryHeader:
    plan = QueryPlan(rows=rows, features=features, output=Output.PROBABILITY)
    return header_to_proto(plan, session_id=session_id, query_id="")


def test_material_is_handed_out_once_and_only_with_the_token() -> None:
    store = DealerStore()
    sid, session = store.open_session(4)
    query_id, seed = store.prepare(_header(sid))
    assert len(seed) == 32
    with pytest.raises(ProtocolError, match="wrong session token"):
        store.fetch(sid, b"x" * 32, query_id)
    deal = store.fetch(sid, session.token, query_id)
    assert deal.header.query_id == query_id and deal.header.rows == 3
    assert deal_from_proto(deal).logit.shape == (3,)
    with pytest.raises(ProtocolError, match="already fetched"):
        store.fetch(sid, session.token, query_id)


def test_unknown_session_and_width_mismatch() -> None:
    store = DealerStore()
    with pytest.raises(ProtocolError, match="unknown session"):
        store.prepare(_header("nope"))
    sid, _ = store.open_session(4)
    with pytest.raises(ProtocolError, match="query has 5 features, session has 4"):
        store.prepare(_header(sid, features=5))
    with pytest.raises(ConfigError, match="between 1 and 65536, got 0"):
        store.open_session(0)


def test_pending_material_expires_and_is_bounded() -> None:
    clock = Clock()
    store = DealerStore(max_pending=2, ttl_s=10.0, clock=clock)
    sid, session = store.open_session(4)
    old, _ = store.prepare(_header(sid))
    clock.now = 11.0
    with pytest.raises(ProtocolError, match="expired"):
        store.fetch(sid, session.token, old)
    ids = [store.prepare(_header(sid))[0] for _ in range(3)]
    with pytest.raises(ProtocolError, match="no material"):
        store.fetch(sid, session.token, ids[0])  # dropped: only the newest two are kept
    store.fetch(sid, session.token, ids[2])

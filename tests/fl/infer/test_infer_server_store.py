"""The server's bounded stores: prefetched queries are bounded by count and by rows."""

from __future__ import annotations

from sealfl.fl.infer.server import _Bounded


def test_prefetched_queries_are_forgotten_oldest_first_beyond_the_row_budget() -> None:
    store: _Bounded[int] = _Bounded(10, rows=int, max_rows=1000)
    store.put("a", 400)
    store.put("b", 400)
    assert list(store) == ["a", "b"]
    store.put("c", 300)  # 1100 rows: the oldest goes
    assert list(store) == ["b", "c"]
    store.put("huge", 5000)  # more than the whole budget: it stays, alone
    assert list(store) == ["huge"]


def test_entries_are_forgotten_beyond_the_count() -> None:
    store: _Bounded[str] = _Bounded(2)
    for key in "abc":
        store.put(key, key)
    assert list(store) == ["b", "c"]

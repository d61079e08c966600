"""Fair stores and row budgets: bounds per client that one client cannot spend for another."""

from __future__ import annotations

import pytest

from sealfl.errors import ConfigError
from sealfl.fl.infer.quota import (
    BudgetExhaustedError,
    FairStore,
    QuotaExceededError,
    RowBudget,
    host_memory_bytes,
    memory_share,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_owner_over_its_bound_loses_its_own_oldest() -> None:
    store: FairStore[str] = FairStore(per_owner=2, total=100)
    store.put("h", "honest", "h")
    for key in "abcde":
        store.put(key, "attacker", key)
    assert list(store) == ["h", "d", "e"]
    assert store.held_by("attacker") == (2, 2)


def test_over_the_total_the_heaviest_owner_loses_its_oldest() -> None:
    store: FairStore[int] = FairStore(per_owner=10, total=4)
    store.put("h1", "honest", 1)
    for n in range(3):
        store.put(f"a{n}", "attacker", n)
    dropped = store.put("a3", "attacker", 3)
    assert dropped == [0] and "h1" in store
    dropped = store.put("h2", "honest", 2)  # the attacker still holds the most
    assert dropped == [1] and {"h1", "h2"} <= set(store)


def test_costs_are_bounded_per_owner_and_in_total() -> None:
    store: FairStore[str] = FairStore(per_owner=10, total=10, per_owner_cost=100, total_cost=150)
    store.put("h", "honest", "h", cost=40)
    store.put("a1", "attacker", "a1", cost=60)
    store.put("a2", "attacker", "a2", cost=60)  # 120 > 100: its own a1 goes
    assert list(store) == ["h", "a2"] and store.cost == 100
    store.put("b1", "other", "b1", cost=60)  # 160 > 150: the heaviest (attacker, 60) goes
    assert list(store) == ["h", "b1"]
    with pytest.raises(QuotaExceededError, match="exceeds what one client may hold"):
        store.put("huge", "honest", "x", cost=101)
    assert list(store) == ["h", "b1"]


def test_another_owners_entry_looks_absent() -> None:
    store: FairStore[str] = FairStore(per_owner=4, total=4)
    store.put("k", "alice", "v")
    assert store.get("k", owner="mallory") is None
    assert store.pop("k", owner="mallory") is None
    assert store.get("k", owner="alice", touch=True) == "v"
    assert store.owner_of("k") == "alice"


def test_touched_entries_are_kept_longest() -> None:
    store: FairStore[str] = FairStore(per_owner=2, total=10)
    store.put("a", "o", "a")
    store.put("b", "o", "b")
    store.get("a", touch=True)
    store.put("c", "o", "c")
    assert list(store) == ["a", "c"]


def test_row_budget_refills_over_its_period() -> None:
    clock = Clock()
    budget = RowBudget(100, period_s=100.0, clock=clock)
    budget.charge("alice", 60)
    with pytest.raises(BudgetExhaustedError, match="40 of 100 rows per 100 s left"):
        budget.charge("alice", 50)
    assert budget.left("alice") == 40 and budget.left("bob") == 100
    clock.now = 10.0
    assert budget.left("alice") == 50
    budget.charge("alice", 50)
    budget.refund("alice", 20)
    assert budget.left("alice") == 20
    with pytest.raises(BudgetExhaustedError, match="more than the whole budget"):
        budget.charge("bob", 101)


def test_forgetting_clients_never_hands_out_a_fresh_budget_first() -> None:
    budget = RowBudget(10, period_s=1e6, max_clients=2, clock=Clock())
    budget.charge("spent", 10)
    budget.charge("half", 5)
    budget.charge("new", 1)  # the table is full: the client with the most left goes
    assert budget.left("spent") == 0


def test_bad_bounds_and_memory_share() -> None:
    with pytest.raises(ConfigError, match="expected at least 1 row"):
        RowBudget(0)
    with pytest.raises(ConfigError, match="per_owner: expected >= 1"):
        FairStore(per_owner=0, total=1)
    assert host_memory_bytes() > 0
    assert memory_share(0.5, floor=1, cap=10) == 10
    assert memory_share(1e-30, floor=7, cap=10) == 7

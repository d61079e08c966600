"""Per-client bounds for the infer servers and the dealer: fair stores and row budgets.

The MPC server and the dealer keep state for their clients: sessions, prefetched and running
queries, and dealer material waiting to be fetched. Clients are anonymous (any certificate is
admitted) and each of them can ask for more, so a store bounded only in total lets one client
push everyone else's entries out (256 sessions opened by one client ended every other
client's session) or fill the host's memory (12 ``Prepare`` calls of the largest plan held
2.4 GiB at the dealer). Here every entry has an *owner*, the SHA-256 fingerprint of the
certificate that made it, and:

- an owner over its own bound loses its own oldest entries, never another's;
- when the whole store is over its bound, the owner holding the most loses its oldest entry,
  so a client within its fair share keeps its entries while anyone holds more;
- totals are sized from the host's physical memory (:func:`memory_share`).

A client can still make many certificates; each then holds at most its own bound, the store
as a whole never exceeds the host's share, and a client whose entry was pushed out is told so
(its session is "unknown") and opens a new one (:mod:`sealfl.fl.infer.client` does this once).

:class:`RowBudget` bounds the rows one client may query per period: what a client learns from
its outputs grows with its rows (docs/trust.md), so a model owner caps it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from sealfl.errors import ConfigError, ProtocolError

V = TypeVar("V")

_FALLBACK_MEMORY = 8 << 30


def host_memory_bytes() -> int:
    """Return the host's physical memory in bytes (8 GiB where the OS does not say)."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_MEMORY
    if pages <= 0 or size <= 0:
        return _FALLBACK_MEMORY
    return int(pages * size)


def memory_share(fraction: float, *, floor: int, cap: int) -> int:
    """Return ``fraction`` of the host's memory, clamped to ``[floor, cap]`` bytes."""
    return max(floor, min(cap, int(host_memory_bytes() * fraction)))


class QuotaExceededError(ProtocolError):
    """A client asked for more than its own bound allows, even after dropping its own entries.

    Servers answer it with ``RESOURCE_EXHAUSTED`` (see :func:`sealfl.fl.infer.common.status_for`).
    """


@dataclass
class _Entry(Generic[V]):
    owner: str
    cost: int
    value: V


class FairStore(Generic[V]):
    """Entries keyed by id, each with an owner and a cost, bounded per owner and in total.

    Order is least recently used first (:meth:`get` with ``touch`` refreshes an entry). Not
    thread-safe: the caller holds its own lock around every call.

    Parameters
    ----------
    per_owner, total
        Most entries one owner may hold, and all owners together.
    per_owner_cost, total_cost
        Most cost (rows, bytes) one owner may hold, and all together; ``None``: unbounded.
    what
        What the entries are, for messages ("session", "prefetched query").
    """

    def __init__(
        self,
        *,
        per_owner: int,
        total: int,
        per_owner_cost: int | None = None,
        total_cost: int | None = None,
        what: str = "entry",
    ) -> None:
        for name, value in (
            ("per_owner", per_owner),
            ("total", total),
            ("per_owner_cost", per_owner_cost),
            ("total_cost", total_cost),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{what} bound {name}: expected >= 1, got {value}")
        self._per_owner = per_owner
        self._total = total
        self._per_owner_cost = per_owner_cost
        self._total_cost = total_cost
        self._what = what
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._owned: dict[str, OrderedDict[str, None]] = {}
        self._owner_cost: dict[str, int] = {}
        self._cost = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    @property
    def cost(self) -> int:
        """The cost of every entry together."""
        return self._cost

    def owners(self) -> int:
        """How many owners hold at least one entry."""
        return len(self._owned)

    def held_by(self, owner: str) -> tuple[int, int]:
        """Return how many entries ``owner`` holds and their cost."""
        return len(self._owned.get(owner, ())), self._owner_cost.get(owner, 0)

    def owner_of(self, key: str) -> str | None:
        """Return who owns ``key`` (``None`` if absent)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.owner

    def get(self, key: str, *, owner: str | None = None, touch: bool = False) -> V | None:
        """Return the value of ``key``; ``None`` if absent or (with ``owner``) owned by another.

        Another owner's entry is reported absent, so that a client cannot tell an id it
        guessed from one that does not exist. ``touch`` marks it most recently used.
        """
        entry = self._entries.get(key)
        if entry is None or (owner is not None and entry.owner != owner):
            return None
        if touch:
            self._entries.move_to_end(key)
            self._owned[entry.owner].move_to_end(key)
        return entry.value

    def pop(self, key: str, *, owner: str | None = None) -> V | None:
        """Remove ``key`` and return its value (``None`` as for :meth:`get`)."""
        entry = self._entries.get(key)
        if entry is None or (owner is not None and entry.owner != owner):
            return None
        self._remove(key)
        return entry.value

    def put(self, key: str, owner: str, value: V, *, cost: int = 1) -> list[V]:
        """Add (or replace) ``key`` for ``owner``; return the values dropped to make room.

        Raises
        ------
        QuotaExceededError
            If the entry alone costs more than one owner, or the whole store, may hold; the
            store is then unchanged.
        """
        for bound, whose in ((self._per_owner_cost, "one client"), (self._total_cost, "all")):
            if bound is not None and cost > bound:
                raise QuotaExceededError(
                    f"a {self._what} costing {cost} exceeds what {whose} may hold ({bound})"
                )
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(owner, cost, value)
        self._owned.setdefault(owner, OrderedDict())[key] = None
        self._owner_cost[owner] = self._owner_cost.get(owner, 0) + cost
        self._cost += cost
        dropped: list[V] = []
        while self._over_owner(owner):
            dropped.append(self._drop(next(iter(self._owned[owner]))))
        while self._over_total():
            dropped.append(self._drop(self._victim(keep=key)))
        return dropped

    def drop_where(self, stale: Callable[[V], bool]) -> list[V]:
        """Remove every entry whose value ``stale`` says is stale; return their values."""
        keys = [k for k, e in self._entries.items() if stale(e.value)]
        return [self._drop(k) for k in keys]

    # -- internals ---------------------------------------------------------------------------

    def _over_owner(self, owner: str) -> bool:
        count, cost = self.held_by(owner)
        if count <= 1:
            return False  # the newest entry stays (its cost was checked against the bound)
        return count > self._per_owner or (
            self._per_owner_cost is not None and cost > self._per_owner_cost
        )

    def _over_total(self) -> bool:
        if len(self._entries) <= 1:
            return False
        return len(self._entries) > self._total or (
            self._total_cost is not None and self._cost > self._total_cost
        )

    def _victim(self, *, keep: str) -> str:
        """Return the oldest key of the owner holding the most (cost, then count), not ``keep``."""
        best: tuple[int, int] | None = None
        victim = ""
        for owner, keys in self._owned.items():
            candidate = next((k for k in keys if k != keep), None)
            if candidate is None:
                continue
            weight = (self._owner_cost[owner], len(keys))
            if best is None or weight > best:
                best, victim = weight, candidate
        return victim

    def _drop(self, key: str) -> V:
        value = self._entries[key].value
        self._remove(key)
        return value

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        keys = self._owned[entry.owner]
        del keys[key]
        self._owner_cost[entry.owner] -= entry.cost
        self._cost -= entry.cost
        if not keys:
            del self._owned[entry.owner]
            del self._owner_cost[entry.owner]


class BudgetExhaustedError(ProtocolError):
    """A client has used the rows its budget allows for now (``RESOURCE_EXHAUSTED``)."""


class RowBudget:
    """Rows each client may query: ``rows`` per ``period_s``, refilled continuously.

    A token bucket per client certificate: a client starts with the whole budget, each query
    takes its rows, and the budget refills at ``rows / period_s`` per second up to ``rows``.
    The table of clients is bounded (``max_clients``); when it is full, the entry with the
    most budget left is forgotten first (forgetting a full bucket loses nothing, and
    forgetting any other would hand its client a fresh budget).

    Thread-safe.
    """

    def __init__(
        self,
        rows: int,
        *,
        period_s: float = 86400.0,
        max_clients: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rows < 1:
            raise ConfigError(f"row budget: expected at least 1 row, got {rows}")
        if not (math.isfinite(period_s) and period_s > 0):
            raise ConfigError(f"row budget period: expected > 0 seconds, got {period_s}")
        self.rows = rows
        self.period_s = period_s
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._left: dict[str, tuple[float, float]] = {}  # owner -> (rows left, when)

    def _level(self, owner: str, now: float) -> float:
        left, when = self._left.get(owner, (float(self.rows), now))
        return min(float(self.rows), left + (now - when) * self.rows / self.period_s)

    def left(self, owner: str) -> int:
        """Rows ``owner`` may query now."""
        with self._lock:
            return int(self._level(owner, self._clock()))

    def charge(self, owner: str, rows: int) -> None:
        """Take ``rows`` from ``owner``'s budget.

        Raises
        ------
        BudgetExhaustedError
            If fewer rows are left; nothing is taken then.
        """
        with self._lock:
            now = self._clock()
            level = self._level(owner, now)
            if rows > level:
                wait = (rows - level) * self.period_s / self.rows
                more = "" if rows <= self.rows else " (more than the whole budget: split it)"
                raise BudgetExhaustedError(
                    f"row budget of client sha256:{owner[:16]}: {int(level)} of {self.rows} rows "
                    f"per {self.period_s:g} s left, the query has {rows}{more}; the server's "
                    f"--row-budget allows it in {wait:.0f} s"
                )
            self._left[owner] = (level - rows, now)
            if len(self._left) > self._max_clients:
                others = (o for o in self._left if o != owner)
                del self._left[max(others, key=lambda o: self._level(o, now))]

    def refund(self, owner: str, rows: int) -> None:
        """Give back rows taken for a query that then failed before it ran."""
        with self._lock:
            now = self._clock()
            if owner in self._left:
                self._left[owner] = (min(float(self.rows), self._level(owner, now) + rows), now)

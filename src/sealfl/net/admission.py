"""Admission of calls on an asyncio listener: read deadlines and per-address limits.

Why: a peer can open a call and never send its request message. gRPC Python's threaded server
reads the request on a worker thread, so each such call holds a thread until the peer goes
away (measured: two such calls parked the two threads of the old enrolment listener for good,
eight the eight of a service listener; ``benchmarks/availability.py``). On an asyncio listener
a waiting call holds no thread, only a slot among the calls in flight, and these rules bound
the slots:

* the request must arrive within ``read_deadline_s`` of the call's start (then the call ends
  with ``DEADLINE_EXCEEDED``), and each further message of a request stream within
  ``idle_deadline_s`` of the one before;
* one source address holds at most ``max_calls_per_address`` calls at once, so a single host
  cannot take every slot; beyond it, and beyond ``max_calls`` in all, a call is refused at once
  with ``RESOURCE_EXHAUSTED`` marked *busy* (:data:`BUSY_METADATA_KEY`), before any handler
  runs, so a client may safely repeat it after a backoff.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sealfl.errors import ConfigError

__all__ = [
    "BUSY_METADATA_KEY",
    "CORE_LIMIT_DETAILS",
    "AdmissionPolicy",
    "PeerAdmission",
    "source_address",
]

BUSY_METADATA_KEY = "sealfl-busy"
"""Trailing metadata on a call refused because the server is busy (it never reached a handler)."""

CORE_LIMIT_DETAILS = "Concurrent RPC limit exceeded"
"""Start of gRPC's own details when ``maximum_concurrent_rpcs`` refuses a call (also busy)."""


@dataclass(frozen=True)
class AdmissionPolicy:
    """Bounds of an asyncio listener (see the module docstring for why each exists).

    Parameters
    ----------
    read_deadline_s
        Time from a call's start to the arrival of its (first) request message.
    idle_deadline_s
        Time allowed between two messages of a request stream.
    max_calls_per_address
        Calls in flight from one source address.
    max_calls
        Calls in flight in all (gRPC's ``maximum_concurrent_rpcs``).
    """

    read_deadline_s: float
    idle_deadline_s: float
    max_calls_per_address: int
    max_calls: int

    def __post_init__(self) -> None:
        for name in ("read_deadline_s", "idle_deadline_s", "max_calls_per_address", "max_calls"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"AdmissionPolicy.{name}: expected > 0, got {value}")
        if self.max_calls_per_address > self.max_calls:
            raise ConfigError(
                "AdmissionPolicy: expected max_calls_per_address <= max_calls, got "
                f"{self.max_calls_per_address} > {self.max_calls}"
            )


def source_address(peer: str) -> str:
    """Return the host part of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host, _, _ = rest.rpartition(":")
        return host.strip("[]") or rest
    return peer


class PeerAdmission:
    """Counts the calls in flight per source address and refuses those over the limit.

    Used from the listener's event loop only, so it needs no lock.
    """

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.policy = policy
        self._in_flight: Counter[str] = Counter()

    def enter(self, address: str) -> bool:
        """Count a call from ``address``; return False (and count nothing) if over its limit."""
        if self._in_flight[address] >= self.policy.max_calls_per_address:
            return False
        self._in_flight[address] += 1
        return True

    def leave(self, address: str) -> None:
        """Forget one call from ``address``."""
        self._in_flight[address] -= 1
        if self._in_flight[address] <= 0:
            del self._in_flight[address]

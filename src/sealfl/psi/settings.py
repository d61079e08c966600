"""What a PSI session may disclose, and to whom: the mode, the roles and the tunables."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from sealfl.errors import ConfigError

MAX_BATCH = 65536
"""Largest number of points in one frame (2 MiB of masked points; the gRPC limit is 8 MiB)."""


class Role(enum.StrEnum):
    """The two parties of vertical learning: the leader holds the labels."""

    LEADER = "leader"
    FOLLOWER = "follower"

    @property
    def peer(self) -> Role:
        """The other role."""
        return Role.FOLLOWER if self is Role.LEADER else Role.LEADER


class Mode(enum.StrEnum):
    """Disclosure mode, chosen by policy; both parties must declare the same one.

    ``both``
        Each party learns which of its own rows are in the intersection, in the aligned order.
    ``leader-only``
        The leader learns its rows and the order; the follower learns only the two set sizes.
    ``cardinality``
        Each party learns the set sizes and the intersection size, nothing about which rows.
    ``enclave-only``
        As ``both`` on the wire, but the aligned order is an opaque handle for the trainer
        inside the attested party: :meth:`PsiResult.intersection` refuses and summaries show
        only the count. Refused unless the transport is attested (mutual RA-TLS).
    """

    BOTH = "both"
    LEADER_ONLY = "leader-only"
    CARDINALITY = "cardinality"
    ENCLAVE_ONLY = "enclave-only"

    @classmethod
    def parse(cls, value: str, *, what: str = "mode") -> Mode:
        """Return the mode named ``value``, or raise :class:`ConfigError` listing the modes."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ConfigError(f"{what}: expected one of {names}, got {value!r}") from None


class Returns(enum.Enum):
    """How a party returns the peer's points masked under its own key."""

    ORDERED = "ordered"  # in the order received: the peer maps them to its rows
    SHUFFLED = "shuffled"  # all at once in a fresh random order: the peer can only count
    NONE = "none"  # not at all: the peer learns nothing but sizes


def returns_of(mode: Mode, sender: Role) -> Returns:
    """Return what ``sender`` returns to its peer under ``mode``."""
    if mode is Mode.CARDINALITY:
        return Returns.SHUFFLED
    if mode is Mode.LEADER_ONLY and sender is Role.LEADER:
        return Returns.NONE
    return Returns.ORDERED


@dataclass(frozen=True, kw_only=True)
class PsiSettings:
    """Tunables of one session.

    Parameters
    ----------
    mode
        The disclosure mode (:class:`Mode`); both parties must declare the same one.
    batch_size
        Ids per frame. Frames stream, so memory stays bounded by the compared values
        (``compare_bytes`` per id) rather than by the points (32 bytes per id).
    statistical_bits
        The compared values are truncated doubly-masked points; their length is chosen so that
        a false match anywhere among the ``n_leader·n_follower`` pairs has probability at most
        ``2^-statistical_bits`` (:func:`compare_bytes`). Both parties must declare the same.
    timeout_s
        How long to wait for the peer's next frame before giving up (ChannelError).
    """

    mode: Mode = Mode.BOTH
    batch_size: int = 4096
    statistical_bits: int = 64
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(str(self.mode)))
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ConfigError(f"batch_size: expected 1..{MAX_BATCH}, got {self.batch_size}")
        if not 40 <= self.statistical_bits <= 128:
            raise ConfigError(f"statistical_bits: expected 40..128, got {self.statistical_bits}")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(f"timeout_s: expected a positive number, got {self.timeout_s}")


def compare_bytes(statistical_bits: int, leader_size: int, follower_size: int) -> int:
    """Bytes of each doubly-masked value that are compared (and sent back).

    The doubly-masked points are pseudo-random, so a truncation to ``8·t`` bits collides for a
    given pair with probability ``2^-8t``, and anywhere with at most ``n_L·n_F·2^-8t``. ``t``
    is the least whole number of bytes with ``8t ≥ s + log2(n_L·n_F)``: at 10^6 × 10^6 and
    ``s = 64``, 13 bytes (104 bits; bound 2^-64.3). Never more than the 32 bytes there are.
    """
    pairs = max(1, leader_size) * max(1, follower_size)
    bits = statistical_bits + math.ceil(math.log2(pairs))
    return min(32, -(-bits // 8))

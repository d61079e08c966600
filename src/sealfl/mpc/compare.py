"""Secure comparison of an additively shared value with public thresholds.

Given additive shares ``u = u_0 + u_1 mod 2^M`` held by two parties, the sign bit of ``u`` is
``u_0[M-1] ^ u_1[M-1] ^ carry``, where ``carry`` is the carry into bit ``M-1`` when adding the
low ``M-1`` bits of the two shares. That carry is a two-input adder circuit: generate
``g = x_0 & x_1`` and propagate ``p = x_0 ^ x_1`` per bit (``x_i`` the low bits of ``u_i``,
each known to one party, so ``p`` is already XOR-shared and ``g`` takes one AND gate), then a
Kogge-Stone prefix over spans 1, 2, 4 ... combines them, one round of AND gates per span:

    G <- G ^ (P & (G << s)),   P <- P & (P << s)

After ``ceil(log2(M-1))`` spans bit ``M-2`` of ``G`` is the carry. ``u >= 0`` (as a signed
``M``-bit value) is the negated sign bit, left XOR-shared.

``M`` is 64 for an exact comparison of the logit, or 32 when comparing a coarsened logit: both
parties shift their 64-bit shares right by ``L`` bits and keep 32 bits. Because
``floor(a / 2^L) + floor(b / 2^L)`` is ``floor((a + b) / 2^L)`` or one less, modulo
``2^(64-L)``, the coarsened shares add up to the coarsened logit up to one unit in the last
place, with no chance of a wrap-around error; that unit is ``2^-10`` for the spline's knots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.mpc.binary import AndTriple, Words, and_close, and_open


@dataclass(frozen=True)
class ComparePlan:
    """The public shape of a batch of comparisons.

    Attributes
    ----------
    bits
        ``M``, the width of the compared values: 32 or 64.
    shift
        ``L``, how many low bits of the 64-bit shares are dropped first.
    thresholds
        Public thresholds at the compared scale, one per comparison column.
    """

    bits: int
    shift: int
    thresholds: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.bits not in (32, 64):
            raise ValueError(f"comparison width must be 32 or 64 bits, got {self.bits}")

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """Word type holding ``bits`` bits."""
        return np.uint32 if self.bits == 32 else np.uint64

    @property
    def spans(self) -> tuple[int, ...]:
        """Kogge-Stone spans: powers of two until they cover ``bits - 1`` positions."""
        out, s = [], 1
        while s < self.bits - 1:
            out.append(s)
            s *= 2
        return tuple(out)

    @property
    def rounds(self) -> int:
        """AND rounds: one for the generate bits, one per span."""
        return 1 + len(self.spans)

    def rights(self, rnd: int) -> int:
        """Right operands of the AND gates in round ``rnd`` (the last span skips ``P``)."""
        return 1 if rnd == 0 or rnd == len(self.spans) else 2

    def coarsen(self, share: npt.NDArray[np.uint64], party: int) -> Words:
        """Return this party's share of ``u = coarse(z) - t_k`` for each threshold, shape (n, K)."""
        coarse = (share >> np.uint64(self.shift)).astype(self.dtype)
        u = np.repeat(coarse[:, None], len(self.thresholds), axis=1)
        if party == 0:
            u -= self.thresholds.astype(self.dtype)
        return u


class Comparator:
    """One party's side of a batch of comparisons ``z >= t_k``.

    Parameters
    ----------
    party
        0 (the client) or 1 (the server).
    plan
        The public shape, identical on both sides.
    share
        This party's 64-bit share of ``z``, shape (n,).
    triples
        This party's AND triples, one per round.
    """

    def __init__(
        self,
        party: int,
        plan: ComparePlan,
        share: npt.NDArray[np.uint64],
        triples: Sequence[AndTriple],
    ) -> None:
        self._party = party
        self._plan = plan
        self._triples = triples
        u = plan.coarsen(share, party)
        top = plan.bits - 1
        low = u & plan.dtype((1 << top) - 1)
        self._sign = (u >> plan.dtype(top)) & plan.dtype(1)
        self._p = low
        zero = np.zeros_like(low)
        self._g = zero
        # Generate bits: party 0 holds x_0 as its share of the left operand, party 1 x_1 as
        # its share of the right operand; the other share of each is zero.
        self._first = (low, zero) if party == 0 else (zero, low)

    def _operands(self, rnd: int) -> tuple[Words, list[Words]]:
        if rnd == 0:
            return self._first[0], [self._first[1]]
        s = self._plan.dtype(self._plan.spans[rnd - 1])
        rights = [self._g << s]
        if self._plan.rights(rnd) == 2:
            rights.append(self._p << s)
        return self._p, rights

    def open(self, rnd: int) -> list[Words]:
        """Words this party opens in AND round ``rnd``."""
        left, rights = self._operands(rnd)
        return and_open(left, rights, self._triples[rnd])

    def close(self, rnd: int, own: Sequence[Words], peer: Sequence[Words]) -> None:
        """Finish AND round ``rnd`` with both parties' openings."""
        out = and_close(self._party, own, peer, self._triples[rnd])
        if rnd == 0:
            self._g = out[0]
            return
        self._g = self._g ^ out[0]
        if len(out) == 2:
            self._p = out[1]

    def result(self) -> npt.NDArray[np.uint8]:
        """Return this party's XOR share of ``[z >= t_k]``, shape (n, K), after the last round."""
        top = self._plan.bits - 2
        carry = (self._g >> self._plan.dtype(top)) & self._plan.dtype(1)
        bit = (self._sign ^ carry).astype(np.uint8)
        if self._party == 0:
            bit ^= 1
        return bit

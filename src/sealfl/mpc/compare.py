"""Secure comparison of an additively shared value with public thresholds.

Given additive shares ``u = u_0 + u_1 mod 2^M`` held by two parties, the sign bit of ``u`` is
``u_0[M-1] ^ u_1[M-1] ^ carry``, where ``carry`` is the carry into bit ``M-1`` when adding the
low ``M-1`` bits of the two shares. That carry is a two-input adder circuit: generate
``g_i = x_0[i] & x_1[i]`` and propagate ``p_i = x_0[i] ^ x_1[i]`` per bit (``x_j`` the low bits
of ``u_j``, each known to one party, so ``p`` is already XOR-shared and ``g`` takes one round of
AND gates), then a binary tree combines adjacent groups of bits, low ``lo`` and high ``hi``,
one round of AND gates per tree level:

    G = G_hi ^ (P_hi & G_lo),   P = P_hi & P_lo

After ``ceil(log2(M-1))`` levels one group remains and its ``G`` is the carry. ``u >= 0`` (as a
signed ``M``-bit value) is the negated sign bit, left XOR-shared.

The values are *bit-sliced*: bit ``i`` of every compared value is packed into its own plane of
64-bit words, so one word operation is 64 comparisons, and each tree level opens only the
planes it combines; the traffic halves with every level (about 150 bits per 32-bit comparison
in all, against 512 for the word-parallel Kogge-Stone prefix it replaces).

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

    def _levels(self) -> list[int]:
        """Pairs combined at each tree level (groups shrink from ``bits - 1`` to one)."""
        groups, out = self.bits - 1, []
        while groups > 1:
            out.append(groups // 2)
            groups = groups // 2 + groups % 2
        return out

    @property
    def rounds(self) -> int:
        """AND rounds: one for the generate bits, one per tree level."""
        return 1 + len(self._levels())

    def rights(self, rnd: int) -> int:
        """Right operands of the AND gates in round ``rnd`` (the last level skips ``P``)."""
        return 1 if rnd == 0 or rnd == self.rounds - 1 else 2

    def lanes(self, rnd: int) -> int:
        """Bit planes combined by the AND gates of round ``rnd``."""
        return self.bits - 1 if rnd == 0 else self._levels()[rnd - 1]

    def gate_shape(self, rnd: int, rows: int) -> tuple[int, int]:
        """Shape of round ``rnd``'s gate operands for ``rows`` values: (planes, words).

        Each threshold's column of ``rows`` comparisons fills whole words (it is padded to a
        multiple of 64), so a party whose share is the same for every column can copy words.
        """
        return (self.lanes(rnd), len(self.thresholds) * -(-rows // 64))

    def coarse(self, share: npt.NDArray[np.uint64]) -> Words:
        """Return this party's share of the coarsened value, ``M`` bits, shape (n,)."""
        return (share >> np.uint64(self.shift)).astype(self.dtype)


def bit_planes(values: Words, bits: int) -> npt.NDArray[np.uint64]:
    """Slice the low ``bits`` bits of ``values`` into planes of 64-bit words.

    Bit ``i`` of value ``j`` becomes bit ``j % 64`` of word ``j // 64`` of plane ``i``; the
    result has shape (bits, ceil(len / 64)).
    """
    n = values.shape[0]
    pad = -n % 64
    if pad:
        values = np.concatenate([values, np.zeros(pad, dtype=values.dtype)])
    width = values.dtype.itemsize
    unpacked = np.unpackbits(values.view(np.uint8).reshape(-1, width), axis=1, bitorder="little")
    planes = np.packbits(unpacked[:, :bits], axis=0, bitorder="little")
    return np.ascontiguousarray(planes.T).view(np.uint64)


def subtract_constants(
    planes: npt.NDArray[np.uint64], constants: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """Return the planes of ``v - c_k`` for every constant, columns side by side.

    A ripple-borrow subtractor run on whole planes (64 values per word operation) and on all
    constants at once: ``bits`` steps of a few operations on (constants, words) arrays, far
    cheaper than slicing ``len(constants)`` times as many values.
    """
    bits, words = planes.shape
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    c = constants.astype(np.uint64)
    out = np.empty((bits, len(c), words), dtype=np.uint64)
    borrow = np.zeros((len(c), words), dtype=np.uint64)
    for i in range(bits):
        a = planes[i][None, :]
        b = np.where((c >> np.uint64(i)) & np.uint64(1), ones, np.uint64(0))[:, None]
        out[i] = a ^ b ^ borrow
        borrow = (~a & (b | borrow)) | (b & borrow)
    return out.reshape(bits, len(c) * words)


def unslice(plane: npt.NDArray[np.uint64], count: int) -> npt.NDArray[np.uint8]:
    """Return the first ``count`` bits of one plane as a 0/1 ``uint8`` vector."""
    return np.unpackbits(plane.view(np.uint8), bitorder="little")[:count]


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
        This party's AND triples, one per round, shaped by :meth:`ComparePlan.gate_shape`.
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
        rows = share.shape[0]
        self._rows = rows
        padded = -(-rows // 64) * 64
        k = len(plan.thresholds)
        top = plan.bits - 1
        coarse = np.zeros(padded, dtype=plan.dtype)
        coarse[:rows] = plan.coarse(share)
        planes = bit_planes(coarse, plan.bits)
        if party == 0:
            # Party 0 subtracts the thresholds: one column of values per threshold.
            planes = subtract_constants(planes, plan.thresholds)
        else:
            # Party 1's share is the same in every column.
            planes = np.tile(planes, (1, k))
        x = planes[:top]  # low bits, one plane per bit position
        self._sign = unslice(planes[top], k * padded)
        zero = np.zeros_like(x)
        # Generate bits: party 0 holds x_0 as its share of the left operand, party 1 x_1 as
        # its share of the right operand; the other share of each is zero.
        self._first = (x, zero) if party == 0 else (zero, x)
        self._p = x  # propagate bits are XOR-shared as they stand
        self._g = zero

    def _operands(self, rnd: int) -> tuple[Words, list[Words]]:
        if rnd == 0:
            return self._first[0], [self._first[1]]
        pairs = self._plan.lanes(rnd)
        p_hi = self._p[1 : 2 * pairs : 2]
        rights = [self._g[0 : 2 * pairs : 2]]
        if self._plan.rights(rnd) == 2:
            rights.append(self._p[0 : 2 * pairs : 2])
        return p_hi, rights

    def open(self, rnd: int) -> list[Words]:
        """Return the words this party opens in AND round ``rnd``."""
        left, rights = self._operands(rnd)
        return and_open(left, rights, self._triples[rnd])

    def close(self, rnd: int, own: Sequence[Words], peer: Sequence[Words]) -> None:
        """Finish AND round ``rnd`` with both parties' openings."""
        out = and_close(self._party, own, peer, self._triples[rnd])
        if rnd == 0:
            self._g = out[0]
            return
        pairs = self._plan.lanes(rnd)
        g = self._g[1 : 2 * pairs : 2] ^ out[0]
        p = out[1] if len(out) == 2 else np.zeros_like(g)
        if self._g.shape[0] % 2:  # the top group has no partner at this level
            g = np.concatenate([g, self._g[-1:]])
            p = np.concatenate([p, self._p[-1:]])
        self._g, self._p = g, p

    def result(self) -> npt.NDArray[np.uint8]:
        """Return this party's XOR share of ``[z >= t_k]``, shape (n, K), after the last round."""
        carry = unslice(self._g[0], self._sign.shape[0])
        bit = self._sign ^ carry
        if self._party == 0:
            bit ^= 1
        k = len(self._plan.thresholds)
        return np.ascontiguousarray(bit.reshape(k, -1)[:, : self._rows].T)

"""Secure comparison of an additively shared value with public thresholds.

Given additive shares ``u = u_0 + u_1 mod 2^M`` held by two parties, the sign bit of ``u`` is
``u_0[M-1] ^ u_1[M-1] ^ carry``, where ``carry`` is the carry into bit ``M-1`` when adding the
low ``M-1`` bits of the two shares: a two-input adder whose addends are each known in the
clear to one party. A carry-lookahead adder computes it in two kinds of round:

1. Leaves (:class:`~sealfl.mpc.binary.LeafGate`): the generate ``G`` and propagate ``P`` bits of
   every group of four positions, in one round from products of each party's own bits.
2. Tree levels (:class:`~sealfl.mpc.binary.CarryGate`): groups combine, lowest first. A level
   of radix ``r`` computes

       G = G_(r-1) ^ P_(r-1) G_(r-2) ^ ... ^ P_(r-1) ... P_1 G_0,   P = P_(r-1) ... P_0

   in one round (the terms are exclusive, so their OR is their XOR). The last level needs only
   ``G``, which is the carry.

``u >= 0`` (as a signed ``M``-bit value) is the negated sign bit, left XOR-shared.

Rounds are what a query waits for (each is half a network round trip), so the tree is as flat
as the dealer material allows: the 31 low bits of a 32-bit comparison make 8 leaf groups,
combined by one radix-8 level (367 mask products per comparison, about 46 bytes); the 63 of a
64-bit one make 16, combined by two radix-4 levels. Two rounds, or three, where a binary tree
over single bits takes six or seven.

The values are *bit-sliced*: bit ``i`` of every compared value is packed into its own plane of
64-bit words, so one word operation is 64 comparisons, and each round opens only the planes it
combines.

``M`` is 64 for an exact comparison of the logit, or 32 when comparing a coarsened logit: both
parties shift their 64-bit shares right by ``L`` bits and keep 32 bits. Because
``floor(a / 2^L) + floor(b / 2^L)`` is ``floor((a + b) / 2^L)`` or one less, modulo
``2^(64-L)``, the coarsened shares add up to the coarsened logit up to one unit in the last
place, with no chance of a wrap-around error; that unit is ``2^-10`` for the spline's knots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from sealfl.mpc.binary import CarryGate, GateMaterial, LeafGate, Words, carry_gate, leaf_gate

LEAF_WIDTH = 4
"""Adder positions per leaf group (15 opened products each; see LeafGate)."""


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
    def groups(self) -> int:
        """Leaf groups: the ``M - 1`` low positions in fours (the top group padded)."""
        return -(-(self.bits - 1) // LEAF_WIDTH)

    @cached_property
    def radices(self) -> tuple[int, ...]:
        """Groups combined per tree level, lowest level first (see the module docstring).

        One level if the leaves are at most eight (the last level needs no ``P``, and radix 8
        without it takes 367 mask products); otherwise radix-4 levels.
        """
        if self.groups <= 8:
            return (self.groups,)
        levels = 1
        while 4**levels < self.groups:
            levels += 1
        return (4,) * levels

    @property
    def rounds(self) -> int:
        """Rounds of gates: one for the leaves, one per tree level."""
        return 1 + len(self.radices)

    def lanes(self, rnd: int) -> int:
        """Return how many groups enter tree round ``rnd`` (1 or later)."""
        lanes = self.groups
        for radix in self.radices[: rnd - 1]:
            lanes = -(-lanes // radix)
        return lanes

    def gate(self, rnd: int) -> LeafGate | CarryGate:
        """Return the gate of round ``rnd``, identical at both parties and the dealer."""
        if rnd == 0:
            return leaf_gate(LEAF_WIDTH, len(self.thresholds))
        return carry_gate(self.radices[rnd - 1], with_p=rnd < self.rounds - 1)

    def words(self, rows: int) -> int:
        """Words of one plane for one threshold: ``rows`` bits, padded to a multiple of 64."""
        return -(-rows // 64)

    def mask_shape(self, rnd: int, party: int, rows: int) -> tuple[int, ...]:
        """Shape of what ``party`` opens in round ``rnd``, and of its masks.

        Each threshold's column of ``rows`` comparisons fills whole words, so party 1, whose
        share is the same for every threshold, opens one column in round 0.
        """
        cols = len(self.thresholds) * self.words(rows)
        gate = self.gate(rnd)
        if isinstance(gate, LeafGate):
            return (self.groups, len(gate.subsets), cols if party == 0 else self.words(rows))
        groups = -(-self.lanes(rnd) // self.radices[rnd - 1])
        return (gate.variables, groups, cols)

    def product_shape(self, rnd: int, rows: int) -> tuple[int, ...]:
        """Shape of a party's share of round ``rnd``'s mask products (the dealt material)."""
        gate = self.gate(rnd)
        shape = self.mask_shape(rnd, 0, rows)
        if isinstance(gate, LeafGate):
            return (2, shape[0], shape[2])
        return (len(gate.closure), *shape[1:])

    def coarse(self, share: npt.NDArray[np.uint64]) -> npt.NDArray[np.unsignedinteger]:
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
    gates
        This party's dealer material, one per round, shaped by :class:`ComparePlan`.
    """

    def __init__(
        self,
        party: int,
        plan: ComparePlan,
        share: npt.NDArray[np.uint64],
        gates: Sequence[GateMaterial],
    ) -> None:
        self._party = party
        self._plan = plan
        self._gates = gates
        rows = share.shape[0]
        self._rows = rows
        padded = plan.words(rows) * 64
        k = len(plan.thresholds)
        top = plan.bits - 1
        coarse = np.zeros(padded, dtype=plan.dtype)
        coarse[:rows] = plan.coarse(share)
        planes = bit_planes(coarse, plan.bits)
        if party == 0:
            # Party 0 subtracts the thresholds: one column of values per threshold.
            planes = subtract_constants(planes, plan.thresholds)
        self._sign = unslice(planes[top] if party == 0 else np.tile(planes[top], k), k * padded)
        # The low positions in groups of four, the top group padded with positions that
        # propagate (party 0's bit 1, party 1's 0) so the carry passes through them.
        pad = plan.groups * LEAF_WIDTH - top
        fill = np.uint64(0xFFFFFFFFFFFFFFFF if party == 0 else 0)
        own = np.concatenate([planes[:top], np.full((pad, planes.shape[1]), fill, np.uint64)])
        self._leaf = leaf_gate(LEAF_WIDTH, k).inputs(own)
        self._g: Words = np.zeros((0, 0), dtype=np.uint64)  # shares of G and P, per round
        self._p: Words = self._g

    def _inputs(self, rnd: int) -> Words:
        """Round ``rnd``'s gate inputs: the groups' ``G`` and ``P`` planes, stacked."""
        if rnd == 0:
            return self._leaf
        radix = self._plan.radices[rnd - 1]
        gate = self._plan.gate(rnd)
        assert isinstance(gate, CarryGate)
        lanes, cols = self._g.shape
        pad = -lanes % radix
        g, p = self._g, self._p
        if pad:  # empty top groups: generate nothing, propagate everything (P = 1 is party 0's)
            fill = np.uint64(0xFFFFFFFFFFFFFFFF) if self._party == 0 else np.uint64(0)
            g = np.concatenate([g, np.zeros((pad, cols), dtype=np.uint64)])
            p = np.concatenate([p, np.full((pad, cols), fill, dtype=np.uint64)])
        g3 = g.reshape(-1, radix, cols)
        p3 = p.reshape(-1, radix, cols)
        first_p = 0 if gate.with_p else 1
        return np.concatenate(
            [g3[:, : radix - 1].transpose(1, 0, 2), p3[:, first_p:].transpose(1, 0, 2)]
        )

    def open(self, rnd: int) -> Words:
        """Return the planes this party opens in round ``rnd``."""
        gate = self._plan.gate(rnd)
        return gate.open(self._inputs(rnd), self._gates[rnd])

    def close(self, rnd: int, own: Words, peer: Words) -> None:
        """Finish round ``rnd`` with both parties' openings."""
        gate = self._plan.gate(rnd)
        material = self._gates[rnd]
        if isinstance(gate, LeafGate):
            leaves = gate.close(self._party, own, peer, material)
            self._g, self._p = leaves[0], leaves[1]
            return
        radix = self._plan.radices[rnd - 1]
        out = gate.close(own, peer, material)
        # Each group's top G enters linearly; a padded top lane (past the last) has G = 0.
        top = self._g[radix - 1 :: radix]
        out[0, : len(top)] ^= top
        self._g = out[0]
        self._p = out[1] if len(out) == 2 else np.zeros_like(out[0])

    def result(self) -> npt.NDArray[np.uint8]:
        """Return this party's XOR share of ``[z >= t_k]``, shape (n, K), after the last round."""
        carry = unslice(self._g[0], self._sign.shape[0])
        bit = self._sign ^ carry
        if self._party == 0:
            bit ^= 1
        k = len(self._plan.thresholds)
        return np.ascontiguousarray(bit.reshape(k, -1)[:, : self._rows].T)

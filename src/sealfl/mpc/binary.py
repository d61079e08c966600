"""One-round gates on XOR-shared bit planes, with masks from the dealer.

A bit plane is an array of machine words (``uint64``), one bit per position; it is shared as
``x = x_0 ^ x_1``. XOR and AND with a public plane are local; products of shared planes need
one round of communication and correlated randomness. Two gates are built here, both from one
idea (Beaver's, over GF(2)): every input is opened masked by a random plane, and the dealer
supplies shares of the products of those masks, so the product of the inputs follows locally.

:class:`LeafGate`: the generate and propagate bits of groups of adder positions whose two
addends are known in the clear, one to each party. Each party opens only products of its own
bits, and party 1's addend may be shared by ``copies`` blocks of party 0's (one comparison
value against many thresholds), so it is opened once rather than ``copies`` times.

:class:`CarryGate`: the carry-lookahead combination of several groups' generate and propagate
bits, shared, in one round: products of many shared planes at once, with the dealer sharing
the products of their masks (:mod:`sealfl.mpc.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from itertools import combinations

import numpy as np
import numpy.typing as npt

Words = npt.NDArray[np.uint64]
IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class GateMaterial:
    """One party's dealer material for one gate.

    Attributes
    ----------
    masks
        This party's share of each input's mask. :class:`LeafGate`: the masks of the party's
        own products. :class:`CarryGate`: shape ``(variables, *plane)``.
    products
        This party's share of the mask products. :class:`LeafGate`: of the two sums (for
        ``G`` and ``P``), shape ``(2, groups, cols)``. :class:`CarryGate`: the table its terms
        are read from, made once by :meth:`CarryGate.material`.
    """

    masks: Words
    products: Words


@dataclass(frozen=True)
class LeafGate:
    """Generate and propagate bits of groups of ``width`` adder positions, in one round.

    The adder's inputs are known in the clear: party 0 holds the bits ``a`` of one addend and
    party 1 the bits ``b`` of the other, with ``copies`` blocks of party 0's planes side by
    side along the last axis sharing party 1's (one value compared with many thresholds).
    For one group, ``G = [A + B >= 2^width]`` and ``P = [A + B = 2^width - 1]``; as GF(2)
    polynomials

        G = XOR_i  a_i b_i AND_{j > i} (a_j ^ b_j),      P = AND_j (a_j ^ b_j)

    and expanding every ``a_j ^ b_j`` makes each a XOR of products ``a_S b_T`` of party 0's bits
    over a set ``S`` and party 1's over a set ``T``. Each party opens the products of its own
    bits over every nonempty subset, masked: ``d_S = a_S ^ x_S``, ``e_T = b_T ^ y_T``. Then

        a_S b_T = a_S e_T  ^  y_T d_S  ^  x_S y_T

    where party 0 computes ``a_S e_T`` and party 1 ``y_T d_S``, and the dealer shares the XOR of
    ``x_S y_T`` over all pairs of one output: one plane per output, however many pairs. So a
    group of four positions costs one round, as one position's generate bit did, and saves
    two tree levels; the price is 15 opened planes per group instead of 4.
    """

    width: int
    copies: int

    def widen(self, planes: Words) -> Words:
        """Repeat party 1's planes to party 0's width."""
        return np.tile(planes, (1,) * (planes.ndim - 1) + (self.copies,))

    @cached_property
    def subsets(self) -> tuple[tuple[int, ...], ...]:
        """The nonempty subsets of the group's positions, in the order their products are opened."""
        return tuple(
            s for size in range(1, self.width + 1) for s in combinations(range(self.width), size)
        )

    @cached_property
    def _pairs(self) -> tuple[IndexArray, IndexArray, IndexArray, IndexArray]:
        """``(S, T)`` index pairs of the cross products in ``G`` and in ``P``."""
        index = {s: i for i, s in enumerate(self.subsets)}
        g_pairs = [
            (index[(i, *u)], index[(i, *sorted(set(range(i + 1, self.width)) - set(u)))])
            for i in range(self.width)
            for size in range(self.width - i)
            for u in combinations(range(i + 1, self.width), size)
        ]
        p_pairs = [
            (index[u], index[tuple(sorted(set(range(self.width)) - set(u)))])
            for size in range(1, self.width)
            for u in combinations(range(self.width), size)
        ]
        g = np.array(g_pairs, dtype=np.intp).reshape(-1, 2)
        p = np.array(p_pairs, dtype=np.intp).reshape(-1, 2)  # none for a single position
        return g[:, 0], g[:, 1], p[:, 0], p[:, 1]

    def inputs(self, bits: Words) -> Words:
        """Return the products of a party's own bits over every subset: (groups, subsets, cols).

        ``bits`` holds one plane per adder position, ``width`` positions per group.
        """
        lanes = bits.reshape(-1, self.width, bits.shape[-1])
        out = np.empty((lanes.shape[0], len(self.subsets), bits.shape[-1]), dtype=np.uint64)
        for i, s in enumerate(self.subsets):
            if len(s) == 1:
                out[:, i] = lanes[:, s[0]]
            else:
                prefix = self.subsets.index(s[:-1])
                np.bitwise_and(out[:, prefix], lanes[:, s[-1]], out=out[:, i])
        return out

    @staticmethod
    def open(inputs: Words, material: GateMaterial) -> Words:
        """Return the planes this party opens: its products XOR its masks."""
        return inputs ^ material.masks

    def close(self, party: int, own: Words, peer: Words, material: GateMaterial) -> Words:
        """Return this party's shares of every group's ``G`` and ``P``: (2, groups, cols)."""
        full = len(self.subsets) - 1  # the product of all the group's bits
        mine = own ^ material.masks  # this party's own products, in the clear
        if party == 0:
            out = self._cross(mine, peer)
            out[1] ^= mine[:, full]
        else:
            out = self._cross(peer, material.masks)
            out[1] ^= self.widen(mine[:, full])
        return out ^ material.products

    def _cross(self, wide: Words, narrow: Words) -> Words:
        """XOR over each output's pairs of ``wide[S] & narrow[T]``: (2, groups, cols).

        ``wide`` has party 0's width, ``narrow`` party 1's (one block, broadcast to every copy).
        """
        g_s, g_t, p_s, p_t = self._pairs
        groups, _, cols = wide.shape
        blocks = wide.reshape(groups, -1, self.copies, cols // self.copies)
        one = narrow[:, :, None, :]
        g = np.bitwise_xor.reduce(blocks[:, g_s] & one[:, g_t], axis=1)
        p = np.bitwise_xor.reduce(blocks[:, p_s] & one[:, p_t], axis=1)
        return np.stack([g, p]).reshape(2, groups, cols)

    def correction(self, masks_0: Words, masks_1: Words, products_0: Words) -> Words:
        """Return party 1's shares of the mask-product sums given party 0's (the dealer's)."""
        return self._cross(masks_0, masks_1) ^ products_0


@dataclass(frozen=True)
class _Bracket:
    """One bracket of a carry gate's nesting: the mask-product sets it reads, ``a`` and ``m``."""

    with_a: list[tuple[int, ...]]
    plain: list[tuple[int, ...]]
    add: int | None
    mult: int


@dataclass(frozen=True)
class CarryGate:
    """Combine the ``G`` and ``P`` of ``radix`` adjacent groups, lowest first, in one round.

    ``G = G_(r-1) ^ P_(r-1) (G_(r-2) ^ P_(r-2) (... ^ P_1 G_0))`` and, unless this is the last
    tree level, ``P = P_(r-1) ... P_0``. Inputs, in order: ``G_0 .. G_(r-2)`` then
    ``P_0 .. P_(r-1)`` (``P_1 ..`` without ``P``); ``G_(r-1)`` enters linearly, so it is never
    opened and each party adds its own share.

    Every input ``x_v`` is opened as ``d_v = x_v ^ m_v``. Expanding the products, a monomial
    over a set ``T`` of inputs is ``XOR_{S subset of T} d_(T-S) & m_S``, where ``d_U`` is the
    (public) AND of the opened planes in ``U`` and ``m_S`` the AND of the masks in ``S``: the
    dealer shares ``m_S`` for every ``S`` of two or more inputs of some monomial (the
    :attr:`closure`), each party's share of ``m_v`` is its own mask, and party 0 alone adds the
    term with ``S`` empty. That is Beaver's AND gate for two inputs, and lets one round do
    what a binary tree does in ``log2(radix)``.

    The expansion of ``G`` has ``2^radix`` terms. :meth:`close` evaluates it along the nesting
    above rather than term by term: with ``T_i(X)`` the expansion of the ``i``-th bracket with
    every mask product extended by the set ``X`` of ``P``'s still to multiply,

        T_i(X) = d_Gi m_X ^ m_(X+Gi) ^ d_Pi T_(i-1)(X) ^ T_(i-1)(X+Pi),

    one vectorised step per bracket over all ``X`` at once, a few dozen array operations in
    all instead of one per term; the material is laid out in the order the brackets read it.
    """

    radix: int
    with_p: bool

    @property
    def variables(self) -> int:
        """How many input planes are opened."""
        return self.radix - 1 + self.radix - (0 if self.with_p else 1)

    def _g(self, i: int) -> int:
        return i

    def _p(self, j: int) -> int:
        return self.radix - 1 + j - (0 if self.with_p else 1)

    @cached_property
    def monomials(self) -> tuple[tuple[int, ...], ...]:
        """The products the outputs expand into: ``G_i P_(i+1) ... P_(r-1)``, and all ``P``'s."""
        r = self.radix
        out = [(self._g(i), *(self._p(j) for j in range(i + 1, r))) for i in range(r - 1)]
        if self.with_p:
            out.append(tuple(self._p(j) for j in range(r)))
        return tuple(out)

    @cached_property
    def closure(self) -> tuple[tuple[int, ...], ...]:
        """Every subset of two or more inputs of some monomial: the mask products dealt."""
        subsets = {
            s
            for m in self.monomials
            for size in range(2, len(m) + 1)
            for s in combinations(m, size)
        }
        return tuple(sorted(subsets, key=lambda s: (len(s), s)))

    @cached_property
    def _rows(self) -> dict[tuple[int, ...], int]:
        """Row of each mask product in the material's table (see :meth:`material`)."""
        rows = {(): 0} | {(v,): 1 + v for v in range(self.variables)}
        return rows | {s: 1 + self.variables + j for j, s in enumerate(self.closure)}

    def _chain(self, base: int, steps: list[tuple[int | None, int]]) -> list[_Bracket]:
        """Return the brackets of ``x_(m_k) (... (a_1 ^ x_(m_1) x_base))`` (see the class doc).

        Per bracket: the sets ``X + a`` and ``X`` for every ``X`` (a subset of the multipliers
        still to come, bit ``t`` standing for the ``t``-th of them), ``a`` (``base`` itself at
        the start, none where the step only multiplies) and the multiplier ``m``.
        """
        out = []
        mults = [m for _, m in steps]
        for level in range(len(steps) + 1):
            pending = mults[level:]
            sets = [
                tuple(sorted(pending[t] for t in range(len(pending)) if x >> t & 1))
                for x in range(1 << len(pending))
            ]
            add = base if level == 0 else steps[level - 1][0]
            mult = -1 if level == 0 else steps[level - 1][1]
            with_a = [] if add is None else [tuple(sorted((*s, add))) for s in sets]
            out.append(_Bracket(with_a, sets if add is not None else [], add, mult))
        return out

    @cached_property
    def _layout(self) -> tuple[IndexArray, list[list[tuple[int, int, int | None, int]]]]:
        """Where each bracket's mask products sit in the material (see :meth:`material`).

        Returns the table rows to gather, in order, and per output chain its brackets as
        ``(offset, size, a, m)``: rows ``offset .. +size`` hold ``m_(X+a)``, the next ``size``
        rows ``m_X``.
        """
        r = self.radix
        g_steps: list[tuple[int | None, int]] = [(self._g(i), self._p(i)) for i in range(1, r - 1)]
        chains = [self._chain(self._g(0), [*g_steps, (None, self._p(r - 1))])]
        if self.with_p:
            chains.append(self._chain(self._p(0), [(None, self._p(j)) for j in range(1, r)]))
        rows: list[int] = []
        layout = []
        for chain in chains:
            brackets = []
            for b in chain:
                brackets.append((len(rows), len(b.with_a), b.add, b.mult))
                rows += [self._rows[s] for s in (*b.with_a, *b.plain)]
            layout.append(brackets)
        return np.array(rows, dtype=np.intp), layout

    def material(self, party: int, masks: Words, products: Words) -> GateMaterial:
        """Return ``party``'s material for this gate, from its mask and product shares.

        Its ``products`` are the mask products each bracket of :meth:`close` reads, laid out
        in the order it reads them (:meth:`_layout`), so that the online step only slices:
        taken from the table of the empty product (all ones at party 0, which alone adds it;
        zeros at party 1), the mask shares and the shares of the :attr:`closure` products.
        Made once, when the material is expanded.
        """
        fill = np.uint64(0xFFFFFFFFFFFFFFFF if party == 0 else 0)
        empty = np.full((1, *masks.shape[1:]), fill, dtype=np.uint64)
        table = np.concatenate([empty, masks, products])
        return GateMaterial(masks=masks, products=table[self._layout[0]])

    @staticmethod
    def open(inputs: Words, material: GateMaterial) -> Words:
        """Return the planes this party opens: its input shares XOR its mask shares."""
        return inputs ^ material.masks

    def close(self, own: Words, peer: Words, material: GateMaterial) -> Words:
        """Return this party's shares of ``G ^ G_(r-1)`` and, with ``P``, of ``P``: (1|2, ...).

        Which party's is implied by ``material`` (see :meth:`material`).
        """
        d = own ^ peer
        blocks = material.products
        out = []
        for brackets in self._layout[1]:
            acc: Words | None = None
            for offset, size, add, mult in brackets:
                if acc is None:  # the innermost bracket: d_a m_X ^ m_(X+a)
                    assert add is not None
                    acc = blocks[offset + size : offset + 2 * size] & d[add]
                    acc ^= blocks[offset : offset + size]
                    continue
                step = acc[0::2] & d[mult]
                step ^= acc[1::2]
                if add is not None:
                    step ^= blocks[offset : offset + size]
                    step ^= blocks[offset + size : offset + 2 * size] & d[add]
                acc = step
            assert acc is not None
            out.append(acc[0])
        return np.stack(out)

    def correction(self, masks_0: Words, masks_1: Words, products_0: Words) -> Words:
        """Return party 1's shares of the mask products given party 0's (the dealer's).

        The products are built in the rows of :meth:`material`'s table (:attr:`_rows`), each one
        AND of its prefix (all its inputs but the last: a mask, or a smaller closure product,
        since the closure holds every subset of a monomial) and its last mask.
        """
        full = masks_0 ^ masks_1
        first = 1 + self.variables  # row 0, the empty product, is not needed here
        table = np.empty((first + len(self.closure), *full.shape[1:]), dtype=np.uint64)
        table[1:first] = full
        for i, s in enumerate(self.closure, start=first):
            np.bitwise_and(table[self._rows[s[:-1]]], full[s[-1]], out=table[i])
        products = table[first:]
        products ^= products_0
        return products


@cache
def carry_gate(radix: int, *, with_p: bool) -> CarryGate:
    """Return the (shared, cached) gate combining ``radix`` groups."""
    return CarryGate(radix, with_p)


@cache
def leaf_gate(width: int, copies: int) -> LeafGate:
    """Return the (shared, cached) leaf gate: its index tables are built once."""
    return LeafGate(width, copies)

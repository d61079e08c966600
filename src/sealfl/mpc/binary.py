"""One-round gates on XOR-shared bit planes, with masks from the dealer.

A bit plane is an array of machine words (``uint64``), one bit per position; it is shared as
``x = x_0 ^ x_1``. XOR and AND with a public plane are local; products of shared planes need
one round of communication and correlated randomness. Two gates are built here, both from one
idea (Beaver's, over GF(2)): every input is opened masked by a random plane, and the dealer
supplies shares of the products of those masks, so the product of the inputs follows locally.

:class:`OwnerAnd`: ``x & y`` where party 0 knows ``x`` and party 1 knows ``y`` in the clear
(the generate bits of an adder). Each party opens only its own input, masked by a mask only it
holds, and party 1's input may be shared by ``copies`` blocks of party 0's (one comparison
value against many thresholds), so it is opened once rather than ``copies`` times.

:class:`ProductGate`: any set of monomials (ANDs of several shared planes) in one round. With
openings ``d_v = x_v ^ m_v`` the product over a set ``T`` expands as

    AND_{v in T} x_v  =  XOR_{S subset of T}  d_{T-S} & m_S

where ``d_U`` is the (public) AND of the opened planes in ``U`` and ``m_S`` the AND of the masks
in ``S``; the dealer supplies shares of ``m_S`` for every ``S`` of two or more variables, each
party's share of ``m_v`` is its own mask, and party 0 alone adds ``d_T`` (``S`` empty). That is
Beaver's AND gate for two variables, and lets a carry-lookahead adder combine four groups of
bits per round instead of two (:mod:`sealfl.mpc.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
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
        This party's share of each input's mask. :class:`OwnerAnd`: the mask of the party's
        own input. :class:`ProductGate`: shape ``(variables, *plane)``.
    products
        This party's share of the mask products. :class:`OwnerAnd`: of ``m_x & m_y``, shaped
        like party 0's input. :class:`ProductGate`: the table its terms are read from, made
        once by :meth:`ProductGate.material`.
    """

    masks: Words
    products: Words


@dataclass(frozen=True)
class OwnerAnd:
    """``x & y`` for ``x`` known to party 0 and ``y`` to party 1, in one round.

    Party 0's planes are ``copies`` blocks side by side along the last axis, each combined
    with the same ``y``: party 1's planes have ``1 / copies`` of the width.
    """

    copies: int

    def widen(self, planes: Words) -> Words:
        """Repeat party 1's planes to party 0's width."""
        return np.tile(planes, (1,) * (planes.ndim - 1) + (self.copies,))

    @staticmethod
    def open(own_input: Words, material: GateMaterial) -> Words:
        """Return the plane this party opens: its input XOR its mask."""
        return own_input ^ material.masks

    def close(self, party: int, own: Words, peer: Words, material: GateMaterial) -> Words:
        """Return this party's share of ``x & y`` from its opening and the peer's.

        With ``d = x ^ a`` and ``e = y ^ b``: ``x & y = (d & e) ^ (d & b) ^ (a & e) ^ (a & b)``.
        Party 0 holds ``a``, party 1 holds ``b``, and ``a & b`` is shared by the dealer.
        """
        if party == 0:
            e = self.widen(peer)
            return np.asarray((material.masks & e) ^ (own & e) ^ material.products)
        return np.asarray((self.widen(material.masks) & peer) ^ material.products)

    def correction(self, mask_x: Words, mask_y: Words, product_0: Words) -> Words:
        """Return party 1's share of ``m_x & m_y`` given party 0's random one (the dealer's)."""
        return np.asarray((mask_x & self.widen(mask_y)) ^ product_0)


@dataclass(frozen=True)
class ProductGate:
    """Shares of several monomials of shared planes, in one round.

    Attributes
    ----------
    variables
        How many input planes are opened.
    monomials
        Each a sorted tuple of input indices (two or more); the gate outputs their ANDs.
    """

    variables: int
    monomials: tuple[tuple[int, ...], ...]

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
    def _plan(self) -> tuple[list[int], list[int], IndexArray, IndexArray, list[int]]:
        """Index tables for :meth:`close`, computed once per gate.

        The opened ANDs ``d_U`` a term needs are built in order: the empty set, the single
        inputs, then each larger set as ``d_(U minus its last input) & d_last`` (``parents``
        and ``lasts`` give both, for the sets after the singles). Each monomial ``T`` is the
        XOR over ``S`` of ``d_(T-S) & m_S``: term ``i`` pairs opened AND ``u[i]`` with row
        ``s[i]`` of the material's table, monomials' terms consecutive from ``starts``.
        """
        closure = {c: 1 + self.variables + j for j, c in enumerate(self.closure)}
        where: dict[tuple[int, ...], int] = {(): 0} | {(v,): 1 + v for v in range(self.variables)}
        parents: list[int] = []
        lasts: list[int] = []
        u_idx: list[int] = []
        s_idx: list[int] = []
        starts: list[int] = []
        for mono in self.monomials:
            starts.append(len(u_idx))
            for size in range(len(mono) + 1):
                for sub in combinations(mono, size):
                    rest = tuple(v for v in mono if v not in sub)
                    for end in range(2, len(rest) + 1):  # prefixes first
                        if rest[:end] not in where:
                            where[rest[:end]] = len(where)
                            parents.append(where[rest[: end - 1]])
                            lasts.append(rest[end - 1])
                    u_idx.append(where[rest])
                    s_idx.append(0 if not sub else 1 + sub[0] if size == 1 else closure[sub])
        u = np.array(u_idx, dtype=np.intp)
        return parents, lasts, u, np.array(s_idx, dtype=np.intp), starts

    def material(self, party: int, masks: Words, products: Words) -> GateMaterial:
        """Return ``party``'s material for this gate, from its mask and product shares.

        Its ``products`` is the table :meth:`close` reads terms from: the empty product (all
        ones at party 0, which alone adds it; zeros at party 1), the mask shares, then the
        shares of the :attr:`closure` products. Made once, when the material is expanded.
        """
        fill = np.uint64(0xFFFFFFFFFFFFFFFF if party == 0 else 0)
        empty = np.full((1, *masks.shape[1:]), fill, dtype=np.uint64)
        return GateMaterial(masks=masks, products=np.concatenate([empty, masks, products]))

    @staticmethod
    def open(inputs: Words, material: GateMaterial) -> Words:
        """Return the planes this party opens: its input shares XOR its mask shares."""
        return inputs ^ material.masks

    def close(self, party: int, own: Words, peer: Words, material: GateMaterial) -> Words:
        """Return this party's shares of the monomials, stacked in order.

        All terms of all monomials are formed in one vectorised step and XOR-reduced per
        monomial, so the cost is a handful of array operations whatever the gate's size.
        ``party`` is implied by ``material`` (see :meth:`material`).
        """
        parents, lasts, u_idx, s_idx, starts = self._plan
        d = own ^ peer
        pub = np.empty((1 + self.variables + len(parents), *d.shape[1:]), dtype=np.uint64)
        pub[0] = np.uint64(0xFFFFFFFFFFFFFFFF)
        pub[1 : 1 + self.variables] = d
        first = 1 + self.variables
        for i, (parent, last) in enumerate(zip(parents, lasts, strict=True), first):
            np.bitwise_and(pub[parent], d[last], out=pub[i])
        terms = pub[u_idx]
        terms &= material.products[s_idx]
        ends = [*starts[1:], len(u_idx)]
        return np.stack(
            [np.bitwise_xor.reduce(terms[a:b], axis=0) for a, b in zip(starts, ends, strict=True)]
        )

    def correction(self, masks_0: Words, masks_1: Words, products_0: Words) -> Words:
        """Return party 1's shares of the mask products given party 0's (the dealer's)."""
        full = masks_0 ^ masks_1
        out = np.empty_like(products_0)
        for i, s in enumerate(self.closure):
            prod = full[s[0]] & full[s[1]]
            for v in s[2:]:
                prod &= full[v]
            out[i] = prod ^ products_0[i]
        return out

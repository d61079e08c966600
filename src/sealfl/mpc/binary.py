"""AND gates on XOR-shared bit vectors packed in machine words, with dealer triples.

A word-packed bit vector ``x`` (``uint32`` or ``uint64``, one bit per position) is shared as
``x = x_0 ^ x_1``; XOR, shifts and AND with a public word are local. An AND of two shared
words uses a triple ``(a, b, c = a & b)`` from the dealer (Beaver's trick over GF(2)): each
party opens ``d = x ^ a`` and ``e = y ^ b``, which are uniform and so reveal nothing, and then

    x & y = c ^ (d & b) ^ (e & a) ^ (d & e)

where party 0 alone adds the public ``d & e``. The gates here share their left operand across
several right operands (the carry circuit needs ``P & G'`` and ``P & P'``), which saves one
opened word per extra operand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError

Words = npt.NDArray[np.unsignedinteger]


@dataclass(frozen=True)
class AndTriple:
    """One party's shares of the triples for a batch of shared-left AND gates.

    Attributes
    ----------
    a
        Share of the mask of the left operand.
    b, c
        Shares of the masks of each right operand and of ``a & b_r``, one per right operand.
    """

    a: Words
    b: tuple[Words, ...]
    c: tuple[Words, ...]


def and_open(left: Words, rights: Sequence[Words], triple: AndTriple) -> list[Words]:
    """Return the words this party opens: ``left ^ a`` then ``right_r ^ b_r`` for each ``r``."""
    if len(rights) != len(triple.b):
        raise ValueError(f"gate has {len(triple.b)} right operands, got {len(rights)}")
    return [left ^ triple.a, *(r ^ b for r, b in zip(rights, triple.b, strict=True))]


def and_close(
    party: int, own: Sequence[Words], peer: Sequence[Words], triple: AndTriple
) -> list[Words]:
    """Combine both parties' openings into this party's shares of ``left & right_r``."""
    if len(peer) != len(own):
        raise ProtocolError(f"AND gate: expected {len(own)} opened words, got {len(peer)}")
    d = own[0] ^ peer[0]
    out = []
    for r, (b, c) in enumerate(zip(triple.b, triple.c, strict=True)):
        e = own[r + 1] ^ peer[r + 1]
        z = c ^ (d & b) ^ (e & triple.a)
        if party == 0:
            z ^= d & e
        out.append(z)
    return out

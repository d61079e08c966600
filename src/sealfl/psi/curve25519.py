"""Curve25519 arithmetic for hashing to the curve: Elligator 2 and a few point operations.

Curve25519 is the Montgomery curve ``v² = u³ + A·u² + u`` over ``GF(p)``, ``p = 2^255 − 19``,
``A = 486662`` (RFC 7748). X25519 itself comes from ``cryptography``; what it lacks, and what
this module supplies, is the map from field elements to curve points (Elligator 2, RFC 9380
§6.7.1, with the branch selection of its appendix G.2.1 so that each map costs one
exponentiation) and the point addition the random-oracle suite needs to add two mapped points.

Why the map matters: X25519 accepts any 32-byte u-coordinate, but about half of all u lie on
the *twist*, and curve-versus-twist is public and survives scalar multiplication. A PSI that
used ``SHA-256(id)`` as a u-coordinate would therefore leak one bit of every hashed id. Points
from Elligator 2 are always on the curve.

Two paths compute the same values. The *reference* functions (:func:`map_to_curve_elligator2`,
:func:`add_affine`, :func:`clear_cofactor_affine`) follow the RFC point by point and are what
the RFC's vectors check. The *batch* functions (:func:`sum_points_u`, :func:`hash_points_u`)
are what the PSI runs, built for the fewest big-number operations: the two exponentiations per
message that the random-oracle sum needs are the floor (one square root per mapped point, with
its sign: no algebraic shortcut gives both); every field inversion is shared across the batch
with Montgomery's trick (one ``invert`` per batch and three multiplications per element,
instead of an ``invert`` each, which costs as much as eight multiplications here); and only
u-coordinates leave, since X25519 needs nothing else.

Nothing here is constant-time: the inputs are hashes of ids, and the timing of their
arithmetic reveals nothing that the masked outputs do not (the secret is the X25519 key, which
``cryptography`` handles). Field elements are ``gmpy2.mpz``. Cost here: about 25 µs per hashed
id, 22 of them the two exponentiations.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

P = gmpy2.mpz(2**255 - 19)
"""The field prime ``2^255 − 19``."""
A = gmpy2.mpz(486662)
"""Montgomery coefficient ``A`` of curve25519 (``B = 1``)."""
Z = 2
"""Elligator 2 non-square of the suite (RFC 9380 §4.1 / appendix E.3 for curve25519)."""
COFACTOR = 8
"""``h_eff`` of the suite: ``clear_cofactor(Q) = [8]Q``."""

_C1 = (P + 3) // 8  # sqrt candidate exponent for p ≡ 5 (mod 8)
_C2 = gmpy2.powmod(2, _C1, P)  # 2^c1: turns a root of g(x1)'s candidate into one of g(x2)
_C3 = gmpy2.powmod(2, (P - 1) // 4, P)  # a square root of −1
_C2C3 = _C2 * _C3 % P
_NEG_A = P - A
_A24 = (A + 2) // 4  # x-only doubling constant (A + 2) / 4
_ONE = gmpy2.mpz(1)

Affine = tuple[gmpy2.mpz, gmpy2.mpz] | None
"""An affine point ``(u, v)``; ``None`` is the point at infinity."""


def sgn0(x: int) -> int:
    """Return the sign of a field element as RFC 9380 §4.1 defines it for ``m = 1``: its parity."""
    return int(x % 2)


def elligator2(us: Sequence[gmpy2.mpz]) -> tuple[list[gmpy2.mpz], list[gmpy2.mpz]]:
    """Elligator 2 of each reduced field element: the affine ``(xs, ys)`` of the mapped points.

    ``x1 = −A / (1 + 2u²)`` for all of them with one shared inversion (:func:`batch_invert`),
    then one exponentiation each: ``r = g(x1)^((p+3)/8)``, and ``r² = g·g^((p−1)/4)`` with
    ``g^((p−1)/4) ∈ {1, −1, c3, −c3}`` (``c3 = 2^((p−1)/4)``, a square root of −1) tells the
    four cases apart without another root: ``g(x1)`` square with root ``r`` or ``r·c3``, or not
    square, when ``g(x2) = 2u²·g(x1)`` is, with root ``r·u·2^((p+3)/8)``, times ``c3`` exactly
    when ``r² = c3·g`` (the straight-line map of appendix G.2.1, with its squarings replaced by
    that comparison). The x1 branch takes the root with ``sgn0 = 1``, the x2 branch the one
    with ``sgn0 = 0`` (RFC 9380 §6.7.1). Two flat lists rather than pairs: no tuple per point
    for the garbage collector to track.
    """
    powmod, is_odd = gmpy2.powmod, gmpy2.is_odd
    xs, ys = [], []
    for u, inv in zip(us, batch_invert([2 * u * u + 1 for u in us]), strict=True):
        x = _NEG_A * inv % P  # 1 + 2u² ≠ 0: 2u² = −1 has no root
        g = ((x + A) * x + 1) * x % P
        r = powmod(g, _C1, P)
        rr = r * r % P
        if rr == g:  # g(x1) is square
            y, odd = r, True
        elif rr + g == P:
            y, odd = r * _C3 % P, True
        else:  # g(x2) is square
            x = _NEG_A - x if x <= _NEG_A else _NEG_A - x + P
            y = r * u % P * (_C2C3 if rr == g * _C3 % P else _C2) % P
            odd = False
        if is_odd(y) != odd:
            y = P - y if y else y
        xs.append(x)
        ys.append(y)
    return xs, ys


def map_to_curve_elligator2(u: int) -> tuple[int, int]:
    """Map a field element to an affine curve25519 point (RFC 9380 ``map_to_curve_elligator2``)."""
    xs, ys = elligator2([gmpy2.mpz(u) % P])
    return int(xs[0]), int(ys[0])


def add_affine(p1: Affine, p2: Affine) -> Affine:
    """Add two affine points of curve25519 (``B = 1``), infinity and doubling included."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None  # P + (−P), and doubling a point of order 2
        slope = (3 * x1 * x1 + 2 * A * x1 + 1) * gmpy2.invert(2 * y1, P) % P
    else:
        slope = (y2 - y1) * gmpy2.invert((x2 - x1) % P, P) % P
    x3 = (slope * slope - A - x1 - x2) % P
    y3 = (slope * (x1 - x3) - y1) % P
    return x3, y3


def clear_cofactor_affine(point: Affine) -> Affine:
    """Multiply by the cofactor ``h_eff = 8`` (three affine doublings); the reference path."""
    for _ in range(3):
        point = add_affine(point, point)
    return point


def batch_invert(values: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
    """Inverses modulo ``p`` of nonzero field elements, with one ``invert`` for the whole batch.

    Montgomery's trick: the running products ``v0·…·vi`` are kept, the last one is inverted,
    and walking back each inverse is a running product times the inverse of the rest. Three
    multiplications per element.
    """
    prefix = []
    acc = _ONE
    for value in values:
        prefix.append(acc)
        acc = acc * value % P
    inv = gmpy2.invert(acc, P)
    out = [_ONE] * len(prefix)
    for i in range(len(prefix) - 1, -1, -1):
        out[i] = inv * prefix[i] % P
        inv = inv * values[i] % P
    return out


def sum_points_u(us: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
    """u-coordinate of ``map(u0) + map(u1)`` for each pair ``us[2i], us[2i+1]`` (no cofactor).

    This is ``hash_to_curve`` before its last step, ``clear_cofactor``: the caller multiplies by
    8 itself (:func:`clear_cofactor_u`, or an X25519 scalar, which is always a multiple of 8).
    ``us`` is the flat list of reduced field elements (``0 ≤ u < p``), two per message. The
    point at infinity (``Q0 = −Q1``) comes out as u = 0, the value X25519 gives it (and refuses
    to use). Equal u-coordinates (``Q0 = ±Q1``, probability about 2^-254 for hashed inputs)
    take the reference path.
    """
    xs, ys = elligator2(us)
    x0s, x1s, y0s, y1s = xs[0::2], xs[1::2], ys[0::2], ys[1::2]
    inverses = batch_invert([(x1 - x0) % P or _ONE for x0, x1 in zip(x0s, x1s, strict=True)])
    out = []
    for x0, x1, y0, y1, inv in zip(x0s, x1s, y0s, y1s, inverses, strict=True):
        if x0 == x1:
            total = add_affine((x0, y0), (x1, y1))
            out.append(gmpy2.mpz(0) if total is None else total[0])
        else:
            slope = (y1 - y0) * inv % P
            out.append((slope * slope - A - x0 - x1) % P)
    return out


def clear_cofactor_u(points_u: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
    """u-coordinate of ``[8]Q`` for each u-coordinate of a point ``Q`` (``0`` is infinity).

    Three x-only doublings in projective ``(X : Z)`` (the X25519 ladder's formulas), then one
    shared inversion. ``u = 0`` (infinity here, or the point of order 2) gives 0.
    """
    xs, zs = [], []
    for u in points_u:
        x, z = u, _ONE
        for _ in range(3):
            plus, minus = x + z, x - z
            aa, bb = plus * plus % P, minus * minus % P
            c = aa - bb  # 4XZ
            x, z = aa * bb % P, c * (bb + _A24 * c) % P
        xs.append(x if z else z)  # z = 0: [8]Q is infinity, whose u is given as 0
        zs.append(z or _ONE)
    return [x * inv % P for x, inv in zip(xs, batch_invert(zs), strict=True)]


def hash_points_u(us: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
    """u-coordinate of ``clear_cofactor(map(u0) + map(u1))``: ``hash_to_curve`` after the field.

    ``us`` as for :func:`sum_points_u`: two field elements per message, flat.
    """
    return clear_cofactor_u(sum_points_u(us))


def hash_point_u(u0: int, u1: int) -> int:
    """:func:`hash_points_u` of one pair (for tests and one-off use)."""
    return int(hash_points_u([gmpy2.mpz(u0) % P, gmpy2.mpz(u1) % P])[0])

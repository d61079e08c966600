"""Curve25519 arithmetic for hashing to the curve: Elligator 2 and a few point operations.

Curve25519 is the Montgomery curve ``v² = u³ + A·u² + u`` over ``GF(p)``, ``p = 2^255 − 19``,
``A = 486662`` (RFC 7748). X25519 itself comes from ``cryptography``; what it lacks, and what
this module supplies, is the map from field elements to curve points (Elligator 2, RFC 9380
§6.7.1, with the branch selection of its appendix G.2.1 so that each map costs one
exponentiation) and the affine point addition and x-only doubling the random-oracle suite needs
to add two mapped points and clear the cofactor 8.

Why the map matters: X25519 accepts any 32-byte u-coordinate, but about half of all u lie on
the *twist*, and curve-versus-twist is public and survives scalar multiplication. A PSI that
used ``SHA-256(id)`` as a u-coordinate would therefore leak one bit of every hashed id. Points
from Elligator 2 are always on the curve.

Nothing here is constant-time: the inputs are hashes of ids, and the timing of their
arithmetic reveals nothing that the masked outputs do not (the secret is the X25519 key, which
``cryptography`` handles). Field elements are ``gmpy2.mpz``. Cost here: about 35 µs per hashed
id, two thirds of it the two exponentiations.
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

_C1 = (P + 3) // 8  # sqrt candidate exponent for p ≡ 5 (mod 8)
_C2 = gmpy2.powmod(2, _C1, P)  # 2^c1: turns a root of g(x1)'s candidate into one of g(x2)
_C3 = gmpy2.powmod(2, (P - 1) // 4, P)  # a square root of −1
_NEG_A = P - A
_A24 = (A + 2) // 4  # x-only doubling constant (A + 2) / 4

Affine = tuple[gmpy2.mpz, gmpy2.mpz] | None
"""An affine point ``(u, v)``; ``None`` is the point at infinity."""


def sgn0(x: int) -> int:
    """Return the sign of a field element as RFC 9380 §4.1 defines it for ``m = 1``: its parity."""
    return int(x % 2)


def _map(u: gmpy2.mpz) -> tuple[gmpy2.mpz, gmpy2.mpz]:
    """Elligator 2 (RFC 9380 §6.7.1 with ``Z = 2``, ``J = A``, ``K = 1``), affine.

    One exponentiation: ``r = g(x1)^((p+3)/8)`` is a square root of ``g(x1)`` up to a factor
    ``sqrt(−1)`` when ``g(x1)`` is square, and ``r·u·2^((p+3)/8)`` is one of ``g(x2) = 2u²·g(x1)``
    (up to the same factor) when it is not, as in the straight-line map of appendix G.2.1.
    """
    t = u * u % P
    x = _NEG_A * gmpy2.invert(2 * t + 1, P) % P  # 1 + 2u² ≠ 0: 2u² = −1 has no root
    g = ((x + A) * x + 1) * x % P
    r = gmpy2.powmod(g, _C1, P)
    rr = r * r % P
    if rr == g:  # g(x1) is square; the x1 branch takes the root with sgn0 = 1
        y, sign = r, 1
    elif rr + g == P:
        y, sign = r * _C3 % P, 1
    else:  # g(x2) is square; the x2 branch takes the root with sgn0 = 0
        x = _NEG_A - x
        y = r * u % P * _C2 % P
        if y * y % P != 2 * t * g % P:
            y = y * _C3 % P
        sign = 0
    if y % 2 != sign:
        y = (P - y) % P
    return x, y


def map_to_curve_elligator2(u: int) -> tuple[int, int]:
    """Map a field element to an affine curve25519 point (RFC 9380 ``map_to_curve_elligator2``)."""
    x, y = _map(gmpy2.mpz(u) % P)
    return int(x), int(y)


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


def hash_point_u(u0: int, u1: int) -> int:
    """u-coordinate of ``clear_cofactor(map(u0) + map(u1))``: ``hash_to_curve`` after the field.

    The sum is affine (one inversion); the cofactor is cleared by three x-only doublings in
    projective ``(X : Z)`` (the X25519 ladder's formulas) and one final inversion. Equal
    u-coordinates (``Q0 = ±Q1``, probability about 2^-254 for hashed inputs) take the affine
    reference path. The point at infinity comes out as u = 0, the value X25519 gives it (and
    refuses to use).
    """
    x0, y0 = _map(gmpy2.mpz(u0) % P)
    x1, y1 = _map(gmpy2.mpz(u1) % P)
    if x0 == x1:
        point = clear_cofactor_affine(add_affine((x0, y0), (x1, y1)))
        return 0 if point is None else int(point[0])
    slope = (y1 - y0) * gmpy2.invert((x1 - x0) % P, P) % P
    x = (slope * slope - A - x0 - x1) % P
    z = gmpy2.mpz(1)
    for _ in range(3):
        plus, minus = x + z, x - z
        aa, bb = plus * plus % P, minus * minus % P
        c = aa - bb  # 4XZ
        x, z = aa * bb % P, c * (bb + _A24 * c) % P
    return 0 if z == 0 else int(x * gmpy2.invert(z, P) % P)


def hash_points_u(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """:func:`hash_point_u` of each pair of field elements."""
    return [hash_point_u(u0, u1) for u0, u1 in pairs]

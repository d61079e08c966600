"""Shamir secret sharing of 32-byte secrets over the prime field GF(2^256 + 297).

The secrets shared in a round are 256-bit strings (a self-mask seed and an X25519 private
key), so the field must hold every 256-bit value: p = 2^256 + 297 is the smallest prime above
2^256. A share is the pair (x, y) with x the holder's worker id (never 0) and y a 33-byte
big-endian field element. Any ``threshold`` shares determine the secret; fewer reveal nothing
about it (the polynomial's other coefficients are uniform in the field).

Reconstruction checks every share it is given beyond the first ``threshold`` against the
polynomial those determine, so one corrupted share among enough good ones is caught rather than
silently producing a wrong mask.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from sealfl.errors import ProtocolError

__all__ = ["PRIME", "SHARE_BYTES", "reconstruct", "split"]

PRIME = 2**256 + 297
"""The field's modulus: the smallest prime above 2^256."""

SHARE_BYTES = 33
"""Bytes of one encoded share value (big-endian, PRIME < 2^264)."""


def _uniform_element(entropy: Callable[[int], bytes]) -> int:
    # 320 random bits reduced mod p: statistical distance from uniform below 2^-63.
    return int.from_bytes(entropy(40), "big") % PRIME


def split(
    secret: bytes,
    holders: Sequence[int],
    threshold: int,
    *,
    entropy: Callable[[int], bytes] = os.urandom,
) -> dict[int, bytes]:
    """Share a 32-byte secret among ``holders`` so that any ``threshold`` of them recover it.

    Parameters
    ----------
    secret
        Exactly 32 bytes.
    holders
        Distinct positive ids; each is the x-coordinate of its share.
    threshold
        Shares needed to reconstruct, 1 <= threshold <= len(holders).
    entropy
        Source of random bytes (injectable so tests are exact).

    Returns
    -------
    dict[int, bytes]
        Holder id -> its share value, :data:`SHARE_BYTES` bytes.
    """
    if len(secret) != 32:
        raise ProtocolError(f"shamir secret: expected 32 bytes, got {len(secret)}")
    if len(set(holders)) != len(holders) or any(h <= 0 for h in holders):
        raise ProtocolError(f"shamir holders: expected distinct positive ids, got {list(holders)}")
    if not 1 <= threshold <= len(holders):
        raise ProtocolError(
            f"shamir threshold: expected 1..{len(holders)} for {len(holders)} holders, "
            f"got {threshold}"
        )
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [_uniform_element(entropy) for _ in range(threshold - 1)]
    shares = {}
    for x in holders:
        y = 0
        for c in reversed(coefficients):
            y = (y * x + c) % PRIME
        shares[x] = y.to_bytes(SHARE_BYTES, "big")
    return shares


def _decode(x: int, value: bytes) -> int:
    if len(value) != SHARE_BYTES:
        raise ProtocolError(
            f"shamir share of holder {x}: expected {SHARE_BYTES} bytes, got {len(value)}"
        )
    y = int.from_bytes(value, "big")
    if y >= PRIME:
        raise ProtocolError(f"shamir share of holder {x}: value is not a field element")
    return y


def _interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (at - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    return total


def reconstruct(shares: Mapping[int, bytes], threshold: int, *, what: str = "secret") -> bytes:
    """Recover the 32-byte secret from at least ``threshold`` shares, checking any extra ones.

    Raises
    ------
    ProtocolError
        Fewer than ``threshold`` shares, a malformed share, shares that do not lie on one
        polynomial of degree ``threshold - 1``, or a result that is not a 256-bit value.
    """
    if len(shares) < threshold:
        raise ProtocolError(
            f"{what}: need {threshold} shares to reconstruct, got {len(shares)} "
            f"(from {sorted(shares)})"
        )
    points = sorted((x, _decode(x, v)) for x, v in shares.items())
    if any(x <= 0 for x, _ in points):
        raise ProtocolError(
            f"{what}: share holder ids must be positive, got {[p[0] for p in points]}"
        )
    basis = points[:threshold]
    for x, y in points[threshold:]:
        if _interpolate(basis, x) != y:
            raise ProtocolError(f"{what}: the share of holder {x} is inconsistent with the others")
    secret = _interpolate(basis, 0)
    if secret >= 2**256:
        raise ProtocolError(f"{what}: reconstructed value is not a 256-bit secret (bad shares)")
    return secret.to_bytes(32, "big")

"""X25519 masking of hashed points: a fresh secret scalar per session, from ``cryptography``.

``X25519(k, u)`` is the u-coordinate of ``[k]·P`` for a point ``P`` with u-coordinate ``u``
(RFC 7748). Two properties make it a PSI mask:

* **It commutes.** The clamped scalars are plain integers, so
  ``X25519(a, X25519(b, u)) = X25519(b, X25519(a, u))``: the doubly-masked value of an id is
  the same whichever party masked first, and equal ids meet.
* **It hides.** Without ``k``, ``X25519(k, u)`` for a hashed ``u`` is indistinguishable from a
  random point (decisional Diffie-Hellman on curve25519), so a peer that sees masked points
  cannot test a guessed id against them: that needs the key.

Clamping makes every scalar a multiple of the cofactor 8, so the result lies in the
prime-order subgroup whatever small-order component the input had, and a point of small order
maps to the all-zero value, which ``cryptography`` refuses (``ValueError``); here that becomes a
:class:`~sealfl.errors.ProtocolError` naming the field and the entry. A peer's point on the
twist needs no check (RFC 7748 §5): curve25519 is twist-secure, and clamping leaves nothing to
learn from the twist's small subgroups.

The key never leaves this object and is never serialised; a session makes a new one, so two
runs cannot be linked by their masked values.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sealfl.errors import ProtocolError

POINT_BYTES = 32


def check_points(packed: bytes, *, field: str) -> int:
    """Check that ``packed`` is canonical 32-byte u-coordinates; return how many there are.

    Refuses a length that is not a multiple of 32, a set top bit and an encoding of ``u ≥ p``
    (RFC 7748 decodes these modulo ``p``, so they would be second names of other points).

    Raises
    ------
    ProtocolError
        Naming ``field``, the entry and what was wrong.
    """
    if len(packed) % POINT_BYTES:
        raise ProtocolError(
            f"{field}: expected a multiple of {POINT_BYTES} bytes (packed u-coordinates), "
            f"got {len(packed)}"
        )
    rows = np.frombuffer(packed, dtype=np.uint8).reshape(-1, POINT_BYTES)
    high = np.nonzero(rows[:, 31] & 0x80)[0]
    if high.size:
        raise ProtocolError(f"{field}: entry {int(high[0])} has the top bit set (not canonical)")
    at_least_p = (rows[:, 31] == 0x7F) & (rows[:, 1:31] == 0xFF).all(axis=1) & (rows[:, 0] >= 0xED)
    big = np.nonzero(at_least_p)[0]
    if big.size:
        raise ProtocolError(f"{field}: entry {int(big[0])} encodes u ≥ 2^255 − 19 (not canonical)")
    return len(rows)


class MaskingKey:
    """A fresh X25519 scalar for one PSI session; it masks batches of packed points."""

    _load = staticmethod(X25519PublicKey.from_public_bytes)

    def __init__(self) -> None:
        self._key = X25519PrivateKey.generate()

    def __repr__(self) -> str:
        return "MaskingKey(<secret>)"

    def mask(self, packed: bytes, *, keep: int = POINT_BYTES, field: str) -> bytes:
        """Return ``X25519(k, u)`` for each 32-byte ``u`` in ``packed``, cut to ``keep`` bytes each.

        ``packed`` must already have passed :func:`check_points` (or be this party's own
        hashes).

        Raises
        ------
        ProtocolError
            If an entry is a point of small order, naming ``field`` and the entry.
        """
        exchange, load = self._key.exchange, self._load
        try:
            return b"".join(
                [
                    exchange(load(packed[start : start + POINT_BYTES]))[:keep]
                    for start in range(0, len(packed), POINT_BYTES)
                ]
            )
        except ValueError:
            pass
        for start in range(0, len(packed), POINT_BYTES):  # which entry: only on a refusal
            try:
                exchange(load(packed[start : start + POINT_BYTES]))
            except ValueError:
                raise ProtocolError(
                    f"{field}: entry {start // POINT_BYTES} is a point of small order "
                    "(X25519 refuses it)"
                ) from None
        raise ProtocolError(f"{field}: X25519 refused the batch")

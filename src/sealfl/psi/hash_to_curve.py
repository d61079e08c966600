"""RFC 9380 hashing to curve25519: the ``curve25519_XMD:SHA-512_ELL2_RO_`` suite.

``hash_to_curve(msg) = clear_cofactor(map(u0) + map(u1))`` with ``(u0, u1) =
hash_to_field(msg, 2)`` from ``expand_message_xmd`` with SHA-512 (RFC 9380 §3, §5.3.1, §6.7.1,
§8.5). The random-oracle (``_RO_``) form is used rather than the single-map ``_NU_`` encoding
because its output is indistinguishable from a uniformly random point; a PSI's security
argument (the DDH assumption on hashed points) needs exactly that.

The reference functions (:func:`expand_message_xmd`, :func:`hash_to_field`,
:func:`hash_to_curve`) follow the RFC step by step and are checked against its appendix J and K
test vectors; :class:`CurveHasher` is the batch path the PSI uses: the same output, the
SHA-512 prefix state of the suite's zero padding reused, and the arithmetic batched
(:func:`sealfl.psi.curve25519.hash_points_u`). Only the u-coordinate is produced there, since
X25519 needs nothing else, and the PSI takes it before the cofactor is cleared
(:meth:`CurveHasher.sum_u`), because its X25519 scalars clear it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import gmpy2
import numpy as np

from sealfl.errors import ConfigError
from sealfl.psi.curve25519 import (
    P,
    add_affine,
    clear_cofactor_affine,
    hash_points_u,
    map_to_curve_elligator2,
    sum_points_u,
)

SUITE = "curve25519_XMD:SHA-512_ELL2_RO_"
"""The RFC 9380 suite identifier."""
POINT_BYTES = 32
"""Length of an X25519 u-coordinate (little-endian, RFC 7748)."""

_B_IN_BYTES = 64  # SHA-512 output
_S_IN_BYTES = 128  # SHA-512 block
_L = 48  # ceil((ceil(log2(p)) + k) / 8) with k = 128
_COUNT = 2  # field elements per message in the RO suite
_LEN_IN_BYTES = _COUNT * _L


def _dst_prime(dst: bytes) -> bytes:
    if not dst:
        raise ConfigError("hash-to-curve dst: expected a non-empty domain-separation tag")
    if len(dst) > 255:
        raise ConfigError(f"hash-to-curve dst: expected at most 255 bytes, got {len(dst)}")
    return dst + bytes([len(dst)])


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """Expand ``msg`` to ``len_in_bytes`` uniform bytes with SHA-512 (RFC 9380 §5.3.1)."""
    ell = -(-len_in_bytes // _B_IN_BYTES)
    if ell > 255 or len_in_bytes > 65535 or len_in_bytes <= 0:
        raise ConfigError(f"expand_message_xmd len_in_bytes: expected 1..16320, got {len_in_bytes}")
    dst_prime = _dst_prime(dst)
    msg_prime = bytes(_S_IN_BYTES) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:len_in_bytes]


def hash_to_field(msg: bytes, dst: bytes, count: int = _COUNT) -> list[int]:
    """``count`` elements of GF(2^255 − 19) from ``msg`` (RFC 9380 §5.2, ``L = 48``)."""
    uniform = expand_message_xmd(msg, dst, count * _L)
    return [int.from_bytes(uniform[i * _L : (i + 1) * _L], "big") % int(P) for i in range(count)]


def hash_to_curve(msg: bytes, dst: bytes) -> tuple[int, int] | None:
    """Return the affine point ``hash_to_curve(msg)`` of the RO suite; ``None`` for infinity.

    The step-by-step reference (affine arithmetic, four inversions); the RFC vectors give both
    coordinates of the result, so this is what they check in full.
    """
    u0, u1 = hash_to_field(msg, dst)
    total = add_affine(map_to_curve_elligator2(u0), map_to_curve_elligator2(u1))
    point = clear_cofactor_affine(total)
    return None if point is None else (int(point[0]), int(point[1]))


class CurveHasher:
    """Hash batches of messages to X25519 u-coordinates under one domain-separation tag.

    Parameters
    ----------
    dst
        The domain-separation tag (RFC 9380 §3.1), at most 255 bytes. The PSI puts its protocol
        name and the session id here, so points from one session mean nothing in another.
    """

    def __init__(self, dst: bytes) -> None:
        self.dst = bytes(dst)
        self._dst_prime = _dst_prime(self.dst)
        self._tail = _LEN_IN_BYTES.to_bytes(2, "big") + b"\x00" + self._dst_prime
        self._one = b"\x01" + self._dst_prime
        self._two = b"\x02" + self._dst_prime
        self._prefix = hashlib.sha512(bytes(_S_IN_BYTES))  # Z_pad, the same for every message

    def field_elements(self, messages: Sequence[bytes]) -> list[gmpy2.mpz]:
        """``hash_to_field(m, 2)`` for each message: ``[u0, u1, u0, u1, …]``, reduced ``mpz``.

        The same bytes as :func:`expand_message_xmd`: the hash state after the zero padding is
        computed once and copied, and the ``b0 ⊕ b1`` of every message is one numpy XOR.
        """
        prefix, tail, one, two = self._prefix, self._tail, self._one, self._two
        sha512, copy = hashlib.sha512, prefix.copy
        b0s = []
        for message in messages:
            state = copy()
            state.update(message + tail)
            b0s.append(state.digest())
        b1s = [sha512(b0 + one).digest() for b0 in b0s]
        mixed = (
            np.frombuffer(b"".join(b0s), dtype=np.uint64)
            ^ np.frombuffer(b"".join(b1s), dtype=np.uint64)
        ).tobytes()
        b2s = [
            sha512(mixed[i : i + _B_IN_BYTES] + two).digest()
            for i in range(0, len(mixed), _B_IN_BYTES)
        ]
        from_bytes, rest = gmpy2.mpz.from_bytes, _LEN_IN_BYTES - _B_IN_BYTES
        out = []
        for b1, b2 in zip(b1s, b2s, strict=True):
            out.append(from_bytes(b1[:_L], "big") % P)
            out.append(from_bytes(b1[_L:] + b2[:rest], "big") % P)
        return out

    def hash_u(self, messages: Sequence[bytes]) -> np.ndarray:
        """u-coordinates of ``hash_to_curve(m)`` for each message: an ``(n, 32)`` uint8 array.

        Each row is the little-endian encoding X25519 takes (RFC 7748 §5).
        """
        return _packed(hash_points_u(self.field_elements(messages))).reshape(-1, POINT_BYTES)

    def sum_u(self, messages: Sequence[bytes]) -> bytes:
        """u-coordinates of ``Q0 + Q1`` for each message, packed: ``hash_to_curve`` but ``[8]``.

        ``hash_to_curve(m) = [8](Q0 + Q1)``, and an X25519 scalar ``k`` is a multiple of 8 (RFC
        7748 clamps it), so ``X25519(k, u(Q0 + Q1)) = u([k/8]·hash_to_curve(m))``: masking this
        value with ``k`` *is* masking the RFC's point with the scalar ``k/8``, and the three
        doublings of ``clear_cofactor`` are done by the X25519 ladder for free. The PSI masks
        these (see :mod:`sealfl.psi.masking`).
        """
        return _packed(sum_points_u(self.field_elements(messages))).tobytes()


def _packed(us: Sequence[gmpy2.mpz]) -> np.ndarray:
    """Little-endian 32-byte encodings of reduced field elements, as one uint8 array."""
    packed = b"".join([u.to_bytes(POINT_BYTES, "little") for u in us])
    return np.frombuffer(packed, dtype=np.uint8)

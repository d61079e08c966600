"""Arithmetic in the ring Z_2^64 and the fixed-point encoding of reals into it.

Every secret in :mod:`sealfl.mpc` is a numpy ``uint64`` array whose arithmetic wraps modulo
2^64, which is exactly the ring additive secret sharing needs: ``x = x_0 + x_1 mod 2^64`` with
``x_0`` uniform hides ``x`` perfectly. Reals are encoded as ``round(x * 2^f)`` in two's
complement, so a product of two encodings carries scale ``2^(2f)``. This package never
truncates a product: the linear layer's logit stays at scale ``2^(2f)`` and the sigmoid spline's
coefficients are chosen so that its output lands at a fixed, larger scale. Because ring
arithmetic is exact, intermediate wrap-around is harmless; only the final value must fit, in
``|v| < 2^63``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError

U64 = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float64]

_MAGIC = 1.5 * 2.0**52
_MAGIC_BITS = np.array(_MAGIC).view(np.int64)
_MAGIC_LIMIT = 2.0**51

FRAC_BITS = 20
"""Fractional bits of an encoded input feature and of an encoded weight (logit scale 2^40)."""


def encode(x: npt.ArrayLike, frac_bits: int = FRAC_BITS, *, out: U64 | None = None) -> U64:
    """Encode reals as ring elements ``round(x * 2^frac_bits) mod 2^64``.

    ``out``, of ``x``'s shape, receives the result (and is returned): a buffer made and
    touched ahead of time, so that a large batch is not encoded into freshly mapped memory.

    Raises
    ------
    ConfigError
        If a value is not finite or its encoding does not fit in 62 bits (which would leave
        no headroom for the sums the protocols compute).
    """
    arr = np.asarray(x, dtype=np.float64)
    if out is not None and out.shape != arr.shape:
        raise ValueError(f"encode: out has shape {out.shape}, the values {arr.shape}")
    limit = 2.0 ** (62 - frac_bits)
    scale = float(1 << frac_bits)
    lo, hi = (arr.min(), arr.max()) if arr.size else (0.0, 0.0)  # one pass each, used twice
    if not (-limit < lo and hi < limit):  # NaN fails both
        bad = arr.flat[int(np.argmax(~(np.abs(arr) < limit)))]
        raise ConfigError(
            f"value {bad!r} cannot be encoded with {frac_bits} fractional bits: expected a "
            f"finite value of magnitude below {limit:.3g}"
        )
    if arr.ndim and arr.size and max(-lo, hi) * scale < _MAGIC_LIMIT:
        # Adding 1.5 * 2^52 leaves round(v) in the low mantissa bits (the FPU rounds to
        # nearest), so the float64 bits minus the constant's bits are the int64 result: two
        # passes over the data instead of a rint and a slow float-to-int cast.
        shifted = np.multiply(arr, scale, out=None if out is None else out.view(np.float64))
        shifted += _MAGIC
        ints = shifted.view(np.int64)
        ints -= _MAGIC_BITS
        return ints.view(np.uint64) if out is None else out
    encoded = np.rint(arr * scale).astype(np.int64).view(np.uint64)
    if out is None:
        return encoded
    out[...] = encoded
    return out


def decode(v: npt.ArrayLike, frac_bits: int) -> FloatArray:
    """Decode ring elements at scale ``2^frac_bits`` back to reals (two's complement)."""
    signed = np.asarray(v, dtype=np.uint64).view(np.int64)
    return signed.astype(np.float64) / float(1 << frac_bits)


def check_array(arr: object, shape: tuple[int, ...], dtype: npt.DTypeLike, *, what: str) -> None:
    """Raise :class:`ProtocolError` unless ``arr`` is an array of exactly ``shape`` and ``dtype``.

    For arrays from a peer or the dealer; the message starts with ``what`` and says what was
    expected and what arrived (``none`` for a missing array).
    """
    want = f"{np.dtype(dtype).name}{list(shape)}"
    if not isinstance(arr, np.ndarray):
        got = "none" if arr is None else type(arr).__name__
        raise ProtocolError(f"{what} expected {want}, got {got}")
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise ProtocolError(f"{what} expected {want}, got {arr.dtype.name}{list(arr.shape)}")

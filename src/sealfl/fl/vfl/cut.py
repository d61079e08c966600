"""The cut-layer tensors on the wire: the follower's activation and the gradient sent back.

Both are ``[B, k]`` matrices in C order, sent as their little-endian bytes: float32 by default
(``2·B·k·4`` bytes per step), or float16 when the settings' ``train.wire_dtype`` says so
(half the bytes; the values are rounded to 11 significant bits, so the run's numbers change and
both parties must agree: the wire dtype is part of the settings' digest). Nothing else is sent
(the shape is known to both sides from the settings and the step's batch). The receiver checks
the length and that every value is finite before a single value reaches its network, so a
peer's NaN, infinity or truncated tensor is refused with the step and the element named, and
the receiving half stays as it was. A sender refuses to round a value beyond float16's range
(65504) into an infinity its peer would refuse.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError

__all__ = ["CUT_DTYPE", "WIRE_DTYPES", "decode_cut", "encode_cut", "wire_dtype"]

CUT_DTYPE = np.dtype("<f4")
"""Little-endian float32, whatever the host: the default wire dtype."""
WIRE_DTYPES: dict[str, np.dtype[np.floating]] = {"float32": CUT_DTYPE, "float16": np.dtype("<f2")}
"""The wire dtypes by their settings name."""
_F16_MAX = float(np.finfo(np.float16).max)


def wire_dtype(name: str) -> np.dtype[np.floating]:
    """Return the wire dtype named ``name`` (``"float32"`` or ``"float16"``).

    Raises
    ------
    ConfigError
        For another name.
    """
    try:
        return WIRE_DTYPES[name]
    except KeyError:
        raise ConfigError(
            f"wire dtype: expected one of {list(WIRE_DTYPES)}, got {name!r}"
        ) from None


def encode_cut(values: npt.NDArray[np.floating], dtype: np.dtype[np.floating] = CUT_DTYPE) -> bytes:
    """Return the wire bytes of a ``[B, k]`` float32 matrix, as ``dtype`` (default float32).

    Raises
    ------
    ProtocolError
        If ``values`` is not a 2-D float32 array (a bug on the sending side: refuse to send
        something the peer would have to guess at), or holds a value float16 cannot carry.
    """
    if values.ndim != 2 or values.dtype.kind != "f" or values.dtype.itemsize != 4:
        raise ProtocolError(
            f"cut tensor: expected a 2-D float32 array, got {values.dtype.name} "
            f"{list(values.shape)}"
        )
    if dtype.itemsize == 2:
        too_big = np.abs(values) > _F16_MAX
        if too_big.any():
            row, col = np.unravel_index(int(np.argmax(too_big)), too_big.shape)
            raise ProtocolError(
                f"cut tensor: {values[row, col]} at row {row}, column {col} is beyond float16's "
                f"range (+-{_F16_MAX:g}); train with wire dtype float32"
            )
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def decode_cut(
    data: bytes | bytearray | memoryview,
    *,
    rows: int,
    width: int,
    what: str,
    dtype: np.dtype[np.floating] = CUT_DTYPE,
) -> npt.NDArray[np.float32]:
    """Return received bytes as a read-only float32 ``[rows, width]`` matrix, after checks.

    Parameters
    ----------
    data
        The bytes as received.
    rows, width
        The shape both sides expect (the step's batch size and the cut width).
    what
        What this is and from whom, for the error (``"activation of step 7 from the
        follower"``).
    dtype
        The wire dtype both sides agreed on (float16 is widened to float32, exactly).

    Raises
    ------
    ProtocolError
        If the length is not ``rows * width * itemsize`` bytes or any value is NaN or infinite.
    """
    raw = memoryview(data).cast("B")
    expected = rows * width * dtype.itemsize
    if raw.nbytes != expected:
        raise ProtocolError(
            f"{what}: expected {rows}x{width} {dtype.name} ({expected:,} bytes), got "
            f"{raw.nbytes:,} bytes"
        )
    values = np.frombuffer(raw, dtype=dtype).reshape(rows, width)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = np.unravel_index(int(np.argmin(finite)), finite.shape)
        raise ProtocolError(
            f"{what}: holds {values[row, col]} at row {row}, column {col}; only finite values "
            "are accepted"
        )
    if dtype != CUT_DTYPE or not dtype.isnative:
        values = values.astype(np.float32)
    values.setflags(write=False)
    return values

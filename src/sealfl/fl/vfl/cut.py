"""The cut-layer tensors on the wire: the follower's activation and the gradient sent back.

Both are float32 ``[B, k]`` matrices in C order, sent as their little-endian bytes: ``2·B·k·4``
bytes per step and nothing else (the shape is known to both sides from the settings and the
step's batch). The receiver checks the length and that every value is finite before a single
value reaches its network, so a peer's NaN, infinity or truncated tensor is refused with the
step and the element named, and the receiving half stays as it was.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError

__all__ = ["CUT_DTYPE", "decode_cut", "encode_cut"]

CUT_DTYPE = np.dtype("<f4")
"""Little-endian float32, whatever the host."""


def encode_cut(values: npt.NDArray[np.floating]) -> bytes:
    """Return the wire bytes of a ``[B, k]`` float32 matrix.

    Raises
    ------
    ProtocolError
        If ``values`` is not a 2-D float32 array (a bug on the sending side: refuse to send
        something the peer would have to guess at).
    """
    if values.ndim != 2 or values.dtype.kind != "f" or values.dtype.itemsize != 4:
        raise ProtocolError(
            f"cut tensor: expected a 2-D float32 array, got {values.dtype.name} "
            f"{list(values.shape)}"
        )
    return np.ascontiguousarray(values, dtype=CUT_DTYPE).tobytes()


def decode_cut(
    data: bytes | bytearray | memoryview, *, rows: int, width: int, what: str
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

    Raises
    ------
    ProtocolError
        If the length is not ``rows * width * 4`` bytes or any value is NaN or infinite.
    """
    raw = memoryview(data).cast("B")
    expected = rows * width * CUT_DTYPE.itemsize
    if raw.nbytes != expected:
        raise ProtocolError(
            f"{what}: expected {rows}x{width} float32 ({expected:,} bytes), got {raw.nbytes:,} "
            "bytes"
        )
    values = np.frombuffer(raw, dtype=CUT_DTYPE).reshape(rows, width)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = np.unravel_index(int(np.argmin(finite)), finite.shape)
        raise ProtocolError(
            f"{what}: holds {values[row, col]} at row {row}, column {col}; only finite values "
            "are accepted"
        )
    if not CUT_DTYPE.isnative:  # pragma: no cover - big-endian hosts
        values = values.astype(np.float32)
    values.setflags(write=False)
    return values

"""Protobuf encoding of arrays, protocol messages and dealer material (no pickle anywhere).

An array is its dtype name, shape and raw little-endian bytes. Decoding checks all three
against an allow-list and a size limit before viewing the bytes, so a malformed message is a
:class:`~sealfl.errors.ProtocolError` naming the field, never a crash or an allocation bomb.

Messages of megabytes (a query's rows, an MPC step) travel as *frames* instead
(:func:`encode_frame`): a length-prefixed protobuf message whose arrays carry only dtype and
shape, followed by the arrays' bytes. Building one is a single copy of the payload and reading
one views the received bytes in place, where a protobuf ``bytes`` field costs three copies on
the way out (array, field, serialised message) and two on the way in; at 4 MB a copy is about
0.1 ms, and each one sat on the critical path of a query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError, Message

from sealfl.errors import ProtocolError
from sealfl.mpc.dealer import ServerDeal
from sealfl.mpc.plan import Linear, Output, QueryPlan
from sealfl.mpc.protos import mpc_pb2

ALLOWED_DTYPES = frozenset({"uint8", "uint32", "uint64", "float64"})
MAX_ARRAY_BYTES = 1 << 30
"""Largest array accepted from the wire (1 GiB); the channel's message limit is lower anyway."""
MAX_DIMS = 8
"""Most dimensions an array from the wire may have (the protocols use at most two)."""

Arr = npt.NDArray[Any]


def describe_array(target: mpc_pb2.Array, array: npt.ArrayLike) -> Arr:
    """Set ``target``'s dtype and shape (not its data); return the array as it will be sent.

    The result is contiguous and little-endian, ready to be written as raw bytes.
    """
    arr = np.asarray(array)
    if arr.dtype.name not in ALLOWED_DTYPES:
        raise ProtocolError(
            f"cannot send dtype {arr.dtype.name}: expected one of {sorted(ALLOWED_DTYPES)}"
        )
    target.dtype = arr.dtype.name
    target.shape[:] = list(arr.shape)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))


def fill_array(target: mpc_pb2.Array, array: npt.ArrayLike) -> mpc_pb2.Array:
    """Encode a numeric array into ``target`` in place (little-endian, contiguous).

    Filling a field of the outgoing message, rather than building an ``Array`` and passing it
    to a constructor, saves a copy of the payload per nesting level: protobuf copies
    sub-messages given to constructors, which costs milliseconds at megabytes.
    """
    target.data = describe_array(target, array).tobytes()
    return target


def array_to_proto(array: npt.ArrayLike) -> mpc_pb2.Array:
    """Encode a numeric array as a new message (see :func:`fill_array` for large payloads)."""
    return fill_array(mpc_pb2.Array(), array)


def _layout(msg: mpc_pb2.Array, *, field: str) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """Check an array's dtype and shape; return them and its size in bytes."""
    if msg.dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            f"{field}: dtype {msg.dtype!r} not allowed, expected one of {sorted(ALLOWED_DTYPES)}"
        )
    dtype = np.dtype(msg.dtype).newbyteorder("<")
    shape = tuple(int(s) for s in msg.shape)
    if len(shape) > MAX_DIMS:
        raise ProtocolError(f"{field}: {len(shape)} dimensions, at most {MAX_DIMS} allowed")
    count = 1
    for s in shape:
        count *= s
    if count * dtype.itemsize > MAX_ARRAY_BYTES:
        raise ProtocolError(f"{field}: {count * dtype.itemsize} bytes exceeds {MAX_ARRAY_BYTES}")
    return dtype, shape, count * dtype.itemsize


def _view(
    data: bytes | memoryview, dtype: np.dtype[Any], shape: tuple[int, ...], field: str
) -> Arr:
    try:
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError as exc:  # an empty array whose dimensions numpy cannot represent
        raise ProtocolError(f"{field}: shape {list(shape)} is not a valid array ({exc})") from None


def array_from_proto(msg: mpc_pb2.Array, *, field: str) -> Arr:
    """Decode an array, checking dtype, shape and length; the result is read-only."""
    dtype, shape, nbytes = _layout(msg, field=field)
    data = msg.data  # each read of a bytes field is a fresh copy: read it once
    if len(data) != nbytes:
        raise ProtocolError(
            f"{field}: shape {list(shape)} of {msg.dtype} needs {nbytes} bytes, got {len(data)}"
        )
    return _view(data, dtype, shape, field)


_FRAME_PREFIX = 4
_ALIGN = 8
MAX_FRAME_HEADER = 1 << 20
"""Largest protobuf part of a frame (its arrays' dtypes and shapes, a few ids)."""

M = TypeVar("M", bound=Message)


def _padding(offset: int) -> int:
    return -offset % _ALIGN


def encode_frame(meta: Message, arrays: Sequence[Arr]) -> bytes:
    """Return one frame: ``meta``, whose arrays hold no data, then ``arrays``' bytes in order.

    ``arrays`` are those :func:`describe_array` returned for ``meta``'s array fields, in the
    order :func:`decode_frame`'s ``arrays_of`` lists the fields. Layout: the header's length
    (4 bytes, little-endian), the header, then each array; the header and every array are
    zero-padded to a multiple of 8 bytes, so the receiver's views of the arrays are aligned.
    """
    head = meta.SerializeToString()
    offset = _FRAME_PREFIX + len(head)
    parts: list[bytes | memoryview] = [len(head).to_bytes(_FRAME_PREFIX, "little"), head]
    for a in arrays:
        parts.append(bytes(_padding(offset)))
        offset += _padding(offset)
        parts.append(a.data.cast("B") if a.size else b"")  # numpy cannot cast an empty view
        offset += a.nbytes
    parts.append(bytes(_padding(offset)))
    return b"".join(parts)


def decode_frame(
    data: bytes,
    meta_type: type[M],
    arrays_of: Callable[[M], Sequence[tuple[str, mpc_pb2.Array]]],
) -> tuple[M, list[Arr]]:
    """Read a frame: its protobuf part as ``meta_type``, and views of its arrays' bytes.

    ``arrays_of`` names and lists ``meta``'s array fields in frame order. Every array is checked
    as :func:`array_from_proto` checks it, padding must be zero, and the frame must be exactly
    as long as its arrays need.

    Raises
    ------
    ProtocolError
        Naming the field or the part of the frame that is wrong.
    """
    if len(data) < _FRAME_PREFIX:
        raise ProtocolError(f"frame of {len(data)} bytes is shorter than its length prefix")
    size = int.from_bytes(data[:_FRAME_PREFIX], "little")
    if size > min(MAX_FRAME_HEADER, len(data) - _FRAME_PREFIX):
        raise ProtocolError(
            f"frame header of {size} bytes does not fit the {len(data)}-byte frame "
            f"(at most {MAX_FRAME_HEADER})"
        )
    try:
        meta = meta_type.FromString(data[_FRAME_PREFIX : _FRAME_PREFIX + size])
    except DecodeError as exc:
        raise ProtocolError(f"frame header is not a valid {meta_type.__name__}: {exc}") from None
    view = memoryview(data)
    offset = _FRAME_PREFIX + size
    arrays = []
    for field, msg in arrays_of(meta):
        if msg.data:
            raise ProtocolError(f"{field}: a frame's arrays carry their bytes after the header")
        dtype, shape, nbytes = _layout(msg, field=field)
        offset = _skip_padding(view, offset, field)
        if offset + nbytes > len(data):
            raise ProtocolError(
                f"{field}: shape {list(shape)} of {msg.dtype} needs {nbytes} bytes, "
                f"the frame has {len(data) - offset} left"
            )
        arrays.append(_view(view[offset : offset + nbytes], dtype, shape, field))
        offset += nbytes
    offset = _skip_padding(view, offset, "the end")
    if offset != len(data):
        raise ProtocolError(f"frame has {len(data) - offset} bytes after its last array")
    return meta, arrays


def _skip_padding(view: memoryview, offset: int, field: str) -> int:
    end = offset + _padding(offset)
    if end > len(view) or any(view[offset:end]):
        raise ProtocolError(f"frame padding before {field} is missing or not zero")
    return end


def fill_message(target: mpc_pb2.Message, message: Mapping[int, Sequence[Arr]]) -> list[Arr]:
    """Describe one protocol message (levels, their arrays' dtypes and shapes) in ``target``.

    Returns the arrays to send after it in a frame (:func:`encode_frame`), in frame order.
    """
    out = []
    for level, arrays in sorted(message.items()):
        opening = target.openings.add(level=level)
        out += [describe_array(opening.arrays.add(), a) for a in arrays]
    return out


def message_arrays(msg: mpc_pb2.Message) -> list[tuple[str, mpc_pb2.Array]]:
    """Name and list a message's array fields in frame order (``arrays_of`` of a frame)."""
    return [
        (f"level {opening.level} array {i}", a)
        for opening in msg.openings
        for i, a in enumerate(opening.arrays)
    ]


def message_from_frame(msg: mpc_pb2.Message, arrays: Sequence[Arr]) -> dict[int, list[Arr]]:
    """Regroup a framed message's arrays by level, refusing a level that appears twice."""
    out: dict[int, list[Arr]] = {}
    it = iter(arrays)
    for opening in msg.openings:
        if opening.level in out:
            raise ProtocolError(f"message repeats level {opening.level}")
        out[opening.level] = [next(it) for _ in opening.arrays]
    return out


def header_to_proto(plan: QueryPlan, *, session_id: str, query_id: str) -> mpc_pb2.QueryHeader:
    """Encode the public description of a query."""
    return mpc_pb2.QueryHeader(
        session_id=session_id,
        query_id=query_id,
        rows=plan.rows,
        features=plan.features,
        output=plan.output.value,
        linear=plan.linear.value,
    )


def plan_from_header(header: mpc_pb2.QueryHeader) -> QueryPlan:
    """Build the plan a header describes, refusing an unknown output kind."""
    try:
        output = Output(header.output)
    except ValueError:
        raise ProtocolError(
            f"query output {header.output!r} unknown, expected one of {[o.value for o in Output]}"
        ) from None
    try:
        linear = Linear(header.linear or Linear.INPUT_OWNER.value)
    except ValueError:
        raise ProtocolError(
            f"query linear layer {header.linear!r} unknown, expected one of "
            f"{[v.value for v in Linear]}"
        ) from None
    return QueryPlan(
        rows=int(header.rows), features=int(header.features), output=output, linear=linear
    )


def deal_to_proto(deal: ServerDeal, header: mpc_pb2.QueryHeader) -> mpc_pb2.ServerDeal:
    """Encode the dealer's material for the server (arrays filled in place: one copy each)."""
    msg = mpc_pb2.ServerDeal(header=header, seed=deal.seed)
    fill_array(msg.logit, deal.logit)
    for products in deal.products:
        fill_array(msg.products.add(), products)
    if deal.beta_add is not None and deal.beta_rho is not None:
        fill_array(msg.beta_add, deal.beta_add)
        fill_array(msg.beta_rho, deal.beta_rho)
    return msg


def deal_from_proto(msg: mpc_pb2.ServerDeal) -> ServerDeal:
    """Decode the dealer's material (shapes are checked by ``expand_server``)."""
    return ServerDeal(
        seed=bytes(msg.seed),
        logit=array_from_proto(msg.logit, field="dealer logit"),
        products=tuple(
            array_from_proto(c, field=f"dealer products[{i}]") for i, c in enumerate(msg.products)
        ),
        beta_add=array_from_proto(msg.beta_add, field="dealer beta_add")
        if msg.HasField("beta_add")
        else None,
        beta_rho=array_from_proto(msg.beta_rho, field="dealer beta_rho")
        if msg.HasField("beta_rho")
        else None,
    )

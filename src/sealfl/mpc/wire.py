"""Protobuf encoding of arrays, protocol messages and dealer material (no pickle anywhere).

An array is its dtype name, shape and raw little-endian bytes. Decoding checks all three
against an allow-list and a size limit before viewing the bytes, so a malformed message is a
:class:`~sealfl.errors.ProtocolError` naming the field, never a crash or an allocation bomb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

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


def fill_array(target: mpc_pb2.Array, array: npt.ArrayLike) -> mpc_pb2.Array:
    """Encode a numeric array into ``target`` in place (little-endian, contiguous).

    Filling a field of the outgoing message, rather than building an ``Array`` and passing it
    to a constructor, saves a copy of the payload per nesting level: protobuf copies
    sub-messages given to constructors, which costs milliseconds at megabytes.
    """
    arr = np.asarray(array)
    if arr.dtype.name not in ALLOWED_DTYPES:
        raise ProtocolError(
            f"cannot send dtype {arr.dtype.name}: expected one of {sorted(ALLOWED_DTYPES)}"
        )
    target.dtype = arr.dtype.name
    target.shape[:] = list(arr.shape)
    target.data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return target


def array_to_proto(array: npt.ArrayLike) -> mpc_pb2.Array:
    """Encode a numeric array as a new message (see :func:`fill_array` for large payloads)."""
    return fill_array(mpc_pb2.Array(), array)


def array_from_proto(msg: mpc_pb2.Array, *, field: str) -> Arr:
    """Decode an array, checking dtype, shape and length; the result is read-only."""
    if msg.dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            f"{field}: dtype {msg.dtype!r} not allowed, expected one of {sorted(ALLOWED_DTYPES)}"
        )
    dtype = np.dtype(msg.dtype).newbyteorder("<")
    shape = tuple(int(s) for s in msg.shape)
    count = 1
    for s in shape:
        count *= s
    if count * dtype.itemsize > MAX_ARRAY_BYTES:
        raise ProtocolError(f"{field}: {count * dtype.itemsize} bytes exceeds {MAX_ARRAY_BYTES}")
    if len(msg.data) != count * dtype.itemsize:
        raise ProtocolError(
            f"{field}: shape {list(shape)} of {msg.dtype} needs {count * dtype.itemsize} bytes, "
            f"got {len(msg.data)}"
        )
    if len(shape) > MAX_DIMS:
        raise ProtocolError(f"{field}: {len(shape)} dimensions, at most {MAX_DIMS} allowed")
    try:
        return np.frombuffer(msg.data, dtype=dtype).reshape(shape)
    except ValueError as exc:  # an empty array whose dimensions numpy cannot represent
        raise ProtocolError(f"{field}: shape {list(shape)} is not a valid array ({exc})") from None


def fill_message(target: mpc_pb2.Message, message: Mapping[int, Sequence[Arr]]) -> None:
    """Encode one protocol message (levels and their opened arrays) into ``target``."""
    for level, arrays in sorted(message.items()):
        opening = target.openings.add(level=level)
        for a in arrays:
            fill_array(opening.arrays.add(), a)


def message_to_proto(message: Mapping[int, Sequence[Arr]]) -> mpc_pb2.Message:
    """Encode one protocol message as a new ``Message``."""
    out = mpc_pb2.Message()
    fill_message(out, message)
    return out


def message_from_proto(msg: mpc_pb2.Message) -> dict[int, list[Arr]]:
    """Decode one protocol message, refusing a level that appears twice."""
    out: dict[int, list[Arr]] = {}
    for opening in msg.openings:
        if opening.level in out:
            raise ProtocolError(f"message repeats level {opening.level}")
        out[opening.level] = [
            array_from_proto(a, field=f"level {opening.level} array {i}")
            for i, a in enumerate(opening.arrays)
        ]
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
    """Encode the dealer's material for the server."""
    msg = mpc_pb2.ServerDeal(
        header=header,
        seed=deal.seed,
        logit=array_to_proto(deal.logit),
        products=[array_to_proto(c) for c in deal.products],
    )
    if deal.beta_add is not None and deal.beta_rho is not None:
        msg.beta_add.CopyFrom(array_to_proto(deal.beta_add))
        msg.beta_rho.CopyFrom(array_to_proto(deal.beta_rho))
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

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sealfl.models
import sealfl.mpc
from sealfl.errors import ProtocolError
from sealfl.mpc import Linear, Output, QueryPlan, evaluate_locally
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.wire import (
    array_from_proto,
    array_to_proto,
    decode_frame,
    encode_frame,
    fill_message,
    header_to_proto,
    message_arrays,
    message_from_frame,
    plan_from_header,
)


@pytest.mark.parametrize("package", [sealfl.mpc, sealfl.models])
def test_exported_members(package: object) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(package.__all__) == public  # type: ignore[attr-defined]


@pytest.mark.parametrize("dtype", ["uint8", "uint32", "uint64", "float64"])
def test_array_round_trip(dtype: str) -> None:
    arr = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    back = array_from_proto(array_to_proto(arr), field="x")
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_refuses_bad_arrays_and_messages() -> None:
    with pytest.raises(ProtocolError, match="cannot send dtype int16"):
        array_to_proto(np.zeros(2, np.int16))
    with pytest.raises(ProtocolError, match="x: shape \\[3\\] of uint64 needs 24 bytes, got 8"):
        array_from_proto(mpc_pb2.Array(dtype="uint64", shape=[3], data=bytes(8)), field="x")
    huge = mpc_pb2.Array(dtype="uint64", shape=[1 << 40], data=b"")
    with pytest.raises(ProtocolError, match="exceeds"):
        array_from_proto(huge, field="x")
    msg = mpc_pb2.Message()
    arrays = fill_message(msg, {1: [np.zeros(2, np.uint64)]})
    msg.openings.add(level=1)
    with pytest.raises(ProtocolError, match="repeats level 1"):
        message_from_frame(msg, arrays)


def _framed(message: dict[int, list[np.ndarray]]) -> bytes:
    msg = mpc_pb2.Message()
    return encode_frame(msg, fill_message(msg, message))


def _unframe(frame: bytes) -> dict[int, list[np.ndarray]]:
    msg, arrays = decode_frame(frame, mpc_pb2.Message, message_arrays)
    return message_from_frame(msg, arrays)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["uint8", "uint64", "float64"]), st.integers(0, 13))))
def test_frame_round_trip_keeps_every_array_aligned(specs: list[tuple[str, int]]) -> None:
    message = {i: [np.arange(n, dtype=dt)] for i, (dt, n) in enumerate(specs)}
    frame = _framed(message)
    assert len(frame) % 8 == 0
    back = _unframe(frame)
    assert sorted(back) == sorted(message)
    for level, arrays in message.items():
        (got,) = back[level]
        assert got.dtype == arrays[0].dtype and np.array_equal(got, arrays[0])
        assert got.ctypes.data % 8 == 0 or got.size == 0
        assert not got.flags.writeable  # views of the received bytes, not copies


def test_refuses_malformed_frames_by_part() -> None:
    frame = _framed({0: [np.arange(3, dtype=np.uint64)], 1: [np.zeros(5, np.uint8)]})
    with pytest.raises(ProtocolError, match="shorter than its length prefix"):
        _unframe(frame[:3])
    with pytest.raises(ProtocolError, match="does not fit"):
        _unframe((1 << 30).to_bytes(4, "little") + frame[4:])
    with pytest.raises(ProtocolError, match="needs 5 bytes, the frame has 0 left"):
        _unframe(frame[:-8])
    with pytest.raises(ProtocolError, match="3 bytes after its last array"):
        _unframe(frame + bytes(3))
    bad_pad = bytearray(frame)
    bad_pad[-1] = 1  # the zero padding after the last (5-byte) array
    with pytest.raises(ProtocolError, match="padding before the end is missing or not zero"):
        _unframe(bytes(bad_pad))
    inline = mpc_pb2.Message()
    inline.openings.add(level=0).arrays.append(array_to_proto(np.zeros(1, np.uint64)))
    with pytest.raises(ProtocolError, match="carry their bytes after the header"):
        decode_frame(encode_frame(inline, []), mpc_pb2.Message, message_arrays)
    with pytest.raises(ProtocolError, match="not a valid Message"):
        _unframe((3).to_bytes(4, "little") + b"\xff\xff\xff" + bytes(1))


def test_header_round_trip_and_unknown_values() -> None:
    plan = QueryPlan(rows=5, features=7, output=Output.LABEL, linear=Linear.BEAVER)
    header = header_to_proto(plan, session_id="s", query_id="q")
    assert plan_from_header(header) == plan
    header.output = "softmax"
    with pytest.raises(ProtocolError, match="output 'softmax' unknown"):
        plan_from_header(header)
    header.output, header.linear = "label", "garbled"
    with pytest.raises(ProtocolError, match="linear layer 'garbled' unknown"):
        plan_from_header(header)


@settings(max_examples=12, deadline=None)
@given(
    rows=st.integers(1, 70),
    features=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.01, 3.0),
)
def test_protocol_matches_numpy(rows: int, features: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    w = rng.normal(scale=scale / np.sqrt(features), size=features)
    z = X @ w
    for linear in Linear:
        logit, _ = evaluate_locally(
            QueryPlan(rows=rows, features=features, output=Output.LOGIT, linear=linear), X, w
        )
        np.testing.assert_allclose(logit, z, atol=1e-4)
        prob, _ = evaluate_locally(
            QueryPlan(rows=rows, features=features, output=Output.PROBABILITY, linear=linear),
            X,
            w,
        )
        assert np.abs(prob - 1 / (1 + np.exp(-z))).max() <= 1e-3
        label, _ = evaluate_locally(
            QueryPlan(rows=rows, features=features, output=Output.LABEL, linear=linear), X, w
        )
        far = np.abs(z) > 1e-5  # exact comparison of the fixed-point logit
        assert np.array_equal(label[far], (z[far] >= 0).astype(np.int64))


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        ([1 << 63, 0], b""),  # empty, but no numpy array can have such a dimension
        ([1 << 32, 1 << 32, 0], b""),
        ([1] * 70, bytes(8)),  # more dimensions than numpy supports
    ],
)
def test_impossible_shapes_are_protocol_errors(shape: list[int], data: bytes) -> None:
    # A peer controls every field: a shape numpy cannot build is a ProtocolError naming the
    # field (the server's INVALID_ARGUMENT), not a ValueError (an opaque UNKNOWN status).
    msg = mpc_pb2.Array(dtype="uint64", shape=shape, data=data)
    with pytest.raises(ProtocolError, match=r"^x: "):
        array_from_proto(msg, field="x")

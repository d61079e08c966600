"""Chunked tensor streaming: round trips, and every malformed stream refused with a reason."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sealfl.errors import ConfigError, ProtocolError
from sealfl.net import TensorAssembler, TensorChunker, TensorTooLargeError, receive_tensor
from sealfl.net.protos import tensor_pb2

DTYPES = st.sampled_from(["<f4", "<f8", ">i4", "|u1", "|b1", "<c8", "<u8", "<i2"])


@settings(max_examples=60, deadline=None)
@given(
    array=DTYPES.flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, max_side=7))
    ),
    chunk_bytes=st.integers(1, 64),
)
def test_any_numeric_array_round_trips_bit_exactly(array: np.ndarray, chunk_bytes: int) -> None:
    chunker = TensorChunker(array, name="t", chunk_bytes=chunk_bytes)
    received = receive_tensor(iter(chunker), max_bytes=array.nbytes)
    assert received.name == "t"
    assert received.array.dtype == array.dtype
    assert received.array.shape == array.shape
    assert received.array.tobytes() == array.tobytes()  # bit-exact, NaNs included
    assert received.sha256 == chunker.sha256 == hashlib.sha256(array.tobytes()).digest()


def test_a_non_contiguous_view_is_sent_as_its_values() -> None:
    array = np.arange(24, dtype=np.int32).reshape(4, 6)[:, ::2]
    received = receive_tensor(iter(TensorChunker(array)), max_bytes=1 << 10)
    np.testing.assert_array_equal(received.array, array)


def test_chunks_are_bounded_and_count_as_expected() -> None:
    array = np.zeros(10_000, dtype=np.uint8)
    chunks = list(TensorChunker(array, chunk_bytes=3000))
    data = [c.data for c in chunks if c.WhichOneof("part") == "data"]
    assert [len(d) for d in data] == [3000, 3000, 3000, 1000]
    assert chunks[0].WhichOneof("part") == "header"
    assert chunks[-1].WhichOneof("part") == "trailer"


@pytest.mark.parametrize("dtype", [object, "U3", [("a", "<i4")], "M8[s]"])
def test_non_numeric_dtypes_are_refused_at_the_sender(dtype: object) -> None:
    with pytest.raises(ConfigError, match="plain numeric dtype"):
        TensorChunker(np.zeros(2, dtype=dtype))


def _stream(array: np.ndarray) -> list[tensor_pb2.TensorChunk]:
    return list(TensorChunker(array, name="w", chunk_bytes=4))


def test_a_header_over_the_limit_is_refused_before_allocating() -> None:
    header = tensor_pb2.TensorChunk(
        header=tensor_pb2.TensorHeader(name="w", dtype="<f8", shape=[1 << 40], total_bytes=8 << 40)
    )
    assembler = TensorAssembler(max_bytes=1 << 20, peer="worker-3")
    with pytest.raises(TensorTooLargeError, match=r"worker-3.*at most 1048576.*got 8796093022208"):
        assembler.feed(header)


def _tamper(chunks: list[tensor_pb2.TensorChunk], kind: str) -> list[tensor_pb2.TensorChunk]:
    if kind == "truncated":
        return [*chunks[:2], chunks[-1]]
    if kind == "overrun":
        return [*chunks[:-1], tensor_pb2.TensorChunk(data=b"xxxxx"), chunks[-1]]
    if kind == "flipped":
        bad = bytearray(chunks[1].data)
        bad[0] ^= 1
        return [chunks[0], tensor_pb2.TensorChunk(data=bytes(bad)), *chunks[2:]]
    if kind == "no-header":
        return chunks[1:]
    if kind == "two-headers":
        return [chunks[0], *chunks]
    if kind == "no-trailer":
        return chunks[:-1]
    if kind == "after-trailer":
        return [*chunks, chunks[1]]
    if kind == "empty-message":
        return [chunks[0], tensor_pb2.TensorChunk(), *chunks[1:]]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated", r"truncated: expected total_bytes=40, got 4"),
        ("overrun", r"data overruns the announced total_bytes=40 \(got 45\)"),
        ("flipped", r"sha256: sender says [0-9a-f]{64}, received data hashes to [0-9a-f]{64}"),
        ("no-header", r"expected the header first, got data"),
        ("two-headers", r"a second header"),
        ("no-trailer", r"stream ended before the trailer"),
        ("empty-message", r"empty message"),
    ],
)
def test_malformed_streams_are_refused_with_the_reason(kind: str, reason: str) -> None:
    chunks = _tamper(_stream(np.arange(10, dtype="<f4")), kind)
    with pytest.raises(ProtocolError, match=r"tensor '(w|\?)' from peer: " + reason):
        receive_tensor(iter(chunks), max_bytes=1 << 20)


def test_a_message_after_the_trailer_is_refused() -> None:
    assembler = TensorAssembler(max_bytes=1 << 20)
    chunks = _tamper(_stream(np.arange(10, dtype="<f4")), "after-trailer")
    results = [assembler.feed(c) for c in chunks[:-1]]
    assert results[-1] is not None
    with pytest.raises(ProtocolError, match="message after the trailer"):
        assembler.feed(chunks[-1])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"dtype": "<f4", "shape": [3], "total_bytes": 13}, r"expected prod\(shape=\[3\]\)"),
        ({"dtype": "O", "shape": [1], "total_bytes": 8}, "plain numeric dtype"),
        ({"dtype": "nonsense", "shape": [1], "total_bytes": 1}, "unknown numpy dtype"),
        ({"dtype": "|u1", "shape": [1] * 40, "total_bytes": 1}, "at most 32 dimensions"),
        ({"dtype": "<f4", "shape": [0, 1 << 61], "total_bytes": 0}, "beyond what an array"),
    ],
)
def test_inconsistent_headers_are_refused(header: dict[str, object], reason: str) -> None:
    chunk = tensor_pb2.TensorChunk(header=tensor_pb2.TensorHeader(name="h", **header))
    with pytest.raises(ProtocolError, match=reason):
        TensorAssembler(max_bytes=1 << 20).feed(chunk)


def test_an_empty_tensor_with_large_extents_still_arrives() -> None:
    array = np.zeros((0, 1 << 40), dtype="<f4")
    received = receive_tensor(iter(TensorChunker(array, name="e")), max_bytes=0)
    assert received.array.shape == (0, 1 << 40)

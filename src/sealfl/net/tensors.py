"""Chunked streaming of numpy arrays and raw bytes, with bounded memory on both ends.

A tensor travels as ``header, data..., trailer`` (:mod:`sealfl.net.protos.tensor_pb2`). The
sender slices the array in place and copies one chunk at a time into a message; the receiver
checks the header against its own size limit, allocates the whole buffer once, writes each
chunk into place, and at the end checks the length and the SHA-256. Neither side ever holds
more than the tensor itself plus a chunk or two (gRPC flow control bounds what is in flight).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from sealfl.errors import ConfigError, ProtocolError
from sealfl.net.protos import tensor_pb2

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "ReceivedTensor",
    "TensorAssembler",
    "TensorChunker",
    "TensorTooLargeError",
    "receive_tensor",
]

DEFAULT_CHUNK_BYTES = 2 * 1024 * 1024
"""2 MiB: large enough that per-message overhead is small, well under message-size limits."""

_MAX_NAME_BYTES = 256
_DTYPE_CODE = re.compile(r"[<>|=]?[?A-Za-z][0-9]{0,2}")  # a type code, as dtype.str writes it
_MAX_NDIM = 32
_NUMERIC_KINDS = frozenset("biufc")
_MAX_ARRAY_BYTES = int(np.iinfo(np.intp).max)  # numpy's bound on the non-zero extents' product


class TensorTooLargeError(ProtocolError):
    """A peer announced a tensor larger than the receiver accepts (refused before allocating)."""


def _check_dtype(dtype: np.dtype, *, who: str) -> None:
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
        raise ConfigError(
            f"{who}: tensors must have a plain numeric dtype (bool, int, uint, float, complex), "
            f"got {dtype.str!r}"
        )


class TensorChunker:
    """Iterable of :class:`TensorChunk` messages for one array; knows its SHA-256 afterwards.

    Iterating twice streams the array twice, so a retried upload can reuse the object.

    Parameters
    ----------
    array
        Any numeric array; a non-contiguous one is copied once to make it contiguous.
    name
        Name carried in the header (at most 256 bytes of UTF-8).
    chunk_bytes
        Data bytes per message; keep it below the channel's message-size limit.
    """

    def __init__(
        self, array: np.ndarray, *, name: str = "", chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> None:
        _check_dtype(array.dtype, who=f"tensor {name!r}")
        if len(name.encode()) > _MAX_NAME_BYTES:
            raise ConfigError(f"tensor name: at most {_MAX_NAME_BYTES} bytes, got {name[:40]!r}…")
        if chunk_bytes < 1:
            raise ConfigError(f"chunk_bytes: expected >= 1, got {chunk_bytes}")
        # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
        self._array = array if array.flags.c_contiguous else array.copy(order="C")
        self._name = name
        self._chunk_bytes = chunk_bytes
        self.sha256: bytes | None = None
        """SHA-256 of the data, set when an iteration has finished."""

    @property
    def total_bytes(self) -> int:
        """Size of the data in bytes."""
        return int(self._array.nbytes)

    def __iter__(self) -> Iterator[tensor_pb2.TensorChunk]:
        array = self._array
        header = tensor_pb2.TensorHeader(
            name=self._name,
            dtype=array.dtype.str,
            shape=[int(n) for n in array.shape],
            total_bytes=int(array.nbytes),
        )
        yield tensor_pb2.TensorChunk(header=header)
        flat = array.reshape(-1).view(np.uint8).data
        digest = hashlib.sha256()
        for start in range(0, len(flat), self._chunk_bytes):
            piece = flat[start : start + self._chunk_bytes]
            digest.update(piece)
            yield tensor_pb2.TensorChunk(data=bytes(piece))
        self.sha256 = digest.digest()
        yield tensor_pb2.TensorChunk(trailer=tensor_pb2.TensorTrailer(sha256=self.sha256))


@dataclass(frozen=True)
class ReceivedTensor:
    """A tensor that arrived complete, with the SHA-256 the receiver computed over its bytes."""

    name: str
    array: np.ndarray
    sha256: bytes


class TensorAssembler:
    """Receive one tensor chunk by chunk into a buffer allocated once from the header.

    Parameters
    ----------
    max_bytes
        The largest tensor this receiver accepts; a header announcing more is refused before
        anything is allocated.
    peer
        Who is sending, for error messages.
    """

    def __init__(self, *, max_bytes: int, peer: str = "peer") -> None:
        self._max_bytes = max_bytes
        self._peer = peer
        self._header: tensor_pb2.TensorHeader | None = None
        self._buffer: np.ndarray | None = None
        self._filled = 0
        self._digest = hashlib.sha256()
        self._result: ReceivedTensor | None = None

    def _fail(self, message: str) -> ProtocolError:
        name = self._header.name if self._header is not None else "?"
        return ProtocolError(f"tensor {name!r} from {self._peer}: {message}")

    def feed(self, chunk: tensor_pb2.TensorChunk) -> ReceivedTensor | None:
        """Take the next message; return the tensor once the trailer has checked out.

        Raises
        ------
        ProtocolError
            On a message out of order, a header over the limit or inconsistent with itself,
            data beyond the announced length, or a length or SHA-256 mismatch at the end.
        """
        if self._result is not None:
            raise self._fail("message after the trailer")
        part = chunk.WhichOneof("part")
        if part == "header":
            self._start(chunk.header)
            return None
        if self._header is None or self._buffer is None:
            raise self._fail(f"expected the header first, got {part or 'an empty message'}")
        if part == "data":
            end = self._filled + len(chunk.data)
            if end > self._buffer.size:
                raise self._fail(
                    f"data overruns the announced total_bytes={self._buffer.size} (got {end})"
                )
            self._buffer[self._filled : end] = np.frombuffer(chunk.data, dtype=np.uint8)
            self._digest.update(chunk.data)
            self._filled = end
            return None
        if part == "trailer":
            return self._finish(chunk.trailer)
        raise self._fail("empty message (no header, data or trailer)")

    def _start(self, header: tensor_pb2.TensorHeader) -> None:
        if self._header is not None:
            raise self._fail("a second header")
        self._header = header
        # numpy's dtype parser takes far more than a plain type code (structured types,
        # sub-arrays, Python literals it evaluates): give it nothing but a type code.
        if not _DTYPE_CODE.fullmatch(header.dtype):
            raise self._fail(
                f"dtype: unknown numpy dtype {header.dtype!r} (expected a code such as '<f4')"
            )
        try:
            dtype = np.dtype(header.dtype)
        except TypeError as exc:
            raise self._fail(f"dtype: unknown numpy dtype {header.dtype!r}") from exc
        try:
            _check_dtype(dtype, who="dtype")
        except ConfigError as exc:
            raise self._fail(str(exc)) from exc
        if len(header.shape) > _MAX_NDIM:
            raise self._fail(f"shape: at most {_MAX_NDIM} dimensions, got {len(header.shape)}")
        expected = math.prod(header.shape) * dtype.itemsize
        if header.total_bytes != expected:
            raise self._fail(
                f"total_bytes: expected prod(shape={list(header.shape)}) x itemsize "
                f"{dtype.itemsize} = {expected}, got {header.total_bytes}"
            )
        if header.total_bytes > self._max_bytes:
            raise TensorTooLargeError(
                f"tensor {header.name!r} from {self._peer}: "
                f"total_bytes: at most {self._max_bytes} accepted, got {header.total_bytes}"
            )
        # A shape with a zero in it holds no bytes whatever its other extents, but numpy refuses
        # to make an array whose other extents multiply beyond its index range.
        extents = math.prod(n for n in header.shape if n) * dtype.itemsize
        if extents > _MAX_ARRAY_BYTES:
            raise self._fail(
                f"shape: {list(header.shape)} has extents beyond what an array can index "
                f"({extents} bytes without its zero extents, at most {_MAX_ARRAY_BYTES})"
            )
        self._buffer = np.empty(header.total_bytes, dtype=np.uint8)

    def incomplete(self) -> ProtocolError:
        """Return the error for a stream that ended before the trailer."""
        return self._fail(f"stream ended before the trailer ({self._filled} data bytes in)")

    def _finish(self, trailer: tensor_pb2.TensorTrailer) -> ReceivedTensor:
        assert self._header is not None and self._buffer is not None
        if self._filled != self._buffer.size:
            raise self._fail(
                f"truncated: expected total_bytes={self._buffer.size}, got {self._filled}"
            )
        digest = self._digest.digest()
        if trailer.sha256 != digest:
            raise self._fail(
                f"sha256: sender says {trailer.sha256.hex()}, received data hashes to "
                f"{digest.hex()}"
            )
        header = self._header
        array = self._buffer.view(np.dtype(header.dtype)).reshape(tuple(header.shape))
        self._result = ReceivedTensor(name=header.name, array=array, sha256=digest)
        return self._result


def receive_tensor(
    chunks: Iterable[tensor_pb2.TensorChunk], *, max_bytes: int, peer: str = "peer"
) -> ReceivedTensor:
    """Assemble one tensor from a stream of chunks that must end with its trailer.

    Raises
    ------
    ProtocolError
        See :meth:`TensorAssembler.feed`; also if the stream ends before the trailer.
    """
    assembler = TensorAssembler(max_bytes=max_bytes, peer=peer)
    for chunk in chunks:
        result = assembler.feed(chunk)
        if result is not None:
            return result
    raise assembler.incomplete()

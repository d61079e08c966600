"""A small reference service on the secure transport: ping, tensor upload and download.

It serves the tests and the benchmark, and is a template for workload services: bounded
storage, tensors streamed in chunks, errors mapped to gRPC status codes with a clear detail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np

from sealfl.errors import ConfigError, ProtocolError
from sealfl.net.calls import RetryPolicy
from sealfl.net.channel import SecureChannel
from sealfl.net.protos import tensor_pb2, transfer_pb2, transfer_pb2_grpc
from sealfl.net.tensors import (
    DEFAULT_CHUNK_BYTES,
    ReceivedTensor,
    TensorChunker,
    TensorTooLargeError,
    receive_tensor,
)

__all__ = ["TensorStore", "TransferServicer", "get_tensor", "ping", "put_tensor"]

_MAX_PING_BYTES = 64 * 1024


class TensorStore:
    """Named tensors held in memory, bounded in total bytes."""

    def __init__(self, *, max_total_bytes: int) -> None:
        self.max_total_bytes = max_total_bytes
        self._tensors: dict[str, ReceivedTensor] = {}
        self._lock = threading.Lock()

    def room_for(self, name: str) -> int:
        """Bytes a tensor stored under ``name`` may take (what it would replace counts free)."""
        with self._lock:
            return max(0, self.max_total_bytes - self._used_by_others(name))

    def put(self, tensor: ReceivedTensor) -> None:
        """Store ``tensor`` under its name, replacing any earlier one.

        Raises
        ------
        ConfigError
            If it no longer fits (another upload took the room meanwhile).
        """
        with self._lock:
            used = self._used_by_others(tensor.name)
            if used + tensor.array.nbytes > self.max_total_bytes:
                raise ConfigError(
                    f"tensor store: {tensor.array.nbytes} bytes for {tensor.name!r} do not fit "
                    f"({used} of {self.max_total_bytes} used)"
                )
            self._tensors[tensor.name] = tensor

    def _used_by_others(self, name: str) -> int:
        """Bytes held under names other than ``name`` (the caller holds the lock)."""
        return sum(t.array.nbytes for n, t in self._tensors.items() if n != name)

    def get(self, name: str) -> ReceivedTensor | None:
        """Return the tensor stored under ``name``, or None."""
        with self._lock:
            return self._tensors.get(name)


class TransferServicer(transfer_pb2_grpc.TransferServicer):
    """Ping, Put (client-streaming upload) and Get (server-streaming download)."""

    def __init__(self, store: TensorStore, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self._store = store
        self._chunk_bytes = chunk_bytes

    def Ping(  # noqa: N802 - gRPC method name
        self, request: transfer_pb2.PingRequest, context: grpc.ServicerContext
    ) -> transfer_pb2.PingReply:
        """Echo the payload (at most 64 KiB)."""
        if len(request.payload) > _MAX_PING_BYTES:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"payload: at most {_MAX_PING_BYTES} bytes, got {len(request.payload)}",
            )
        return transfer_pb2.PingReply(payload=request.payload)

    def Put(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[tensor_pb2.TensorChunk], context: grpc.ServicerContext
    ) -> transfer_pb2.PutReply:
        """Receive one tensor, check it, store it, and reply with the SHA-256 we computed."""
        chunks = iter(request_iterator)
        first = next(chunks, None)
        name = first.header.name if first is not None and first.HasField("header") else ""
        room = self._store.room_for(name)
        try:
            tensor = receive_tensor(_prepend(first, chunks), max_bytes=room, peer=context.peer())
            self._store.put(tensor)
        except (TensorTooLargeError, ConfigError) as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except ProtocolError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return transfer_pb2.PutReply(
            name=tensor.name, total_bytes=tensor.array.nbytes, sha256=tensor.sha256
        )

    def Get(  # noqa: N802 - gRPC method name
        self, request: transfer_pb2.GetRequest, context: grpc.ServicerContext
    ) -> Iterator[tensor_pb2.TensorChunk]:
        """Stream the named tensor back in chunks."""
        tensor = self._store.get(request.name)
        if tensor is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no tensor named {request.name!r}")
        yield from TensorChunker(tensor.array, name=tensor.name, chunk_bytes=self._chunk_bytes)


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
    yield from rest


def ping(
    channel: SecureChannel[Any],
    payload: bytes = b"",
    *,
    timeout_s: float | None = None,
    retry: RetryPolicy | None = None,
) -> bytes:
    """Round-trip ``payload`` (idempotent, so a retry policy is safe)."""
    stub = channel.stub(transfer_pb2_grpc.TransferStub)
    reply = channel.call(
        stub.Ping, transfer_pb2.PingRequest(payload=payload), timeout_s=timeout_s, retry=retry
    )
    return bytes(reply.payload)


def put_tensor(
    channel: SecureChannel[Any],
    name: str,
    array: np.ndarray,
    *,
    timeout_s: float | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    retry: RetryPolicy | None = None,
) -> transfer_pb2.PutReply:
    """Upload ``array`` under ``name``; check the server hashed exactly what we sent.

    Put replaces the stored tensor by name, so it is idempotent and ``retry`` is safe.

    Raises
    ------
    ProtocolError
        If the server's SHA-256 or length differs from ours.
    """
    stub = channel.stub(transfer_pb2_grpc.TransferStub)
    chunker = TensorChunker(array, name=name, chunk_bytes=chunk_bytes)
    reply = channel.call_stream(
        stub.Put, lambda: iter(chunker), timeout_s=timeout_s, retry=retry, what="Transfer.Put"
    )
    if reply.sha256 != chunker.sha256 or reply.total_bytes != chunker.total_bytes:
        raise ProtocolError(
            f"server at {channel.address} received tensor {name!r} as {reply.total_bytes} bytes "
            f"sha256:{reply.sha256.hex()}, we sent {chunker.total_bytes} bytes "
            f"sha256:{(chunker.sha256 or b'').hex()}"
        )
    return reply


def get_tensor(
    channel: SecureChannel[Any],
    name: str,
    *,
    max_bytes: int,
    timeout_s: float | None = None,
) -> ReceivedTensor:
    """Download the tensor stored under ``name``, refusing one larger than ``max_bytes``."""
    stub = channel.stub(transfer_pb2_grpc.TransferStub)
    chunks = channel.stream(
        stub.Get, transfer_pb2.GetRequest(name=name), timeout_s=timeout_s, what="Transfer.Get"
    )
    try:
        return receive_tensor(chunks, max_bytes=max_bytes, peer=f"server at {channel.address}")
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()

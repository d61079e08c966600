"""Serve synchronous gRPC handlers from an asyncio listener without letting slow peers pin threads.

Workload servicers are ordinary synchronous classes (generated ``XServicer`` subclasses). On an
asyncio listener (:mod:`grpc.aio`) each of their handlers is wrapped here so that:

1. the call is admitted first (:class:`~sealfl.net.admission.PeerAdmission`: per-address and
   total limits; a refused call ends at once, marked busy);
2. the peer check runs (the allow-list check of the service listener, if any);
3. the request message is awaited ON THE EVENT LOOP, with a read deadline: a peer that never
   sends it costs no thread and is cut off when the deadline passes;
4. only then does the handler run, in a bounded thread pool, with a :class:`SyncContext` that
   offers the synchronous ``grpc.ServicerContext`` API (``abort`` raises, as it does there).

Unary-request methods are registered as request-streaming ones to make step 3 possible (gRPC's
asyncio server reads a unary request before any application code runs, without a deadline);
the bytes on the wire are the same, so clients see no difference. Request streams are fed to
the handler one message at a time, each within the idle deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, NoReturn, TypeVar, cast

import grpc
import grpc.aio

from sealfl.net.admission import BUSY_METADATA_KEY, PeerAdmission, source_address
from sealfl.net.guard import PeerCheck

__all__ = ["Bridge", "CallRefused", "HandlerCollector", "SyncContext"]

T = TypeVar("T")
Metadata = Sequence[tuple[str, str | bytes]]

_END = object()


class CallRefused(Exception):  # noqa: N818 - it is the refusal itself, as grpc's abort is
    """A synchronous handler (or the peer check) ended the call: ``context.abort`` raised it."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailing = tuple(trailing)


class SyncContext(grpc.ServicerContext):
    """The synchronous ``ServicerContext`` API over an asyncio call's context.

    ``abort`` raises :class:`CallRefused`, which the bridge turns into the call's status, just
    as gRPC's threaded server turns its own abort exception into one.
    """

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any], loop: Any) -> None:
        self._context = context
        self._loop = loop
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        self._code: grpc.StatusCode | None = None
        self._details: str = ""

    # -- the call ---------------------------------------------------------------------------

    def is_active(self) -> bool:
        """Whether the call is still going on."""
        return not self._context.done()

    def time_remaining(self) -> float:
        """Seconds left before the call's deadline."""
        remaining = self._context.time_remaining()
        return float("inf") if remaining is None else float(remaining)

    def cancel(self) -> None:
        """End the call as cancelled."""
        raise CallRefused(grpc.StatusCode.CANCELLED, "cancelled by the server")

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` when the call ends."""
        self._context.add_done_callback(cast(Any, lambda _context: callback()))
        return True

    def invocation_metadata(self) -> Any:
        """Return the metadata the client sent."""
        return self._context.invocation_metadata() or ()

    def peer(self) -> str:
        """Return the peer's address."""
        return self._context.peer()

    def peer_identities(self) -> Iterable[bytes] | None:
        """Return the peer's authenticated identities."""
        return self._context.peer_identities()

    def peer_identity_key(self) -> str | None:
        """Return the name of the identity property."""
        return self._context.peer_identity_key()

    def auth_context(self) -> Any:
        """Return the call's authentication context (the client certificate, if any)."""
        return self._context.auth_context()

    def set_compression(self, compression: grpc.Compression) -> None:
        """Set the compression of the response."""
        self._context.set_compression(compression)

    def disable_next_message_compression(self) -> None:
        """Send the next message uncompressed."""
        self._context.disable_next_message_compression()

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        """Send the initial metadata now."""
        # Called from a handler thread: hand the coroutine to the loop and wait for it.
        asyncio.run_coroutine_threadsafe(
            self._context.send_initial_metadata(initial_metadata), self._loop
        ).result()

    # -- the status -------------------------------------------------------------------------

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        """Set the metadata sent with the status."""
        self._trailing = tuple(trailing_metadata)
        self._context.set_trailing_metadata(self._trailing)

    def trailing_metadata(self) -> Any:
        """Return the metadata set for the status."""
        return self._trailing

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        """End the call with ``code`` and ``details`` (raises :class:`CallRefused`)."""
        raise CallRefused(code, details, self._trailing)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """End the call with ``status`` (raises :class:`CallRefused`)."""
        raise CallRefused(status.code, status.details, status.trailing_metadata or ())

    def set_code(self, code: grpc.StatusCode) -> None:
        """Set the call's status code."""
        self._code = code
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        """Set the call's status details."""
        self._details = details
        self._context.set_details(details)

    def code(self) -> grpc.StatusCode | None:
        """Return the status code set, if any."""
        return self._code

    def details(self) -> str:
        """Return the status details set."""
        return self._details


class _RequestStream(Iterator[Any]):
    """A request stream for a handler thread: each message awaited on the loop, with a deadline."""

    def __init__(
        self, first: Any, source: AsyncIterator[Any], loop: asyncio.AbstractEventLoop, idle_s: float
    ) -> None:
        self._first: Any = first
        self._source = source
        self._loop = loop
        self._idle_s = idle_s

    def __next__(self) -> Any:
        if self._first is not _END:
            item, self._first = self._first, _END
            return item
        item = asyncio.run_coroutine_threadsafe(self._receive(), self._loop).result()
        if item is _END:
            raise StopIteration
        return item

    async def _receive(self) -> Any:
        try:
            return await asyncio.wait_for(anext(self._source), self._idle_s)
        except StopAsyncIteration:
            return _END
        except TimeoutError:
            raise CallRefused(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no further request message within {self._idle_s:g} s",
            ) from None


async def _abort(context: grpc.aio.ServicerContext[Any, Any], refusal: CallRefused) -> NoReturn:
    await context.abort(refusal.code, refusal.details, refusal.trailing)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class Bridge:
    """Wraps synchronous method handlers for an asyncio listener (see the module docstring).

    Parameters
    ----------
    executor
        Runs the handlers; its size bounds the threads calls can occupy.
    admission
        Per-address and total limits, and the read and idle deadlines.
    check
        Optional peer check, run before the request is read; it refuses by ``context.abort``.
    """

    def __init__(
        self, *, executor: Executor, admission: PeerAdmission, check: PeerCheck | None = None
    ) -> None:
        self._executor = executor
        self._admission = admission
        self._check = check

    def wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """Return the asyncio form of a synchronous method handler."""
        behaviour: Callable[[Any, grpc.ServicerContext], Any] | None = (
            handler.unary_unary or handler.unary_stream or handler.stream_unary
        ) or handler.stream_stream
        if behaviour is None:
            raise TypeError(f"RPC method handler {handler!r} has no behaviour to bridge")
        streaming_request = bool(handler.request_streaming)
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:

            async def stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
                # An async generator function itself: gRPC tells the kinds apart by that.
                async for item in self._serve_stream(
                    behaviour, streaming_request, requests, context
                ):
                    yield item

            return grpc.stream_stream_rpc_method_handler(stream, **codec)

        async def unary(requests: AsyncIterator[Any], context: Any) -> Any:
            return await self._serve_unary(behaviour, streaming_request, requests, context)

        return grpc.stream_unary_rpc_method_handler(unary, **codec)

    # -- per call ---------------------------------------------------------------------------

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        address = source_address(context.peer())
        if not self._admission.enter(address):
            limit = self._admission.policy.max_calls_per_address
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {limit} calls already in flight from {address}; try again later",
                ((BUSY_METADATA_KEY, "1"),),
            )
        return address

    async def _prepare(
        self,
        streaming_request: bool,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> tuple[Any, SyncContext]:
        loop = asyncio.get_running_loop()
        sync_context = SyncContext(context, loop)
        if self._check is not None:
            try:
                self._check(sync_context)
            except CallRefused as refusal:
                await _abort(context, refusal)
        policy = self._admission.policy
        try:
            first = await asyncio.wait_for(anext(requests), policy.read_deadline_s)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"request message not received within {policy.read_deadline_s:g} s of the call",
            )
        except StopAsyncIteration:
            if not streaming_request:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the call ended without a request message"
                )
            first = _END
        if not streaming_request:
            return first, sync_context
        if first is _END:
            return iter(()), sync_context
        return _RequestStream(first, requests, loop, policy.idle_deadline_s), sync_context

    async def _in_thread(
        self,
        work: Callable[[], T],
        context: grpc.aio.ServicerContext[Any, Any],
        sync_context: SyncContext,
    ) -> T:
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()

        def run() -> T:
            if abandoned.is_set():  # the caller went away while this waited for a thread
                raise CallRefused(grpc.StatusCode.CANCELLED, "the call was cancelled")
            return work()

        try:
            return await loop.run_in_executor(self._executor, run)
        except asyncio.CancelledError:
            abandoned.set()
            raise
        except CallRefused as refusal:
            await _abort(context, refusal)
        except Exception:
            code = sync_context.code()
            if code is not None and code is not grpc.StatusCode.OK:
                # As the threaded server does: a handler that set a status and then raised.
                await context.abort(code, sync_context.details())
            raise

    async def _serve_unary(
        self,
        behaviour: Callable[[Any, grpc.ServicerContext], Any],
        streaming_request: bool,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Any:
        address = await self._admit(context)
        try:
            request, sync_context = await self._prepare(streaming_request, requests, context)
            return await self._in_thread(
                lambda: behaviour(request, sync_context), context, sync_context
            )
        finally:
            self._admission.leave(address)

    async def _serve_stream(
        self,
        behaviour: Callable[[Any, grpc.ServicerContext], Any],
        streaming_request: bool,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Any]:
        address = await self._admit(context)
        try:
            request, sync_context = await self._prepare(streaming_request, requests, context)
            responses: Iterator[Any] = await self._in_thread(
                lambda: iter(behaviour(request, sync_context)), context, sync_context
            )
            while True:
                item = await self._in_thread(lambda: next(responses, _END), context, sync_context)
                if item is _END:
                    return
                yield item
        finally:
            self._admission.leave(address)


class HandlerCollector:
    """Stands in for an asyncio server while servicers register, before the server exists.

    gRPC's asyncio server must be made on its event loop, which starts with the listener; the
    handlers registered before are kept here and handed over then.
    """

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Keep ``handlers`` for the server."""
        self.handlers.extend(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        """Keep one service's handlers, as a generic handler."""
        handlers = dict(method_handlers)
        self.handlers.append(grpc.method_handlers_generic_handler(service_name, handlers))

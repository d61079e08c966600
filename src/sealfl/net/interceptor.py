"""A server interceptor that runs a peer check inside every RPC, before the handler.

``grpc.ServerInterceptor`` sees only the method name, not the call's TLS context, so the check
is placed by wrapping the handler's behaviour: the wrapper receives the servicer context, runs
the check (which aborts the call to refuse it), then hands over to the real handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

__all__ = ["PeerCheckInterceptor"]

PeerCheck = Callable[[grpc.ServicerContext], None]


def _guard(behavior: Callable[[Any, grpc.ServicerContext], Any], check: PeerCheck) -> Any:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        check(context)
        return behavior(request, context)

    return guarded


class PeerCheckInterceptor(grpc.ServerInterceptor):
    """Run ``check(context)`` at the start of every call of every service on the server."""

    def __init__(self, check: PeerCheck) -> None:
        self._check = check
        self._guarded: dict[str, grpc.RpcMethodHandler | None] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Return the method's handler with its behaviour wrapped by the check."""
        method = handler_call_details.method
        if method in self._guarded:  # handlers are fixed once the server runs: wrap each once
            return self._guarded[method]
        guarded = self._guard_handler(continuation(handler_call_details))
        if guarded is not None:  # unknown methods are not remembered (the table stays bounded)
            self._guarded[method] = guarded
        return guarded

    def _guard_handler(self, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
        if handler is None:
            return None
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard(handler.unary_unary, self._check), **codec
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _guard(handler.unary_stream, self._check), **codec
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _guard(handler.stream_unary, self._check), **codec
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _guard(handler.stream_stream, self._check), **codec
            )
        return handler

"""A ``grpc.Channel`` whose connection can be replaced under the stubs built on it.

gRPC Python fixes a channel's TLS material when the channel is made: the pinned server
certificate and our client certificate and key. Renewing either (a long run renews both every
hour or so) therefore needs a new channel, yet workload code builds stubs and multi-callables
once and keeps them. :class:`RebindableChannel` hands out late-bound multi-callables that look
up the *current* channel at each call, so a stub made at the start keeps working across
renewals; calls in flight stay on the channel they started on, which is closed only later.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

__all__ = ["RebindableChannel"]


class _LateBound:
    """A multi-callable that resolves to the current channel's at each call.

    The hot path takes no lock: the owner swaps one ``(channel, generation)`` tuple, which a
    reader gets whole, and two threads that both see a new generation merely both build the
    same multi-callable.
    """

    def __init__(self, owner: RebindableChannel, kind: str, method: str, options: Any) -> None:
        self._owner = owner
        self._kind = kind
        self._method = method  # read by sealfl.net.channel to name the call in errors
        self._options = options
        self._bound: tuple[int, Any] = (-1, None)

    def _current(self) -> Any:
        generation, bound = self._bound
        channel, current = self._owner.current()
        if generation != current:
            bound = getattr(channel, self._kind)(self._method, **self._options)
            self._bound = (current, bound)
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._current()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().future(*args, **kwargs)


class RebindableChannel(grpc.Channel):
    """Delegates to a replaceable ``grpc.Channel`` (see the module docstring).

    :meth:`rebind` installs a new channel and returns the previous one, which the caller closes
    once calls in flight on it have had time to finish.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self._state = (channel, 0)  # replaced whole, so readers need no lock
        self._lock = threading.Lock()

    def current(self) -> tuple[grpc.Channel, int]:
        """Return the channel in use and its generation (incremented by each rebind)."""
        return self._state

    def rebind(self, channel: grpc.Channel) -> grpc.Channel:
        """Use ``channel`` from the next call on; return the one it replaces."""
        with self._lock:
            previous, generation = self._state
            self._state = (channel, generation + 1)
        return previous

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Return a late-bound unary-unary multi-callable."""
        return _LateBound(self, "unary_unary", method, _options(args, kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Return a late-bound unary-stream multi-callable."""
        return _LateBound(self, "unary_stream", method, _options(args, kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Return a late-bound stream-unary multi-callable."""
        return _LateBound(self, "stream_unary", method, _options(args, kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Return a late-bound stream-stream multi-callable."""
        return _LateBound(self, "stream_stream", method, _options(args, kwargs))

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        """Watch the current channel's connectivity."""
        self.current()[0].subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        """Stop watching connectivity."""
        self.current()[0].unsubscribe(callback)

    def close(self) -> None:
        """Close the current channel."""
        self.current()[0].close()

    def __enter__(self) -> RebindableChannel:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _options(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Name the positional serialiser arguments, so they can be passed on by keyword."""
    names = ("request_serializer", "response_deserializer")
    return {**dict(zip(names, args, strict=False)), **kwargs}

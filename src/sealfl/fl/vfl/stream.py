"""The step stream as queues with deadlines: one gRPC bidirectional stream, either end.

gRPC's bidirectional streams are blocking iterators on both ends; a training loop needs
instead "send this" and "give me the next message, or tell me at the deadline that none came".
A :class:`Duplex` is one stream seen that way: what the loop sends goes on a queue the stream
drains (:meth:`Duplex.outgoing`), and a reader thread puts every received message, then one
end-of-stream event with its reason, on the party's :class:`Inbox`. All streams of a party
(a stream, then the one a reconnect opens) feed the same inbox, so a loop waits on one queue
with one deadline, and tells the current stream's messages from a stale one's by
:attr:`Event.stream`.

The cut tensors travel as :class:`~sealfl.fl.vfl.protos.vfl_pb2.Tensor` messages (dtype, shape,
little-endian bytes); :func:`cut_message` and :func:`cut_values` make and check them with
:mod:`sealfl.fl.vfl.cut`, so a peer's wrong dtype, wrong shape or non-finite value is refused
before it reaches a network.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError, SealflError
from sealfl.fl.vfl.cut import CUT_DTYPE, decode_cut, encode_cut
from sealfl.fl.vfl.protos import vfl_pb2 as pb

__all__ = [
    "Duplex",
    "Event",
    "Inbox",
    "check_step",
    "cut_message",
    "cut_values",
    "ids_digest",
    "message_kind",
    "tensor_digest",
]

_CLOSE = object()


@dataclass(frozen=True)
class Event:
    """A message received on ``stream``, or (``message is None``) the end of that stream."""

    stream: Duplex
    message: Any | None
    reason: str = ""


class Inbox:
    """The events of every stream of one party, in arrival order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()

    def put(self, event: Event) -> None:
        """Add an event (from a reader thread)."""
        self._queue.put(event)

    def get(self, deadline: float) -> Event | None:
        """Return the next event, or ``None`` once ``deadline`` (``time.monotonic``) passes."""
        left = deadline - time.monotonic()
        if left <= 0:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                return None
        try:
            return self._queue.get(timeout=left)
        except queue.Empty:
            return None


class Duplex:
    """One bidirectional stream: a send queue it drains, and a reader feeding an :class:`Inbox`.

    Parameters
    ----------
    inbox
        Where received messages and the end of the stream go.
    name
        What the peer is called in messages (``"the follower"``).
    """

    def __init__(self, inbox: Inbox, *, name: str) -> None:
        self.inbox = inbox
        self.name = name
        self._out: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._cancel: Callable[[], Any] | None = None
        self.sent_bytes = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called or the stream ended."""
        return self._closed.is_set()

    def send(self, message: Any) -> None:
        """Queue ``message`` for the peer (dropped if the stream is closed: a resync resends)."""
        if not self._closed.is_set():
            self.sent_bytes += message.ByteSize()
            self._out.put(message)

    def outgoing(self) -> Iterator[Any]:
        """Yield the queued messages until :meth:`close` (gRPC drains this)."""
        while True:
            message = self._out.get()
            if message is _CLOSE:
                return
            yield message

    def start_reader(
        self, messages: Iterable[Any], *, cancel: Callable[[], Any] | None = None
    ) -> None:
        """Read ``messages`` on a daemon thread into the inbox; the last event ends the stream.

        ``cancel`` stops the underlying call when this side closes (a client's call).
        """
        self._cancel = cancel
        threading.Thread(
            target=self._read, args=(messages,), daemon=True, name=f"vfl-read-{self.name}"
        ).start()

    def _read(self, messages: Iterable[Any]) -> None:
        reason = f"{self.name} closed the stream"
        try:
            for message in messages:
                self.inbox.put(Event(self, message))
        except SealflError as exc:
            reason = str(exc)
        except Exception as exc:  # grpc raises its own errors for a cancelled or broken call
            reason = f"{self.name}'s stream broke: {type(exc).__name__}: {exc}"
        finally:
            self._closed.set()
            self._out.put(_CLOSE)
            self.inbox.put(Event(self, None, reason))

    def close(self) -> None:
        """End this side of the stream (idempotent); cancel the call if we are its client."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._out.put(_CLOSE)
        if self._cancel is not None:
            self._cancel()


def cut_message(
    values: npt.NDArray[np.floating], dtype: np.dtype[np.floating] = CUT_DTYPE
) -> pb.Tensor:
    """Return the wire form of a cut tensor (float32 ``[B, k]``) sent as ``dtype``."""
    return pb.Tensor(dtype=dtype.str, shape=list(values.shape), data=encode_cut(values, dtype))


def cut_values(
    message: pb.Tensor,
    *,
    rows: int,
    width: int,
    what: str,
    dtype: np.dtype[np.floating] = CUT_DTYPE,
) -> npt.NDArray[np.float32]:
    """Return a received cut tensor as float32 after every check (dtype, shape, finiteness).

    ``dtype`` is the wire dtype of the shared settings: another is refused, not converted.

    Raises
    ------
    ProtocolError
        Naming ``what``, the expected and the received dtype or shape, or the first non-finite
        value.
    """
    if message.dtype != dtype.str:
        raise ProtocolError(
            f"{what}: expected dtype {dtype.str} ({dtype.name}), got {message.dtype[:16]!r}"
        )
    shape = list(message.shape)
    if shape != [rows, width]:
        raise ProtocolError(f"{what}: expected shape [{rows}, {width}], got {shape[:8]}")
    return decode_cut(message.data, rows=rows, width=width, what=what, dtype=dtype)


def tensor_digest(message: pb.Tensor) -> bytes:
    """Return the SHA-256 of a cut tensor's dtype, shape and bytes (resends must match it)."""
    h = hashlib.sha256(message.dtype.encode())
    h.update(np.asarray(list(message.shape), dtype="<u4").tobytes())
    h.update(message.data)
    return h.digest()


def ids_digest(ids: Sequence[str]) -> bytes:
    """Return the SHA-256 of ids in order (each UTF-8, length-prefixed, so no two lists collide).

    Both parties hash the ids of a batch (or of all aligned rows) the same way; equal digests
    say both hold the same rows in the same order, without sending an id.
    """
    h = hashlib.sha256()
    for text in ids:
        raw = text.encode("utf-8")
        h.update(len(raw).to_bytes(4, "little"))
        h.update(raw)
    return h.digest()


def message_kind(message: Any) -> str:
    """Return the name of the set ``kind`` of a leader or follower message (``"none"``)."""
    return message.WhichOneof("kind") or "none"


def check_step(got: int, expected: int, *, what: str, peer: str) -> None:
    """Refuse a message for another step than ``expected``: replayed (earlier) or reordered.

    Raises
    ------
    ProtocolError
        Saying which.
    """
    if got == expected:
        return
    how = "replayed" if got < expected else "out of order"
    raise ProtocolError(
        f"{what} for step {got} from {peer}: {how} (expected step {expected}); refused"
    )

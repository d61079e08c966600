"""The duplex message transport a PSI session runs over, and an in-process pair of them.

A session only needs to send opaque frames and to receive the peer's, in order, with a
deadline; it does not care whether they cross a gRPC stream over mutual RA-TLS
(:mod:`sealfl.psi.service`), a vfl workload's own stream, or a queue in the same process
(:func:`transport_pair`, for tests). ``attested`` says whether the other end has proved to be
an attested party; the ``enclave-only`` mode refuses to run otherwise.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

from sealfl.errors import ChannelError


class Transport(Protocol):
    """One duplex session between two parties; frames are opaque bytes, delivered in order."""

    @property
    def attested(self) -> bool:
        """Whether the peer is an attested party on a mutual RA-TLS channel."""
        ...

    def send(self, frame: bytes) -> None:
        """Send one frame to the peer (raise :class:`ChannelError` if the link is gone)."""
        ...

    def receive(self, timeout_s: float) -> bytes | None:
        """Return the peer's next frame, or None if none arrives within ``timeout_s`` (0: poll).

        Raises :class:`ChannelError` if the peer closed the link or the link failed.
        """
        ...

    def close(self) -> None:
        """Tell the peer that no more frames follow; idempotent."""
        ...


_CLOSED = object()


class QueueTransport:
    """A :class:`Transport` whose incoming frames are pushed by someone else (a reader thread).

    Parameters
    ----------
    send
        Delivers one outgoing frame (the peer's :meth:`deliver`, or a gRPC stream's queue).
    close
        Called once by :meth:`close` to end the outgoing direction.
    attested
        Whether the peer is attested (see :class:`Transport`).
    """

    def __init__(
        self,
        *,
        send: Callable[[bytes], None],
        close: Callable[[], None] = lambda: None,
        attested: bool = False,
    ) -> None:
        self._send = send
        self._close = close
        self._attested = attested
        self._inbox: queue.Queue[object] = queue.Queue()
        self._closed = threading.Event()
        self._failure: BaseException | None = None

    @property
    def attested(self) -> bool:
        """See :class:`Transport`."""
        return self._attested

    def deliver(self, frame: bytes) -> None:
        """Queue a frame from the peer."""
        self._inbox.put(frame)

    def deliver_end(self, failure: BaseException | None = None) -> None:
        """Mark the incoming direction ended, cleanly or with ``failure``."""
        self._failure = failure
        self._inbox.put(_CLOSED)

    def send(self, frame: bytes) -> None:
        """See :class:`Transport`."""
        if self._closed.is_set():
            raise ChannelError("PSI transport: send after close")
        self._send(frame)

    def receive(self, timeout_s: float) -> bytes | None:
        """See :class:`Transport`."""
        try:
            item = self._inbox.get(timeout=timeout_s) if timeout_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._inbox.put(_CLOSED)  # stay ended for later calls
            if self._failure is not None:
                raise ChannelError(f"PSI peer link failed: {self._failure}") from self._failure
            raise ChannelError("PSI peer closed the session before it ended")
        assert isinstance(item, bytes)
        return item

    def close(self) -> None:
        """See :class:`Transport`."""
        if not self._closed.is_set():
            self._closed.set()
            self._close()


def transport_pair(*, attested: bool = False) -> tuple[QueueTransport, QueueTransport]:
    """Two connected in-process transports (for tests and for both roles in one process)."""
    ends: list[QueueTransport] = []
    first = QueueTransport(
        send=lambda f: ends[1].deliver(f), close=lambda: ends[1].deliver_end(), attested=attested
    )
    second = QueueTransport(
        send=lambda f: ends[0].deliver(f), close=lambda: ends[0].deliver_end(), attested=attested
    )
    ends.extend([first, second])
    return first, second

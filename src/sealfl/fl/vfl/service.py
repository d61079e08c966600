"""gRPC glue: the leader's ``Train``/``Predict`` handlers and the follower's stream opener.

A handler admits a stream only from a caller whose mutual-RA-TLS identity (enrolled after its
evidence passed the leader's policy) claims what the leader expects at that moment (the shared
settings, the PSI transcript of this session, the joint manifest for prediction), then turns
the stream into a :class:`~sealfl.fl.vfl.stream.Duplex` on the loop's inbox. Until the loop is
ready (the PSI still running) a handler waits a bounded time, then refuses with a reason. Every
refusal is a STOP message with the reason, never a bare transport error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from sealfl.errors import SealflError
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.protos import vfl_pb2_grpc as pb_grpc
from sealfl.fl.vfl.stream import Duplex, Inbox
from sealfl.net import SecureChannel
from sealfl.net.calls import iterate_stream
from sealfl.tee import VerifiedPeer

__all__ = ["Gate", "VflService", "open_stream"]

Admit = Callable[[VerifiedPeer], str | None]
"""Returns why a caller is refused, or ``None`` to admit it."""
_READY_WAIT_S = 30.0
STREAM_TIMEOUT_S = 7 * 24 * 3600.0
"""The gRPC deadline of a whole training stream (the per-step deadlines are the real bound)."""


class Gate:
    """Where a kind of stream goes once its loop is ready, and whom it admits."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._inbox: Inbox | None = None
        self._admit: Admit = lambda peer: None

    def open(self, inbox: Inbox, admit: Admit) -> None:
        """Send this kind of stream to ``inbox`` from now on, for callers ``admit`` accepts."""
        self._inbox, self._admit = inbox, admit
        self._ready.set()

    def wait(self, timeout_s: float) -> tuple[Inbox, Admit] | None:
        """Return the inbox and the admission check, or ``None`` if not ready in time."""
        if not self._ready.wait(timeout_s) or self._inbox is None:
            return None
        return self._inbox, self._admit


def _stop(reason: str) -> pb.LeaderMessage:
    return pb.LeaderMessage(stop=pb.Stop(reason=reason, refused=False))


class VflService(pb_grpc.VflServicer):
    """Serve the leader's streams over gRPC.

    Parameters
    ----------
    identity_of
        Returns the verified identity of a call's client (``SecureServer.identity_of``).
    ready_wait_s
        How long a stream opened before its loop is ready waits for it.
    """

    def __init__(
        self,
        identity_of: Callable[[grpc.ServicerContext], VerifiedPeer],
        *,
        ready_wait_s: float = _READY_WAIT_S,
    ) -> None:
        self._identity_of = identity_of
        self._ready_wait_s = ready_wait_s
        self.train = Gate()
        self.predict = Gate()

    def Train(  # noqa: N802 (gRPC's method name)
        self, request_iterator: Iterator[pb.FollowerMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.LeaderMessage]:
        """Serve the training stream (see :mod:`sealfl.fl.vfl.leader`)."""
        return self._serve(self.train, "training", request_iterator, context)

    def Predict(  # noqa: N802 (gRPC's method name)
        self, request_iterator: Iterator[pb.FollowerMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.LeaderMessage]:
        """Serve the joint-inference stream (see :mod:`sealfl.fl.vfl.predict`)."""
        return self._serve(self.predict, "prediction", request_iterator, context)

    def _serve(
        self,
        gate: Gate,
        what: str,
        request_iterator: Iterator[pb.FollowerMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.LeaderMessage]:
        try:
            peer = self._identity_of(context)
        except SealflError as exc:
            yield _stop(f"not an enrolled follower: {exc}")
            return
        opened = gate.wait(self._ready_wait_s)
        if opened is None:
            yield _stop(f"the leader is not ready for {what} (no such run here now)")
            return
        inbox, admit = opened
        reason = admit(peer)
        if reason is not None:
            yield _stop(reason)
            return
        duplex = Duplex(inbox, name="the follower")
        context.add_callback(duplex.close)
        duplex.start_reader(request_iterator)
        yield from duplex.outgoing()


def open_stream(channel: SecureChannel[Any], inbox: Inbox, *, method: str = "Train") -> Duplex:
    """Open the leader's ``method`` stream on ``channel``; its messages go to ``inbox``.

    Raises
    ------
    ChannelError
        If the channel is closed (a broken call shows up as the stream's end event instead).
    """
    stub = channel.stub(pb_grpc.VflStub)
    call_method = getattr(stub, method)
    channel.maintain()
    duplex = Duplex(inbox, name="the leader")
    try:
        call = call_method(duplex.outgoing(), timeout=STREAM_TIMEOUT_S)
    except grpc.RpcError as exc:  # pragma: no cover - streams fail lazily, on first read
        raise channel.diagnose(exc, what=f"vfl {method}") from exc
    what = f"vfl {method} stream to the leader at {channel.front_door or channel.address}"
    duplex.start_reader(
        iterate_stream(call, describe=lambda exc: channel.diagnose(exc, what=what)),
        cancel=call.cancel,
    )
    return duplex

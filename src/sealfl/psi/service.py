"""PSI over sealfl's mutual RA-TLS gRPC: a servicer for a party's server, a call for its client.

One bidirectional ``Psi.Exchange`` stream carries one session's frames (:mod:`sealfl.psi.session`)
as ``Frame`` messages. Either party can be the server: a vfl party registers a
:class:`PsiServicer` on the :class:`~sealfl.net.SecureServer` it already runs, and the other
calls :func:`run_psi_on_channel` on its :class:`~sealfl.net.SecureChannel`. Both bind the two
certificates of the channel into the session (server's fingerprint, then client's), so a session
cannot be relayed between two other channels; the peer is *attested* (which ``enclave-only``
requires) when its certificate passed RA-TLS verification, i.e. its verified identity is a
:class:`~sealfl.tee.VerifiedPeer`.

Example (the vfl leader serves, the follower calls)::

    servicer = PsiServicer(leader_ids, role="leader", settings=PsiSettings(mode="both"))
    add_psi_servicer(server, servicer)          # before server.start()
    ...                                         # the follower: run_psi_on_channel(channel, ...)
    result = servicer.result(timeout_s=600)     # the leader's PsiResult
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from sealfl.errors import ChannelError, ConfigError, SealflError
from sealfl.net import SecureChannel, SecureServer, caller_certificate, certificate_fingerprint
from sealfl.psi.protos import psi_pb2, psi_pb2_grpc
from sealfl.psi.result import PsiResult
from sealfl.psi.session import run_psi
from sealfl.psi.settings import PsiSettings, Role
from sealfl.psi.transport import QueueTransport
from sealfl.tee import VerifiedPeer

_END = object()


def channel_binding(server_pem: bytes, client_pem: bytes) -> bytes:
    """Return the session context of a gRPC channel: both certificate fingerprints, server first."""
    return (
        b"sealfl-psi ratls\x00"
        + bytes.fromhex(certificate_fingerprint(server_pem))
        + bytes.fromhex(certificate_fingerprint(client_pem))
    )


def _outgoing(outbox: queue.Queue[object]) -> Iterator[psi_pb2.Frame]:
    while (item := outbox.get()) is not _END:
        assert isinstance(item, bytes)
        yield psi_pb2.Frame(data=item)


def _details(exc: grpc.RpcError) -> str:
    details = getattr(exc, "details", None)
    return str(details()) if callable(details) else str(exc)


def _pump(frames: Iterator[psi_pb2.Frame], transport: QueueTransport) -> None:
    """Move the peer's frames into ``transport`` until the stream ends (on a reader thread)."""
    try:
        for frame in frames:
            transport.deliver(frame.data)
    except grpc.RpcError as exc:
        transport.deliver_end(ChannelError(f"PSI stream: {_details(exc)}"))
    except Exception as exc:  # the stream's iterator raised: report it as the link failing
        transport.deliver_end(exc)
    else:
        transport.deliver_end()


class PsiServicer(psi_pb2_grpc.PsiServicer):
    """Serves PSI sessions for one party: one at a time, each with the same ids and settings.

    Parameters
    ----------
    ids
        This party's ids (see :func:`~sealfl.psi.run_psi`).
    role
        This party's role; the caller runs the other.
    settings
        The session settings (the mode comes from this party's policy).
    """

    def __init__(
        self,
        ids: Sequence[bytes | str],
        *,
        role: Role | str,
        settings: PsiSettings | None = None,
    ) -> None:
        self.ids = ids
        self.role = Role(role)
        self.settings = settings or PsiSettings()
        self._server: SecureServer[Any] | None = None
        self._busy = threading.Lock()
        self._done = threading.Condition()
        self._outcome: PsiResult | SealflError | None = None

    def bind(self, server: SecureServer[Any]) -> None:
        """Attach to the server whose certificate the sessions bind (:func:`add_psi_servicer`)."""
        self._server = server

    def Exchange(  # noqa: N802 (the gRPC method name)
        self, request_iterator: Iterator[psi_pb2.Frame], context: grpc.ServicerContext
    ) -> Iterator[psi_pb2.Frame]:
        """Run one session on this stream: the caller's frames in, this party's out."""
        if self._server is None:
            raise ConfigError("PsiServicer: register it with add_psi_servicer(server, servicer)")
        if not self._busy.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "a PSI session is already running")
        try:
            attested = isinstance(self._server.identity_of(context), VerifiedPeer)
            binding = channel_binding(self._server.certificate_pem, caller_certificate(context))
            outbox: queue.Queue[object] = queue.Queue()
            transport = QueueTransport(
                send=outbox.put, close=lambda: outbox.put(_END), attested=attested
            )
            threading.Thread(
                target=_pump, args=(request_iterator, transport), name="psi-reader", daemon=True
            ).start()
            worker = threading.Thread(
                target=self._run, args=(transport, binding), name="psi-session", daemon=True
            )
            worker.start()
            yield from _outgoing(outbox)
            worker.join()
        finally:
            self._busy.release()

    def _run(self, transport: QueueTransport, binding: bytes) -> None:
        outcome: PsiResult | SealflError
        try:
            outcome = run_psi(
                self.ids,
                role=self.role,
                transport=transport,
                settings=self.settings,
                context=binding,
            )
        except SealflError as exc:
            outcome = exc
        with self._done:
            self._outcome = outcome
            self._done.notify_all()

    def result(self, timeout_s: float | None = None) -> PsiResult:
        """Wait for the session to end and return this party's result.

        Raises
        ------
        ChannelError
            If no session ended within ``timeout_s``.
        SealflError
            Whatever the session raised (ProtocolError, ChannelError, ConfigError).
        """
        with self._done:
            if not self._done.wait_for(lambda: self._outcome is not None, timeout=timeout_s):
                raise ChannelError(f"PSI: no session ended within {timeout_s} s")
            outcome = self._outcome
        if isinstance(outcome, SealflError):
            raise outcome
        assert isinstance(outcome, PsiResult)
        return outcome


def add_psi_servicer(server: SecureServer[Any], servicer: PsiServicer) -> None:
    """Register ``servicer`` on ``server`` (before it starts); every call passes its peer check."""
    servicer.bind(server)
    server.add_servicer(psi_pb2_grpc.add_PsiServicer_to_server, servicer)


def run_psi_on_channel(
    channel: SecureChannel[Any],
    ids: Sequence[bytes | str],
    *,
    role: Role | str,
    settings: PsiSettings | None = None,
) -> PsiResult:
    """Run one PSI session as ``role`` against the :class:`PsiServicer` behind ``channel``.

    Raises
    ------
    ChannelError
        If the stream fails or the server is busy with another session.
    ProtocolError, ConfigError
        As :func:`~sealfl.psi.run_psi`.
    """
    settings = settings or PsiSettings()
    outbox: queue.Queue[object] = queue.Queue()
    attested = isinstance(channel.server_identity, VerifiedPeer)
    transport = QueueTransport(send=outbox.put, close=lambda: outbox.put(_END), attested=attested)
    stub = channel.stub(psi_pb2_grpc.PsiStub)
    try:
        responses = stub.Exchange(_outgoing(outbox))
    except grpc.RpcError as exc:  # pragma: no cover (the call object raises while iterated)
        raise channel.diagnose(exc, what="Psi.Exchange") from exc
    reader = threading.Thread(
        target=_pump, args=(responses, transport), name="psi-reader", daemon=True
    )
    reader.start()
    binding = channel_binding(channel.server_certificate_pem, channel.client_certificate_pem)
    try:
        return run_psi(ids, role=role, transport=transport, settings=settings, context=binding)
    except SealflError:
        responses.cancel()  # the server's session ends at once instead of at its deadline
        raise
    finally:
        reader.join(timeout=5)

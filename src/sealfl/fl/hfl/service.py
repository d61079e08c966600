"""gRPC glue: the PS's servicer and the worker's link, flat buffers streamed in chunks.

``GetGlobal`` is a server stream: one :class:`GlobalHeader`, then the model as
:class:`sealfl.net.TensorChunk` messages; the handler blocks (without polling) until the round
opens. The model's chunks (and their SHA-256) are made once per version and streamed to every
worker from that one copy; once the last is sent, the service tells the PS the model went out
(it evaluates and checkpoints only then). ``SubmitUpdate`` is a client stream: one
:class:`UpdateHeader`, then the update's chunks. The PS checks the header before it receives a
byte of the buffer, refuses a buffer announced larger than the model before allocating anything
(:class:`sealfl.net.TensorAssembler`), and checks the received bytes against their SHA-256
trailer, the manifest (length, dtype, finiteness) and the screening bounds. Every refusal is a
reply with a reason; the round goes on.

A caller is the client certificate gRPC authenticated for the call (mutual RA-TLS, enrolled
after its evidence passed the PS's policy), plus the seat token it shows.

With secure aggregation (:mod:`.secure`) the model header carries the round's tag and
parameters, ``SubmitUpdate`` carries the masked uint32 vector (its header names the tag), and
``SecAgg`` carries the other stages: one unary call per stage, answered when the stage closes
(or ``WAITING``: the worker repeats the identical call).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.hfl.checkpoint import evaluation_from_proto, evaluation_to_proto
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.protos import hfl_pb2_grpc as pb_grpc
from sealfl.fl.hfl.secure import (
    SecureRound,
    advert_from_proto,
    params_from_proto,
    params_to_proto,
    peer_bytes,
    peer_map,
    tag_from_proto,
    tag_to_proto,
)
from sealfl.fl.hfl.server import GlobalView, JoinInfo, ParameterServer
from sealfl.fl.hfl.settings import Settings, settings_from_proto
from sealfl.models import FlatManifest
from sealfl.models.manifest import FLAT_DTYPE
from sealfl.net import (
    DEFAULT_CHUNK_BYTES,
    RetryPolicy,
    SecureChannel,
    TensorChunker,
    caller_certificate,
    certificate_fingerprint,
    receive_tensor,
)
from sealfl.net.protos import tensor_pb2
from sealfl.secagg import RoundTag, ShareBundle, UnmaskResponse

__all__ = [
    "HflService",
    "PsLink",
    "SubmitResult",
    "caller_fingerprint",
    "receive_flat",
]

F32 = npt.NDArray[np.float32]
U32 = npt.NDArray[np.uint32]
T = TypeVar("T")

_STATES = {
    "model": pb.GlobalHeader.MODEL,
    "waiting": pb.GlobalHeader.WAITING,
    "done": pb.GlobalHeader.DONE,
    "stopped": pb.GlobalHeader.STOPPED,
}
_STATE_NAMES = {value: key for key, value in _STATES.items()}


def caller_fingerprint(context: grpc.ServicerContext) -> str:
    """Return the SHA-256 (hex) of the client certificate gRPC authenticated for this call.

    Raises
    ------
    ProtocolError
        If the call carries no client certificate (the server must require mutual TLS).
    """
    return certificate_fingerprint(caller_certificate(context))


def _tensor_chunks(messages: Iterator[Any], part: str) -> Iterator[tensor_pb2.TensorChunk]:
    """Yield the TensorChunk of every message; refuse a message of another kind."""
    for message in messages:
        kind = message.WhichOneof("part")
        if kind != "chunk":
            raise ProtocolError(f"expected only tensor chunks after the {part}, got {kind!r}")
        yield message.chunk


def _filling(
    get: Callable[[SecureRound], T | None], fill: Callable[[T], object]
) -> Callable[[SecureRound], bool | None]:
    """Return a stage call: ``get``'s answer from the round, put in the reply by ``fill``.

    The call returns ``None`` while ``get`` does (the stage has not closed), else True.
    """

    def call(rnd: SecureRound) -> bool | None:
        got = get(rnd)
        if got is None:
            return None
        fill(got)
        return True

    return call


def receive_masked(chunks: Iterator[tensor_pb2.TensorChunk], numel: int, *, peer: str) -> U32:
    """Assemble a masked update: exactly ``numel`` little-endian uint32.

    Raises
    ------
    ProtocolError
        If the stream announces more bytes than that (refused before allocating), ends early,
        fails its SHA-256, or is not a 1-D ``<u4`` tensor of that length.
    """
    array = receive_tensor(chunks, max_bytes=4 * numel, peer=peer).array
    if array.dtype != np.dtype("<u4") or array.shape != (numel,):
        raise ProtocolError(
            f"masked update from {peer}: expected {numel} little-endian uint32, got "
            f"{array.dtype.str} of shape {list(array.shape)}"
        )
    return array.astype(np.uint32, copy=False)


def receive_flat(
    chunks: Iterator[tensor_pb2.TensorChunk], manifest: FlatManifest, *, peer: str
) -> F32:
    """Assemble a flat float32 buffer from chunks and check it against ``manifest``.

    Raises
    ------
    ProtocolError
        If the stream announces more bytes than the model has (refused before allocating),
        ends before its trailer, fails its SHA-256, is not a 1-D little-endian float32 tensor,
        has the wrong length, or holds NaN or infinite values.
    """
    array = receive_tensor(chunks, max_bytes=manifest.nbytes, peer=peer).array
    if array.dtype != FLAT_DTYPE or array.ndim != 1:
        raise ProtocolError(
            f"tensor from {peer}: expected a 1-D little-endian float32 buffer, got "
            f"{array.dtype.str} of shape {list(array.shape)}"
        )
    return manifest.check_buffer(array)


class HflService(pb_grpc.HflServicer):
    """Serve a :class:`ParameterServer` over gRPC.

    Parameters
    ----------
    ps
        The core.
    chunk_bytes
        Data bytes per streamed message.
    """

    def __init__(self, ps: ParameterServer, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self._ps = ps
        self._chunk_bytes = chunk_bytes
        self._encoded_lock = threading.Lock()
        self._encoded: tuple[int, list[pb.GlobalMessage]] | None = None

    def _model_messages(self, version: int, values: F32) -> list[pb.GlobalMessage]:
        """Return the chunks of model ``version``, made (copied, hashed) once for all workers.

        Holds one copy of the model, of the latest version handed out only.
        """
        with self._encoded_lock:
            if self._encoded is None or self._encoded[0] != version:
                chunker = TensorChunker(
                    values, name=f"global/{version}", chunk_bytes=self._chunk_bytes
                )
                self._encoded = (version, [pb.GlobalMessage(chunk=c) for c in chunker])
            return self._encoded[1]

    def Join(  # noqa: N802 (gRPC's method name)
        self, request: pb.JoinRequest, context: grpc.ServicerContext
    ) -> pb.JoinReply:
        """Seat a worker, or say why not."""
        try:
            try:
                settings = settings_from_proto(request.settings)
            except ConfigError as exc:
                raise ProtocolError(
                    f"worker {request.worker_id}: unusable settings: {exc}"
                ) from None
            info = self._ps.join(
                request.worker_id,
                settings,
                request.schema_digest,
                request.manifest_digest,
                request.num_examples,
                caller_fingerprint(context),
                bytes(request.seat_token),
            )
        except ProtocolError as exc:
            return pb.JoinReply(refused=str(exc))
        return pb.JoinReply(
            run_id=info.run_id,
            next_version=info.next_version,
            seat_token=info.seat_token,
            worker_num=info.worker_num,
            round_deadline_s=info.round_deadline_s,
            settings=self._ps.settings.to_proto(),
        )

    def GetGlobal(  # noqa: N802 (gRPC's method name)
        self, request: pb.GlobalRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.GlobalMessage]:
        """Block until the round opens; stream its header and model."""
        try:
            view = self._ps.get_global(
                request.worker_id,
                request.version,
                caller_fingerprint(context),
                bytes(request.seat_token),
                is_active=context.is_active,
                confirm_delivery=True,
            )
        except ProtocolError as exc:
            yield pb.GlobalMessage(
                header=pb.GlobalHeader(state=pb.GlobalHeader.STOPPED, reason=str(exc))
            )
            return
        try:
            yield from self._global_messages(view)
        finally:  # sent, or the stream ended early: either way nothing more goes out
            if view.state == "model":
                self._ps.handed_out(request.worker_id, view.version)

    def _global_messages(self, view: GlobalView) -> Iterator[pb.GlobalMessage]:
        header = pb.GlobalHeader(
            state=_STATES[view.state],
            version=view.version,
            reason=view.reason,
            model_path=view.model_path,
            release_path=view.release_path,
            deadline_in_s=view.deadline_in_s,
        )
        if view.evaluation is not None:
            header.evaluation.CopyFrom(evaluation_to_proto(view.evaluation))
        if view.secagg is not None:
            tag, params = view.secagg
            header.secagg.tag.CopyFrom(tag_to_proto(tag))
            header.secagg.params.CopyFrom(params_to_proto(params))
        yield pb.GlobalMessage(header=header)
        if view.values is not None:
            yield from self._model_messages(view.version, view.values)

    def SubmitUpdate(  # noqa: N802 (gRPC's method name)
        self, request_iterator: Iterator[pb.UpdateMessage], context: grpc.ServicerContext
    ) -> pb.UpdateReply:
        """Receive, check and hand over one update; refuse it with a reason otherwise."""
        messages = iter(request_iterator)
        first = next(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            kind = "nothing" if first is None else repr(first.WhichOneof("part"))
            return pb.UpdateReply(
                status=pb.UpdateReply.REFUSED, reason=f"expected an update header first, got {kind}"
            )
        h = first.header
        try:
            fingerprint = caller_fingerprint(context)
            if h.manifest_digest != self._ps.manifest_digest:
                raise ProtocolError(
                    f"worker {h.worker_id}: update for another model manifest (sha256 "
                    f"{h.manifest_digest[:16]}…, expected {self._ps.manifest_digest[:16]}…)"
                )
            if h.HasField("secagg_tag"):
                return self._submit_masked(h, fingerprint, messages)
            self._ps.check_update(h.worker_id, h.version, fingerprint, bytes(h.seat_token))
        except ProtocolError as exc:
            return self._refusal(exc)
        try:
            values = receive_flat(
                _tensor_chunks(messages, "update header"),
                self._ps.manifest,
                peer=f"worker {h.worker_id}",
            )
        except ProtocolError as exc:
            self._ps.refuse(h.worker_id, h.version, str(exc))
            return self._refusal(exc)
        except Exception as exc:  # the stream broke (cancelled, connection lost)
            reason = f"worker {h.worker_id}: the update stream broke off: {type(exc).__name__}"
            self._ps.refuse(h.worker_id, h.version, reason)
            return pb.UpdateReply(status=pb.UpdateReply.REFUSED, reason=reason)
        try:
            self._ps.submit(
                h.worker_id,
                h.version,
                fingerprint,
                bytes(h.seat_token),
                values,
                num_examples=h.num_examples,
                train_loss=h.train_loss,
                train_seconds=h.train_seconds,
            )
        except ProtocolError as exc:
            return self._refusal(exc)
        return pb.UpdateReply(status=pb.UpdateReply.ACCEPTED)

    def _submit_masked(
        self, h: pb.UpdateHeader, fingerprint: str, messages: Iterator[pb.UpdateMessage]
    ) -> pb.UpdateReply:
        """Receive a masked update (uint32) for the open round's secure aggregation."""
        token = bytes(h.seat_token)
        tag = tag_from_proto(h.secagg_tag)
        self._ps.check_masked(h.worker_id, h.version, fingerprint, token, tag)
        try:
            values = receive_masked(
                _tensor_chunks(messages, "update header"),
                self._ps.manifest.numel,
                peer=f"worker {h.worker_id}",
            )
        except ProtocolError as exc:
            self._ps.refuse(h.worker_id, h.version, str(exc))
            raise
        except Exception as exc:  # the stream broke (cancelled, connection lost)
            reason = f"worker {h.worker_id}: the update stream broke off: {type(exc).__name__}"
            self._ps.refuse(h.worker_id, h.version, reason)
            return pb.UpdateReply(status=pb.UpdateReply.REFUSED, reason=reason)
        self._ps.submit_masked(
            h.worker_id,
            fingerprint,
            token,
            tag,
            values,
            train_loss=h.train_loss,
            train_seconds=h.train_seconds,
        )
        return pb.UpdateReply(status=pb.UpdateReply.ACCEPTED)

    def SecAgg(  # noqa: N802 (gRPC's method name)
        self, request: pb.SecAggRequest, context: grpc.ServicerContext
    ) -> pb.SecAggReply:
        """Hand one stage message to the open round; answer once the stage closes."""
        w = request.worker_id
        kind = request.WhichOneof("stage")
        reply = pb.SecAggReply(status=pb.SecAggReply.OK)
        try:
            fingerprint = caller_fingerprint(context)
            try:
                tag = tag_from_proto(request.tag)
                call = self._secagg_call(request, kind, tag, fingerprint, reply)
            except ProtocolError as exc:  # malformed: refused before it reaches the round
                self._ps.refuse(w, request.tag.round, str(exc), what=f"secagg {kind}")
                raise
            answer = self._ps.secure_call(
                w,
                fingerprint,
                bytes(request.seat_token),
                tag,
                call,
                what=str(kind),
                is_active=context.is_active,
            )
        except ProtocolError as exc:
            status = (
                pb.SecAggReply.STOPPED
                if self._ps.phase.value == "stopped"
                else pb.SecAggReply.REFUSED
            )
            return pb.SecAggReply(status=status, reason=str(exc))
        if answer is None:
            return pb.SecAggReply(status=pb.SecAggReply.WAITING)
        return reply

    @staticmethod
    def _secagg_call(
        request: pb.SecAggRequest,
        kind: str | None,
        tag: RoundTag,
        fingerprint: str,
        reply: pb.SecAggReply,
    ) -> Callable[[SecureRound], bool | None]:
        """Return the call on the open round for this stage message; it fills ``reply``."""
        w = request.worker_id
        if kind == "advert":
            advert = request.advert
            if advert.worker_id != w:
                raise ProtocolError(f"worker {w}: an advert for worker {advert.worker_id}")
            core = advert_from_proto(advert, tag)
            return _filling(
                lambda rnd: rnd.advert(core, advert.weight, fingerprint), reply.roster.extend
            )
        if kind == "bundle":
            bundle = ShareBundle(tag, w, peer_map(request.bundle, what=f"bundle of worker {w}"))
            return _filling(
                lambda rnd: rnd.bundle(bundle),
                lambda delivery: reply.delivery.CopyFrom(peer_bytes(delivery)),
            )
        if kind == "unmask":
            return _filling(
                lambda rnd: rnd.unmask_poll(w),
                lambda got: reply.unmask_request.CopyFrom(
                    pb.SecAggUnmaskRequest(
                        survivors=sorted(got.survivors), dropped=sorted(got.dropped)
                    )
                ),
            )
        if kind == "confirm":
            tags = peer_map(request.confirm, what=f"confirmation of worker {w}")
            return _filling(
                lambda rnd: rnd.confirm(w, tags),
                lambda theirs: reply.confirmations.CopyFrom(peer_bytes(theirs)),
            )
        if kind == "answer":
            a = request.answer
            response = UnmaskResponse(
                tag,
                w,
                peer_map(pb.SecAggList(items=a.seed_shares), what=f"answer of worker {w}"),
                peer_map(pb.SecAggList(items=a.key_shares), what=f"answer of worker {w}"),
            )

            def on_answer(rnd: SecureRound) -> bool:
                rnd.answer(response)
                return True

            return on_answer
        raise ProtocolError(f"worker {w}: a secure-aggregation message without a stage")

    def _refusal(self, exc: ProtocolError) -> pb.UpdateReply:
        status = (
            pb.UpdateReply.STOPPED if self._ps.phase.value == "stopped" else pb.UpdateReply.REFUSED
        )
        return pb.UpdateReply(status=status, reason=str(exc))


@dataclass(frozen=True)
class SubmitResult:
    """The PS's answer to an update: accepted, or refused (or stopped) with its reason."""

    accepted: bool
    stopped: bool = False
    reason: str = ""


class PsLink:
    """A worker's calls to the PS over an open RA-TLS channel.

    Parameters
    ----------
    channel
        The secure channel (from :func:`sealfl.net.open_secure_channel`).
    call_timeout_s
        Deadline of a join or an upload.
    """

    def __init__(self, channel: SecureChannel[Any], *, call_timeout_s: float = 120.0) -> None:
        self.channel = channel
        self._stub = channel.stub(pb_grpc.HflStub)
        self._timeout = call_timeout_s
        self._address = channel.front_door or channel.address
        self.secagg_bytes = 0
        """Protobuf bytes of the secure-aggregation calls so far, both ways (for metrics)."""

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def _what(self, method: str) -> str:
        return f"hfl {method} to the PS at {self._address}"

    def join(
        self,
        worker_id: int,
        settings: Settings,
        *,
        schema_digest: str,
        manifest_digest: str,
        num_examples: int,
        seat_token: bytes = b"",
    ) -> JoinInfo:
        """Join; raise ProtocolError with the PS's reason if refused.

        Raises
        ------
        ProtocolError
            With the PS's reason, if it refused.
        ChannelError
            If the PS cannot be reached.
        """
        request = pb.JoinRequest(
            worker_id=worker_id,
            settings=settings.to_proto(),
            schema_digest=schema_digest,
            manifest_digest=manifest_digest,
            num_examples=num_examples,
            seat_token=seat_token,
        )
        reply: pb.JoinReply = self.channel.call(
            self._stub.Join,
            request,
            timeout_s=self._timeout,
            retry=RetryPolicy(attempts=5, max_backoff_s=2.0),  # a join is idempotent
            what=self._what("Join"),
        )
        if reply.refused:
            raise ProtocolError(f"the PS at {self._address} refused: {reply.refused}")
        return JoinInfo(
            run_id=reply.run_id,
            next_version=reply.next_version,
            seat_token=bytes(reply.seat_token),
            worker_num=reply.worker_num,
            round_deadline_s=reply.round_deadline_s,
        )

    def get_global(
        self,
        worker_id: int,
        version: int,
        manifest: FlatManifest,
        *,
        seat_token: bytes,
        timeout_s: float,
    ) -> GlobalView:
        """Ask for model ``version``; block until the PS answers (see :class:`GlobalView`).

        Raises
        ------
        ProtocolError
            If the stream is malformed, truncated or its model does not fit ``manifest``.
        ChannelError
            If the PS cannot be reached or the call's deadline passes.
        """
        request = pb.GlobalRequest(worker_id=worker_id, version=version, seat_token=seat_token)
        stream = self.channel.stream(
            self._stub.GetGlobal, request, timeout_s=timeout_s, what=self._what("GetGlobal")
        )
        try:
            first = next(stream, None)
            if first is None or first.WhichOneof("part") != "header":
                raise ProtocolError(f"the PS at {self._address} sent no model header")
            h = first.header
            state = _STATE_NAMES.get(h.state, "stopped")
            values = None
            if state == "model":
                values = receive_flat(
                    _tensor_chunks(stream, "model header"), manifest, peer=f"PS at {self._address}"
                )
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        secagg = None
        if h.HasField("secagg"):
            secagg = (tag_from_proto(h.secagg.tag), params_from_proto(h.secagg.params))
        return GlobalView(
            state=state,
            version=h.version,
            values=values,
            reason=h.reason,
            evaluation=evaluation_from_proto(h.evaluation) if h.HasField("evaluation") else None,
            deadline_in_s=h.deadline_in_s,
            model_path=h.model_path,
            release_path=h.release_path,
            secagg=secagg,
        )

    def submit(
        self,
        worker_id: int,
        version: int,
        values: F32 | U32,
        *,
        seat_token: bytes,
        num_examples: int,
        train_loss: float,
        train_seconds: float,
        manifest_digest: str,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        secagg_tag: RoundTag | None = None,
    ) -> SubmitResult:
        """Stream one update (never retried: the PS would refuse it as a second one anyway).

        With ``secagg_tag``, ``values`` is the masked uint32 vector of that round and attempt.

        Raises
        ------
        ChannelError
            If the PS cannot be reached.
        """
        header = pb.UpdateHeader(
            worker_id=worker_id,
            version=version,
            seat_token=seat_token,
            num_examples=num_examples,
            train_loss=train_loss,
            train_seconds=train_seconds,
            manifest_digest=manifest_digest,
        )
        if secagg_tag is not None:
            header.secagg_tag.CopyFrom(tag_to_proto(secagg_tag))

        def messages() -> Iterator[pb.UpdateMessage]:
            yield pb.UpdateMessage(header=header)
            for chunk in TensorChunker(values, name=f"update/{version}", chunk_bytes=chunk_bytes):
                yield pb.UpdateMessage(chunk=chunk)

        reply: pb.UpdateReply = self.channel.call_stream(
            self._stub.SubmitUpdate,
            messages,
            timeout_s=self._timeout,
            what=self._what("SubmitUpdate"),
        )
        if reply.status == pb.UpdateReply.ACCEPTED:
            return SubmitResult(True)
        return SubmitResult(
            False, stopped=reply.status == pb.UpdateReply.STOPPED, reason=reply.reason
        )

    # -- secure aggregation ------------------------------------------------------------------

    def secagg(
        self,
        worker_id: int,
        tag: RoundTag,
        *,
        seat_token: bytes,
        timeout_s: float,
        **stage: Any,
    ) -> pb.SecAggReply:
        """Send one stage message; repeat it while the PS answers WAITING; return the answer.

        Raises
        ------
        ProtocolError
            With the PS's reason, if it refused (or stopped).
        ChannelError
            If the PS cannot be reached.
        """
        request = pb.SecAggRequest(
            worker_id=worker_id, seat_token=seat_token, tag=tag_to_proto(tag), **stage
        )
        kind = request.WhichOneof("stage")
        while True:
            reply: pb.SecAggReply = self.channel.call(
                self._stub.SecAgg, request, timeout_s=timeout_s, what=self._what(f"SecAgg {kind}")
            )
            self.secagg_bytes += request.ByteSize() + reply.ByteSize()
            if reply.status == pb.SecAggReply.OK:
                return reply
            if reply.status != pb.SecAggReply.WAITING:
                raise ProtocolError(f"the PS at {self._address} refused the {kind}: {reply.reason}")

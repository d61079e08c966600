"""gRPC glue: the PS's servicer and the worker's link, translating protobuf to the cores.

Refusals travel as data in the replies (``refused``, ``REFUSED``), so a refused call does not
break a worker's channel; transport failures are mapped to :class:`ChannelError` by
:meth:`sealfl.net.SecureChannel.call`. A worker's identity on the PS is the client certificate
gRPC authenticated for the call (:mod:`.peers`), plus the seat token it presents (:mod:`.seats`),
so one party cannot submit under another's id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from sealfl.errors import ChannelError, ProtocolError
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.messages import (
    evaluation_from_proto,
    evaluation_to_proto,
    settings_from_proto,
    settings_to_proto,
)
from sealfl.fl.homo_lr.peers import Peer, peer_from_certificate
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.protos import homo_lr_pb2_grpc as pb_grpc
from sealfl.fl.homo_lr.server import (
    JoinInfo,
    ModelView,
    ParameterServer,
    SubmitOutcome,
    SubmitStatus,
)
from sealfl.net import RetryPolicy, SecureChannel, caller_lineage
from sealfl.net import caller_certificate as peer_certificate

__all__ = [
    "GrpcPsLink",
    "HomoLrService",
    "peer_certificate",
    "peer_of_call",
    "settings_from_proto",
    "settings_to_proto",
]

_STATES = {"ready": pb.ModelReply.READY, "waiting": pb.ModelReply.WAITING}
_STATE_NAMES = {pb.ModelReply.READY: "ready", pb.ModelReply.WAITING: "waiting"}
_SUBMIT_STATUS = {
    SubmitStatus.ACCEPTED: pb.SubmitReply.ACCEPTED,
    SubmitStatus.DROPPED: pb.SubmitReply.DROPPED,
    SubmitStatus.STOPPED: pb.SubmitReply.STOPPED,
}


def peer_of_call(context: grpc.ServicerContext, claims: Mapping[str, bytes] | None = None) -> Peer:
    """Return the caller: its certificate, its lineage and its verified ``claims``.

    Its identity (:attr:`Peer.fingerprint`) is the lineage the server's per-call check found
    (:func:`sealfl.net.caller_lineage`): the first certificate of a chain of renewals, each
    proved by the previous key, so a worker that renews its certificate keeps its seat.
    """
    peer = peer_from_certificate(peer_certificate(context), claims)
    lineage = caller_lineage(context)
    return peer if lineage is None else dataclasses.replace(peer, fingerprint=lineage)


class HomoLrService(pb_grpc.HomoLrServicer):
    """Serve a :class:`ParameterServer` over gRPC.

    Parameters
    ----------
    ps
        The core.
    identify
        Who is calling (default: from the client certificate alone; the PS process passes one
        that adds the verified claims the server recorded at enrolment).
    poll_s
        Longest a ``GetModel`` call waits before answering ``WAITING`` (keeps calls short, so
        deadlines and shutdowns are never blocked by a parked call).
    """

    def __init__(
        self,
        ps: ParameterServer[Any],
        *,
        identify: Callable[[grpc.ServicerContext], Peer] = peer_of_call,
        poll_s: float = 10.0,
    ) -> None:
        self._ps = ps
        self._identify = identify
        self._poll_s = poll_s

    def Join(  # noqa: N802 (gRPC's method name)
        self, request: pb.JoinRequest, context: grpc.ServicerContext
    ) -> pb.JoinReply:
        """Admit a worker, or say why not."""
        try:
            hp, n_features = settings_from_proto(request.settings)
            if len(request.feature_names) != n_features:
                raise ProtocolError(
                    f"worker {request.worker_id}: {len(request.feature_names)} feature names for "
                    f"{n_features} features"
                )
            info = self._ps.join(
                request.worker_id,
                hp,
                tuple(request.feature_names),
                request.n_samples,
                self._identify(context),
                bytes(request.seat_token),
            )
        except ProtocolError as exc:
            return pb.JoinReply(refused=str(exc))
        reply = pb.JoinReply(
            public_key=info.public_key,
            worker_num=info.worker_num,
            round_deadline_s=info.round_deadline_s,
            session_id=info.session_id,
            next_iteration=info.next_iteration,
            seat_token=info.seat_token,
        )
        reply.settings.CopyFrom(settings_to_proto(self._ps.settings.hp, self._ps.n_features))
        return reply

    def Submit(  # noqa: N802 (gRPC's method name)
        self, request: pb.SubmitRequest, context: grpc.ServicerContext
    ) -> pb.SubmitReply:
        """Accept, drop or refuse one worker's encrypted weights."""
        try:
            outcome = self._ps.submit(
                request.worker_id,
                request.iteration,
                request.encrypted_weights,
                self._identify(context),
                bytes(request.seat_token),
            )
        except ProtocolError as exc:
            return pb.SubmitReply(status=pb.SubmitReply.REFUSED, reason=str(exc))
        return pb.SubmitReply(status=_SUBMIT_STATUS[outcome.status], reason=outcome.reason)

    def GetModel(  # noqa: N802 (gRPC's method name)
        self, request: pb.ModelRequest, context: grpc.ServicerContext
    ) -> pb.ModelReply:
        """Return a model version, or WAITING / ABORTED."""
        try:
            view = self._ps.get_model(
                request.worker_id,
                request.version,
                self._identify(context),
                self._poll_s,
                bytes(request.seat_token),
            )
        except ProtocolError as exc:
            return pb.ModelReply(state=pb.ModelReply.ABORTED, reason=str(exc))
        reply = pb.ModelReply(
            state=_STATES.get(view.state, pb.ModelReply.ABORTED),
            version=view.version,
            encrypted_weights=view.encrypted_weights,
            reason=view.reason,
            missing_workers=list(view.missing),
            sealed_model_path=view.sealed_model_path,
            model_note=view.model_note,
        )
        if view.evaluation is not None:
            reply.evaluation.CopyFrom(evaluation_to_proto(view.evaluation))
        return reply


class GrpcPsLink:
    """A worker's calls to the PS over an open (RA-TLS) channel.

    Calls go through :meth:`sealfl.net.SecureChannel.call`, which adds the deadline, retries
    idempotent calls on ``UNAVAILABLE`` and explains failures (a swapped server certificate
    included).

    Parameters
    ----------
    channel
        The secure channel (from :func:`sealfl.net.open_secure_channel`).
    reconnect
        Opens a new channel to the PS, waiting at most the seconds it is given; ``None`` when
        this link cannot reconnect.
    call_timeout_s
        Deadline of each call; ``GetModel`` gets the PS's poll time on top.
    """

    def __init__(
        self,
        channel: SecureChannel[Any],
        *,
        reconnect: Callable[[float], SecureChannel[Any]] | None = None,
        call_timeout_s: float = 30.0,
    ):
        self._reconnect = reconnect
        self._timeout = call_timeout_s
        self._retry = RetryPolicy(attempts=5, max_backoff_s=2.0)
        self._use(channel)

    def _use(self, channel: SecureChannel[Any]) -> None:
        self._channel = channel
        self._stub = channel.stub(pb_grpc.HomoLrStub)
        # Name the address the operator gave (the front door), not the mutual-TLS listener.
        self._address = channel.front_door or channel.address

    @property
    def channel(self) -> SecureChannel[Any]:
        """The channel in use now (it changes when the link reconnects)."""
        return self._channel

    def reconnect(self, wait_s: float) -> None:
        """Replace the channel with a new one (the PS restarted, or the connection broke).

        Raises
        ------
        ChannelError
            If this link cannot reconnect, or the PS is not back within ``wait_s``.
        AttestationError, ConfigError
            As :func:`sealfl.net.open_secure_channel` and the reachability check.
        """
        if self._reconnect is None:
            raise ChannelError(f"the link to the PS at {self._address} cannot reconnect")
        self._channel.close()
        self._use(self._reconnect(wait_s))

    def close(self) -> None:
        """Close the channel in use."""
        self._channel.close()

    def _what(self, method: str) -> str:
        return f"homo-lr {method} to the PS at {self._address}"

    def join(
        self,
        worker_id: int,
        hp: Hyperparameters,
        feature_names: Sequence[str],
        n_samples: int,
        seat_token: bytes = b"",
    ) -> JoinInfo:
        """Join; raise ProtocolError with the PS's reason if refused."""
        request = pb.JoinRequest(
            worker_id=worker_id,
            settings=settings_to_proto(hp, len(feature_names)),
            n_samples=n_samples,
            feature_names=list(feature_names),
            seat_token=seat_token,
        )
        reply: pb.JoinReply = self._channel.call(
            self._stub.Join,
            request,
            timeout_s=self._timeout,
            retry=self._retry,
            what=self._what("Join"),
        )
        if reply.refused:
            raise ProtocolError(
                f"the PS at {self._address} refused worker {worker_id}: {reply.refused}"
            )
        return JoinInfo(
            public_key=reply.public_key,
            worker_num=reply.worker_num,
            round_deadline_s=reply.round_deadline_s,
            session_id=reply.session_id,
            next_iteration=reply.next_iteration,
            seat_token=reply.seat_token,
        )

    def submit(
        self, worker_id: int, iteration: int, data: bytes, seat_token: bytes = b""
    ) -> SubmitOutcome:
        """Submit (never retried: a retry could count as a second submission).

        Raises
        ------
        ProtocolError
            If the PS refused the submission, or says training has stopped.
        """
        request = pb.SubmitRequest(
            worker_id=worker_id,
            iteration=iteration,
            encrypted_weights=data,
            seat_token=seat_token,
        )
        reply: pb.SubmitReply = self._channel.call(
            self._stub.Submit, request, timeout_s=self._timeout, what=self._what("Submit")
        )
        if reply.status == pb.SubmitReply.ACCEPTED:
            return SubmitOutcome(SubmitStatus.ACCEPTED)
        if reply.status == pb.SubmitReply.DROPPED:
            return SubmitOutcome(SubmitStatus.DROPPED, reply.reason)
        if reply.status == pb.SubmitReply.STOPPED:
            raise ProtocolError(f"the PS stopped training: {reply.reason or 'no reason given'}")
        raise ProtocolError(
            f"the PS refused worker {worker_id}'s submission for iteration {iteration}: "
            f"{reply.reason or 'no reason given'}"
        )

    def get_model(self, worker_id: int, version: int, seat_token: bytes = b"") -> ModelView:
        """Ask for a model version (idempotent, retried on UNAVAILABLE)."""
        request = pb.ModelRequest(worker_id=worker_id, version=version, seat_token=seat_token)
        reply: pb.ModelReply = self._channel.call(
            self._stub.GetModel,
            request,
            timeout_s=self._timeout + 30.0,
            retry=self._retry,
            what=self._what("GetModel"),
        )
        evaluation = None
        if reply.HasField("evaluation"):
            evaluation = evaluation_from_proto(reply.evaluation)
        return ModelView(
            state=_STATE_NAMES.get(reply.state, "aborted"),
            version=reply.version,
            encrypted_weights=reply.encrypted_weights,
            evaluation=evaluation,
            reason=reply.reason,
            missing=tuple(reply.missing_workers),
            sealed_model_path=reply.sealed_model_path,
            model_note=reply.model_note,
        )

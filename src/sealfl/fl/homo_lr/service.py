"""gRPC glue: the PS's servicer and the worker's link, translating protobuf to the cores.

Refusals travel as data in the replies (``refused``, ``REFUSED``), so a refused call does not
break a worker's channel; transport failures are mapped to :class:`ChannelError` by
:meth:`sealfl.net.SecureChannel.call`. A worker's identity on the PS is the fingerprint of the
client certificate gRPC authenticated for the call, so one party cannot submit under another's
id.
"""

from __future__ import annotations

from typing import Any, cast

import grpc

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.homo_lr.algorithm import Hyperparameters, Schedule
from sealfl.fl.homo_lr.evaluation import Evaluation
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.protos import homo_lr_pb2_grpc as pb_grpc
from sealfl.fl.homo_lr.server import JoinInfo, ModelView, ParameterServer
from sealfl.net import RetryPolicy, SecureChannel, certificate_fingerprint

_STATES = {"ready": pb.ModelReply.READY, "waiting": pb.ModelReply.WAITING}
_STATE_NAMES = {pb.ModelReply.READY: "ready", pb.ModelReply.WAITING: "waiting"}


def settings_to_proto(hp: Hyperparameters, n_features: int) -> pb.TrainingSettings:
    """Encode the shared settings."""
    return pb.TrainingSettings(
        learning_rate=hp.learning_rate,
        alpha=hp.alpha,
        iterations=hp.iterations,
        schedule=hp.schedule.value,
        n_features=n_features,
    )


def settings_from_proto(msg: pb.TrainingSettings) -> tuple[Hyperparameters, int]:
    """Decode the shared settings.

    Raises
    ------
    ProtocolError
        If a field is out of range or the schedule is unknown.
    """
    try:
        schedule = Schedule(msg.schedule)
    except ValueError:
        known = [s.value for s in Schedule]
        raise ProtocolError(
            f"TrainingSettings.schedule: expected one of {known}, got {msg.schedule!r}"
        ) from None
    try:
        hp = Hyperparameters(
            learning_rate=msg.learning_rate,
            alpha=msg.alpha,
            iterations=msg.iterations,
            schedule=schedule,
        )
    except ConfigError as exc:  # the range checks; here it is the peer that sent bad values
        raise ProtocolError(f"TrainingSettings: {exc}") from exc
    if msg.n_features < 1:
        raise ProtocolError(f"TrainingSettings.n_features: expected >= 1, got {msg.n_features}")
    return hp, int(msg.n_features)


def peer_fingerprint(context: grpc.ServicerContext) -> str:
    """Return the fingerprint of the client certificate authenticated for this call.

    The same value as :func:`sealfl.net.certificate_fingerprint` (SHA-256 of the DER, hex), so
    a worker's identity here is the fingerprint the server's enrolment log and allow-list show.

    Raises
    ------
    ProtocolError
        If the call carries no client certificate (the server must require mutual TLS).
    """
    # grpc-stubs types the values loosely; at run time they are lists of PEM bytes.
    certs = cast(list[bytes], context.auth_context().get("x509_pem_cert") or [])
    if not certs:
        raise ProtocolError("call without an authenticated client certificate")
    return certificate_fingerprint(certs[0])


class HomoLrService(pb_grpc.HomoLrServicer):
    """Serve a :class:`ParameterServer` over gRPC.

    Parameters
    ----------
    ps
        The core.
    poll_s
        Longest a ``GetModel`` call waits before answering ``WAITING`` (keeps calls short, so
        deadlines and shutdowns are never blocked by a parked call).
    """

    def __init__(self, ps: ParameterServer[Any], *, poll_s: float = 10.0) -> None:
        self._ps = ps
        self._poll_s = poll_s

    def Join(  # noqa: N802 (gRPC's method name)
        self, request: pb.JoinRequest, context: grpc.ServicerContext
    ) -> pb.JoinReply:
        """Admit a worker, or say why not."""
        try:
            hp, n_features = settings_from_proto(request.settings)
            info = self._ps.join(
                request.worker_id, hp, n_features, request.n_samples, peer_fingerprint(context)
            )
        except ProtocolError as exc:
            return pb.JoinReply(refused=str(exc))
        return pb.JoinReply(
            public_key=info.public_key,
            worker_num=info.worker_num,
            round_deadline_s=info.round_deadline_s,
            session_id=info.session_id,
        )

    def Submit(  # noqa: N802 (gRPC's method name)
        self, request: pb.SubmitRequest, context: grpc.ServicerContext
    ) -> pb.SubmitReply:
        """Accept or refuse one worker's encrypted weights."""
        try:
            self._ps.submit(
                request.worker_id,
                request.iteration,
                request.encrypted_weights,
                peer_fingerprint(context),
            )
        except ProtocolError as exc:
            return pb.SubmitReply(status=pb.SubmitReply.REFUSED, reason=str(exc))
        return pb.SubmitReply(status=pb.SubmitReply.ACCEPTED)

    def GetModel(  # noqa: N802 (gRPC's method name)
        self, request: pb.ModelRequest, context: grpc.ServicerContext
    ) -> pb.ModelReply:
        """Return a model version, or WAITING / ABORTED."""
        try:
            view = self._ps.get_model(
                request.worker_id, request.version, peer_fingerprint(context), self._poll_s
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
        )
        if view.evaluation is not None:
            iteration, ev = view.evaluation
            reply.evaluation.CopyFrom(
                pb.Evaluation(iteration=iteration, accuracy=ev.accuracy, loss=ev.loss)
            )
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
    call_timeout_s
        Deadline of each call; ``GetModel`` gets the PS's poll time on top.
    """

    def __init__(self, channel: SecureChannel[Any], *, call_timeout_s: float = 30.0):
        self._channel = channel
        self._stub = channel.stub(pb_grpc.HomoLrStub)
        # Name the address the operator gave (the front door), not the mutual-TLS listener.
        self._address = channel.front_door or channel.address
        self._timeout = call_timeout_s
        self._retry = RetryPolicy(attempts=5, max_backoff_s=2.0)

    def _what(self, method: str) -> str:
        return f"homo-lr {method} to the PS at {self._address}"

    def join(
        self, worker_id: int, hp: Hyperparameters, n_features: int, n_samples: int
    ) -> JoinInfo:
        """Join; raise ProtocolError with the PS's reason if refused."""
        request = pb.JoinRequest(
            worker_id=worker_id,
            settings=settings_to_proto(hp, n_features),
            n_samples=n_samples,
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
        )

    def submit(self, worker_id: int, iteration: int, data: bytes) -> None:
        """Submit (never retried: a retry could count as a second submission)."""
        request = pb.SubmitRequest(worker_id=worker_id, iteration=iteration, encrypted_weights=data)
        reply: pb.SubmitReply = self._channel.call(
            self._stub.Submit, request, timeout_s=self._timeout, what=self._what("Submit")
        )
        if reply.status != pb.SubmitReply.ACCEPTED:
            raise ProtocolError(
                f"the PS refused worker {worker_id}'s submission for iteration {iteration}: "
                f"{reply.reason or 'no reason given'}"
            )

    def get_model(self, worker_id: int, version: int) -> ModelView:
        """Ask for a model version (idempotent, retried on UNAVAILABLE)."""
        request = pb.ModelRequest(worker_id=worker_id, version=version)
        reply: pb.ModelReply = self._channel.call(
            self._stub.GetModel,
            request,
            timeout_s=self._timeout + 30.0,
            retry=self._retry,
            what=self._what("GetModel"),
        )
        evaluation = None
        if reply.HasField("evaluation"):
            e = reply.evaluation
            evaluation = (int(e.iteration), Evaluation(accuracy=e.accuracy, loss=e.loss))
        return ModelView(
            state=_STATE_NAMES.get(reply.state, "aborted"),
            version=reply.version,
            encrypted_weights=reply.encrypted_weights,
            evaluation=evaluation,
            reason=reply.reason,
            missing=tuple(reply.missing_workers),
            sealed_model_path=reply.sealed_model_path,
        )

"""The client of the infer workload: verifies the server, then queries it in its mode.

The client decides whom to trust before it sends anything: in ``plaintext`` and ``mpc`` mode
the server's self-signed certificate must have the pinned fingerprint; in ``tee`` mode its
RA-TLS evidence must satisfy the policy. :func:`sealfl.net.open_secure_channel` performs the
check before enrolment, so a refused server receives no byte of the input. In ``mpc`` mode the
client also pins the dealer itself: a dealer the server chose could be the server's accomplice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.infer.common import (
    CALL_TIMEOUT_S,
    FRAME_SERVICE,
    MAX_MESSAGE_BYTES,
    MODEL_CLAIM,
    Mode,
    connect_dealer,
)
from sealfl.fl.infer.protos import infer_pb2, infer_pb2_grpc
from sealfl.models import sigmoid
from sealfl.mpc import ClientParty, Endpoint, Linear, Output, QueryPlan, expand_client
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.ring import check_array
from sealfl.mpc.wire import (
    array_from_proto,
    decode_frame,
    describe_array,
    encode_frame,
    fill_message,
    header_to_proto,
    message_arrays,
    message_from_frame,
)
from sealfl.net import (
    SecureChannel,
    fingerprint_verifier,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.tee import Policy, Verifier, verify_ratls_certificate

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
ServerVerifier = Callable[[bytes], Any]


def pinned_verifier(fingerprint: str) -> ServerVerifier:
    """Accept exactly the self-signed certificate with this SHA-256 fingerprint (hex)."""
    return fingerprint_verifier([fingerprint])


def tee_verifier(
    *, platform_fingerprint: str, measurement: bytes, model_sha256: bytes | None = None
) -> ServerVerifier:
    """Accept only a simulated-TEE RA-TLS certificate with this measurement and platform.

    ``model_sha256``, if given, must equal the certificate's ``model-sha256`` claim: the hash
    of the model the enclave unsealed (:meth:`LogisticRegression.to_bytes`), so a client
    promised a particular model can check it is the one that will see its rows.
    """
    policy = Policy.for_simulated(
        measurements=[measurement], platform_fingerprints=[platform_fingerprint]
    )
    return policy_verifier(Verifier(policy), model_sha256=model_sha256)


def policy_verifier(verifier: Verifier, *, model_sha256: bytes | None = None) -> ServerVerifier:
    """Accept a TEE-mode server whose RA-TLS evidence passes ``verifier``'s policy.

    ``model_sha256``, if given, must equal the certificate's ``model-sha256`` claim (see
    :func:`tee_verifier`).
    """

    def verify(pem: bytes) -> Any:
        peer = verify_ratls_certificate(pem, verifier)
        if model_sha256 is not None:
            peer.require_claim(MODEL_CLAIM, model_sha256)
        return peer

    return verify


@dataclass(frozen=True)
class QueryResult:
    """The answer to one batch and what it cost.

    Attributes
    ----------
    probabilities
        Probability of class 1 per row (``None`` for label-only MPC output).
    labels
        Predicted label per row.
    online_s
        Seconds from having the rows to having the answer (encoding, transfer, compute).
    offline_s
        Seconds spent before the rows were needed: dealer material (MPC only, else 0).
    round_trips
        Client-server round trips in the online phase.
    bytes_sent, bytes_received
        Array payload bytes the client sent to and received from the server for the query,
        the first comparison round it sends ahead with the prefetch included (framing and TLS
        add a few bytes per array and per record).
    dealer_bytes
        Bytes the client received from the dealer (its seed).
    """

    probabilities: FloatArray | None
    labels: npt.NDArray[np.int64]
    online_s: float
    offline_s: float
    round_trips: int
    bytes_sent: int
    bytes_received: int
    dealer_bytes: int = 0


def _payload(message: dict[int, list[npt.NDArray[Any]]]) -> int:
    return sum(int(a.nbytes) for arrays in message.values() for a in arrays)


def _probabilities_of(reply: infer_pb2.PredictReply) -> list[tuple[str, mpc_pb2.Array]]:
    return [("probabilities", reply.probabilities)]


def _message_of(reply: infer_pb2.StepReply) -> list[tuple[str, mpc_pb2.Array]]:
    return message_arrays(reply.message)


class InferenceClient:
    """A connection to one inference server.

    Use :meth:`connect`. In MPC mode it opens a session (and a channel to the dealer) once,
    and then runs any number of queries in it.
    """

    def __init__(self, channel: SecureChannel[Any], mode: Mode, features: int) -> None:
        self._channel = channel
        self._stub = infer_pb2_grpc.InferenceStub(channel.channel)
        # The framed calls: raw bytes at the gRPC layer (sealfl.mpc.wire.encode_frame).
        self._predict = channel.channel.unary_unary(f"/{FRAME_SERVICE}/Predict", None, None)
        self._step = channel.channel.unary_unary(f"/{FRAME_SERVICE}/Step", None, None)
        self._prefetch = channel.channel.unary_unary(f"/{FRAME_SERVICE}/Prefetch", None, None)
        self.mode = mode
        self.features = features
        self._session: infer_pb2.SessionInfo | None = None
        self._masked_model: npt.NDArray[np.uint64] | None = None
        self._dealer: SecureChannel[Any] | None = None
        self._dealer_stub: infer_pb2_grpc.DealerStub | None = None

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        mode: Mode,
        server_verifier: ServerVerifier,
        dealer_fingerprint: str | None = None,
        timeout_s: float = 10.0,
    ) -> InferenceClient:
        """Verify the server at ``address`` and connect; check it serves ``mode``.

        Parameters
        ----------
        dealer_fingerprint
            MPC mode, required: the dealer's certificate fingerprint. The input is private only
            if the dealer does not collude with the server, so the client chooses the dealer
            it trusts; the server's word for it (its ``SessionInfo``) is never enough.

        Raises
        ------
        AttestationError
            If the server's certificate or evidence is refused (nothing has been sent).
        ChannelError
            If the server cannot be reached.
        ConfigError
            If the server serves another mode, or MPC mode has no ``dealer_fingerprint``.
        """
        if mode is Mode.MPC and not dealer_fingerprint:
            raise ConfigError(
                "mpc mode needs the dealer's fingerprint: the input stays private only if the "
                "dealer does not collude with the server, so pin a dealer you trust rather "
                "than the one the server names"
            )
        channel = open_secure_channel(
            address,
            credentials=make_self_signed_credentials("infer-client"),
            server_verifier=server_verifier,
            timeout_s=timeout_s,
            default_timeout_s=CALL_TIMEOUT_S,
            max_message_bytes=MAX_MESSAGE_BYTES,
        )
        try:
            stub = infer_pb2_grpc.InferenceStub(channel.channel)
            info = channel.call(stub.Describe, infer_pb2.DescribeRequest(), what="Describe")
            if info.mode != mode.value:
                raise ConfigError(
                    f"server at {address} serves mode {info.mode!r}, expected {mode.value!r}"
                )
            client = cls(channel, mode, int(info.features))
            if mode is Mode.MPC:
                assert dealer_fingerprint is not None  # checked above, before connecting
                client._open_session(dealer_fingerprint, timeout_s)
        except BaseException:
            channel.close()
            raise
        return client

    def _open_session(self, dealer_fingerprint: str, timeout_s: float) -> None:
        info = self._channel.call(
            self._stub.OpenSession, infer_pb2.OpenSessionRequest(), what="OpenSession"
        )
        masked = array_from_proto(info.masked_model, field="masked model")
        check_array(masked, (self.features,), np.uint64, what="masked model:")
        self._session = info
        self._masked_model = masked
        self._dealer = connect_dealer(
            info.dealer_address, dealer_fingerprint, party="infer-client", timeout_s=timeout_s
        )
        self._dealer_stub = infer_pb2_grpc.DealerStub(self._dealer.channel)

    def describe(self) -> infer_pb2.ServerInfo:
        """Ask the server for its mode, width and counters."""
        return self._channel.call(self._stub.Describe, infer_pb2.DescribeRequest())

    def close(self) -> None:
        """Close the channels (idempotent)."""
        self._channel.close()
        if self._dealer is not None:
            self._dealer.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------
    def query(
        self,
        inputs: npt.ArrayLike,
        output: Output = Output.PROBABILITY,
        *,
        linear: Linear = Linear.INPUT_OWNER,
    ) -> QueryResult:
        """Send one batch and return the answer.

        Parameters
        ----------
        inputs
            ``rows x features`` floats.
        output
            MPC mode: ``probability`` (sigmoid inside MPC), ``logit`` (revealed to this
            client, sigmoid applied here) or ``label``. Other modes always compute the
            probability; ``label`` then just thresholds it here.
        linear
            MPC mode: the linear layer's protocol (input-owner, or the general Beaver path).
        """
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ConfigError(f"inputs must have shape (rows, {self.features}), got {x.shape}")
        if self.mode is Mode.MPC:
            return self._query_mpc(x, output, linear)
        return self._query_plain(x)

    def _query_plain(self, x: FloatArray) -> QueryResult:
        start = time.perf_counter()
        request = infer_pb2.PredictRequest()
        frame = encode_frame(request, [describe_array(request.inputs, x)])
        answer = self._channel.call(self._predict, frame, what="Predict")
        _, (p,) = decode_frame(answer, infer_pb2.PredictReply, _probabilities_of)
        elapsed = time.perf_counter() - start
        if p.shape != (x.shape[0],):
            raise ProtocolError(f"probabilities: expected {x.shape[0]} values, got {p.shape}")
        return QueryResult(
            probabilities=p,
            labels=(p >= 0.5).astype(np.int64),
            online_s=elapsed,
            offline_s=0.0,
            round_trips=1,
            bytes_sent=x.nbytes,
            bytes_received=p.nbytes,
        )

    def _query_mpc(self, x: FloatArray, output: Output, linear: Linear) -> QueryResult:
        assert self._session is not None and self._dealer is not None
        assert self._dealer_stub is not None and self._masked_model is not None
        plan = QueryPlan(rows=x.shape[0], features=self.features, output=output, linear=linear)
        # Offline: the dealer draws this query's material; the server fetches its part.
        start = time.perf_counter()
        header = header_to_proto(plan, session_id=self._session.session_id, query_id="")
        seed = self._dealer.call(
            self._dealer_stub.Prepare,
            infer_pb2.PrepareRequest(header=header),
            what=f"dealer {self._session.dealer_address} Prepare",
        )
        header.query_id = seed.query_id
        party = ClientParty(plan, expand_client(plan, bytes(seed.seed)), self._masked_model)
        endpoint = Endpoint(party)
        early = endpoint.prepare()  # needs no rows: it goes to the server with the prefetch
        prefetch = infer_pb2.PrefetchRequest(header=header)
        frame = encode_frame(prefetch, fill_message(prefetch.message, early))
        self._channel.call(self._prefetch, frame, what="Prefetch")
        online_start = time.perf_counter()
        # Online: the two-party protocol, one call per client message.
        party.load(x)
        request = infer_pb2.StepRequest(header=header, query_id=header.query_id)
        outgoing = endpoint.start()
        sent, received, trips = _payload(early), 0, 0
        max_trips = plan.round_trips()
        while True:
            frame = encode_frame(request, fill_message(request.message, outgoing))
            sent += _payload(outgoing)
            answer = self._channel.call(self._step, frame, what="MPC query")
            trips += 1
            reply, arrays = decode_frame(answer, infer_pb2.StepReply, _message_of)
            incoming = message_from_frame(reply.message, arrays)
            received += _payload(incoming)
            outgoing = endpoint.receive(incoming)
            if endpoint.done:
                break
            if reply.done:
                raise ProtocolError("the server ended the query before the result")
            if trips >= max_trips:
                raise ProtocolError(
                    f"no result after {trips} calls: the plan takes {max_trips} round trips, "
                    "and the server's replies did not complete it"
                )
            request = infer_pb2.StepRequest(query_id=header.query_id)
        result = party.result
        assert result is not None  # the endpoint is done, so the result is in
        elapsed = time.perf_counter() - online_start
        if output is Output.LABEL:
            probabilities = None
            labels = np.asarray(result, dtype=np.int64)
        else:
            probabilities = sigmoid(result) if output is Output.LOGIT else np.asarray(result)
            labels = (probabilities >= 0.5).astype(np.int64)
        return QueryResult(
            probabilities=probabilities,
            labels=labels,
            online_s=elapsed,
            offline_s=online_start - start,
            round_trips=trips,
            bytes_sent=sent,
            bytes_received=received,
            dealer_bytes=len(seed.seed),
        )

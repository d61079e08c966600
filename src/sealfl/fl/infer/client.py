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
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from sealfl.errors import ChannelError, ConfigError, ProtocolError, SealflError
from sealfl.fl.infer.common import (
    CALL_TIMEOUT_S,
    FRAME_SERVICE,
    MAX_MESSAGE_BYTES,
    MODEL_CLAIM,
    Mode,
    Reconnecting,
    UnknownSessionError,
    connect_dealer,
    status_of,
    unreachable,
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
    Credentials,
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


PREDICT = f"/{FRAME_SERVICE}/Predict"
STEP = f"/{FRAME_SERVICE}/Step"
PREFETCH = f"/{FRAME_SERVICE}/Prefetch"
"""The framed calls: raw bytes at the gRPC layer (:func:`sealfl.mpc.wire.encode_frame`)."""


class _DealerError(ChannelError):
    """A call to the dealer failed after its own reconnection: the query is not tried again."""


class InferenceClient:
    """A connection to one inference server.

    Use :meth:`connect`. In MPC mode it opens a session (and a channel to the dealer) once,
    and then runs any number of queries in it.

    Restarts are survived: a server or dealer that comes back (with the same certificate:
    its ``--key-file``) is connected to again, and a session the server or dealer says is
    unknown (a restart, its bounds, its lifetime) is opened again; a query that failed for one
    of these reasons is made once more, with fresh masks.

    Parameters
    ----------
    server
        The channel to the server.
    mode, features
        What the server serves.
    outputs
        The outputs it serves (empty: not said, any may be asked).
    dealer_fingerprint
        MPC mode: the dealer's pin.
    credentials
        This client's persistent identity, used for the dealer too; ``None``: the dealer
        channel makes (and renews) its own certificate.
    """

    def __init__(
        self,
        server: Reconnecting[Any],
        mode: Mode,
        features: int,
        *,
        outputs: Collection[Output] = (),
        dealer_fingerprint: str | None = None,
        credentials: Credentials | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._server = server
        self.mode = mode
        self.features = features
        self.outputs = frozenset(outputs)
        self._dealer_fingerprint = dealer_fingerprint
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._session: infer_pb2.SessionInfo | None = None
        self._masked_model: npt.NDArray[np.uint64] | None = None
        self._dealer: Reconnecting[Any] | None = None
        self._dealer_address = ""

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        mode: Mode,
        server_verifier: ServerVerifier,
        dealer_fingerprint: str | None = None,
        timeout_s: float = 10.0,
        credentials: Credentials | None = None,
    ) -> InferenceClient:
        """Verify the server at ``address`` and connect; check it serves ``mode``.

        Parameters
        ----------
        dealer_fingerprint
            MPC mode, required: the dealer's certificate fingerprint. The input is private only
            if the dealer does not collude with the server, so the client chooses the dealer
            it trusts; the server's word for it (its ``SessionInfo``) is never enough.
        credentials
            This client's identity (a persistent one, so that a server knows it again: its
            row budget is per certificate); a fresh certificate if not given.

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
        creds = credentials or make_self_signed_credentials("infer-client")
        # A fresh certificate is renewed as it ages (a persistent identity is not ours to).
        renew = None if credentials else partial(make_self_signed_credentials, "infer-client")
        server: Reconnecting[Any] = Reconnecting(
            lambda: open_secure_channel(
                address,
                credentials=creds,
                server_verifier=server_verifier,
                renew=renew,
                timeout_s=timeout_s,
                default_timeout_s=CALL_TIMEOUT_S,
                max_message_bytes=MAX_MESSAGE_BYTES,
            ),
            infer_pb2_grpc.InferenceStub,
        )
        try:
            info = server.call("Describe", infer_pb2.DescribeRequest(), what="Describe")
            if info.mode != mode.value:
                raise ConfigError(
                    f"server at {address} serves mode {info.mode!r}, expected {mode.value!r}"
                )
            outputs = [Output(o) for o in info.outputs if o in _OUTPUT_NAMES]
            client = cls(
                server,
                mode,
                int(info.features),
                outputs=outputs,
                dealer_fingerprint=dealer_fingerprint,
                credentials=credentials,
                timeout_s=timeout_s,
            )
            if mode is Mode.MPC:
                client._open_session()
        except BaseException:
            server.close()
            raise
        return client

    def _open_session(self) -> None:
        """Open a session: the server's masked model, and the dealer it names (pinned by us)."""
        assert self._dealer_fingerprint is not None
        info = self._server.call("OpenSession", infer_pb2.OpenSessionRequest(), what="OpenSession")
        masked = array_from_proto(info.masked_model, field="masked model")
        check_array(masked, (self.features,), np.uint64, what="masked model:")
        if self._dealer is None or info.dealer_address != self._dealer_address:
            if self._dealer is not None:
                self._dealer.close()
            address, pin, creds = info.dealer_address, self._dealer_fingerprint, self._credentials
            self._dealer = Reconnecting(
                lambda: connect_dealer(
                    address,
                    pin,
                    party="infer-client",
                    timeout_s=self._timeout_s,
                    credentials=creds,
                ),
                infer_pb2_grpc.DealerStub,
            )
            self._dealer_address = address
        self._session = info
        self._masked_model = masked

    def describe(self) -> infer_pb2.ServerInfo:
        """Ask the server for its mode, width, outputs, counters and this client's budget."""
        return self._server.call("Describe", infer_pb2.DescribeRequest(), what="Describe")

    def close(self) -> None:
        """Close the channels (idempotent)."""
        self._server.close()
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
            ``rows x features`` floats, at least one row.
        output
            ``probability``, ``logit`` (the client applies the sigmoid) or ``label``; the
            server must serve it (its ``--allow-outputs``). In MPC mode the probability's
            sigmoid runs inside MPC and the logit is revealed to this client only.
        linear
            MPC mode: the linear layer's protocol (input-owner, or the general Beaver path).

        Raises
        ------
        ConfigError
            If the rows have the wrong shape or are none, or the server does not serve
            ``output`` (nothing is sent then).
        """
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ConfigError(f"inputs must have shape (rows, {self.features}), got {x.shape}")
        if x.shape[0] == 0:
            raise ConfigError("inputs: a query needs at least one row, got 0")
        if self.outputs and output not in self.outputs:
            served = ", ".join(sorted(o.value for o in self.outputs))
            raise ConfigError(
                f"the server serves the {served} output(s) only (its --allow-outputs); "
                f"asked for {output.value}"
            )
        if self.mode is Mode.MPC:
            return self._query_mpc(x, output, linear)
        return self._query_plain(x, output)

    def _query_plain(self, x: FloatArray, output: Output) -> QueryResult:
        start = time.perf_counter()
        request = infer_pb2.PredictRequest(output=output.value)
        frame = encode_frame(request, [describe_array(request.inputs, x)])
        answer = self._server.call(PREDICT, frame, raw=True, what="Predict")
        field = {Output.PROBABILITY: "probabilities", Output.LOGIT: "logits"}.get(output, "labels")
        _, (values,) = decode_frame(
            answer, infer_pb2.PredictReply, lambda r: [(field, getattr(r, field))]
        )
        elapsed = time.perf_counter() - start
        if values.shape != (x.shape[0],):
            raise ProtocolError(f"{field}: expected {x.shape[0]} values, got {values.shape}")
        if output is Output.LABEL:
            probabilities = None
            labels = values.astype(np.int64)
        else:
            probabilities = sigmoid(values) if output is Output.LOGIT else values
            labels = (probabilities >= 0.5).astype(np.int64)
        return QueryResult(
            probabilities=probabilities,
            labels=labels,
            online_s=elapsed,
            offline_s=0.0,
            round_trips=1,
            bytes_sent=x.nbytes,
            bytes_received=values.nbytes,
        )

    def _query_mpc(self, x: FloatArray, output: Output, linear: Linear) -> QueryResult:
        """Run one MPC query, once more in a new session if the first failed recoverably."""
        for attempt in (1, 2):
            try:
                if self._session is None:
                    self._open_session()
                return self._query_mpc_once(x, output, linear)
            except (ChannelError, UnknownSessionError) as exc:
                if attempt == 2 or not _worth_a_new_session(exc):
                    raise
                _log.warning("MPC query failed (%s); opening a new session, trying once more", exc)
                self._session = None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _prepare(self, header: mpc_pb2.QueryHeader) -> infer_pb2.ClientSeed:
        """Ask the dealer for this query's seed (it reconnects once by itself)."""
        assert self._dealer is not None
        try:
            return self._dealer.call(
                "Prepare",
                infer_pb2.PrepareRequest(header=header),
                what=f"dealer {self._dealer_address} Prepare",
            )
        except ChannelError as exc:
            if status_of(exc) is grpc.StatusCode.NOT_FOUND:
                raise UnknownSessionError(str(exc)) from exc
            raise _DealerError(str(exc)) from exc

    def _query_mpc_once(self, x: FloatArray, output: Output, linear: Linear) -> QueryResult:
        assert self._session is not None and self._masked_model is not None
        plan = QueryPlan(rows=x.shape[0], features=self.features, output=output, linear=linear)
        # Offline: the dealer draws this query's material; the server fetches its part.
        start = time.perf_counter()
        header = header_to_proto(plan, session_id=self._session.session_id, query_id="")
        seed = self._prepare(header)
        header.query_id = seed.query_id
        party = ClientParty(plan, expand_client(plan, bytes(seed.seed)), self._masked_model)
        endpoint = Endpoint(party)
        early = endpoint.prepare()  # needs no rows: it goes to the server with the prefetch
        prefetch = infer_pb2.PrefetchRequest(header=header)
        frame = encode_frame(prefetch, fill_message(prefetch.message, early))
        self._server.call(PREFETCH, frame, raw=True, what="Prefetch")
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
            # Never repeated on a new connection: the server must not see a step twice.
            answer = self._server.call(STEP, frame, raw=True, repeat=False, what="MPC query")
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


_OUTPUT_NAMES = frozenset(o.value for o in Output)


def _worth_a_new_session(exc: SealflError) -> bool:
    """Say whether a failed query may succeed in a new session.

    It may if its session or material is gone (the server or the dealer restarted, or pushed
    it out), or the server was unreachable mid-query (its channel then connects again). A
    dealer that stays unreachable after its own reconnection is not worth another try.
    """
    if isinstance(exc, UnknownSessionError):
        return True
    if isinstance(exc, _DealerError) or not isinstance(exc, ChannelError):
        return False
    return status_of(exc) is grpc.StatusCode.NOT_FOUND or unreachable(exc)

"""The model server of the infer workload, in one of three modes.

- ``plaintext``: answers :meth:`InferenceServicer.predict` on the client's rows, over TLS with
  a pinned self-signed certificate. The baseline.
- ``tee``: the same computation, but the process runs in a (simulated) TEE: its certificate is
  an RA-TLS certificate whose evidence the client checks before sending anything, and the
  model is read from a file sealed to the enclave's identity.
- ``mpc``: never sees the client's rows. It opens a session at the dealer, publishes its
  masked model, fetches its dealer material per query, and runs the server side of
  :mod:`sealfl.mpc`, one ``Step`` call per client message, keeping each query's state between
  calls (bounded in number and time).

Every handler refuses malformed input with INVALID_ARGUMENT and a reason, and keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from sealfl.errors import ChannelError, ProtocolError
from sealfl.fl.infer.common import (
    DEALER_TIMEOUT_S,
    FRAME_SERVICE,
    Mode,
    refuse_bad_input,
)
from sealfl.fl.infer.protos import infer_pb2, infer_pb2_grpc
from sealfl.models import LogisticRegression
from sealfl.mpc import (
    FRAC_BITS,
    Endpoint,
    QueryPlan,
    ServerParty,
    encode,
    expand_server,
)
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.ring import U64, check_array
from sealfl.mpc.wire import (
    array_from_proto,
    array_to_proto,
    deal_from_proto,
    decode_frame,
    describe_array,
    encode_frame,
    fill_message,
    message_arrays,
    message_from_frame,
    plan_from_header,
)
from sealfl.net import SecureChannel

_log = logging.getLogger(__name__)


@dataclass
class DealerLink:
    """The server's channel to the dealer, and the dealer's address and pin for clients."""

    channel: SecureChannel[Any]
    address: str
    fingerprint: str

    def __post_init__(self) -> None:
        self._stub = infer_pb2_grpc.DealerStub(self.channel.channel)

    def open_session(self, features: int) -> infer_pb2.DealerSession:
        """Open a session at the dealer (its mask and token)."""
        return self.channel.call(
            self._stub.OpenSession,
            infer_pb2.DealerSessionRequest(features=features),
            timeout_s=DEALER_TIMEOUT_S,
            what=f"dealer {self.address} OpenSession",
        )

    def fetch(self, session_id: str, token: bytes, query_id: str) -> mpc_pb2.ServerDeal:
        """Fetch this server's material for one query."""
        return self.channel.call(
            self._stub.Fetch,
            infer_pb2.FetchRequest(session_id=session_id, token=token, query_id=query_id),
            timeout_s=DEALER_TIMEOUT_S,
            what=f"dealer {self.address} Fetch",
        )


@dataclass
class _Session:
    token: bytes


@dataclass
class _Prefetched:
    """A query's party, made ahead, and the openings its client sent ahead."""

    party: ServerParty
    early: dict[int, list[npt.NDArray[Any]]]


@dataclass
class _Query:
    endpoint: Endpoint
    started: float
    early: dict[int, list[npt.NDArray[Any]]]
    lock: threading.Lock = field(default_factory=threading.Lock)


QUERY_TTL_S = 60.0
"""An MPC query unfinished after this long is dropped (its client went away)."""


V = TypeVar("V")


class _Bounded(OrderedDict[str, V], Generic[V]):
    """An insertion-ordered dict that forgets its oldest entries beyond ``limit``.

    With ``rows``, it also forgets them while the entries' rows add up to more than
    ``max_rows`` (a prefetched query holds about 2.5 kB a row: its dealer material, the
    precomputed spline terms and the client's early openings).
    """

    def __init__(
        self, limit: int, *, rows: Callable[[V], int] | None = None, max_rows: int = 0
    ) -> None:
        super().__init__()
        self.limit = limit
        self._rows = rows
        self._max_rows = max_rows

    def put(self, key: str, value: V) -> None:
        self[key] = value
        while len(self) > self.limit or (
            len(self) > 1  # the newest entry stays, however large
            and self._rows is not None
            and sum(map(self._rows, self.values())) > self._max_rows
        ):
            self.popitem(last=False)


class InferenceServicer(infer_pb2_grpc.InferenceServicer):
    """Serves one logistic-regression model in one mode.

    Parameters
    ----------
    mode
        How to compute (see the module docstring).
    model
        The model; in TEE mode it was unsealed inside the enclave.
    dealer
        The dealer link (MPC mode only).
    max_sessions, max_prefetched, max_running
        Bounds on MPC sessions, on prefetched queries, and on queries in flight.
    max_prefetched_rows
        Bound on the rows of all prefetched queries together (the oldest are forgotten
        first; such a query then fails with a clear error at its first step).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        model: LogisticRegression,
        dealer: DealerLink | None = None,
        max_sessions: int = 256,
        max_prefetched: int = 16,
        max_prefetched_rows: int = 1 << 18,
        max_running: int = 64,
    ) -> None:
        if (mode is Mode.MPC) != (dealer is not None):
            raise ValueError("a dealer link is needed in MPC mode and only there")
        self._mode = mode
        self._model = model
        self._w: U64 = encode(model.weights, FRAC_BITS)
        self._dealer = dealer
        self._sessions: _Bounded[_Session] = _Bounded(max_sessions)
        self._prefetched: _Bounded[_Prefetched] = _Bounded(
            max_prefetched, rows=lambda ready: ready.party.plan.rows, max_rows=max_prefetched_rows
        )
        self._running: _Bounded[_Query] = _Bounded(max_running)
        self._lock = threading.Lock()
        self.served = 0
        self.refused = 0

    # -- all modes -------------------------------------------------------------------------
    def Describe(  # noqa: N802 (gRPC method name)
        self, request: infer_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> infer_pb2.ServerInfo:
        """Say which mode and width this server has, and how many queries it answered."""
        return infer_pb2.ServerInfo(
            mode=self._mode.value,
            features=self._model.n_features,
            queries_served=self.served,
            queries_refused=self.refused,
        )

    def _count(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.served += 1
            else:
                self.refused += 1

    def _require(self, modes: tuple[Mode, ...], what: str) -> None:
        if self._mode not in modes:
            raise ProtocolError(
                f"{what} is not served in {self._mode.value} mode "
                f"(only in {', '.join(m.value for m in modes)})"
            )

    # -- plaintext and TEE -----------------------------------------------------------------
    def predict(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        """Compute probabilities on the client's rows (plaintext and TEE modes).

        ``frame`` is a :class:`~infer_pb2.PredictRequest` frame (:mod:`sealfl.mpc.wire`);
        the answer is a :class:`~infer_pb2.PredictReply` frame.
        """

        def body() -> bytes:
            try:
                self._require((Mode.PLAINTEXT, Mode.TEE), "Predict")
                _, (x,) = decode_frame(frame, infer_pb2.PredictRequest, _inputs_of)
                if x.dtype != np.float64:
                    raise ProtocolError(f"inputs: expected dtype float64, got {x.dtype.name}")
                p = self._model.predict_proba(x)
            except Exception:
                self._count(False)
                raise
            self._count(True)
            reply = infer_pb2.PredictReply()
            return encode_frame(reply, [describe_array(reply.probabilities, p)])

        return refuse_bad_input(context, body, what="Predict")

    # -- MPC -------------------------------------------------------------------------------
    def OpenSession(  # noqa: N802
        self, request: infer_pb2.OpenSessionRequest, context: grpc.ServicerContext
    ) -> infer_pb2.SessionInfo:
        """Open an MPC session: mask the model once with the dealer's session mask."""

        def body() -> infer_pb2.SessionInfo:
            self._require((Mode.MPC,), "OpenSession")
            assert self._dealer is not None
            grant = self._dealer.open_session(self._model.n_features)
            mask = array_from_proto(grant.mask, field="dealer session mask")
            check_array(mask, self._w.shape, np.uint64, what="dealer session mask:")
            with self._lock:
                self._sessions.put(grant.session_id, _Session(bytes(grant.token)))
            return infer_pb2.SessionInfo(
                session_id=grant.session_id,
                masked_model=array_to_proto(self._w - mask),
                frac_bits=FRAC_BITS,
                dealer_address=self._dealer.address,
                dealer_fingerprint=self._dealer.fingerprint,
            )

        return refuse_bad_input(context, body, what="OpenSession")

    def _party(self, plan: QueryPlan, session_id: str, query_id: str) -> _Prefetched:
        """Take the prefetched party of a query, or fetch its material and make it now.

        Making the party expands the dealer's material and precomputes what does not depend
        on the client's messages, so a prefetched query starts with none of that left to do.
        """
        with self._lock:
            ready = self._prefetched.pop(query_id, None)
            session = self._sessions.get(session_id)
        if ready is not None:
            if ready.party.plan != plan:
                raise ProtocolError(
                    f"query {query_id}: header {plan} differs from the prefetched "
                    f"{ready.party.plan}"
                )
            return ready
        if session is None:
            raise ProtocolError(f"unknown or expired MPC session {session_id!r}")
        assert self._dealer is not None
        try:
            deal_msg = self._dealer.fetch(session_id, session.token, query_id)
        except ChannelError as exc:
            raise ChannelError(f"cannot get this query's material from the dealer: {exc}") from exc
        dealt_plan = plan_from_header(deal_msg.header)
        if dealt_plan != plan:
            raise ProtocolError(
                f"query {query_id}: client header {plan} differs from the dealer's {dealt_plan}"
            )
        party = ServerParty(plan, expand_server(plan, deal_from_proto(deal_msg)), self._w)
        return _Prefetched(party, {})

    def prefetch(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        """Make a query's party ahead of it, and keep the client's early openings (offline).

        ``frame`` is a ``PrefetchRequest`` frame: the query's header and the openings the
        client could make without its rows (its first comparison round), which the first
        ``Step`` of the query then combines with the masked rows.
        """

        def body() -> bytes:
            self._require((Mode.MPC,), "Prefetch")
            request, arrays = decode_frame(frame, infer_pb2.PrefetchRequest, _prefetch_of)
            early = message_from_frame(request.message, arrays)
            if 0 in early:
                raise ProtocolError("level 0 (the masked rows) cannot be sent ahead of the query")
            header = request.header
            made = self._party(plan_from_header(header), header.session_id, header.query_id)
            with self._lock:
                self._prefetched.put(header.query_id, _Prefetched(made.party, early))
            return encode_frame(infer_pb2.PrefetchReply(), [])

        return refuse_bad_input(context, body, what="Prefetch")

    def step(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        """Take one client message of an MPC query and answer it (online phase).

        ``frame`` is a :class:`~infer_pb2.StepRequest` frame; the answer a ``StepReply`` one.
        """
        return refuse_bad_input(context, lambda: self._step(frame), what="MPC query")

    def _start_query(self, header: mpc_pb2.QueryHeader) -> _Query:
        plan = plan_from_header(header)
        if plan.features != self._model.n_features:
            raise ProtocolError(
                f"query has {plan.features} features, the model expects {self._model.n_features}"
            )
        made = self._party(plan, header.session_id, header.query_id)
        query = _Query(Endpoint(made.party), time.monotonic(), made.early)
        with self._lock:
            if header.query_id in self._running:
                raise ProtocolError(f"query {header.query_id!r} is already running")
            self._running.put(header.query_id, query)
        return query

    def _step(self, frame: bytes) -> bytes:
        self._require((Mode.MPC,), "Step")
        request, arrays = decode_frame(frame, infer_pb2.StepRequest, _message_of)
        query_id = request.header.query_id if request.HasField("header") else request.query_id
        query: _Query | None = None
        try:
            if request.HasField("header"):
                query = self._start_query(request.header)
            else:
                with self._lock:
                    self._purge_running()
                    query = self._running.get(query_id)
                if query is None:
                    raise ProtocolError(
                        f"unknown MPC query {query_id!r} (never started, finished or expired); "
                        "the first message of a query must carry its header"
                    )
            message = message_from_frame(request.message, arrays)
            with query.lock:
                if query.early:  # the first Step: add what the client sent with its prefetch
                    if set(message) & set(query.early):
                        raise ProtocolError("the first Step repeats a level sent with the prefetch")
                    message, query.early = {**message, **query.early}, {}
                out = query.endpoint.receive(message)
            reply = infer_pb2.StepReply(done=query.endpoint.done)
            answer = encode_frame(reply, fill_message(reply.message, out))
        except Exception:
            self._finish(query_id, query, ok=False)
            raise
        if reply.done:
            self._finish(query_id, query, ok=True)
        return answer

    def _finish(self, query_id: str, query: _Query | None, *, ok: bool) -> None:
        """Count the query; forget its state if this call owns it (never another's)."""
        with self._lock:
            if query is not None and self._running.get(query_id) is query:
                del self._running[query_id]
        self._count(ok)

    def _purge_running(self) -> None:
        limit = time.monotonic() - QUERY_TTL_S
        stale = [k for k, q in self._running.items() if q.started < limit]
        for key in stale:
            del self._running[key]
            self.refused += 1


def _inputs_of(request: infer_pb2.PredictRequest) -> list[tuple[str, mpc_pb2.Array]]:
    return [("inputs", request.inputs)]


def _message_of(request: infer_pb2.StepRequest) -> list[tuple[str, mpc_pb2.Array]]:
    return message_arrays(request.message)


def _prefetch_of(request: infer_pb2.PrefetchRequest) -> list[tuple[str, mpc_pb2.Array]]:
    return message_arrays(request.message)


def frame_handlers(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """Return the framed methods of :data:`FRAME_SERVICE`: raw bytes in and out."""
    return grpc.method_handlers_generic_handler(
        FRAME_SERVICE,
        {
            "Predict": grpc.unary_unary_rpc_method_handler(servicer.predict),
            "Step": grpc.unary_unary_rpc_method_handler(servicer.step),
            "Prefetch": grpc.unary_unary_rpc_method_handler(servicer.prefetch),
        },
    )

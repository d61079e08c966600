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

What a client may ask is bounded by the server's owner: the outputs it serves
(``allow_outputs``; what each reveals about the model is in docs/trust.md) and the rows a
client certificate may query per period (:class:`~sealfl.fl.infer.quota.RowBudget`). What a
client may hold is bounded per client (its certificate's fingerprint) and in total
(:class:`ServerLimits`): sessions, prefetched and running queries. A session or query belongs
to the client that made it; another client's id is "unknown", like one that never existed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from sealfl.errors import ChannelError, ConfigError, ProtocolError
from sealfl.fl.infer.common import (
    DEALER_TIMEOUT_S,
    FRAME_SERVICE,
    Mode,
    OutputNotServedError,
    Reconnecting,
    UnknownSessionError,
    caller_of,
    connect_dealer,
    refuse_bad_input,
    status_of,
)
from sealfl.fl.infer.protos import infer_pb2, infer_pb2_grpc
from sealfl.fl.infer.quota import FairStore, RowBudget, memory_share
from sealfl.models import LogisticRegression, sigmoid
from sealfl.mpc import (
    FRAC_BITS,
    Endpoint,
    Output,
    QueryPlan,
    ServerParty,
    encode,
    expand_server,
)
from sealfl.mpc.plan import MAX_ROWS
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

_log = logging.getLogger(__name__)


class DealerLink:
    """The server's channel to the dealer, and the dealer's address and pin for clients.

    A dealer that restarts forgets the server's enrolment; the link then connects again
    (verifying the same pinned fingerprint, so the dealer needs its ``--key-file``) and repeats
    the call once (:class:`~sealfl.fl.infer.common.Reconnecting`).
    """

    def __init__(self, channel: Reconnecting[Any], address: str, fingerprint: str) -> None:
        self.channel = channel
        self.address = address
        self.fingerprint = fingerprint

    @classmethod
    def connect(cls, address: str, fingerprint: str) -> DealerLink:
        """Connect to the dealer at ``address`` whose certificate has ``fingerprint``.

        Raises
        ------
        ChannelError
            If the dealer cannot be reached or presents another certificate.
        """
        channel = Reconnecting(
            lambda: connect_dealer(address, fingerprint, party="infer-server"),
            infer_pb2_grpc.DealerStub,
        )
        return cls(channel, address, fingerprint)

    def open_session(self, features: int) -> infer_pb2.DealerSession:
        """Open a session at the dealer (its mask and token)."""
        return self.channel.call(
            "OpenSession",
            infer_pb2.DealerSessionRequest(features=features),
            timeout_s=DEALER_TIMEOUT_S,
            what=f"dealer {self.address} OpenSession",
        )

    def fetch(self, session_id: str, token: bytes, query_id: str) -> mpc_pb2.ServerDeal:
        """Fetch this server's material for one query."""
        return self.channel.call(
            "Fetch",
            infer_pb2.FetchRequest(session_id=session_id, token=token, query_id=query_id),
            timeout_s=DEALER_TIMEOUT_S,
            what=f"dealer {self.address} Fetch",
        )

    def close(self) -> None:
        """Close the channel to the dealer."""
        self.channel.close()


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

QUERY_ROW_BYTES = 4096
"""Server memory per row of a prefetched or running query with the sigmoid inside MPC: its
dealer material (1.5 kB), the precomputed spline terms and the client's openings."""


@dataclass(frozen=True)
class ServerLimits:
    """Bounds of what MPC clients may hold at the server, per client and in total.

    Beyond a client's own bound its own oldest entry goes; beyond the total, the oldest entry
    of the client holding the most (:class:`~sealfl.fl.infer.quota.FairStore`). A client whose
    session went is told it is unknown and opens a new one.

    Attributes
    ----------
    sessions_per_client, sessions
        Open sessions (a session costs the server a few hundred bytes).
    queries_per_client, queries
        Prefetched queries, and separately running ones.
    rows_per_client, rows
        Their rows (:data:`QUERY_ROW_BYTES` each); the total defaults to a sixteenth of the
        host's memory, the per-client bound to two queries of the largest plan.
    """

    sessions_per_client: int = 8
    sessions: int = 16384
    queries_per_client: int = 8
    queries: int = 256
    rows_per_client: int = 2 * MAX_ROWS
    rows: int = field(
        default_factory=lambda: memory_share(1 / 16, floor=1 << 30, cap=16 << 30) // QUERY_ROW_BYTES
    )


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
    allow_outputs
        The outputs served (``label`` only by default: every other output gives a client one
        linear equation in the weights per row, so a query of as many rows as the model has
        features returns the model; docs/trust.md says what each reveals).
    row_budget
        Rows one client certificate may query per period; ``None``: no budget.
    limits
        Bounds of sessions and queries per client and in total (:class:`ServerLimits`).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        model: LogisticRegression,
        dealer: DealerLink | None = None,
        allow_outputs: Collection[Output] = (Output.LABEL,),
        row_budget: RowBudget | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        if (mode is Mode.MPC) != (dealer is not None):
            raise ValueError("a dealer link is needed in MPC mode and only there")
        if not allow_outputs:
            raise ConfigError("allow_outputs: the server must serve at least one output")
        self._mode = mode
        self._model = model
        self._w: U64 = encode(model.weights, FRAC_BITS)
        self._dealer = dealer
        self._outputs = frozenset(allow_outputs)
        self._budget = row_budget
        lim = limits or ServerLimits()
        self._sessions: FairStore[_Session] = FairStore(
            per_owner=lim.sessions_per_client, total=lim.sessions, what="session"
        )

        def queries(what: str) -> Any:
            return FairStore(
                per_owner=lim.queries_per_client,
                total=lim.queries,
                per_owner_cost=lim.rows_per_client,
                total_cost=lim.rows,
                what=what,
            )

        self._prefetched: FairStore[_Prefetched] = queries("prefetched query")
        self._running: FairStore[_Query] = queries("running query")
        self._lock = threading.Lock()
        self.served = 0
        self.refused = 0

    @property
    def outputs(self) -> frozenset[Output]:
        """The outputs this server serves."""
        return self._outputs

    # -- all modes -------------------------------------------------------------------------
    def Describe(  # noqa: N802 (gRPC method name)
        self, request: infer_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> infer_pb2.ServerInfo:
        """Say which mode, width and outputs this server has, and the caller's budget."""
        info = infer_pb2.ServerInfo(
            mode=self._mode.value,
            features=self._model.n_features,
            queries_served=self.served,
            queries_refused=self.refused,
            outputs=sorted(o.value for o in self._outputs),
        )
        if self._budget is not None:
            info.row_budget = self._budget.rows
            info.budget_period_s = self._budget.period_s
            info.rows_left = self._budget.left(caller_of(context))
        return info

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

    def _admit(self, output: Output, rows: int, owner: str) -> None:
        """Refuse an output this server does not serve; take the rows from the budget."""
        if output not in self._outputs:
            served = ", ".join(sorted(o.value for o in self._outputs))
            raise OutputNotServedError(
                f"this server serves the {served} output(s) only (its --allow-outputs), the "
                f"query asks for {output.value}"
            )
        if self._budget is not None:
            self._budget.charge(owner, rows)

    def _refund(self, rows: int, owner: str) -> None:
        if self._budget is not None:
            self._budget.refund(owner, rows)

    # -- plaintext and TEE -----------------------------------------------------------------
    def predict(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        """Compute the requested output on the client's rows (plaintext and TEE modes).

        ``frame`` is a :class:`~infer_pb2.PredictRequest` frame (:mod:`sealfl.mpc.wire`);
        the answer is a :class:`~infer_pb2.PredictReply` frame with the one array asked for.
        """

        def body() -> bytes:
            try:
                self._require((Mode.PLAINTEXT, Mode.TEE), "Predict")
                request, (x,) = decode_frame(frame, infer_pb2.PredictRequest, _inputs_of)
                if x.dtype != np.float64:
                    raise ProtocolError(f"inputs: expected dtype float64, got {x.dtype.name}")
                output = _output_of(request.output or Output.PROBABILITY.value)
                x = self._model.check_input(x)  # before the budget: a bad batch costs nothing
                if x.shape[0] < 1:
                    raise ProtocolError("inputs: a query needs at least one row, got 0")
                self._admit(output, int(x.shape[0]), caller_of(context))
                logits = x @ self._model.weights  # what model.logits computes, checked once
                reply = infer_pb2.PredictReply()
                if output is Output.LABEL:
                    arrays = [describe_array(reply.labels, (logits >= 0).astype(np.uint8))]
                elif output is Output.LOGIT:
                    arrays = [describe_array(reply.logits, logits)]
                else:
                    arrays = [describe_array(reply.probabilities, sigmoid(logits))]
            except Exception:
                self._count(False)
                raise
            self._count(True)
            return encode_frame(reply, arrays)

        return refuse_bad_input(context, body, what="Predict")

    # -- MPC -------------------------------------------------------------------------------
    def OpenSession(  # noqa: N802
        self, request: infer_pb2.OpenSessionRequest, context: grpc.ServicerContext
    ) -> infer_pb2.SessionInfo:
        """Open an MPC session: mask the model once with the dealer's session mask."""

        def body() -> infer_pb2.SessionInfo:
            self._require((Mode.MPC,), "OpenSession")
            assert self._dealer is not None
            owner = caller_of(context)
            grant = self._dealer.open_session(self._model.n_features)
            mask = array_from_proto(grant.mask, field="dealer session mask")
            check_array(mask, self._w.shape, np.uint64, what="dealer session mask:")
            with self._lock:
                self._sessions.put(grant.session_id, owner, _Session(bytes(grant.token)))
            return infer_pb2.SessionInfo(
                session_id=grant.session_id,
                masked_model=array_to_proto(self._w - mask),
                frac_bits=FRAC_BITS,
                dealer_address=self._dealer.address,
                dealer_fingerprint=self._dealer.fingerprint,
            )

        return refuse_bad_input(context, body, what="OpenSession")

    def _party(self, plan: QueryPlan, session_id: str, query_id: str, owner: str) -> _Prefetched:
        """Take the prefetched party of a query, or fetch its material and make it now.

        Making the party expands the dealer's material and precomputes what does not depend
        on the client's messages, so a prefetched query starts with none of that left to do.
        A new party is charged to the client's row budget.
        """
        with self._lock:
            ready = self._prefetched.pop(query_id, owner=owner)
            session = self._sessions.get(session_id, owner=owner, touch=True)
        if ready is not None:
            if ready.party.plan != plan:
                raise ProtocolError(
                    f"query {query_id}: header {plan} differs from the prefetched "
                    f"{ready.party.plan}"
                )
            return ready
        if session is None:
            raise UnknownSessionError(
                f"unknown or expired MPC session {session_id!r}; open a new session"
            )
        assert self._dealer is not None
        self._admit(plan.output, plan.rows, owner)
        try:
            deal_msg = self._dealer.fetch(session_id, session.token, query_id)
            dealt_plan = plan_from_header(deal_msg.header)
            if dealt_plan != plan:
                raise ProtocolError(
                    f"query {query_id}: client header {plan} differs from the dealer's {dealt_plan}"
                )
            party = ServerParty(plan, expand_server(plan, deal_from_proto(deal_msg)), self._w)
        except BaseException as exc:
            self._refund(plan.rows, owner)
            if isinstance(exc, ChannelError) and status_of(exc) is grpc.StatusCode.NOT_FOUND:
                raise UnknownSessionError(
                    f"query {query_id}: the dealer has no material for it, or no longer knows "
                    f"the session (it restarted, or the material expired): {exc}"
                ) from exc
            if isinstance(exc, ChannelError):
                raise ChannelError(
                    f"cannot get this query's material from the dealer: {exc}"
                ) from exc
            raise
        return _Prefetched(party, {})

    def prefetch(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        """Make a query's party ahead of it, and keep the client's early openings (offline).

        ``frame`` is a ``PrefetchRequest`` frame: the query's header and the openings the
        client could make without its rows (its first comparison round), which the first
        ``Step`` of the query then combines with the masked rows.
        """

        def body() -> bytes:
            self._require((Mode.MPC,), "Prefetch")
            owner = caller_of(context)
            request, arrays = decode_frame(frame, infer_pb2.PrefetchRequest, _prefetch_of)
            early = message_from_frame(request.message, arrays)
            if 0 in early:
                raise ProtocolError("level 0 (the masked rows) cannot be sent ahead of the query")
            header = request.header
            plan = self._checked_plan(header)
            made = self._party(plan, header.session_id, header.query_id, owner)
            with self._lock:
                dropped = self._prefetched.put(
                    header.query_id, owner, _Prefetched(made.party, early), cost=plan.rows
                )
            self._forget(len(dropped))
            return encode_frame(infer_pb2.PrefetchReply(), [])

        return refuse_bad_input(context, body, what="Prefetch")

    def step(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        """Take one client message of an MPC query and answer it (online phase).

        ``frame`` is a :class:`~infer_pb2.StepRequest` frame; the answer a ``StepReply`` one.
        """
        return refuse_bad_input(
            context, lambda: self._step(frame, caller_of(context)), what="MPC query"
        )

    def _checked_plan(self, header: mpc_pb2.QueryHeader) -> QueryPlan:
        plan = plan_from_header(header)
        if plan.features != self._model.n_features:
            raise ProtocolError(
                f"query has {plan.features} features, the model expects {self._model.n_features}"
            )
        return plan

    def _start_query(self, header: mpc_pb2.QueryHeader, owner: str) -> _Query:
        plan = self._checked_plan(header)
        made = self._party(plan, header.session_id, header.query_id, owner)
        query = _Query(Endpoint(made.party), time.monotonic(), made.early)
        with self._lock:
            if header.query_id in self._running:
                raise ProtocolError(f"query {header.query_id!r} is already running")
            dropped = self._running.put(header.query_id, owner, query, cost=plan.rows)
        self._forget(len(dropped))
        return query

    def _forget(self, dropped: int) -> None:
        """Count queries pushed out by the bounds as refused."""
        if dropped:
            with self._lock:
                self.refused += dropped

    def _step(self, frame: bytes, owner: str) -> bytes:
        self._require((Mode.MPC,), "Step")
        request, arrays = decode_frame(frame, infer_pb2.StepRequest, _message_of)
        query_id = request.header.query_id if request.HasField("header") else request.query_id
        query: _Query | None = None
        try:
            if request.HasField("header"):
                query = self._start_query(request.header, owner)
            else:
                with self._lock:
                    self._purge_running()
                    query = self._running.get(query_id, owner=owner)
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
                self._running.pop(query_id)
        self._count(ok)

    def _purge_running(self) -> None:
        limit = time.monotonic() - QUERY_TTL_S
        self.refused += len(self._running.drop_where(lambda q: q.started < limit))


def _output_of(text: str) -> Output:
    try:
        return Output(text)
    except ValueError:
        raise ProtocolError(
            f"output {text!r} unknown, expected one of {[o.value for o in Output]}"
        ) from None


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

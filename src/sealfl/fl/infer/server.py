"""The model server of the infer workload, in one of three modes.

- ``plaintext``: answers :meth:`InferenceServicer.Predict` on the client's rows, over TLS with
  a pinned self-signed certificate. The baseline.
- ``tee``: the same computation, but the process runs in a (simulated) TEE: its certificate is
  an RA-TLS certificate whose evidence the client checks before sending anything, and the
  model is read from a file sealed to the enclave's identity.
- ``mpc``: never sees the client's rows. It opens a session at the dealer, publishes its
  masked model, fetches its dealer material per query, and runs the server side of
  :mod:`sealfl.mpc` over a bidirectional stream.

Every handler refuses malformed input with INVALID_ARGUMENT and a reason, and keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from sealfl.errors import ChannelError, ProtocolError
from sealfl.fl.infer.common import (
    DEALER_TIMEOUT_S,
    Mode,
    refuse_bad_input,
    stream_refusing_bad_input,
)
from sealfl.fl.infer.protos import infer_pb2, infer_pb2_grpc
from sealfl.models import LogisticRegression
from sealfl.mpc import (
    FRAC_BITS,
    Endpoint,
    PartyMaterial,
    QueryPlan,
    ServerParty,
    encode,
    expand_server,
)
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.ring import U64
from sealfl.mpc.wire import (
    array_from_proto,
    array_to_proto,
    deal_from_proto,
    message_from_proto,
    message_to_proto,
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


class _Bounded(OrderedDict[str, object]):
    """An insertion-ordered dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: object) -> None:
        self[key] = value
        while len(self) > self.limit:
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
    max_sessions, max_prefetched
        Bounds on MPC sessions and on prefetched per-query material kept in memory.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        model: LogisticRegression,
        dealer: DealerLink | None = None,
        max_sessions: int = 256,
        max_prefetched: int = 16,
    ) -> None:
        if (mode is Mode.MPC) != (dealer is not None):
            raise ValueError("a dealer link is needed in MPC mode and only there")
        self._mode = mode
        self._model = model
        self._w: U64 = encode(model.weights, FRAC_BITS)
        self._dealer = dealer
        self._sessions = _Bounded(max_sessions)
        self._prefetched = _Bounded(max_prefetched)
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
    def Predict(  # noqa: N802
        self, request: infer_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> infer_pb2.PredictReply:
        """Compute probabilities on the client's rows (plaintext and TEE modes)."""

        def body() -> infer_pb2.PredictReply:
            try:
                self._require((Mode.PLAINTEXT, Mode.TEE), "Predict")
                x = array_from_proto(request.inputs, field="inputs")
                if x.dtype != np.float64:
                    raise ProtocolError(f"inputs: expected dtype float64, got {x.dtype.name}")
                p = self._model.predict_proba(x)
            except Exception:
                self._count(False)
                raise
            self._count(True)
            return infer_pb2.PredictReply(probabilities=array_to_proto(p))

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
            if mask.shape != self._w.shape or mask.dtype != np.uint64:
                raise ProtocolError(
                    f"dealer session mask: expected uint64[{self._w.shape[0]}], "
                    f"got {mask.dtype.name}{list(mask.shape)}"
                )
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

    def _material(self, plan: QueryPlan, session_id: str, query_id: str) -> PartyMaterial:
        """Take prefetched material for a query, or fetch it from the dealer now."""
        with self._lock:
            ready = self._prefetched.pop(query_id, None)
            session = self._sessions.get(session_id)
        if isinstance(ready, tuple):
            ready_plan, material = ready
            if ready_plan != plan:
                raise ProtocolError(
                    f"query {query_id}: header {plan} differs from the prefetched {ready_plan}"
                )
            return material
        if not isinstance(session, _Session):
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
        return expand_server(plan, deal_from_proto(deal_msg))

    def Prefetch(  # noqa: N802
        self, request: infer_pb2.PrefetchRequest, context: grpc.ServicerContext
    ) -> infer_pb2.PrefetchReply:
        """Fetch and expand this server's material for a query ahead of it (offline phase)."""

        def body() -> infer_pb2.PrefetchReply:
            self._require((Mode.MPC,), "Prefetch")
            header = request.header
            plan = plan_from_header(header)
            material = self._material(plan, header.session_id, header.query_id)
            with self._lock:
                self._prefetched.put(header.query_id, (plan, material))
            return infer_pb2.PrefetchReply()

        return refuse_bad_input(context, body, what="Prefetch")

    def Exchange(  # noqa: N802
        self,
        request_iterator: Iterator[infer_pb2.ExchangeMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[infer_pb2.ExchangeMessage]:
        """Run the server's side of one MPC query (online phase)."""
        return stream_refusing_bad_input(
            context, self._exchange(request_iterator), what="MPC query"
        )

    def _exchange(
        self, requests: Iterator[infer_pb2.ExchangeMessage]
    ) -> Iterator[infer_pb2.ExchangeMessage]:
        ok = False
        try:
            self._require((Mode.MPC,), "Exchange")
            first = next(requests, None)
            if first is None or not first.HasField("header"):
                raise ProtocolError("the first message of a query must carry its header")
            header = first.header
            plan = plan_from_header(header)
            if plan.features != self._model.n_features:
                raise ProtocolError(
                    f"query has {plan.features} features, the model expects "
                    f"{self._model.n_features}"
                )
            material = self._material(plan, header.session_id, header.query_id)
            endpoint = Endpoint(ServerParty(plan, material, self._w))
            msg: infer_pb2.ExchangeMessage | None = first
            while msg is not None:
                out = endpoint.receive(message_from_proto(msg.message))
                yield infer_pb2.ExchangeMessage(message=message_to_proto(out))
                if endpoint.done:
                    ok = True
                    return
                msg = next(requests, None)
            raise ProtocolError("the client ended the query before its last message")
        finally:
            self._count(ok)

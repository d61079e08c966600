"""The dealer process: hands out correlated randomness for MPC queries, and nothing else.

Per session (opened by the server) it draws the model mask ``B`` and a random token that only
the server receives. Per query, the client asks for its seed (:meth:`DealerServicer.Prepare`);
the dealer draws the query's material at that moment, returns the client's 32-byte seed and
keeps the server's part until the server fetches it with the session token
(:meth:`DealerServicer.Fetch`). Each part is handed out once. Storage is bounded in sessions,
queries, bytes and time, so an abandoned query cannot exhaust the dealer.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.infer.common import refuse_bad_input
from sealfl.fl.infer.protos import infer_pb2, infer_pb2_grpc
from sealfl.mpc import ServerDeal, deal_query, session_mask
from sealfl.mpc.plan import MAX_FEATURES
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.ring import U64
from sealfl.mpc.wire import array_to_proto, deal_to_proto, plan_from_header

_log = logging.getLogger(__name__)


@dataclass
class _Session:
    token: bytes
    mask: U64
    created: float


@dataclass
class _Pending:
    session_id: str
    header: mpc_pb2.QueryHeader
    deal: ServerDeal
    nbytes: int
    created: float


class DealerStore:
    """Sessions and undelivered server material, bounded in count, bytes and age.

    Parameters
    ----------
    max_sessions, max_pending
        Oldest entries are dropped beyond these counts.
    max_pending_bytes
        Oldest undelivered material is dropped beyond this total.
    ttl_s
        Undelivered material older than this is dropped.
    clock
        Source of time, injectable for tests.
    """

    def __init__(
        self,
        *,
        max_sessions: int = 1024,
        max_pending: int = 256,
        max_pending_bytes: int = 2 << 30,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._max_sessions = max_sessions
        self._max_pending = max_pending
        self._max_bytes = max_pending_bytes
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._bytes = 0

    def open_session(self, features: int) -> tuple[str, _Session]:
        """Draw a session's mask and token."""
        if not 1 <= features <= MAX_FEATURES:
            raise ConfigError(
                f"session features must be between 1 and {MAX_FEATURES}, got {features}"
            )
        session_id = secrets.token_hex(16)
        session = _Session(secrets.token_bytes(32), session_mask(features), self._clock())
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        return session_id, session

    def prepare(self, header: mpc_pb2.QueryHeader) -> tuple[str, bytes]:
        """Draw one query's material; return the query id and the client's seed."""
        plan = plan_from_header(header)
        with self._lock:
            session = self._sessions.get(header.session_id)
        if session is None:
            raise ProtocolError(f"dealer: unknown session {header.session_id!r}")
        if plan.features != session.mask.shape[0]:
            raise ProtocolError(
                f"dealer: query has {plan.features} features, session has {session.mask.shape[0]}"
            )
        seed, deal = deal_query(plan, session.mask)
        query_id = secrets.token_hex(16)
        fixed = mpc_pb2.QueryHeader()
        fixed.CopyFrom(header)
        fixed.query_id = query_id
        nbytes = deal.logit.nbytes + sum(c.nbytes for c in deal.products)
        nbytes += 0 if deal.beta_add is None else 2 * deal.beta_add.nbytes
        with self._lock:
            self._purge()
            self._pending[query_id] = _Pending(
                header.session_id, fixed, deal, nbytes, self._clock()
            )
            self._bytes += nbytes
            while self._pending and (
                len(self._pending) > self._max_pending or self._bytes > self._max_bytes
            ):
                self._drop_oldest()
        return query_id, seed

    def fetch(self, session_id: str, token: bytes, query_id: str) -> mpc_pb2.ServerDeal:
        """Hand the server its material for one query, once."""
        with self._lock:
            self._purge()
            session = self._sessions.get(session_id)
            if session is None or not hmac.compare_digest(session.token, token):
                raise ProtocolError("dealer: unknown session or wrong session token")
            pending = self._pending.get(query_id)
            if pending is None or pending.session_id != session_id:
                raise ProtocolError(
                    f"dealer: no material for query {query_id!r} (never prepared, already "
                    "fetched, or expired)"
                )
            del self._pending[query_id]
            self._bytes -= pending.nbytes
        return deal_to_proto(pending.deal, pending.header)

    def _purge(self) -> None:
        limit = self._clock() - self._ttl
        while self._pending and next(iter(self._pending.values())).created < limit:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, dropped = self._pending.popitem(last=False)
        self._bytes -= dropped.nbytes


class DealerServicer(infer_pb2_grpc.DealerServicer):
    """gRPC face of :class:`DealerStore`."""

    def __init__(self, store: DealerStore) -> None:
        self._store = store

    def OpenSession(  # noqa: N802 (gRPC method name)
        self, request: infer_pb2.DealerSessionRequest, context: grpc.ServicerContext
    ) -> infer_pb2.DealerSession:
        """Open a session for a server: its mask and its token."""

        def body() -> infer_pb2.DealerSession:
            session_id, session = self._store.open_session(int(request.features))
            _log.info("session %s opened (%d features)", session_id, request.features)
            return infer_pb2.DealerSession(
                session_id=session_id, token=session.token, mask=array_to_proto(session.mask)
            )

        return refuse_bad_input(context, body, what="dealer OpenSession")

    def Prepare(  # noqa: N802
        self, request: infer_pb2.PrepareRequest, context: grpc.ServicerContext
    ) -> infer_pb2.ClientSeed:
        """Prepare a query for a client: its seed; the server's part waits for Fetch."""

        def body() -> infer_pb2.ClientSeed:
            query_id, seed = self._store.prepare(request.header)
            return infer_pb2.ClientSeed(query_id=query_id, seed=seed)

        return refuse_bad_input(context, body, what="dealer Prepare")

    def Fetch(  # noqa: N802
        self, request: infer_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> mpc_pb2.ServerDeal:
        """Hand the server its part of a prepared query."""
        return refuse_bad_input(
            context,
            lambda: self._store.fetch(request.session_id, bytes(request.token), request.query_id),
            what="dealer Fetch",
        )

"""The dealer process: hands out correlated randomness for MPC queries, and nothing else.

Per session (opened by the server) it gives a model mask ``B`` and a token that only the
server receives. Per query, the client asks for its seed (:meth:`DealerServicer.Prepare`);
the dealer draws the query's material at that moment, returns the client's 32-byte seed and
keeps the server's part until the server fetches it with the session token
(:meth:`DealerServicer.Fetch`). Each part is handed out once.

Sessions cost the dealer nothing to keep: a session id carries its width and expiry and is
authenticated with the dealer's secret, and the session's token and mask are derived from that
secret and the id. So no client can push another's session out, and a dealer started again
with the same ``--key-file`` (whose key the secret is derived from) still knows every session
it opened before.

Material waiting for the server is the dealer's real cost (up to 185 MiB for the largest
plan). It is owned by the client that prepared it, identified by its certificate, and bounded
per client and in total (a share of the host's memory), with a lifetime
(:mod:`sealfl.fl.infer.quota`); so is the memory of drawing it, which can reach three times the
stored size: large draws wait for each other instead of running all at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.infer.common import (
    DEALER_TIMEOUT_S,
    UnknownSessionError,
    caller_of,
    refuse_bad_input,
)
from sealfl.fl.infer.protos import infer_pb2, infer_pb2_grpc
from sealfl.fl.infer.quota import FairStore, QuotaExceededError, memory_share
from sealfl.mpc import ServerDeal, deal_query, session_mask
from sealfl.mpc.plan import MAX_FEATURES, QueryPlan
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.ring import U64
from sealfl.mpc.wire import array_to_proto, deal_to_proto, plan_from_header

_log = logging.getLogger(__name__)

SECRET_LABEL = "sealfl/infer/dealer/session-secret"
"""HKDF label of the dealer's session secret, derived from its key file's private key."""

_SESSION_BODY = struct.Struct(">IQ16s")  # features, expiry (Unix seconds), nonce
_TAG_BYTES = 16


@dataclass(frozen=True)
class DealerLimits:
    """Bounds of the dealer's memory, per client and in total.

    Attributes
    ----------
    pending_per_client, pending_bytes_per_client
        Undelivered queries and their bytes one client may have waiting; beyond them its own
        oldest are dropped. The byte bound must hold one query of the largest plan (185 MiB).
    pending, pending_bytes
        The same for all clients together; beyond them the client holding the most loses its
        oldest. The byte total defaults to a sixteenth of the host's memory (0.25-4 GiB).
    drawing_bytes
        Memory that draws in progress may take together (each about three times its stored
        size); a draw that does not fit waits for others to finish, one alone always runs.
    ttl_s
        Undelivered material older than this is dropped.
    session_ttl_s
        Lifetime of a session; the client then opens a new one.
    """

    pending_per_client: int = 16
    pending_bytes_per_client: int = 256 << 20
    pending: int = 4096
    pending_bytes: int = field(
        default_factory=lambda: memory_share(1 / 16, floor=256 << 20, cap=4 << 30)
    )
    drawing_bytes: int = field(
        default_factory=lambda: memory_share(1 / 16, floor=256 << 20, cap=4 << 30)
    )
    ttl_s: float = 300.0
    session_ttl_s: float = 24 * 3600.0


@dataclass
class _Session:
    token: bytes
    mask: U64
    expires: float


@dataclass
class _Pending:
    session_id: str
    header: mpc_pb2.QueryHeader
    deal: ServerDeal
    nbytes: int
    created: float


class _DrawingBudget:
    """Bytes of draws in flight; a draw waits (bounded) until its bytes fit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._ready = threading.Condition()

    def acquire(self, nbytes: int, timeout_s: float) -> None:
        with self._ready:
            fits = lambda: self._used == 0 or self._used + nbytes <= self._limit  # noqa: E731
            if not self._ready.wait_for(fits, timeout=timeout_s):
                raise QuotaExceededError(
                    f"dealer busy: draws of {self._used} bytes in progress, this one needs "
                    f"{nbytes} (at most {self._limit} together); try again shortly"
                )
            self._used += nbytes

    def release(self, nbytes: int) -> None:
        with self._ready:
            self._used -= nbytes
            self._ready.notify_all()


class DealerStore:
    """Sessions (derived, not stored) and undelivered server material (bounded per client).

    Parameters
    ----------
    secret
        32 bytes behind session ids, tokens and masks; random if not given (sessions then end
        with the process). A dealer with a key file passes a secret derived from its key.
    limits
        Memory bounds (:class:`DealerLimits`).
    clock
        Source of Unix time, injectable for tests.
    """

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        limits: DealerLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and len(secret) != 32:
            raise ConfigError(f"dealer secret: expected 32 bytes, got {len(secret)}")
        self._secret = secret or secrets.token_bytes(32)
        self.limits = limits or DealerLimits()
        lim = self.limits
        self._pending: FairStore[_Pending] = FairStore(
            per_owner=lim.pending_per_client,
            total=lim.pending,
            per_owner_cost=lim.pending_bytes_per_client,
            total_cost=lim.pending_bytes,
            what="query's dealer material",
        )
        self._drawing = _DrawingBudget(lim.drawing_bytes)
        self._clock = clock
        self._lock = threading.Lock()

    # -- sessions ----------------------------------------------------------------------------

    def _mac(self, label: bytes, data: bytes) -> bytes:
        return hmac.new(self._secret, label + b"\x00" + data, hashlib.sha256).digest()

    def open_session(self, features: int) -> tuple[str, _Session]:
        """Make a session: its id, token and mask (nothing is stored)."""
        if not 1 <= features <= MAX_FEATURES:
            raise ConfigError(
                f"session features must be between 1 and {MAX_FEATURES}, got {features}"
            )
        expires = int(self._clock() + self.limits.session_ttl_s)
        body = _SESSION_BODY.pack(features, expires, secrets.token_bytes(16))
        session_id = (body + self._mac(b"session", body)[:_TAG_BYTES]).hex()
        session = self.session(session_id)
        assert session is not None  # just made
        return session_id, session

    def session(self, session_id: str) -> _Session | None:
        """Return the session ``session_id`` names, or ``None`` if it is not ours or expired."""
        try:
            raw = bytes.fromhex(session_id)
        except ValueError:
            return None
        if len(raw) != _SESSION_BODY.size + _TAG_BYTES:
            return None
        body, tag = raw[: _SESSION_BODY.size], raw[_SESSION_BODY.size :]
        if not hmac.compare_digest(tag, self._mac(b"session", body)[:_TAG_BYTES]):
            return None
        features, expires, _ = _SESSION_BODY.unpack(body)
        if self._clock() >= expires or not 1 <= features <= MAX_FEATURES:
            return None
        mask = session_mask(features, self._mac(b"mask", raw))
        return _Session(self._mac(b"token", raw), mask, float(expires))

    # -- queries -----------------------------------------------------------------------------

    def prepare(self, header: mpc_pb2.QueryHeader, *, owner: str = "") -> tuple[str, bytes]:
        """Draw one query's material for ``owner``; return the query id and the client's seed.

        Raises
        ------
        UnknownSessionError
            If the header's session is not one of this dealer's, or has expired.
        QuotaExceededError
            If the dealer is too busy drawing to start this draw within its deadline.
        """
        plan = plan_from_header(header)
        session = self.session(header.session_id)
        if session is None:
            raise UnknownSessionError(
                f"dealer: unknown or expired session {header.session_id[:16]!r}...; open a new "
                "session at the server"
            )
        if plan.features != session.mask.shape[0]:
            raise ProtocolError(
                f"dealer: query has {plan.features} features, session has {session.mask.shape[0]}"
            )
        nbytes = plan.server_material_bytes
        drawing = _drawing_bytes(plan)
        self._drawing.acquire(drawing, DEALER_TIMEOUT_S / 2)
        try:
            seed, deal = deal_query(plan, session.mask)
        finally:
            self._drawing.release(drawing)
        query_id = secrets.token_hex(16)
        fixed = mpc_pb2.QueryHeader()
        fixed.CopyFrom(header)
        fixed.query_id = query_id
        pending = _Pending(header.session_id, fixed, deal, nbytes, self._clock())
        with self._lock:
            self._purge()
            dropped = self._pending.put(query_id, owner, pending, cost=nbytes)
        for old in dropped:
            _log.info("dropped undelivered material of %d bytes (bounds)", old.nbytes)
        return query_id, seed

    def fetch(self, session_id: str, token: bytes, query_id: str) -> mpc_pb2.ServerDeal:
        """Hand the server its material for one query, once.

        Raises
        ------
        UnknownSessionError
            If the session is unknown or the token wrong, or no material waits for the query.
        """
        session = self.session(session_id)
        if session is None or not hmac.compare_digest(session.token, token):
            raise UnknownSessionError("dealer: unknown session or wrong session token")
        with self._lock:
            self._purge()
            pending = self._pending.get(query_id)
            if pending is None or pending.session_id != session_id:
                raise UnknownSessionError(
                    f"dealer: no material for query {query_id!r} (never prepared, already "
                    "fetched, expired or dropped)"
                )
            self._pending.pop(query_id)
        return deal_to_proto(pending.deal, pending.header)

    def held(self, owner: str) -> tuple[int, int]:
        """Return how many undelivered queries ``owner`` has, and their bytes."""
        with self._lock:
            return self._pending.held_by(owner)

    @property
    def pending_bytes(self) -> int:
        """Bytes of all undelivered material."""
        with self._lock:
            return self._pending.cost

    def _purge(self) -> None:
        limit = self._clock() - self.limits.ttl_s
        self._pending.drop_where(lambda p: p.created < limit)


def _drawing_bytes(plan: QueryPlan) -> int:
    """Memory one draw takes at its peak: the stored part three times, and the input mask."""
    return 3 * plan.server_material_bytes + 16 * plan.rows * plan.features


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
            _log.info("session %s... opened (%d features)", session_id[:16], request.features)
            return infer_pb2.DealerSession(
                session_id=session_id, token=session.token, mask=array_to_proto(session.mask)
            )

        return refuse_bad_input(context, body, what="dealer OpenSession")

    def Prepare(  # noqa: N802
        self, request: infer_pb2.PrepareRequest, context: grpc.ServicerContext
    ) -> infer_pb2.ClientSeed:
        """Prepare a query for a client: its seed; the server's part waits for Fetch."""

        def body() -> infer_pb2.ClientSeed:
            query_id, seed = self._store.prepare(request.header, owner=caller_of(context))
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

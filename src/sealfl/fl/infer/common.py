"""Settings shared by the infer workload's three processes, and the error-to-status mapping."""

from __future__ import annotations

import enum
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import grpc

from sealfl.errors import ChannelError, ConfigError, ProtocolError, SealflError
from sealfl.fl.infer.quota import BudgetExhaustedError, QuotaExceededError
from sealfl.net import (
    CertificatePinError,
    Credentials,
    SecureChannel,
    certificate_fingerprint,
    fingerprint_verifier,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.net.server import ENROLMENT_STATE_KEY
from sealfl.tee import measure_code

MAX_MESSAGE_BYTES = 256 << 20
"""Largest gRPC message: a 10000 x 528 batch of 8-byte values is 42 MB; this leaves room."""

CALL_TIMEOUT_S = 60.0
"""Deadline of one call; a query at batch 10000 takes well under a second."""

DEALER_TIMEOUT_S = 10.0
"""Deadline of a call to the dealer: a dealer that disappears fails the query after this."""

FRAME_SERVICE = "sealfl.infer.InferenceFrames"
"""gRPC service of the two calls that carry megabytes, ``Predict`` and ``Step``.

Their messages travel as frames (:func:`sealfl.mpc.wire.encode_frame`), raw bytes at the gRPC
layer: a ``PredictRequest`` or ``StepRequest`` whose arrays hold only dtype and shape, then
the arrays' bytes; the answers likewise. The other calls are plain protobuf
(``sealfl.infer.Inference`` in ``infer.proto``)."""

MODEL_CLAIM = "model-sha256"
"""RA-TLS claim of the TEE-mode server: SHA-256 of the model it unsealed (``to_bytes()``)."""

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Mode(enum.Enum):
    """How the server computes on the client's input."""

    PLAINTEXT = "plaintext"
    TEE = "tee"
    MPC = "mpc"


def tee_measurement() -> bytes:
    """Return the simulated measurement of the TEE-mode server: sealfl's code and settings.

    The client computes the same value from the same checkout to build its policy.
    """
    return measure_code({"workload": "infer", "mode": "tee"})


class UnknownSessionError(ProtocolError):
    """An MPC session or query the server or dealer does not hold (never, or no longer).

    Answered with ``NOT_FOUND``: the client opens a new session and tries the query again
    once (a session is forgotten when its server or dealer restarts, or when bounds push it
    out, see :mod:`sealfl.fl.infer.quota`).
    """


class OutputNotServedError(ProtocolError):
    """The client asked for an output the server does not serve (``PERMISSION_DENIED``)."""


def status_for(exc: SealflError) -> grpc.StatusCode:
    """Return the status a handler answers ``exc`` with.

    ``NOT_FOUND`` means "open a session again", ``RESOURCE_EXHAUSTED`` a client's own bound
    or budget, ``PERMISSION_DENIED`` an output the server does not serve, ``INVALID_ARGUMENT``
    any other bad request, and ``FAILED_PRECONDITION`` a failure on the server's side (its
    dealer unreachable, say).
    """
    if isinstance(exc, UnknownSessionError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, QuotaExceededError | BudgetExhaustedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, OutputNotServedError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, ProtocolError | ConfigError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.FAILED_PRECONDITION


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    """Return the gRPC status behind a :class:`ChannelError` (its cause), if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, grpc.Call):
            code = seen.code()
            return code if isinstance(code, grpc.StatusCode) else None
        seen = seen.__cause__
    return None


def _not_enrolled(exc: BaseException) -> bool:
    """Whether a ``PERMISSION_DENIED`` came from the server's per-call enrolment check."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, grpc.Call):
        seen = seen.__cause__
    if seen is None:
        return False
    trailing = seen.trailing_metadata() or ()
    return any(k == ENROLMENT_STATE_KEY and v == "not-enrolled" for k, v in trailing)


def unreachable(exc: ChannelError) -> bool:
    """Whether a failed call never reached a handler: no connection, or not (still) enrolled.

    After a peer restarts, its allow-list is empty and our certificate no longer gets through
    the handshake (``UNAVAILABLE``), or the per-call check refuses it as not enrolled:
    connecting again, which enrols again, is the cure. A changed server key
    (:class:`CertificatePinError`) is not, nor a handler's own refusal.
    """
    if isinstance(exc, CertificatePinError):
        return False
    code = status_of(exc)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return _not_enrolled(exc)
    return code in (None, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


@functools.lru_cache(maxsize=4096)
def _fingerprint(pem: bytes) -> str:
    return certificate_fingerprint(pem)


def caller_of(context: grpc.ServicerContext) -> str:
    """Return the SHA-256 fingerprint of the certificate the caller authenticated with.

    Every call on the service listener is mutual TLS, so there is one; it owns what the call
    creates (sessions, queries, dealer material) and is charged for its rows.
    """
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate on this call")
    return _fingerprint(pems[0])


def refuse_bad_input(context: grpc.ServicerContext, call: Callable[[], T], *, what: str) -> T:
    """Run a handler body, turning bad input into a status with the reason (:func:`status_for`).

    The server logs the refusal and keeps serving: a malformed request is the client's
    problem, never the server's.
    """
    try:
        return call()
    except (ProtocolError, ConfigError) as exc:
        _log.warning("%s refused: %s", what, exc)
        context.abort(status_for(exc), f"{what}: {exc}")
    except SealflError as exc:
        _log.warning("%s failed: %s", what, exc)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: {exc}")
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def connect_dealer(
    address: str,
    fingerprint: str,
    *,
    party: str,
    timeout_s: float = 10.0,
    credentials: Credentials | None = None,
) -> SecureChannel[Any]:
    """Open a channel to the dealer at ``address``, pinning its certificate's ``fingerprint``.

    ``party`` names this end's fresh self-signed certificate, unless ``credentials`` are
    given (a persistent identity); every call on the channel has the dealer's deadline
    (:data:`DEALER_TIMEOUT_S`).
    """
    return open_secure_channel(
        address,
        credentials=credentials or make_self_signed_credentials(party),
        server_verifier=fingerprint_verifier([fingerprint]),
        # A fresh certificate is renewed as it ages (a persistent identity is not ours to).
        renew=None if credentials else functools.partial(make_self_signed_credentials, party),
        timeout_s=timeout_s,
        default_timeout_s=DEALER_TIMEOUT_S,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )


R = TypeVar("R")
StubT = TypeVar("StubT")


class Reconnecting(Generic[StubT]):
    """A secure channel to one peer that is opened again when a call cannot reach the peer.

    A peer that restarts has an empty allow-list, so our certificate no longer gets through
    (and a dead peer answers nothing): such a failure (:func:`unreachable`) closes the channel,
    and the next call opens a new one with ``connect``, which verifies and pins the peer and
    enrols again. A call marked ``repeat`` is then made once more; the others (a step of a
    running MPC query, which the peer must not see twice) fail, and the caller starts over.
    Thread-safe: handler threads of a server share one.

    Parameters
    ----------
    connect
        Opens the channel (the whole sequence: fetch, verify, pin, enrol). Called now, so a
        peer that is not there fails the constructor.
    stub_class
        The generated stub of the peer's protobuf service.
    """

    def __init__(
        self, connect: Callable[[], SecureChannel[Any]], stub_class: Callable[[grpc.Channel], StubT]
    ) -> None:
        self._connect = connect
        self._stub_class = stub_class
        self._lock = threading.Lock()
        self._channel: SecureChannel[Any] | None = connect()
        self._raw: dict[str, Any] = {}
        self.reconnects = 0
        """How many times the channel was opened again."""

    @property
    def channel(self) -> SecureChannel[Any]:
        """The open channel, opening a new one if the last was dropped.

        Raises
        ------
        ChannelError
            If the peer cannot be reached, verified or enrolled with.
        """
        with self._lock:
            if self._channel is None:
                self._channel = self._connect()
                self._raw = {}
                self.reconnects += 1
            return self._channel

    def drop(self, broken: SecureChannel[Any]) -> None:
        """Close ``broken`` if it is still the current channel (the next call reconnects)."""
        with self._lock:
            if self._channel is broken:
                broken.close()
                self._channel = None

    def call(
        self,
        method: str,
        request: Any,
        *,
        raw: bool = False,
        repeat: bool = True,
        timeout_s: float | None = None,
        what: str | None = None,
    ) -> Any:
        """Call ``method`` of the stub (or, with ``raw``, the raw-bytes method at that path).

        Raises
        ------
        ChannelError
            As :meth:`SecureChannel.call`, after one reconnection if the peer was unreachable
            and the call may be repeated.
        """
        channel = self.channel
        try:
            return channel.call(
                self._method(channel, method, raw), request, timeout_s=timeout_s, what=what
            )
        except ChannelError as exc:
            if not unreachable(exc):
                raise
            self.drop(channel)
            if not repeat:
                raise
            _log.info("%s: %s; connecting again", what or method, exc)
            failure = exc
        try:
            channel = self.channel
        except ChannelError as again:
            raise ChannelError(
                f"{what or method}: {failure}; connecting again failed: {again}"
            ) from again
        return channel.call(
            self._method(channel, method, raw), request, timeout_s=timeout_s, what=what
        )

    def _method(self, channel: SecureChannel[Any], method: str, raw: bool) -> Any:
        if not raw:
            return getattr(channel.stub(self._stub_class), method)
        with self._lock:
            found = self._raw.get(method)
            if found is None or self._channel is not channel:
                found = channel.channel.unary_unary(method, None, None)
                if self._channel is channel:
                    self._raw[method] = found
            return found

    def close(self) -> None:
        """Close the channel (idempotent); a later call would open a new one."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

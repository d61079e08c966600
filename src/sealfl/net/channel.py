"""Client side of the mutual (RA-)TLS scheme: fetch, verify, pin, enrol, connect, and stay so.

:func:`open_secure_channel` does the whole sequence against a server's front door;
:func:`connect_pinned` is the last step alone, for plain TLS with certificates exchanged out
of band (the server lists the client in ``allowed_clients``). Either returns a
:class:`SecureChannel`, whose call helpers put a deadline on every call, repeat calls the
server refused as busy, retry idempotent calls on ``UNAVAILABLE`` with backoff, and explain
failures: a server whose key changed after it was verified raises
:class:`~sealfl.net.calls.CertificatePinError`.

A channel from :func:`open_secure_channel` also outlives its certificates (long runs; every
RA-TLS certificate lives an hour). Before each call it checks, on its injectable clock:

* our certificate nears its notAfter: it makes a new one with ``renew`` and enrols it as a
  renewal (signed by the old key, so the server keeps our lineage and slot), then moves new
  calls to a connection with it; calls in flight finish on the old one;
* our enrolment nears its end: it enrols the same certificate again;
* the pinned server certificate nears its notAfter: if the server renewed, it follows the
  server's signed handover, verifies the new certificate with the SAME verifier, and re-pins.

And when a call fails because the server no longer has us enrolled (lapsed, evicted) or the
server renewed, it repairs that the same way and repeats the call if it cannot have run. A
server certificate that changed without a valid handover, or that the verifier refuses, is
never followed.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

import grpc
from cryptography.hazmat.primitives import serialization

from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net.addresses import DEFAULT_MAX_MESSAGE_BYTES
from sealfl.net.allowlist import ENROLMENT_STATE_KEY
from sealfl.net.calls import (
    CertificatePinError,
    Recovery,
    RetryPolicy,
    describe_rpc_error,
    iterate_stream,
    run_with_retry,
    trailing_value,
)
from sealfl.net.certificates import (
    Credentials,
    certificate_fingerprint,
    check_key_matches_certificate,
    fetch_server_certificate,
    load_certificate,
    validity_problem,
)
from sealfl.net.enrolling import (
    EnrolmentReceipt,
    broken_pin,
    channel_options,
    enrol,
    follow_handover,
    leave,
)
from sealfl.net.rebinding import RebindableChannel

__all__ = [
    "ChannelState",
    "EnrolmentReceipt",
    "SecureChannel",
    "connect_pinned",
    "open_secure_channel",
]

IdentityT = TypeVar("IdentityT")
Resp = TypeVar("Resp")
StubT = TypeVar("StubT")

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_CONNECT_RETRY = RetryPolicy(attempts=5, initial_backoff_s=0.05, max_backoff_s=1.0, jitter=0.5)
_RECHECK_S = 30.0  # a renewal that failed, or a server that has not renewed yet: look again then
_NEVER = float("inf")


class ChannelState(enum.Enum):
    """Lifecycle of a :class:`SecureChannel`: open until closed, never reopened."""

    OPEN = "open"
    CLOSED = "closed"


def _validity(cert_pem: bytes) -> tuple[float, float]:
    cert = load_certificate(cert_pem)
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def _due(cert_pem: bytes, *, fraction: float, at_most_s: float) -> float:
    """When to act on a certificate: ``fraction`` of its life (at most ``at_most_s``) early."""
    not_before, not_after = _validity(cert_pem)
    return not_after - min(at_most_s, fraction * (not_after - not_before))


class SecureChannel(Generic[IdentityT]):
    """A gRPC channel pinned to one verified server certificate, with our client certificate.

    Use :attr:`channel` (or :meth:`stub`) to build stubs, and :meth:`call`,
    :meth:`call_stream` and :meth:`stream` to make calls with deadlines, retries, renewal and
    clear errors. Stubs stay valid across renewals: :attr:`channel` is rebound underneath.
    """

    def __init__(
        self,
        *,
        channel: grpc.Channel,
        address: str,
        server_certificate_pem: bytes,
        server_identity: IdentityT,
        credentials: Credentials,
        default_timeout_s: float,
        front_door: str | None = None,
        enrolment: EnrolmentReceipt | None = None,
        server_verifier: Callable[[bytes], IdentityT] | None = None,
        renew: Callable[[], Credentials] | None = None,
        clock: Callable[[], float] = time.time,
        connect_timeout_s: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        retry: RetryPolicy = _CONNECT_RETRY,
    ) -> None:
        self._proxy = RebindableChannel(channel)
        self._retired: grpc.Channel | None = None
        self._state = ChannelState.OPEN
        self._address = address
        self.front_door = front_door
        """The server's enrolment listener, if we enrolled there (None: no renewal)."""
        self._server_pem = server_certificate_pem
        self._identity = server_identity
        self._credentials = credentials
        self._receipt = enrolment
        self._verifier = server_verifier
        self._renew = renew
        self._clock = clock
        self._connect_timeout_s = connect_timeout_s
        self._max_message_bytes = max_message_bytes
        self._retry = retry
        self.default_timeout_s = default_timeout_s
        self.renewals = 0
        """How many times the channel moved to a new connection (renewal, re-pin, re-enrol)."""
        self._stubs: dict[type, Any] = {}
        self._maintenance = threading.Lock()
        self._enrolment_extends = True
        self._quiet_until = 0.0  # after a failed renewal, no new attempt before this
        self._server_wait_until = 0.0
        self._schedule()

    # -- what the channel is now --------------------------------------------------------------

    @property
    def address(self) -> str:
        """The server's mutual-TLS listener."""
        return self._address

    @property
    def server_certificate_pem(self) -> bytes:
        """The server certificate that was verified and is pinned (the latest, after renewal)."""
        return self._server_pem

    @property
    def server_identity(self) -> IdentityT:
        """What the server verifier returned (e.g. ``VerifiedPeer`` with claims)."""
        return self._identity

    @property
    def server_fingerprint(self) -> str:
        """SHA-256 of the pinned server certificate."""
        return certificate_fingerprint(self._server_pem)

    @property
    def client_certificate_pem(self) -> bytes:
        """Our certificate in use now."""
        return self._credentials.cert_pem

    @property
    def client_fingerprint(self) -> str:
        """SHA-256 of our certificate in use now."""
        return certificate_fingerprint(self._credentials.cert_pem)

    @property
    def enrolment(self) -> EnrolmentReceipt | None:
        """What the server said when it last enrolled us."""
        return self._receipt

    @property
    def lineage(self) -> str:
        """Our lineage at the server (our first certificate's fingerprint, across renewals)."""
        if self._receipt is not None and self._receipt.lineage:
            return self._receipt.lineage
        return self.client_fingerprint

    @property
    def state(self) -> ChannelState:
        """Open or closed."""
        return self._state

    @property
    def channel(self) -> grpc.Channel:
        """The gRPC channel for building stubs; it follows renewals (see the class docstring).

        Raises
        ------
        ChannelError
            If the channel was closed.
        """
        if self._state is ChannelState.CLOSED:
            raise ChannelError(
                f"channel to {self.address} is closed; open a new one (channels are not reopened)"
            )
        return self._proxy

    def stub(self, stub_class: Callable[[grpc.Channel], StubT]) -> StubT:
        """Return a stub of ``stub_class`` on this channel, made once and then reused.

        Building a stub creates one multi-callable per method, which costs more than a small
        call itself; hot loops should not rebuild it.
        """
        key = cast(type, stub_class)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = stub_class(self.channel)
        return cast(StubT, stub)

    def close(self, *, leave_server: bool = True) -> None:
        """Close the channel (idempotent); first tell the server we are done, if we enrolled.

        Leaving frees our slot in the server's allow-list at once instead of when our
        enrolment lapses; it is best effort (half a second at most).
        """
        if self._state is ChannelState.OPEN:
            if leave_server and self.front_door is not None:
                leave(self._proxy)
            self._state = ChannelState.CLOSED
            self._proxy.close()
            if self._retired is not None:
                self._retired.close()

    def __enter__(self) -> SecureChannel[IdentityT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------------

    def call(
        self,
        method: Callable[..., Resp],
        request: Any,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        what: str | None = None,
    ) -> Resp:
        """Make a unary call with a deadline; retry only if ``retry`` is given (idempotent calls).

        Calls the server refused as busy, and calls that failed before reaching a handler
        because the channel had to renew, re-enrol or follow the server, are repeated whatever
        ``retry`` says (they never ran).

        Raises
        ------
        ChannelError
            Naming the call, the server and the status; a :class:`CertificatePinError` if the
            server now presents a different certificate without a valid handover.
        """
        timeout = self._timeout(timeout_s)
        self.maintain()
        return self._run(lambda: method(request, timeout=timeout), retry, method, what)

    def call_stream(
        self,
        method: Callable[..., Resp],
        requests: Callable[[], Iterator[Any]],
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        what: str | None = None,
    ) -> Resp:
        """Make a client-streaming call; ``requests()`` makes a fresh iterator per attempt."""
        timeout = self._timeout(timeout_s)
        self.maintain()
        return self._run(lambda: method(requests(), timeout=timeout), retry, method, what)

    def stream(
        self,
        method: Callable[..., Iterator[Resp]],
        request: Any,
        *,
        timeout_s: float | None = None,
        what: str | None = None,
    ) -> Iterator[Resp]:
        """Make a server-streaming call with a deadline over the whole stream (no retries)."""
        timeout = self._timeout(timeout_s)
        self.maintain()
        return iterate_stream(
            method(request, timeout=timeout), describe=self._describer(method, what)
        )

    def _run(
        self,
        attempt: Callable[[], Resp],
        retry: RetryPolicy | None,
        method: Callable[..., Any],
        what: str | None,
    ) -> Resp:
        seen = [self._proxy.current()[1]]

        def tracked() -> Resp:
            seen[0] = self._proxy.current()[1]  # the connection this attempt goes out on
            return attempt()

        return run_with_retry(
            tracked,
            retry=retry,
            describe=self._describer(method, what),
            recover=lambda exc: self._recover(exc, seen[0]),
        )

    def _describer(
        self, method: Callable[..., Any], what: str | None
    ) -> Callable[[grpc.RpcError], ChannelError]:
        # The call's name is worked out only when a call fails, not on every call.
        return lambda exc: self.diagnose(exc, what=what or _method_name(method))

    def _timeout(self, timeout_s: float | None) -> float:
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ConfigError(f"timeout_s: expected > 0 seconds, got {timeout}")
        _ = self.channel  # refuse calls on a closed channel with a clear error
        return timeout

    # -- staying connected ----------------------------------------------------------------------

    def _schedule(self) -> None:
        """Work out when :meth:`maintain` has something to do next."""
        if self.front_door is None:
            self._next_check = _NEVER
            return
        self._server_due = max(
            _due(self._server_pem, fraction=0.1, at_most_s=300.0), self._server_wait_until
        )
        cert_due = _due(self._credentials.cert_pem, fraction=0.2, at_most_s=600.0)
        self._cert_due = cert_due if self._renew is not None else _NEVER
        self._enrol_due = _NEVER
        receipt = self._receipt
        if receipt is not None and self._enrolment_extends:
            span = max(0.0, receipt.expires_at - receipt.enrolled_at)
            self._enrol_due = receipt.expires_at - min(600.0, 0.2 * span)
        due = min(self._server_due, self._cert_due, self._enrol_due)
        self._next_check = max(due, self._quiet_until)

    def maintain(self) -> None:
        """Renew what is due (see the module docstring); called before every call.

        A failure here is logged and tried again 30 s later: the current certificates and
        enrolment still work until they end, and the repair after a failed call covers the rest.
        """
        if self._clock() < self._next_check:
            return
        if not self._maintenance.acquire(blocking=False):
            return  # another thread is on it; this call goes out on the current connection
        try:
            now = self._clock()
            self._quiet_until = 0.0
            if now >= self._server_due and not self._follow_server():
                self._server_wait_until = now + _RECHECK_S  # the server has not renewed yet
            if now >= self._cert_due:
                self._enrol_again(renew=True, reconnect=True)
            elif now >= self._enrol_due:
                self._enrol_again(renew=False, reconnect=False)
        except Exception as exc:  # ``renew`` is the caller's code; the calls go on
            _log.warning(
                "renewal ahead of expiry failed (%s: %s); trying again in %.0f s",
                type(exc).__name__,
                exc,
                _RECHECK_S,
            )
            self._quiet_until = self._clock() + _RECHECK_S
        finally:
            self._schedule()
            self._maintenance.release()

    def _enrol_again(self, *, renew: bool, reconnect: bool) -> None:
        """Enrol again at the front door: a new certificate if ``renew`` (and we can make one)."""
        assert self.front_door is not None
        current = fresh = self._credentials
        due = self._clock() >= _due(current.cert_pem, fraction=0.2, at_most_s=600.0)
        expired = validity_problem(current.cert_pem, time.time()) is not None
        if (renew or due or expired) and self._renew is not None:
            fresh = self._renew()
            check_key_matches_certificate(fresh, party="client (renewed)")
        receipt = enrol(
            self.front_door,
            self._server_pem,
            fresh,
            timeout_s=self._connect_timeout_s,
            retry=self._retry,
            max_message_bytes=self._max_message_bytes,
            predecessor=None if fresh is current else current,
            clock=self._clock,
        )
        if self._receipt is not None and receipt.lineage != self._receipt.lineage:
            _log.warning(
                "server at %s no longer knew our certificate sha256:%s: enrolled as a new client "
                "(lineage sha256:%s)",
                self.front_door,
                self._receipt.lineage,
                receipt.lineage,
            )
        previous = self._receipt
        if fresh is current and previous is not None:
            # Enrolling the same certificate cannot outlast it: do not ask again every call.
            self._enrolment_extends = receipt.expires_at > previous.expires_at + 1.0
        else:
            self._enrolment_extends = True
        if reconnect or fresh is not current or receipt.service_address != self._address:
            self._reconnect(fresh, receipt, self._server_pem, self._identity)
        else:
            self._receipt = receipt

    def _follow_server(self, presented: bytes | None = None) -> bool:
        """Re-pin to the server's renewed certificate; False if it still presents the pinned one.

        Raises
        ------
        CertificatePinError
            If the certificate changed without a valid handover.
        AttestationError
            If the verifier refuses the new certificate.
        """
        assert self.front_door is not None
        if presented is None:
            presented = fetch_server_certificate(self.front_door, timeout=self._connect_timeout_s)
        if certificate_fingerprint(presented) == self.server_fingerprint:
            return False
        if self._verifier is None:
            broken = broken_pin(self.address, self.server_fingerprint, presented)
            raise broken or CertificatePinError(f"server at {self.address}: certificate changed")
        renewed = follow_handover(
            self.front_door,
            self._server_pem,
            presented,
            timeout_s=self._connect_timeout_s,
            max_message_bytes=self._max_message_bytes,
        )
        identity = _verify_server(self._verifier, renewed, self.front_door)
        _log.info(
            "server at %s renewed its certificate: sha256:%s hands over to sha256:%s, verified",
            self.front_door,
            self.server_fingerprint,
            certificate_fingerprint(renewed),
        )
        self._server_wait_until = 0.0
        self._reconnect(self._credentials, self._receipt, renewed, identity)
        return True

    def _reconnect(
        self,
        credentials: Credentials,
        receipt: EnrolmentReceipt | None,
        server_pem: bytes,
        identity: IdentityT,
    ) -> None:
        """Open a connection with these certificates, check it, and move new calls to it."""
        address = receipt.service_address if receipt is not None else self._address
        fresh = _pinned_channel(address, server_pem, credentials, self._max_message_bytes)
        failure = _probe_connection(fresh, self._connect_timeout_s)
        if failure is not None:
            fresh.close()
            details = failure.details() if isinstance(failure, grpc.Call) else str(failure)
            raise ChannelError(f"reconnecting to {address} with new certificates failed: {details}")
        previous = self._proxy.rebind(fresh)
        if self._retired is not None:
            self._retired.close()  # two renewals old: its calls had an hour to finish
        self._retired = previous
        self._credentials, self._receipt, self._address = credentials, receipt, address
        self._server_pem, self._identity = server_pem, identity
        self.renewals += 1
        self._schedule()

    def _recover(self, exc: grpc.RpcError, generation: int) -> Recovery:
        """Repair what made a call fail, if it is ours to repair (see the module docstring)."""
        if self.front_door is None or self._state is ChannelState.CLOSED:
            return Recovery.NONE
        code = exc.code() if isinstance(exc, grpc.Call) else None
        refused = code is grpc.StatusCode.PERMISSION_DENIED and (
            trailing_value(exc, ENROLMENT_STATE_KEY) == "not-enrolled"
        )
        if not refused and code is not grpc.StatusCode.UNAVAILABLE:
            return Recovery.NONE
        with self._maintenance:
            if self._proxy.current()[1] != generation:  # another thread repaired it meanwhile
                return Recovery.REPEAT if refused else _after_reconnect(exc)
            if refused:  # the per-RPC check ran before the handler: the call never ran
                _log.info("server at %s no longer has us enrolled: enrolling again", self.address)
                self._enrol_again(renew=False, reconnect=False)
                return Recovery.REPEAT
            try:
                presented = fetch_server_certificate(
                    self.front_door, timeout=self._connect_timeout_s
                )
            except ChannelError:
                return Recovery.NONE  # unreachable: the retry policy (if any) takes it from here
            if self._follow_server(presented):
                return _after_reconnect(exc)
            if not self._refused_by_server():
                return Recovery.NONE
            _log.info("server at %s refused our certificate: enrolling again", self.address)
            self._enrol_again(renew=False, reconnect=True)
            return _after_reconnect(exc)

    def _refused_by_server(self) -> bool:
        """Whether a fresh handshake with our certificate fails (lapsed, evicted, expired)."""
        if validity_problem(self._credentials.cert_pem, time.time()) is not None:
            return True
        if self._receipt is not None and self._clock() >= self._receipt.expires_at:
            return True
        probe = _pinned_channel(
            self._address, self._server_pem, self._credentials, self._max_message_bytes
        )
        try:
            return _probe_connection(probe, self._connect_timeout_s) is not None
        finally:
            probe.close()

    # -- diagnosis ------------------------------------------------------------------------------

    def check_pin(self, *, timeout_s: float = 2.0) -> None:
        """Fetch the server's current certificate and compare it with the pinned one.

        Raises
        ------
        CertificatePinError
            If the server now presents a different certificate.
        ChannelError
            If the server cannot be reached at all.
        """
        try:
            current = fetch_server_certificate(self.address, timeout=timeout_s)
        except ChannelError:
            if self.front_door is None:
                raise
            current = fetch_server_certificate(self.front_door, timeout=timeout_s)
        broken = broken_pin(self.address, self.server_fingerprint, current)
        if broken is not None:
            raise broken

    def diagnose(self, exc: grpc.RpcError, *, what: str) -> ChannelError:
        """Explain a failed call; on ``UNAVAILABLE`` look at what the server presents now."""
        if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.UNAVAILABLE:
            return self.explain_connection_failure(what=what, details=exc.details() or "")
        return describe_rpc_error(exc, what=what, peer=f"server at {self.address}")

    def explain_connection_failure(self, *, what: str, details: str) -> ChannelError:
        """Say why a connection (TLS handshake or transport) to the server failed.

        In order: the server presents another certificate (:class:`CertificatePinError`); it
        cannot be reached; a certificate on either side is outside its validity period; else
        the server refused our certificate (not enrolled, lapsed or revoked).
        """
        peer = f"server at {self.address}"
        try:
            self.check_pin()
        except CertificatePinError as pin_error:
            return CertificatePinError(f"{what}: {pin_error}")
        except ChannelError as unreachable:
            return ChannelError(f"{what}: {peer} unreachable: {unreachable} (gRPC: {details})")
        for whose, pem in (
            ("the pinned server", self.server_certificate_pem),
            ("our client", self.client_certificate_pem),
        ):
            problem = validity_problem(pem, time.time())
            if problem is not None:
                return ChannelError(
                    f"{what}: TLS with {peer} failed: {whose} certificate {problem}; make or "
                    f"verify a fresh one and connect again (gRPC: {details})"
                )
        return ChannelError(
            f"{what}: the mutual-TLS handshake with {peer} failed; the pinned server "
            f"certificate is unchanged, so the server most likely refused our client "
            f"certificate sha256:{self.client_fingerprint} (not enrolled, or its enrolment "
            f"lapsed or was revoked) (gRPC: {details})"
        )


def _after_reconnect(exc: grpc.RpcError) -> Recovery:
    """REPEAT if the failed call provably never left (no connection), else RECONNECTED."""
    details = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
    return Recovery.REPEAT if "failed to connect" in details.lower() else Recovery.RECONNECTED


def _method_name(method: Callable[..., Any]) -> str:
    raw = getattr(method, "_method", None)  # gRPC multi-callables keep their method path here
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) else "rpc"


def _pinned_channel(
    address: str, server_pem: bytes, credentials: Credentials, max_message_bytes: int
) -> grpc.Channel:
    tls = grpc.ssl_channel_credentials(
        root_certificates=server_pem,
        private_key=credentials.key_pem,
        certificate_chain=credentials.cert_pem,
    )
    return grpc.secure_channel(address, tls, options=channel_options(server_pem, max_message_bytes))


_PROBE_METHOD = "/sealfl.net.Probe/Connect"


def _probe_connection(channel: grpc.Channel, timeout_s: float) -> grpc.RpcError | None:
    """Connect now with one call to a method no server implements; None if the handshake held.

    An UNIMPLEMENTED answer proves the TLS handshake completed and the server read our request.
    This is quicker than watching connectivity states, and a channel that was never subscribed
    to closes at once (a subscribed one waits for gRPC's 200 ms polling thread).
    """
    probe = channel.unary_unary(_PROBE_METHOD, request_serializer=None, response_deserializer=None)
    try:
        probe(b"", timeout=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return None
        return exc
    return None


def connect_pinned(
    address: str,
    *,
    server_certificate_pem: bytes,
    server_verifier: Callable[[bytes], IdentityT],
    credentials: Credentials,
    timeout_s: float = 10.0,
    default_timeout_s: float = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> SecureChannel[IdentityT]:
    """Open a mutual-TLS channel that trusts exactly ``server_certificate_pem``.

    The certificate is verified with ``server_verifier`` first; the channel's only root is that
    certificate, so a server presenting another key fails the handshake. The connection is
    established before returning. With no front door, such a channel neither renews nor
    follows a server's renewal: certificates exchanged out of band are renewed out of band.

    Raises
    ------
    AttestationError
        If the verifier refuses the server certificate.
    CertificatePinError
        If the server at ``address`` presents a different certificate.
    ChannelError
        If the handshake fails otherwise (e.g. our certificate is not enrolled there).
    """
    check_key_matches_certificate(credentials, party="client")
    # Pin exactly the certificate the verifier sees: every certificate in the PEM given would
    # be a trusted root, so anything after the first would otherwise be trusted unverified.
    server_certificate_pem = load_certificate(
        server_certificate_pem, what="server certificate"
    ).public_bytes(serialization.Encoding.PEM)
    identity = _verify_server(server_verifier, server_certificate_pem, address)
    return _connect(
        SecureChannel(
            channel=_pinned_channel(
                address, server_certificate_pem, credentials, max_message_bytes
            ),
            address=address,
            server_certificate_pem=server_certificate_pem,
            server_identity=identity,
            credentials=credentials,
            default_timeout_s=default_timeout_s,
            connect_timeout_s=timeout_s,
            max_message_bytes=max_message_bytes,
        ),
        timeout_s,
    )


def _connect(secure: SecureChannel[IdentityT], timeout_s: float) -> SecureChannel[IdentityT]:
    """Handshake now; close the channel and explain if that fails."""
    failure = _probe_connection(secure.channel, timeout_s)
    if failure is not None:
        secure.close(leave_server=False)
        details = failure.details() if isinstance(failure, grpc.Call) else str(failure)
        explained = secure.explain_connection_failure(
            what=f"connecting to {secure.address}", details=f"{details}; deadline {timeout_s} s"
        )
        raise explained from failure
    return secure


def _verify_server(
    verifier: Callable[[bytes], IdentityT], cert_pem: bytes, address: str
) -> IdentityT:
    try:
        return verifier(cert_pem)
    except AttestationError as exc:
        raise AttestationError(
            f"server at {address} refused: certificate sha256:"
            f"{certificate_fingerprint(cert_pem)} failed verification: {exc}"
        ) from exc


def open_secure_channel(
    address: str,
    *,
    credentials: Credentials,
    server_verifier: Callable[[bytes], IdentityT],
    renew: Callable[[], Credentials] | None = None,
    timeout_s: float = 10.0,
    retry: RetryPolicy = _CONNECT_RETRY,
    default_timeout_s: float = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    clock: Callable[[], float] = time.time,
) -> SecureChannel[IdentityT]:
    """Fetch, verify and pin the server certificate at ``address``, enrol, and connect.

    Parameters
    ----------
    address
        The server's front door (:attr:`SecureServer.address`).
    credentials
        Our certificate and key; the server's peer verifier must accept the certificate.
    server_verifier
        ``verifier(server_cert_pem) -> identity``, raising ``AttestationError`` to refuse. It
        also decides whether a renewed server certificate is followed.
    renew
        Makes our next certificate (same claims as ``credentials``), e.g. ``lambda:
        runtime.credentials()``. Without it the channel re-enrols the same certificate while
        that is valid, and stops working when it expires.
    timeout_s
        Deadline of each step (fetch, enrol, handshake).
    retry
        Backoff (jittered) for the steps that are safe to repeat while a server comes up or is
        busy; busy refusals are repeated anyway.
    clock
        Unix time, injectable for tests of renewal and expiry.

    Returns
    -------
    SecureChannel
        Connected, with ``server_identity`` set to what the verifier returned, so the caller
        can check workload claims (e.g. a key hash bound in the server's RA-TLS claims).

    Raises
    ------
    AttestationError
        The server's certificate failed verification.
    ChannelError
        The server is unreachable, refused our enrolment (the message carries its reason),
        or the handshake failed.
    """
    started = time.perf_counter()
    check_key_matches_certificate(credentials, party="client")
    server_pem = _fetch_with_retry(address, timeout_s, retry)
    identity = _verify_server(server_verifier, server_pem, address)
    receipt = enrol(
        address,
        server_pem,
        credentials,
        timeout_s=timeout_s,
        retry=retry,
        max_message_bytes=max_message_bytes,
        clock=clock,
    )
    # The fetched PEM holds exactly the one certificate verified above: it is pinned as it is.
    channel = _connect(
        SecureChannel(
            channel=_pinned_channel(
                receipt.service_address, server_pem, credentials, max_message_bytes
            ),
            address=receipt.service_address,
            server_certificate_pem=server_pem,
            server_identity=identity,
            credentials=credentials,
            default_timeout_s=default_timeout_s,
            front_door=address,
            enrolment=receipt,
            server_verifier=server_verifier,
            renew=renew,
            clock=clock,
            connect_timeout_s=timeout_s,
            max_message_bytes=max_message_bytes,
            retry=retry,
        ),
        timeout_s,
    )
    _log.info(
        "secure channel to %s (service %s) open in %.1f ms",
        address,
        receipt.service_address,
        1000 * (time.perf_counter() - started),
    )
    return channel


def _fetch_with_retry(address: str, timeout_s: float, retry: RetryPolicy) -> bytes:
    for number in range(retry.attempts):
        try:
            return fetch_server_certificate(address, timeout=timeout_s)
        except ChannelError:
            if number == retry.attempts - 1:
                raise
            time.sleep(retry.backoff(number))
    raise AssertionError("unreachable")  # pragma: no cover

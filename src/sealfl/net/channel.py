"""Client side of the mutual (RA-)TLS scheme: fetch, verify, pin, enrol, connect.

:func:`open_secure_channel` does the whole sequence against a server's front door;
:func:`connect_pinned` is the last step alone, for plain TLS with certificates exchanged out
of band (the server lists the client in ``allowed_clients``). Either returns a
:class:`SecureChannel`, whose call helpers put a deadline on every call, retry idempotent calls
on ``UNAVAILABLE`` with backoff, and explain failures: a server whose key changed after it was
verified raises :class:`~sealfl.net.calls.CertificatePinError`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import grpc
from cryptography.hazmat.primitives import serialization

from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net.addresses import DEFAULT_MAX_MESSAGE_BYTES, join_address, split_address
from sealfl.net.calls import (
    CertificatePinError,
    RetryPolicy,
    describe_rpc_error,
    iterate_stream,
    run_with_retry,
)
from sealfl.net.certificates import (
    Credentials,
    certificate_fingerprint,
    check_key_matches_certificate,
    fetch_server_certificate,
    load_certificate,
    pinning_name,
    validity_problem,
)
from sealfl.net.possession import possession_message, sign_possession
from sealfl.net.protos import enrolment_pb2, enrolment_pb2_grpc

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
_CONNECT_RETRY = RetryPolicy(attempts=5, initial_backoff_s=0.05, max_backoff_s=1.0)


class ChannelState(enum.Enum):
    """Lifecycle of a :class:`SecureChannel`: open until closed, never reopened."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class EnrolmentReceipt:
    """What the server said when it enrolled us."""

    fingerprint: str
    expires_at: float
    service_address: str


class SecureChannel(Generic[IdentityT]):
    """A gRPC channel pinned to one verified server certificate, with our client certificate.

    Use :attr:`channel` to build stubs, and :meth:`call`, :meth:`call_stream` and
    :meth:`stream` to make calls with deadlines, retries and clear errors.
    """

    def __init__(
        self,
        *,
        channel: grpc.Channel,
        address: str,
        server_certificate_pem: bytes,
        server_identity: IdentityT,
        client_certificate_pem: bytes,
        default_timeout_s: float,
        front_door: str | None = None,
        enrolment: EnrolmentReceipt | None = None,
    ) -> None:
        self._channel = channel
        self._state = ChannelState.OPEN
        self.address = address
        """The server's mutual-TLS listener."""
        self.front_door = front_door
        """The server's enrolment listener, if we enrolled there."""
        self.server_certificate_pem = server_certificate_pem
        """The server certificate that was verified and is pinned."""
        self.server_identity = server_identity
        """What the server verifier returned (e.g. ``VerifiedPeer`` with claims)."""
        self.server_fingerprint = certificate_fingerprint(server_certificate_pem)
        self.client_certificate_pem = client_certificate_pem
        self.client_fingerprint = certificate_fingerprint(client_certificate_pem)
        self.enrolment = enrolment
        self.default_timeout_s = default_timeout_s
        self._stubs: dict[type, Any] = {}

    @property
    def state(self) -> ChannelState:
        """Open or closed."""
        return self._state

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel, for building stubs.

        Raises
        ------
        ChannelError
            If the channel was closed.
        """
        if self._state is ChannelState.CLOSED:
            raise ChannelError(
                f"channel to {self.address} is closed; open a new one (channels are not reopened)"
            )
        return self._channel

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

    def close(self) -> None:
        """Close the channel (idempotent)."""
        if self._state is ChannelState.OPEN:
            self._state = ChannelState.CLOSED
            self._channel.close()

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

        Raises
        ------
        ChannelError
            Naming the call, the server and the status; a :class:`CertificatePinError` if the
            server now presents a different certificate.
        """
        timeout = self._timeout(timeout_s)
        return run_with_retry(
            lambda: method(request, timeout=timeout),
            retry=retry,
            describe=self._describer(method, what),
        )

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
        return run_with_retry(
            lambda: method(requests(), timeout=timeout),
            retry=retry,
            describe=self._describer(method, what),
        )

    def stream(
        self,
        method: Callable[..., Iterator[Resp]],
        request: Any,
        *,
        timeout_s: float | None = None,
        what: str | None = None,
    ) -> Iterator[Resp]:
        """Make a server-streaming call with a deadline over the whole stream (no retries)."""
        return iterate_stream(
            method(request, timeout=self._timeout(timeout_s)),
            describe=self._describer(method, what),
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
        broken = _broken_pin(self.address, self.server_fingerprint, current)
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


def _broken_pin(address: str, pinned: str, presented_pem: bytes) -> CertificatePinError | None:
    """Return the error for a server presenting another certificate than the pinned one."""
    found = certificate_fingerprint(presented_pem)
    if found == pinned:
        return None
    return CertificatePinError(
        f"server at {address}: certificate changed after verification: pinned "
        f"sha256:{pinned}, found sha256:{found}; its key was swapped, "
        "so the connection is refused (verify the server again to trust the new key)"
    )


def _method_name(method: Callable[..., Any]) -> str:
    raw = getattr(method, "_method", None)  # gRPC multi-callables keep their method path here
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) else "rpc"


def _channel_options(server_cert_pem: bytes, max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.ssl_target_name_override", pinning_name(server_cert_pem)),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Own subchannels: never share a connection (and its TLS identity) with another channel.
        ("grpc.use_local_subchannel_pool", 1),
    ]


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
    established before returning.

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
        address,
        server_certificate_pem,
        identity,
        credentials,
        timeout_s=timeout_s,
        default_timeout_s=default_timeout_s,
        max_message_bytes=max_message_bytes,
    )


def _connect(
    address: str,
    server_pem: bytes,
    identity: IdentityT,
    credentials: Credentials,
    *,
    timeout_s: float,
    default_timeout_s: float,
    max_message_bytes: int,
    front_door: str | None = None,
    enrolment: EnrolmentReceipt | None = None,
) -> SecureChannel[IdentityT]:
    """Pin ``server_pem`` (one certificate, verified as ``identity``), then handshake now."""
    tls = grpc.ssl_channel_credentials(
        root_certificates=server_pem,
        private_key=credentials.key_pem,
        certificate_chain=credentials.cert_pem,
    )
    channel = grpc.secure_channel(
        address, tls, options=_channel_options(server_pem, max_message_bytes)
    )
    secure = SecureChannel(
        channel=channel,
        address=address,
        server_certificate_pem=server_pem,
        server_identity=identity,
        client_certificate_pem=credentials.cert_pem,
        default_timeout_s=default_timeout_s,
        front_door=front_door,
        enrolment=enrolment,
    )
    failure = _probe_connection(channel, timeout_s)
    if failure is not None:
        secure.close()
        details = failure.details() if isinstance(failure, grpc.Call) else str(failure)
        explained = secure.explain_connection_failure(
            what=f"connecting to {address}", details=f"{details}; deadline {timeout_s} s"
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
    timeout_s: float = 10.0,
    retry: RetryPolicy = _CONNECT_RETRY,
    default_timeout_s: float = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> SecureChannel[IdentityT]:
    """Fetch, verify and pin the server certificate at ``address``, enrol, and connect.

    Parameters
    ----------
    address
        The server's front door (:attr:`SecureServer.address`).
    credentials
        Our certificate and key; the server's peer verifier must accept the certificate.
    server_verifier
        ``verifier(server_cert_pem) -> identity``, raising ``AttestationError`` to refuse.
    timeout_s
        Deadline of each step (fetch, enrol, handshake).
    retry
        Backoff for the steps that are safe to repeat while a server comes up.

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
    receipt = _enrol(address, server_pem, credentials, timeout_s, retry, max_message_bytes)
    # The fetched PEM holds exactly the one certificate verified above: it is pinned as it is.
    channel = _connect(
        receipt.service_address,
        server_pem,
        identity,
        credentials,
        timeout_s=timeout_s,
        default_timeout_s=default_timeout_s,
        max_message_bytes=max_message_bytes,
        front_door=address,
        enrolment=receipt,
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


def _enrol(
    address: str,
    server_pem: bytes,
    credentials: Credentials,
    timeout_s: float,
    retry: RetryPolicy,
    max_message_bytes: int,
) -> EnrolmentReceipt:
    """Enrol over a bootstrap channel pinned to the server certificate, without a client cert."""
    bootstrap = grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(root_certificates=server_pem),
        options=_channel_options(server_pem, max_message_bytes),
    )
    stub = enrolment_pb2_grpc.EnrolmentStub(bootstrap)
    fingerprint = certificate_fingerprint(credentials.cert_pem)
    server_fingerprint = certificate_fingerprint(server_pem)

    def attempt() -> enrolment_pb2.EnrolReply:
        # A fresh nonce per attempt: a retried Enrol must not reuse a consumed one.
        nonce = stub.Challenge(enrolment_pb2.ChallengeRequest(), timeout=timeout_s).nonce
        message = possession_message(nonce, server_pem, credentials.cert_pem)
        signature = sign_possession(credentials.key_pem, message)
        request = enrolment_pb2.EnrolRequest(
            certificate_pem=credentials.cert_pem, nonce=nonce, signature=signature
        )
        reply: enrolment_pb2.EnrolReply = stub.Enrol(request, timeout=timeout_s)
        return reply

    def describe(exc: grpc.RpcError) -> ChannelError:
        if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.PERMISSION_DENIED:
            return ChannelError(
                f"server at {address} refused to enrol our certificate sha256:{fingerprint}: "
                f"{exc.details()}"
            )
        if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.UNAVAILABLE:
            try:
                current = fetch_server_certificate(address, timeout=timeout_s)
            except ChannelError:  # unreachable: the plain description below fits
                current = None
            broken = None if current is None else _broken_pin(address, server_fingerprint, current)
            if broken is not None:
                return CertificatePinError(f"enrolment: {broken}")
        return describe_rpc_error(exc, what="enrolment", peer=f"server at {address}")

    try:
        reply = run_with_retry(attempt, retry=retry, describe=describe)
    finally:
        bootstrap.close()
    if reply.fingerprint != fingerprint:
        raise ChannelError(
            f"server at {address} enrolled certificate sha256:{reply.fingerprint}, "
            f"expected ours sha256:{fingerprint}"
        )
    if not 0 < reply.service_port < 65536:
        raise ChannelError(
            f"server at {address}: enrolment reply service_port: expected 1-65535, "
            f"got {reply.service_port}"
        )
    host, _ = split_address(address)
    return EnrolmentReceipt(fingerprint, reply.expires_at, join_address(host, reply.service_port))

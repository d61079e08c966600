"""A gRPC server that speaks mutual (RA-)TLS with an allow-list of enrolled clients.

The server runs two listeners that present the same certificate:

* the **front door** (:attr:`SecureServer.address`): TLS without client authentication,
  serving only enrolment (see :mod:`sealfl.net.enrolment`, which explains why this is safe);
* the **service listener** (:attr:`SecureServer.service_address`): TLS that requires a client
  certificate from the allow-list, serving the workload's services. Its trust store is rebuilt
  from the allow-list whenever it changes (``dynamic_ssl_server_credentials``), so a client that
  never enrolled fails the handshake, and a guard in every handler (:mod:`sealfl.net.guard`)
  re-checks the peer certificate on every RPC, so revocation, lapsed enrolments and resumed TLS
  sessions are refused too.

Connections are closed after ``max_connection_age_s`` (clients reconnect with a fresh
handshake against the current allow-list and key), messages are size-limited, and the thread
pool and the number of concurrent RPCs are bounded.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar, cast

import grpc

from sealfl.errors import ChannelError, ConfigError
from sealfl.net.addresses import DEFAULT_MAX_MESSAGE_BYTES, join_address, split_address
from sealfl.net.allowlist import AllowList, Enrolment, Refusal
from sealfl.net.certificates import (
    Credentials,
    certificate_fingerprint,
    check_key_matches_certificate,
    make_self_signed_credentials,
)
from sealfl.net.enrolment import (
    ChallengeStore,
    EnrolmentDesk,
    EnrolmentPolicy,
    EnrolmentServicer,
)
from sealfl.net.guard import GuardedRegistrar
from sealfl.net.protos import enrolment_pb2_grpc

__all__ = ["SecureServer", "ServerState"]

IdentityT = TypeVar("IdentityT")

_FRONT_DOOR_MAX_MESSAGE_BYTES = 1024 * 1024  # an RA-TLS certificate with a quote is ~10-20 KB

_log = logging.getLogger(__name__)


class ServerState(enum.Enum):
    """Lifecycle of a :class:`SecureServer`: it starts once and stops once."""

    CREATED = "created"
    SERVING = "serving"
    STOPPED = "stopped"


@functools.lru_cache(maxsize=1024)
def _fingerprint_of_pem(pem: bytes) -> str:
    """Fingerprint of a peer certificate, cached: the per-RPC check runs on every call."""
    return certificate_fingerprint(pem)


def _peer_fingerprint(context: grpc.ServicerContext) -> str | None:
    """Fingerprint of the client certificate authenticated for this call, or None."""
    pems = context.auth_context().get("x509_pem_cert")
    return _fingerprint_of_pem(pems[0]) if pems else None


# grpc-stubs type the fetcher as never returning None, but None is how it says "no change".
_Fetcher = Callable[[], grpc.ServerCertificateConfiguration]


class _CredentialSource:
    """Feeds gRPC's dynamic TLS credentials; returns a new configuration only on change."""

    def __init__(self, build: Callable[[], grpc.ServerCertificateConfiguration]) -> None:
        self._build = build
        self._seen: object = None
        self._lock = threading.Lock()

    def first(self, key: object) -> grpc.ServerCertificateConfiguration:
        """Build the configuration gRPC starts with, for the state ``key`` names."""
        with self._lock:
            self._seen = key
            return self._build()

    def fetch(self, key: object) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            if key == self._seen:
                return None
            self._seen = key
            return self._build()


class SecureServer(Generic[IdentityT]):
    """Mutual (RA-)TLS gRPC server with enrolment, an allow-list and per-RPC peer checks.

    Parameters
    ----------
    credentials
        The server's certificate and key (``RaTlsCredentials`` inside a TEE, or
        :class:`~sealfl.net.certificates.TlsCredentials` for plain TLS).
    peer_verifier
        ``verifier(client_cert_pem) -> identity``, raising ``AttestationError`` to refuse.
    address
        Front-door (enrolment) listener, ``host:port``; port 0 picks a free port.
    service_address
        Mutual-TLS listener; defaults to the front door's host with a free port.
    max_message_bytes
        Largest single message either way on the service listener.
    max_connection_age_s, connection_age_grace_s
        Connections are closed after this age (plus grace for calls in flight), so clients
        handshake again against the current key and allow-list. A call still running when the
        grace ends is cut off, so keep the grace above the longest stream (a 200 MB tensor
        takes about a second on loopback, longer over a real network).
    max_workers, max_concurrent_rpcs
        Bound the handler threads and the RPCs admitted at once (others get RESOURCE_EXHAUSTED).
    enrolment_ttl_s
        How long an enrolment lasts (never beyond the certificate's notAfter).
    max_certificate_age_s
        If set, refuse client certificates issued longer ago than this (freshness).
    max_enrolled
        Size bound of the allow-list.
    allowed_clients
        Client certificates (PEM) enrolled at start without the enrolment RPC, for deployments
        that provision certificates out of band (plain TLS); the verifier still checks them.
    disclose_refusal_reasons
        Send the reason of a refused enrolment to the client (the issue's requirement, and it
        makes misconfiguration easy to fix). Set False to keep the client's error opaque when
        the policy itself should not be revealed; the reason is always logged locally.
    on_enrol, on_refusal
        Hooks called after each enrolment or refusal (from a handler thread; keep them short).
    clock
        Source of Unix time, injectable for tests of expiry.
    """

    def __init__(
        self,
        *,
        credentials: Credentials,
        peer_verifier: Callable[[bytes], IdentityT],
        address: str = "127.0.0.1:0",
        service_address: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_connection_age_s: float = 600.0,
        connection_age_grace_s: float = 30.0,
        max_workers: int = 8,
        max_concurrent_rpcs: int | None = 64,
        enrolment_ttl_s: float = 24 * 3600.0,
        max_certificate_age_s: float | None = None,
        max_enrolled: int = 1024,
        allowed_clients: Iterable[bytes] = (),
        disclose_refusal_reasons: bool = True,
        on_enrol: Callable[[Enrolment[IdentityT]], None] | None = None,
        on_refusal: Callable[[Refusal], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_key_matches_certificate(credentials, party="server")
        for name, value in (
            ("max_message_bytes", max_message_bytes),
            ("max_connection_age_s", max_connection_age_s),
            ("max_workers", max_workers),
            ("max_enrolled", max_enrolled),
        ):
            if value <= 0:
                raise ConfigError(f"SecureServer {name}: expected > 0, got {value}")
        host, _ = split_address(address)
        self._address_requested = address
        self._service_requested = service_address or join_address(host, 0)
        self._credentials = credentials
        self._credentials_version = 0
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self._allowlist: AllowList[IdentityT] = AllowList(max_entries=max_enrolled)
        self._challenges = ChallengeStore(clock=clock)
        self._desk = EnrolmentDesk(
            verifier=peer_verifier,
            allowlist=self._allowlist,
            challenges=self._challenges,
            policy=EnrolmentPolicy(
                ttl_s=enrolment_ttl_s,
                max_certificate_age_s=max_certificate_age_s,
                disclose_reasons=disclose_refusal_reasons,
            ),
            server_certificate=lambda: self._credentials.cert_pem,
            clock=clock,
            on_enrol=on_enrol,
            on_refusal=on_refusal,
        )
        for index, pem in enumerate(allowed_clients):
            self._desk.admit_preverified(pem, peer=f"allowed_clients[{index}]")
        # Nobody holds this key: it keeps the trust store non-empty while nobody is enrolled.
        self._placeholder_root = make_self_signed_credentials("no-client-enrolled").cert_pem
        self._service_source = _CredentialSource(self._service_configuration)
        self._front_source = _CredentialSource(self._front_configuration)
        common: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 0),
            ("grpc.max_connection_age_ms", int(max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(connection_age_grace_s * 1000)),
        ]
        self._service = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sealfl-rpc"),
            options=[
                *common,
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )
        self._front = grpc.server(
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="sealfl-enrol"),
            options=[
                *common,
                ("grpc.max_send_message_length", _FRONT_DOOR_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _FRONT_DOOR_MAX_MESSAGE_BYTES),
            ],
            maximum_concurrent_rpcs=16,
        )
        self._service_port = 0
        self._front_port = 0
        self._state = ServerState.CREATED
        enrolment_pb2_grpc.add_EnrolmentServicer_to_server(
            EnrolmentServicer(self._desk, self._challenges, lambda: self._service_port),
            self._front,
        )

    # -- configuration ------------------------------------------------------------------------

    def add_servicer(
        self, add_to_server: Callable[[Any, grpc.Server], None], servicer: Any
    ) -> None:
        """Register a workload servicer on the mutual-TLS listener (before :meth:`start`).

        ``add_to_server`` is the generated ``add_XServicer_to_server`` function.
        """
        self._require(ServerState.CREATED, "add a servicer")
        # Through the registrar, every handler of the servicer runs the per-RPC peer check.
        add_to_server(
            servicer, cast(grpc.Server, GuardedRegistrar(self._service, self._check_peer))
        )

    def add_handler(self, handler: grpc.GenericRpcHandler) -> None:
        """Register hand-written handlers on the mutual-TLS listener (before :meth:`start`).

        For methods without a generated servicer, e.g. ones whose messages are raw bytes. They
        run the per-RPC peer check like every servicer's handlers.
        """
        self._require(ServerState.CREATED, "add a handler")
        GuardedRegistrar(self._service, self._check_peer).add_generic_rpc_handlers((handler,))

    def add_front_door_servicer(
        self, add_to_server: Callable[[Any, grpc.Server], None], servicer: Any
    ) -> None:
        """Register a servicer on the front door, beside enrolment (before :meth:`start`).

        Hazard: front-door callers are anonymous (TLS without a client certificate), so no peer
        check runs and :meth:`identity_of` knows nobody there. Only methods that grant nothing
        by themselves belong here: handing out a challenge nonce that a later, authenticated
        call must present (the key broker's ``Challenge``), or refusing a call that was sent to
        the wrong listener so the refusal can be recorded. Messages are limited to 1 MiB.
        """
        self._require(ServerState.CREATED, "add a front-door servicer")
        add_to_server(servicer, self._front)

    def replace_credentials(self, credentials: Credentials) -> None:
        """Present a new certificate and key on both listeners from the next handshake on.

        Clients pinned to the old certificate will fail to reconnect (they must verify the new
        one), which is exactly the protection pinning gives against a swapped server key.
        """
        check_key_matches_certificate(credentials, party="server")
        self._credentials = credentials
        self._credentials_version += 1
        _log.warning(
            "server credentials replaced: now sha256:%s",
            certificate_fingerprint(credentials.cert_pem),
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        """Bind both listeners, start serving, and return the front-door address.

        Raises
        ------
        ChannelError
            If an address cannot be bound.
        """
        self._require(ServerState.CREATED, "start")
        service_credentials = grpc.dynamic_ssl_server_credentials(
            self._service_source.first(self._service_key()),
            cast(_Fetcher, lambda: self._service_source.fetch(self._service_key())),
            require_client_authentication=True,
        )
        front_credentials = grpc.dynamic_ssl_server_credentials(
            self._front_source.first(self._credentials_version),
            cast(_Fetcher, lambda: self._front_source.fetch(self._credentials_version)),
            require_client_authentication=False,
        )
        try:
            self._service_port = self._bind(
                self._service, self._service_requested, service_credentials
            )
            self._front_port = self._bind(self._front, self._address_requested, front_credentials)
        except ChannelError:
            self.stop(None)  # release whatever was bound; a server starts once
            raise
        self._service.start()
        self._front.start()
        self._state = ServerState.SERVING
        _log.info(
            "serving: front door %s, mutual-TLS service %s", self.address, self.service_address
        )
        return self.address

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop both listeners, letting calls in flight finish for ``grace`` seconds."""
        if self._state is ServerState.STOPPED:
            return
        self._state = ServerState.STOPPED
        done = [self._front.stop(grace), self._service.stop(grace)]
        for event in done:
            event.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); return whether it stopped."""
        return bool(self._service.wait_for_termination(timeout))

    def __enter__(self) -> SecureServer[IdentityT]:
        if self._state is ServerState.CREATED:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def state(self) -> ServerState:
        """Where the server is in its lifecycle."""
        return self._state

    @property
    def address(self) -> str:
        """Front-door address ``host:port`` that clients are given (after :meth:`start`)."""
        return self._bound_address(self._address_requested, self._front_port)

    @property
    def service_address(self) -> str:
        """Mutual-TLS listener ``host:port`` (clients learn it from their enrolment reply)."""
        return self._bound_address(self._service_requested, self._service_port)

    # -- allow-list ---------------------------------------------------------------------------

    def enrolments(self) -> list[Enrolment[IdentityT]]:
        """Clients enrolled now, oldest first."""
        self._allowlist.purge(self._clock())
        return self._allowlist.entries()

    def refusals(self) -> list[Refusal]:
        """Recent refused enrolments (who and why), oldest first."""
        return self._allowlist.refusals()

    def revoke(self, fingerprint: str) -> bool:
        """Remove a client from the allow-list and refuse its certificate from now on.

        Its next RPC and handshake are refused, and so is enrolling the same certificate again
        (the client must come back with a new certificate, which the verifier checks afresh).
        Returns whether the certificate was enrolled.
        """
        removed = self._allowlist.revoke(fingerprint)
        if removed:
            _log.warning("revoked client sha256:%s", fingerprint)
        return removed

    def identity_of(self, context: grpc.ServicerContext) -> IdentityT:
        """Return the verified identity of the client making this call.

        Raises
        ------
        ChannelError
            If the caller is not (or no longer) enrolled; the per-RPC guard has normally refused
            such a call already.
        """
        entry = self._lookup(context)
        if entry is None:
            raise ChannelError(f"caller {context.peer()} is not an enrolled client")
        return entry.identity

    # -- internals ----------------------------------------------------------------------------

    def _require(self, state: ServerState, action: str) -> None:
        if self._state is not state:
            raise ConfigError(
                f"SecureServer: cannot {action} in state {self._state.value!r} "
                f"(only when {state.value!r}); a server starts once and cannot be restarted"
            )

    def _bind(self, server: grpc.Server, address: str, creds: grpc.ServerCredentials) -> int:
        try:
            port = server.add_secure_port(address, creds)
        except RuntimeError as exc:
            raise ChannelError(f"SecureServer: cannot bind {address}: {exc}") from exc
        if port == 0:
            raise ChannelError(f"SecureServer: cannot bind {address} (in use or not local)")
        return int(port)

    @staticmethod
    def _bound_address(requested: str, port: int) -> str:
        host, _ = split_address(requested)
        return join_address(host, port)

    def _service_key(self) -> tuple[int, int]:
        self._allowlist.purge(self._clock())
        return (self._credentials_version, self._allowlist.version)

    def _service_configuration(self) -> grpc.ServerCertificateConfiguration:
        roots = self._allowlist.certificates() or [self._placeholder_root]
        creds = self._credentials
        return grpc.ssl_server_certificate_configuration(
            [(creds.key_pem, creds.cert_pem)], root_certificates=b"\n".join(roots)
        )

    def _front_configuration(self) -> grpc.ServerCertificateConfiguration:
        creds = self._credentials
        return grpc.ssl_server_certificate_configuration([(creds.key_pem, creds.cert_pem)])

    def _lookup(self, context: grpc.ServicerContext) -> Enrolment[IdentityT] | None:
        fingerprint = _peer_fingerprint(context)
        if fingerprint is None:
            return None
        return self._allowlist.lookup(fingerprint, self._clock())

    def _check_peer(self, context: grpc.ServicerContext) -> None:
        """Per-RPC check: abort unless the peer certificate is enrolled right now."""
        fingerprint = _peer_fingerprint(context)
        if fingerprint is None:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"caller {context.peer()} presented no client certificate",
            )
        if self._allowlist.lookup(fingerprint, self._clock()) is None:
            _log.warning(
                "refused RPC from %s: certificate sha256:%s not enrolled",
                context.peer(),
                fingerprint,
            )
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"client certificate sha256:{fingerprint} is not enrolled "
                "(never enrolled, revoked, or its enrolment lapsed): enrol again",
            )

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

Availability (:mod:`sealfl.net.listeners`, :mod:`sealfl.net.admission`): the front door runs on
asyncio, so a peer that opens calls and never sends them holds no thread, is cut off by a read
deadline, and one source address holds a bounded share of the calls; so does the service
listener of a server with *open enrolment* (one that admits anyone, like an inference server
or a dealer), whose allow-list also evicts its least recently used entry when full rather
than lock newcomers out. The service listener of a server whose verifier admits only attested
peers keeps gRPC's faster threaded server and refuses newcomers when full, so no flood can
push an admitted worker out. Refusals for load are marked busy, and clients retry them.

Long runs: certificates are short-lived (an RA-TLS certificate lives an hour). Given ``renew``,
the server makes a new certificate ahead of its notAfter, signs a handover to it with the old
key, and presents it from the next handshake on; connections open keep working, and clients
follow the signed handover after verifying the new certificate (:mod:`sealfl.net.channel`).

Connections are closed after ``max_connection_age_s`` (clients reconnect with a fresh
handshake against the current allow-list and key), messages are size-limited, and the threads
and the number of concurrent RPCs are bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar, cast

import grpc

from sealfl.errors import ChannelError, ConfigError
from sealfl.net.addresses import DEFAULT_MAX_MESSAGE_BYTES, join_address, split_address
from sealfl.net.admission import AdmissionPolicy
from sealfl.net.allowlist import ENROLMENT_STATE_KEY, AllowList, Enrolment, Refusal, WhenFull
from sealfl.net.callers import caller_enrolment, remember_caller
from sealfl.net.certificates import (
    Credentials,
    certificate_fingerprint,
    check_key_matches_certificate,
    load_certificate,
    make_self_signed_credentials,
)
from sealfl.net.enrolment import (
    ChallengeStore,
    EnrolmentDesk,
    EnrolmentPolicy,
    EnrolmentServicer,
    HandoverStep,
    SessionServicer,
)
from sealfl.net.listeners import AsyncListener, ThreadedListener
from sealfl.net.loop import LoopThread
from sealfl.net.possession import handover_message, sign_possession
from sealfl.net.protos import enrolment_pb2_grpc
from sealfl.net.verifiers import accept_any_certificate

__all__ = ["ENROLMENT_STATE_KEY", "SecureServer", "ServerState"]

IdentityT = TypeVar("IdentityT")

_FRONT_DOOR_MAX_MESSAGE_BYTES = 1024 * 1024  # an RA-TLS certificate with a quote is ~10-20 KB

FRONT_DOOR_ADMISSION = AdmissionPolicy(
    read_deadline_s=10.0, idle_deadline_s=10.0, max_calls_per_address=64, max_calls=1024
)
"""The front door's bounds: its messages are small (under 1 MiB), so 10 s to send one is ample,
and a burst of honest clients fits well inside (each enrolment is two short calls)."""

_FRONT_DOOR_WORKERS = 4  # enrolment verifies evidence: CPU-bound, a few threads are enough
_HANDSHAKE_TIMEOUT_MS = 10_000  # a TCP peer that never completes TLS is dropped after this
_MAX_HANDOVERS = 24  # a day of hourly renewals; each step is one certificate (10-20 KB)
_RENEW_POLL_S = 30.0  # how often the background task asks whether renewal is due
_RENEW_RETRY_S = 60.0  # after a failed renewal, try again this much later

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
    return _fingerprint_of_pem(next(iter(pems))) if pems else None


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


def _renewal_due(cert_pem: bytes, margin_s: float | None) -> float:
    """Return when a certificate should be renewed.

    That is ``margin_s`` (default a quarter of its life, at most 15 minutes) before notAfter.
    """
    cert = load_certificate(cert_pem, what="server certificate")
    not_before = cert.not_valid_before_utc.timestamp()
    not_after = cert.not_valid_after_utc.timestamp()
    margin = margin_s if margin_s is not None else min(900.0, 0.25 * (not_after - not_before))
    return not_after - margin


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
        Bound the handler threads and the RPCs admitted at once on the service listener
        (others are refused as busy, and clients retry).
    enrolment_ttl_s
        How long an enrolment lasts (never beyond the certificate's notAfter).
    max_certificate_age_s
        If set, refuse client certificates issued longer ago than this (freshness).
    max_enrolled
        Size bound of the allow-list.
    allowed_clients
        Client certificates (PEM) enrolled at start without the enrolment RPC, for deployments
        that provision certificates out of band (plain TLS); the verifier still checks them,
        and they are never evicted.
    disclose_refusal_reasons
        Send the reason of a refused enrolment to the client (the issue's requirement, and it
        makes misconfiguration easy to fix). Set False to keep the client's error opaque when
        the policy itself should not be revealed; the reason is always logged locally.
    on_enrol, on_refusal
        Hooks called after each enrolment or refusal (from a handler thread; keep them short).
    clock
        Source of Unix time, injectable for tests of expiry and renewal.
    open_enrolment
        Whether ``peer_verifier`` admits anyone (default: whether it is
        :func:`~sealfl.net.verifiers.accept_any_certificate`). Then the service listener runs
        on asyncio with read deadlines and per-address limits, and a full allow-list evicts
        its least recently used entry; otherwise it is threaded and refuses when full.
    renew
        Makes fresh credentials with the same claims (e.g. ``lambda: runtime.credentials(
        claims=...)``). Called ahead of the certificate's notAfter; the old key signs a
        handover to the new certificate. Without it the server stops being reachable when its
        certificate expires.
    renew_margin_s
        How long before notAfter to renew (default a quarter of the lifetime, at most 15 min).
    read_deadline_s
        Asyncio service listener: time a call's request may take to arrive (large messages
        included), and between two messages of a request stream.
    max_calls_per_address
        Asyncio service listener: calls in flight from one source address.
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
        max_concurrent_rpcs: int | None = 256,
        enrolment_ttl_s: float = 24 * 3600.0,
        max_certificate_age_s: float | None = None,
        max_enrolled: int = 1024,
        allowed_clients: Iterable[bytes] = (),
        disclose_refusal_reasons: bool = True,
        on_enrol: Callable[[Enrolment[IdentityT]], None] | None = None,
        on_refusal: Callable[[Refusal], None] | None = None,
        clock: Callable[[], float] = time.time,
        open_enrolment: bool | None = None,
        renew: Callable[[], Credentials] | None = None,
        renew_margin_s: float | None = None,
        read_deadline_s: float = 60.0,
        max_calls_per_address: int = 64,
    ) -> None:
        check_key_matches_certificate(credentials, party="server")
        for name, value in (
            ("max_message_bytes", max_message_bytes),
            ("max_connection_age_s", max_connection_age_s),
            ("max_workers", max_workers),
            ("max_enrolled", max_enrolled),
            ("read_deadline_s", read_deadline_s),
            ("max_calls_per_address", max_calls_per_address),
        ):
            if value <= 0:
                raise ConfigError(f"SecureServer {name}: expected > 0, got {value}")
        if renew_margin_s is not None and renew_margin_s <= 0:
            raise ConfigError(f"SecureServer renew_margin_s: expected > 0, got {renew_margin_s}")
        host, _ = split_address(address)
        if open_enrolment is None:
            open_enrolment = peer_verifier is accept_any_certificate
        self.open_enrolment = open_enrolment
        """Whether anyone may enrol (see the class parameters)."""
        self._address_requested = address
        self._service_requested = service_address or join_address(host, 0)
        self._credentials = credentials
        self._credentials_version = 0
        self._presented: deque[bytes] = deque([credentials.cert_pem], maxlen=_MAX_HANDOVERS + 1)
        self._handovers: deque[HandoverStep] = deque(maxlen=_MAX_HANDOVERS)
        self._renew = renew
        self._renew_margin_s = renew_margin_s
        self._renew_at = _renewal_due(credentials.cert_pem, renew_margin_s)
        self._renew_lock = threading.Lock()
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self._allowlist: AllowList[IdentityT] = AllowList(
            max_entries=max_enrolled,
            when_full=WhenFull.EVICT_LEAST_RECENTLY_USED if open_enrolment else WhenFull.REFUSE,
        )
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
            server_certificates=lambda: list(reversed(self._presented)),
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
            ("grpc.server_handshake_timeout_ms", _HANDSHAKE_TIMEOUT_MS),
        ]
        service_options = [
            *common,
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._service: AsyncListener | ThreadedListener
        if open_enrolment:
            total = max_concurrent_rpcs or 4096
            self._service = AsyncListener(
                name="sealfl-rpc",
                options=service_options,
                max_workers=max_workers,
                admission=AdmissionPolicy(
                    read_deadline_s=read_deadline_s,
                    idle_deadline_s=read_deadline_s,
                    max_calls_per_address=min(max_calls_per_address, total),
                    max_calls=total,
                ),
            )
        else:
            self._service = ThreadedListener(
                name="sealfl-rpc",
                options=service_options,
                max_workers=max_workers,
                max_concurrent_rpcs=max_concurrent_rpcs,
            )
        self._front = AsyncListener(
            name="sealfl-enrol",
            options=[
                *common,
                ("grpc.max_send_message_length", _FRONT_DOOR_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _FRONT_DOOR_MAX_MESSAGE_BYTES),
            ],
            max_workers=_FRONT_DOOR_WORKERS,
            admission=FRONT_DOOR_ADMISSION,
        )
        self._loop: LoopThread | None = None
        self._renewal_task: concurrent.futures.Future[None] | None = None
        self._stopped = threading.Event()
        self._service_port = 0
        self._front_port = 0
        self._state = ServerState.CREATED
        enrolment_pb2_grpc.add_EnrolmentServicer_to_server(
            EnrolmentServicer(
                self._desk, self._challenges, lambda: self._service_port, self._handovers_from
            ),
            self._front.registrar(None),
        )
        self.add_servicer(
            enrolment_pb2_grpc.add_SessionServicer_to_server, SessionServicer(self._allowlist)
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
        add_to_server(servicer, self._service.registrar(self._check_peer))

    def add_handler(self, handler: grpc.GenericRpcHandler) -> None:
        """Register hand-written handlers on the mutual-TLS listener (before :meth:`start`).

        For methods without a generated servicer, e.g. ones whose messages are raw bytes. They
        run the per-RPC peer check like every servicer's handlers.
        """
        self._require(ServerState.CREATED, "add a handler")
        self._service.registrar(self._check_peer).add_generic_rpc_handlers((handler,))

    def add_front_door_servicer(
        self, add_to_server: Callable[[Any, grpc.Server], None], servicer: Any
    ) -> None:
        """Register a servicer on the front door, beside enrolment (before :meth:`start`).

        Hazard: front-door callers are anonymous (TLS without a client certificate), so no peer
        check runs and :meth:`identity_of` knows nobody there. Only methods that grant nothing
        by themselves belong here: handing out a challenge nonce that a later, authenticated
        call must present (the key broker's ``Challenge``), or refusing a call that was sent to
        the wrong listener so the refusal can be recorded. Messages are limited to 1 MiB, and
        the front door's read deadline and per-address limits apply.
        """
        self._require(ServerState.CREATED, "add a front-door servicer")
        add_to_server(servicer, self._front.registrar(None))

    def replace_credentials(self, credentials: Credentials) -> None:
        """Present a new certificate and key on both listeners from the next handshake on.

        No handover is signed: clients pinned to the old certificate will fail to reconnect
        (they must verify the new one afresh), which is exactly the protection pinning gives
        against a swapped server key. A planned renewal goes through ``renew`` instead.
        """
        check_key_matches_certificate(credentials, party="server")
        self._credentials = credentials
        self._credentials_version += 1
        # Clients that fetch the new certificate bind their enrolment proofs to it.
        self._presented.append(credentials.cert_pem)
        _log.warning(
            "server credentials replaced: now sha256:%s",
            certificate_fingerprint(credentials.cert_pem),
        )

    # -- renewal ------------------------------------------------------------------------------

    @property
    def certificate_pem(self) -> bytes:
        """The certificate presented now."""
        return self._credentials.cert_pem

    @property
    def renews_at(self) -> float | None:
        """Unix time at which the certificate is renewed next (None without ``renew``)."""
        return self._renew_at if self._renew is not None else None

    def renew_if_due(self) -> bool:
        """Renew the certificate if its renewal time has come; return whether it did.

        Runs by itself every 30 s while the server serves; call it directly with an injected
        clock. A failure to make credentials is logged and retried a minute later: the old
        certificate stays in use until it expires.
        """
        if self._renew is None or self._state is ServerState.STOPPED:
            return False
        with self._renew_lock:
            now = self._clock()
            if now < self._renew_at:
                return False
            try:
                fresh = self._renew()
                check_key_matches_certificate(fresh, party="server (renewed)")
            except Exception as exc:  # the old certificate serves on; say why and try later
                _log.warning("server certificate renewal failed: %s; retrying later", exc)
                self._renew_at = now + _RENEW_RETRY_S
                return False
            self._hand_over(fresh)
            return True

    def _hand_over(self, fresh: Credentials) -> None:
        old = self._credentials
        old_fingerprint = certificate_fingerprint(old.cert_pem)
        signature = sign_possession(old.key_pem, handover_message(old_fingerprint, fresh.cert_pem))
        self._handovers.append(HandoverStep(old_fingerprint, fresh.cert_pem, signature))
        self._presented.append(fresh.cert_pem)
        self._credentials = fresh
        self._credentials_version += 1
        self._renew_at = _renewal_due(fresh.cert_pem, self._renew_margin_s)
        _log.info(
            "server certificate renewed: sha256:%s hands over to sha256:%s",
            old_fingerprint,
            certificate_fingerprint(fresh.cert_pem),
        )

    def _handovers_from(self, fingerprint: str) -> Sequence[HandoverStep]:
        steps = list(self._handovers)
        for index, step in enumerate(steps):
            if step.from_fingerprint == fingerprint:
                return steps[index:]
        return []

    async def _renew_periodically(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_RENEW_POLL_S)
            await loop.run_in_executor(None, self.renew_if_due)

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
        loop = self._loop = LoopThread("sealfl-server-loop")
        try:
            self._service_port = self._service.bind(
                loop, self._service_requested, service_credentials
            )
            self._front_port = self._front.bind(loop, self._address_requested, front_credentials)
        except ChannelError:
            self.stop(None)  # release whatever was bound; a server starts once
            raise
        self._service.start(loop)
        self._front.start(loop)
        self._state = ServerState.SERVING
        if self._renew is not None:
            self._renewal_task = asyncio.run_coroutine_threadsafe(
                self._renew_periodically(), loop.loop
            )
        _log.info(
            "serving: front door %s, %s service %s",
            self.address,
            "open-enrolment" if self.open_enrolment else "mutual-TLS",
            self.service_address,
        )
        return self.address

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop both listeners, letting calls in flight finish for ``grace`` seconds."""
        if self._state is ServerState.STOPPED:
            return
        self._state = ServerState.STOPPED
        loop = self._loop
        if loop is not None:
            if self._renewal_task is not None:
                self._renewal_task.cancel()
            done = threading.Thread(target=self._service.stop, args=(loop, grace))
            done.start()  # both listeners drain at once, as the threaded servers did
            self._front.stop(loop, grace)
            done.join()
            loop.stop()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); return whether it stopped."""
        return self._stopped.wait(timeout)

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

    @property
    def evictions(self) -> int:
        """How many enrolments were evicted to make room (open enrolment only)."""
        return self._allowlist.evictions

    def revoke(self, fingerprint: str) -> bool:
        """Remove a client from the allow-list and refuse its certificate from now on.

        Its next RPC and handshake are refused, and so is enrolling the same certificate again
        or renewing from it (the client must come back with a new certificate, which the
        verifier checks afresh, as a new lineage). Returns whether the certificate was enrolled.
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
        entry = caller_enrolment(context) or self._lookup(context)
        if entry is None:
            raise ChannelError(f"caller {context.peer()} is not an enrolled client")
        return cast(IdentityT, entry.identity)

    # -- internals ----------------------------------------------------------------------------

    def _require(self, state: ServerState, action: str) -> None:
        if self._state is not state:
            raise ConfigError(
                f"SecureServer: cannot {action} in state {self._state.value!r} "
                f"(only when {state.value!r}); a server starts once and cannot be restarted"
            )

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
        entry = self._allowlist.lookup(fingerprint, self._clock())
        if entry is None:
            revoked = self._allowlist.is_revoked(fingerprint)
            _log.warning(
                "refused RPC from %s: certificate sha256:%s %s",
                context.peer(),
                fingerprint,
                "revoked" if revoked else "not enrolled",
            )
            context.set_trailing_metadata(
                ((ENROLMENT_STATE_KEY, "revoked" if revoked else "not-enrolled"),)
            )
            if revoked:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client certificate sha256:{fingerprint} was revoked on this server",
                )
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"client certificate sha256:{fingerprint} is not enrolled "
                "(never enrolled, left, evicted, or its enrolment lapsed): enrol again",
            )
        remember_caller(context, entry)

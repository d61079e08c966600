"""The broker's gRPC face: start it, serve until told to stop.

:func:`start_kbs` opens the sealed store (refusing a tampered one), generates missing
``generate`` resources, opens the audit log and starts a :class:`~sealfl.net.SecureServer`
whose peer verifier is :meth:`Broker.verify_enrolment`, with the ``KeyBroker`` service on both
listeners (see :mod:`sealfl.kbs` for the protocol). :func:`serve_kbs` does that and blocks until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc

from sealfl.errors import ConfigError
from sealfl.kbs.audit import AuditLog
from sealfl.kbs.broker import Broker, KbsPeer, RequestDeniedError
from sealfl.kbs.config import MAX_VALUE_BYTES, KbsSettings, ResourceSettings
from sealfl.kbs.nonces import NonceBook
from sealfl.kbs.protos import kbs_pb2, kbs_pb2_grpc
from sealfl.kbs.store import ResourceStore
from sealfl.net import Credentials, SecureServer, certificate_fingerprint
from sealfl.seal import SealingKey
from sealfl.tee import Policy, load_policy

__all__ = ["RunningKbs", "serve_kbs", "start_kbs"]

_log = logging.getLogger(__name__)

_STATUS = {
    "denied": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}
_MIN_ENROLMENT_TTL_S = 60.0
_MAX_ENROLLED = 4096


def _abort(context: grpc.ServicerContext, denial: RequestDeniedError) -> Any:
    context.abort(_STATUS.get(denial.kind, grpc.StatusCode.PERMISSION_DENIED), denial.reason)


def _challenge_reply(broker: Broker) -> kbs_pb2.ChallengeReply:
    nonce, expires_at = broker.challenge()
    return kbs_pb2.ChallengeReply(nonce=nonce, expires_at=expires_at)


class _ServiceServicer(kbs_pb2_grpc.KeyBrokerServicer):
    """``KeyBroker`` on the mutual-TLS listener: the callers are enrolled (the guard checked)."""

    def __init__(self, broker: Broker, server: SecureServer[KbsPeer]) -> None:
        self._broker = broker
        self._server = server

    def Challenge(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.ChallengeRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.ChallengeReply:
        """Issue a nonce (also offered here, for a requester that fetches again)."""
        return _challenge_reply(self._broker)

    def GetResource(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.GetResourceRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.GetResourceReply:
        """Release a resource to an attested requester, or refuse with the reason."""
        peer = self._server.identity_of(context)
        try:
            value, generation = self._broker.release(peer, request.name, address=context.peer())
        except RequestDeniedError as denial:
            return _abort(context, denial)
        return kbs_pb2.GetResourceReply(name=request.name, value=value, generation=generation)

    def Put(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.PutRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.PutReply:
        """Store a value (admins only)."""
        peer = self._server.identity_of(context)
        try:
            generation = self._broker.put(peer, request.name, request.value, address=context.peer())
        except RequestDeniedError as denial:
            return _abort(context, denial)
        return kbs_pb2.PutReply(name=request.name, generation=generation)

    def Revoke(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.RevokeRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.RevokeReply:
        """Revoke a resource (admins only)."""
        peer = self._server.identity_of(context)
        try:
            was_active = self._broker.revoke(peer, request.name, address=context.peer())
        except RequestDeniedError as denial:
            return _abort(context, denial)
        return kbs_pb2.RevokeReply(name=request.name, was_active=was_active)


class _FrontDoorServicer(kbs_pb2_grpc.KeyBrokerServicer):
    """``KeyBroker`` on the front door: Challenge answers; the rest is refused and audited.

    The mutual-TLS listener refuses a certificate that never enrolled during the TLS handshake,
    before any handler could record it (gRPC Python has no handshake hook). A client that skips
    enrolment and calls the broker where it can be heard (here) is refused with an audit line.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def Challenge(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.ChallengeRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.ChallengeReply:
        """Issue a nonce to anyone: it grants nothing until an attested certificate carries it."""
        return _challenge_reply(self._broker)

    def _refuse(self, action: str, name: str, context: grpc.ServicerContext) -> Any:
        try:
            self._broker.refuse_unenrolled(action, name, address=context.peer())
        except RequestDeniedError as denial:
            return _abort(context, denial)

    def GetResource(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.GetResourceRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.GetResourceReply:
        """Refuse: nobody is enrolled on the front door."""
        return self._refuse("get", request.name, context)

    def Put(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.PutRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.PutReply:
        """Refuse: nobody is enrolled on the front door."""
        return self._refuse("put", request.name, context)

    def Revoke(  # noqa: N802 - gRPC method name
        self, request: kbs_pb2.RevokeRequest, context: grpc.ServicerContext
    ) -> kbs_pb2.RevokeReply:
        """Refuse: nobody is enrolled on the front door."""
        return self._refuse("revoke", request.name, context)


@dataclass
class RunningKbs:
    """A started broker.

    Attributes
    ----------
    address
        Front door ``host:port``: what requesters and admins are given.
    service_address
        The mutual-TLS listener (clients learn it when they enrol).
    fingerprint
        SHA-256 (hex) of the broker's certificate, for clients that pin it.
    """

    address: str
    service_address: str
    fingerprint: str
    broker: Broker
    server: SecureServer[KbsPeer]
    audit: AuditLog
    store: ResourceStore

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (calls in flight get ``grace`` seconds), then close the audit log."""
        self.server.stop(grace)
        self.audit.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops or ``timeout`` passes; return whether it stopped."""
        return self.server.wait(timeout)

    def __enter__(self) -> RunningKbs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _policies(
    settings: KbsSettings, overrides: Mapping[str, Policy] | None
) -> dict[str, tuple[ResourceSettings, Policy]]:
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {r.name for r in settings.resources})
    if unknown:
        raise ConfigError(
            f"{settings.source}: policies given for resources the broker does not serve: {unknown}"
        )
    result: dict[str, tuple[ResourceSettings, Policy]] = {}
    for resource in settings.resources:
        policy = overrides.get(resource.name)
        if policy is None:
            if resource.policy is None:
                raise ConfigError(
                    f"{settings.source}: resource {resource.name!r} has no policy file"
                )
            policy = load_policy(resource.policy)
        result[resource.name] = (resource, policy)
    return result


def start_kbs(
    settings: KbsSettings,
    *,
    credentials: Credentials,
    sealing_key: SealingKey,
    collateral: Any = None,
    clock: Callable[[], float] = time.time,
    policies: Mapping[str, Policy] | None = None,
    audit_fsync: bool = True,
) -> RunningKbs:
    """Open the store and the audit log, and start serving.

    Parameters
    ----------
    settings
        The ``[kbs]`` table.
    credentials
        The broker's certificate and key: RA-TLS from its TEE, or a plain certificate that
        requesters pin (a broker on the model owner's trusted node).
    sealing_key
        Seals the store (from the broker's TEE, or a key file on a trusted node).
    collateral
        Passed to every resource's verifier as it is (real SGX/TDX quotes need it).
    clock
        Unix time for verification, nonces, enrolments and the audit log (tests inject one).
    policies
        Policies by resource name, used instead of the files the settings name.
    audit_fsync
        See :class:`~sealfl.kbs.audit.AuditLog`; leave it on outside benchmarks.

    Raises
    ------
    SealError
        If the store is tampered or sealed with another key.
    ConfigError
        If a policy, the store, the audit log or an address cannot be used.
    ChannelError
        If an address cannot be bound.
    """
    resources = _policies(settings, policies)
    store = ResourceStore.open(settings.store, sealing_key)
    audit = AuditLog(settings.audit_log, fsync=audit_fsync)
    try:
        broker = Broker(
            resources=resources,
            store=store,
            audit=audit,
            admins=settings.admins,
            nonces=NonceBook(ttl_s=settings.nonce_ttl_s, clock=clock),
            collateral=collateral,
            clock=clock,
        )
        broker.generate_missing(os.urandom)
        server: SecureServer[KbsPeer] = SecureServer(
            credentials=credentials,
            peer_verifier=broker.verify_enrolment,
            address=settings.listen,
            service_address=settings.service_listen,
            max_message_bytes=MAX_VALUE_BYTES + 64 * 1024,
            # A requester enrols a fresh certificate for every fetch; it is useless once its
            # nonce is used or stale, so enrolments lapse soon and the allow-list stays small.
            enrolment_ttl_s=max(_MIN_ENROLMENT_TTL_S, 2 * settings.nonce_ttl_s),
            max_enrolled=_MAX_ENROLLED,
            on_enrol=broker.record_enrolment,
            on_refusal=broker.record_refusal,
            clock=clock,
        )
        server.add_servicer(
            kbs_pb2_grpc.add_KeyBrokerServicer_to_server, _ServiceServicer(broker, server)
        )
        server.add_front_door_servicer(
            kbs_pb2_grpc.add_KeyBrokerServicer_to_server, _FrontDoorServicer(broker)
        )
        address = server.start()
    except BaseException:
        audit.close()
        raise
    running = RunningKbs(
        address=address,
        service_address=server.service_address,
        fingerprint=certificate_fingerprint(credentials.cert_pem),
        broker=broker,
        server=server,
        audit=audit,
        store=store,
    )
    _log.info(
        "kbs serving %d resources at %s (service %s), certificate sha256:%s",
        len(resources),
        running.address,
        running.service_address,
        running.fingerprint,
    )
    return running


def serve_kbs(
    settings: KbsSettings,
    *,
    credentials: Credentials,
    sealing_key: SealingKey,
    collateral: Any = None,
    on_line: Callable[[str], None] = print,
    on_ready: Callable[[RunningKbs], None] | None = None,
    policies: Mapping[str, Policy] | None = None,
) -> None:
    """Start the broker and block until SIGTERM or SIGINT, then stop it cleanly.

    Must be called from the main thread (it installs the signal handlers, and restores the
    previous ones on return).

    Parameters
    ----------
    on_line
        Receives the human-readable status lines (where it serves, its fingerprint, stopping).
    on_ready
        Called once the broker serves (e.g. to write a ready file for a supervisor).
    """
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        running = start_kbs(
            settings,
            credentials=credentials,
            sealing_key=sealing_key,
            collateral=collateral,
            policies=policies,
        )
        try:
            names = running.broker.resource_names()
            on_line(
                f"kbs serving {len(names)} resource(s) at {running.address} "
                f"(mutual-TLS service {running.service_address})"
            )
            on_line(f"kbs certificate sha256:{running.fingerprint}")
            on_line(f"kbs audit log {settings.audit_log}, store {settings.store}")
            if on_ready is not None:
                on_ready(running)
            while not stop.wait(0.5):
                pass
            on_line("kbs stopping")
        finally:
            running.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

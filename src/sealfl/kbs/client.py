"""Asking a key broker for a resource (requesters), and putting or revoking one (admins).

A requester runs in a TEE: :class:`KbsClient` takes its evidence provider and, for each fetch,
asks the broker's front door for a challenge, makes a fresh RA-TLS certificate whose claims
hold that nonce (and the resource's name), enrols it, and calls ``GetResource`` over mutual
TLS. The broker itself is verified first (``server_verifier``: its RA-TLS evidence against a
policy, or a pinned fingerprint) and pinned for every connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import grpc

from sealfl.errors import ChannelError
from sealfl.kbs.broker import RESOURCE_CLAIM
from sealfl.kbs.config import check_resource_name
from sealfl.kbs.protos import kbs_pb2, kbs_pb2_grpc
from sealfl.net import (
    Credentials,
    SecureChannel,
    certificate_fingerprint,
    fetch_server_certificate,
    open_secure_channel,
)
from sealfl.net.certificates import pinning_name
from sealfl.seal import SealingKey
from sealfl.tee import EvidenceProvider, RaTlsCredentials, create_ratls_certificate

__all__ = ["KbsAdmin", "KbsClient", "KbsRefusedError", "get_resource"]

DEFAULT_TIMEOUT_S = 10.0
# A certificate made for one fetch needs to outlive only that fetch (and clock skew).
_REQUEST_CERT_LIFETIME = timedelta(minutes=10)


class KbsRefusedError(ChannelError):
    """The broker refused a request; :attr:`reason` is what it said (also in its audit log)."""

    def __init__(self, message: str, *, reason: str, code: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


def _refusal(exc: grpc.RpcError, *, what: str, address: str) -> ChannelError:
    if not isinstance(exc, grpc.Call):
        return ChannelError(f"{what}: broker at {address}: {exc}")
    code, details = exc.code(), exc.details() or ""
    if code in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    ):
        return KbsRefusedError(
            f"{what}: broker at {address} refused: {details}", reason=details, code=code.name
        )
    return ChannelError(f"{what}: broker at {address} answered {code.name}: {details}")


def _call(channel: SecureChannel[Any], method: Callable[..., Any], request: Any, what: str) -> Any:
    try:
        return method(request, timeout=channel.default_timeout_s)
    except grpc.RpcError as exc:
        error = _refusal(exc, what=what, address=channel.front_door or channel.address)
        if not isinstance(error, KbsRefusedError):
            error = channel.diagnose(exc, what=what)
        raise error from exc


def get_resource(channel: SecureChannel[Any], name: str) -> tuple[bytes, int]:
    """Call ``GetResource`` on an open channel to a broker; return ``(value, generation)``.

    One certificate answers one request: a second call with the same channel is refused as a
    replay. :meth:`KbsClient.fetch` makes the channel; this is its last step.

    Raises
    ------
    KbsRefusedError
        With the broker's reason.
    ChannelError
        If the call fails otherwise.
    """
    stub = channel.stub(kbs_pb2_grpc.KeyBrokerStub)
    reply = _call(channel, stub.GetResource, kbs_pb2.GetResourceRequest(name=name), "GetResource")
    if reply.name != name:
        raise ChannelError(
            f"GetResource: broker at {channel.address} answered for {reply.name!r}, asked {name!r}"
        )
    return bytes(reply.value), int(reply.generation)


class KbsClient:
    """A requester in a TEE that fetches resources from a key broker.

    Parameters
    ----------
    address
        The broker's front door ``host:port``.
    server_verifier
        ``verifier(broker_cert_pem) -> identity``, raising ``AttestationError`` to refuse: an
        RA-TLS verifier for a broker in a TEE, or ``fingerprint_verifier`` for a pinned one.
    provider
        This party's evidence provider: every fetch's certificate is made by it, fresh.
    hostnames
        Names in the requester certificates' subjectAltName.
    timeout_s
        Deadline of each step.
    """

    def __init__(
        self,
        address: str,
        *,
        server_verifier: Callable[[bytes], Any],
        provider: EvidenceProvider,
        hostnames: Sequence[str] = ("localhost",),
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.address = address
        self._server_verifier = server_verifier
        self._provider = provider
        self._hostnames = tuple(hostnames)
        self._timeout_s = timeout_s
        self._verified: tuple[str, bytes, Any] | None = None  # fingerprint, PEM, identity

    def verify_broker(self) -> Any:
        """Fetch the broker's certificate and verify it (once per certificate); return its identity.

        Raises
        ------
        AttestationError
            If the verifier refuses the broker.
        ChannelError
            If the broker cannot be reached.
        """
        pem = fetch_server_certificate(self.address, timeout=self._timeout_s)
        fingerprint = certificate_fingerprint(pem)
        if self._verified is None or self._verified[0] != fingerprint:
            identity = self._server_verifier(pem)
            self._verified = (fingerprint, pem, identity)
        return self._verified[2]

    def _pinned_verifier(self) -> Callable[[bytes], Any]:
        """Return a verifier that accepts exactly the broker certificate verified before."""
        assert self._verified is not None
        fingerprint, _, identity = self._verified

        def verify(pem: bytes) -> Any:
            if certificate_fingerprint(pem) != fingerprint:
                return self._server_verifier(pem)  # the broker changed: verify it in full
            return identity

        return verify

    def challenge(self) -> bytes:
        """Ask the broker's front door for a nonce (over TLS pinned to the verified broker).

        The broker is verified on the first call; later calls reuse that pin, and verify
        again only if the broker now presents another certificate (e.g. after a restart).

        Raises
        ------
        AttestationError
            If the broker's (new) certificate fails ``server_verifier``.
        ChannelError
            If the broker cannot be reached or refuses.
        """
        if self._verified is None:
            self.verify_broker()
            return self._challenge_pinned()
        try:
            return self._challenge_pinned()
        except ChannelError:
            self.verify_broker()
            return self._challenge_pinned()

    def _challenge_pinned(self) -> bytes:
        assert self._verified is not None
        pem = self._verified[1]
        channel = grpc.secure_channel(
            self.address,
            grpc.ssl_channel_credentials(root_certificates=pem),
            options=[
                ("grpc.ssl_target_name_override", pinning_name(pem)),
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        try:
            stub = kbs_pb2_grpc.KeyBrokerStub(channel)
            reply = stub.Challenge(kbs_pb2.ChallengeRequest(), timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise _refusal(exc, what="Challenge", address=self.address) from exc
        finally:
            channel.close()
        return bytes(reply.nonce)

    def make_certificate(self, nonce: bytes, name: str | None) -> RaTlsCredentials:
        """Make a fresh RA-TLS certificate bound to ``nonce`` (and to resource ``name``)."""
        claims = {RESOURCE_CLAIM: name.encode()} if name is not None else None
        return create_ratls_certificate(
            self._provider,
            claims=claims,
            nonce=nonce,
            lifetime=_REQUEST_CERT_LIFETIME,
            hostnames=self._hostnames,
        )

    def connect(self, credentials: Credentials) -> SecureChannel[Any]:
        """Enrol ``credentials`` at the broker and open a mutual-TLS channel with them.

        Raises
        ------
        ChannelError
            If the broker refuses the enrolment (with its reason) or cannot be reached.
        """
        if self._verified is None:
            self.verify_broker()
        return open_secure_channel(
            self.address,
            credentials=credentials,
            server_verifier=self._pinned_verifier(),
            timeout_s=self._timeout_s,
            default_timeout_s=self._timeout_s,
        )

    def fetch_with_generation(self, name: str) -> tuple[bytes, int]:
        """Like :meth:`fetch`, also returning the value's generation."""
        check_resource_name(name)
        nonce = self.challenge()
        credentials = self.make_certificate(nonce, name)
        with self.connect(credentials) as channel:
            return get_resource(channel, name)

    def fetch(self, name: str) -> bytes:
        """Fetch resource ``name``: challenge, fresh certificate, enrol, release.

        Raises
        ------
        AttestationError
            If the broker's certificate fails ``server_verifier``.
        KbsRefusedError
            If the broker refuses (the reason is the broker's; the same is in its audit log).
        ChannelError
            If the broker refuses our enrolment (its reason included) or cannot be reached.
        ConfigError
            If ``name`` is not ``repo/type/tag``.
        """
        return self.fetch_with_generation(name)[0]

    def fetch_sealing_key(self, name: str) -> SealingKey:
        """Fetch a 32-byte resource and return it as a :class:`~sealfl.seal.SealingKey`.

        Raises
        ------
        SealError
            If the resource is not 32 bytes.
        """
        return SealingKey(self.fetch(name))


class KbsAdmin:
    """An administrator of a key broker: puts and revokes resources.

    Each operation enrols the admin certificate and opens a fresh channel (admin operations are
    rare, and the broker's enrolments lapse within minutes).

    Parameters
    ----------
    address
        The broker's front door.
    server_verifier
        As for :class:`KbsClient`.
    credentials
        The admin certificate (its fingerprint listed in the broker's ``kbs.admins``) and key.
    """

    def __init__(
        self,
        address: str,
        *,
        server_verifier: Callable[[bytes], Any],
        credentials: Credentials,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.address = address
        self._server_verifier = server_verifier
        self._credentials = credentials
        self._timeout_s = timeout_s

    def _channel(self) -> SecureChannel[Any]:
        return open_secure_channel(
            self.address,
            credentials=self._credentials,
            server_verifier=self._server_verifier,
            timeout_s=self._timeout_s,
            default_timeout_s=self._timeout_s,
        )

    def put(self, name: str, value: bytes) -> int:
        """Store ``value`` as resource ``name``; return its new generation.

        Raises
        ------
        KbsRefusedError
            If the broker refuses (not an admin, unknown resource, wrong size).
        ChannelError
            If the broker refuses our enrolment or cannot be reached.
        """
        check_resource_name(name)
        with self._channel() as channel:
            stub = channel.stub(kbs_pb2_grpc.KeyBrokerStub)
            request = kbs_pb2.PutRequest(name=name, value=bytes(value))
            reply = _call(channel, stub.Put, request, "Put")
            return int(reply.generation)

    def revoke(self, name: str) -> bool:
        """Revoke resource ``name``; return whether it was active.

        Raises
        ------
        KbsRefusedError
            If the broker refuses.
        ChannelError
            If the broker refuses our enrolment or cannot be reached.
        """
        check_resource_name(name)
        with self._channel() as channel:
            stub = channel.stub(kbs_pb2_grpc.KeyBrokerStub)
            reply = _call(channel, stub.Revoke, kbs_pb2.RevokeRequest(name=name), "Revoke")
            return bool(reply.was_active)

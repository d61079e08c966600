"""Client side of the front door: enrol (or renew) a certificate, follow a server's handover.

Both talk to the front door over a *bootstrap* channel: TLS pinned to the server certificate
the client is dealing with, without a client certificate (the front door asks for none).
Every call here is idempotent (a Challenge hands out a nonce, enrolling the same certificate
again only refreshes its entry, a Handover reads public data), so each is repeated with a
jittered backoff when the server is unreachable, busy or slow to answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives import serialization

from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net.addresses import join_address, split_address
from sealfl.net.calls import CertificatePinError, RetryPolicy, describe_rpc_error, run_with_retry
from sealfl.net.certificates import (
    Credentials,
    certificate_fingerprint,
    fetch_server_certificate,
    load_certificate,
    pinning_name,
)
from sealfl.net.possession import (
    handover_message,
    possession_message,
    renewal_message,
    sign_possession,
    verify_possession,
)
from sealfl.net.protos import enrolment_pb2, enrolment_pb2_grpc

__all__ = ["EnrolmentReceipt", "broken_pin", "enrol", "follow_handover", "leave"]

_ENROLMENT_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_MAX_HANDOVER_STEPS = 64


@dataclass(frozen=True)
class EnrolmentReceipt:
    """What the server said when it enrolled us.

    ``lineage`` is the fingerprint of the first certificate of our chain of renewals as the
    server knows it; ``enrolled_at`` is our own clock's time of enrolment.
    """

    fingerprint: str
    expires_at: float
    service_address: str
    lineage: str = ""
    enrolled_at: float = 0.0


def channel_options(server_cert_pem: bytes, max_message_bytes: int) -> list[tuple[str, object]]:
    """Options of every channel pinned to ``server_cert_pem``."""
    return [
        ("grpc.ssl_target_name_override", pinning_name(server_cert_pem)),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Own subchannels: never share a connection (and its TLS identity) with another channel.
        ("grpc.use_local_subchannel_pool", 1),
    ]


def broken_pin(address: str, pinned: str, presented_pem: bytes) -> CertificatePinError | None:
    """Return the error for a server presenting another certificate than the pinned one."""
    found = certificate_fingerprint(presented_pem)
    if found == pinned:
        return None
    return CertificatePinError(
        f"server at {address}: certificate changed after verification: pinned "
        f"sha256:{pinned}, found sha256:{found}; its key was swapped, "
        "so the connection is refused (verify the server again to trust the new key)"
    )


def _bootstrap(address: str, server_pem: bytes, max_message_bytes: int) -> grpc.Channel:
    return grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(root_certificates=server_pem),
        options=channel_options(server_pem, max_message_bytes),
    )


def enrol(
    address: str,
    server_pem: bytes,
    credentials: Credentials,
    *,
    timeout_s: float,
    retry: RetryPolicy,
    max_message_bytes: int,
    predecessor: Credentials | None = None,
    clock: Callable[[], float] = time.time,
) -> EnrolmentReceipt:
    """Enrol ``credentials`` at the front door ``address`` (renewing ``predecessor`` if given).

    Raises
    ------
    CertificatePinError
        If the server presents another certificate than ``server_pem`` meanwhile.
    ChannelError
        If the server refuses (with its reason) or cannot be reached.
    """
    bootstrap = _bootstrap(address, server_pem, max_message_bytes)
    stub = enrolment_pb2_grpc.EnrolmentStub(bootstrap)
    fingerprint = certificate_fingerprint(credentials.cert_pem)
    server_fingerprint = certificate_fingerprint(server_pem)
    old = "" if predecessor is None else certificate_fingerprint(predecessor.cert_pem)

    def attempt() -> enrolment_pb2.EnrolReply:
        # A fresh nonce per attempt: a retried Enrol must not reuse a consumed one.
        nonce = stub.Challenge(enrolment_pb2.ChallengeRequest(), timeout=timeout_s).nonce
        message = possession_message(nonce, server_pem, credentials.cert_pem)
        request = enrolment_pb2.EnrolRequest(
            certificate_pem=credentials.cert_pem,
            nonce=nonce,
            signature=sign_possession(credentials.key_pem, message),
        )
        if predecessor is not None:
            request.predecessor_fingerprint = old
            request.predecessor_signature = sign_possession(
                predecessor.key_pem, renewal_message(nonce, server_pem, credentials.cert_pem, old)
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
            broken = None if current is None else broken_pin(address, server_fingerprint, current)
            if broken is not None:
                return CertificatePinError(f"enrolment: {broken}")
        return describe_rpc_error(exc, what="enrolment", peer=f"server at {address}")

    try:
        reply = run_with_retry(
            attempt, retry=retry, describe=describe, transient=_ENROLMENT_TRANSIENT
        )
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
    return EnrolmentReceipt(
        fingerprint,
        reply.expires_at,
        join_address(host, reply.service_port),
        lineage=reply.lineage or fingerprint,
        enrolled_at=clock(),
    )


def follow_handover(
    address: str,
    pinned_pem: bytes,
    presented_pem: bytes,
    *,
    timeout_s: float,
    max_message_bytes: int,
) -> bytes:
    """Return the certificate a server renewed to, proven by signatures from ``pinned_pem`` on.

    The server at ``address`` presents ``presented_pem`` instead of the pinned certificate. Its
    front door lists the handovers since the pinned one; each must be signed by the key of the
    certificate before it, starting with the pinned one. The caller must still verify the
    returned certificate with its verifier (a handover proves continuity, not trust).

    Raises
    ------
    CertificatePinError
        If the server shows no handover from the pinned certificate, or a signature fails: the
        key was swapped rather than renewed.
    ChannelError
        If the front door cannot be reached.
    """
    pinned = certificate_fingerprint(pinned_pem)
    bootstrap = _bootstrap(address, presented_pem, max_message_bytes)
    stub = enrolment_pb2_grpc.EnrolmentStub(bootstrap)
    try:
        reply: enrolment_pb2.HandoverReply = run_with_retry(
            lambda: stub.Handover(
                enrolment_pb2.HandoverRequest(from_fingerprint=pinned), timeout=timeout_s
            ),
            retry=RetryPolicy(attempts=3),
            describe=lambda exc: describe_rpc_error(
                exc, what="handover", peer=f"server at {address}"
            ),
        )
    finally:
        bootstrap.close()
    swapped = broken_pin(address, pinned, presented_pem) or CertificatePinError(
        f"server at {address}: certificate changed"
    )
    if not reply.steps:
        raise CertificatePinError(
            f"{swapped} (and it shows no signed handover from the pinned one)"
        )
    if len(reply.steps) > _MAX_HANDOVER_STEPS:
        raise CertificatePinError(
            f"{swapped} (its handover has {len(reply.steps)} steps, at most "
            f"{_MAX_HANDOVER_STEPS} accepted)"
        )
    signer, previous = load_certificate(pinned_pem, what="pinned server certificate"), pinned
    for index, step in enumerate(reply.steps):
        try:
            following = load_certificate(step.certificate_pem, what=f"handover step {index}")
            verify_possession(
                signer,
                handover_message(previous, step.certificate_pem),
                step.signature,
                what=f"server handover step {index}",
                meaning="the previous certificate's key did not sign it",
            )
        except (AttestationError, ConfigError) as exc:  # ConfigError: a step does not parse
            raise CertificatePinError(f"{swapped} (handover refused: {exc})") from exc
        signer, previous = following, certificate_fingerprint(step.certificate_pem)
    if previous != certificate_fingerprint(presented_pem):
        raise CertificatePinError(
            f"{swapped} (its signed handover ends at sha256:{previous}, not at the certificate "
            "it presents)"
        )
    return signer.public_bytes(serialization.Encoding.PEM)


def leave(channel: grpc.Channel, *, timeout_s: float = 0.5) -> bool:
    """Tell the server we are done (frees our allow-list slot); False if that failed."""
    try:
        reply = enrolment_pb2_grpc.SessionStub(channel).Leave(
            enrolment_pb2.LeaveRequest(), timeout=timeout_s
        )
    except grpc.RpcError:
        return False  # an older server, or one that is gone: the enrolment lapses by itself
    return bool(reply.left)

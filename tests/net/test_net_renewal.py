"""Runs longer than a certificate: renewal on both sides, with injected clocks, real TLS.

Certificates here live an hour, as RA-TLS certificates do. The parties' clocks are injected, so
"an hour later" is a number; TLS itself checks validity against the real clock, which is why
the certificates stay valid for the handshakes while the parties believe time has passed.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from sealfl.errors import AttestationError, ChannelError
from sealfl.net import (
    CertificateIdentity,
    CertificatePinError,
    SecureChannel,
    SecureServer,
    TensorStore,
    TlsCredentials,
    TransferServicer,
    accept_any_certificate,
    caller_lineage,
    certificate_fingerprint,
    make_self_signed_credentials,
    open_secure_channel,
    ping,
    put_tensor,
)
from sealfl.net.enrolment import HandoverStep
from sealfl.net.possession import (
    handover_message,
    possession_message,
    renewal_message,
    sign_possession,
)
from sealfl.net.protos import enrolment_pb2, enrolment_pb2_grpc, transfer_pb2, transfer_pb2_grpc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOUR = datetime.timedelta(hours=1)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def named(prefix: str) -> Callable[[bytes], CertificateIdentity]:
    """A verifier standing in for a measurement policy: it accepts one kind of party only."""

    def verify(cert_pem: bytes) -> CertificateIdentity:
        identity = accept_any_certificate(cert_pem)
        if not identity.subject.startswith(f"CN={prefix}-"):
            raise AttestationError(f"subject: expected CN={prefix}-…, found {identity.subject}")
        return identity

    return verify


class LineageRecorder(TransferServicer):
    """Records the lineage the server sees for each Ping, as a workload binding state would."""

    def __init__(self) -> None:
        super().__init__(TensorStore(max_total_bytes=64 << 20), chunk_bytes=64 << 10)
        self.lineages: list[str | None] = []

    def Ping(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.lineages.append(caller_lineage(context))
        return super().Ping(request, context)


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[SecureServer[Any], LineageRecorder]]]:
    servers: list[SecureServer[Any]] = []

    def make(**options: Any) -> tuple[SecureServer[Any], LineageRecorder]:
        options.setdefault("credentials", make_self_signed_credentials("server", lifetime=HOUR))
        options.setdefault("peer_verifier", named("worker"))
        server: SecureServer[Any] = SecureServer(**options)
        recorder = LineageRecorder()
        server.add_servicer(transfer_pb2_grpc.add_TransferServicer_to_server, recorder)
        server.start()
        servers.append(server)
        return server, recorder

    yield make
    for server in servers:
        server.stop(0)


def _worker() -> TlsCredentials:
    return make_self_signed_credentials("worker", lifetime=HOUR)


def _connect(server: SecureServer[Any], clock: Clock, **options: Any) -> SecureChannel[Any]:
    options.setdefault("credentials", _worker())
    return open_secure_channel(
        server.address, server_verifier=named("server"), clock=clock, timeout_s=5.0, **options
    )


def test_a_server_renews_ahead_of_expiry_and_its_clients_follow_the_signed_handover(
    serve: Any,
) -> None:
    server_clock, client_clock = Clock(), Clock()
    server, _ = serve(
        clock=server_clock, renew=lambda: make_self_signed_credentials("server", lifetime=HOUR)
    )
    channel = _connect(server, client_clock)
    first = channel.server_fingerprint
    assert ping(channel, b"before") == b"before"
    assert not server.renew_if_due()  # not yet: an hour-long certificate renews 15 min early

    server_clock.now += 46 * 60
    assert server.renew_if_due()
    renewed = certificate_fingerprint(server.certificate_pem)
    assert renewed != first
    # The connection open stays up: a round in progress is not interrupted.
    assert ping(channel, b"during") == b"during"
    assert channel.server_fingerprint == first

    client_clock.now += 56 * 60  # the pinned certificate nears its end: look for a handover
    assert ping(channel, b"after") == b"after"
    assert channel.server_fingerprint == renewed
    assert channel.renewals == 1
    channel.check_pin()  # the server presents exactly what is pinned now
    channel.close()


def test_a_client_follows_a_renewed_server_when_its_connection_is_recycled(serve: Any) -> None:
    server_clock = Clock()
    server, _ = serve(
        clock=server_clock,
        renew=lambda: make_self_signed_credentials("server", lifetime=HOUR),
        max_connection_age_s=0.3,
        connection_age_grace_s=0.1,
    )
    channel = _connect(server, Clock())  # its clock stands still: only the failure tells it
    server_clock.now += 46 * 60
    assert server.renew_if_due()
    time.sleep(0.6)  # the server closes the old connection; the next handshake needs the new pin
    for _ in range(3):
        assert ping(channel, b"again") == b"again"
    assert channel.server_fingerprint == certificate_fingerprint(server.certificate_pem)
    channel.close()


def test_a_renewed_server_certificate_the_verifier_refuses_is_not_followed(serve: Any) -> None:
    server_clock = Clock()
    # A genuine, signed handover to a certificate the client's policy does not accept.
    server, _ = serve(
        clock=server_clock,
        renew=lambda: make_self_signed_credentials("other", lifetime=HOUR),
        max_connection_age_s=0.3,
        connection_age_grace_s=0.1,
    )
    channel = _connect(server, Clock())
    server_clock.now += 46 * 60
    assert server.renew_if_due()
    time.sleep(0.6)
    with pytest.raises(AttestationError, match=r"failed verification: subject: expected CN=server"):
        ping(channel, b"x")
    assert channel.server_fingerprint != certificate_fingerprint(server.certificate_pem)
    channel.close()


def test_a_server_key_swapped_with_a_forged_handover_breaks_the_pin(serve: Any) -> None:
    server, _ = serve(max_connection_age_s=0.3, connection_age_grace_s=0.1)
    channel = _connect(server, Clock())
    pinned = channel.server_fingerprint
    # Whoever controls the host swaps the key and forges a handover, signing it with the new
    # key (the old one never left the enclave).
    impostor = make_self_signed_credentials("server", lifetime=HOUR)
    server.replace_credentials(impostor)
    forged = sign_possession(impostor.key_pem, handover_message(pinned, impostor.cert_pem))
    server._handovers.append(HandoverStep(pinned, impostor.cert_pem, forged))  # the attacker's
    time.sleep(0.6)
    with pytest.raises(CertificatePinError, match=r"handover refused: server handover step 0"):
        ping(channel, b"x")
    assert channel.server_fingerprint == pinned
    channel.close()


def test_a_server_key_swapped_without_a_handover_breaks_the_pin(serve: Any) -> None:
    server, _ = serve(max_connection_age_s=0.3, connection_age_grace_s=0.1)
    channel = _connect(server, Clock())
    server.replace_credentials(make_self_signed_credentials("server", lifetime=HOUR))
    time.sleep(0.6)
    with pytest.raises(CertificatePinError, match="no signed handover from the pinned one"):
        ping(channel, b"x")
    channel.close()


def test_a_client_renews_its_certificate_keeps_its_lineage_and_one_slot_mid_stream(
    serve: Any,
) -> None:
    server, recorder = serve()
    clock = Clock()
    channel = _connect(server, clock, renew=_worker)
    first = channel.client_fingerprint
    data = np.arange(1 << 18, dtype=np.uint64)
    put_tensor(channel, "w", data)
    assert ping(channel, b"1") == b"1"

    # A download in progress on the current connection...
    stub = channel.stub(transfer_pb2_grpc.TransferStub)
    chunks = channel.stream(stub.Get, transfer_pb2.GetRequest(name="w"))
    received = [next(chunks)]
    # ...while the certificate nears its notAfter and the next call renews it.
    clock.now += 51 * 60
    assert ping(channel, b"2") == b"2"
    assert channel.client_fingerprint != first
    assert channel.lineage == first
    received.extend(chunks)  # the download finishes on the old connection
    assert sum(len(c.data) for c in received) == data.nbytes

    (entry,) = server.enrolments()  # one slot: the renewal replaced the old certificate
    assert (entry.fingerprint, entry.lineage) == (channel.client_fingerprint, first)
    assert recorder.lineages == [first, first]  # the server saw the same client both times
    channel.close()


def test_a_client_whose_certificate_expires_without_a_factory_re_enrols_what_it_can(
    serve: Any,
) -> None:
    # Enrolments shorter than the certificate: the client enrols the same one again in time.
    server_clock, client_clock = Clock(), Clock()
    server, _ = serve(clock=server_clock, enrolment_ttl_s=600.0)
    channel = _connect(server, client_clock)
    fingerprint = channel.client_fingerprint
    for _ in range(3):
        server_clock.now += 500
        client_clock.now += 500
        assert ping(channel, b"x") == b"x"
    assert channel.client_fingerprint == fingerprint
    assert [e.fingerprint for e in server.enrolments()] == [fingerprint]
    channel.close()


def test_a_revoked_client_cannot_renew_its_way_back(serve: Any) -> None:
    server, _ = serve()
    clock = Clock()
    channel = _connect(server, clock, renew=_worker)
    assert server.revoke(channel.client_fingerprint)
    clock.now += 51 * 60  # renewal is due, but the predecessor was revoked: refused
    with pytest.raises(ChannelError, match="was revoked on this server"):
        ping(channel, b"x")
    assert server.enrolments() == []
    channel.close(leave_server=False)


def _enrol(
    server: SecureServer[Any],
    creds: TlsCredentials,
    predecessor: TlsCredentials,
    signer: bytes,
) -> Any:
    """Enrol ``creds`` as the renewal of ``predecessor``, the renewal signed with ``signer``."""
    from sealfl.net.certificates import pinning_name

    server_pem = server.certificate_pem
    channel = grpc.secure_channel(
        server.address,
        grpc.ssl_channel_credentials(root_certificates=server_pem),
        options=[("grpc.ssl_target_name_override", pinning_name(server_pem))],
    )
    stub = enrolment_pb2_grpc.EnrolmentStub(channel)
    try:
        nonce = stub.Challenge(enrolment_pb2.ChallengeRequest(), timeout=5).nonce
        old = certificate_fingerprint(predecessor.cert_pem)
        request = enrolment_pb2.EnrolRequest(
            certificate_pem=creds.cert_pem,
            nonce=nonce,
            signature=sign_possession(
                creds.key_pem, possession_message(nonce, server_pem, creds.cert_pem)
            ),
            predecessor_fingerprint=old,
            predecessor_signature=sign_possession(
                signer, renewal_message(nonce, server_pem, creds.cert_pem, old)
            ),
        )
        return stub.Enrol(request, timeout=5)
    finally:
        channel.close()


def test_a_renewal_not_signed_by_the_predecessors_key_is_refused(serve: Any) -> None:
    server, _ = serve()
    victim = _connect(server, Clock())
    victim_creds = TlsCredentials(victim.client_certificate_pem, b"")
    thief = _worker()
    with pytest.raises(grpc.RpcError) as refused:
        _enrol(server, thief, victim_creds, thief.key_pem)  # claims the victim's lineage
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "renewal proof: the signature does not verify" in (refused.value.details() or "")
    assert [e.lineage for e in server.enrolments()] == [victim.client_fingerprint]
    victim.close()


def test_a_renewal_signed_by_the_predecessors_key_carries_its_lineage(serve: Any) -> None:
    server, _ = serve()
    old = _worker()
    _connect(server, Clock(), credentials=old).close(leave_server=False)
    new = _worker()
    reply = _enrol(server, new, old, old.key_pem)
    assert reply.lineage == certificate_fingerprint(old.cert_pem)
    (entry,) = server.enrolments()
    assert entry.fingerprint == certificate_fingerprint(new.cert_pem)


def test_a_failing_renewal_breaks_no_call_and_is_tried_again_later(serve: Any) -> None:
    server, _ = serve()
    clock = Clock()
    attempts: list[float] = []

    def broken_tee() -> TlsCredentials:
        attempts.append(clock.now)
        raise OSError("/dev/attestation/quote: no such device")

    channel = _connect(server, clock, renew=broken_tee)
    fingerprint = channel.client_fingerprint
    clock.now += 51 * 60
    for _ in range(5):  # the certificate still works: calls go on, one attempt per 30 s
        assert ping(channel, b"x") == b"x"
    assert len(attempts) == 1
    clock.now += 31
    assert ping(channel, b"y") == b"y"
    assert len(attempts) == 2
    assert channel.client_fingerprint == fingerprint
    channel.close()

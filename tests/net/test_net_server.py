"""SecureServer and SecureChannel in one process, real TLS on loopback, plain certificates.

The end-to-end tests cover the issue's scenarios with separate processes and RA-TLS; these
cover the rest of the rules: each enrolment check, revocation and lapse on open connections,
size limits, deadlines, retries, lifecycle, and the public surface.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest

import sealfl.net
from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.net import (
    CertificateIdentity,
    CertificatePinError,
    ChannelState,
    RetryPolicy,
    SecureChannel,
    SecureServer,
    ServerState,
    TensorStore,
    TlsCredentials,
    TransferServicer,
    accept_any_certificate,
    certificate_fingerprint,
    connect_pinned,
    fingerprint_verifier,
    get_tensor,
    make_self_signed_credentials,
    open_secure_channel,
    ping,
    put_tensor,
)
from sealfl.net.certificates import validity_problem
from sealfl.net.possession import possession_message, sign_possession
from sealfl.net.protos import enrolment_pb2, enrolment_pb2_grpc, transfer_pb2, transfer_pb2_grpc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class IdentityRecorder(TransferServicer):
    """Records who the server says is calling, as a workload servicer would ask."""

    def __init__(self, store: TensorStore) -> None:
        super().__init__(store)
        self.server: SecureServer[Any] | None = None
        self.callers: list[Any] = []

    def Ping(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        assert self.server is not None
        self.callers.append(self.server.identity_of(context))
        return super().Ping(request, context)


@pytest.fixture
def server_creds() -> TlsCredentials:
    return make_self_signed_credentials("server")


@pytest.fixture
def make_server(server_creds: TlsCredentials) -> Iterator[Callable[..., SecureServer[Any]]]:
    servers: list[SecureServer[Any]] = []

    def make(**options: Any) -> SecureServer[Any]:
        options.setdefault("peer_verifier", accept_any_certificate)
        store = TensorStore(max_total_bytes=options.pop("store", 1 << 20))
        server: SecureServer[Any] = SecureServer(credentials=server_creds, **options)
        recorder = IdentityRecorder(store)
        recorder.server = server
        server.add_servicer(transfer_pb2_grpc.add_TransferServicer_to_server, recorder)
        server.recorder = recorder  # type: ignore[attr-defined]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop(0)


def _open(server: SecureServer[Any], creds: TlsCredentials, **kw: Any) -> SecureChannel[Any]:
    return open_secure_channel(
        server.address, credentials=creds, server_verifier=accept_any_certificate, **kw
    )


def test_plain_tls_with_provisioned_clients_needs_no_enrolment(
    make_server: Any, server_creds: TlsCredentials
) -> None:
    client = make_self_signed_credentials("client")
    server = make_server(
        peer_verifier=fingerprint_verifier([certificate_fingerprint(client.cert_pem)]),
        allowed_clients=[client.cert_pem],
    )
    pinned = fingerprint_verifier([certificate_fingerprint(server_creds.cert_pem)])
    with connect_pinned(
        server.service_address,
        server_certificate_pem=server_creds.cert_pem,
        server_verifier=pinned,
        credentials=client,
    ) as channel:
        assert ping(channel, b"plain") == b"plain"
        assert isinstance(channel.server_identity, CertificateIdentity)
    assert channel.state is ChannelState.CLOSED
    (caller,) = server.recorder.callers
    assert caller.fingerprint == certificate_fingerprint(client.cert_pem)


def test_a_provisioned_client_the_verifier_refuses_stops_the_server_from_starting(
    server_creds: TlsCredentials,
) -> None:
    client = make_self_signed_credentials("client")
    with pytest.raises(ConfigError, match=r"allowed_clients\[0\].*not one of the 0 pinned"):
        SecureServer(
            credentials=server_creds,
            peer_verifier=fingerprint_verifier([]),
            allowed_clients=[client.cert_pem],
        )


def test_revocation_refuses_the_next_call_on_an_open_connection(make_server: Any) -> None:
    server = make_server()
    client = make_self_signed_credentials("client")
    channel = _open(server, client)
    assert ping(channel, b"1") == b"1"
    assert server.revoke(channel.client_fingerprint)
    # Revocation is the operator's decision: the client is refused and does not enrol again.
    with pytest.raises(
        ChannelError, match=r"refused us: client certificate sha256:[0-9a-f]+ was revoked"
    ):
        ping(channel, b"2")
    assert not server.revoke(channel.client_fingerprint)
    channel.close()


def test_a_revoked_certificate_cannot_enrol_again(make_server: Any) -> None:
    server = make_server()
    client = make_self_signed_credentials("client")
    _open(server, client).close(leave_server=False)
    assert server.revoke(certificate_fingerprint(client.cert_pem))
    assert "was revoked on this server" in _refused(server, client)
    assert server.enrolments() == []
    with _open(server, make_self_signed_credentials("client")) as fresh:
        assert ping(fresh, b"new key") == b"new key"


def test_a_lapsed_enrolment_is_refused_and_the_client_enrols_again_by_itself(
    make_server: Any,
) -> None:
    clock = Clock()
    server = make_server(enrolment_ttl_s=60.0, clock=clock)
    client = make_self_signed_credentials("client")
    channel = _open(server, client)  # its own clock stands still: it cannot see the lapse coming
    assert channel.enrolment is not None
    assert channel.enrolment.expires_at == pytest.approx(clock.now + 60.0)
    assert [e.fingerprint for e in server.enrolments()] == [channel.client_fingerprint]
    clock.now += 61.0
    assert server.enrolments() == []
    # The server refuses the call (it never ran), the client enrols again and repeats it.
    assert ping(channel, b"late") == b"late"
    assert [e.fingerprint for e in server.enrolments()] == [channel.client_fingerprint]
    assert channel.enrolment.expires_at == pytest.approx(clock.now + 60.0)
    channel.close()


def _bootstrap(server: SecureServer[Any], server_pem: bytes) -> Any:
    from sealfl.net.certificates import pinning_name

    channel = grpc.secure_channel(
        server.address,
        grpc.ssl_channel_credentials(root_certificates=server_pem),
        options=[("grpc.ssl_target_name_override", pinning_name(server_pem))],
    )
    return channel, enrolment_pb2_grpc.EnrolmentStub(channel)


def _enrol_request(stub: Any, server_pem: bytes, creds: TlsCredentials, signer: bytes) -> Any:
    nonce = stub.Challenge(enrolment_pb2.ChallengeRequest(), timeout=5).nonce
    message = possession_message(nonce, server_pem, creds.cert_pem)
    return enrolment_pb2.EnrolRequest(
        certificate_pem=creds.cert_pem, nonce=nonce, signature=sign_possession(signer, message)
    )


def test_a_replayed_enrolment_is_refused(make_server: Any, server_creds: TlsCredentials) -> None:
    server = make_server()
    client = make_self_signed_credentials("client")
    channel, stub = _bootstrap(server, server_creds.cert_pem)
    request = _enrol_request(stub, server_creds.cert_pem, client, client.key_pem)
    assert stub.Enrol(request, timeout=5).fingerprint == certificate_fingerprint(client.cert_pem)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Enrol(request, timeout=5)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "nonce: not one this server issued, already used, or expired" in refused.value.details()
    channel.close()


def test_enrolling_what_is_not_a_certificate_is_refused_and_recorded(
    make_server: Any, server_creds: TlsCredentials
) -> None:
    server = make_server()
    channel, stub = _bootstrap(server, server_creds.cert_pem)
    request = enrolment_pb2.EnrolRequest(certificate_pem=b"junk", nonce=b"n", signature=b"s")
    with pytest.raises(grpc.RpcError) as refused:
        stub.Enrol(request, timeout=5)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "certificate_pem: not a PEM X.509 certificate" in refused.value.details()
    (refusal,) = server.refusals()
    assert (refusal.fingerprint, refusal.subject) == ("?", "?")
    channel.close()


def test_enrolling_a_certificate_without_its_key_is_refused(
    make_server: Any, server_creds: TlsCredentials
) -> None:
    server = make_server()
    victim, thief = make_self_signed_credentials("victim"), make_self_signed_credentials("thief")
    channel, stub = _bootstrap(server, server_creds.cert_pem)
    request = _enrol_request(stub, server_creds.cert_pem, victim, thief.key_pem)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Enrol(request, timeout=5)
    assert "possession proof" in refused.value.details()
    (refusal,) = server.refusals()
    assert refusal.fingerprint == certificate_fingerprint(victim.cert_pem)
    assert refusal.peer.startswith("ipv4:127.0.0.1:")
    assert server.enrolments() == []
    channel.close()


def test_certificates_appended_to_an_enrolled_one_never_enter_the_trust_store(
    make_server: Any, server_creds: TlsCredentials
) -> None:
    enrolled, appended = make_self_signed_credentials("enrolled"), make_self_signed_credentials()
    server = make_server(
        peer_verifier=fingerprint_verifier([certificate_fingerprint(enrolled.cert_pem)])
    )
    channel, stub = _bootstrap(server, server_creds.cert_pem)
    bundle = TlsCredentials(enrolled.cert_pem + appended.cert_pem, enrolled.key_pem)
    stub.Enrol(_enrol_request(stub, server_creds.cert_pem, bundle, enrolled.key_pem), timeout=5)
    channel.close()
    (enrolment,) = server.enrolments()
    assert enrolment.certificate_pem.count(b"BEGIN CERTIFICATE") == 1
    # The appended certificate was never verified, so its key must fail the handshake.
    with pytest.raises(ChannelError, match=r"mutual-TLS handshake .* failed"):
        connect_pinned(
            server.service_address,
            server_certificate_pem=server_creds.cert_pem,
            server_verifier=accept_any_certificate,
            credentials=appended,
            timeout_s=5,
        )


def _refused(server: SecureServer[Any], client: TlsCredentials) -> str:
    with pytest.raises(ChannelError, match="refused to enrol our certificate") as refused:
        _open(server, client, retry=RetryPolicy(attempts=1))
    return str(refused.value)


def test_an_expired_certificate_is_refused_with_its_validity(make_server: Any) -> None:
    server = make_server()
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    client = make_self_signed_credentials("old", now=past, lifetime=datetime.timedelta(hours=1))
    message = _refused(server, client)
    assert "certificate validity: expected now" in message
    assert past.strftime("%Y-%m-%dT") in message


def test_a_certificate_older_than_the_freshness_bound_is_refused(make_server: Any) -> None:
    server = make_server(max_certificate_age_s=3600.0)
    issued = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    client = make_self_signed_credentials("stale", now=issued)
    message = _refused(server, client)
    assert "certificate freshness: issued" in message
    assert "at most 3600 s allowed" in message


def test_a_crashing_verifier_refuses_the_client_and_the_server_goes_on(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def fragile(cert_pem: bytes) -> object:
        raise ValueError("bug in a verifier at /secret/path")

    server = make_server(peer_verifier=fragile)
    with caplog.at_level(logging.ERROR, logger="sealfl.net"):
        reason = _refused(server, make_self_signed_credentials())
    assert "verifier failed with an internal error (ValueError)" in reason
    assert "/secret/path" not in reason  # the peer learns the kind, not the internals
    assert any("/secret/path" in (r.exc_text or "") for r in caplog.records)  # the log has it
    assert len(server.refusals()) == 1
    assert server.state is ServerState.SERVING


def test_the_allow_list_of_a_verifying_server_is_bounded(make_server: Any) -> None:
    server = make_server(max_enrolled=1, open_enrolment=False)
    first = _open(server, make_self_signed_credentials("first"))
    assert "allow-list full: 1 of 1 entries used" in _refused(
        server, make_self_signed_credentials()
    )
    assert ping(first, b"still in") == b"still in"  # no newcomer pushes an admitted client out
    first.close()  # it leaves, and its slot is free at once
    with _open(server, make_self_signed_credentials("second")) as second:
        assert ping(second, b"in") == b"in"


def test_the_reason_can_be_kept_from_the_client(make_server: Any) -> None:
    server = make_server(peer_verifier=fingerprint_verifier([]), disclose_refusal_reasons=False)
    message = _refused(server, make_self_signed_credentials())
    assert "see the server log" in message and "pinned fingerprints" not in message
    assert "pinned fingerprints" in server.refusals()[0].reason


def test_a_server_the_client_verifier_refuses_is_never_enrolled_at(make_server: Any) -> None:
    server = make_server()

    def refuse(cert_pem: bytes) -> object:
        raise AttestationError("mr_enclave: expected aa, found bb")

    with pytest.raises(AttestationError, match=r"server at .* refused: .*expected aa, found bb"):
        open_secure_channel(
            server.address, credentials=make_self_signed_credentials(), server_verifier=refuse
        )
    assert server.enrolments() == [] and server.refusals() == []


def test_a_replaced_server_key_breaks_the_pin(
    make_server: Any, server_creds: TlsCredentials
) -> None:
    server = make_server()
    channel = _open(server, make_self_signed_credentials())
    channel.check_pin()
    server.replace_credentials(make_self_signed_credentials("impostor"))
    with pytest.raises(CertificatePinError, match="certificate changed after verification"):
        channel.check_pin()
    with pytest.raises(CertificatePinError):
        connect_pinned(
            server.service_address,
            server_certificate_pem=server_creds.cert_pem,
            server_verifier=accept_any_certificate,
            credentials=make_self_signed_credentials(),
        )
    channel.close()


def test_a_server_key_replaced_between_verification_and_enrolment_breaks_the_pin(
    make_server: Any,
) -> None:
    server = make_server()

    def verify_then_swap(cert_pem: bytes) -> CertificateIdentity:
        server.replace_credentials(make_self_signed_credentials("impostor"))
        return accept_any_certificate(cert_pem)

    with pytest.raises(
        CertificatePinError,
        match=r"enrolment: server at .* changed after verification: pinned sha256:[0-9a-f]{64}, "
        r"found sha256:[0-9a-f]{64}",
    ):
        open_secure_channel(
            server.address,
            credentials=make_self_signed_credentials(),
            server_verifier=verify_then_swap,
            retry=RetryPolicy(attempts=3),  # a broken pin ends the retries at once
        )
    assert server.enrolments() == [] and server.refusals() == []


def test_only_the_verified_certificate_of_a_pem_bundle_is_pinned(
    server_creds: TlsCredentials,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from x509_factory import private_key_pem, self_signed_certificate

    from sealfl.net.certificates import pinning_name

    # An impostor's certificate for the genuine server's name, appended to the genuine one.
    key = ec.generate_private_key(ec.SECP256R1())
    genuine_name = x509.DNSName(pinning_name(server_creds.cert_pem))
    impostor = TlsCredentials(
        self_signed_certificate(
            key=key, subject="impostor", extensions=[x509.SubjectAlternativeName([genuine_name])]
        ),
        private_key_pem(key),
    )
    client = make_self_signed_credentials("client")
    server: SecureServer[Any] = SecureServer(
        credentials=impostor,
        peer_verifier=accept_any_certificate,
        allowed_clients=[client.cert_pem],
    )
    server.start()
    try:
        with pytest.raises(CertificatePinError):
            connect_pinned(
                server.service_address,
                server_certificate_pem=server_creds.cert_pem + impostor.cert_pem,
                server_verifier=fingerprint_verifier(
                    [certificate_fingerprint(server_creds.cert_pem)]
                ),
                credentials=client,
                timeout_s=5,
            )
    finally:
        server.stop(0)


def test_messages_over_the_size_limit_are_refused(make_server: Any) -> None:
    server = make_server(max_message_bytes=64 * 1024, store=1 << 22)
    with _open(server, make_self_signed_credentials(), max_message_bytes=1 << 20) as channel:
        data = np.zeros(1 << 20, dtype=np.uint8)
        put_tensor(channel, "small-chunks", data, chunk_bytes=32 * 1024, timeout_s=10)
        with pytest.raises(ChannelError, match=r"Transfer\.Put: .* answered RESOURCE_EXHAUSTED"):
            put_tensor(channel, "big-chunks", data, chunk_bytes=256 * 1024, timeout_s=10)


def test_a_tensor_larger_than_the_store_is_refused_before_it_is_sent(make_server: Any) -> None:
    server = make_server(store=1 << 16)
    with _open(server, make_self_signed_credentials()) as channel:
        with pytest.raises(ChannelError, match=r"RESOURCE_EXHAUSTED: .*at most 65536 accepted"):
            put_tensor(channel, "w", np.zeros(1 << 17, dtype=np.uint8), timeout_s=10)
        with pytest.raises(ChannelError, match="NOT_FOUND: no tensor named 'w'"):
            get_tensor(channel, "w", max_bytes=1 << 20, timeout_s=10)


def test_every_call_has_a_deadline(make_server: Any) -> None:
    server = make_server(store=1 << 26)
    with _open(server, make_self_signed_credentials()) as channel:
        put_tensor(channel, "w", np.zeros(1 << 25, dtype=np.uint8), timeout_s=30)
        with pytest.raises(
            ChannelError, match=r"Transfer\.Get: no answer from .* before the deadline"
        ):
            get_tensor(channel, "w", max_bytes=1 << 26, timeout_s=0.001)
        with pytest.raises(ConfigError, match="timeout_s: expected > 0 seconds, got 0"):
            ping(channel, timeout_s=0)


def test_retries_back_off_only_when_asked_and_then_say_how_often(make_server: Any) -> None:
    server = make_server()
    channel = _open(server, make_self_signed_credentials())
    server.stop(0)
    calls = []
    stub = transfer_pb2_grpc.TransferStub(channel.channel)

    def counted(request: Any, timeout: float) -> Any:
        calls.append(time.monotonic())
        return stub.Ping(request, timeout=timeout)

    request = transfer_pb2.PingRequest()
    with pytest.raises(ChannelError, match="unreachable") as once:
        channel.call(counted, request, timeout_s=2)
    assert len(calls) == 1 and "attempts" not in str(once.value)
    calls.clear()
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.1, max_backoff_s=0.2, jitter=0)
    with pytest.raises(ChannelError, match=r"\(after 3 attempts\)"):
        channel.call(counted, request, timeout_s=2, retry=policy)
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.1 and calls[2] - calls[1] >= 0.2
    channel.close()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"attempts": 0}, "attempts: expected >= 1, got 0"),
        ({"initial_backoff_s": 3.0, "max_backoff_s": 1.0}, "initial_backoff_s <= max_backoff_s"),
        ({"jitter": 2.0}, "0 <= jitter <= 1"),
    ],
)
def test_retry_policies_are_validated(options: dict[str, float], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_lifecycles_are_explicit(make_server: Any) -> None:
    server = make_server()
    with pytest.raises(ConfigError, match="cannot start in state 'serving'"):
        server.start()
    with pytest.raises(ConfigError, match="cannot add a servicer in state 'serving'"):
        server.add_servicer(transfer_pb2_grpc.add_TransferServicer_to_server, None)
    channel = _open(server, make_self_signed_credentials())
    channel.close()
    channel.close()
    with pytest.raises(ChannelError, match="is closed; open a new one"):
        ping(channel)
    server.stop(0)
    server.stop(0)
    assert server.state is ServerState.STOPPED
    with pytest.raises(ConfigError, match="cannot start in state 'stopped'"):
        server.start()


def test_bad_server_settings_are_refused(server_creds: TlsCredentials) -> None:
    with pytest.raises(ConfigError, match="max_workers: expected > 0, got 0"):
        SecureServer(credentials=server_creds, peer_verifier=accept_any_certificate, max_workers=0)
    with pytest.raises(ConfigError, match="enrolment_ttl_s: expected > 0"):
        SecureServer(
            credentials=server_creds, peer_verifier=accept_any_certificate, enrolment_ttl_s=0
        )
    mismatched = TlsCredentials(server_creds.cert_pem, make_self_signed_credentials().key_pem)
    with pytest.raises(ConfigError, match="server credentials: the private key does not belong"):
        SecureServer(credentials=mismatched, peer_verifier=accept_any_certificate)


def test_the_public_surface_is_exactly_all() -> None:
    public = {name for name in vars(sealfl.net) if not name.startswith("_")}
    modules = {name for name, value in vars(sealfl.net).items() if type(value).__name__ == "module"}
    assert public - modules == set(sealfl.net.__all__)


def test_a_client_that_starts_first_backs_off_until_the_server_is_up(
    server_creds: TlsCredentials,
) -> None:
    with socket.socket() as probe:  # a free port, released for the server to take later
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    server: SecureServer[Any] = SecureServer(
        credentials=server_creds, peer_verifier=accept_any_certificate, address=address
    )
    starter = threading.Timer(0.4, server.start)
    starter.start()
    try:
        started = time.monotonic()
        policy = RetryPolicy(attempts=8, initial_backoff_s=0.05, max_backoff_s=0.5)
        client = make_self_signed_credentials()
        with open_secure_channel(
            address, credentials=client, server_verifier=accept_any_certificate, retry=policy
        ) as channel:
            assert time.monotonic() - started >= 0.4
            assert channel.enrolment is not None
    finally:
        starter.join()
        server.stop(0)


def test_an_expired_pinned_server_certificate_is_named_as_the_cause() -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    expired = make_self_signed_credentials("server", now=past, lifetime=datetime.timedelta(days=1))
    client = make_self_signed_credentials("client")
    server: SecureServer[Any] = SecureServer(
        credentials=expired, peer_verifier=accept_any_certificate, allowed_clients=[client.cert_pem]
    )
    server.start()
    try:
        with pytest.raises(ChannelError, match="the pinned server certificate expired at") as err:
            connect_pinned(
                server.service_address,
                server_certificate_pem=expired.cert_pem,
                server_verifier=accept_any_certificate,
                credentials=client,
                timeout_s=5,
            )
        assert not isinstance(err.value, CertificatePinError)
    finally:
        server.stop(0)


def test_validity_problems_are_described() -> None:
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    creds = make_self_signed_credentials(now=future)
    assert "is not valid before" in (validity_problem(creds.cert_pem, time.time()) or "")
    assert validity_problem(creds.cert_pem, future.timestamp() + 3600) is None


def test_an_address_in_use_is_reported_and_the_server_cannot_be_reused(
    make_server: Any, server_creds: TlsCredentials
) -> None:
    busy = make_server()
    server: SecureServer[Any] = SecureServer(
        credentials=server_creds, peer_verifier=accept_any_certificate, address=busy.address
    )
    with pytest.raises(ChannelError, match=f"cannot bind {busy.address}"):
        server.start()
    assert server.state is ServerState.STOPPED

"""The broker's allow/deny matrix, over real gRPC and TLS on loopback (broker in this process).

Every deny cell is an attack or a mistake tried for real: it must raise on the client, write a
deny line whose reason names the failed check, and release nothing (no allow line for a get,
put or revoke appears, and the store is unchanged). Every allow cell gets exactly its own
resource. The clock is injected, so the stale-nonce cell moves time instead of sleeping.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from kbs_world import (
    RESOURCE_A,
    RESOURCE_B,
    RESOURCE_R,
    VALUE_B,
    Clock,
    World,
    admin,
    admin_fingerprint,
    broker_verifier,
    client,
    measurement,
)

from sealfl.errors import ChannelError
from sealfl.kbs import (
    RESOURCE_CLAIM,
    KbsAdmin,
    KbsClient,
    KbsRefusedError,
    RunningKbs,
    get_resource,
)
from sealfl.kbs.protos import kbs_pb2, kbs_pb2_grpc
from sealfl.net import (
    SecureChannel,
    fetch_server_certificate,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.net.certificates import pinning_name
from sealfl.tee import SimulatedPlatform, SimulatedTee, create_ratls_certificate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def broker(start_broker: Callable[..., RunningKbs], world: World) -> RunningKbs:
    running = start_broker()
    admin(world, running).put(RESOURCE_B, VALUE_B)
    admin(world, running).revoke(RESOURCE_R)
    return running


@dataclass
class Cell:
    """One attempt against the broker: set up, then ``attempt()`` must be refused."""

    world: World
    running: RunningKbs
    clock: Clock
    channels: list[SecureChannel[Any]] = field(default_factory=list)

    def connect(self, role: str, nonce: bytes | None, name: str | None) -> SecureChannel[Any]:
        """Enrol a requester certificate with ``nonce`` (None: no nonce claim) for ``name``."""
        requester = client(self.world, self.running, role)
        tee = self.world.tee(role)
        claims = {RESOURCE_CLAIM: name.encode()} if name else None
        credentials = create_ratls_certificate(tee, claims=claims, nonce=nonce)
        channel = requester.connect(credentials)
        self.channels.append(channel)
        return channel

    def nonce(self) -> bytes:
        return client(self.world, self.running, "requester-a").challenge()

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


Attempt = Callable[[], object]


def wrong_measurement_named(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-b")  # passes B's policy, not A's
    return lambda: requester.fetch(RESOURCE_A)


def wrong_measurement_enrolled_elsewhere(cell: Cell) -> Attempt:
    # No resource claim: enrolment passes B's policy; GetResource(A) re-checks against A's.
    channel = cell.connect("requester-b", cell.nonce(), None)
    return lambda: get_resource(channel, RESOURCE_A)


def debug_enclave(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-a", debug=True)
    return lambda: requester.fetch(RESOURCE_A)


def tcb_out_of_date(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-a", tcb_status="OutOfDate")
    return lambda: requester.fetch(RESOURCE_A)


def foreign_platform(cell: Cell) -> Attempt:
    other = SimulatedPlatform.create(cell.world.directory / "other-platform")
    requester = KbsClient(
        cell.running.address,
        server_verifier=broker_verifier(cell.running),
        provider=SimulatedTee(other, measurement("requester-a")),  # right code, untrusted CPU
    )
    return lambda: requester.fetch(RESOURCE_A)


def unenrolled_front_door(cell: Cell) -> Attempt:
    # A client that skips enrolment and asks where it can be heard: the front door.
    pem = _broker_pem(cell.running)

    def attempt() -> object:
        channel = grpc.secure_channel(
            cell.running.address,
            grpc.ssl_channel_credentials(root_certificates=pem),
            options=[("grpc.ssl_target_name_override", pinning_name(pem))],
        )
        try:
            stub = kbs_pb2_grpc.KeyBrokerStub(channel)
            return stub.GetResource(kbs_pb2.GetResourceRequest(name=RESOURCE_A), timeout=10)
        except grpc.RpcError as exc:
            raise ChannelError(exc.details()) from exc
        finally:
            channel.close()

    return attempt


def stale_nonce(cell: Cell) -> Attempt:
    nonce = cell.nonce()
    cell.clock.now += cell.running.broker.nonce_ttl_s + 1
    channel = cell.connect("requester-a", nonce, RESOURCE_A)
    return lambda: get_resource(channel, RESOURCE_A)


def replay_same_connection(cell: Cell) -> Attempt:
    channel = cell.connect("requester-a", cell.nonce(), RESOURCE_A)
    get_resource(channel, RESOURCE_A)  # the first use is allowed
    return lambda: get_resource(channel, RESOURCE_A)


def replay_new_connection(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-a")
    credentials = requester.make_certificate(requester.challenge(), RESOURCE_A)
    with requester.connect(credentials) as first:
        get_resource(first, RESOURCE_A)
    again = requester.connect(credentials)  # the same certificate, enrolled again
    cell.channels.append(again)
    return lambda: get_resource(again, RESOURCE_A)


def nonce_never_issued(cell: Cell) -> Attempt:
    channel = cell.connect("requester-a", os.urandom(32), RESOURCE_A)
    return lambda: get_resource(channel, RESOURCE_A)


def no_nonce_claim(cell: Cell) -> Attempt:
    channel = cell.connect("requester-a", None, RESOURCE_A)
    return lambda: get_resource(channel, RESOURCE_A)


def revoked_resource(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-a")  # passes R's policy
    return lambda: requester.fetch(RESOURCE_R)


def certificate_for_another_resource(cell: Cell) -> Attempt:
    channel = cell.connect("requester-a", cell.nonce(), RESOURCE_R)  # same policy as A
    return lambda: get_resource(channel, RESOURCE_A)


def unknown_resource(cell: Cell) -> Attempt:
    channel = cell.connect("requester-a", cell.nonce(), None)
    return lambda: get_resource(channel, "hfl/seal-key/nonexistent")


def unlisted_admin(cell: Cell) -> Attempt:
    impostor = KbsAdmin(
        cell.running.address,
        server_verifier=broker_verifier(cell.running),
        credentials=make_self_signed_credentials("kbs-admin"),
    )
    return lambda: impostor.put(RESOURCE_B, b"attacker-chosen")


def requester_puts(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-b")
    credentials = requester.make_certificate(requester.challenge(), RESOURCE_B)
    as_admin = KbsAdmin(
        cell.running.address, server_verifier=broker_verifier(cell.running), credentials=credentials
    )
    return lambda: as_admin.put(RESOURCE_B, b"attacker-chosen")


def requester_revokes(cell: Cell) -> Attempt:
    requester = client(cell.world, cell.running, "requester-a")
    credentials = requester.make_certificate(requester.challenge(), RESOURCE_A)
    as_admin = KbsAdmin(
        cell.running.address, server_verifier=broker_verifier(cell.running), credentials=credentials
    )
    return lambda: as_admin.revoke(RESOURCE_A)


def admin_fetches(cell: Cell) -> Attempt:
    channel = open_secure_channel(
        cell.running.address,
        credentials=cell.world.admin,
        server_verifier=broker_verifier(cell.running),
    )
    cell.channels.append(channel)
    return lambda: get_resource(channel, RESOURCE_A)


def admin_puts_wrong_size(cell: Cell) -> Attempt:
    return lambda: admin(cell.world, cell.running).put(RESOURCE_A, b"too short")


def _broker_pem(running: RunningKbs) -> bytes:
    return fetch_server_certificate(running.address)


# (cell, audited action, audited resource, reason pattern)
DENY_MATRIX = [
    (wrong_measurement_named, "enrol", RESOURCE_A, r"fails the policy of .*measurement: expected"),
    (wrong_measurement_enrolled_elsewhere, "get", RESOURCE_A, r"fails the policy.*measurement"),
    (debug_enclave, "enrol", RESOURCE_A, r"debug .* refused"),
    (tcb_out_of_date, "enrol", RESOURCE_A, r"TCB status: expected one of \['UpToDate'\]"),
    (foreign_platform, "enrol", RESOURCE_A, r"simulated platform [0-9a-f]+ is not trusted"),
    (unenrolled_front_door, "get", RESOURCE_A, r"caller not enrolled"),
    (stale_nonce, "get", RESOURCE_A, r"nonce stale: issued 31\.0 s ago, usable for 30 s"),
    (replay_same_connection, "get", RESOURCE_A, r"nonce already used \(a replay\)"),
    (replay_new_connection, "get", RESOURCE_A, r"nonce already used \(a replay\)"),
    (nonce_never_issued, "get", RESOURCE_A, r"nonce not issued by this broker"),
    (no_nonce_claim, "get", RESOURCE_A, r"certificate has no 'nonce' claim"),
    (revoked_resource, "get", RESOURCE_R, r"resource 'hfl/seal-key/retired' is revoked"),
    (certificate_for_another_resource, "get", RESOURCE_A, r"made for resource 'hfl/seal-key/ret"),
    (unknown_resource, "get", "hfl/seal-key/nonexistent", r"is not served by this broker"),
    (unlisted_admin, "enrol", None, r"not a listed admin's and is not a usable RA-TLS cert"),
    (requester_puts, "put", RESOURCE_B, r"is not an admin's: only certificates listed"),
    (requester_revokes, "revoke", RESOURCE_A, r"is not an admin's: only certificates listed"),
    (admin_fetches, "get", RESOURCE_A, r"admins put and revoke; resources are released only"),
    (admin_puts_wrong_size, "put", RESOURCE_A, r"expected exactly 32 bytes, got 9"),
]


@pytest.fixture
def cell(world: World, broker: RunningKbs, clock: Clock) -> Iterator[Cell]:
    made = Cell(world, broker, clock)
    yield made
    made.close()


@pytest.mark.parametrize(
    ("setup", "action", "resource", "reason"),
    DENY_MATRIX,
    ids=[row[0].__name__ for row in DENY_MATRIX],
)
def test_deny_cell_is_refused_audited_and_releases_nothing(
    cell: Cell,
    setup: Callable[[Cell], Attempt],
    action: str,
    resource: str | None,
    reason: str,
) -> None:
    world, running = cell.world, cell.running
    attempt = setup(cell)
    store_before = {name: running.store.get(name) for name in (RESOURCE_A, RESOURCE_B, RESOURCE_R)}
    before = len(world.audit_lines())

    with pytest.raises(ChannelError) as refused:
        attempt()

    new = world.audit_lines()[before:]
    denials = [line for line in new if line["decision"] == "deny"]
    assert len(denials) == 1, new
    line = denials[0]
    assert (line["action"], line["resource"]) == (action, resource), line
    assert re.search(reason, line["reason"]), line["reason"]
    # The requester is told the same reason the log keeps (the broker discloses its reasons).
    assert re.search(reason, " ".join(str(refused.value).split())), refused.value
    # Nothing released or changed: no allowed get/put/revoke, the store as it was.
    assert not [x for x in new if x["decision"] == "allow" and x["action"] != "enrol"], new
    assert {n: running.store.get(n) for n in store_before} == store_before
    # The caller is identified in the line whenever it presented a certificate.
    if setup is not unenrolled_front_door:
        assert line["fingerprint"] and len(line["fingerprint"]) == 64


def test_deny_lines_name_the_callers_measurement(cell: Cell) -> None:
    before = len(cell.world.audit_lines())
    with pytest.raises(ChannelError):
        wrong_measurement_named(cell)()
    (line,) = cell.world.audit_lines()[before:]
    assert line["measurements"]["measurement"] == measurement("requester-b").hex()
    assert line["role"] is None  # refused before it was given a role


def test_each_requester_gets_exactly_its_own_resource(world: World, broker: RunningKbs) -> None:
    stored_a, generation_a = broker.store.get(RESOURCE_A) or (b"", 0)
    value_a, got_generation = client(world, broker, "requester-a").fetch_with_generation(RESOURCE_A)
    value_b = client(world, broker, "requester-b").fetch(RESOURCE_B)

    assert (value_a, got_generation) == (stored_a, generation_a)
    assert len(value_a) == 32 and value_a != VALUE_B
    assert value_b == VALUE_B
    gets = [x for x in world.audit_lines() if x["action"] == "get"]
    assert [(x["resource"], x["decision"]) for x in gets] == [
        (RESOURCE_A, "allow"),
        (RESOURCE_B, "allow"),
    ]
    assert gets[0]["measurements"]["measurement"] == measurement("requester-a").hex()
    assert gets[1]["measurements"]["measurement"] == measurement("requester-b").hex()
    assert all(x["role"] == "requester" for x in gets)


def test_a_fetched_sealing_key_is_the_generated_resource(world: World, broker: RunningKbs) -> None:
    key = client(world, broker, "requester-a").fetch_sealing_key(RESOURCE_A)
    assert key.secret_bytes == (broker.store.get(RESOURCE_A) or (b"", 0))[0]


def test_admin_put_rotates_and_reinstates(world: World, broker: RunningKbs) -> None:
    operator = admin(world, broker)
    assert operator.put(RESOURCE_B, b"rotated-token") == 2
    assert client(world, broker, "requester-b").fetch(RESOURCE_B) == b"rotated-token"
    new_key = os.urandom(32)
    assert operator.put(RESOURCE_R, new_key) == 2  # generation 1 was generated, then revoked
    assert client(world, broker, "requester-a").fetch(RESOURCE_R) == new_key
    assert operator.revoke(RESOURCE_B) is True
    assert operator.revoke(RESOURCE_B) is False
    admin_lines = [x for x in world.audit_lines() if x["action"] in ("put", "revoke")]
    assert all(x["decision"] == "allow" for x in admin_lines)
    assert {x["fingerprint"] for x in admin_lines} == {admin_fingerprint(world)}


def test_the_audit_log_never_holds_a_value(world: World, broker: RunningKbs) -> None:
    value_a = client(world, broker, "requester-a").fetch(RESOURCE_A)
    secret = os.urandom(32)
    admin(world, broker).put(RESOURCE_R, secret)
    text = (world.directory / "audit.jsonl").read_bytes()
    for value in (value_a, VALUE_B, secret):
        assert value not in text
        assert value.hex().encode() not in text


def test_a_never_enrolled_certificate_is_refused_by_the_mutual_tls_listener(
    world: World, broker: RunningKbs
) -> None:
    # Straight to the service listener with a valid, fresh, attested certificate that was not
    # enrolled: the TLS handshake refuses it before any handler runs (see sealfl.kbs).
    requester = client(world, broker, "requester-a")
    credentials = requester.make_certificate(requester.challenge(), RESOURCE_A)
    pem = _broker_pem(broker)
    channel = grpc.secure_channel(
        broker.service_address,
        grpc.ssl_channel_credentials(pem, credentials.key_pem, credentials.cert_pem),
        options=[("grpc.ssl_target_name_override", pinning_name(pem))],
    )
    before = len(world.audit_lines())
    try:
        stub = kbs_pb2_grpc.KeyBrokerStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetResource(kbs_pb2.GetResourceRequest(name=RESOURCE_A), timeout=10)
    finally:
        channel.close()
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # handshake failed
    assert not [x for x in world.audit_lines()[before:] if x["decision"] == "allow"]


def test_a_decision_that_cannot_be_audited_is_not_carried_out(
    world: World, broker: RunningKbs
) -> None:
    requester = client(world, broker, "requester-a")
    channel = requester.connect(requester.make_certificate(requester.challenge(), RESOURCE_A))
    broker.audit.close()  # the log becomes unwritable (as on a full disk)
    try:
        with pytest.raises(ChannelError, match="cannot write its audit log"):
            get_resource(channel, RESOURCE_A)
    finally:
        channel.close()


def test_refusal_errors_carry_the_brokers_reason(world: World, broker: RunningKbs) -> None:
    with pytest.raises(KbsRefusedError) as refused:
        client(world, broker, "requester-a").fetch(RESOURCE_R)
    assert refused.value.reason == "resource 'hfl/seal-key/retired' is revoked"
    assert refused.value.code == "PERMISSION_DENIED"

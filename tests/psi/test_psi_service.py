"""PSI over real mutual RA-TLS gRPC on loopback (simulated TEE, real TLS, real certificates).

The leader serves :class:`PsiServicer` on a :class:`SecureServer`; the follower calls
:func:`run_psi_on_channel` on a :class:`SecureChannel`. Both run in this process on threads
(the multi-process run is ``sealfl bench psi --quick``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psi_parties import id_sets

from sealfl.errors import ConfigError
from sealfl.net import (
    SecureServer,
    fingerprint_verifier,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.psi import (
    PsiServicer,
    PsiSettings,
    add_psi_servicer,
    channel_binding,
    run_psi_on_channel,
)
from sealfl.tee import (
    Policy,
    SimulatedPlatform,
    SimulatedTee,
    Verifier,
    create_ratls_certificate,
    verify_ratls_certificate,
)

SETTINGS = PsiSettings(batch_size=128, timeout_s=20)


def _measurement(role: str) -> bytes:
    return hashlib.sha256(b"sealfl psi test measurement:" + role.encode()).digest()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimulatedPlatform:
    directory: Path = tmp_path_factory.mktemp("platform")
    SimulatedPlatform.create(directory)
    return SimulatedPlatform.load(directory)


def _verifier(platform: SimulatedPlatform, role: str) -> Callable[[bytes], Any]:
    policy = Policy.for_simulated(
        measurements=[_measurement(role)], platform_fingerprints=[platform.fingerprint]
    )
    verifier = Verifier(policy)
    return lambda pem: verify_ratls_certificate(pem, verifier)


@pytest.fixture
def serve(platform: SimulatedPlatform) -> Iterator[Callable[..., tuple[str, PsiServicer, Any]]]:
    servers: list[SecureServer[Any]] = []

    def start(
        ids: list[str], settings: PsiSettings, *, ratls: bool = True
    ) -> tuple[str, PsiServicer, Any]:
        if ratls:
            creds = create_ratls_certificate(SimulatedTee(platform, _measurement("leader")))
            client = create_ratls_certificate(SimulatedTee(platform, _measurement("follower")))
            verify_client = _verifier(platform, "follower")
        else:
            creds = make_self_signed_credentials(common_name="psi-leader")
            client = make_self_signed_credentials(common_name="psi-follower")
            verify_client = fingerprint_verifier([_fp(client.cert_pem)])
        server: SecureServer[Any] = SecureServer(credentials=creds, peer_verifier=verify_client)
        servicer = PsiServicer(ids, role="leader", settings=settings)
        add_psi_servicer(server, servicer)
        servers.append(server)
        address = server.start()
        verify_server = (
            _verifier(platform, "leader") if ratls else fingerprint_verifier([_fp(creds.cert_pem)])
        )
        channel = open_secure_channel(address, credentials=client, server_verifier=verify_server)
        return address, servicer, channel

    yield start
    for server in servers:
        server.stop(0)


def _fp(pem: bytes) -> str:
    from sealfl.net import certificate_fingerprint

    return certificate_fingerprint(pem)


def test_psi_over_mutual_ratls_aligns_both_parties(serve: Any) -> None:
    leader_ids, follower_ids = id_sets(500, 200)
    _, servicer, channel = serve(leader_ids, SETTINGS)
    with channel:
        follower = run_psi_on_channel(channel, follower_ids, role="follower", settings=SETTINGS)
    leader = servicer.result(timeout_s=20)
    assert leader.transcript == follower.transcript
    assert leader.count == follower.count == 200
    assert leader.intersection(leader_ids) == follower.intersection(follower_ids)
    assert set(leader.intersection(leader_ids)) == set(leader_ids) & set(follower_ids)


def test_enclave_only_runs_over_ratls_and_the_servicer_serves_again(serve: Any) -> None:
    enclave = PsiSettings(mode="enclave-only", batch_size=128, timeout_s=20)  # type: ignore[arg-type]
    leader_ids, follower_ids = id_sets(300, 100)
    _, servicer, channel = serve(leader_ids, enclave)
    with channel:
        first = run_psi_on_channel(channel, follower_ids, role="follower", settings=enclave)
        assert first.count == 100 and first.order is not None
        assert servicer.result(timeout_s=20).count == 100
        second = run_psi_on_channel(channel, follower_ids, role="follower", settings=enclave)
    assert second.transcript != first.transcript  # fresh keys and nonces: another session


def test_enclave_only_is_refused_over_plain_tls(serve: Any) -> None:
    enclave = PsiSettings(mode="enclave-only", batch_size=128, timeout_s=5)  # type: ignore[arg-type]
    leader_ids, follower_ids = id_sets(50, 10)
    _, servicer, channel = serve(leader_ids, enclave, ratls=False)
    with channel, pytest.raises(ConfigError, match="needs an attested peer"):
        run_psi_on_channel(channel, follower_ids, role="follower", settings=enclave)
    with pytest.raises(ConfigError, match="needs an attested peer"):
        servicer.result(timeout_s=20)


def test_the_binding_names_both_certificates_in_order() -> None:
    a = make_self_signed_credentials(common_name="a").cert_pem
    b = make_self_signed_credentials(common_name="b").cert_pem
    assert channel_binding(a, b) != channel_binding(b, a)
    assert channel_binding(a, b) == channel_binding(a, b)

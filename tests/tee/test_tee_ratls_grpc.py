"""RA-TLS certificates work as gRPC expects: each is its own trust root, and only its own key.

DESIGN.md's mutual RA-TLS pins exactly the verified certificate as ``root_certificates``; this
checks the certificate shape allows that (self-signed leaf, SAN for the name override) and that
another certificate with the same subject layout does not stand in for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from sealfl.tee import RaTlsCredentials, SimulatedTee, create_ratls_certificate


@pytest.fixture
def echo_server(tee: SimulatedTee) -> Iterator[tuple[int, RaTlsCredentials, RaTlsCredentials]]:
    server_creds = create_ratls_certificate(tee)
    client_creds = create_ratls_certificate(tee)
    handler = grpc.method_handlers_generic_handler(
        "sealfl.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(server_creds.key_pem, server_creds.cert_pem)],
        root_certificates=client_creds.cert_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port, server_creds, client_creds
    finally:
        server.stop(grace=None).wait()


def call(port: int, root: bytes, client: RaTlsCredentials) -> bytes:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=client.key_pem, certificate_chain=client.cert_pem
    )
    with grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    ) as channel:
        echo = channel.unary_unary("/sealfl.test.Echo/Echo")
        return bytes(echo(b"ping", timeout=10))


def test_pinned_certificates_complete_a_mutual_handshake(echo_server) -> None:
    port, server_creds, client_creds = echo_server
    assert call(port, server_creds.cert_pem, client_creds) == b"ping"


def test_another_certificate_does_not_stand_in(echo_server, tee: SimulatedTee) -> None:
    port, server_creds, client_creds = echo_server
    impostor = create_ratls_certificate(tee)
    with pytest.raises(grpc.RpcError) as info:
        call(port, impostor.cert_pem, client_creds)  # client pins the wrong server
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        call(port, server_creds.cert_pem, impostor)  # server does not know this client

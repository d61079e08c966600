"""``SecureServer.add_front_door_servicer``: the net hook the broker's Challenge relies on.

A servicer registered there answers clients that have no client certificate and never enrolled
(that is its purpose), sees nobody's identity, and cannot be added once the server started.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from sealfl.errors import ChannelError, ConfigError
from sealfl.net import (
    SecureServer,
    TensorStore,
    TransferServicer,
    accept_any_certificate,
    fetch_server_certificate,
    make_self_signed_credentials,
)
from sealfl.net.certificates import pinning_name
from sealfl.net.protos import transfer_pb2, transfer_pb2_grpc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Anonymous(TransferServicer):
    def __init__(self, server: SecureServer[Any]) -> None:
        super().__init__(TensorStore(max_total_bytes=1024))
        self.server = server
        self.identities: list[str] = []

    def Ping(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            self.server.identity_of(context)
        except ChannelError as exc:
            self.identities.append(str(exc))
        return super().Ping(request, context)


def test_a_front_door_servicer_answers_without_a_client_certificate() -> None:
    server: SecureServer[Any] = SecureServer(
        credentials=make_self_signed_credentials("server"), peer_verifier=accept_any_certificate
    )
    servicer = Anonymous(server)
    server.add_front_door_servicer(transfer_pb2_grpc.add_TransferServicer_to_server, servicer)
    with server:
        pem = fetch_server_certificate(server.address)
        channel = grpc.secure_channel(
            server.address,
            grpc.ssl_channel_credentials(root_certificates=pem),  # no client certificate
            options=[("grpc.ssl_target_name_override", pinning_name(pem))],
        )
        try:
            stub = transfer_pb2_grpc.TransferStub(channel)
            reply = stub.Ping(transfer_pb2.PingRequest(payload=b"hi"), timeout=10)
        finally:
            channel.close()
        assert reply.payload == b"hi"
        assert len(servicer.identities) == 1 and "not an enrolled client" in servicer.identities[0]
        with pytest.raises(ConfigError, match="cannot add a front-door servicer"):
            server.add_front_door_servicer(
                transfer_pb2_grpc.add_TransferServicer_to_server, servicer
            )

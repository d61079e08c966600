"""The MPC client against a server that misbehaves (no processes: the channels are faked)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from sealfl.errors import ProtocolError
from sealfl.fl.infer.client import InferenceClient
from sealfl.fl.infer.common import Mode
from sealfl.fl.infer.protos import infer_pb2
from sealfl.mpc import Output
from sealfl.mpc.wire import encode_frame


class _FakeChannel:
    """Answers every call with ``reply(what)``; counts the calls."""

    def __init__(self, reply: Any) -> None:
        self.channel = grpc.insecure_channel("127.0.0.1:9")  # never used: lazy
        self.reply = reply
        self.calls = 0

    def call(self, method: Any, request: Any, *, what: str | None = None, **_: Any) -> Any:
        self.calls += 1
        return self.reply(what)

    def close(self) -> None:
        self.channel.close()


def _client(server_reply: Any) -> tuple[InferenceClient, _FakeChannel]:
    server = _FakeChannel(server_reply)
    client = InferenceClient(server, Mode.MPC, 3)  # type: ignore[arg-type]
    client._session = infer_pb2.SessionInfo(session_id="s", dealer_address="d")
    client._masked_model = np.zeros(3, np.uint64)
    dealer = _FakeChannel(lambda _: infer_pb2.ClientSeed(query_id="q", seed=bytes(32)))
    client._dealer = dealer  # type: ignore[assignment]
    client._dealer_stub = dealer  # type: ignore[assignment]  # only .Prepare is looked up
    dealer.Prepare = None  # type: ignore[attr-defined]
    return client, server


def test_a_server_that_never_finishes_cannot_keep_the_client_querying() -> None:
    # Empty replies that never say done: the client stops after the plan's round trips
    # instead of calling Step forever.
    def reply(what: str | None) -> Any:
        return encode_frame(infer_pb2.StepReply(done=False), []) if what == "MPC query" else None

    client, server = _client(reply)
    with client, pytest.raises(ProtocolError, match="2 round trips"):
        client.query(np.ones((2, 3)), Output.PROBABILITY)
    assert server.calls == 1 + 2  # Prefetch, then exactly the plan's round trips

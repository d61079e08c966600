"""The MPC client against a server that misbehaves (no processes: the channels are faked)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.infer.client import STEP, InferenceClient
from sealfl.fl.infer.common import Mode
from sealfl.fl.infer.protos import infer_pb2
from sealfl.mpc import Output
from sealfl.mpc.wire import encode_frame


class _FakeLink:
    """Stands in for a reconnecting channel: answers every call with ``reply(method)``."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls: list[str] = []

    def call(self, method: str, request: Any, **_: Any) -> Any:
        self.calls.append(method)
        return self.reply(method)

    def close(self) -> None:
        pass


def _client(
    server_reply: Any, *, outputs: tuple[Output, ...] = ()
) -> tuple[InferenceClient, _FakeLink]:
    server = _FakeLink(server_reply)
    client = InferenceClient(
        server,  # type: ignore[arg-type]
        Mode.MPC,
        3,
        outputs=outputs,
        dealer_fingerprint="00" * 32,
    )
    client._session = infer_pb2.SessionInfo(session_id="s", dealer_address="d")
    client._masked_model = np.zeros(3, np.uint64)
    client._dealer = _FakeLink(lambda _: infer_pb2.ClientSeed(query_id="q", seed=bytes(32)))  # type: ignore[assignment]
    return client, server


def test_a_server_that_never_finishes_cannot_keep_the_client_querying() -> None:
    # Empty replies that never say done: the client stops after the plan's round trips
    # instead of calling Step forever.
    def reply(method: str) -> Any:
        return encode_frame(infer_pb2.StepReply(done=False), []) if method == STEP else None

    client, server = _client(reply)
    with client, pytest.raises(ProtocolError, match="2 round trips"):
        client.query(np.ones((2, 3)), Output.PROBABILITY)
    assert len(server.calls) == 1 + 2  # Prefetch, then exactly the plan's round trips


def test_zero_rows_and_unserved_outputs_are_refused_before_anything_is_sent() -> None:
    client, server = _client(lambda _: None, outputs=(Output.LABEL,))
    with client:
        with pytest.raises(ConfigError, match="at least one row, got 0"):
            client.query(np.zeros((0, 3)), Output.LABEL)
        with pytest.raises(ConfigError, match="serves the label output"):
            client.query(np.zeros((1, 3)), Output.LOGIT)
    assert server.calls == []

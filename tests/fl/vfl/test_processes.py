"""The leader and the follower as real processes over mutual RA-TLS (simulated TEE).

- Split training over two processes equals centralised training, loss for loss (PSI first,
  the aligned rows sorted by id on both sides).
- An attested follower that sends a non-finite activation, one of the wrong shape, a step out
  of order or a replayed step is refused with the reason; nothing is trained on it, and the
  leader ends at its deadline. (A follower that disappears: test_resume.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from vfl_parties import (
    assert_exact,
    central_losses,
    events,
    fresh_measurements,
    make_run,
    records,
    run_to_the_end,
    start_leader,
    step_losses,
)

from sealfl.data.vertical import read_party_csv
from sealfl.fl.vfl.halves import FollowerHalf
from sealfl.fl.vfl.launch import aligned_rows, connect_to_leader
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.roles import build_settings
from sealfl.fl.vfl.schedule import BatchPlan
from sealfl.fl.vfl.service import open_stream
from sealfl.fl.vfl.stream import Duplex, Inbox, cut_message, ids_digest
from sealfl.psi import Role, run_psi_on_channel
from sealfl.runtime import load_role_config

pytestmark = pytest.mark.timeout(300)


def test_split_training_over_two_processes_equals_central(tmp_path: Path) -> None:
    paths = make_run(tmp_path)
    leader, _ = run_to_the_end(paths)
    metrics = tmp_path / "leader" / "leader_metrics.jsonl"
    assert_exact(step_losses(metrics), central_losses(paths))
    psi = next(events(metrics, "psi"))
    assert psi["count"] == 455 and psi["own_size"] == psi["peer_size"] == 465
    assert "cosine attack AUC" in leader.output()
    last = [r for r in records(metrics) if r["event"] == "step"][-1]
    assert 0.0 <= last["cosine_auc"] <= 1.0


def _next(inbox: Inbox, stream: Duplex) -> pb.LeaderMessage:
    while True:
        event = inbox.get(time.monotonic() + 30)
        assert event is not None, "no message from the leader"
        if event.stream is stream and event.message is not None:
            return event.message


def test_the_leader_process_refuses_bad_steps_from_an_attested_follower(tmp_path: Path) -> None:
    # The follower's code is attested, so this plays a follower that misbehaves anyway (or is
    # broken): the real follower's connection, PSI and claims, then hand-made step messages.
    measurements = fresh_measurements()
    paths = make_run(tmp_path, leader_options={"step_deadline": 3.0}, measurements=measurements)
    settings = build_settings("breast", epochs=2, batch_size=64, seed=5)
    leader, address = start_leader(paths)
    try:
        config = load_role_config(paths["follower-config"])
        tee = config.runtime(simulated_measurement=lambda: measurements["follower"])
        data = read_party_csv(paths["follower-train"])
        claims = {"vfl-settings": bytes.fromhex(settings.digest())}
        channel = connect_to_leader(address, tee, claims, wait_s=10, expect=claims)
        result = run_psi_on_channel(channel, data.ids, role=Role.FOLLOWER)
        channel.close()
        aligned = data.take(aligned_rows(result, data.ids, role="follower"))
        claims["vfl-psi"] = result.transcript
        channel = connect_to_leader(address, tee, claims, wait_s=10, expect=claims)
        plan = BatchPlan.for_run(settings.train, aligned.n_rows)
        half = FollowerHalf(settings)
        act0 = half.forward(0, aligned.X[plan.rows(0)])
        inbox = Inbox()
        hello = pb.Hello(aligned_sha256=ids_digest(aligned.ids))

        def stream() -> Duplex:
            opened = open_stream(channel, inbox)
            opened.send(pb.FollowerMessage(hello=hello))
            assert _next(inbox, opened).WhichOneof("kind") == "welcome"
            assert _next(inbox, opened).start.step == 0
            return opened

        def activation(step: int, values: np.ndarray) -> pb.FollowerMessage:
            value = cut_message(values)
            return pb.FollowerMessage(activation=pb.Activation(step=step, value=value))

        nan = act0.copy()
        nan[5, 2] = np.inf
        attempts = [
            (activation(0, nan), "holds inf"),
            (activation(0, act0[:-1].copy()), "expected shape [64, 8], got [63, 8]"),
            (activation(3, act0), "out of order"),
        ]
        for message, expected in attempts:
            opened = stream()
            opened.send(message)
            reply = _next(inbox, opened)
            assert reply.stop.refused and expected in reply.stop.reason, reply
        opened = stream()
        opened.send(activation(0, act0))
        assert _next(inbox, opened).gradient.step == 0
        assert _next(inbox, opened).start.step == 1
        opened.send(activation(0, act0))  # replayed
        reply = _next(inbox, opened)
        assert reply.stop.refused and "replayed" in reply.stop.reason, reply
        channel.close()
        assert leader.finish() == 1  # nobody answers step 0 properly before the deadline
    finally:
        leader.stop()
    words = leader.words()
    assert words.count("leader: refused:") == 4, leader.output()
    assert "no commit from the follower for step 0 within the deadline of 3 s" in words
    metrics = tmp_path / "leader" / "leader_metrics.jsonl"
    assert len(list(events(metrics, "refused"))) == 4
    assert not list(events(metrics, "step"))  # nothing was trained on a refused message

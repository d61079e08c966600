"""Attacks on a running PS process, from a client in this test: each is refused with a reason.

The PS and one honest worker are real processes (``sealfl run --config``, simulated TEE, mutual
RA-TLS). The test plays everyone else: a party without attestation, one with the wrong
measurement, an attested worker with other settings, schema or model, a second seat for a taken
id, and a seated worker that sends an update of the wrong shape, NaN, absurd values, a
truncated stream, and a late one. Each is refused with a reason naming the problem, and the
round goes on: it closes with the honest worker's update and the attacker's one valid update,
and training completes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hfl_parties import SETTINGS, events, make_run, pinned_measurement, serve_ps, start_role

from sealfl.errors import ChannelError, ProtocolError
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.protos import hfl_pb2_grpc as pb_grpc
from sealfl.fl.hfl.service import PsLink
from sealfl.fl.hfl.training import initial_model
from sealfl.models.nn import manifest_of
from sealfl.net import (
    SecureChannel,
    TensorChunker,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.runtime import PartyRuntime, TeeChoice, TeeKind

pytestmark = pytest.mark.timeout(240)


def runtime(paths: dict[str, Path], measurement: bytes) -> PartyRuntime:
    return PartyRuntime.create(
        TeeChoice(TeeKind.SIMULATED, simulated_platform=paths["platform"]),
        simulated_measurement=lambda: measurement,
        policy=paths["policy-worker"],
    )


def connect(address: str, tee: PartyRuntime, credentials: Any = None) -> SecureChannel[Any]:
    return open_secure_channel(
        address, credentials=credentials or tee.credentials(), server_verifier=tee.verify_peer
    )


def update(header: pb.UpdateHeader, values: np.ndarray, *, trailer: bool = True) -> Iterator[Any]:
    yield pb.UpdateMessage(header=header)
    for chunk in TensorChunker(values):
        if chunk.WhichOneof("part") == "trailer" and not trailer:
            return
        yield pb.UpdateMessage(chunk=chunk)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[dict[str, Any]]:
    paths = make_run(
        tmp_path,
        SETTINGS,
        ps_options={"min_workers": 1, "round_deadline": 60.0, "join_deadline": 120.0},
    )
    yield from serve_ps(paths)


def test_every_attack_is_refused_with_a_reason_and_the_round_goes_on(
    federation: dict[str, Any],
) -> None:
    paths, address = federation["paths"], federation["address"]
    worker_tee = runtime(paths, pinned_measurement(paths, "ps"))  # a worker the PS accepts

    # 0. The other way round: a worker process whose own config declares another learning rate
    # checks the PS's attested settings claim before joining, and refuses to contribute.
    config = paths["worker-1-config"]
    other_lr = config.with_name("worker-1-other-lr.toml")
    other_lr.write_text(config.read_text().replace("learning_rate = 0.05", "learning_rate = 0.07"))
    assert other_lr.read_text() != config.read_text()
    picky = start_role("worker-1-other-lr", other_lr, paths["logs"], ps=address)
    federation["parties"].append(picky)

    # 1. No attestation: a plain self-signed certificate is refused at enrolment.
    with pytest.raises(ChannelError, match="refused to enrol"):
        connect(address, worker_tee, make_self_signed_credentials("intruder"))
    # 2. Attested, but the wrong code: refused, and (role configs keep the policy to themselves)
    # told only to see the server's log, which names the measurement (checked below).
    with pytest.raises(ChannelError, match="enrolment refused: see the server log"):
        connect(address, runtime(paths, b"\x01" * 32))

    # 3. Attested worker code, but other settings, schema or model: refused at join.
    channel = connect(address, worker_tee)
    link = PsLink(channel)
    model = initial_model(SETTINGS, _schema(paths))
    manifest = manifest_of(model)
    good = {
        "schema_digest": _schema(paths).digest(),
        "manifest_digest": manifest.digest(),
        "num_examples": 100,
    }
    with pytest.raises(ProtocolError, match=r"learning_rate: expected 0\.05, got 0\.5"):
        link.join(2, SETTINGS.replace(learning_rate=0.5), **good)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="data schema differs"):
        link.join(2, SETTINGS, **{**good, "schema_digest": "0" * 64})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="model manifest differs"):
        link.join(2, SETTINGS, **{**good, "manifest_digest": "0" * 64})  # type: ignore[arg-type]
    info = link.join(2, SETTINGS, **good)  # type: ignore[arg-type]

    # 4. Another attested party asking for the same id: a second seat is refused.
    other = PsLink(connect(address, worker_tee))
    with pytest.raises(ProtocolError, match="a second seat for the same id is refused"):
        other.join(2, SETTINGS, **good)  # type: ignore[arg-type]
    other.close()

    assert picky.finish() == 1
    assert "its attested certificate claims hfl-settings" in picky.output()
    assert "refusing to contribute" in picky.output()

    # The honest worker joins; with both seats taken, round 1 opens.
    honest = start_role("worker-1", paths["worker-1-config"], paths["logs"], ps=address)
    federation["parties"].append(honest)
    view = link.get_global(2, 0, manifest, seat_token=info.seat_token, timeout_s=60)
    assert view.state == "model" and view.version == 0 and view.values is not None
    values = view.values
    stub = channel.stub(pb_grpc.HflStub)

    def submit(array: np.ndarray, *, trailer: bool = True, version: int = 0) -> pb.UpdateReply:
        header = pb.UpdateHeader(
            worker_id=2,
            version=version,
            seat_token=info.seat_token,
            num_examples=100,
            manifest_digest=manifest.digest(),
        )
        reply: pb.UpdateReply = stub.SubmitUpdate(
            update(header, array, trailer=trailer), timeout=30
        )
        return reply

    nan = values.copy()
    nan[7] = np.nan
    absurd = values.copy()
    absurd[3] = 1e30
    attacks = {
        "too long": (np.concatenate([values, values[:5]]), "total_bytes: at most"),
        "too short": (values[:-5], f"expected {values.size:,} float32 values"),
        "2-D": (values.reshape(1, -1), "expected a 1-D little-endian float32 buffer"),
        "float64": (  # the model's bytes, as half as many doubles
            values[: values.size // 2].astype(np.float64),
            "expected a 1-D little-endian float32 buffer",
        ),
        "NaN": (nan, "holds nan at element"),
        "absurd": (absurd, "absurd value"),
    }
    for name, (array, reason) in attacks.items():
        reply = submit(array)
        assert reply.status == pb.UpdateReply.REFUSED, name
        assert reason in reply.reason, (name, reply.reason)
    truncated = submit(values, trailer=False)
    assert truncated.status == pb.UpdateReply.REFUSED
    assert "stream ended before the trailer" in truncated.reason

    # The round goes on: a valid update from the attacker's seat is accepted.
    assert submit(values).status == pb.UpdateReply.ACCEPTED
    nxt = link.get_global(2, 1, manifest, seat_token=info.seat_token, timeout_s=60)
    assert nxt.state == "model" and nxt.version == 1  # round 1 closed with both updates
    late = submit(values, version=0)
    assert late.status == pb.UpdateReply.REFUSED and "late update for round 1" in late.reason
    assert nxt.values is not None
    assert submit(nxt.values, version=1).status == pb.UpdateReply.ACCEPTED
    done = link.get_global(2, 2, manifest, seat_token=info.seat_token, timeout_s=60)
    assert done.state == "done" and done.evaluation is not None and done.model_path
    link.close()

    assert federation["ps"].finish() == 0
    assert honest.finish() == 0
    metrics = paths["root"] / "ps" / "ps_metrics.jsonl"
    rounds = list(events(metrics, "round"))
    assert [r["contributors"] for r in rounds] == [[1, 2], [1, 2]]
    refused = [r["reason"] for r in events(metrics, "refused")]
    assert len(refused) == 3 + 1 + len(attacks) + 1 + 1  # joins, seat, updates, truncated, late
    enrolments = list(events(metrics, "enrolment_refused"))
    assert len(enrolments) == 2
    assert any("measurement: expected one of" in r["detail"] for r in enrolments)
    log = federation["ps"].output()
    assert "refused update from worker 2" in log and "stream ended before the trailer" in log


def _schema(paths: dict[str, Path]) -> Any:
    from sealfl.data import read_shard

    return read_shard(paths["test"]).data.schema

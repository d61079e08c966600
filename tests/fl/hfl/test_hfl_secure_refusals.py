"""Attacks on a running secure-aggregation PS, from a worker played by this test.

The PS and one honest worker are real processes with ``secure_aggregation = true``; the test
is worker 2, attested, with a real :class:`~sealfl.secagg.SecAggWorker`. Every malformed,
replayed or misdirected message is refused with a reason, nothing it had taken is lost, and
the round completes with both workers' masked updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hfl_parties import SETTINGS, events, make_run, pinned_measurement, serve_ps, start_role
from test_hfl_refusals import _schema, connect, runtime, update

from sealfl.errors import ProtocolError
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.protos import hfl_pb2_grpc as pb_grpc
from sealfl.fl.hfl.secure import (
    advert_from_proto,
    advert_to_proto,
    peer_bytes,
    peer_map,
    tag_to_proto,
    weighted_update,
)
from sealfl.fl.hfl.service import PsLink
from sealfl.fl.hfl.training import initial_model
from sealfl.models.nn import manifest_of
from sealfl.secagg import RoundTag, SecAggWorker, UnmaskRequest

pytestmark = pytest.mark.timeout(240)

SECURE = {"secure_aggregation": True}
ONE_ROUND = SETTINGS.replace(rounds=1)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[dict[str, Any]]:
    paths = make_run(
        tmp_path,
        ONE_ROUND,
        ps_options={**SECURE, "round_deadline": 60.0, "join_deadline": 120.0},
        worker_options=SECURE,
    )
    yield from serve_ps(paths)


def test_secure_aggregation_refuses_every_bad_message_and_the_round_completes(
    federation: dict[str, Any],
) -> None:
    paths, address = federation["paths"], federation["address"]
    channel = connect(address, runtime(paths, pinned_measurement(paths, "ps")))
    link = PsLink(channel)
    schema = _schema(paths)
    manifest = manifest_of(initial_model(ONE_ROUND, schema))
    info = link.join(
        2,
        ONE_ROUND,
        schema_digest=schema.digest(),
        manifest_digest=manifest.digest(),
        num_examples=100,
    )
    honest = start_role("worker-1", paths["worker-1-config"], paths["logs"], ps=address)
    federation["parties"].append(honest)
    view = link.get_global(2, 0, manifest, seat_token=info.seat_token, timeout_s=60)
    assert view.state == "model" and view.secagg is not None and view.values is not None
    tag, params = view.secagg
    stub = channel.stub(pb_grpc.HflStub)
    call = {"seat_token": info.seat_token, "timeout_s": 60.0}

    def submit(values: np.ndarray, secagg_tag: RoundTag | None) -> pb.UpdateReply:
        header = pb.UpdateHeader(
            worker_id=2,
            version=0,
            seat_token=info.seat_token,
            num_examples=100,
            manifest_digest=manifest.digest(),
        )
        if secagg_tag is not None:
            header.secagg_tag.CopyFrom(tag_to_proto(secagg_tag))
        reply: pb.UpdateReply = stub.SubmitUpdate(update(header, values), timeout=30)
        return reply

    # An update in the clear is refused: this federation takes only masked updates.
    plain = submit(view.values, None)
    assert plain.status == pb.UpdateReply.REFUSED and "in the clear is refused" in plain.reason

    me = SecAggWorker(worker_id=2, params=params, consistency=True)
    advert = me.advertise(tag)
    other_round = RoundTag(tag.session, 5)
    with pytest.raises(ProtocolError, match="round tag mismatch"):
        link.secagg(2, other_round, advert=advert_to_proto(advert, 100), **call)
    forged = advert_to_proto(advert, 100)
    forged.worker_id = 1  # worker 2 advertising keys as worker 1
    with pytest.raises(ProtocolError, match="an advert for worker 1"):
        link.secagg(2, tag, advert=forged, **call)
    # The honest advert: the roster comes back once worker 1 advertised too.
    reply = link.secagg(2, tag, advert=advert_to_proto(advert, 100), **call)
    roster = {a.worker_id: a for a in reply.roster}
    assert sorted(roster) == [1, 2] and roster[2].identity  # bound to our RA-TLS certificate
    replayed = me.advertise(RoundTag(tag.session, 0, 0))  # the same attempt: the same keys
    assert replayed == advert
    other_keys = SecAggWorker(worker_id=2, params=params).advertise(tag)
    with pytest.raises(ProtocolError, match="differs from its advert already taken"):
        link.secagg(2, tag, advert=advert_to_proto(other_keys, 100), **call)
    bundle = me.share_keys(tag, [advert_from_proto(a, tag) for a in reply.roster])
    reply = link.secagg(2, tag, bundle=peer_bytes(bundle.ciphertexts), **call)
    delivered = peer_map(reply.delivery, what="delivery")
    total = sum(a.weight for a in roster.values())
    masked = me.masked_input(
        tag,
        delivered,
        weighted_update(view.values, view.values, weight=100, total=total, gradient=False),
    )
    # Masked updates: another round's tag, the wrong length or dtype, then the real one, then
    # a different one (a replay with other content).
    for values, secagg_tag, reason in (
        (masked.values, other_round, "carries the tag of round 6"),
        (masked.values[:-3], tag, f"expected {params.numel} little-endian uint32"),
        (masked.values.view(np.float32), tag, f"expected {params.numel} little-endian uint32"),
    ):
        refused = submit(values, secagg_tag)
        assert refused.status == pb.UpdateReply.REFUSED and reason in refused.reason, reason
    assert submit(masked.values, tag).status == pb.UpdateReply.ACCEPTED
    assert submit(masked.values, tag).status == pb.UpdateReply.ACCEPTED  # identical: again
    changed = masked.values.copy()
    changed[0] += np.uint32(1)
    replay = submit(changed, tag)
    assert replay.status == pb.UpdateReply.REFUSED
    assert "differs from its input already taken" in replay.reason
    # Unmask: confirm the survivor list with worker 1, then answer.
    reply = link.secagg(2, tag, unmask=pb.SecAggPoll(), **call)
    request = UnmaskRequest(
        tag, frozenset(reply.unmask_request.survivors), frozenset(reply.unmask_request.dropped)
    )
    assert request.survivors == {1, 2} and not request.dropped
    tags = me.confirm(request)
    reply = link.secagg(2, tag, confirm=peer_bytes(tags), **call)
    me.check_confirmations(request, peer_map(reply.confirmations, what="confirmations"))
    response = me.unmask(request)
    wrong_kind = pb.SecAggAnswer(  # a self-mask seed share offered as worker 1's mask-key share
        seed_shares=peer_bytes({2: response.seed_shares[2]}).items,
        key_shares=peer_bytes({1: response.seed_shares[1]}).items,
    )
    with pytest.raises(ProtocolError, match="key_shares: worker 1 is not listed"):
        link.secagg(2, tag, answer=wrong_kind, **call)
    answer = pb.SecAggAnswer(
        seed_shares=peer_bytes(response.seed_shares).items,
        key_shares=peer_bytes(response.key_shares).items,
    )
    link.secagg(2, tag, answer=answer, **call)
    done = link.get_global(2, 1, manifest, seat_token=info.seat_token, timeout_s=60)
    assert done.state == "done"
    link.close()

    assert federation["ps"].finish() == 0
    assert honest.finish() == 0
    metrics = paths["root"] / "ps" / "ps_metrics.jsonl"
    (secagg,) = events(metrics, "secagg")
    assert secagg["survivors"] == [1, 2]
    refused = [r["reason"] for r in events(metrics, "refused")]
    assert len(refused) == 1 + 3 + 3 + 1 + 1  # plain, adverts, masked, replay, answer

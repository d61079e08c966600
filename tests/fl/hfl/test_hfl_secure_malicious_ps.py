"""The classic attack on secure aggregation, played by a malicious PS against real workers.

The workers are real processes with ``secure_aggregation = true``. The PS is hfl's own
:func:`~sealfl.fl.hfl.launch.run_ps`, run in this test process in the simulated TEE with the
measurement the workers' policy pins (so they attest it), but with its gRPC service replaced by
one that lies in the unmask stage: it wants both the self-mask seed share *and* the mask-key
share of worker 3, which together with worker 3's masked input would reveal its update.

- one request that lists worker 3 as survivor and as dropped;
- the survivor list split between workers: worker 1 is told worker 3 dropped (so it would hand
  over worker 3's mask-key share) while workers 2 and 3 are told everyone survived (so they hand
  over worker 3's self-mask seed shares); the PS forwards only the confirmations that help it;
- the split over time: worker 1 answers the true list, the PS keeps the answer but breaks the
  call; the worker reconnects, resends its round, and is asked again with worker 3 dropped;
- the split over a PS "restart" as a new run (a new session): the restarted workers train the
  same update again and are told worker 3 dropped (the PS would then hold two sums over the
  same updates, differing by worker 3's).

Each time the worker refuses with a reason in its log, and the test inspects every unmask
answer the PS received: no mask-key share of worker 3 ever arrives.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from hfl_parties import SETTINGS, TIMEOUT_S, Party, make_run, ps_address, ps_runtime, start_role

import sealfl.fl.hfl.launch as launch
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.roles import ps_options
from sealfl.fl.hfl.server import ParameterServer
from sealfl.fl.hfl.service import HflService
from sealfl.runtime.role_config import load_role_config

pytestmark = pytest.mark.timeout(240)

SECURE = {"secure_aggregation": True}
ONE_ROUND = SETTINGS.replace(rounds=1)
TARGET = 3  # the worker whose update the PS tries to unmask

Lie = Callable[[int, pb.SecAggUnmaskRequest], pb.SecAggUnmaskRequest]


class MaliciousService(HflService):
    """hfl's service, lying in the unmask stage and recording every answer it receives."""

    def __init__(
        self, ps: ParameterServer, *, lie: Lie, hide_tags_of: int | None, lose_answer_of: int | None
    ) -> None:
        super().__init__(ps)
        self.ps = ps
        self.lie = lie
        self.hide_tags_of = hide_tags_of
        self.lose_answer_of = lose_answer_of
        self.answers: list[pb.SecAggAnswer] = []
        self.answered_by: list[int] = []
        self.lock = threading.Lock()

    def SecAgg(  # noqa: N802 (gRPC's method name)
        self, request: pb.SecAggRequest, context: grpc.ServicerContext
    ) -> pb.SecAggReply:
        kind = request.WhichOneof("stage")
        if kind == "answer":
            with self.lock:  # what the PS received, whether or not the round takes it
                self.answers.append(request.answer)
                self.answered_by.append(request.worker_id)
                lose = request.worker_id == self.lose_answer_of
                self.lose_answer_of = None if lose else self.lose_answer_of
            if lose:  # keep the shares, make the worker believe the connection broke
                context.abort(grpc.StatusCode.INTERNAL, "connection lost (a lie)")
        reply = super().SecAgg(request, context)
        if reply.status != pb.SecAggReply.OK:
            return reply
        if kind == "unmask":
            reply.unmask_request.CopyFrom(self.lie(request.worker_id, reply.unmask_request))
        if kind == "confirm" and self.hide_tags_of is not None:
            kept = [i for i in reply.confirmations.items if i.peer != self.hide_tags_of]
            del reply.confirmations.items[:]
            reply.confirmations.items.extend(kept)
        return reply


@pytest.fixture
def federation(tmp_path: Path) -> dict[str, Any]:
    paths = make_run(
        tmp_path,
        ONE_ROUND,
        workers=3,
        ps_options={**SECURE, "round_deadline": 60.0, "join_deadline": 120.0},
        worker_options={**SECURE, "wait_for_server": 30.0},
    )
    paths["out"] = tmp_path / "ps"
    return paths


@contextlib.contextmanager
def malicious_ps(
    paths: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    *,
    lie: Lie,
    hide_tags_of: int | None = None,
    lose_answer_of: int | None = None,
    log_suffix: str = "",
) -> Iterator[tuple[MaliciousService, list[Party]]]:
    """Run the lying PS in a thread and three real workers; yield once all are started."""
    config = load_role_config(paths["ps-config"], environ={"SEALFL_LISTEN": "127.0.0.1:0"})
    tee = ps_runtime(paths)
    services: list[MaliciousService] = []

    def service(ps: ParameterServer) -> MaliciousService:
        services.append(
            MaliciousService(ps, lie=lie, hide_tags_of=hide_tags_of, lose_answer_of=lose_answer_of)
        )
        return services[-1]

    monkeypatch.setattr(launch, "HflService", service)
    lines: list[str] = []
    outcome: list[Any] = []

    def serve() -> None:
        try:
            outcome.append(launch.run_ps(ps_options(config), tee, on_line=lines.append))
        except BaseException as exc:  # reported by the test, not lost in the thread
            outcome.append(exc)

    threads = torch.get_num_threads()  # the PS sets its --threads in this process
    thread = threading.Thread(target=serve, name="malicious-ps", daemon=True)
    thread.start()
    parties: list[Party] = []
    try:
        logs, out = paths["logs"], paths["out"]
        deadline = time.monotonic() + TIMEOUT_S
        while not (out / "ps.address").is_file() and not outcome:
            assert time.monotonic() < deadline, "no PS address:\n" + "\n".join(lines)
            time.sleep(0.05)
        assert not outcome, f"{outcome}\n" + "\n".join(lines)
        address = ps_address(out)
        (out / "ps.address").unlink()  # a PS started later writes its own
        workers = [
            start_role(f"worker-{k}{log_suffix}", paths[f"worker-{k}-config"], logs, ps=address)
            for k in (1, 2, 3)
        ]
        parties += workers
        yield services[0], workers
    finally:
        if services:
            services[0].ps.stop("the malicious PS's test is over")
        thread.join(timeout=60)
        torch.set_num_threads(threads)
        for party in parties:
            party.stop()


def refused(worker: Party, reason: str) -> None:
    """Wait until the worker logs that it refused the PS's request, for ``reason``."""
    worker.wait_for(lambda: reason in worker.words(), f"its refusal ({reason})")


def test_one_request_listing_a_worker_as_survivor_and_dropped_is_refused(
    federation: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def lie(worker: int, honest: pb.SecAggUnmaskRequest) -> pb.SecAggUnmaskRequest:
        assert sorted(honest.survivors) == [1, 2, 3] and not honest.dropped
        return pb.SecAggUnmaskRequest(survivors=[1, 2, 3], dropped=[TARGET])

    with malicious_ps(federation, monkeypatch, lie=lie) as (service, workers):
        for worker in workers:
            refused(worker, f"workers [{TARGET}] listed as both survivor and dropped")
        # Every worker refused before revealing anything: no answer reached the PS.
        assert service.answers == []


def test_a_survivor_list_split_between_workers_yields_no_mask_key_share(
    federation: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker 1 is told worker 3 dropped; 2 and 3 the truth. The PS keeps worker 1's
    # confirmation tags (over the other list) from 2 and 3, so that they do answer.
    def lie(worker: int, honest: pb.SecAggUnmaskRequest) -> pb.SecAggUnmaskRequest:
        assert sorted(honest.survivors) == [1, 2, 3] and not honest.dropped
        if worker == 1:
            return pb.SecAggUnmaskRequest(survivors=[1, 2], dropped=[TARGET])
        return honest

    with malicious_ps(federation, monkeypatch, lie=lie, hide_tags_of=1) as (service, workers):
        workers[0].wait_for(
            lambda: "survivor-list confirmations to worker 1" in workers[0].words(),
            "its refusal",
        )
        assert "worker 2's tag does not verify: it was shown another survivor list" in (
            workers[0].words()
        )
        workers[0].wait_for(lambda: len(service.answers) >= 2, "the answers of workers 2 and 3")
        assert sorted(service.answered_by) == [2, 3]
        # The PS got worker 3's self-mask seed shares (it survived), and nothing that would
        # remove its pairwise masks: no mask-key share of any worker, from anyone.
        seeds = {item.peer for a in service.answers for item in a.seed_shares}
        assert TARGET in seeds
        assert [item.peer for a in service.answers for item in a.key_shares] == []


def test_a_second_request_in_the_same_round_after_a_lost_answer_is_refused(
    federation: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker 1 answers the true list (worker 3's self-mask seed share among its shares); the
    # PS keeps the answer but tells worker 1 the connection broke. Worker 1 reconnects, resends
    # its identical round messages, and is then asked again, now with worker 3 dropped.
    polls: dict[int, int] = {}

    def lie(worker: int, honest: pb.SecAggUnmaskRequest) -> pb.SecAggUnmaskRequest:
        polls[worker] = polls.get(worker, 0) + 1
        if worker == 1 and polls[worker] > 1:
            return pb.SecAggUnmaskRequest(survivors=[1, 2], dropped=[TARGET])
        return honest

    with malicious_ps(federation, monkeypatch, lie=lie, lose_answer_of=1) as (service, workers):
        workers[0].wait_for(
            lambda: "already confirmed a different survivor list" in workers[0].words(),
            "its refusal",
        )
        assert polls[1] == 2 and "reconnecting" in workers[0].words()
        workers[0].wait_for(lambda: len(service.answers) >= 3, "the answers of workers 2 and 3")
        assert sorted(service.answered_by) == [1, 2, 3]  # worker 1's once: the second refused
        first = service.answers[service.answered_by.index(1)]
        assert TARGET in {item.peer for item in first.seed_shares}
        assert [item.peer for a in service.answers for item in a.key_shares] == []


def test_a_new_run_cannot_unmask_the_same_update_over_another_survivor_list(
    federation: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run 1: the truth; every worker answers (worker 3's self-mask seed shares among them).
    # Then the PS "restarts" as a new run (a new session, fresh keys) and the workers, restarted
    # with their seat files and sealed ledgers, train the same first round to the same update.
    # Told that worker 3 dropped, worker 1 would hand over worker 3's new mask-key share, and
    # the PS would hold two sums over the same updates: the difference is worker 3's update.
    def truth(worker: int, honest: pb.SecAggUnmaskRequest) -> pb.SecAggUnmaskRequest:
        return honest

    with malicious_ps(federation, monkeypatch, lie=truth) as (first, workers):
        workers[0].wait_for(lambda: len(first.answers) >= 3, "the answers of run 1")
        assert {TARGET} <= {item.peer for item in first.answers[0].seed_shares}
        first_run = first.ps.run_id

    # Workers 1 and 2 are told worker 3 dropped, and see only each other's confirmation tags
    # (worker 3, told the truth, confirms another list): their consistency check passes.
    def lie(worker: int, honest: pb.SecAggUnmaskRequest) -> pb.SecAggUnmaskRequest:
        if worker == TARGET:
            return honest
        return pb.SecAggUnmaskRequest(survivors=[1, 2], dropped=[TARGET])

    with malicious_ps(
        federation, monkeypatch, lie=lie, hide_tags_of=TARGET, log_suffix="-again"
    ) as (second, workers):
        assert second.ps.run_id != first_run
        for worker in workers[:2]:
            refused(worker, "this update was already unmasked in another session")
        # (Worker 3 refuses too: its neighbours' tags are over the other list.)
        assert 1 not in second.answered_by and 2 not in second.answered_by
        assert [item.peer for a in second.answers for item in a.key_shares] == []

"""hfl with ``secure_aggregation = true``: real processes, dropouts, and what the PS received.

Five workers, threshold 3: two are killed once the round's keys are shared (stage 2 closed,
they are training), so their masked updates never arrive. The round completes with the three
survivors; the model equals FedAvg of those three to the quantisation error, and what the PS
holds (its sealed round state: every message it received) contains no individual update.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hfl_parties import (
    Party,
    events,
    free_port,
    make_run,
    ps_address,
    ps_runtime,
    records,
    run_in_process,
    start_role,
)

from sealfl.fl.hfl.aggregation import ServerOptimizer, Upload
from sealfl.fl.hfl.checkpoint import CHECKPOINT_LABEL
from sealfl.fl.hfl.launch import MODEL_LABEL
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.secure import (
    SECAGG_FILE,
    SECAGG_LABEL,
    SecureRound,
    aggregate,
    weighted_update,
)
from sealfl.fl.hfl.settings import Settings
from sealfl.fl.hfl.training import LocalResult
from sealfl.seal import ReleaseKey, SealingKey, open_release, read_sealed
from sealfl.secagg import Quantizer

pytestmark = pytest.mark.timeout(300)

SECURE = {"secure_aggregation": True}


def local_results(
    paths: dict[str, Path], settings: Settings, workers: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, LocalResult], ServerOptimizer]:
    """Round 1 of every worker, computed here with the same shards, seeds and code."""
    with run_in_process(paths, settings, workers) as (values, trainers, optimizer):
        return values, {k: t.train(0, values) for k, t in trainers.items()}, optimizer


def ps_sealing_key(paths: dict[str, Path]) -> SealingKey:
    """The PS's checkpoint key: its TEE's, for the measurement the workers' policy pinned."""
    return ps_runtime(paths).sealing_key(CHECKPOINT_LABEL)


def trained_model(paths: dict[str, Path], out: Path) -> pb.TrainedModel:
    owner = ReleaseKey.load(paths["owner-key"])
    opened = out.parent / "model.pb"
    open_release(out / "hfl_model.release", opened, private_key=owner, label=MODEL_LABEL)
    return pb.TrainedModel.FromString(opened.read_bytes())


@pytest.mark.slow  # six processes: about 40 s on two shared cores
def test_two_of_five_killed_after_sharing_keys_the_sum_is_the_three_survivors(
    tmp_path: Path,
) -> None:
    # Four local epochs (about a second with five workers on two cores): the workers killed
    # once stage 2 closed are still training.
    settings = Settings(model="small-cnn", rounds=1, local_epochs=4, batch_size=64)
    paths = make_run(
        tmp_path,
        settings,
        workers=5,
        ps_options={**SECURE, "secagg_threshold": 3, "min_workers": 3, "round_deadline": 6.0},
        worker_options=SECURE,
    )
    logs, out = paths["logs"], tmp_path / "ps"
    metrics = out / "ps_metrics.jsonl"
    parties: list[Party] = []
    try:
        ps = start_role("ps", paths["ps-config"], logs, listen="127.0.0.1:0")
        parties.append(ps)
        ps.wait_for(lambda: (out / "ps.address").is_file(), "its address")
        address = ps_address(out)
        workers = {
            k: start_role(f"worker-{k}", paths[f"worker-{k}-config"], logs, ps=address)
            for k in range(1, 6)
        }
        parties += workers.values()

        def shared() -> bool:
            return any(r["closed"] == "shares" for r in events(metrics, "secagg_stage"))

        ps.wait_for(shared, "stage 2 closed", watch=tuple(workers.values()))
        workers[4].kill()
        workers[5].kill()
        assert ps.finish() == 0, ps.output()
        for k in (1, 2, 3):
            assert workers[k].finish() == 0, workers[k].output()

        stages = {r["closed"]: r for r in events(metrics, "secagg_stage")}
        assert stages["masked inputs"]["missing"] == [4, 5]
        (secagg,) = events(metrics, "secagg")
        assert secagg["survivors"] == [1, 2, 3]
        (round_1,) = events(metrics, "round")
        assert round_1["contributors"] == [1, 2, 3]

        # The result: FedAvg of the three survivors, to the quantisation error.
        global_0, results, optimizer = local_results(paths, settings, (1, 2, 3, 4, 5))
        expected = optimizer.step(
            0, global_0, [Upload(k, results[k].examples, results[k].values) for k in (1, 2, 3)]
        )
        trained = trained_model(paths, out)
        got = np.frombuffer(trained.values, dtype="<f4")
        weights = {k: r.examples for k, r in results.items()}
        roster, survivors = sum(weights.values()), weights[1] + weights[2] + weights[3]
        quantizer = Quantizer(16.0, 5)
        bound = quantizer.sum_error_bound(3) * roster / survivors
        assert np.max(np.abs(got - expected)) <= bound + 1e-6
        everyone = optimizer.step(
            0, global_0, [Upload(k, r.examples, r.values) for k, r in results.items()]
        )
        assert np.max(np.abs(got - everyone)) > 100 * bound  # 4 and 5 were not counted

        # What the PS received: its sealed round state holds every message of the round.
        _, state = SecureRound.from_bytes(
            read_sealed(out / SECAGG_FILE, ps_sealing_key(paths), label=SECAGG_LABEL)
        )
        agg = state.agg
        assert sorted(agg.masked) == [1, 2, 3] and sorted(agg.bundles) == [1, 2, 3, 4, 5]
        for k in (1, 2, 3):
            plain = quantizer.quantize(
                weighted_update(
                    results[k].values, global_0, weight=weights[k], total=roster, gradient=False
                )
            )
            equal = np.count_nonzero(agg.masked[k].values == plain)
            assert equal < 0.001 * plain.size  # uniform-looking, not the update
        # It never held both a self-mask seed share and a mask-key share of one worker.
        seeds = {p for r in agg.responses.values() for p in r.seed_shares}
        keys = {p for r in agg.responses.values() for p in r.key_shares}
        assert seeds == {1, 2, 3} and keys == {4, 5}
        # Nothing float-like from a worker went into the PS's log or metrics.
        assert "refused" not in {r["event"] for r in records(metrics)}
        assert "refused" not in ps.output()
    finally:
        for party in parties:
            party.stop()


def uninterrupted_secure_model(paths: dict[str, Path], settings: Settings) -> np.ndarray:
    """The secure run's rounds computed here: the masks cancel, so a round is a function of
    the quantised updates, the same bit for bit however often the PS was restarted."""
    quantizer = Quantizer(16.0, 2)
    with run_in_process(paths, settings) as (values, trainers, optimizer):
        for version in range(settings.rounds):
            results = [t.train(version, values) for t in trainers.values()]
            total = sum(r.examples for r in results)
            summed = np.zeros(values.size, dtype=np.uint32)
            for r in results:
                update = weighted_update(
                    r.values, values, weight=r.examples, total=total, gradient=False
                )
                summed += quantizer.quantize(update)
            mean = quantizer.dequantize_sum(summed, 2) * (total / total)
            upload = aggregate(mean, values, gradient=False)
            values = optimizer.step(version, values, [Upload(0, 1, upload)])
        return values


def kill_and_resume(tmp_path: Path, stages: list[str]) -> list[str]:
    """Kill the PS once stage ``stages[r]`` of round ``r + 1`` closed; resume; same model.

    The workers are stopped (SIGSTOP) the moment the stage is seen closed, so the round cannot
    move on before the PS dies; they continue (SIGCONT) once the new PS listens. Returns the
    resumed PS's "resuming secure aggregation at stage ..." lines.
    """
    settings = Settings(
        model="small-cnn", rounds=len(stages), aggregation="fedavgm", server_momentum=0.5
    )
    address = f"127.0.0.1:{free_port()}"
    paths = make_run(
        tmp_path,
        settings,
        ps_options={**SECURE, "resume": "auto"},
        worker_options={**SECURE, "wait_for_server": 90.0},
    )
    logs, out = paths["logs"], tmp_path / "ps"
    metrics = out / "ps_metrics.jsonl"
    parties: list[Party] = []
    try:
        ps = start_role("ps", paths["ps-config"], logs, listen=address)
        parties.append(ps)
        ps.wait_for(lambda: (out / "ps.address").is_file(), "its address")
        workers = [
            start_role(f"worker-{k}", paths[f"worker-{k}-config"], logs, ps=address) for k in (1, 2)
        ]
        parties += workers
        for index, stage in enumerate(stages):
            seen = len(list(events(metrics, "listening")))

            def closed(r: int = index + 1, s: str = stage) -> bool:
                return any(
                    e["round"] == r and e["closed"] == s for e in events(metrics, "secagg_stage")
                )

            ps.wait_for(closed, f"round {index + 1} {stage}", watch=tuple(workers))
            for worker in workers:
                os.kill(worker.proc.pid, signal.SIGSTOP)
            ps.kill()
            ps = start_role(f"ps-{index + 1}", paths["ps-config"], logs, listen=address)
            parties.append(ps)
            ps.wait_for(
                lambda n=seen: len(list(events(metrics, "listening"))) > n, "listening again"
            )
            for worker in workers:
                os.kill(worker.proc.pid, signal.SIGCONT)
        assert ps.finish() == 0, ps.output()
        for worker in workers:
            assert worker.finish() == 0, worker.output()
        trained = trained_model(paths, out)
        assert trained.rounds_done == settings.rounds
        expected = uninterrupted_secure_model(paths, settings)
        assert trained.values == expected.astype("<f4").tobytes()
        return [
            line
            for i in range(len(stages))
            for line in (logs / f"ps-{i + 1}.log").read_text().splitlines()
            if "resuming secure aggregation at stage" in line
        ]
    finally:
        for party in parties:
            if party.proc.poll() is None:
                os.kill(party.proc.pid, signal.SIGCONT)
            party.stop()


def test_a_ps_killed_while_workers_train_resumes_to_the_same_model(tmp_path: Path) -> None:
    # Stage 2 closed: the workers are training, the PS holds keys and shares, no input yet.
    resumed = kill_and_resume(tmp_path, ["shares", "adverts"])
    assert "round 1: resuming secure aggregation at stage masked" in resumed[0]


@pytest.mark.slow
def test_a_ps_killed_at_every_stage_resumes_to_the_same_model(tmp_path: Path) -> None:
    resumed = kill_and_resume(tmp_path, ["adverts", "shares", "masked inputs", "confirmations"])
    assert len(resumed) >= 2  # a stage's messages may all be in before the workers stop


def test_a_secure_worker_refuses_a_ps_without_secure_aggregation(tmp_path: Path) -> None:
    # The PS is attested but does not claim hfl-secagg: the worker sends nothing, not even a
    # join, and says why.
    paths = make_run(tmp_path, worker_options=SECURE)
    logs, out = paths["logs"], tmp_path / "ps"
    parties: list[Party] = []
    try:
        ps = start_role("ps", paths["ps-config"], logs, listen="127.0.0.1:0")
        parties.append(ps)
        ps.wait_for(lambda: (out / "ps.address").is_file(), "its address")
        address = ps_address(out)
        worker = start_role("worker-1", paths["worker-1-config"], logs, ps=address)
        parties.append(worker)
        assert worker.finish() != 0
        assert "claims no secure aggregation (hfl-secagg)" in worker.words()
        assert not list(events(out / "ps_metrics.jsonl", "joined"))
    finally:
        for party in parties:
            party.stop()

"""Crashes with real processes: a worker killed mid-run, and the PS killed mid-round.

- A worker killed with SIGKILL: the round it was in closes at its deadline with the quorum,
  the PS logs who was dropped, and the restarted worker takes its seat back (its seat token,
  sealed to its TEE) and contributes again.
- The PS killed with SIGKILL mid-round: restarted from the same role config, whose
  ``resume = "auto"`` began a new run on the first start (no checkpoint yet), it continues from
  its sealed checkpoint, the workers reconnect by themselves, and the run ends with exactly the
  model an uninterrupted run computes (here: the same rounds computed in this process from the
  same shards, seeds and code; a round is a function of the global model and the seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hfl_parties import Party, events, free_port, make_run, records, run_in_process, start_role

from sealfl.fl.hfl.aggregation import Upload
from sealfl.fl.hfl.launch import MODEL_LABEL
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.settings import Settings
from sealfl.seal import ReleaseKey, open_release

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_a_killed_worker_is_dropped_at_the_deadline_and_rejoins(tmp_path: Path) -> None:
    # A round's work (~0.3 s here) fits its 1.5 s deadline many times over, while a restarted
    # worker needs longer than that to start (importing torch alone takes over a second): the
    # round it was killed in closes without it whatever the timing.
    settings = Settings(model="small-cnn", rounds=30, batch_size=128, local_epochs=3)
    paths = make_run(
        tmp_path,
        settings,
        ps_options={"min_workers": 1, "round_deadline": 1.5},
        worker_options={"wait_for_server": 30.0},
    )
    logs, metrics = paths["logs"], tmp_path / "ps" / "ps_metrics.jsonl"
    parties: list[Party] = []
    try:
        ps = start_role("ps", paths["ps-config"], logs, listen="127.0.0.1:0")
        parties.append(ps)
        ps.wait_for(lambda: (tmp_path / "ps" / "ps.address").is_file(), "its address")
        address = (tmp_path / "ps" / "ps.address").read_text().strip()
        w1 = start_role("worker-1", paths["worker-1-config"], logs, ps=address)
        w2 = start_role("worker-2", paths["worker-2-config"], logs, ps=address)
        parties += [w1, w2]
        ps.wait_for(
            lambda: any(r["round"] >= 2 for r in events(metrics, "round")),
            "round 2",
            watch=(w1, w2),
        )
        w2.kill()  # mid-run: whatever it was doing, it sends nothing more
        again = start_role("worker-2-again", paths["worker-2-config"], logs, ps=address)
        parties.append(again)

        def dropped_2() -> bool:
            return any(2 in r["workers"] for r in events(metrics, "dropped"))

        ps.wait_for(dropped_2, "worker 2 dropped")
        dropped = next(r for r in events(metrics, "dropped") if 2 in r["workers"])
        assert "dropped: worker 2 (no update by the deadline)" in ps.output()
        assert ps.finish() == 0
        assert w1.finish() == 0
        assert again.finish() == 0
        rejoined = [r for r in records(metrics) if r["event"] == "rejoined" and r["worker"] == 2]
        assert rejoined, ps.output()
        rounds = list(events(metrics, "round"))
        assert rounds[-1]["round"] == settings.rounds
        after = [r for r in rounds if r["round"] > dropped["round"]]
        assert [1] in [r["contributors"] for r in after]  # rounds went on without it
        assert [1, 2] in [r["contributors"] for r in after]  # and with it again
        assert "rejoined with its seat token" in ps.output()
    finally:
        for party in parties:
            party.stop()


def uninterrupted_model(paths: dict[str, Path], settings: Settings) -> np.ndarray:
    """The rounds of the run computed here, with the same shards, seeds and code."""
    with run_in_process(paths, settings) as (values, trainers, optimizer):
        for version in range(settings.rounds):
            uploads = []
            for k, trainer in trainers.items():
                result = trainer.train(version, values)
                uploads.append(Upload(k, result.examples, result.values))
            values = optimizer.step(version, values, uploads)
        return values


def test_a_killed_ps_resumes_to_the_same_final_model(tmp_path: Path) -> None:
    settings = Settings(model="small-cnn", rounds=4, aggregation="fedavgm", server_momentum=0.5)
    address = f"127.0.0.1:{free_port()}"
    paths = make_run(
        tmp_path,
        settings,
        ps_options={"resume": "auto"},  # as a supervisor restarting the PS would use it
        worker_options={"wait_for_server": 90.0},
    )
    logs, out = paths["logs"], tmp_path / "ps"
    metrics = out / "ps_metrics.jsonl"
    parties: list[Party] = []
    try:
        ps = start_role("ps", paths["ps-config"], logs, listen=address)
        parties.append(ps)
        ps.wait_for(lambda: (out / "ps.address").is_file(), "its address")
        assert 'starting a new run (resume "auto")' in ps.output()
        for k in (1, 2):
            parties.append(start_role(f"worker-{k}", paths[f"worker-{k}-config"], logs, ps=address))

        def mid_round() -> bool:
            done = {r["round"] for r in events(metrics, "checkpoint")}
            opened = {r["round"] for r in events(metrics, "round_open")}
            return 2 in done and 3 in opened

        ps.wait_for(mid_round, "round 3 under way", watch=tuple(parties[1:]))
        ps.kill()
        assert not (out / "hfl_model.sealed").exists()
        resumed = start_role("ps-resumed", paths["ps-config"], logs, listen=address)
        parties.append(resumed)
        assert resumed.finish() == 0, resumed.output()
        for worker in parties[1:3]:
            assert worker.finish() == 0, worker.output()
        assert "PS: resuming run" in resumed.output()
        assert any(
            r["event"] == "reconnecting" for r in records(tmp_path / "worker-1_metrics.jsonl")
        )
        listening = list(events(metrics, "listening"))
        assert listening[0]["start_version"] == 0
        assert listening[1]["start_version"] >= 2  # resumed from a checkpoint, not from 0

        owner = ReleaseKey.load(paths["owner-key"])
        opened = tmp_path / "model.pb"
        open_release(out / "hfl_model.release", opened, private_key=owner, label=MODEL_LABEL)
        trained = pb.TrainedModel.FromString(opened.read_bytes())
        assert trained.rounds_done == settings.rounds
        expected = uninterrupted_model(paths, settings)
        assert trained.values == expected.astype("<f4").tobytes()
    finally:
        for party in parties:
            party.stop()

"""hfl simulation: the same model as a real federation, sampling, dropouts, metrics, refusals.

The equivalence test runs a real 2-worker federation (PS and workers as separate processes over
mutual RA-TLS, simulated TEE) and a 2-client simulation on sealfl's process pool with the same
settings, split and seeds, and compares the released model with the simulated one bit for bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sealfl_command import sealfl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fl" / "hfl"))
from hfl_parties import SETTINGS, free_port, make_run, start_role

from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.hfl.launch import MODEL_LABEL
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.seal import ReleaseKey, open_release
from sealfl.sim import LocalBackend, plan_round
from sealfl.sim.hfl import HflPopulation, HflSimOptions, run_hfl_sim

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_two_simulated_clients_end_with_the_real_federations_model(tmp_path: Path) -> None:
    paths = make_run(tmp_path / "real", SETTINGS, workers=2)
    logs, out = paths["logs"], tmp_path / "real" / "ps"
    address = f"127.0.0.1:{free_port()}"
    parties = []
    try:
        ps = start_role("ps", paths["ps-config"], logs, listen=address)
        parties.append(ps)
        parties += [
            start_role(f"worker-{k}", paths[f"worker-{k}-config"], logs, ps=address) for k in (1, 2)
        ]
        # the simulation runs meanwhile: two pool processes, an in-memory link, no TEE
        options = HflSimOptions(
            population=HflPopulation(settings=SETTINGS, clients=2),
            per_round=2,
            out=tmp_path / "sim",
        )
        backend = LocalBackend(2)
        try:
            simulated = run_hfl_sim(options, backend, on_line=lambda _: None)
        finally:
            backend.close()
        for party in parties:
            assert party.finish() == 0, party.output()
    finally:
        for party in parties:
            party.stop()
    opened = tmp_path / "model.pb"
    owner = ReleaseKey.load(paths["owner-key"])
    open_release(out / "hfl_model.release", opened, private_key=owner, label=MODEL_LABEL)
    real = pb.TrainedModel.FromString(opened.read_bytes())
    assert simulated.completed and simulated.rounds_done == real.rounds_done == SETTINGS.rounds
    assert simulated.model.astype("<f4").tobytes() == real.values
    saved = np.load(tmp_path / "sim" / "sim_model.npy", allow_pickle=False)
    assert saved.tobytes() == real.values


def test_sampling_is_k_of_n_seeded_and_drops_at_the_rate() -> None:
    eligible = list(range(1, 1001))
    plans = [plan_round(r, eligible=eligible, per_round=50, dropout=0.2, seed=7) for r in (1, 2)]
    for plan in plans:
        assert len(plan.sampled) == len(set(plan.sampled)) == 50
        assert list(plan.sampled) == sorted(plan.sampled)
        assert set(plan.dropped) <= set(plan.sampled)
        assert set(plan.training) == set(plan.sampled) - set(plan.dropped)
    assert plans[0].sampled != plans[1].sampled
    assert plan_round(2, eligible=eligible, per_round=50, dropout=0.2, seed=7) == plans[1]
    many = [plan_round(r, eligible=eligible, per_round=50, dropout=0.2, seed=1) for r in range(40)]
    rate = sum(len(p.dropped) for p in many) / (40 * 50)
    assert 0.15 < rate < 0.25
    assert not plan_round(1, eligible=eligible, per_round=50, dropout=0.0, seed=1).dropped
    only = plan_round(1, eligible=[3, 9], per_round=2, dropout=0.0, seed=1)
    assert only.sampled == (3, 9)


def test_a_run_writes_the_real_runs_metrics_and_says_it_is_unprotected(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    done = sealfl(
        "sim",
        "hfl",
        "--clients",
        "40",
        "--per-round",
        "8",
        "--rounds",
        "3",
        "--dropout",
        "0.25",
        "--partition",
        "dirichlet",
        "--workers",
        "1",
        "--local-steps",
        "2",
        "--out",
        out,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SIMULATION: ")
    assert "no TEE, no attestation" in done.stdout
    records = list(read_metrics(out / "ps_metrics.jsonl"))
    first = records[0]
    assert first["event"] == "simulation"
    assert (first["tee"], first["attestation"], first["link"]) == ("none", "none", "in-memory")
    opened = [r for r in records if r["event"] == "round_open"]
    rounds = [r for r in records if r["event"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    dropped = {r["round"]: r["workers"] for r in records if r["event"] == "dropped"}
    for o, r in zip(opened, rounds, strict=True):
        assert len(o["sampled"]) == 8
        assert sorted(r["contributors"] + r["missing"]) == o["sampled"]
        assert r["missing"] == dropped.get(r["round"], [])
    assert sum(len(v) for v in dropped.values()) > 0  # 24 draws at 0.25
    evaluations = [r for r in records if r["event"] == "evaluation"]
    assert [e["round"] for e in evaluations] == [1, 2, 3]
    assert records[-1]["event"] == "done" and records[-1]["completed"] is True
    assert (out / "hfl_report.png").stat().st_size > 1000
    model = np.load(out / "sim_model.npy", allow_pickle=False)
    assert model.dtype == np.dtype("<f4") and np.isfinite(model).all()


def test_a_run_stopped_before_its_first_evaluation_reports_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    # seed 0 samples client 2 in round 1 and drops it: the round closes with no update
    args = ["--clients", "2", "--per-round", "1", "--dropout", "0.9", "--rounds", "3"]
    done = sealfl(
        "sim", "hfl", *args, "--workers", "1", "--local-steps", "1", "--out", out, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert "server: training stopped: round 1 closed with 0 update(s)" in done.stdout
    assert "done: 0 rounds" in done.stdout and "median round n/a" in done.stdout
    assert "metrics and model in" in done.stdout
    assert (out / "sim_model.npy").is_file() and not (out / "hfl_report.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "5", "--per-round", "6"], "--per-round must be between 1 and --clients (5)"),
        (["--dropout", "1"], "--dropout must be a rate in [0, 1)"),
        (["--backend", "dask"], "--backend: expected one of ['local', 'ray'], got 'dask'"),
        (["--address", "auto"], "--address names a Ray cluster; it needs --backend ray"),
        (["--partition", "shards"], "--partition: expected one of ['iid', 'dirichlet']"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = sealfl("sim", "hfl", *args, "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert not (tmp_path / "out").exists()

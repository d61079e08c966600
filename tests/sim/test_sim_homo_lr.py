"""homo-lr simulation: the real federation's weights, sampling with dropouts, refusals.

The equivalence test runs a real 2-worker federation (PS and workers as separate processes over
RA-TLS, simulated TEE, 1024-bit key) and a 2-client simulation with the same data and settings
on sealfl's process pool; the ciphertexts differ (fresh randomness), the decrypted weights
must not.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from sealfl_command import sealfl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fl" / "homo_lr"))
from homo_lr_parties import Party, fresh_measurements, start_ps, start_worker

from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.demo import prepare_run_dir
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto
from sealfl.fl.homo_lr.launch import MODEL_FILE, MODEL_LABEL
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.seal import SealingKey, read_sealed
from sealfl.sim import LocalBackend
from sealfl.sim.homo_lr import HomoLrPopulation, HomoLrSimOptions, run_homo_lr_sim
from sealfl.tee import EvidenceProvider, SimulatedPlatform, SimulatedTee

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:a 1024-bit")]

ITERATIONS = 11


@pytest.mark.slow
def test_two_simulated_clients_end_with_the_real_federations_weights(tmp_path: Path) -> None:
    measurements = fresh_measurements()
    run = prepare_run_dir(tmp_path, workers=2, measurements=measurements)
    run["root"], run["logs"] = tmp_path, tmp_path / "logs"
    run["logs"].mkdir()
    parties: list[Party] = []
    try:
        address = start_ps(run, parties, epochs=ITERATIONS)
        workers = [start_worker(run, parties, k, address, ITERATIONS) for k in (1, 2)]
        options = HomoLrSimOptions(
            population=HomoLrPopulation(
                hp=Hyperparameters(iterations=ITERATIONS),
                train_sets=(str(run["train-1"]), str(run["train-2"])),
            ),
            per_round=2,
            validate_set=str(run["test"]),
            out=tmp_path / "sim",
        )
        backend = LocalBackend(2)
        try:
            simulated = run_homo_lr_sim(
                options,
                backend,
                on_line=lambda _: None,
                crypto=PaillierServerCrypto.generate(1024, cores=1),
            )
        finally:
            backend.close()
        assert [w.finish() for w in workers] == [0, 0], [w.output() for w in workers]
        assert parties[0].finish() == 0, parties[0].output()
    finally:
        for party in parties:
            party.stop()
    platform = SimulatedPlatform.load(run["platform"])
    tee = cast(EvidenceProvider, SimulatedTee(platform, measurements["ps"]))
    key = SealingKey.from_tee(tee, label=MODEL_LABEL.encode())
    sealed = read_sealed(tmp_path / "ps" / MODEL_FILE, key, label=MODEL_LABEL)
    real = pb.TrainedModel.FromString(sealed)
    assert simulated.completed and simulated.rounds_done == real.iterations_done == ITERATIONS
    np.testing.assert_array_equal(simulated.model, np.array(real.weights))
    saved = np.load(tmp_path / "sim" / "sim_model.npy", allow_pickle=False)
    np.testing.assert_array_equal(saved, np.array(real.weights))


def test_many_clients_with_dropouts_write_the_ps_records(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    done = sealfl(
        "sim",
        "homo-lr",
        "--clients",
        "30",
        "--per-round",
        "6",
        "--dropout",
        "0.3",
        "--epochs",
        "4",
        "--key-bits",
        "1024",
        "--workers",
        "1",
        "--evaluate-every",
        "2",
        "--partition",
        "dirichlet",
        "--out",
        out,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SIMULATION: ")
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("iter:")] == [
        "0",
        "2",
        "3",
    ]
    records = list(read_metrics(out / "ps_metrics.jsonl"))
    assert records[0]["event"] == "simulation" and records[0]["tee"] == "none"
    opened = [r for r in records if r["event"] == "round_open"]
    rounds = [r for r in records if r["event"] == "round"]
    assert len(opened) == len(rounds) == 4
    for o, r in zip(opened, rounds, strict=True):
        assert len(o["sampled"]) == 6
        assert r["contributors"] == sorted(set(o["sampled"]) - set(o["dropped"]))
    assert sum(len(o["dropped"]) for o in opened) > 0
    weights = np.load(out / "sim_model.npy", allow_pickle=False)
    assert weights.shape == (31,) and not np.allclose(weights, 1.0)


def test_a_round_with_every_client_dropped_stops_and_says_who(tmp_path: Path) -> None:
    options = HomoLrSimOptions(
        population=HomoLrPopulation(hp=Hyperparameters(iterations=50), clients=20),
        per_round=1,
        dropout=0.9,
        key_bits=1024,
    )
    lines: list[str] = []
    result = run_homo_lr_sim(options, LocalBackend(1), on_line=lines.append)
    assert not result.completed and result.rounds_done < 50
    assert "fewer than the 1 needed (--min-clients); dropped: [" in result.stop_reason
    assert any(line.startswith("server: training stopped: iteration") for line in lines)


def test_a_bad_dirichlet_concentration_is_refused_by_its_own_option(tmp_path: Path) -> None:
    done = sealfl("sim", "homo-lr", "--clients", "4", "--dirichlet-alpha", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "--dirichlet-alpha must be a positive number, got 0.0" in " ".join(done.stderr.split())

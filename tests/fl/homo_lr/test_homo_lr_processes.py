"""homo-lr with real processes on loopback: the `sealfl homo-lr` commands, simulated TEE, RA-TLS.

Every party is a separate ``python -m sealfl.cli.main`` process; the test keeps their PIDs,
polls files for readiness and never sleeps a fixed time to "let things happen". Keys are 1024
bits to keep the suite quick (the protocol does not depend on the size).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import cast

import grpc
import numpy as np
import pytest
from homo_lr_parties import (
    CLI,
    NAMES,
    TIMEOUT_S,
    Party,
    in_process_tee,
    start_ps,
    start_worker,
)

from sealfl.data import breast
from sealfl.errors import ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import Hyperparameters, with_bias
from sealfl.fl.homo_lr.demo import simulated_policy_toml
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.launch import (
    MODEL_FILE,
    MODEL_LABEL,
    PS_METRICS_FILE,
    PUBKEY_HASH_CLAIM,
)
from sealfl.fl.homo_lr.peers import Peer
from sealfl.fl.homo_lr.plaintext import train_plaintext
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.protos import homo_lr_pb2_grpc as pb_grpc
from sealfl.fl.homo_lr.server import (
    ParameterServer,
    ServerSettings,
    SubmitStatus,
    TrainingResult,
)
from sealfl.fl.homo_lr.service import GrpcPsLink, HomoLrService
from sealfl.he import EncryptedVector
from sealfl.net import SecureServer, open_secure_channel
from sealfl.seal import SealingKey, read_sealed
from sealfl.tee import (
    EvidenceProvider,
    SimulatedPlatform,
    SimulatedTee,
    VerifiedPeer,
    create_ratls_certificate,
)

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")


def _in_process_ps(
    run: dict[str, Path],
    crypto: PaillierServerCrypto,
    *,
    worker_num: int,
    hp: Hyperparameters,
    bound_key: bytes | None = None,
) -> tuple[ParameterServer[EncryptedVector], SecureServer[VerifiedPeer]]:
    """A PS core of this test process behind RA-TLS gRPC (not started).

    Its certificate binds ``bound_key``, by default the public key of ``crypto``.
    """
    tee = in_process_tee(run, "ps")
    key = crypto.public_key_bytes() if bound_key is None else bound_key
    test = breast.load_split("homo_test")
    core: ParameterServer[EncryptedVector] = ParameterServer(
        crypto=crypto,
        validation=(test.X, test.labels().astype(np.float64)),
        settings=ServerSettings(
            worker_num=worker_num, min_workers=worker_num, hp=hp, join_deadline_s=20
        ),
        metrics=MetricsLog(None, party="ps"),
        on_line=lambda line: None,
    )
    server: SecureServer[VerifiedPeer] = SecureServer(
        credentials=create_ratls_certificate(
            tee.provider,
            claims={PUBKEY_HASH_CLAIM: hashlib.sha256(key).digest()},
            hostnames=("localhost", "127.0.0.1"),
        ),
        peer_verifier=tee.verify_peer,
    )
    server.add_servicer(pb_grpc.add_HomoLrServicer_to_server, HomoLrService(core))
    return core, server


def test_two_workers_train_and_the_sealed_model_matches_plaintext(
    run: dict[str, Path], parties: list[Party]
) -> None:
    address = start_ps(run, parties, epochs=11)
    workers = [start_worker(run, parties, k, address, 11) for k in (1, 2)]
    assert [w.finish() for w in workers] == [0, 0], [w.output() for w in workers]
    assert parties[0].finish() == 0, parties[0].output()
    out = workers[0].output()
    assert "PS key binding verified" in out
    iter_lines = [line for line in out.splitlines() if line.startswith("iter:")]
    assert [line.split()[1] for line in iter_lines] == ["0", "10"]

    # Only the PS's (simulated) enclave can open the sealed model.
    platform = SimulatedPlatform.load(run["platform"])
    measurement = bytes.fromhex((run["root"] / "measurement-ps.hex").read_text())
    tee = cast(EvidenceProvider, SimulatedTee(platform, measurement))
    key = SealingKey.from_tee(tee, label=MODEL_LABEL.encode())
    model = pb.TrainedModel.FromString(
        read_sealed(run["root"] / "ps" / MODEL_FILE, key, label=MODEL_LABEL)
    )
    assert model.iterations_done == 11 and list(model.contributors) == [1, 2]
    parts = [
        (with_bias(d.X), d.labels().astype(np.float64))
        for d in (breast.load_split("homo_guest"), breast.load_split("homo_host"))
    ]
    *_, last = train_plaintext(parts, Hyperparameters(iterations=11))
    np.testing.assert_allclose(np.array(model.weights), last.weights, rtol=0, atol=1e-6)
    metrics = (run["root"] / "ps" / PS_METRICS_FILE).read_text().splitlines()
    assert sum('"event":"round"' in line for line in metrics) == 11


def test_worker_refuses_a_ps_that_fails_its_policy(
    run: dict[str, Path], parties: list[Party]
) -> None:
    address = start_ps(run, parties, epochs=5)
    platform = SimulatedPlatform.load(run["platform"])
    wrong = run["root"] / "policy-expects-worker-code.toml"
    ps_code = bytes.fromhex((run["root"] / "measurement-ps.hex").read_text())
    not_ps = bytes(b ^ 0xFF for b in ps_code)
    wrong.write_text(simulated_policy_toml(not_ps, platform.fingerprint))
    worker = start_worker(run, parties, 1, address, 5, policy=wrong)
    assert worker.finish() == 1
    assert "error:" in worker.words() and "measurement: expected one of" in worker.words()


def test_ps_refuses_an_unattested_worker_and_goes_on(
    run: dict[str, Path], parties: list[Party]
) -> None:
    address = start_ps(run, parties, workers=1, epochs=3)
    SimulatedPlatform.create(run["root"] / "rogue-platform")
    rogue = start_worker(run, parties, 2, address, 3, platform=run["root"] / "rogue-platform")
    assert rogue.finish() == 1
    assert "refused" in rogue.words() and "platform" in rogue.words(), rogue.output()
    good = start_worker(run, parties, 1, address, 3)
    assert good.finish() == 0, good.output()
    assert parties[0].finish() == 0
    assert "refused a party at enrolment" in parties[0].output()


def test_worker_stops_when_the_ps_key_binding_does_not_verify(
    run: dict[str, Path], parties: list[Party]
) -> None:
    # A PS that binds one Paillier key into its attested certificate but hands out another.
    bound, served = PaillierServerCrypto.generate(1024), PaillierServerCrypto.generate(1024)
    _, server = _in_process_ps(
        run,
        served,
        worker_num=1,
        hp=Hyperparameters(iterations=5),
        bound_key=bound.public_key_bytes(),
    )
    address = server.start()
    try:
        worker = start_worker(run, parties, 1, address, 5)
        assert worker.finish() == 1
        output = worker.words()
        assert f"PS at {address} attested" in output, output  # refused for the key only
        assert "is not the one bound into its attested RA-TLS certificate" in output, output
    finally:
        server.stop(grace=0)


@pytest.mark.parametrize(("min_workers", "ps_code"), [(1, 0), (2, 1)])
def test_dead_worker_mid_run(
    run: dict[str, Path], parties: list[Party], min_workers: int, ps_code: int
) -> None:
    address = start_ps(
        run, parties, "--min-workers", str(min_workers), "--round-deadline", "3", epochs=150
    )
    survivor = start_worker(run, parties, 1, address, 150)
    doomed = start_worker(run, parties, 2, address, 150)
    doomed.wait_for(lambda out: "iter: 10 " in out, "iteration 10")
    doomed.proc.kill()
    ps = parties[0]
    assert ps.finish() == ps_code, ps.output()
    if ps_code == 0:
        assert "worker(s) 2 missed the deadline; dropped" in ps.words()
        assert survivor.finish() == 0, survivor.output()
    else:
        assert "without worker(s) 2" in ps.words() and "--min-workers is 2" in ps.words()
        assert survivor.finish() == 1
        assert "the PS stopped training" in survivor.words()
        assert "missing: 2" in survivor.words()


def test_worker_stops_cleanly_when_the_ps_dies(run: dict[str, Path], parties: list[Party]) -> None:
    address = start_ps(run, parties, workers=1, epochs=400)
    worker = start_worker(run, parties, 1, address, 400)
    worker.wait_for(lambda out: "iter: 10 " in out, "iteration 10")
    parties[0].proc.kill()
    started = time.monotonic()
    assert worker.finish() == 1
    assert time.monotonic() - started < 60
    assert "error:" in worker.words() and address in worker.words(), worker.output()


def test_demo_runs_every_party_and_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *CLI[:-1],
            "demo",
            "homo-lr",
            "--epochs",
            "3",
            "--key-bits",
            "1024",
            "--run-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "iter: 2  acc: " in result.stdout and "sealed model:" in result.stdout
    assert (tmp_path / "demo" / "ps" / MODEL_FILE).is_file()
    assert (tmp_path / "demo" / "worker-1_metrics.jsonl").read_text().count('"evaluation"') == 2


def test_refusals_over_grpc_keep_the_round(run: dict[str, Path]) -> None:
    """Duplicate, foreign-key and malformed submissions over real RA-TLS gRPC are refused."""
    worker_tee = in_process_tee(run, "worker")
    crypto, foreign = PaillierServerCrypto.generate(1024), PaillierServerCrypto.generate(1024)
    hp = Hyperparameters(iterations=1)
    core, server = _in_process_ps(run, crypto, worker_num=2, hp=hp)
    core.join(2, hp, NAMES, 10, Peer("second-worker"))  # joins in-process
    address = server.start()
    results: list[TrainingResult] = []
    driver = threading.Thread(target=lambda: results.append(core.run()), daemon=True)
    driver.start()
    channel = open_secure_channel(
        address,
        credentials=create_ratls_certificate(worker_tee.provider, hostnames=("localhost",)),
        server_verifier=worker_tee.verify_peer,
    )
    try:
        link = GrpcPsLink(channel)
        info = link.join(1, hp, NAMES, 10)
        worker = PaillierWorkerCrypto.from_public_key_bytes(info.public_key)
        view = link.get_model(1, 0)
        good = worker.step(view.encrypted_weights, np.eye(31), np.zeros(31))
        bad_key = PaillierWorkerCrypto.from_public_key_bytes(foreign.public_key_bytes()).step(
            foreign.encrypt(np.ones(31)), np.eye(31), np.zeros(31)
        )
        with pytest.raises(ProtocolError, match="encrypted vector is under key"):
            link.submit(1, 0, bad_key)
        with pytest.raises(ProtocolError, match="unusable encrypted vector"):
            link.submit(1, 0, good[: len(good) // 2])
        raw = channel.channel.unary_unary("/sealfl.fl.homo_lr.HomoLr/Submit")
        with pytest.raises(grpc.RpcError):  # not a protobuf message at all
            raw(b"\xff\xff\xff", timeout=5)
        assert link.submit(1, 0, good).status is SubmitStatus.ACCEPTED
        with pytest.raises(ProtocolError, match="second submission for iteration 0"):
            link.submit(1, 0, good)
        core.submit(2, 0, good, Peer("second-worker"))  # the round still completes
        final = link.get_model(1, 1)
        assert final.state == "ready" and final.evaluation is not None
    finally:
        channel.close()
        driver.join(timeout=30)
        server.stop(grace=0)
    assert results and results[0].completed

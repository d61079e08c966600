"""Issue 10 against real homo-lr processes: hostile insiders, restarts, operators, first users.

Each test starts ``sealfl homo-lr`` processes on loopback (simulated TEE, RA-TLS, 1024-bit
keys), does what the issue's attack or mishap did, and checks what the parties do now.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from homo_lr_parties import (
    CLI,
    TIMEOUT_S,
    Party,
    in_process_tee,
    reference_run,
    start_ps,
    start_worker,
)

from sealfl.data import Dataset, breast, write_fate_csv
from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import (
    Hyperparameters,
    affine_from_gram,
    gram_statistics,
    with_bias,
)
from sealfl.fl.homo_lr.checkpoint import CHECKPOINT_FILE
from sealfl.fl.homo_lr.encrypted import PaillierWorkerCrypto
from sealfl.fl.homo_lr.launch import MODEL_FILE, MODEL_LABEL, PS_METRICS_FILE
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.server import SubmitStatus
from sealfl.fl.homo_lr.service import GrpcPsLink
from sealfl.he import EncryptedVector
from sealfl.net import open_secure_channel
from sealfl.seal import SealingKey, read_sealed
from sealfl.tee import EvidenceProvider, SimulatedPlatform, SimulatedTee

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")


def _metrics(run: dict[str, Path]) -> list[dict[str, object]]:
    path = run["root"] / "ps" / PS_METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()]


def _sealed_model(run: dict[str, Path], path: Path) -> pb.TrainedModel:
    """Open a model the PS sealed, as only the PS's (simulated) enclave can."""
    platform = SimulatedPlatform.load(run["platform"])
    measurement = bytes.fromhex((run["root"] / "measurement-ps.hex").read_text())
    tee = cast(EvidenceProvider, SimulatedTee(platform, measurement))
    key = SealingKey.from_tee(tee, label=MODEL_LABEL.encode())
    return pb.TrainedModel.FromString(read_sealed(path, key, label=MODEL_LABEL))


def _iter_lines(party: Party) -> list[str]:
    return [line for line in party.output().splitlines() if line.startswith("iter:")]


# ---- 5: one insider's out-of-range update ------------------------------------------------


def test_an_insiders_1e30_update_is_dropped_and_the_federation_goes_on(
    run: dict[str, Path], parties: list[Party]
) -> None:
    """The attack of issue 10, 5, as an attested worker over RA-TLS: it ended everyone's run."""
    hp = Hyperparameters(iterations=3)
    address = start_ps(run, parties, epochs=3)
    honest = start_worker(run, parties, 1, address, 3)
    tee = in_process_tee(run, "worker")  # the attacker runs accepted worker code
    channel = open_secure_channel(
        address, credentials=tee.credentials(), server_verifier=tee.verify_peer
    )
    host = breast.load_split("homo_host")
    G, c, m = gram_statistics(with_bias(host.X), host.labels().astype(np.float64))
    try:
        link = GrpcPsLink(channel)
        info = link.join(2, hp, host.feature_names, host.n_rows)
        crypto = PaillierWorkerCrypto.from_public_key_bytes(info.public_key)
        for t in range(3):
            view = link.get_model(2, t)
            while view.state == "waiting":
                view = link.get_model(2, t)
            if t == 0:  # well-formed, honest-looking header, plaintext 1e30
                plaintext = int(1e30) << 64
                bad = EncryptedVector(
                    crypto.public_key,
                    [crypto.public_key.raw_encrypt(plaintext)] * 31,
                    scale_bits=64,
                    bound_bits=plaintext.bit_length() + 1,
                )
                outcome = link.submit(2, 0, bad.to_bytes())
                assert outcome.status is SubmitStatus.DROPPED, outcome
                assert "training goes on" in outcome.reason and "1e+30" not in outcome.reason
            else:
                A, b = affine_from_gram(G, c, m, eta=hp.step_size(t), alpha=hp.alpha)
                step = crypto.step(view.encrypted_weights, A, b)
                assert link.submit(2, t, step).status is SubmitStatus.ACCEPTED
        final = link.get_model(2, 3)
        while final.state == "waiting":
            final = link.get_model(2, 3)
        assert final.state == "ready"
    finally:
        channel.close()
    assert honest.finish() == 0, honest.output()
    ps = parties[0]
    assert ps.finish() == 0, ps.output()
    out = ps.words()
    assert "iteration 0: dropped worker 2's update: entry 0 decrypts to 1e+30" in out, out
    assert "the round goes on without it" in out and "learning rate" not in out
    dropped = [r for r in _metrics(run) if r["event"] == "update_dropped"]
    assert [(r["worker"], r["iteration"]) for r in dropped] == [(2, 0)]
    rounds = [r for r in _metrics(run) if r["event"] == "round"]
    assert [r["contributors"] for r in rounds] == [[1], [1, 2], [1, 2]]


# ---- 6: the PS's settings, the admitted workers -------------------------------------------


def test_the_ps_sets_the_settings_and_admits_only_listed_workers(
    run: dict[str, Path], parties: list[Party]
) -> None:
    admitted = run["root"] / "admitted.toml"
    admitted.write_text(
        '[[worker]]\nid = 1\nname = "hospital-a"\n\n[[worker]]\nid = 2\nname = "hospital-b"\n'
    )
    address = start_ps(run, parties, "--admit", str(admitted), epochs=3)
    mallory = start_worker(run, parties, 2, address, 3, "--name", "mallory", name="mallory")
    assert mallory.finish() == 1
    assert "not on this PS's list of admitted workers" in mallory.words(), mallory.output()
    seat_thief = start_worker(run, parties, 2, address, 3, "--name", "hospital-a", name="thief")
    assert seat_thief.finish() == 1
    assert "is admitted as worker id 1 only" in seat_thief.words(), seat_thief.output()
    eager = start_worker(run, parties, 2, address, 9, "--name", "hospital-b", name="eager")
    assert eager.finish() == 1
    assert "settings (lr 0.15 sqrt-decay, alpha 0.01, 9 iterations) differ" in eager.words()
    workers = [
        start_worker(run, parties, k, address, 3, "--name", name)
        for k, name in ((1, "hospital-a"), (2, "hospital-b"))
    ]
    assert [w.finish() for w in workers] == [0, 0], [w.output() for w in workers]
    assert parties[0].finish() == 0, parties[0].output()
    assert "refused a party at enrolment" in parties[0].output()


# ---- 9: resumable ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_ps_killed_mid_run_resumes_to_the_uninterrupted_result(
    run: dict[str, Path], parties: list[Party]
) -> None:
    """SIGKILL the PS mid-run, resume from its sealed checkpoint: the workers (waiting for it)
    rejoin, and the final model and printed results equal a run that was never interrupted."""
    epochs = 30
    hp = Hyperparameters(iterations=epochs)
    address = start_ps(run, parties, "--checkpoint-every", "5", epochs=epochs)
    wait = ("--wait-for-server", "60")
    workers = [start_worker(run, parties, k, address, epochs, *wait) for k in (1, 2)]
    ps = parties[0]
    ps.wait_for(lambda out: "iter: 10 " in out, "iteration 10")
    ps.wait_for(
        lambda _: any(r.get("next_iteration") == 15 for r in _metrics(run)), "checkpoint 15"
    )
    ps.proc.send_signal(signal.SIGKILL)
    assert ps.finish() == -signal.SIGKILL
    options = ("--checkpoint-every", "5", "--resume")
    start_ps(run, parties, *options, epochs=epochs, listen=address, name="ps-resumed")
    resumed = parties[-1]
    assert [w.finish() for w in workers] == [0, 0], [w.output() for w in workers]
    assert resumed.finish() == 0, resumed.output()
    assert "resumed session" in resumed.output()
    assert "Paillier key restored from the sealed checkpoint" in resumed.output()
    assert "worker 1 rejoined at iteration 15" in resumed.output()
    for worker in workers:
        assert "rejoined session" in worker.output(), worker.output()

    weights, lines = reference_run(hp)
    model = _sealed_model(run, run["root"] / "ps" / MODEL_FILE)
    np.testing.assert_array_equal(np.array(model.weights), weights)  # bit for bit
    assert model.iterations_done == epochs and list(model.contributors) == [1, 2]
    assert _iter_lines(workers[0])[-1] == lines[-1]
    # Iterations the killed PS had finished after its checkpoint were computed twice, alike.
    assert sorted(set(_iter_lines(workers[0]))) == sorted(set(lines))


@pytest.mark.slow
def test_a_restarted_worker_takes_its_seat_back_with_its_sealed_token(
    run: dict[str, Path], parties: list[Party]
) -> None:
    epochs = 40
    address = start_ps(run, parties, epochs=epochs)
    seat = run["root"] / "worker-2.seat"
    survivor = start_worker(run, parties, 1, address, epochs)
    doomed = start_worker(run, parties, 2, address, epochs, "--seat-file", str(seat))
    doomed.wait_for(lambda out: "iter: 10 " in out, "iteration 10")
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.finish()
    # Another attested party (no token) cannot take the seat of the worker that went away...
    impostor = start_worker(run, parties, 2, address, epochs, name="impostor")
    assert impostor.finish() == 1
    assert "worker id 2 is already taken by another party" in impostor.words()
    assert "seat token it sealed" in impostor.words()
    # ... the restarted worker, unsealing its token, can.
    back = start_worker(run, parties, 2, address, epochs, "--seat-file", str(seat), name="back")
    assert back.finish() == 0, back.output()
    assert survivor.finish() == 0, survivor.output()
    assert parties[0].finish() == 0, parties[0].output()
    assert "worker 2 took its seat back with its seat token" in parties[0].output()
    assert "joined session" in back.output() and "at iteration" in back.output()
    weights, lines = reference_run(Hyperparameters(iterations=epochs))
    model = _sealed_model(run, run["root"] / "ps" / MODEL_FILE)
    np.testing.assert_array_equal(np.array(model.weights), weights)
    assert _iter_lines(survivor)[-1] == lines[-1]


# ---- 10: the model survives its output directory -----------------------------------------


def test_the_model_goes_to_the_fallback_when_the_output_directory_is_gone(
    run: dict[str, Path], parties: list[Party]
) -> None:
    fallback = run["root"] / "fallback"
    # No checkpoints: nothing else is written into --out while it is being removed.
    options = ("--fallback-dir", str(fallback), "--checkpoint-every", "0")
    address = start_ps(run, parties, *options, workers=1, epochs=60)
    worker = start_worker(run, parties, 1, address, 60)
    worker.wait_for(lambda out: "iter: 10 " in out, "iteration 10")
    shutil.rmtree(run["root"] / "ps")
    assert worker.finish() == 0, worker.output()
    assert parties[0].finish() == 0, parties[0].output()
    saved = fallback / MODEL_FILE
    expected = f"it is sealed at {saved} instead"
    assert expected in worker.words() and "could not be written to" in worker.words()
    assert expected in parties[0].words()
    assert _sealed_model(run, saved).iterations_done == 60


# ---- 11: the operator stops the PS ------------------------------------------------------


def test_sigterm_on_the_ps_tells_the_workers_it_was_the_operator(
    run: dict[str, Path], parties: list[Party]
) -> None:
    address = start_ps(run, parties, epochs=400)
    workers = [start_worker(run, parties, k, address, 400) for k in (1, 2)]
    workers[1].wait_for(lambda out: "iter: 10 " in out, "iteration 10")
    ps = parties[0]
    ps.proc.send_signal(signal.SIGTERM)
    assert ps.finish() == 130, ps.output()
    for worker in workers:
        assert worker.finish() == 1
        words = worker.words()
        assert "the PS stopped training: stopped by the operator (SIGTERM)" in words, words
        assert "connection refused" not in words.lower() and "unavailable" not in words.lower()
    assert (run["root"] / "ps" / CHECKPOINT_FILE).is_file()
    assert "run the same command with --resume to continue" in ps.words()


# ---- 13, 18: the data a worker brings ----------------------------------------------------


def _reordered(run: dict[str, Path], k: int, order: list[int]) -> Path:
    data = breast.load_split("homo_guest")
    shuffled = Dataset(
        ids=data.ids,
        X=data.X[:, order],
        y=data.y,
        feature_names=tuple(data.feature_names[j] for j in order),
    )
    return write_fate_csv(shuffled, run["root"] / f"reordered-{k}.csv")


def test_a_worker_with_the_columns_in_another_order_is_refused(
    run: dict[str, Path], parties: list[Party]
) -> None:
    """It trained a silently wrong model before (issue 10, 13)."""
    address = start_ps(run, parties, workers=1, epochs=3)
    order = [1, 0, *range(2, 30)]
    swapped = start_worker(
        run, parties, 1, address, 3, train_set=_reordered(run, 1, order), name="swapped"
    )
    assert swapped.finish() == 1
    words = swapped.words()
    assert "the same feature columns in another order" in words, words
    assert "the worker's order is [x1, x0, x2," in words
    assert "the PS's validation set's is [x0, x1, x2," in words
    good = start_worker(run, parties, 1, address, 3)
    assert good.finish() == 0, good.output()
    assert parties[0].finish() == 0


def test_unusable_data_is_found_before_the_worker_takes_a_seat(run: dict[str, Path]) -> None:
    data = breast.load_split("homo_guest")
    X = data.X.copy()
    X[17, 3] = 1e300
    bad = write_fate_csv(
        Dataset(ids=data.ids, X=X, y=data.y, feature_names=data.feature_names),
        run["root"] / "bad.csv",
    )
    with socket.socket() as nobody:  # a server address nothing answers on: never reached
        nobody.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{nobody.getsockname()[1]}"
        result = subprocess.run(
            [
                *CLI, "worker", "--train-set", str(bad), "--id", "1", "--server", address,
                "--epochs", "3", "--policy", str(run["policy-worker"]),
                "--simulated-platform", str(run["platform"]),
            ],
            capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    error = " ".join((result.stdout + result.stderr).split())
    assert f"{bad}: column 'x3': values up to 1e+300 (row id {int(data.ids[17])})" in error
    assert "rescale the column" in error and "attested" not in error


# ---- 17, 19: addresses ------------------------------------------------------------------


def _ps_exit(run: dict[str, Path], *args: str) -> tuple[int, str]:
    result = subprocess.run(
        [
            *CLI, "ps", "--worker-num", "1", "--validate-set", str(run["test"]),
            "--policy", str(run["policy-ps"]), "--simulated-platform", str(run["platform"]),
            "--out", str(run["root"] / "never"), *args,
        ],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    return result.returncode, " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def taken_port() -> Iterator[str]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield f"127.0.0.1:{holder.getsockname()[1]}"


def test_ps_options_are_checked_before_anything_is_created(
    run: dict[str, Path], taken_port: str
) -> None:
    cases = [
        (("--listen", "127.0.0.1:70000"), "--listen: port must be 0..65535, got 70000"),
        (("--key-bits", "100"), "--key-bits: expected one of 1024, 2048, 3072, got 100"),
        (("--listen", taken_port), f"--listen {taken_port}: the port is in use"),
        (
            ("--service-listen", taken_port),
            f"--service-listen {taken_port}: the port is in use",
        ),
        (("--listen", "192.0.2.1:0", "--service-listen", "192.0.2.1:5"), "not an address"),
    ]
    for args, message in cases:
        code, output = _ps_exit(run, *args)
        assert code == 2 and message in output, (args, code, output)
        assert "Traceback" not in output and "grpc" not in output.lower()
        assert not (run["root"] / "never").exists(), args


def test_the_training_service_listens_where_it_is_told(
    run: dict[str, Path], parties: list[Party]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        service = f"127.0.0.1:{probe.getsockname()[1]}"
    address = start_ps(run, parties, "--service-listen", service, workers=1, epochs=2)
    worker = start_worker(run, parties, 1, address, 2)
    assert worker.finish() == 0, worker.output()
    assert parties[0].finish() == 0
    listening = [r for r in _metrics(run) if r["event"] == "listening"]
    assert listening[0]["service_address"] == service


def test_a_worker_started_first_waits_for_its_ps(
    run: dict[str, Path], parties: list[Party]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    early = start_worker(run, parties, 1, address, 2, "--wait-for-server", "60")
    impatient = start_worker(run, parties, 2, address, 2, name="impatient")
    assert impatient.finish() == 1
    assert f"--server {address}: nothing accepts connections there" in impatient.words()
    assert "--wait-for-server" in impatient.words()
    start_ps(run, parties, workers=1, epochs=2, listen=address)
    assert early.finish() == 0, early.output()
    assert parties[-1].finish() == 0


def test_a_worker_pointed_at_a_port_that_is_not_tls_says_so_at_once(
    run: dict[str, Path], parties: list[Party]
) -> None:
    """It retried for 52 s before (issue 10, 19); no retry can make a wrong port right."""
    with socket.socket() as http:
        http.bind(("127.0.0.1", 0))
        http.listen()

        def answer() -> None:
            conn, _ = http.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        address = f"127.0.0.1:{http.getsockname()[1]}"
        worker = start_worker(run, parties, 1, address, 2, "--wait-for-server", "60")
        assert worker.finish() == 2
    words = worker.words()
    expected = f"--server {address}: something accepts connections there but it is not a TLS"
    assert expected in words and "the TLS handshake failed" in words, words


def test_role_configs_take_the_new_options(tmp_path: Path) -> None:
    """`sealfl run --config` parties get every new option (settings, resume, seats, waits)."""
    from sealfl.fl.homo_lr.demo import prepare_run_dir, write_role_configs
    from sealfl.fl.homo_lr.roles import ps_options, worker_options
    from sealfl.runtime import load_role_config

    paths = prepare_run_dir(tmp_path, workers=2)
    configs = write_role_configs(tmp_path, paths, workers=2, iterations=7, preset="reference")
    ps_text = configs["ps"].read_text() + (
        'service_listen = "127.0.0.1:50071"\ncheckpoint_every = 3\nresume = true\n'
        'admit = "admitted.toml"\nfallback_dir = "fallback"\n'
    )
    configs["ps"].write_text(ps_text)
    (tmp_path / "admitted.toml").write_text('[[worker]]\nname = "hospital-a"\n')
    ps = ps_options(load_role_config(configs["ps"], environ={}))
    assert ps.hp == Hyperparameters(iterations=7)  # the reference settings, 7 iterations
    assert (ps.service_listen, ps.checkpoint_every, ps.resume) == ("127.0.0.1:50071", 3, True)
    assert ps.admit == tmp_path / "admitted.toml" and ps.fallback_dir == tmp_path / "fallback"
    worker_text = configs["worker 1"].read_text() + 'wait_for_server = 30\nname = "hospital-a"\n'
    configs["worker 1"].write_text(worker_text)
    worker = worker_options(load_role_config(configs["worker 1"], environ={}))
    assert worker.hp == ps.hp and worker.seat_file == tmp_path / "worker-1.seat"
    assert (worker.wait_for_server_s, worker.name) == (30.0, "hospital-a")
    configs["ps"].write_text(ps_text.replace('"127.0.0.1:50071"', '"127.0.0.1:70000"'))
    with pytest.raises(ConfigError, match=r"options.service_listen: port must be 0..65535"):
        ps_options(load_role_config(configs["ps"], environ={}))

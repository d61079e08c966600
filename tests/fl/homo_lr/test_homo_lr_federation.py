"""The PS core and the worker loop with real Paillier keys, in one process (no sockets).

The link between them calls the PS core directly, as the gRPC servicer does, with a fixed
"certificate fingerprint" per worker. Keys are 1024 bits: the algebra does not depend on size.
"""

from __future__ import annotations

import threading

import gmpy2
import numpy as np
import pytest

from sealfl import he
from sealfl.data import Dataset, breast
from sealfl.errors import ProtocolError
from sealfl.fl.homo_lr.algorithm import REFERENCE, Hyperparameters, Schedule, with_bias
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.metrics import MetricsLog
from sealfl.fl.homo_lr.plaintext import train_plaintext
from sealfl.fl.homo_lr.server import (
    JoinInfo,
    ModelView,
    ParameterServer,
    ServerSettings,
    TrainingResult,
)
from sealfl.fl.homo_lr.worker import Worker
from sealfl.he import EncryptedVector

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")

HP = Hyperparameters(learning_rate=0.15, alpha=0.01, iterations=4, schedule=Schedule.SQRT_DECAY)


@pytest.fixture(scope="module")
def crypto() -> PaillierServerCrypto:
    return PaillierServerCrypto.generate(1024)


@pytest.fixture(scope="module")
def other_crypto() -> PaillierServerCrypto:
    return PaillierServerCrypto.generate(1024)


class DirectLink:
    """A worker's calls delivered straight to the PS core, as worker ``peer``."""

    def __init__(self, ps: ParameterServer[EncryptedVector], peer: str) -> None:
        self.ps, self.peer = ps, peer

    def join(
        self, worker_id: int, hp: Hyperparameters, n_features: int, n_samples: int
    ) -> JoinInfo:
        return self.ps.join(worker_id, hp, n_features, n_samples, self.peer)

    def submit(self, worker_id: int, iteration: int, data: bytes) -> None:
        self.ps.submit(worker_id, iteration, data, self.peer)

    def get_model(self, worker_id: int, version: int) -> ModelView:
        return self.ps.get_model(worker_id, version, self.peer, 1.0)


def _server(
    crypto: PaillierServerCrypto, *, workers: int = 2, min_workers: int = 2, deadline: float = 30.0
) -> ParameterServer[EncryptedVector]:
    test = breast.load_split("homo_test")
    return ParameterServer(
        crypto=crypto,
        validation=(test.X, test.labels().astype(np.float64)),
        settings=ServerSettings(
            worker_num=workers,
            min_workers=min_workers,
            round_deadline_s=deadline,
            join_deadline_s=30.0,
            final_grace_s=2.0,
        ),
        metrics=MetricsLog(None, party="ps"),
        on_line=lambda line: None,
    )


def _start(ps: ParameterServer[EncryptedVector]) -> tuple[threading.Thread, list[TrainingResult]]:
    out: list[TrainingResult] = []
    thread = threading.Thread(target=lambda: out.append(ps.run()), daemon=True)
    thread.start()
    return thread, out


def _worker(
    ps: ParameterServer[EncryptedVector], k: int, data: Dataset, hp: Hyperparameters = HP
) -> Worker:
    return Worker(
        worker_id=k,
        data=data,
        hp=hp,
        link=DirectLink(ps, f"cert-{k}"),
        open_key=PaillierWorkerCrypto.from_public_key_bytes,
        metrics=MetricsLog(None, party=f"worker-{k}"),
        on_line=lambda line: None,
    )


def _federate(
    ps: ParameterServer[EncryptedVector], workers: list[Worker], *, timeout: float
) -> tuple[list[TrainingResult], list[str]]:
    """Run the PS and every worker on threads to the end; return its result and worker 1's lines."""
    thread, result = _start(ps)
    lines: list[str] = []
    workers[0].on_line = lines.append
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in [*threads, thread]:
        t.join(timeout=timeout)
    return result, lines


def test_encrypted_run_matches_plaintext_run(crypto: PaillierServerCrypto) -> None:
    guest, host = breast.load_split("homo_guest"), breast.load_split("homo_host")
    ps = _server(crypto)
    result, lines = _federate(ps, [_worker(ps, 1, guest), _worker(ps, 2, host)], timeout=120)
    assert result and result[0].completed, result
    parties = [(with_bias(d.X), d.labels().astype(np.float64)) for d in (guest, host)]
    *_, expected = train_plaintext(parties, HP)
    np.testing.assert_allclose(result[0].weights, expected.weights, rtol=0, atol=1e-6)
    assert not np.allclose(expected.weights, 1.0)  # training moved the weights
    assert lines[-1].startswith("iter: 3  acc: ")  # last iteration is always evaluated


def test_refusals_leave_the_round_going(
    crypto: PaillierServerCrypto, other_crypto: PaillierServerCrypto
) -> None:
    guest = breast.load_split("homo_guest")
    hp = Hyperparameters(iterations=1)
    ps = _server(crypto)
    for k in (1, 2):
        ps.join(k, hp, guest.n_features, guest.n_rows, f"cert-{k}")
    thread, result = _start(ps)
    view = ps.get_model(1, 0, "cert-1", 10.0)
    assert view.state == "ready"
    worker_crypto = PaillierWorkerCrypto.from_public_key_bytes(crypto.public_key_bytes())
    A, b = np.eye(31), np.zeros(31)
    good = worker_crypto.step(view.encrypted_weights, A, b)
    ps.submit(1, 0, good, "cert-1")

    with pytest.raises(ProtocolError, match="second submission for iteration 0"):
        ps.submit(1, 0, good, "cert-1")
    foreign_model = other_crypto.encrypt(np.ones(31))
    foreign = PaillierWorkerCrypto.from_public_key_bytes(other_crypto.public_key_bytes()).step(
        foreign_model, A, b
    )
    with pytest.raises(ProtocolError, match="under key"):
        ps.submit(2, 0, foreign, "cert-2")
    with pytest.raises(ProtocolError, match="unusable encrypted vector"):
        ps.submit(2, 0, b"\x00garbage", "cert-2")
    with pytest.raises(ProtocolError, match="belongs to another party"):
        ps.submit(2, 0, good, "cert-1")
    with pytest.raises(ProtocolError, match="worker 3 has not joined"):
        ps.submit(3, 0, good, "cert-3")

    ps.submit(2, 0, good, "cert-2")  # the round still completes
    thread.join(timeout=30)
    assert result and result[0].completed
    np.testing.assert_allclose(result[0].weights, np.ones(31), atol=1e-6)


def test_join_refuses_mismatched_settings(crypto: PaillierServerCrypto) -> None:
    ps = _server(crypto)
    ps.join(1, HP, 30, 10, "cert-1")
    with pytest.raises(ProtocolError, match="differ from the federation's"):
        ps.join(2, Hyperparameters(iterations=9), 30, 10, "cert-2")
    with pytest.raises(ProtocolError, match="already taken by another party"):
        ps.join(1, HP, 30, 10, "cert-x")
    with pytest.raises(ProtocolError, match="validation set has 30"):
        ps.join(2, HP, 29, 10, "cert-2")
    with pytest.raises(ProtocolError, match=r"no training rows \(n_samples=0\)"):
        ps.join(2, HP, 30, 0, "cert-2")
    ps.join(2, HP, 30, 10, "cert-2")  # the refusals took no seat and bound no certificate


@pytest.mark.parametrize(("min_workers", "completes"), [(1, True), (2, False)])
def test_dead_worker_round_deadline(
    crypto: PaillierServerCrypto, min_workers: int, completes: bool
) -> None:
    guest = breast.load_split("homo_guest")
    hp = Hyperparameters(iterations=2)
    ps = _server(crypto, min_workers=min_workers, deadline=1.0)
    ps.join(2, hp, guest.n_features, 5, "cert-2")  # joins, then never submits: "dies"
    thread, result = _start(ps)
    finished = _worker(ps, 1, guest, hp)
    if completes:
        finished.run()
    else:
        with pytest.raises(ProtocolError, match=r"worker\(s\) 2.*--min-workers is 2"):
            finished.run()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result[0].completed is completes
    if completes:
        assert result[0].contributors == (1,)
    else:
        view = ps.get_model(1, 1, "cert-1", 0.1)
        assert view.state == "aborted" and view.missing == (2,)


@pytest.mark.slow
def test_encrypted_reference_run_prints_the_published_line(crypto: PaillierServerCrypto) -> None:
    """All 341 encrypted iterations, reference settings: ``iter: 340`` reads as published."""
    ps = _server(crypto)
    workers = [
        _worker(ps, 1, breast.load_split("homo_guest"), REFERENCE),
        _worker(ps, 2, breast.load_split("homo_host"), REFERENCE),
    ]
    result, lines = _federate(ps, workers, timeout=240)
    assert result and result[0].completed
    assert "iter: 340  acc: 0.930  loss: 0.297" in lines


def _first_submission(
    ps: ParameterServer[EncryptedVector], crypto: PaillierServerCrypto
) -> EncryptedVector:
    """An honest submission for iteration 0 (the model unchanged), parsed."""
    view = ps.get_model(1, 0, "cert-1", 10.0)
    assert view.state == "ready"
    worker_crypto = PaillierWorkerCrypto.from_public_key_bytes(crypto.public_key_bytes())
    data = worker_crypto.step(view.encrypted_weights, np.eye(31), np.zeros(31))
    return EncryptedVector.from_bytes(data, crypto.public_key)


def test_forged_bound_is_refused_and_the_round_goes_on(crypto: PaillierServerCrypto) -> None:
    """A header claiming a bound with no room left for the sum is refused, not summed."""
    guest = breast.load_split("homo_guest")
    hp = Hyperparameters(iterations=1)
    ps = _server(crypto)
    for k in (1, 2):
        ps.join(k, hp, guest.n_features, guest.n_rows, f"cert-{k}")
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    forged = EncryptedVector(
        crypto.public_key,
        good.ciphertexts,
        scale_bits=good.scale_bits,
        bound_bits=he.capacity_bits(crypto.public_key),
    )
    expected = r"declares plaintexts below 2\^1022, expected a bound of at most 2\^990"
    with pytest.raises(ProtocolError, match=expected):
        ps.submit(1, 0, forged.to_bytes(), "cert-1")
    ps.submit(1, 0, good.to_bytes(), "cert-1")
    ps.submit(2, 0, good.to_bytes(), "cert-2")
    thread.join(timeout=30)
    assert result and result[0].completed
    np.testing.assert_allclose(result[0].weights, np.ones(31), atol=1e-6)


@pytest.mark.parametrize(
    ("plaintext_bits", "message"),
    [(900, "exceeds the vector's bound"), (64 + 22, "does not fit the encoding")],
)
def test_aggregate_out_of_range_stops_the_run_cleanly(
    crypto: PaillierServerCrypto, plaintext_bits: int, message: str
) -> None:
    """A vector whose plaintext breaks its declared bound, or a model that left the weights'
    range, cannot be attributed to a worker (only the sum is decrypted): the PS stops with a
    reason the workers receive, instead of dying with an exception."""
    guest = breast.load_split("homo_guest")
    hp = Hyperparameters(iterations=2)
    ps = _server(crypto)
    for k in (1, 2):
        ps.join(k, hp, guest.n_features, guest.n_rows, f"cert-{k}")
    errors: list[BaseException] = []
    result: list[TrainingResult] = []

    def run() -> None:
        try:
            result.append(ps.run())
        except BaseException as exc:  # the failure under test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    good = _first_submission(ps, crypto)
    huge = crypto.public_key.raw_encrypt(1 << plaintext_bits)
    bad = EncryptedVector(
        crypto.public_key,
        [gmpy2.mpz(huge)] * len(good),
        scale_bits=good.scale_bits,
        bound_bits=good.bound_bits,
    )
    ps.submit(1, 0, bad.to_bytes(), "cert-1")
    ps.submit(2, 0, good.to_bytes(), "cert-2")
    thread.join(timeout=30)
    assert not errors, errors
    assert result and not result[0].completed
    assert "iteration 0" in result[0].stop_reason and message in result[0].stop_reason
    np.testing.assert_allclose(result[0].weights, np.ones(31))
    view = ps.get_model(2, 1, "cert-2", 0.1)
    assert view.state == "aborted" and message in view.reason


def test_one_certificate_cannot_join_under_two_ids(crypto: PaillierServerCrypto) -> None:
    """Otherwise one party could take several seats and submit several times per round."""
    ps = _server(crypto)
    ps.join(1, HP, 30, 10, "cert-1")
    ps.join(1, HP, 30, 10, "cert-1")  # joining again under the same id is idempotent
    with pytest.raises(ProtocolError, match="already joined as worker 1"):
        ps.join(2, HP, 30, 10, "cert-1")
    ps.join(2, HP, 30, 10, "cert-2")


def test_average_of_many_submissions_grows_the_bound_by_log2(
    crypto: PaillierServerCrypto,
) -> None:
    """The sum's bound grows by ⌈log2 K⌉ bits, not K: a 1000-worker round fits a 1024-bit key."""
    model = crypto.encrypt(np.linspace(-1.0, 1.0, 31))
    worker_crypto = PaillierWorkerCrypto.from_public_key_bytes(crypto.public_key_bytes())
    submission = crypto.parse_submission(
        worker_crypto.step(model, np.eye(31), np.full(31, 0.5)), 31
    )
    averaged = crypto.average([submission] * 1000)
    np.testing.assert_allclose(averaged, np.linspace(-1.0, 1.0, 31) + 0.5, atol=1e-9)


def test_join_refuses_a_full_federation_then_any_join_once_training(
    crypto: PaillierServerCrypto,
) -> None:
    hp = Hyperparameters(iterations=1)
    ps = _server(crypto, workers=1, min_workers=1)
    ps.join(1, hp, 30, 10, "cert-1")
    with pytest.raises(ProtocolError, match=r"worker 2: federation is full \(1 workers joined\)"):
        ps.join(2, hp, 30, 10, "cert-2")
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)  # model 0 is out: training has started
    with pytest.raises(ProtocolError, match="worker 2: training has started; joining is closed"):
        ps.join(2, hp, 30, 10, "cert-2")
    ps.join(1, hp, 30, 10, "cert-1")  # a joined worker asking again is still answered
    ps.submit(1, 0, good.to_bytes(), "cert-1")
    thread.join(timeout=30)
    assert result and result[0].completed

"""The PS core and the worker loop with real Paillier keys, in one process (no sockets).

The link between them calls the PS core directly, as the gRPC servicer does, with a fixed
"certificate fingerprint" per worker. Keys are 1024 bits: the algebra does not depend on size.
"""

from __future__ import annotations

import threading
from typing import Any

import gmpy2
import numpy as np
import pytest
from homo_lr_parties import DirectLink

from sealfl import he
from sealfl.data import Dataset, breast
from sealfl.errors import ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import REFERENCE, Hyperparameters, Schedule, with_bias
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.peers import Peer
from sealfl.fl.homo_lr.plaintext import train_plaintext
from sealfl.fl.homo_lr.server import (
    ModelView,
    ParameterServer,
    ServerSettings,
    SubmitStatus,
    TrainingResult,
)
from sealfl.fl.homo_lr.worker import Worker
from sealfl.he import EncryptedVector

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")

HP = Hyperparameters(learning_rate=0.15, alpha=0.01, iterations=4, schedule=Schedule.SQRT_DECAY)
NAMES = tuple(f"x{j}" for j in range(30))
"""The breast splits' feature columns."""


def cert(k: int | str) -> Peer:
    """The caller with certificate ``cert-k`` (a fingerprint stand-in)."""
    return Peer(f"cert-{k}")


@pytest.fixture(scope="module")
def crypto() -> PaillierServerCrypto:
    return PaillierServerCrypto.generate(1024)


@pytest.fixture(scope="module")
def other_crypto() -> PaillierServerCrypto:
    return PaillierServerCrypto.generate(1024)


def _server(
    crypto: PaillierServerCrypto,
    *,
    workers: int = 2,
    min_workers: int = 2,
    deadline: float = 30.0,
    hp: Hyperparameters = HP,
    **kwargs: Any,
) -> ParameterServer[EncryptedVector]:
    test = breast.load_split("homo_test")
    return ParameterServer(
        crypto=crypto,
        validation=(test.X, test.labels().astype(np.float64)),
        feature_names=test.feature_names,
        settings=ServerSettings(
            worker_num=workers,
            min_workers=min_workers,
            hp=hp,
            round_deadline_s=deadline,
            join_deadline_s=30.0,
            final_grace_s=2.0,
        ),
        metrics=MetricsLog(None, party="ps"),
        **{"on_line": lambda line: None, **kwargs},
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
        link=DirectLink(ps, cert(k)),
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
    ps = _server(crypto, hp=hp)
    for k in (1, 2):
        ps.join(k, hp, NAMES, guest.n_rows, cert(k))
    thread, result = _start(ps)
    view = ps.get_model(1, 0, cert(1), 10.0)
    assert view.state == "ready"
    worker_crypto = PaillierWorkerCrypto.from_public_key_bytes(crypto.public_key_bytes())
    A, b = np.eye(31), np.zeros(31)
    good = worker_crypto.step(view.encrypted_weights, A, b)
    assert ps.submit(1, 0, good, cert(1)).status is SubmitStatus.ACCEPTED

    with pytest.raises(ProtocolError, match="second submission for iteration 0"):
        ps.submit(1, 0, good, cert(1))
    foreign_model = other_crypto.encrypt(np.ones(31))
    foreign = PaillierWorkerCrypto.from_public_key_bytes(other_crypto.public_key_bytes()).step(
        foreign_model, A, b
    )
    with pytest.raises(ProtocolError, match="under key"):
        ps.submit(2, 0, foreign, cert(2))
    with pytest.raises(ProtocolError, match="unusable encrypted vector"):
        ps.submit(2, 0, b"\x00garbage", cert(2))
    with pytest.raises(ProtocolError, match="belongs to another party"):
        ps.submit(2, 0, good, cert(1))
    with pytest.raises(ProtocolError, match="worker 3 has not joined"):
        ps.submit(3, 0, good, cert(3))

    ps.submit(2, 0, good, cert(2))  # the round still completes
    thread.join(timeout=30)
    assert result and result[0].completed
    np.testing.assert_allclose(result[0].weights, np.ones(31), atol=1e-6)


def test_join_refuses_what_differs_from_the_operators_settings(
    crypto: PaillierServerCrypto,
) -> None:
    """The PS's operator sets the settings: the first worker no longer does (issue 10, 6)."""
    ps = _server(crypto)
    other = Hyperparameters(iterations=9)
    with pytest.raises(ProtocolError, match=r"settings \(lr 0.15 sqrt-decay, alpha 0.01, 9 it"):
        ps.join(1, other, NAMES, 10, cert(1))  # even as the first to join
    ps.join(1, HP, NAMES, 10, cert(1))
    with pytest.raises(ProtocolError, match="which the PS's operator set"):
        ps.join(2, other, NAMES, 10, cert(2))
    with pytest.raises(ProtocolError, match="already taken by another party"):
        ps.join(1, HP, NAMES, 10, cert("x"))
    with pytest.raises(ProtocolError, match="validation set has 30"):
        ps.join(2, HP, NAMES[:29], 10, cert(2))
    with pytest.raises(ProtocolError, match=r"no training rows \(n_samples=0\)"):
        ps.join(2, HP, NAMES, 0, cert(2))
    ps.join(2, HP, NAMES, 10, cert(2))  # the refusals took no seat and bound no certificate


def test_join_refuses_the_same_columns_in_another_order(crypto: PaillierServerCrypto) -> None:
    """Matching by count trained a silently wrong model (issue 10, 13): names travel now."""
    ps = _server(crypto)
    swapped = ("x1", "x0", *NAMES[2:])
    with pytest.raises(ProtocolError) as refused:
        ps.join(1, HP, swapped, 10, cert(1))
    message = str(refused.value)
    assert "the same feature columns in another order" in message
    assert "column 1 is 'x1' at the worker, 'x0' at the PS" in message
    assert "the worker's order is [x1, x0, x2," in message
    assert "the PS's validation set's is [x0, x1, x2," in message
    renamed = ("age", *NAMES[1:])
    with pytest.raises(ProtocolError, match=r"the worker has \['age'\] and lacks \['x0'\]"):
        ps.join(1, HP, renamed, 10, cert(1))
    ps.join(1, HP, NAMES, 10, cert(1))


@pytest.mark.parametrize(("min_workers", "completes"), [(1, True), (2, False)])
def test_dead_worker_round_deadline(
    crypto: PaillierServerCrypto, min_workers: int, completes: bool
) -> None:
    guest = breast.load_split("homo_guest")
    hp = Hyperparameters(iterations=2)
    ps = _server(crypto, min_workers=min_workers, deadline=1.0, hp=hp)
    ps.join(2, hp, NAMES, 5, cert(2))  # joins, then never submits: "dies"
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
        view = ps.get_model(1, 1, cert(1), 0.1)
        assert view.state == "aborted" and view.missing == (2,)


@pytest.mark.slow
def test_encrypted_reference_run_prints_the_published_line(crypto: PaillierServerCrypto) -> None:
    """All 341 encrypted iterations, reference settings: ``iter: 340`` reads as published."""
    ps = _server(crypto, hp=REFERENCE)
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
    view = ps.get_model(1, 0, cert(1), 10.0)
    assert view.state == "ready"
    worker_crypto = PaillierWorkerCrypto.from_public_key_bytes(crypto.public_key_bytes())
    data = worker_crypto.step(view.encrypted_weights, np.eye(31), np.zeros(31))
    return EncryptedVector.from_bytes(data, crypto.public_key)


def _two_joined(
    crypto: PaillierServerCrypto, iterations: int, **kwargs: Any
) -> ParameterServer[EncryptedVector]:
    hp = Hyperparameters(iterations=iterations)
    ps = _server(crypto, hp=hp, **kwargs)
    for k in (1, 2):
        ps.join(k, hp, NAMES, 200, cert(k))
    return ps


def test_forged_bound_is_refused_and_the_round_goes_on(crypto: PaillierServerCrypto) -> None:
    """A header claiming a bound with no room left for the sum is refused, not summed."""
    ps = _two_joined(crypto, 1)
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
        ps.submit(1, 0, forged.to_bytes(), cert(1))
    ps.submit(1, 0, good.to_bytes(), cert(1))
    ps.submit(2, 0, good.to_bytes(), cert(2))
    thread.join(timeout=30)
    assert result and result[0].completed
    np.testing.assert_allclose(result[0].weights, np.ones(31), atol=1e-6)


def _encrypted_constant(
    crypto: PaillierServerCrypto, good: EncryptedVector, plaintext: int, bound_bits: int
) -> bytes:
    """A well-formed submission whose every plaintext is ``plaintext`` (scale as honest)."""
    c = crypto.public_key.raw_encrypt(plaintext)
    return EncryptedVector(
        crypto.public_key,
        [gmpy2.mpz(c)] * len(good),
        scale_bits=good.scale_bits,
        bound_bits=bound_bits,
    ).to_bytes()


@pytest.mark.parametrize(
    ("value_bits", "declared", "logged"),
    [
        # 1e30 as the attacker sent it: the header honestly declares its bound.
        (100 + 64, 170, "decrypts to 1.27e+30, beyond the protocol's bound |w| < 2^20"),
        # Beyond the declared bound: the header lies.
        (900, None, "does not decrypt within its declared bound"),
        # Just past the range the PS re-encrypts the model in.
        (20 + 64, None, "decrypts to 1.05e+06, beyond the protocol's bound |w| < 2^20"),
    ],
)
def test_one_out_of_range_update_drops_that_round_only(
    crypto: PaillierServerCrypto, value_bits: int, declared: int | None, logged: str
) -> None:
    """Issue 10, 5: one insider's well-formed submission no longer ends everyone's run.

    The PS decrypts each submission inside its enclave, leaves the bad one out of the average
    (recorded with the reason), and the run goes on with the other worker's update.
    """
    lines: list[str] = []
    ps = _two_joined(crypto, 2, on_line=lines.append)
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    bad = _encrypted_constant(crypto, good, 1 << value_bits, declared or good.bound_bits)
    outcome = ps.submit(1, 0, bad, cert(1))
    assert outcome.status is SubmitStatus.DROPPED
    assert "left out of this iteration's average and training goes on" in outcome.reason
    assert "e+" not in outcome.reason and "2^" not in outcome.reason  # no decrypted value leaks
    with pytest.raises(ProtocolError, match="second submission for iteration 0"):
        ps.submit(1, 0, good.to_bytes(), cert(1))  # one answer per round, dropped or not
    assert ps.submit(2, 0, good.to_bytes(), cert(2)).status is SubmitStatus.ACCEPTED
    ps.get_model(2, 1, cert(2), 10.0)
    honest = _first_submission(ps, crypto)  # iteration 1 (model still all ones)
    for k in (1, 2):
        ps.submit(k, 1, honest.to_bytes(), cert(k))
    thread.join(timeout=30)
    assert result and result[0].completed, result
    assert result[0].contributors == (1, 2)  # worker 1 is still in the federation
    np.testing.assert_allclose(result[0].weights, np.ones(31), atol=1e-6)
    dropped = [line for line in lines if "dropped worker 1's update" in line]
    assert len(dropped) == 1 and logged in dropped[0], lines
    assert not any("learning rate" in line for line in lines)


def test_an_update_that_packs_like_an_honest_one_is_still_dropped(
    crypto: PaillierServerCrypto,
) -> None:
    """Issue 16: the PS decrypts an update packed, a few decryptions for all its entries.

    An entry beyond its slot spills into the next, and ``(m_0 + 2^s, m_1 - 1)`` packs exactly
    like the honest ``(m_0, m_1)``: the packed decoding alone would let this vector in with
    values it does not hold. The PS's random check catches it, and the update is dropped as the
    entry-by-entry check dropped it."""
    lines: list[str] = []
    ps = _two_joined(crypto, 1, on_line=lines.append)
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    plain = [round(v * 2**good.scale_bits) for v in crypto.decrypt_submission(good)]
    slot = good.bound_bits + 1
    plain[0] += 1 << slot  # beyond the declared bound ...
    plain[1] -= 1  # ... and the spill cancelled in the packing
    pk = crypto.public_key
    forged = EncryptedVector(
        pk,
        [gmpy2.mpz(pk.raw_encrypt(m)) for m in plain],
        scale_bits=good.scale_bits,
        bound_bits=good.bound_bits,
    )
    assert ps.submit(1, 0, forged.to_bytes(), cert(1)).status is SubmitStatus.DROPPED
    assert ps.submit(2, 0, good.to_bytes(), cert(2)).status is SubmitStatus.ACCEPTED
    thread.join(timeout=30)
    assert result and result[0].completed and result[0].contributors == (2,)
    np.testing.assert_allclose(result[0].weights, np.ones(31), atol=1e-6)
    dropped = [line for line in lines if "dropped worker 1's update" in line]
    assert len(dropped) == 1 and "fails the PS's random check" in dropped[0], lines


def test_a_round_with_no_usable_update_stops_naming_each_reason(
    crypto: PaillierServerCrypto,
) -> None:
    ps = _two_joined(crypto, 2)
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    bad = _encrypted_constant(crypto, good, 1 << 100, 170)
    for k in (1, 2):
        assert ps.submit(k, 0, bad, cert(k)).status is SubmitStatus.DROPPED
    thread.join(timeout=30)
    assert result and not result[0].completed
    reason = result[0].stop_reason
    assert reason.startswith("iteration 0: no usable update (worker 1: entry 0 decrypts to")
    assert "; worker 2: entry 0" in reason and "learning rate" not in reason
    np.testing.assert_allclose(result[0].weights, np.ones(31))
    view = ps.get_model(2, 1, cert(2), 0.1)
    assert view.state == "aborted" and "no usable update" in view.reason


def test_the_check_decryption_is_exact_for_updates_and_bounds_anything_else(
    crypto: PaillierServerCrypto,
) -> None:
    """The PS decrypts submissions modulo p alone (half the work): bit for bit what a full
    decryption gives for any honest update, and for a plaintext beyond ±p/2 a residue the check
    bounds like any other value (here: far beyond 2^20, so dropped)."""
    model = crypto.encrypt(np.linspace(-3.0, 3.0, 31))
    worker = PaillierWorkerCrypto.from_public_key_bytes(crypto.public_key_bytes())
    for A, b in ((np.eye(31), np.zeros(31)), (-0.7 * np.eye(31), np.linspace(-5.0, 5.0, 31))):
        vector = crypto.parse_submission(worker.step(model, A, b), 31)
        np.testing.assert_array_equal(
            crypto.decrypt_submission(vector), he.decrypt_vector(crypto.private_key, vector)
        )
    ps = _two_joined(crypto, 1)
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    p = crypto.private_key.p
    beyond = _encrypted_constant(crypto, good, p // 2 + 12345, 990)  # within its bound mod n
    assert ps.submit(1, 0, beyond, cert(1)).status is SubmitStatus.DROPPED
    ps.submit(2, 0, good.to_bytes(), cert(2))
    thread.join(timeout=30)
    assert result and result[0].completed and result[0].contributors == (2,)


def test_one_certificate_cannot_join_under_two_ids(crypto: PaillierServerCrypto) -> None:
    """Otherwise one party could take several seats and submit several times per round."""
    ps = _server(crypto)
    ps.join(1, HP, NAMES, 10, cert(1))
    ps.join(1, HP, NAMES, 10, cert(1))  # joining again under the same id is idempotent
    with pytest.raises(ProtocolError, match="already joined as worker 1"):
        ps.join(2, HP, NAMES, 10, cert(1))
    ps.join(2, HP, NAMES, 10, cert(2))


def test_a_seat_follows_its_token_and_nothing_else(crypto: PaillierServerCrypto) -> None:
    """Issue 10, 9: a restarted worker (new certificate) takes its seat back with its token;
    another attested party without it does not, and the one that lost the seat is refused."""
    lines: list[str] = []
    ps = _two_joined(crypto, 2, on_line=lines.append)
    token = ps.join(1, ps.settings.hp, NAMES, 200, cert(1)).seat_token
    assert len(token) == 32
    with pytest.raises(ProtocolError, match="takes its seat back only with the seat token"):
        ps.join(1, ps.settings.hp, NAMES, 200, cert("intruder"), b"\x00" * 32)
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    assert ps.submit(1, 0, good.to_bytes(), cert(1)).status is SubmitStatus.ACCEPTED
    # Worker 1 restarts with a fresh certificate: training has started, its seat is kept.
    info = ps.join(1, ps.settings.hp, NAMES, 200, cert("1-restarted"), token)
    assert info.next_iteration == 1  # it already submitted for iteration 0
    assert any("worker 1 took its seat back" in line for line in lines)
    with pytest.raises(ProtocolError, match="belongs to another party's certificate"):
        ps.get_model(1, 1, cert(1), 0.1)  # the old certificate lost the seat
    ps.submit(2, 0, good.to_bytes(), cert(2))
    ps.get_model(1, 1, cert("1-restarted"), 10.0)
    # A renewed certificate keeps the seat by presenting the token on the call itself.
    assert ps.submit(1, 1, good.to_bytes(), cert("1-renewed"), token).status.value == "accepted"
    ps.submit(2, 1, good.to_bytes(), cert(2))
    thread.join(timeout=30)
    assert result and result[0].completed and result[0].contributors == (1, 2)


def test_a_dropped_worker_that_rejoins_is_reinstated(crypto: PaillierServerCrypto) -> None:
    ps = _two_joined(crypto, 3, min_workers=1, deadline=0.5)
    token = ps.join(2, ps.settings.hp, NAMES, 200, cert(2)).seat_token
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    ps.submit(1, 0, good.to_bytes(), cert(1))  # worker 2 misses iteration 0: dropped
    ps.get_model(1, 1, cert(1), 10.0)
    info = ps.join(2, ps.settings.hp, NAMES, 200, cert("2-restarted"), token)
    assert info.next_iteration == 1
    for t in (1, 2):
        for k, peer in ((1, cert(1)), (2, cert("2-restarted"))):
            ps.get_model(k, t, peer, 10.0)
            assert ps.submit(k, t, good.to_bytes(), peer).status is SubmitStatus.ACCEPTED
    thread.join(timeout=30)
    assert result and result[0].completed and result[0].contributors == (1, 2)


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
    ps = _server(crypto, workers=1, min_workers=1, hp=hp)
    ps.join(1, hp, NAMES, 10, cert(1))
    with pytest.raises(ProtocolError, match=r"worker 2: federation is full \(1 workers joined\)"):
        ps.join(2, hp, NAMES, 10, cert(2))
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)  # model 0 is out: training has started
    with pytest.raises(ProtocolError, match="worker 2: training has started; joining is closed"):
        ps.join(2, hp, NAMES, 10, cert(2))
    ps.join(1, hp, NAMES, 10, cert(1))  # a joined worker asking again is still answered
    ps.submit(1, 0, good.to_bytes(), cert(1))
    thread.join(timeout=30)
    assert result and result[0].completed


def test_stop_tells_every_waiting_worker_at_once(crypto: PaillierServerCrypto) -> None:
    """Issue 10, 11: the operator's stop wakes a worker parked on the next model with the
    reason (its wait would otherwise last the PS's poll time), and a submission gets it too."""
    ps = _two_joined(crypto, 5)
    thread, result = _start(ps)
    good = _first_submission(ps, crypto)
    views: list[ModelView] = []
    parked = threading.Thread(
        target=lambda: views.append(ps.get_model(1, 1, cert(1), 3600.0)), daemon=True
    )
    parked.start()
    ps.stop("stopped by the operator (SIGTERM)")
    parked.join(timeout=30)
    assert views and views[0].state == "aborted"
    assert views[0].reason == "stopped by the operator (SIGTERM)"
    outcome = ps.submit(2, 0, good.to_bytes(), cert(2))
    assert (outcome.status, outcome.reason) == (
        SubmitStatus.STOPPED,
        "stopped by the operator (SIGTERM)",
    )
    thread.join(timeout=30)
    assert result and result[0].stopped_by_operator and not result[0].completed
    ps.wait_for_final_fetches()  # both were told: returns without waiting out the grace

"""Issue 16: the faster round (packed check, randomness drawn ahead) and its timing records.

Real 1024-bit keys and ciphertexts, in one process; the federation runs through the PS core
and the worker loop as in test_homo_lr_federation.py, with metrics written to files.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pytest
from homo_lr_parties import run_in_process

from sealfl import he
from sealfl.data import breast
from sealfl.errors import ConfigError, HEError
from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.breakdown import round_breakdown
from sealfl.fl.homo_lr.demo import DemoOptions, FederationData
from sealfl.fl.homo_lr.encrypted import WEIGHT_FRACTION_BITS, PaillierServerCrypto
from sealfl.fl.homo_lr.packed_decryption import decrypt_signed
from sealfl.fl.homo_lr.timing import Spans

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")


@pytest.fixture(scope="module")
def crypto() -> PaillierServerCrypto:
    return PaillierServerCrypto.generate(1024)


def _encrypted(crypto: PaillierServerCrypto, plain: list[int]) -> list[gmpy2.mpz]:
    return [gmpy2.mpz(crypto.public_key.raw_encrypt(m)) for m in plain]


def _decrypt(crypto: PaillierServerCrypto, ciphertexts: list[gmpy2.mpz], bound: int) -> list[int]:
    p, _, psquare, _ = crypto.private_key.crt_moduli
    return decrypt_signed(ciphertexts, bound, p=p, psquare=psquare, hp=crypto._hp)


@pytest.mark.parametrize("bound", [20, 90, 170, 250, 300])
def test_the_packed_decryption_returns_every_entry_exactly(
    crypto: PaillierServerCrypto, bound: int
) -> None:
    """Both signs, zero and the extremes ±(2^bound - 1), from 24 entries per packing (20 bits,
    1024-bit key) to 2 (250), and one decryption per entry where no two fit (300)."""
    limit = (1 << bound) - 1
    plain = [limit, -limit, 0, 1, -1] + [
        secrets.randbelow(2 * limit + 1) - limit for _ in range(26)
    ]
    assert _decrypt(crypto, _encrypted(crypto, plain), bound) == plain


@pytest.mark.parametrize("bound", [90, 300])  # packed, and one decryption per entry
def test_an_entry_at_its_bound_is_refused_by_name(crypto: PaillierServerCrypto, bound: int) -> None:
    plain = [5] * 31
    plain[7] = -(1 << bound)  # |m| < 2^bound does not hold
    with pytest.raises(HEError, match="decrypted entry 7 exceeds the vector's declared bound"):
        _decrypt(crypto, _encrypted(crypto, plain), bound)


def test_spilled_entries_are_refused_however_they_pack(crypto: PaillierServerCrypto) -> None:
    """Entries beyond their slots: into the next slot (and cancelled there), or past the last."""
    slot = 91
    spilled = [3] * 31
    spilled[2] += 1 << slot  # entries 2 and 3 share a packing at any key size
    spilled[3] -= 1
    with pytest.raises(HEError, match="fails the PS's random check"):
        _decrypt(crypto, _encrypted(crypto, spilled), 90)
    beyond = [3] * 31
    beyond[30] = 1 << 200  # the top entry of the last packing: nothing above it to hide in
    with pytest.raises(HEError, match="exceed the vector's declared bound of 2\\^90"):
        _decrypt(crypto, _encrypted(crypto, beyond), 90)


def test_randomness_drawn_ahead_serves_one_encryption_only(crypto: PaillierServerCrypto) -> None:
    w = np.linspace(-3.0, 3.0, 31)
    crypto.prepare_encryption(31)
    first = he.EncryptedVector.from_bytes(crypto.encrypt(w), crypto.public_key)
    second = he.EncryptedVector.from_bytes(crypto.encrypt(w), crypto.public_key)  # from scratch
    rounded = np.rint(np.ldexp(w, WEIGHT_FRACTION_BITS)) / 2.0**WEIGHT_FRACTION_BITS
    for vector in (first, second):
        assert (vector.scale_bits, vector.bound_bits) == (WEIGHT_FRACTION_BITS, 52)
        np.testing.assert_array_equal(he.decrypt_vector(crypto.private_key, vector), rounded)
    assert not set(first.ciphertexts) & set(second.ciphertexts)
    crypto.prepare_encryption(31)
    with pytest.raises(HEError, match="does not fit the encoding"):
        crypto.encrypt(np.full(31, 2.0**20))  # out of range: refused as a fresh encryption is
    assert crypto._zeros is None  # and the drawn randomness is gone with it
    crypto.prepare_encryption(30)  # another length: encrypted from scratch
    assert he.EncryptedVector.from_bytes(crypto.encrypt(w), crypto.public_key).bound_bits == 52


def test_spans_add_up_and_start_afresh() -> None:
    now = [0.0]
    spans = Spans(lambda: now[0])
    with spans.span("a"):
        now[0] += 2.0
    with pytest.raises(RuntimeError), spans.span("a"):
        now[0] += 1.0
        raise RuntimeError
    spans.add("b", 0.5)
    assert spans.take() == {"a_s": 3.0, "b_s": 0.5}
    assert spans.take() == {}


def test_every_round_says_where_its_time_went(crypto: PaillierServerCrypto, tmp_path: Path) -> None:
    """The PS's round records and the workers' iteration records join into one critical path
    whose rows add up to the round."""
    result = run_in_process(Hyperparameters(iterations=4), crypto=crypto, metrics_dir=tmp_path)
    assert result.completed

    def records(name: str) -> list[dict[str, Any]]:
        return list(read_metrics(tmp_path / name))

    rounds = [r for r in records("ps.jsonl") if r["event"] == "round"]
    assert [r["iteration"] for r in rounds] == [0, 1, 2, 3]
    for r in rounds:
        assert set(r["check_s"]) == {"1", "2"}
        assert {"prepare_s", "wait_s", "average_s", "encrypt_s", "published", "cpu_s"} <= set(r)
    assert "evaluate_s" in rounds[0] and "evaluate_s" not in rounds[1]
    by_worker = {k: records(f"worker-{k}.jsonl") for k in (1, 2)}
    for k, worker_records in by_worker.items():
        steps = [r for r in worker_records if r["event"] == "iteration"]
        assert [r["iteration"] for r in steps] == [0, 1, 2, 3], k
        for r in steps:
            assert {"fetch_s", "decode_s", "compute_s", "encode_s", "submit_s", "cpu_s"} <= set(r)
    split = round_breakdown(rounds, by_worker)
    assert split.rounds == 3  # the first round is left out
    critical = sum(row.seconds for row in split.rows if row.critical)
    assert critical == pytest.approx(split.round_s, abs=1e-9)
    assert split.seconds("A·Enc(w) + b") > 0
    with pytest.raises(ValueError, match="no round with records"):
        round_breakdown(rounds, {})


def test_the_breakdown_follows_the_worker_that_answered_last() -> None:
    """Made-up records: worker 2 answers last, so its spans make the path, worker 1's spare
    time is the overlapped wait, and the barrier row is what the PS waited beyond that path."""

    def step(received: float, compute: float, submit: float) -> dict[str, Any]:
        return {
            "event": "iteration",
            "iteration": 1,
            "received": received,
            "decode_s": 0.001,
            "compute_s": compute,
            "encode_s": 0.0005,
            "submit_s": submit,
        }

    ps = [
        {"event": "round", "iteration": 0, "seconds": 9.0},  # setup: skipped
        {
            "event": "round",
            "iteration": 1,
            "seconds": 0.05,
            "contributors": [1, 2],
            "published": 100.0,
            "check_s": {"1": 0.004, "2": 0.008},
            "prepare_s": 0.01,
            "wait_s": 0.03,
            "average_s": 0.001,
            "encrypt_s": 0.002,
            "checkpoint_s": 0.003,
        },
    ]
    workers = {1: [step(100.002, 0.02, 0.005)], 2: [step(100.003, 0.03, 0.0095)]}
    split = round_breakdown(ps, workers)
    seconds = {row.span: row.seconds for row in split.rows}
    expected = {
        "model to the worker (long poll wakes, gRPC, TLS)": 0.003,  # worker 2's
        "A·Enc(w) + b": 0.03,
        "submit: gRPC both ways, PS handler": 0.0015,  # its submit less its check
        "PS check: parse, packed decryption, value check": 0.008,
        # prepare + wait = 0.04 against worker 2's 0.044 from hand-out to answer
        "barrier: PS wake-up, unmeasured gaps, less the submit reply's overlap": -0.004,
        "rest of the PS's round": 0.007,  # 0.05 - 0.04 - average - encrypt
        "other workers waiting at the barrier": 0.0155,  # 0.044 - worker 1's 0.0285
        "draw the next encryption's randomness": 0.01,
        "sealed checkpoint, after the hand-out": 0.003,
    }
    assert {span: seconds[span] for span in expected} == pytest.approx(expected, abs=1e-9)
    assert (split.rounds, split.round_s) == (1, 0.05)


def test_a_demo_on_given_data_needs_one_set_per_worker() -> None:
    sets = FederationData(
        train=(breast.load_split("homo_guest"),) * 3, test=breast.load_split("homo_test")
    )
    assert DemoOptions(workers=3, data=sets).workers == 3  # more than the two breast splits
    with pytest.raises(ConfigError, match="3 training sets given, got 2"):
        DemoOptions(workers=2, data=sets)

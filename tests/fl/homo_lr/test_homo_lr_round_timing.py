"""Issue 16: the faster round (packed check, randomness drawn ahead) and its timing records.

Real 1024-bit keys and ciphertexts, in one process; the federation runs through the PS core
and the worker loop as in test_homo_lr_federation.py, with metrics written to files.
"""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from homo_lr_parties import DirectLink

from sealfl import he
from sealfl.data import breast
from sealfl.errors import ConfigError, HEError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.breakdown import round_breakdown
from sealfl.fl.homo_lr.demo import DemoOptions, FederationData
from sealfl.fl.homo_lr.encrypted import (
    WEIGHT_FRACTION_BITS,
    PaillierServerCrypto,
    PaillierWorkerCrypto,
)
from sealfl.fl.homo_lr.packed_decryption import decrypt_signed
from sealfl.fl.homo_lr.peers import Peer
from sealfl.fl.homo_lr.server import ParameterServer, ServerSettings
from sealfl.fl.homo_lr.timing import Spans
from sealfl.fl.homo_lr.worker import Worker

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")


@pytest.fixture(scope="module")
def crypto() -> PaillierServerCrypto:
    return PaillierServerCrypto.generate(1024)


def _encrypted(crypto: PaillierServerCrypto, plain: list[int]) -> list[gmpy2.mpz]:
    return [gmpy2.mpz(crypto.public_key.raw_encrypt(m)) for m in plain]


def _decrypt(crypto: PaillierServerCrypto, ciphertexts: list[gmpy2.mpz], bound: int) -> list[int]:
    p, _, psquare, _ = crypto.private_key.crt_moduli
    return decrypt_signed(ciphertexts, bound, p=p, psquare=psquare, hp=crypto._hp)


@pytest.mark.parametrize("bound", [20, 90, 170, 250])
def test_the_packed_decryption_returns_every_entry_exactly(
    crypto: PaillierServerCrypto, bound: int
) -> None:
    """Both signs, zero and the extremes ±(2^bound - 1), for 1 to 5+ entries per packing."""
    limit = (1 << bound) - 1
    plain = [limit, -limit, 0, 1, -1] + [
        secrets.randbelow(2 * limit + 1) - limit for _ in range(26)
    ]
    assert _decrypt(crypto, _encrypted(crypto, plain), bound) == plain


def test_an_entry_at_its_bound_is_refused_by_name(crypto: PaillierServerCrypto) -> None:
    plain = [5] * 31
    plain[7] = -(1 << 90)  # |m| < 2^90 does not hold
    with pytest.raises(HEError, match="decrypted entry 7 exceeds the vector's declared bound"):
        _decrypt(crypto, _encrypted(crypto, plain), 90)


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
    hp = Hyperparameters(iterations=4)
    test = breast.load_split("homo_test")
    ps = ParameterServer(
        crypto=crypto,
        validation=(test.X, test.labels().astype(np.float64)),
        feature_names=test.feature_names,
        settings=ServerSettings(worker_num=2, min_workers=2, hp=hp, final_grace_s=1.0),
        metrics=MetricsLog(tmp_path / "ps.jsonl", party="ps"),
        on_line=lambda line: None,
    )
    workers = [
        Worker(
            worker_id=k,
            data=breast.load_split(split),
            hp=hp,
            link=DirectLink(ps, Peer(f"cert-{k}")),
            open_key=PaillierWorkerCrypto.from_public_key_bytes,
            metrics=MetricsLog(tmp_path / f"worker-{k}.jsonl", party=f"worker-{k}"),
            on_line=lambda line: None,
        )
        for k, split in ((1, "homo_guest"), (2, "homo_host"))
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    result = ps.run()
    for thread in threads:
        thread.join(timeout=30)
    assert result.completed

    def records(name: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

    rounds = [r for r in records("ps.jsonl") if r["event"] == "round"]
    assert [r["iteration"] for r in rounds] == [0, 1, 2, 3]
    for r in rounds:
        assert set(r["check_s"]) == {"1", "2"}  # type: ignore[arg-type]
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


def test_a_demo_on_given_data_needs_one_set_per_worker() -> None:
    sets = FederationData(
        train=(breast.load_split("homo_guest"),) * 3, test=breast.load_split("homo_test")
    )
    assert DemoOptions(workers=3, data=sets).workers == 3  # more than the two breast splits
    with pytest.raises(ConfigError, match="3 training sets given, got 2"):
        DemoOptions(workers=2, data=sets)

"""The pieces issue 10 added to homo-lr, each on its own: checkpoints, the admitted-workers
list, the data check, the address checks, the update check. No processes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from homo_lr_parties import DirectLink, reference_run

from sealfl.data import Dataset, breast, write_fate_csv
from sealfl.errors import AttestationError, ChannelError, ConfigError, ProtocolError, SealError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.admission import Admission
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from sealfl.fl.homo_lr.datacheck import check_training_data
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.peers import Peer, check_party_name
from sealfl.fl.homo_lr.reach import check_can_listen, wait_for_tls_server
from sealfl.fl.homo_lr.screening import MagnitudeBound
from sealfl.fl.homo_lr.server import ParameterServer, ServerSettings, TrainingResult
from sealfl.fl.homo_lr.worker import Worker
from sealfl.he import EncryptedVector
from sealfl.seal import SealingKey

pytestmark = pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")


# ---- checkpoints and resume -------------------------------------------------------------


def _ps(
    crypto: PaillierServerCrypto, hp: Hyperparameters, **kwargs: Any
) -> ParameterServer[EncryptedVector]:
    test = breast.load_split("homo_test")
    return ParameterServer(
        crypto=crypto,
        validation=(test.X, test.labels().astype(np.float64)),
        feature_names=test.feature_names,
        settings=ServerSettings(
            worker_num=2, min_workers=2, hp=hp, checkpoint_every=3, final_grace_s=1.0
        ),
        metrics=MetricsLog(None, party="ps"),
        on_line=lambda line: None,
        **kwargs,
    )


def _train(
    ps: ParameterServer[EncryptedVector],
    hp: Hyperparameters,
    tokens: dict[int, bytes],
    certificate: str = "cert",
) -> list[TrainingResult]:
    """Run the PS and the two breast workers to the end; ``tokens`` holds their seat tokens
    (given on join when present, and updated from the join replies)."""
    results: list[TrainingResult] = []
    threads = [threading.Thread(target=lambda: results.append(ps.run()), daemon=True)]
    for k, split in ((1, "homo_guest"), (2, "homo_host")):
        worker = Worker(
            worker_id=k,
            data=breast.load_split(split),
            hp=hp,
            link=DirectLink(ps, Peer(f"{certificate}-{k}")),
            open_key=PaillierWorkerCrypto.from_public_key_bytes,
            metrics=MetricsLog(None, party=f"worker-{k}"),
            on_line=lambda line: None,
            on_joined=lambda info, k=k: tokens.__setitem__(k, info.seat_token),  # type: ignore[misc]
            seat_token=tokens.get(k, b""),
        )
        threads.append(threading.Thread(target=_until_stopped, args=(worker,), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _until_stopped(worker: Worker) -> None:
    with contextlib.suppress(ProtocolError):  # "the PS stopped training": on purpose here
        worker.run()


def test_a_resumed_ps_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    """Stop a PS after its checkpoint at iteration 6, resume a new one from the sealed file
    with the key pair in it: same session, same key, and the same final model bit for bit.
    The workers come back as restarted processes would: new certificates, their seat tokens."""
    hp = Hyperparameters(iterations=8)
    key = SealingKey.generate()
    path = tmp_path / "checkpoint.sealed"
    crypto = PaillierServerCrypto.generate(1024)

    def stop_after_6(checkpoint: Checkpoint) -> None:
        save_checkpoint(path, checkpoint, key)
        if checkpoint.next_iteration == 6:
            first.stop("stopped by the operator (test)")

    first = _ps(crypto, hp, save_checkpoint=stop_after_6)
    tokens: dict[int, bytes] = {}
    stopped = _train(first, hp, tokens)
    assert stopped and stopped[0].stopped_by_operator and stopped[0].iterations_done == 6
    checkpoint = load_checkpoint(path, key)
    assert checkpoint.next_iteration == 6 and checkpoint.session_id == first.session_id

    restored = PaillierServerCrypto.from_private_key_bytes(checkpoint.private_key)
    assert restored.public_key_bytes() == crypto.public_key_bytes()
    second = _ps(restored, hp, resume=checkpoint)
    assert second.session_id == first.session_id
    stolen = dict.fromkeys(tokens, b"\x00" * 32)
    with pytest.raises(ProtocolError, match="already taken by another party"):
        second.join(1, hp, breast.load_split("homo_guest").feature_names, 1, Peer("x"), stolen[1])
    resumed = _train(second, hp, tokens, certificate="restarted")
    assert resumed and resumed[0].completed
    weights, _ = reference_run(hp)
    np.testing.assert_array_equal(resumed[0].weights, weights)


def test_resume_refuses_other_settings_and_other_keys(tmp_path: Path) -> None:
    hp = Hyperparameters(iterations=4)
    names = tuple(f"x{j}" for j in range(3))
    checkpoint = Checkpoint(
        session_id="s",
        hp=hp,
        feature_names=names,
        worker_num=2,
        min_workers=2,
        next_iteration=2,
        weights=np.ones(4),
        seats=(),
        last_evaluation=None,
        private_key=PaillierServerCrypto.generate(1024).private_key_bytes(),
    )
    with pytest.raises(ConfigError) as refused:
        checkpoint.check_matches(
            hp=Hyperparameters(iterations=5),
            feature_names=names,
            worker_num=3,
            min_workers=2,
            source="ckpt",
        )
    message = str(refused.value)
    assert "--resume ckpt: the checkpoint was made with other settings" in message
    assert "checkpoint lr 0.15 sqrt-decay, alpha 0.01, 4 iterations, now" in message
    assert "--worker-num: checkpoint 2, now 3" in message
    with pytest.raises(ConfigError, match="--resume: no checkpoint at"):
        load_checkpoint(tmp_path / "none.sealed", SealingKey.generate())
    path, key = tmp_path / "c.sealed", SealingKey.generate()
    save_checkpoint(path, checkpoint, key)
    with pytest.raises(SealError, match="no seats"):  # a checkpoint is of a seated federation
        load_checkpoint(path, key)
    with pytest.raises(SealError):  # sealed by another TEE identity
        load_checkpoint(path, SealingKey.generate())


# ---- the admitted-workers list ------------------------------------------------------------


def test_admission_by_name_and_by_key(tmp_path: Path) -> None:
    path = tmp_path / "admitted.toml"
    path.write_text(
        f'[[worker]]\nid = 1\nname = "hospital-a"\n\n[[worker]]\nkey_sha256 = "{"AB:" * 31}ab"\n'
    )
    admission = Admission.load(path)
    a = Peer("f1", key_sha256="00" * 32, name="hospital-a")
    admission.check_peer(a)
    admission.check_seat(a, 1)
    with pytest.raises(ProtocolError, match="is admitted as worker id 1 only"):
        admission.check_seat(a, 2)
    keyed = Peer("f2", key_sha256="ab" * 32)
    admission.check_peer(keyed)
    admission.check_seat(keyed, 7)  # no id: any seat
    with pytest.raises(AttestationError, match="not on this PS's list of admitted workers"):
        admission.check_peer(Peer("f3", key_sha256="cd" * 32, name="mallory"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected at least one"),
        ("[[worker]]\nid = 1\n", "give key_sha256 or name"),
        ('[[worker]]\nkey_sha256 = "abc"\n', "key_sha256: expected 64 hex digits"),
        ('[[worker]]\nname = "a b"\n', "name: expected 1-64 letters"),
        ('[[worker]]\nname = "a"\nrole = "x"\n', r"unknown key\(s\) \['role'\]"),
        ('[[worker]]\nid = 1\nname = "a"\n[[worker]]\nid = 1\nname = "b"\n', "more than once"),
        ("[[worker]\n", "not valid TOML"),
    ],
)
def test_admission_list_errors_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "admitted.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Admission.load(path)


def test_party_names() -> None:
    assert check_party_name("hospital-a.eu_1") == "hospital-a.eu_1"
    for bad in ("", "-x", "a" * 65, "é"):
        with pytest.raises(ConfigError, match="--name"):
            check_party_name(bad)


# ---- the update check --------------------------------------------------------------------


def test_magnitude_bound() -> None:
    check = MagnitudeBound(20)
    assert check(np.array([1.0, -(2.0**20) + 1])) is None
    assert check(np.array([0.0, 2.0**20])) == (
        "entry 1 decrypts to 1.05e+06, beyond the protocol's bound |w| < 2^20 (1.04858e+06)"
    )
    assert check(np.array([np.nan])) == "entry 0 decrypts to nan (not a finite number)"
    assert check(np.array([1.0, -np.inf])) == "entry 1 decrypts to -inf (not a finite number)"


# ---- the data check ----------------------------------------------------------------------


def _with_cell(tmp_path: Path, row: int, column: int, value: float) -> tuple[Dataset, Path]:
    data = breast.load_split("homo_guest")
    X = data.X.copy()
    X[row, column] = value
    changed = Dataset(ids=data.ids, X=X, y=data.y, feature_names=data.feature_names)
    return changed, write_fate_csv(changed, tmp_path / "train.csv")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (1e300, "its step matrix would hold -inf at learning rate 0.15"),
        (1e5, "its first update would reach"),
    ],
)
def test_unusable_data_names_file_column_and_row(tmp_path: Path, value: float, why: str) -> None:
    data, path = _with_cell(tmp_path, 17, 3, value)
    with pytest.raises(ConfigError) as refused:
        check_training_data(data, path, Hyperparameters())
    message = str(refused.value)
    assert message.startswith(f"{path}: column 'x3': values up to {value:.3g} (row id ")
    assert f"row id {int(data.ids[17])}" in message and why in message


def test_ordinary_data_pass_the_check() -> None:
    for split in ("homo_guest", "homo_host"):
        data = breast.load_split(split)
        for hp in (Hyperparameters(), Hyperparameters(learning_rate=0.3)):
            check_training_data(data, split, hp)


# ---- addresses ---------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_a_silent_listener_is_not_a_tls_server(listener: socket.socket) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(ConfigError, match=r"not a TLS server \(no TLS handshake within 0.2 s\)"):
        wait_for_tls_server(address, wait_s=30, handshake_timeout_s=0.2)


def test_waiting_for_nothing_gives_up_with_a_hint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(ChannelError, match="nothing accepts connections there within 5 s"):
        wait_for_tls_server(address, wait_s=5, clock=lambda: now[0], sleep=sleep)
    assert slept and max(slept) <= 2.0 and abs(sum(slept) - 5.0) < 1e-9
    with pytest.raises(ChannelError, match="start the PS first, or give --wait-for-server"):
        wait_for_tls_server(address, wait_s=0)


def test_listen_addresses_are_checked(listener: socket.socket) -> None:
    check_can_listen("127.0.0.1:0", where="--listen")
    taken = f"127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(ConfigError, match=f"--listen {taken}: the port is in use"):
        check_can_listen(taken, where="--listen")
    with pytest.raises(ConfigError, match="unknown host"):
        check_can_listen("no-such-host.invalid:5000", where="--listen")

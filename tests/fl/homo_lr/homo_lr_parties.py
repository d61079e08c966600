"""Real homo-lr parties for the process tests: each a ``python -m sealfl.cli.main`` process.

The tests keep their PIDs, poll files for readiness and never sleep a fixed time to "let things
happen". Keys are 1024 bits to keep the suite quick (the protocol does not depend on the size).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import party_processes
from party_processes import PartyProcess

from sealfl.data import breast
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import FloatArray, Hyperparameters
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.launch import ADDRESS_FILE
from sealfl.fl.homo_lr.peers import Peer
from sealfl.fl.homo_lr.server import (
    JoinInfo,
    ModelView,
    ParameterServer,
    ServerSettings,
    SubmitOutcome,
    TrainingResult,
)
from sealfl.fl.homo_lr.worker import Worker
from sealfl.he import EncryptedVector
from sealfl.runtime import PartyRuntime, TeeChoice, TeeKind

CLI = [sys.executable, "-m", "sealfl.cli.main", "homo-lr"]
TIMEOUT_S = 90.0
NAMES = tuple(f"x{j}" for j in range(30))
"""The breast splits' feature columns."""


class Party(PartyProcess):
    """A started process whose combined output goes to a fresh file we can poll."""

    def __init__(self, name: str, argv: list[str], logs: Path) -> None:
        super().__init__(name, argv, logs, timeout_s=TIMEOUT_S)

    def wait_for(self, predicate: Callable[[str], bool], what: str) -> None:
        """Poll ``predicate`` on the output; fail early if the party exits first."""
        self.poll(lambda: predicate(self.output()), what)


def fresh_measurements() -> dict[str, bytes]:
    """Measure homo-lr's roles in a new process, as the parties about to start will."""
    return party_processes.fresh_measurements("sealfl.fl.homo_lr.launch")


def start_ps(
    run: dict[str, Path],
    parties: list[Party],
    *extra: str,
    workers: int = 2,
    epochs: int,
    listen: str = "127.0.0.1:0",
    name: str = "ps",
) -> str:
    """Start a PS (1024-bit key) and return its front door once it listens."""
    out = run["root"] / "ps"
    address_file = out / ADDRESS_FILE
    address_file.unlink(missing_ok=True)  # a restarted PS announces itself afresh
    party = Party(
        name,
        [
            *CLI,
            "ps",
            "--worker-num",
            str(workers),
            "--epochs",
            str(epochs),
            "--validate-set",
            str(run["test"]),
            "--listen",
            listen,
            "--key-bits",
            "1024",
            "--policy",
            str(run["policy-ps"]),
            "--out",
            str(out),
            "--simulated-platform",
            str(run["platform"]),
            *extra,
        ],
        run["logs"],
    )
    parties.append(party)
    party.wait_for(lambda _: address_file.is_file(), "listening address")
    return address_file.read_text().strip()


def start_worker(
    run: dict[str, Path],
    parties: list[Party],
    k: int,
    address: str,
    epochs: int,
    *extra: str,
    policy: Path | None = None,
    platform: Path | None = None,
    train_set: Path | None = None,
    name: str | None = None,
) -> Party:
    """Start worker ``k`` (its split of the breast data unless ``train_set`` says otherwise)."""
    party = Party(
        name or f"worker-{k}",
        [
            *CLI,
            "worker",
            "--train-set",
            str(train_set or run[f"train-{k}"]),
            "--id",
            str(k),
            "--server",
            address,
            "--epochs",
            str(epochs),
            "--policy",
            str(policy or run["policy-worker"]),
            "--simulated-platform",
            str(platform or run["platform"]),
            "--cores",
            "1",  # several parties share this machine (and no process pool to start)
            *extra,
        ],
        run["logs"],
    )
    parties.append(party)
    return party


def in_process_tee(run: dict[str, Path], role: str) -> PartyRuntime:
    """A party of this test process, with the measurement the policies expect for ``role``."""
    measurement = bytes.fromhex((run["root"] / f"measurement-{role}.hex").read_text())
    return PartyRuntime.create(
        TeeChoice(TeeKind.SIMULATED, simulated_platform=run["platform"]),
        simulated_measurement=lambda: measurement,
        policy=run[f"policy-{role}"],
    )


class DirectLink:
    """A worker's calls delivered straight to a PS core in this process, as caller ``peer``."""

    def __init__(self, ps: ParameterServer[EncryptedVector], peer: Peer) -> None:
        self.ps, self.peer = ps, peer

    def join(
        self,
        worker_id: int,
        hp: Hyperparameters,
        feature_names: Sequence[str],
        n_samples: int,
        seat_token: bytes = b"",
    ) -> JoinInfo:
        return self.ps.join(worker_id, hp, feature_names, n_samples, self.peer, seat_token)

    def submit(
        self, worker_id: int, iteration: int, data: bytes, seat_token: bytes = b""
    ) -> SubmitOutcome:
        return self.ps.submit(worker_id, iteration, data, self.peer, seat_token)

    def get_model(self, worker_id: int, version: int, seat_token: bytes = b"") -> ModelView:
        return self.ps.get_model(worker_id, version, self.peer, 1.0, seat_token)

    def reconnect(self, wait_s: float) -> None:
        raise AssertionError("an in-process link never loses the PS")


def run_in_process(
    hp: Hyperparameters,
    *,
    crypto: PaillierServerCrypto | None = None,
    metrics_dir: Path | None = None,
    worker_1_line: Callable[[str], None] = lambda line: None,
) -> TrainingResult:
    """Train the two breast splits in this process (PS core, two worker loops) with real keys.

    ``crypto`` defaults to a fresh 1024-bit key pair; with ``metrics_dir`` every party writes
    its metrics there (``ps.jsonl``, ``worker-K.jsonl``); worker 1's lines go to
    ``worker_1_line``.
    """

    def metrics(party: str) -> MetricsLog:
        path = None if metrics_dir is None else metrics_dir / f"{party}.jsonl"
        return MetricsLog(path, party=party)

    test = breast.load_split("homo_test")
    ps: ParameterServer[EncryptedVector] = ParameterServer(
        crypto=crypto or PaillierServerCrypto.generate(1024),
        validation=(test.X, test.labels().astype(np.float64)),
        feature_names=test.feature_names,
        settings=ServerSettings(worker_num=2, min_workers=2, hp=hp, final_grace_s=1.0),
        metrics=metrics("ps"),
        on_line=lambda line: None,
    )
    workers = [
        Worker(
            worker_id=k,
            data=breast.load_split(split),
            hp=hp,
            link=DirectLink(ps, Peer(f"cert-{k}")),
            open_key=PaillierWorkerCrypto.from_public_key_bytes,
            metrics=metrics(f"worker-{k}"),
            on_line=worker_1_line if k == 1 else (lambda line: None),
        )
        for k, split in ((1, "homo_guest"), (2, "homo_host"))
    ]
    results: list[TrainingResult] = []
    threads = [threading.Thread(target=lambda: results.append(ps.run()), daemon=True)]
    threads += [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT_S)
    assert results and results[0].completed, results
    return results[0]


def reference_run(hp: Hyperparameters) -> tuple[FloatArray, list[str]]:
    """Train the two breast splits without interruption, in this process, with real keys.

    Returns the final model and worker 1's ``iter:`` lines: what a run that was interrupted and
    resumed must reproduce exactly (every step is exact fixed-point arithmetic, whatever the
    key and the encryption randomness).
    """
    lines: list[str] = []
    result = run_in_process(hp, worker_1_line=lines.append)
    return result.weights, [line for line in lines if line.startswith("iter:")]

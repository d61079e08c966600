"""The end-to-end demo: one model, three modes, separate processes, results compared.

Trains the model on the breast-cancer guest and host splits, starts a dealer and a model server
per mode as separate processes, queries each with the test split, and compares every answer
with the local plaintext model: the TEE mode must match exactly, MPC within 1e-3 (sigmoid in
MPC) or 1e-4 (revealed logit), and every predicted label must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sealfl.data import breast
from sealfl.fl.infer.client import InferenceClient, QueryResult, pinned_verifier, tee_verifier
from sealfl.fl.infer.common import Mode, tee_measurement
from sealfl.fl.infer.launch import PartyProcess, launch_dealer, launch_server
from sealfl.models import LogisticRegression, TrainConfig
from sealfl.mpc import Linear, Output
from sealfl.tee import SimulatedPlatform

TOLERANCE = {
    ("plaintext", "probability"): 0.0,
    ("tee", "probability"): 0.0,
    ("mpc", "probability"): 1e-3,
    ("mpc", "logit"): 1e-4,
    ("mpc", "label"): 0.0,
    ("mpc (beaver)", "probability"): 1e-3,
}
"""Largest accepted difference from the local plaintext probabilities, per (mode, output)."""


@dataclass(frozen=True)
class DemoRow:
    """One mode's answer on the test split, compared with the local model."""

    mode: str
    output: str
    max_abs_diff: float | None
    labels_agree: bool
    online_ms: float
    round_trips: int
    bytes_sent: int

    @property
    def ok(self) -> bool:
        """Whether the answer is within the tolerance of its (mode, output)."""
        tol = TOLERANCE[(self.mode, self.output)]
        close = self.max_abs_diff is None or self.max_abs_diff <= tol
        return close and self.labels_agree


def train_breast_model() -> LogisticRegression:
    """Train the demo model on the breast-cancer guest and host splits."""
    parts = [breast.load_split(name) for name in ("homo_guest", "homo_host")]
    X = np.vstack([p.X for p in parts])
    y = np.concatenate([p.labels() for p in parts])
    return LogisticRegression.fit(X, y, TrainConfig())[0]


def connect(
    mode: Mode,
    server: PartyProcess,
    *,
    platform_fingerprint: str | None = None,
    measurement: bytes | None = None,
    dealer: PartyProcess | None = None,
) -> InferenceClient:
    """Connect to a launched server, verifying it as its mode requires.

    ``platform_fingerprint`` (TEE mode) is the simulated platform the server must run on: the
    client takes its fingerprint, never the platform's files (whose private key would let it
    sign evidence and open the server's sealed model). ``measurement`` is the TEE server's
    expected measurement; compute it with :func:`tee_measurement` *before* launching the
    server, so that both hash the same files. ``dealer`` (MPC mode) is the launched dealer,
    whose certificate the client pins.
    """
    if mode is Mode.TEE:
        assert platform_fingerprint is not None
        verifier = tee_verifier(
            platform_fingerprint=platform_fingerprint,
            measurement=measurement or tee_measurement(),
        )
    else:
        verifier = pinned_verifier(server.ready["fingerprint"])
    return InferenceClient.connect(
        server.ready["address"],
        mode=mode,
        server_verifier=verifier,
        dealer_fingerprint=None if dealer is None else dealer.ready["fingerprint"],
    )


def _row(
    mode: str, output: Output, got: QueryResult, model: LogisticRegression, X: np.ndarray
) -> DemoRow:
    want = model.predict_proba(X)
    diff = None if got.probabilities is None else float(np.abs(got.probabilities - want).max())
    return DemoRow(
        mode=mode,
        output=output.value,
        max_abs_diff=diff,
        labels_agree=bool(np.array_equal(got.labels, model.predict(X))),
        online_ms=1000 * got.online_s,
        round_trips=got.round_trips,
        bytes_sent=got.bytes_sent,
    )


@dataclass(frozen=True)
class Parties:
    """A dealer and one model server per mode, started as separate processes."""

    workdir: Path
    model: LogisticRegression
    model_path: Path
    platform: SimulatedPlatform
    measurement: bytes
    """What the TEE server is expected to measure to (hashed just before it starts)."""
    dealer: PartyProcess
    servers: dict[Mode, PartyProcess]

    @property
    def platform_fingerprint(self) -> str:
        """What a client of the TEE server pins: the platform's fingerprint, not its files."""
        return self.platform.fingerprint


@contextmanager
def start_parties(workdir: Path) -> Iterator[Parties]:
    """Train the model, start the dealer and the three servers, and stop them all on exit.

    Only the processes started here are stopped, in reverse order, even if a start fails.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    model = train_breast_model()
    model_path = model.save(workdir / "model.npz")
    platform = SimulatedPlatform.create(workdir / "platform")
    started: list[PartyProcess] = []
    try:
        # Hash this checkout just before the TEE server hashes it too, so both see the same files.
        measurement = tee_measurement()
        tee = launch_server(
            "tee",
            model=model_path,
            log_dir=workdir,
            platform=workdir / "platform",
            sealed_model=workdir / "model.sealed",
        )
        started.append(tee)
        dealer = launch_dealer(workdir)
        started.append(dealer)
        plaintext = launch_server("plaintext", model=model_path, log_dir=workdir)
        started.append(plaintext)
        mpc = launch_server("mpc", model=model_path, log_dir=workdir, dealer=dealer)
        started.append(mpc)
        servers = {Mode.PLAINTEXT: plaintext, Mode.TEE: tee, Mode.MPC: mpc}
        yield Parties(workdir, model, model_path, platform, measurement, dealer, servers)
    finally:
        for party in reversed(started):
            party.stop()


def run_demo(workdir: Path) -> list[DemoRow]:
    """Run the whole demo in ``workdir`` (model, platform, sealed model, logs)."""
    rows: list[DemoRow] = []
    with start_parties(workdir) as parties:
        X = breast.load_split("homo_test").X
        for mode, server in parties.servers.items():
            outputs = list(Output) if mode is Mode.MPC else [Output.PROBABILITY]
            with connect(
                mode,
                server,
                platform_fingerprint=parties.platform_fingerprint,
                measurement=parties.measurement,
                dealer=parties.dealer,
            ) as client:
                for output in outputs:
                    got = client.query(X, output)
                    rows.append(_row(mode.value, output, got, parties.model, X))
                if mode is Mode.MPC:
                    got = client.query(X, Output.PROBABILITY, linear=Linear.BEAVER)
                    rows.append(_row("mpc (beaver)", Output.PROBABILITY, got, parties.model, X))
    return rows

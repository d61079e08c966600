"""Real processes on loopback for the infer workload: a dealer and one server per mode.

Parties are started through :mod:`sealfl.fl.infer.launch` (``python -m sealfl.cli.main infer
...``), which reads each party's ready line with a deadline and stops exactly the processes it
started.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sealfl.fl.infer.common import tee_measurement
from sealfl.fl.infer.demo import train_breast_model
from sealfl.fl.infer.launch import PartyProcess, launch_dealer, launch_server
from sealfl.models import LogisticRegression
from sealfl.tee import SimulatedPlatform


@dataclass
class Federation:
    workdir: Path
    model: LogisticRegression
    model_path: Path
    platform: SimulatedPlatform
    measurement: bytes
    dealer: PartyProcess
    servers: dict[str, PartyProcess]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("infer")
    model = train_breast_model()
    model_path = model.save(work / "model.npz")
    platform = SimulatedPlatform.create(work / "platform")
    started: list[PartyProcess] = []
    try:
        # Hash this checkout just before the TEE server hashes it (others may edit files).
        measurement = tee_measurement()
        tee = launch_server(
            "tee",
            model=model_path,
            log_dir=work,
            platform=work / "platform",
            sealed_model=work / "model.sealed",
        )
        started.append(tee)
        dealer = launch_dealer(work)
        started.append(dealer)
        servers = {
            "plaintext": launch_server("plaintext", model=model_path, log_dir=work),
            "tee": tee,
            "mpc": launch_server("mpc", model=model_path, log_dir=work, dealer=dealer),
        }
        started.extend([servers["plaintext"], servers["mpc"]])
        yield Federation(work, model, model_path, platform, measurement, dealer, servers)
    finally:
        for party in reversed(started):
            party.stop()


@pytest.fixture(scope="module")
def test_x() -> np.ndarray:
    from sealfl.data import breast

    return breast.load_split("homo_test").X

"""Fixtures of the homo-lr process tests: a prepared run directory and the parties started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from homo_lr_parties import Party, fresh_measurements

from sealfl.fl.homo_lr.demo import prepare_run_dir


@pytest.fixture
def run(tmp_path: Path) -> Iterator[dict[str, Path]]:
    measurements = fresh_measurements()
    paths = prepare_run_dir(tmp_path, workers=2, measurements=measurements)
    (tmp_path / "measurement-ps.hex").write_text(measurements["ps"].hex())
    (tmp_path / "measurement-worker.hex").write_text(measurements["worker"].hex())
    paths["root"] = tmp_path
    paths["logs"] = tmp_path / "logs"
    paths["logs"].mkdir()
    yield paths


@pytest.fixture
def parties() -> Iterator[list[Party]]:
    started: list[Party] = []
    yield started
    for party in started:
        party.stop()

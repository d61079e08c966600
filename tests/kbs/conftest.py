"""Fixtures of the kbs tests (the world itself is in kbs_world.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kbs_world import Clock, World, make_world

from sealfl.kbs import RunningKbs, load_kbs_settings, start_kbs
from sealfl.seal import SealingKey
from sealfl.tee import create_ratls_certificate


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start_broker(world: World, clock: Clock) -> Iterator[Callable[..., RunningKbs]]:
    """Start in-process brokers on the world's config (stopped at the end of the test)."""
    started: list[RunningKbs] = []

    def start(**overrides: Any) -> RunningKbs:
        settings = load_kbs_settings(world.config)
        running = start_kbs(
            settings,
            credentials=overrides.pop("credentials", create_ratls_certificate(world.tee("kbs"))),
            sealing_key=SealingKey.load(world.sealing_key_file),
            clock=clock,
            **overrides,
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop(None)

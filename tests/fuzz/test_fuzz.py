"""A short fuzzing run of every target, as part of the suite (``make fuzz`` runs a long one).

Each target gets a fixed set of inputs (Hypothesis, derandomised: the same inputs every run,
so the suite never fails on a new random find; ``make fuzz`` explores). Only sealfl's own
errors may escape; a crash fails with the input, shrunk. Inputs that once crashed a target
are kept in ``regressions/<target>/`` and replayed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine import inputs, judge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from targets import NAMES, Target, build_targets

SHORT_RUN = 40
REGRESSIONS = Path(__file__).with_name("regressions")


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    return build_targets(tmp_path_factory.mktemp("fuzz"))


def test_every_target_is_built(targets: dict[str, Target]) -> None:
    assert sorted(targets) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted(name: str, targets: dict[str, Target]) -> None:
    """A seed is a valid input: a target that refused its seeds would test nothing deep."""
    target = targets[name]
    if name != "mpc-dealer-material":  # no dealer in the test: random bytes only
        assert target.seeds, f"{name} has no seeds"
    for seed in target.seeds:
        outcome = judge(target, seed, bound_s=None)
        assert outcome.kind == "accepted", (name, outcome.error)


@pytest.mark.parametrize("name", NAMES)
def test_only_sealfl_errors_escape(name: str, targets: dict[str, Target]) -> None:
    target = targets[name]

    @settings(
        max_examples=SHORT_RUN,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        payload = data.draw(inputs(target))
        outcome = judge(target, payload, bound_s=None)  # pytest-timeout bounds a hang
        if outcome.kind == "crash":
            raise AssertionError(f"{name} crashed on {payload!r}") from outcome.error

    check()


def test_regressions(targets: dict[str, Target]) -> None:
    """Inputs that once crashed a target, kept as files (``regressions/<target>/*.bin``)."""
    paths = sorted(REGRESSIONS.glob("*/*.bin"))
    assert paths, f"{REGRESSIONS} holds no inputs"
    for path in paths:
        outcome = judge(targets[path.parent.name], path.read_bytes(), bound_s=None)
        assert outcome.kind != "crash", (path, outcome.error)

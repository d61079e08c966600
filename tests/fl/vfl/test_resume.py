"""Crashes with real processes: a party killed mid-run, then both restarted with ``--resume``.

- The follower killed with SIGKILL mid-step: the leader ends at its step deadline with an error
  that names the step and the checkpoint both halves hold; that sealed checkpoint opens intact.
- Either party killed: restarted with ``resume = true``, both agree on the latest checkpoint
  they both hold, and the run ends with exactly the losses of an uninterrupted run (which equal
  the centralised run's, see test_processes), step for step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vfl_parties import (
    assert_exact,
    central_losses,
    events,
    fresh_measurements,
    make_run,
    run_to_the_end,
    start_leader,
    start_role,
    step_losses,
)

from sealfl.fl.vfl.checkpoint import CHECKPOINT_LABEL, CheckpointStore
from sealfl.fl.vfl.demo import write_role_configs
from sealfl.runtime import load_role_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SETTINGS = {"preset": "breast", "epochs": 3, "batch_size": 32, "seed": 7}
"""45 steps: long enough to kill a party in the middle."""
LEADER = {"checkpoint_every": 4, "step_deadline": 4.0, "log_every": 1}
FOLLOWER = {"step_deadline": 4.0, "wait_for_leader": 30.0}


def _resume_configs(paths: dict[str, Path]) -> None:
    write_role_configs(
        paths["root"],
        paths,
        settings=SETTINGS,
        leader_options={**LEADER, "resume": True},
        follower_options={**FOLLOWER, "resume": True},
    )


def _run_to_the_end(paths: dict[str, Path]) -> str:
    return run_to_the_end(paths, "leader-again", "follower-again")[0].output()


@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_a_killed_party_resumes_to_the_same_losses(tmp_path: Path, victim: str) -> None:
    paths = make_run(tmp_path, SETTINGS, leader_options=LEADER, follower_options=FOLLOWER)
    metrics = tmp_path / "leader" / "leader_metrics.jsonl"
    leader, address = start_leader(paths)
    follower = start_role("follower", paths["follower-config"], paths["logs"], leader=address)
    parties = {"leader": leader, "follower": follower}
    try:
        leader.poll(
            lambda: any(r["step"] >= 18 for r in events(metrics, "step")),
            "step 18",
            watch=(follower,),
        )
        parties[victim].kill()  # whatever it was doing: mid-step, mid-checkpoint
        survivor = parties["follower" if victim == "leader" else "leader"]
        assert survivor.finish() == 1  # at its deadline, with a clear error
        if victim == "follower":
            words = leader.words()
            assert "no " in words and "from the follower for step" in words, words
            assert "within the deadline of 4 s" in words
            assert "restart both parties with --resume" in words
        else:
            assert "nothing from the leader for step" in follower.words(), follower.output()
    finally:
        leader.stop()
        follower.stop()
    done_before = len(list(events(metrics, "step")))
    _resume_configs(paths)
    output = _run_to_the_end(paths)
    resumed = next(r for r in events(metrics, "started") if r["resume"])
    assert 0 < resumed["start_step"] <= done_before and resumed["start_step"] % 4 == 0
    assert "resuming run" in output and f"at step {resumed['start_step']}" in output
    assert_exact(step_losses(metrics), central_losses(paths, SETTINGS))


def test_the_checkpoint_a_vanished_follower_leaves_opens_intact(tmp_path: Path) -> None:
    measurements = fresh_measurements()
    paths = make_run(
        tmp_path,
        SETTINGS,
        leader_options=LEADER,
        follower_options=FOLLOWER,
        measurements=measurements,
    )
    metrics = tmp_path / "leader" / "leader_metrics.jsonl"
    leader, address = start_leader(paths)
    follower = start_role("follower", paths["follower-config"], paths["logs"], leader=address)
    try:
        leader.poll(
            lambda: any(r["step"] >= 10 for r in events(metrics, "step")),
            "step 10",
            watch=(follower,),
        )
        follower.kill()
        assert leader.finish() == 1
    finally:
        leader.stop()
        follower.stop()
    durable = [r["step"] for r in events(metrics, "checkpoint")]
    config = load_role_config(paths["leader-config"])
    runtime = config.runtime(simulated_measurement=lambda: measurements["leader"])
    store = CheckpointStore(
        tmp_path / "leader", runtime.sealing_key(CHECKPOINT_LABEL), role="leader"
    )
    kept = store.steps()
    assert kept and set(kept) <= set(durable)
    named = f"the last checkpoint both halves hold is step {kept[0]}"
    assert named in leader.words(), leader.output()
    checkpoint = store.load(kept[0])
    assert checkpoint.step == kept[0] and len(checkpoint.losses) == kept[0]

"""Helpers for vfl tests with real processes: run directories, parties, central references.

Every party is a separate ``python -m sealfl.cli.main`` process; the tests keep their PIDs, poll
files for readiness and never sleep a fixed time to "let things happen".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import party_processes
from party_processes import PartyProcess

from sealfl.data.vertical import VerticalPair, read_party_csv
from sealfl.fl.vfl.demo import prepare_run_dir, write_data, write_role_configs

CLI = [sys.executable, "-m", "sealfl.cli.main"]
TIMEOUT_S = 120.0
SETTINGS = {"preset": "breast", "epochs": 2, "batch_size": 64, "seed": 5}
"""Small and quick: 14 steps of the breast model."""


def fresh_measurements() -> dict[str, bytes]:
    """Measure vfl's roles in a new process, as the parties about to start will."""
    return party_processes.fresh_measurements("sealfl.fl.vfl.launch", roles=("leader", "follower"))


def make_run(
    root: Path,
    settings: dict[str, Any] | None = None,
    *,
    leader_options: dict[str, Any] | None = None,
    follower_options: dict[str, Any] | None = None,
    measurements: dict[str, bytes] | None = None,
) -> dict[str, Path]:
    """Write platform, policies, both parties' CSVs and role configs into ``root``."""
    paths = prepare_run_dir(root, measurements=measurements or fresh_measurements())
    paths |= write_data(root, "breast")
    configs = write_role_configs(
        root,
        paths,
        settings=settings or SETTINGS,
        leader_options=leader_options,
        follower_options=follower_options,
    )
    paths |= {f"{role}-config": path for role, path in configs.items()}
    paths["root"] = root
    paths["logs"] = root / "logs"
    paths["logs"].mkdir(exist_ok=True)
    return paths


class Party(PartyProcess):
    """A party process whose output is appended to ``<logs>/<name>.log``."""

    def __init__(
        self, name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(name, argv, logs, env, append=True, timeout_s=TIMEOUT_S)


def start_role(
    name: str, config: Path, logs: Path, *, listen: str | None = None, leader: str | None = None
) -> Party:
    env = {}
    if listen is not None:
        env["SEALFL_LISTEN"] = listen
    if leader is not None:
        env["SEALFL_PEERS"] = f"leader={leader}"
    return Party(name, [*CLI, "run", "--config", str(config)], logs, env)


def start_leader(paths: dict[str, Path], name: str = "leader") -> tuple[Party, str]:
    """Start the leader from its config on a free port; return it and its address."""
    address_file = paths["root"] / "leader" / "leader.address"
    address_file.unlink(missing_ok=True)
    leader = start_role(name, paths["leader-config"], paths["logs"], listen="127.0.0.1:0")
    leader.poll(address_file.is_file, "its address")
    return leader, address_file.read_text().strip()


def run_to_the_end(
    paths: dict[str, Path], leader_name: str = "leader", follower_name: str = "follower"
) -> tuple[Party, Party]:
    """Run the leader and the follower from their configs until both exit 0; return both."""
    leader, address = start_leader(paths, leader_name)
    follower = start_role(follower_name, paths["follower-config"], paths["logs"], leader=address)
    try:
        assert follower.finish() == 0, follower.output()
        assert leader.finish() == 0, leader.output()
    finally:
        leader.stop()
        follower.stop()
    return leader, follower


def records(path: Path) -> list[dict[str, Any]]:
    """Complete JSON-lines records of a metrics file (none if it does not exist yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def events(path: Path, event: str) -> Iterator[dict[str, Any]]:
    return (r for r in records(path) if r.get("event") == event)


def step_losses(metrics: Path) -> list[float]:
    """The loss of every step, the last record of each step winning (a resumed run redoes some)."""
    by_step = {r["step"]: r["loss"] for r in events(metrics, "step")}
    return [by_step[s] for s in sorted(by_step)]


def aligned_pair(paths: dict[str, Path]) -> VerticalPair:
    """Both parties' training rows as the PSI aligns them: common ids, sorted."""
    leader = read_party_csv(paths["leader-train"], label_column="y")
    follower = read_party_csv(paths["follower-train"])
    common = sorted(set(leader.ids) & set(follower.ids))
    return VerticalPair(leader.select(common), follower.select(common))


def central_losses(paths: dict[str, Path], settings: dict[str, Any] | None = None) -> list[float]:
    """The centralised run's loss at every step, on the same aligned rows and settings."""
    from sealfl.fl.vfl.roles import build_settings
    from sealfl.fl.vfl.split import train_central

    given = dict(settings or SETTINGS)
    name = given.pop("preset")
    given["learning_rate"] = given.pop("learning_rate", None)
    return train_central(build_settings(name, **given), aligned_pair(paths)).losses


def assert_exact(got: list[float], expected: list[float]) -> None:
    assert len(got) == len(expected), (len(got), len(expected))
    assert np.array_equal(np.asarray(got), np.asarray(expected)), (got, expected)

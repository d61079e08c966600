"""The vfl commands as a user runs them: prepare, role configs, bad input, the demo's pieces."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sealfl_command import one_line, sealfl

from sealfl.cli.run_cmd import known_roles
from sealfl.errors import ConfigError
from sealfl.fl.vfl.roles import follower_options, leader_options
from sealfl.runtime import load_role_config


def test_vfl_roles_are_registered_for_sealfl_run() -> None:
    import sealfl.cli.main  # noqa: F401  (registers every command module)

    assert {"vfl/leader", "vfl/follower"} <= set(known_roles())


def test_prepare_writes_configs_both_parties_can_start_from(tmp_path: Path) -> None:
    done = sealfl("vfl", "prepare", "--run-dir", "run", "--epochs", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    for name in ("leader.toml", "follower.toml", "policy-leader.toml", "policy-follower.toml"):
        assert (run / name).is_file(), name
    assert "sealfl run --config" in done.stdout and "vfl predict" in done.stdout
    leader = leader_options(load_role_config(run / "leader.toml", environ={}))
    follower = follower_options(
        load_role_config(run / "follower.toml", environ={"SEALFL_PEERS": "leader=10.0.0.1:7"})
    )
    assert leader.settings == follower.settings
    assert leader.settings.train.epochs == 3
    assert follower.leader == "10.0.0.1:7"
    header = (run / "data" / "leader-train.csv").read_text().splitlines()[0]
    assert header.startswith("id,y,")
    assert tomllib.loads((run / "policy-leader.toml").read_text())["simulated"]["allow"]


def test_a_typo_in_a_role_config_is_refused(tmp_path: Path) -> None:
    assert sealfl("vfl", "prepare", "--run-dir", "run", cwd=tmp_path).returncode == 0
    config = tmp_path / "run" / "leader.toml"
    config.write_text(config.read_text() + "checkpoint_evry = 3\n")
    try:
        leader_options(load_role_config(config, environ={}))
    except ConfigError as exc:
        assert "checkpoint_evry" in str(exc) and str(config) in str(exc)
    else:
        raise AssertionError("the typo was accepted")


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = sealfl("vfl", "prepare", "--run-dir", "run", "--preset", "nope", cwd=tmp_path)
    assert done.returncode == 2
    assert one_line(done.stderr).startswith("error: --preset: expected one of")
    csv = tmp_path / "leader.csv"
    csv.write_text("id,y,a\n1,0,0.5\n")
    done = sealfl(
        "vfl", "leader", "--data", csv, "--policy", csv, "--simulated-platform", tmp_path,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("error:") == 1
    done = sealfl(
        "vfl", "follower", "--data", csv, "--leader", "nowhere", "--policy", csv, cwd=tmp_path
    )
    assert done.returncode == 2 and "--leader" in one_line(done.stderr)

"""``sealfl run --config``: the role decides, errors are one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sealfl.cli.main  # noqa: F401 - importing it registers every command and role
from sealfl.cli.run_cmd import known_roles


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealfl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_every_workload_role_is_registered() -> None:
    roles = known_roles()
    assert roles == sorted(roles)
    for expected in (
        "homo-lr/ps",
        "homo-lr/worker",
        "infer/client",
        "infer/dealer",
        "infer/server",
        "kbs/broker",
    ):
        assert expected in roles


def test_an_unknown_role_is_refused_on_one_line_naming_the_choices(tmp_path: Path) -> None:
    config = tmp_path / ("a-long-directory-name-" * 4) / "role.toml"
    config.parent.mkdir()
    config.write_text('workload = "homo-lr"\nrole = "aggregator"\n')
    result = _run("run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # never wrapped, whatever the width
    assert str(config) in lines[0]
    expected = f"no party homo-lr/aggregator; expected one of {', '.join(known_roles())}"
    assert lines[0].endswith(expected)


def test_brackets_in_messages_are_printed_as_written(tmp_path: Path) -> None:
    config = tmp_path / "role.toml"
    config.write_text('workload = "homo-lr"\nrole = "ps"\n[kbs]\nstore = "s"\n')
    result = _run("run", "--config", str(config))
    assert result.returncode == 2
    assert "a [kbs] table belongs in a key broker's config" in result.stderr


def test_tee_variables_of_the_development_commands_do_not_reach_run(tmp_path: Path) -> None:
    config = tmp_path / "role.toml"
    config.write_text(
        'workload = "homo-lr"\nrole = "ps"\n[tee]\nkind = "auto"\n'
        '[attestation]\npolicy = "p.toml"\n[listen]\naddress = "127.0.0.1:0"\n'
        '[options]\nworker_num = 1\nvalidate_set = "v.csv"\n'
    )
    env = {**os.environ, "SEALFL_TEE": "simulated", "SEALFL_SIMULATED_PLATFORM": str(tmp_path)}
    result = _run("run", "--config", str(config), env=env)
    assert "SEALFL_TEE, SEALFL_SIMULATED_PLATFORM ignored" in result.stderr
    assert result.returncode == 2
    assert "--tee auto: no TEE found" in result.stderr  # the config's kind, not the variable


def test_without_torch_the_hfl_commands_say_which_extra_to_install(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
        "from sealfl.cli.main import main\n"
        f"main(['hfl', 'prepare', '--run-dir', {str(tmp_path / 'run')!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: this command needs torch, which comes with the hfl extra: "
        "pip install -c constraints.txt -e '.[hfl]' (make test installs it)"
    ]

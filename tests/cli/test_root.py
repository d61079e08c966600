"""The root command: version, help, and the error-to-exit-code mapping."""

import subprocess
import sys

import sealfl


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealfl.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def test_version_prints_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"sealfl {sealfl.__version__}"


def test_unknown_command_fails() -> None:
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "no-such-command" in result.stderr

"""``sealfl bench hfl --flower-python PATH``: a peer that cannot run is refused before any run.

Each refusal is exit 2 (bad input) with one ``error:`` line naming the flag, and comes before
sealfl's own federations start (they take minutes), so nothing is measured or written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sealfl_command import one_line, sealfl


def _refused(done: subprocess.CompletedProcess[str], cwd: Path) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len([line for line in done.stderr.splitlines() if "error:" in line]) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not (cwd / "bench-results").exists()  # nothing ran, nothing was recorded
    return one_line(done.stderr)


def test_a_missing_interpreter_is_refused_naming_the_flag(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    done = sealfl("bench", "hfl", "--quick", "--flower-python", missing, cwd=tmp_path)
    text = _refused(done, tmp_path)
    assert f"--flower-python {missing}: no such interpreter file" in text


def test_a_directory_is_not_an_interpreter(tmp_path: Path) -> None:
    done = sealfl("bench", "hfl", "--flower-python", tmp_path, cwd=tmp_path)
    assert "no such interpreter file" in _refused(done, tmp_path)


def test_an_interpreter_without_flower_is_refused_with_how_to_install(tmp_path: Path) -> None:
    # sealfl's own interpreter: a real Python with torch and sealfl, but no flwr.
    done = sealfl("bench", "hfl", "--quick", "--flower-python", sys.executable, cwd=tmp_path)
    text = _refused(done, tmp_path)
    assert f"--flower-python {sys.executable}" in text
    assert "cannot import flwr" in text
    assert "pip install flwr==1.42.0 torch==2.13.0" in text


def test_another_flower_release_is_refused_naming_both_versions(tmp_path: Path) -> None:
    # A stand-in interpreter that answers the probe as a Flower 1.41 environment would.
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    answer = json.dumps({"flwr": "1.41.0", "torch": "2.13.0+cpu", "python": "3.11.7"})
    python.write_text(f"#!/bin/sh\necho '{answer}'\n")
    python.chmod(0o755)
    done = sealfl("bench", "hfl", "--quick", "--flower-python", python, cwd=tmp_path)
    text = _refused(done, tmp_path)
    assert "written for flwr 1.42.x" in text
    assert "has flwr 1.41.0" in text

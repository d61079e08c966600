"""Run the ``sealfl`` command as a real process, the way a user does, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def sealfl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``sealfl ARGS`` in ``cwd`` with this interpreter; capture its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "sealfl.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def one_line(text: str) -> str:
    """Collapse whitespace, so a message fragment matches however the text was laid out."""
    return " ".join(text.split())

"""Every command, every option, bad values: no traceback ever reaches the user.

``option_walker.py`` runs each command with one bad value at a time (see its docstring), in two
processes (one per core), each command line as the ``sealfl`` command runs it, with output
captured as a pipe captures it. What the user sees must be, for every command line:

* no traceback and no "internal error" (a bug), no hang past the walker's time bound;
* exit status 0 (a value that turned out acceptable), 1 (a refusal) or 2 (bad input);
* at most one ``error:`` line, and it is the last thing on standard error: one error, one
  line, whatever its length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from option_walker import RESUME_EXIT, commands

WALKER = Path(__file__).with_name("option_walker.py")
COMMANDS = sorted(commands())


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k not in ("SEALFL_TRACEBACK", "COLUMNS")}
    walks = []
    for i, half in enumerate([COMMANDS[0::2], COMMANDS[1::2]]):  # one process per core
        cwd = tmp_path_factory.mktemp(f"walk{i}")
        walks.append((cwd, half, cwd / "records.jsonl", 0))
    outs = [out for _, _, out, _ in walks]
    by_command: dict[str, list[dict[str, Any]]] = {c: [] for c in COMMANDS}
    while walks:
        running = [
            (subprocess.Popen(
                [sys.executable, str(WALKER), str(out), str(start), *half],
                cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ), cwd, half, out)
            for cwd, half, out, start in walks
        ]  # fmt: skip
        walks = []
        for proc, cwd, half, out in running:
            log, _ = proc.communicate(timeout=600)
            if proc.returncode == RESUME_EXIT:  # after a hang: go on in a fresh process
                walks.append((cwd, half, out, int(log.split()[-1])))
            else:
                assert proc.returncode == 0, log
    for out in outs:
        for line in out.read_text().splitlines():
            record = json.loads(line)
            by_command[record["command"]].append(record)
    return by_command


def _problems(record: dict[str, Any]) -> list[str]:
    problems = []
    text = record["stdout"] + record["stderr"]
    lines = [line for line in record["stderr"].splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if record["hung"]:
        problems.append("still running at the time bound (options not checked before starting)")
    elif record["code"] not in (0, 1, 2):
        problems.append(f"exit status {record['code']}")
    if "Traceback (most recent call last)" in text or "internal error" in text:
        problems.append("a traceback or an internal error")
    if len(errors) > 1 or (errors and lines[-1] != errors[0]):
        problems.append("more than one line of error")
    return problems


def test_the_walk_covers_every_command() -> None:
    assert {"seal keygen", "he keygen", "attest verify", "run"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_traceback_and_one_error_line(
    command: str, records: dict[str, list[dict[str, Any]]]
) -> None:
    done = records[command]
    params = [p for p in commands()[command].params if p.name != "help"]
    if any(not getattr(p, "is_flag", False) for p in params):
        assert done, f"{command}: no command line was tried"
    failures = [
        f"sealfl {' '.join(r['argv'])}: {', '.join(problems)}\n    {r['stderr'][-600:]!r}"
        for r in done
        if (problems := _problems(r))
    ]
    assert not failures, "\n".join(failures)

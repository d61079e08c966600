"""``sealfl he keygen`` / ``inspect`` and the argument checks of ``sealfl bench paillier``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealfl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keygen_then_inspect(tmp_path: Path) -> None:
    result = run_cli("he", "keygen", "--bits", "1024", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "1024-bit Paillier modulus gives about 80-bit security" in result.stderr
    private = tmp_path / "paillier-private.json"
    public = tmp_path / "paillier-public.json"
    fingerprint = json.loads(public.read_text())["fingerprint"]
    assert fingerprint in result.stdout
    for path, kind in ((public, "public"), (private, "private")):
        shown = run_cli("he", "inspect", str(path))
        assert shown.returncode == 0, shown.stderr
        assert f"kind:        {kind}" in shown.stdout
        assert fingerprint in shown.stdout
        assert json.loads(private.read_text())["p"] not in shown.stdout
    again = run_cli("he", "keygen", "--bits", "1024", "--out", str(tmp_path))
    assert again.returncode == 2
    assert "exists; pass --force" in " ".join(again.stderr.split())


def test_inspect_refuses_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"format": "sealfl-paillier-key", "version": 1, "kind": "public", "n": "zz"}')
    result = run_cli("he", "inspect", str(path))
    assert result.returncode == 2
    assert "bad.json: field 'n' is not hexadecimal" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bits", "1000"), "--bits must be 1024, 2048 or 3072"),
        (("--cores", "0"), "--cores must be 1..1024, got 0"),
    ],
)
def test_bench_refuses_bad_arguments(args: tuple[str, ...], message: str) -> None:
    result = run_cli("bench", "paillier", "--quick", *args)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())

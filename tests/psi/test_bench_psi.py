"""``sealfl bench psi``: two real party processes over RA-TLS, and its refusals of bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sealfl_command import one_line, sealfl


@pytest.mark.slow
def test_bench_psi_runs_two_processes_and_records_the_figures(tmp_path: Path) -> None:
    done = sealfl(
        "bench", "psi", "--ids", "3000", "--batch-size", "512", "--out-dir", tmp_path, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    full = json.loads((tmp_path / "psi.json").read_text())
    report = full["sealfl"]
    floor = full["floor"]
    assert floor["floor_us_per_id"] == pytest.approx(
        2 * floor["x25519_us"] + 2 * floor["powmod_us"]
    )
    assert floor["x25519_us"] > 0 and floor["powmod_us"] > 0
    assert "floor per party and id" in one_line(done.stdout)
    assert report["count"] == 1500
    assert 60 < report["bytes_per_id"] < 100  # 2 × 32 bytes + 2 × 10-byte compared values + framing
    assert report["leader_cpu_s"] > 0 and report["follower_cpu_s"] > 0
    assert "ids/s per party-core" in one_line(done.stdout)
    assert "user-" not in done.stdout  # figures only, never an id


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--mode", "everything"],
            "--mode: expected one of both, leader-only, cardinality, enclave-only",
        ),
        (["--ids", "0"], "--ids: expected 1..100000000, got 0"),
        (["--batch-size", "70000"], "--batch-size: expected 1..65536, got 70000"),
        (
            ["--openmined-python", "/nonexistent/python"],
            "--openmined-python /nonexistent/python: no such file",
        ),
    ],
)
def test_bench_psi_refuses_bad_options_before_running(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    done = sealfl("bench", "psi", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert expected in one_line(done.stderr)
    assert not (tmp_path / "bench-results").exists()

"""Refusal lines are rate-limited, and the number held back is always told."""

from __future__ import annotations

from sealfl.net import RateLimitedLog


def test_a_flood_gives_a_burst_then_one_summary_per_window() -> None:
    now = [0.0]
    lines: list[str] = []
    log = RateLimitedLog(lines.append, burst=3, window_s=60, clock=lambda: now[0])
    for i in range(1000):
        log(f"refused #{i}")
    assert lines == ["refused #0", "refused #1", "refused #2"]
    now[0] = 61.0
    log("refused #1000")
    assert lines[3] == (
        "997 more refusals in the last 60 s not logged one by one; the latest: refused #999"
    )
    assert lines[4] == "refused #1000"
    assert len(lines) == 5


def test_a_quiet_window_logs_everything() -> None:
    now = [0.0]
    lines: list[str] = []
    log = RateLimitedLog(lines.append, burst=2, window_s=10, clock=lambda: now[0])
    for i in range(6):
        now[0] = 11.0 * i
        log(f"r{i}")
    assert lines == [f"r{i}" for i in range(6)]

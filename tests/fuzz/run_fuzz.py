"""``make fuzz``: a long fuzzing run of every target, and a table of what happened.

Usage::

    python tests/fuzz/run_fuzz.py [--inputs 100000] [--jobs 2] [--out fuzz-results] [TARGET ...]

The targets are shared among ``--jobs`` worker processes (one per core by default); each
draws ``--inputs`` inputs per target with Hypothesis (random, not derandomised: every run
explores anew) and judges each under a per-input time bound (:mod:`engine`). The table has,
per target: inputs tried, how many a gRPC server would not have delivered (skipped), how many
sealfl accepted, how many it refused and with how many distinct errors, crashes (anything but
a sealfl error, or a hang) and the slowest input. A crashing input is written to
``OUT/<target>/<n>.bin`` (add it to ``tests/fuzz/regressions/<target>/`` with the fix) and
the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from engine import Stats, inputs, judge
from targets import NAMES, build_targets


def _fuzz(names: list[str], count: int, out: Path) -> list[dict[str, Any]]:
    """Run ``count`` inputs on each target here; return one summary per target."""
    from hypothesis import HealthCheck, Phase, given, settings

    with tempfile.TemporaryDirectory(prefix="sealfl-fuzz-") as scratch:
        targets = build_targets(Path(scratch))
        summaries = []
        for name in names:
            target, stats = targets[name], Stats()
            started = time.monotonic()

            @settings(
                max_examples=count,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(inputs(target))
            def loop(data: bytes) -> None:
                stats.add(data, judge(target, data))  # noqa: B023 - runs before the next name

            loop()
            for i, (kind, data) in enumerate(stats.crashes.items()):
                path = out / name / f"{i}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                (out / name / f"{i}.txt").write_text(kind + "\n")
            summaries.append(
                {
                    "target": name,
                    "what": target.what,
                    "inputs": stats.inputs,
                    "skipped": stats.outcomes.get("skipped", 0),
                    "accepted": stats.outcomes.get("accepted", 0),
                    "refused": stats.outcomes.get("refused", 0),
                    "unique_errors": len(stats.errors),
                    "crashes": sorted(stats.crashes),
                    "slowest_ms": round(stats.slowest_s * 1000, 2),
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            print(f"{name}: {stats.inputs} inputs, {len(stats.crashes)} crashes", flush=True)
    return summaries


def _table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'target':<22}{'inputs':>8}{'skipped':>9}{'accepted':>9}{'refused':>9}"
        f"{'unique errors':>15}{'crashes':>9}{'slowest input':>15}{'time':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['target']:<22}{r['inputs']:>8}{r['skipped']:>9}{r['accepted']:>9}"
            f"{r['refused']:>9}{r['unique_errors']:>15}{len(r['crashes']):>9}"
            f"{r['slowest_ms']:>12.1f} ms{r['seconds']:>7.0f}s"
        )
    for r in rows:
        for crash in r["crashes"]:
            lines.append(f"CRASH {r['target']}: {crash}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(NAMES)})")
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=Path("fuzz-results"))
    parser.add_argument("--worker-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.targets or list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown targets {unknown}; expected some of {list(NAMES)}")
    if args.worker_json is not None:  # one of the processes started below
        args.worker_json.write_text(json.dumps(_fuzz(names, args.inputs, args.out)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    shares = [names[i :: args.jobs] for i in range(args.jobs) if names[i :: args.jobs]]
    workers = []
    for i, share in enumerate(shares):
        result = args.out / f"worker-{i}.json"
        argv = [sys.executable, __file__, *share, "--inputs", str(args.inputs)]
        argv += ["--out", str(args.out), "--worker-json", str(result)]
        workers.append((subprocess.Popen(argv), result))
    rows: list[dict[str, Any]] = []
    for proc, result in workers:
        if proc.wait() != 0:
            print(f"a fuzzing process failed (exit status {proc.returncode})", file=sys.stderr)
            return 2
        rows += json.loads(result.read_text())
    rows.sort(key=lambda r: NAMES.index(r["target"]))
    table = _table(rows)
    elapsed = time.monotonic() - started
    summary = f"{table}\n\n{len(rows)} targets, {args.jobs} processes, {elapsed:.0f} s in all"
    print(summary)
    (args.out / "summary.txt").write_text(summary + "\n")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    return 1 if any(r["crashes"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

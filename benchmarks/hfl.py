"""hfl on loopback: what the federation costs on top of the workers' own training.

A PS and two workers run as separate processes (``sealfl run --config``, simulated TEE, mutual
RA-TLS), exactly as ``sealfl demo hfl`` starts them, on CIFAR-shaped synthetic images
(3x32x32, 10 classes; each worker its own shard). For ResNet-20 and ResNet-56 it reports, from
the parties' JSON-lines metrics:

- **round overhead**: a round's wall time at the PS (the model published to the next one
  published) minus the slowest worker's local training, median over the steady rounds (round 1
  excluded). Goal: at most 50 ms for ResNet-56.
- **bytes per worker per round**: the model down plus the update up (tensor payload; chunk
  framing adds about 20 bytes per 2 MiB). Goal: at most 2x the fp32 model plus 1%.
- **join**: a worker's time from fetching the PS's certificate to its join reply (evidence
  verification, enrolment with a signed nonce, the mutual-TLS handshake). Goal: 50 ms idle.
- **checkpoint**: sealing and atomically writing the PS's checkpoint after a round, against the
  round's wall time. Goal: under 1%.

The PS evaluates only after the last round, so its evaluation does not compete with the
workers for the two cores while rounds are measured. Results: a table, and JSON lines appended
to ``bench-results/hfl.jsonl``.

Run with ``sealfl bench hfl`` (``--quick``: ResNet-20 only, fewer rounds).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sealfl.data import partition_iid, synthetic_images, write_shards
from sealfl.data.shards import shard_name
from sealfl.fl.hfl.demo import prepare_run_dir, write_role_configs
from sealfl.fl.hfl.settings import Settings

RESULTS = Path("bench-results") / "hfl.jsonl"
CLI = [sys.executable, "-m", "sealfl.cli.main", "run", "--config"]
TIMEOUT_S = 900.0


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def _run(model: str, rounds: int, steps: int, workdir: Path) -> dict[str, Any]:
    """One federation of ``rounds`` rounds of ``steps`` minibatches of 32 per worker."""
    train = synthetic_images(2 * 32 * steps, seed=1)
    test = synthetic_images(100, seed=2)
    paths = prepare_run_dir(workdir)
    shards = write_shards(train, partition_iid(train.labels, 2, seed=0), workdir / "shards")
    write_shards(test, partition_iid(test.labels, 1, seed=0), workdir / "test")
    paths |= {
        "shard-1": shards[0],
        "shard-2": shards[1],
        "test": workdir / "test" / shard_name(0, 1),
    }
    settings = Settings(model=model, rounds=rounds, local_steps=steps, batch_size=32)
    configs = write_role_configs(
        workdir,
        paths,
        workers=2,
        settings=settings,
        ps_options={"evaluate_every": rounds, "round_deadline": 600.0},
    )
    out = workdir / "ps"
    logs = []
    env = {**os.environ, "SEALFL_LISTEN": "127.0.0.1:0"}
    log = (workdir / "ps.log").open("w")
    logs.append(log)
    ps = subprocess.Popen([*CLI, str(configs["ps"])], env=env, stdout=log, stderr=subprocess.STDOUT)
    procs = [ps]
    try:
        deadline = time.monotonic() + 120
        while not (out / "ps.address").is_file():
            if ps.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the PS did not start: {(workdir / 'ps.log').read_text()}")
            time.sleep(0.05)
        address = (out / "ps.address").read_text().strip()
        for k in (1, 2):
            wlog = (workdir / f"worker-{k}.log").open("w")
            logs.append(wlog)
            procs.append(
                subprocess.Popen(
                    [*CLI, str(configs[f"worker {k}"])],
                    env={**os.environ, "SEALFL_PEERS": f"ps={address}"},
                    stdout=wlog,
                    stderr=subprocess.STDOUT,
                )
            )
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
        if any(codes):
            raise RuntimeError(f"a party failed ({codes}); see the logs in {workdir}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    records = _records(out / "ps_metrics.jsonl")
    rounds_ = [r for r in records if r["event"] == "round"]
    steady = rounds_[1:] or rounds_
    checkpoints = [r["seconds"] for r in records if r["event"] == "checkpoint"]
    joins = [
        r["join_s"]
        for k in (1, 2)
        for r in _records(workdir / f"worker-{k}_metrics.jsonl")
        if r["event"] == "joined"
    ]
    model_bytes = rounds_[0]["bytes_in"] // len(rounds_[0]["contributors"])
    wall = statistics.median(r["wall_s"] for r in steady)
    return {
        "model": model,
        "rounds": rounds,
        "local_steps": steps,
        "model_bytes": model_bytes,
        "round_wall_s": wall,
        "slowest_train_s": statistics.median(r["slowest_train_s"] for r in steady),
        "overhead_ms": 1000 * statistics.median(r["overhead_s"] for r in steady),
        "overhead_ms_max": 1000 * max(r["overhead_s"] for r in steady),
        "bytes_per_worker_round": 2 * model_bytes,
        "join_ms": 1000 * statistics.median(joins),
        "checkpoint_ms": 1000 * statistics.median(checkpoints),
        "checkpoint_share": statistics.median(checkpoints) / wall,
    }


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark, print the table, append the JSON lines; return the results."""
    console = Console()
    plan = [("resnet20", 4, 4)] if quick else [("resnet20", 8, 8), ("resnet56", 6, 4)]
    results = []
    for model, rounds, steps in plan:
        console.print(f"[bold]{model}[/bold]: 2 workers, {rounds} rounds of {steps} x 32 images")
        with tempfile.TemporaryDirectory(prefix=f"sealfl-bench-hfl-{model}-") as tmp:
            results.append(_run(model, rounds, steps, Path(tmp)))
    table = Table(title="hfl on loopback: 2 workers, mutual RA-TLS (simulated TEE)")
    for column in (
        "model",
        "fp32 model",
        "round",
        "slowest training",
        "overhead (median / max)",
        "bytes / worker / round",
        "join",
        "checkpoint",
    ):
        table.add_column(column, justify="right")
    for r in results:
        ratio = r["bytes_per_worker_round"] / r["model_bytes"]
        table.add_row(
            r["model"],
            f"{r['model_bytes'] / 1e6:.2f} MB",
            f"{r['round_wall_s']:.2f} s",
            f"{r['slowest_train_s']:.2f} s",
            f"{r['overhead_ms']:.0f} / {r['overhead_ms_max']:.0f} ms",
            f"{r['bytes_per_worker_round'] / 1e6:.2f} MB ({ratio:.2f}x)",
            f"{r['join_ms']:.0f} ms",
            f"{r['checkpoint_ms']:.1f} ms ({100 * r['checkpoint_share']:.2f}%)",
        )
    console.print(table)
    console.print(
        "goals: overhead <= 50 ms (ResNet-56), bytes <= 2x model + 1%, join <= 50 ms idle, "
        "checkpoint < 1% of a round"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        for r in results:
            fh.write(json.dumps({"time": time.time(), **r}) + "\n")
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

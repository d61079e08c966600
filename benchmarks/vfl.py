"""vfl on loopback: a split step over RA-TLS against the same step computed centrally.

The reference's wide-and-deep model (512 slots of 101x16 per side, cut width 64; the
``default`` preset: torch's initialisation, Adam 1e-3) on generated learnable rows. Per batch
size (256 and 32) and round:

- **split**: a leader and a follower as separate processes (``sealfl run --config``, simulated
  TEE, mutual RA-TLS, one torch thread each), exactly as ``sealfl demo vfl`` starts them; the
  step time is the leader's, from sending START(s) to sending START(s + 1)'s step record
  (waiting for the activation, its forward and loss, sending the gradient *before* its own
  tower's backward, its update, and the follower's commit). PSI and start-up are not counted.
- **central**: the same two networks trained as one (:class:`sealfl.fl.vfl.central.CentralTrainer`)
  in this process with two torch threads, on the same rows, step by step, with the allocator
  set as the parties set theirs (:func:`sealfl.models.nn.allocator.keep_freed_memory`).

The ratio is split over central, the median of the per-round ratios of the step medians
(first 5 steps of each run dropped as warm-up). Goals (issue 12): at most 1.25x at B=256 and
1.5x at B=32. Bytes per step: the tensor payload (activation and gradient, 2·B·64·4) and the
protobuf messages both ways as sent (START, ACTIVATION, GRADIENT, COMMIT). A third case runs
B=256 with the cut tensors as float16 on the wire (``--wire-dtype float16``: 2·B·64·2 bytes).
Per round the benchmark also times each half's own compute on the same rows in one process
with one torch thread (the leader's forward, loss, backward and update; the follower's forward,
backward and update): a split step cannot be shorter than the leader's part, so
``floor`` = leader compute / central step is the best ratio any networked loop could show, and
split step minus leader compute is what the loop, the wire and the two processes' contention
for the cores add. Results: a table, and JSON lines appended to ``bench-results/vfl.jsonl``.

Run with ``sealfl bench vfl`` (``--quick``: one round, fewer steps).
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

RESULTS = Path("bench-results") / "vfl.jsonl"
CLI = [sys.executable, "-m", "sealfl.cli.main", "run", "--config"]
TIMEOUT_S = 900.0
WARMUP = 5


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def _measurements() -> dict[str, bytes]:
    """Measure both roles in a new process, as the parties about to start will."""
    code = (
        "from sealfl.fl.vfl.launch import role_measurement as m; "
        "print(m('leader').hex(), m('follower').hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    leader, follower = out.stdout.split()
    return {"leader": bytes.fromhex(leader), "follower": bytes.fromhex(follower)}


def _split(batch: int, steps: int, workdir: Path, wire: str) -> dict[str, Any]:
    """Run the two parties once; return the leader's step times and the bytes per step."""
    from sealfl.fl.vfl.demo import prepare_run_dir, write_data, write_role_configs

    per_epoch = max(steps // 2, 1)
    settings = {"preset": "default", "batch_size": batch, "epochs": 2, "wire_dtype": wire}
    paths = prepare_run_dir(workdir, measurements=_measurements())
    paths |= write_data(workdir, "default", rows=batch * per_epoch, strangers=0)
    configs = write_role_configs(
        workdir,
        paths,
        settings=settings,
        leader_options={"checkpoint_every": 0, "log_every": 10_000},
        follower_options={"wait_for_leader": 60.0},
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = {role: (workdir / f"{role}.log").open("w") for role in ("leader", "follower")}
    address_file = workdir / "leader" / "leader.address"
    leader = subprocess.Popen(
        [*CLI, str(configs["leader"])],
        env={**env, "SEALFL_LISTEN": "127.0.0.1:0"},
        stdout=logs["leader"],
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not address_file.is_file():
        if leader.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the leader did not start: {(workdir / 'leader.log').read_text()}")
        time.sleep(0.05)
    follower = subprocess.Popen(
        [*CLI, str(configs["follower"])],
        env={**env, "SEALFL_PEERS": f"leader={address_file.read_text().strip()}"},
        stdout=logs["follower"],
        stderr=subprocess.STDOUT,
    )
    try:
        for proc in (follower, leader):
            if proc.wait(timeout=TIMEOUT_S) != 0:
                raise RuntimeError(
                    f"a party failed: {(workdir / 'leader.log').read_text()[-2000:]}\n"
                    f"{(workdir / 'follower.log').read_text()[-2000:]}"
                )
    finally:
        for proc in (follower, leader):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()
    lead = [
        r for r in _records(workdir / "leader" / "leader_metrics.jsonl") if r["event"] == "step"
    ]
    follow = [
        r for r in _records(workdir / "follower" / "follower_metrics.jsonl") if r["event"] == "step"
    ]
    n = len(lead)
    sent = (lead[-1]["leader_sent_bytes"] - lead[WARMUP]["leader_sent_bytes"]) + (
        follow[-1]["follower_sent_bytes"] - follow[WARMUP]["follower_sent_bytes"]
    )
    return {
        "step_s": [r["step_s"] for r in lead[WARMUP:]],
        "wire_bytes_per_step": sent / (n - 1 - WARMUP),
        "data": (paths["leader-train"], paths["follower-train"]),
        "steps": n,
    }


def _central(batch: int, steps: int, data: tuple[Path, Path]) -> list[float]:
    """Time the same steps centrally in this process with two torch threads."""
    import torch

    from sealfl.data.vertical import read_party_csv
    from sealfl.fl.vfl.central import CentralTrainer
    from sealfl.fl.vfl.roles import build_settings
    from sealfl.fl.vfl.schedule import BatchPlan

    torch.set_num_threads(2)
    settings = build_settings("default", batch_size=batch, epochs=2)
    leader = read_party_csv(data[0], label_column="y")
    follower = read_party_csv(data[1])
    common = sorted(leader.ids)
    leader, follower = leader.select(common), follower.select(common)
    plan = BatchPlan.for_run(settings.train, leader.n_rows)
    trainer = CentralTrainer(settings)
    times = []
    for step in range(min(steps, plan.steps)):
        rows = plan.rows(step)
        started = time.perf_counter()
        trainer.step(leader.X[rows], follower.X[rows], leader.labels()[rows])
        times.append(time.perf_counter() - started)
    return times[WARMUP:]


def _halves(batch: int, steps: int, data: tuple[Path, Path]) -> dict[str, list[float]]:
    """Time each half's own compute for the same steps in this process, one torch thread.

    The split step cannot be shorter than the leader's part (its forward and loss, then its
    backward and update, while the follower's part overlaps): this is the floor the networked
    loop is measured against, and the reason a one-thread leader cannot reach a two-thread
    central step when the leader's half does most of the work.
    """
    import torch

    from sealfl.data.vertical import read_party_csv
    from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
    from sealfl.fl.vfl.roles import build_settings
    from sealfl.fl.vfl.schedule import BatchPlan

    torch.set_num_threads(1)
    settings = build_settings("default", batch_size=batch, epochs=2)
    leader = read_party_csv(data[0], label_column="y")
    follower = read_party_csv(data[1])
    common = sorted(leader.ids)
    leader, follower = leader.select(common), follower.select(common)
    plan = BatchPlan.for_run(settings.train, leader.n_rows)
    lead, follow = LeaderHalf(settings), FollowerHalf(settings)
    times: dict[str, list[float]] = {"leader": [], "follower": []}
    labels = leader.labels()
    for step in range(min(steps, plan.steps)):
        rows = plan.rows(step)
        t0 = time.perf_counter()
        act = follow.forward(step, follower.X[rows])
        t1 = time.perf_counter()
        out = lead.forward_loss(step, leader.X[rows], act, labels[rows])
        lead.update(step)
        t2 = time.perf_counter()
        follow.backward(step, out.grad)
        t3 = time.perf_counter()
        times["leader"].append(t2 - t1)
        times["follower"].append((t1 - t0) + (t3 - t2))
    return {role: values[WARMUP:] for role, values in times.items()}


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark, print the table, append the results; return them."""
    from sealfl.models.nn.allocator import keep_freed_memory

    keep_freed_memory()  # as each party does: the central step gets the same allocator
    console = Console(width=160)
    rounds = 1 if quick else 3
    cases = [
        (256, 20 if quick else 40, "float32"),
        (32, 40 if quick else 100, "float32"),
        (256, 20 if quick else 40, "float16"),
    ]
    results = []
    for batch, steps, wire in cases:
        ratios, split_medians, central_medians, wires = [], [], [], []
        leader_medians, follower_medians, floors = [], [], []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory(prefix="sealfl-bench-vfl-") as tmp:
                split = _split(batch, steps, Path(tmp), wire)
                central = _central(batch, split["steps"], split["data"])
                halves = _halves(batch, split["steps"], split["data"])
            s, c = statistics.median(split["step_s"]), statistics.median(central)
            split_medians.append(s)
            central_medians.append(c)
            ratios.append(s / c)
            wires.append(split["wire_bytes_per_step"])
            leader_medians.append(statistics.median(halves["leader"]))
            follower_medians.append(statistics.median(halves["follower"]))
            floors.append(leader_medians[-1] / c)
        result = {
            "batch": batch,
            "wire_dtype": wire,
            "rounds": rounds,
            "split_ms": 1000 * statistics.median(split_medians),
            "central_2_threads_ms": 1000 * statistics.median(central_medians),
            "ratio": statistics.median(ratios),
            "leader_compute_ms": 1000 * statistics.median(leader_medians),
            "follower_compute_ms": 1000 * statistics.median(follower_medians),
            "floor_ratio": statistics.median(floors),
            "goal": 1.25 if batch >= 256 else 1.5,
            "payload_bytes_per_step": 2 * batch * 64 * (2 if wire == "float16" else 4),
            "wire_bytes_per_step": statistics.median(wires),
            "time": time.time(),
        }
        results.append(result)
    table = Table(title="vfl: a split step over mutual RA-TLS (2 processes x 1 thread) vs central")
    for column in (
        "batch",
        "wire",
        "split step",
        "central step (2 threads)",
        "ratio (goal)",
        "leader / follower compute (1 thread)",
        "floor",
        "payload / step",
        "on the wire / step",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r["batch"]),
            str(r["wire_dtype"]),
            f"{r['split_ms']:.1f} ms",
            f"{r['central_2_threads_ms']:.1f} ms",
            f"{r['ratio']:.2f}x (<= {r['goal']}x)",
            f"{r['leader_compute_ms']:.1f} / {r['follower_compute_ms']:.1f} ms",
            f"{r['floor_ratio']:.2f}x",
            f"{r['payload_bytes_per_step']:,} B",
            f"{r['wire_bytes_per_step']:,.0f} B",
        )
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

"""``sealfl bench sim``: many simulated clients, sealfl's local backend against Flower's engine.

For each client count N (10, 100, 1,000 by default) sealfl simulates hfl on digits with the
small CNN, K = min(N, ``--per-round``) clients sampled per round, 5 local steps of 32 each
(plain SGD, see :func:`bench_settings`), 20 rounds, as
``sealfl sim hfl`` in its own process (the local backend: sealfl's process pool, one worker per
core). With ``--flower-python PATH`` the same invocation then runs Flower 1.42's simulation
engine (``run_simulation`` on Ray, :mod:`flower_sim_peer`) with the same network, initial
weights, shards (the same split, written as files), local SGD and the same sampled clients in
every round, and prints the ratios. With ``--ray`` (and Ray importable by this interpreter)
sealfl's ray backend runs the same simulations, and a micro-benchmark gives Ray's start-up and
per-call overhead against the local pool's.

Quantities, the same for every system:

- **seconds per round**: median over rounds 2..R of the time between two consecutive rounds'
  ends (hand-out, the K clients' training, aggregation); round 1 (worker or actor start-up,
  imports) is reported apart, with the whole run's wall time;
- **peak memory**: the peak over time of the summed proportional set size (PSS, which splits
  shared pages between the processes sharing them) of the run's process tree (the simulation
  process and every process it started: pool workers, or Ray's GCS, raylet and workers),
  sampled every 0.2 s;
- **final accuracy**: the final model on the digits test set (360 images), evaluated with
  sealfl's evaluation for both systems. Only the data order inside a client's local steps
  differs between the two (each seeds its own), so the accuracies agree closely but not
  exactly.

Results are appended to ``bench-results/sim.jsonl`` and drawn in ``bench-results/sim.png``.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sealfl.cli.benchmarks import load_benchmark
from sealfl.data import load_digits_split, partition_iid, write_shards
from sealfl.data.shards import shard_name
from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.hfl.launch import PS_METRICS_FILE
from sealfl.fl.hfl.settings import PRESETS, Settings
from sealfl.sim import plan_round
from sealfl.sim.plan import clients_with_data, split_clients

RESULTS = Path("bench-results") / "sim.jsonl"
PLOT = Path("bench-results") / "sim.png"
PEER_SCRIPT = Path(__file__).resolve().with_name("flower_sim_peer.py")
LOCAL_STEPS = 5
SAMPLE_S = 0.2
RUN_TIMEOUT_S = 1800.0
CALLS = 1000


def bench_settings(rounds: int) -> Settings:
    """The workload: the demo preset with the small CNN, 5 local steps, plain local SGD.

    Local momentum is off (McMahan et al.'s FedAvg): with momentum 0.9, 1,000 clients of one or
    two digits each train erratically (test accuracy swinging by tens of points between
    rounds), so two runs whose models differ by 1e-7 after three rounds end far apart, and a
    final accuracy would compare nothing but that chaos.
    """
    return PRESETS["demo"].replace(
        model="small-cnn", rounds=rounds, local_steps=LOCAL_STEPS, momentum=0.0
    )


# ---- measuring a process tree -------------------------------------------------------------


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class TreeMemory:
    """Samples the summed PSS of a process and its descendants; keeps the peak."""

    def __init__(self, pid: int, descendants: Any) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._descendants = descendants
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            pids = [self.pid, *self._descendants(self.pid)]
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in pids))

    def stop(self) -> float:
        """Stop sampling; return the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


def run_measured(
    flower: Any, name: str, argv: list[str], cwd: Path, env: dict[str, str]
) -> tuple[float, float, str]:
    """Run ``argv`` in its own session; return (wall seconds, peak PSS MiB, output tail)."""
    procs = flower.FlowerProcesses(cwd / "logs", env)
    started = time.monotonic()
    procs.start(name, argv, cwd)
    proc = procs.procs[name]
    memory = TreeMemory(proc.pid, flower._descendants)
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        peak = memory.stop()
        wall = time.monotonic() - started
        procs.stop_all()
    tail = procs.tail(name, 20)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
    return wall, peak, tail


def _steady(ends: list[float]) -> float:
    """Median time between consecutive round ends (so rounds 2..R)."""
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    return statistics.median(gaps) if gaps else float("nan")


# ---- the systems ---------------------------------------------------------------------------


def sealfl_run(
    flower: Any, clients: int, per_round: int, rounds: int, backend: str, workdir: Path
) -> dict[str, Any]:
    """``sealfl sim hfl`` as its own process; its figures from its metrics."""
    out = workdir / "out"
    argv = [sys.executable, "-m", "sealfl.cli.main", "sim", "hfl"]
    argv += ["--clients", str(clients), "--per-round", str(per_round), "--rounds", str(rounds)]
    settings = bench_settings(rounds)
    argv += ["--model", settings.model, "--local-steps", str(settings.local_steps)]
    argv += ["--momentum", str(settings.momentum)]
    argv += ["--evaluate-every", str(rounds), "--backend", backend, "--out", str(out)]
    wall, peak, _ = run_measured(flower, f"sealfl-{backend}", argv, workdir, dict(os.environ))
    records = list(read_metrics(out / PS_METRICS_FILE))
    first = next(r for r in records if r["event"] == "simulation")
    rounds_ = [r for r in records if r["event"] == "round"]
    done = next(r for r in records if r["event"] == "done")
    per_round_s = _steady([r["time"] for r in rounds_])
    return {
        "system": f"sealfl {backend}",
        "clients": clients,
        "per_round": per_round,
        "round_s": per_round_s,
        "first_round_s": rounds_[0]["wall_s"],
        "total_s": wall,
        "backend_start_s": first.get("backend_start_s"),
        "peak_mib": peak,
        "accuracy": done["accuracy"],
    }


def flower_inputs(
    flower: Any, settings: Settings, clients: int, per_round: int, workdir: Path
) -> tuple[Path, Path, Path]:
    """Write the shards, the peer's configuration and the schedule; return them and the test set."""
    train, test = load_digits_split(channels=1)
    split = split_clients(train.labels, clients, partition="iid", alpha=1.0, seed=0)
    shards = write_shards(train, split, workdir / "shards")
    test_dir = workdir / "test"
    write_shards(test, partition_iid(test.labels, 1, seed=0), test_dir)
    peer_config = flower.write_peer_inputs(settings, shards, workdir / "peer")
    eligible = clients_with_data(ix.size for ix in split.indices)
    schedule = [
        list(
            plan_round(
                r, eligible=eligible, per_round=per_round, dropout=0.0, seed=settings.seed
            ).sampled
        )
        for r in range(1, settings.rounds + 1)
    ]
    schedule_file = workdir / "schedule.json"
    schedule_file.write_text(json.dumps({"rounds": schedule}))
    return peer_config, schedule_file, test_dir / shard_name(0, 1)


def flower_run(
    flower: Any, python: Path, settings: Settings, clients: int, per_round: int, workdir: Path
) -> dict[str, Any]:
    """Flower's simulation engine on the same clients, shards and schedule."""
    peer_config, schedule, test_shard = flower_inputs(flower, settings, clients, per_round, workdir)
    out = workdir / "flower-out"
    home = workdir / "home"
    (home / ".flwr").mkdir(parents=True, exist_ok=True)
    env = flower._peer_env(python, home)
    env["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"
    argv = [str(python), str(PEER_SCRIPT), str(peer_config), str(schedule), str(out)]
    wall, peak, tail = run_measured(flower, "flower-simulation", argv, workdir, env)
    log = flower.read_round_log(out / "flower_rounds.jsonl")
    if not any(r["event"] == "done" for r in log):
        raise RuntimeError(f"Flower's simulation did not finish:\n{tail}")
    ends = [r["time"] for r in log if r["event"] in ("start", "round")]
    launched = next(r["time"] for r in log if r["event"] == "launched")
    per_round_s = _steady(ends[1:])
    return {
        "system": "Flower simulation (Ray)",
        "clients": clients,
        "per_round": per_round,
        "round_s": per_round_s,
        "first_round_s": ends[1] - ends[0],
        "total_s": wall,
        "backend_start_s": ends[0] - launched,
        "peak_mib": peak,
        "accuracy": flower.evaluate_flat(settings, out / "flower_final.npy", test_shard),
    }


def ray_overhead() -> dict[str, float]:
    """Ray's start, actor start and per-call cost against the local pool's (no-op calls)."""
    from sealfl.sim import LocalBackend
    from sealfl.sim.ray_backend import RayBackend

    jobs: list[tuple[Any, ...]] = [()] * CALLS
    local = LocalBackend(2)
    local.map(os.getpid, jobs[:4])  # start the processes
    started = time.monotonic()
    local.map(os.getpid, jobs)
    local_s = time.monotonic() - started
    local.close()
    started = time.monotonic()
    ray = RayBackend(workers=2)
    ray.map(os.getpid, jobs[:4])
    started_map = time.monotonic()
    ray.map(os.getpid, jobs)
    ray_s = time.monotonic() - started_map
    stop = time.monotonic()
    ray.close()
    return {
        "ray_init_s": ray.start_seconds,
        "ray_actors_s": ray.actors_seconds,
        "ray_call_ms": 1000 * ray_s / CALLS,
        "local_call_ms": 1000 * local_s / CALLS,
        "ray_shutdown_s": time.monotonic() - stop,
        "ray_ready_s": started_map - started,
    }


# ---- the report ----------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.1f}x" if a > 0 else "-"


def main(
    *,
    counts: list[int],
    rounds: int = 20,
    per_round: int = 100,
    flower_python: Path | None = None,
    ray: bool = False,
) -> list[dict[str, Any]]:
    """Run every simulation, print the tables, append the JSON lines, draw the plot."""
    console = Console(width=160)
    flower = load_benchmark("flower_hfl")
    if flower_python is not None:
        flower.check_interpreter(flower_python)
    has_ray = False
    if ray:
        try:
            import ray as _ray  # noqa: F401

            has_ray = True
        except ImportError:
            console.print("[yellow]--ray: Ray is not importable by this interpreter; skipped[/]")
    settings = bench_settings(rounds)
    load = os.getloadavg()
    console.print(
        f"hfl simulation on digits, small CNN, {LOCAL_STEPS} local steps of 32 (SGD lr "
        f"{settings.learning_rate:g}, no momentum), {rounds} rounds, "
        f"K = min(N, {per_round}); load average {load[0]:.2f} at start"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sealfl-bench-sim-") as tmp:
        for n in counts:
            k = min(n, per_round)
            work = Path(tmp) / f"n{n}"
            rows.append(sealfl_run(flower, n, k, rounds, "local", work / "local"))
            console.print(f"N={n}: sealfl local {rows[-1]['round_s']:.3f} s/round")
            if flower_python is not None:
                rows.append(flower_run(flower, flower_python, settings, n, k, work / "flower"))
                console.print(f"N={n}: Flower {rows[-1]['round_s']:.3f} s/round")
            if has_ray:
                rows.append(sealfl_run(flower, n, k, rounds, "ray", work / "ray"))
                console.print(f"N={n}: sealfl ray {rows[-1]['round_s']:.3f} s/round")
    overhead = ray_overhead() if has_ray else None
    _print(console, rows, overhead)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        stamp = {"time": time.time(), "load": load[0], "rounds": rounds}
        for r in rows:
            fh.write(json.dumps({**stamp, **r}) + "\n")
        if overhead:
            fh.write(json.dumps({**stamp, "ray_overhead": overhead}) + "\n")
    _plot(rows)
    console.print(
        f"results appended to {RESULTS}; plot {PLOT}; load average at end {os.getloadavg()[0]:.2f}"
    )
    return rows


def _print(console: Console, rows: list[dict[str, Any]], overhead: dict[str, float] | None) -> None:
    table = Table(title="seconds per round (median of rounds 2..R), peak PSS of the process tree")
    for column in (
        "N",
        "K",
        "system",
        "s/round",
        "round 1 s",
        "whole run s",
        "peak MiB",
        "accuracy",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["clients"]),
            str(r["per_round"]),
            r["system"],
            f"{r['round_s']:.3f}",
            f"{r['first_round_s']:.2f}",
            f"{r['total_s']:.1f}",
            f"{r['peak_mib']:.0f}",
            f"{r['accuracy']:.4f}",
        )
    console.print(table)
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_n.setdefault(r["clients"], {})[r["system"]] = r
    ratios = Table(title="sealfl local against the peers (>1x: sealfl faster / lighter)")
    for column in ("N", "peer", "s/round ratio", "memory ratio", "accuracy difference (pt)"):
        ratios.add_column(column, justify="right")
    for n, systems in by_n.items():
        ours = systems["sealfl local"]
        for name, peer in systems.items():
            if name == "sealfl local":
                continue
            ratios.add_row(
                str(n),
                name,
                _ratio(ours["round_s"], peer["round_s"]),
                _ratio(ours["peak_mib"], peer["peak_mib"]),
                f"{100 * (ours['accuracy'] - peer['accuracy']):+.2f}",
            )
    console.print(ratios)
    if overhead:
        console.print(
            f"Ray on this machine: ray.init {overhead['ray_init_s']:.2f} s, 2 actors "
            f"{overhead['ray_actors_s']:.2f} s, shutdown {overhead['ray_shutdown_s']:.2f} s; a "
            f"no-op call {overhead['ray_call_ms']:.2f} ms on Ray against "
            f"{overhead['local_call_ms']:.2f} ms on the local pool ({CALLS} calls)"
        )


def _plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        n = [r["clients"] for r in mine]
        left.plot(n, [r["round_s"] for r in mine], marker="o", label=system)
        right.plot(n, [r["peak_mib"] for r in mine], marker="o", label=system)
    for ax, label in ((left, "seconds per round"), (right, "peak memory (PSS, MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("simulated clients N")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=100)
    plt.close(fig)

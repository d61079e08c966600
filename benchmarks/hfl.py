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
  verification, enrolment with a signed nonce, the mutual-TLS handshake). Goal: 50 ms idle, so
  the second worker starts only once the first has joined: each join runs against an idle PS,
  not against the other worker's start-up (importing torch, building the model).
- **checkpoint**: the PS seals and atomically writes its checkpoint after each round once the
  next round's model has gone out, while the workers train. Reported: its cost on the round's
  critical path (``critical_s``: how long it held up the next round's close; the goal, under 1%
  of a round), and beside it its wall time and CPU time in the background.

The PS evaluates only after the last round, so its evaluation does not compete with the
workers for the two cores while rounds are measured. Results: a table, and JSON lines appended
to ``bench-results/hfl.jsonl``.

With ``--secure-aggregation`` each federation runs twice in the same invocation, plain TEE
aggregation and then secure aggregation (:mod:`sealfl.fl.hfl.secure`) on the same shards, and
a third table compares them: round time and overhead, bytes per worker per round (model down,
masked upload, and the protocol's other messages), and each worker's masking time against a
ResNet-20 local epoch (estimated from the measured training time per minibatch, times the
782 minibatches of 32 of a 25,000-image CIFAR-10 shard). Goals: at most 1.1x the bytes of
plain aggregation, masking under 10% of a local epoch.

Run with ``sealfl bench hfl`` (``--quick``: ResNet-20 only, fewer rounds). With
``--flower-python PATH`` (an interpreter that has ``flwr==1.42.*`` and torch) each federation is
then run again, on the same model, initial weights, shard files and rounds, by Flower 1.42's
deployment engine (:mod:`flower_hfl`), and a second table gives both with the ratios.
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


def _wait_joined(metrics: Path, procs: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """Wait until the worker writing ``metrics`` has joined (or a party exited)."""
    while not any(r["event"] == "joined" for r in _records(metrics)):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            return  # the parties' exit codes tell what went wrong
        time.sleep(0.02)


def _fresh_measurements() -> dict[str, bytes]:
    """Measure hfl's roles in a new process, as the parties about to start will.

    This process measured itself once when it started; a checkout edited since (by anyone)
    would otherwise give policies that refuse the parties.
    """
    code = (
        "from sealfl.fl.hfl.launch import role_measurement as m; "
        "print(m('ps').hex(), m('worker').hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    ps, worker = out.stdout.split()
    return {"ps": bytes.fromhex(ps), "worker": bytes.fromhex(worker)}


def bench_settings(model: str, rounds: int, steps: int) -> Settings:
    """The settings of one benchmark federation (the Flower peer trains the same)."""
    return Settings(model=model, rounds=rounds, local_steps=steps, batch_size=32)


EPOCH_STEPS = 782
"""Minibatches of 32 in one local epoch of a worker holding half of CIFAR-10 (25,000 images)."""


def _run(
    model: str, rounds: int, steps: int, workdir: Path, *, secure: bool = False
) -> dict[str, Any]:
    """One federation of ``rounds`` rounds of ``steps`` minibatches of 32 per worker."""
    train = synthetic_images(2 * 32 * steps, seed=1)
    test = synthetic_images(100, seed=2)
    paths = prepare_run_dir(workdir, measurements=_fresh_measurements())
    shards = write_shards(train, partition_iid(train.labels, 2, seed=0), workdir / "shards")
    write_shards(test, partition_iid(test.labels, 1, seed=0), workdir / "test")
    paths |= {
        "shard-1": shards[0],
        "shard-2": shards[1],
        "test": workdir / "test" / shard_name(0, 1),
    }
    settings = bench_settings(model, rounds, steps)
    flag = {"secure_aggregation": True} if secure else {}
    configs = write_role_configs(
        workdir,
        paths,
        workers=2,
        settings=settings,
        ps_options={"evaluate_every": rounds, "round_deadline": 600.0, **flag},
        worker_options=flag,
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
            _wait_joined(workdir / f"worker-{k}_metrics.jsonl", procs, deadline)
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
    checkpoints = [r for r in records if r["event"] == "checkpoint"]
    critical = statistics.median(r.get("critical_s", r["seconds"]) for r in checkpoints)
    joins = [
        r["join_s"]
        for k in (1, 2)
        for r in _records(workdir / f"worker-{k}_metrics.jsonl")
        if r["event"] == "joined"
    ]
    model_bytes = rounds_[0]["bytes_in"] // len(rounds_[0]["contributors"])
    wall = statistics.median(r["wall_s"] for r in steady)
    secure_figures: dict[str, Any] = {}
    if secure:
        worker_rounds = [
            r
            for k in (1, 2)
            for r in _records(workdir / f"worker-{k}_metrics.jsonl")
            if r["event"] == "round" and r["round"] > 1
        ]
        step_s = statistics.median(r["train_s"] / r["steps"] for r in worker_rounds)
        mask_s = statistics.median(r["mask_s"] for r in worker_rounds)
        secure_figures = {
            "secure": True,
            "mask_ms": 1000 * mask_s,
            "secagg_setup_ms": 1000 * statistics.median(r["secagg_setup_s"] for r in worker_rounds),
            "secagg_after_training_ms": 1000
            * statistics.median(r["secagg_s"] for r in worker_rounds),
            "protocol_bytes": statistics.median(r["secagg_bytes"] for r in worker_rounds),
            "epoch_s": step_s * EPOCH_STEPS,
            "mask_share_of_epoch": mask_s / (step_s * EPOCH_STEPS),
            "clipped": sum(r["clipped"] for r in worker_rounds),
        }
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
        "checkpoint_ms": 1000 * critical,
        "checkpoint_share": critical / wall,
        "checkpoint_background_ms": 1000 * statistics.median(r["seconds"] for r in checkpoints),
        "checkpoint_cpu_ms": 1000 * statistics.median(r.get("cpu_s", 0.0) for r in checkpoints),
        **secure_figures,
    }


def main(
    quick: bool = False, flower_python: Path | None = None, secure_aggregation: bool = False
) -> list[dict[str, Any]]:
    """Run the benchmark, print the table, append the JSON lines; return the results.

    With ``secure_aggregation`` every federation also runs with secure aggregation, and a table
    compares the two (secure / plain).

    With ``flower_python`` (an interpreter with flwr 1.42 and torch), Flower's deployment
    engine then runs each federation's model, shards and rounds (:mod:`flower_hfl`), and a
    second table gives both side by side with the ratios Flower / sealfl.
    """
    console = Console(width=120)
    flower = None
    if flower_python is not None:
        from sealfl.cli.benchmarks import load_benchmark

        flower = load_benchmark("flower_hfl")
        versions = flower.check_interpreter(flower_python)  # before minutes of sealfl runs
        console.print(
            f"peer: Flower {versions['flwr']} (torch {versions['torch']}, Python "
            f"{versions['python']}) from {flower_python}",
            highlight=False,
        )
    plan = [("resnet20", 4, 4)] if quick else [("resnet20", 8, 8), ("resnet56", 6, 4)]
    results = []
    for model, rounds, steps in plan:
        console.print(f"[bold]{model}[/bold]: 2 workers, {rounds} rounds of {steps} x 32 images")
        with tempfile.TemporaryDirectory(prefix=f"sealfl-bench-hfl-{model}-") as tmp:
            started = time.monotonic()
            result = _run(model, rounds, steps, Path(tmp))
            result["total_s"] = time.monotonic() - started
            if flower is not None and flower_python is not None:
                result |= _with_flower(flower, flower_python, model, rounds, steps, Path(tmp))
            results.append(result)
        if secure_aggregation:
            console.print(f"[bold]{model}[/bold]: the same with secure aggregation")
            with tempfile.TemporaryDirectory(prefix=f"sealfl-bench-hfl-sa-{model}-") as tmp:
                started = time.monotonic()
                secure = _run(model, rounds, steps, Path(tmp), secure=True)
                secure["total_s"] = time.monotonic() - started
                if flower is not None and flower_python is not None:
                    secure |= _with_flower_secagg(
                        flower, flower_python, model, rounds, steps, Path(tmp)
                    )
                results.append(secure)
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
            r["model"] + (" (secure aggregation)" if r.get("secure") else ""),
            f"{r['model_bytes'] / 1e6:.2f} MB",
            f"{r['round_wall_s']:.2f} s",
            f"{r['slowest_train_s']:.2f} s",
            f"{r['overhead_ms']:.0f} / {r['overhead_ms_max']:.0f} ms",
            f"{r['bytes_per_worker_round'] / 1e6:.2f} MB ({ratio:.2f}x)",
            f"{r['join_ms']:.0f} ms",
            f"{r['checkpoint_ms']:.1f} ms ({100 * r['checkpoint_share']:.2f}%); background "
            f"{r['checkpoint_background_ms']:.0f} ms, CPU {r['checkpoint_cpu_ms']:.0f} ms",
        )
    console.print(table)
    console.print(
        "goals: overhead <= 50 ms (ResNet-56), bytes <= 2x model + 1%, join <= 50 ms idle, "
        "checkpoint < 1% of a round"
    )
    if any("flower" in r for r in results if not r.get("secure")):
        _flower_table(console, [r for r in results if not r.get("secure")])
    if any(r.get("secure") for r in results):
        _secure_table(console, results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        for r in results:
            fh.write(json.dumps({"time": time.time(), **r}) + "\n")
    return results


def _flower_row(
    flower: Any, python: Path, model: str, rounds: int, steps: int, workdir: Path, *, secagg: bool
) -> tuple[dict[str, Any], Any]:
    """Run Flower (plain or SecAgg+) on the shards sealfl just used; its row and settings."""
    what = "SecAgg+" if secagg else "deployment engine"
    Console(width=120).print(f"[bold]{model}[/bold]: the same on Flower's {what} ...")
    settings = bench_settings(model, rounds, steps)
    shards = [workdir / "shards" / shard_name(k, 2) for k in range(2)]
    return flower.run(python, settings, shards, workdir / "flower", secagg=secagg), settings


def _with_flower(
    flower: Any, python: Path, model: str, rounds: int, steps: int, workdir: Path
) -> dict[str, Any]:
    """Run Flower on the shards sealfl just used; return sealfl's accuracy and Flower's row."""
    row, settings = _flower_row(flower, python, model, rounds, steps, workdir, secagg=False)
    test = workdir / "test" / shard_name(0, 1)
    row["accuracy"] = flower.evaluate_flat(settings, Path(row.pop("final_model")), test)
    evaluations = [
        r for r in _records(workdir / "ps" / "ps_metrics.jsonl") if r["event"] == "evaluation"
    ]
    return {"accuracy": evaluations[-1]["accuracy"] if evaluations else None, "flower": row}


def _ratio(peer: float, ours: float, spec: str) -> str:
    return f"{peer / ours:{spec}}x" if ours > 0 else "-"


_COMPARED = (  # row, key in both results, value format, unit, divisor, ratio format
    ("round", "round_wall_s", ".2f", "s", 1.0, ".1f"),
    ("slowest training", "slowest_train_s", ".2f", "s", 1.0, ".1f"),
    ("overhead, median", "overhead_ms", ".0f", "ms", 1.0, ".0f"),
    ("overhead, max", "overhead_ms_max", ".0f", "ms", 1.0, ".0f"),
    ("bytes / worker", "bytes_per_worker_round", ".2f", "MB", 1e6, ".2f"),
    ("whole run", "total_s", ".1f", "s", 1.0, ".1f"),
)
"""The measured rows of the Flower table (sealfl's result and Flower's share their keys)."""


def _side_by_side(
    ours: dict[str, Any],
    peer: dict[str, Any],
    row: str,
    key: str,
    spec: str,
    unit: str,
    divisor: float,
    ratio_spec: str,
) -> tuple[str, str, str, str]:
    """One row: sealfl's figure, Flower's, and the ratio Flower / sealfl."""
    return (
        row,
        f"{ours[key] / divisor:{spec}} {unit}",
        f"{peer[key] / divisor:{spec}} {unit}",
        _ratio(peer[key], ours[key], ratio_spec),
    )


def _flower_table(console: Console, results: list[dict[str, Any]]) -> None:
    """sealfl and Flower side by side, same model, shards and rounds; ratios Flower / sealfl."""
    table = Table(title="the same federations on Flower 1.42's deployment engine")
    for column in ("model", "per round (rounds 2..N)", "sealfl", "Flower 1.42", "Flower / sealfl"):
        table.add_column(column, justify="right")
    for r in (r for r in results if "flower" in r):
        f = r["flower"]
        sealfl_accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        rows = [
            ("transport", "mutual RA-TLS", f["transport"], ""),
            *(_side_by_side(r, f, *compared) for compared in _COMPARED),
            ("test accuracy", sealfl_accuracy, f"{f['accuracy']:.3f}", ""),
        ]
        for k, row in enumerate(rows):
            table.add_row(r["model"] if k == 0 else "", *row, end_section=k == len(rows) - 1)
    console.print(table)
    console.print(
        "Flower: a SuperLink and one SuperNode per worker, processes on loopback, a new "
        "ClientApp process per round, runtime dependency installation off. Bytes: sealfl's "
        "tensor payload; Flower's all TCP bytes of a SuperNode (TLS, HTTP, protobuf, polls). "
        "Whole run: process start to the last round (sealfl: to the parties' exit)."
    )


def _with_flower_secagg(
    flower: Any, python: Path, model: str, rounds: int, steps: int, workdir: Path
) -> dict[str, Any]:
    """Run Flower's SecAgg+ on the same shards; return its row (or why it could not run)."""
    try:
        row, _ = _flower_row(flower, python, model, rounds, steps, workdir, secagg=True)
    except RuntimeError as exc:
        return {"flower_secagg_error": str(exc)}
    row.pop("final_model", None)
    return {"flower_secagg": row}


def _secure_table(console: Console, results: list[dict[str, Any]]) -> None:
    """Secure aggregation against plain TEE aggregation (and Flower's SecAgg+), per model."""
    table = Table(title="secure aggregation against plain TEE aggregation (same invocation)")
    for column in ("model", "per round (rounds 2..N)", "plain", "secure", "secure / plain"):
        table.add_column(column, justify="right")
    plain = {r["model"]: r for r in results if not r.get("secure")}
    for s in (r for r in results if r.get("secure")):
        p = plain[s["model"]]
        secure_bytes = s["bytes_per_worker_round"] + s["protocol_bytes"]
        rows = [
            (
                "round",
                f"{p['round_wall_s']:.3f} s",
                f"{s['round_wall_s']:.3f} s",
                _ratio(s["round_wall_s"], p["round_wall_s"], ".2f"),
            ),
            (
                "overhead, median",
                f"{p['overhead_ms']:.0f} ms",
                f"{s['overhead_ms']:.0f} ms",
                f"+{s['overhead_ms'] - p['overhead_ms']:.0f} ms",
            ),
            (
                "bytes / worker",
                f"{p['bytes_per_worker_round'] / 1e6:.4f} MB",
                f"{secure_bytes / 1e6:.4f} MB",
                _ratio(secure_bytes, p["bytes_per_worker_round"], ".4f"),
            ),
            ("  of which protocol messages", "", f"{s['protocol_bytes'] / 1e3:.1f} kB", ""),
            (
                "masking / worker",
                "",
                f"{s['mask_ms']:.1f} ms",
                f"{100 * s['mask_share_of_epoch']:.3f}% of an epoch ({s['epoch_s']:.0f} s)",
            ),
            ("stages 1-2 (before training)", "", f"{s['secagg_setup_ms']:.0f} ms", ""),
            ("stages 3-5 (after training)", "", f"{s['secagg_after_training_ms']:.0f} ms", ""),
            ("values clipped", "", str(s["clipped"]), ""),
        ]
        peer = s.get("flower_secagg")
        if peer is not None:
            rows.append(
                (
                    "Flower SecAgg+ round",
                    "",
                    f"{peer['round_wall_s']:.2f} s",
                    _ratio(peer["round_wall_s"], s["round_wall_s"], ".1f") + " of ours",
                )
            )
            rows.append(
                (
                    "Flower SecAgg+ bytes / worker",
                    "",
                    f"{peer['bytes_per_worker_round'] / 1e6:.2f} MB",
                    _ratio(peer["bytes_per_worker_round"], secure_bytes, ".2f") + " of ours",
                )
            )
        elif "flower_secagg_error" in s:
            rows.append(("Flower SecAgg+", "", "did not run", s["flower_secagg_error"][:80]))
        for k, row in enumerate(rows):
            table.add_row(s["model"] if k == 0 else "", *row, end_section=k == len(rows) - 1)
    console.print(table)
    console.print(
        "goals: bytes <= 1.1x plain, masking < 10% of a ResNet-20 local epoch per worker. "
        "Secure bytes: model down + masked upload (uint32, 4 bytes a value) + the protocol's "
        "other messages (protobuf sizes, both ways)."
    )


if __name__ == "__main__":
    flag = "--flower-python"
    main(
        quick="--quick" in sys.argv,
        flower_python=Path(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else None,
        secure_aggregation="--secure-aggregation" in sys.argv,
    )

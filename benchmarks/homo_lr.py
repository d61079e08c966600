"""homo-lr benchmark: the 341-iteration run and where its rounds go, one worker iteration
against phe, and how the round grows with workers, features and key size.

1. Wall time of ``sealfl demo homo-lr --preset reference`` (2 workers, 2048-bit key, 341
   iterations, real processes on loopback with the simulated TEE), its iter-340 line, and the
   breakdown of its mean round along the critical path
   (:func:`sealfl.fl.homo_lr.breakdown.round_breakdown`, from the metrics every party writes):
   hand-out, the worker's decode / compute / encode, the submit, the PS's check, the barrier,
   average, encryption; overlapped work (the PS drawing randomness, checkpoints, the other
   workers' wait) is listed apart.
2. Seconds per encrypted training iteration of one worker (guest split, 2048-bit key), for
   - sealfl: ``Enc(w) ↦ A·Enc(w) + b`` (the Gram form, one 31×31 plaintext matrix product);
   - sealfl, textbook form: the same two m×31 products as phe's textbook row below, with
     :mod:`sealfl.he` (``X @ Enc(w)`` and ``Enc(v) @ X``): the like-for-like comparison;
   - phe, same Gram form: the same arithmetic with python-paillier's EncryptedNumber;
   - phe, textbook form: ``z = X·Enc(w)``, ``r = 0.25·z + 0.5 − y``, ``g = rᵀX``,
     ``w' = (1 − ηα)·w − η/m·g``, i.e. two m×31 products, as a phe-based implementation
     (the reference's) computes an iteration.
   The phe textbook form is timed on the whole split (``--quick``: on 16 rows, scaled to the
   split, its cost being linear in the rows; the number of rows timed is printed).
3. Scaling, one federation of separate processes per point: round time against the number of
   workers (2, 4, 8, 16; the breast rows shared out), the number of features (30, 100, 300,
   1000 generated columns, 2 workers) and the key size (2048, 3072), each with the worker's
   step, the PS's check per update, the CPU per round of the workers and of the PS (the
   processes' own accounting, in the metrics), the PS's share of it, and the floor the
   machine's cores allow, all that CPU over the cores.

Run: ``sealfl bench homo-lr`` (about 5 minutes on 2 cores; ``--quick``: 31 iterations for the
run, smaller phe samples, 2 and 4 workers, 30 and 100 features, 4 iterations per point, about
a minute). Results are printed as tables and appended as JSON lines to
``bench-results/homo_lr.jsonl``; the run's accuracy, loss and seconds per round are drawn to
``bench-results/homo_lr.png``, the three curves to ``bench-results/homo_lr_{workers,features,
key_bits}.png``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from phe import paillier
from rich.console import Console
from rich.table import Table

from sealfl import he
from sealfl.data import Dataset, breast
from sealfl.fl.common.metrics import read_metrics
from sealfl.fl.homo_lr.algorithm import REFERENCE, affine_from_gram, gram_statistics, with_bias
from sealfl.fl.homo_lr.breakdown import Breakdown, round_breakdown
from sealfl.fl.homo_lr.demo import DemoOptions, FederationData, run_demo
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.launch import PS_METRICS_FILE

RESULTS = Path("bench-results") / "homo_lr.jsonl"
PLOT = Path("bench-results") / "homo_lr.png"
SCALING_PLOTS = {
    name: Path("bench-results") / f"homo_lr_{name}.png"
    for name in ("workers", "features", "key_bits")
}


def _time(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def federation(
    *,
    iterations: int,
    workers: int = 2,
    key_bits: int = 2048,
    data: FederationData | None = None,
    preset: str = "reference",
) -> dict[str, Any]:
    """Run a federation as separate processes on loopback; return its wall time and metrics."""
    with (
        tempfile.TemporaryDirectory(prefix="sealfl-bench-homo-lr-") as tmp,
        (Path(tmp) / "console.txt").open("w") as sink,
    ):
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        code = run_demo(
            DemoOptions(
                workers=workers,
                preset=preset,
                epochs=iterations,
                key_bits=key_bits,
                run_dir=run_dir,
                data=data,
                round_deadline_s=600.0,
            ),
            console=Console(file=sink, width=120),
        )
        wall = time.perf_counter() - start
        log = (run_dir / "logs" / "worker-1.log").read_text()
        if code != 0:  # say why, from each party's last lines (a run of many is easily lost)
            tails = [
                f"{path.name}: {' | '.join(path.read_text().splitlines()[-2:])}"
                for path in sorted((run_dir / "logs").glob("*.log"))
            ]
            raise RuntimeError(f"the federation exited with {code}: " + "; ".join(tails))
        ps_records = list(read_metrics(run_dir / "ps" / PS_METRICS_FILE))
        worker_records = {
            k: list(read_metrics(run_dir / f"worker-{k}_metrics.jsonl"))
            for k in range(1, workers + 1)
        }
    last = [line for line in log.splitlines() if line.startswith("iter:")]
    return {
        "exit_code": code,
        "iterations": iterations,
        "workers": workers,
        "key_bits": key_bits,
        "wall_s": round(wall, 2),
        "last_line": last[-1] if last else "",
        "ps_records": ps_records,
        "worker_records": worker_records,
    }


def full_run(iterations: int) -> dict[str, object]:
    run = federation(iterations=iterations)
    _plot(run["ps_records"], iterations)
    split = round_breakdown(run["ps_records"], run["worker_records"])
    return {
        **{k: v for k, v in run.items() if k not in ("ps_records", "worker_records")},
        "breakdown": split,
    }


def _plot(records: list[dict[str, object]], iterations: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in records if r["event"] == "evaluation"]
    rounds = [r for r in records if r["event"] == "round"]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    iters = [r["iteration"] for r in evals]
    top.plot(iters, [r["accuracy"] for r in evals])
    top.set_ylabel("accuracy")
    top.set_title(f"homo-lr, 2 workers, 2048-bit Paillier, {iterations} iterations (test split)")
    middle.semilogy(iters, [r["loss"] for r in evals])
    middle.set_ylabel("log-loss")
    bottom.plot([r["iteration"] for r in rounds], [r["seconds"] for r in rounds])
    bottom.set_xlabel("iteration")
    bottom.set_ylabel("s per round (PS)")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT)
    plt.close(fig)


def per_iteration(phe_rows: int, repeat: int) -> dict[str, object]:
    ds = breast.load_split("homo_guest")
    X1 = with_bias(ds.X)
    y = ds.labels().astype(np.float64)
    G, c, m = gram_statistics(X1, y)
    eta, alpha = REFERENCE.step_size(5), REFERENCE.alpha
    A, b = affine_from_gram(G, c, m, eta=eta, alpha=alpha)
    w = np.linspace(-1.0, 1.0, X1.shape[1])

    server = PaillierServerCrypto.generate(2048)
    worker = PaillierWorkerCrypto.from_public_key_bytes(server.public_key_bytes())
    one_core = PaillierWorkerCrypto.from_public_key_bytes(server.public_key_bytes(), cores=1)
    enc_w = server.encrypt(w)
    warm_up = worker.step(enc_w, A, b)  # starts the process pool outside the timing
    ours = _time(lambda: worker.step(enc_w, A, b), repeat)
    ours_one_core = _time(lambda: one_core.step(enc_w, A, b), repeat)
    check = server.average([server.parse_submission(warm_up, len(w))])
    ours_error = float(np.max(np.abs(check - (A @ w + b))))

    pk, sk = paillier.generate_paillier_keypair(n_length=2048)
    phe_w = [pk.encrypt(float(v)) for v in w]

    def phe_gram() -> list[object]:
        out = []
        for i in range(A.shape[0]):
            acc = phe_w[0] * float(A[i, 0])
            for j in range(1, A.shape[1]):
                acc = acc + phe_w[j] * float(A[i, j])
            out.append(acc + float(b[i]))
        return out

    start = time.perf_counter()
    phe_out = phe_gram()  # timed once, seconds long: its result is also the one checked
    phe_gram_s = time.perf_counter() - start
    phe_gram_error = float(np.max(np.abs(np.array([sk.decrypt(v) for v in phe_out]) - (A @ w + b))))

    def sealfl_textbook(vector: he.EncryptedVector, cores: int | None) -> he.EncryptedVector:
        z = he.matvec(X1, vector, cores=cores)
        residual = z.mul(0.25, fraction_bits=2) + 0.5 - y
        # η/m ≈ 3e-4: its encoding needs more fraction bits than mul's default 16.
        gradient = he.vecmat(residual, X1, cores=cores).mul(-eta / m, fraction_bits=40)
        kept = vector.mul(1 - eta * alpha, fraction_bits=40)
        kept, gradient = he.align_scales(kept, gradient)
        return kept + gradient

    textbook_w = he.encrypt_vector(server.public_key, w, fraction_bits=32)
    textbook_warm_up = sealfl_textbook(textbook_w, None)  # outside the timing, checked below
    ours_textbook = _time(lambda: sealfl_textbook(textbook_w, None), repeat)
    ours_textbook_one_core = _time(lambda: sealfl_textbook(textbook_w, 1), repeat)
    textbook_check = he.decrypt_vector(server.private_key, textbook_warm_up)
    textbook_expected = (1 - eta * alpha) * w - eta / m * ((0.25 * (X1 @ w) + 0.5 - y) @ X1)
    ours_textbook_error = float(np.max(np.abs(textbook_check - textbook_expected)))

    rows = min(phe_rows, X1.shape[0])

    def phe_textbook_sample() -> None:
        sample = X1[:rows]
        z = [
            sum((phe_w[j] * float(xi[j]) for j in range(1, len(w))), phe_w[0] * float(xi[0]))
            for xi in sample
        ]
        r = [zi * 0.25 + (0.5 - float(yi)) for zi, yi in zip(z, y[:rows], strict=True)]
        g = [
            sum((r[i] * float(sample[i, j]) for i in range(1, rows)), r[0] * float(sample[0, j]))
            for j in range(len(w))
        ]
        _ = [wj * (1 - eta * alpha) + gj * (-eta / m) for wj, gj in zip(phe_w, g, strict=True)]

    phe_textbook_s = _time(phe_textbook_sample, 1) * (X1.shape[0] / rows)
    return {
        "rows": int(X1.shape[0]),
        "features_with_bias": int(X1.shape[1]),
        "key_bits": 2048,
        "sealfl_s": round(ours, 5),
        "sealfl_one_core_s": round(ours_one_core, 5),
        "speedup_vs_phe_gram_one_core": round(phe_gram_s / ours_one_core, 1),
        "sealfl_max_abs_error": ours_error,
        "phe_gram_s": round(phe_gram_s, 4),
        "phe_gram_max_abs_error": phe_gram_error,
        "phe_textbook_s_extrapolated": round(phe_textbook_s, 3),
        "phe_textbook_rows_timed": rows,
        "speedup_vs_phe_gram": round(phe_gram_s / ours, 1),
        "speedup_vs_phe_textbook": round(phe_textbook_s / ours, 1),
        "sealfl_textbook_s": round(ours_textbook, 5),
        "sealfl_textbook_one_core_s": round(ours_textbook_one_core, 5),
        "sealfl_textbook_max_abs_error": ours_textbook_error,
        "textbook_speedup_like_for_like": round(phe_textbook_s / ours_textbook, 1),
        "textbook_speedup_like_for_like_one_core": round(
            phe_textbook_s / ours_textbook_one_core, 1
        ),
    }


# ---- scaling -------------------------------------------------------------------------------


def breast_among(workers: int) -> FederationData:
    """The breast training rows (guest then host) cut into ``workers`` contiguous shares."""
    guest, host = breast.load_split("homo_guest"), breast.load_split("homo_host")
    ids = np.concatenate([guest.ids, host.ids])
    X = np.concatenate([guest.X, host.X])
    y = np.concatenate([guest.labels(), host.labels()])
    shares = np.array_split(np.arange(len(ids)), workers)
    train = tuple(Dataset(ids[s], X[s], y[s], guest.feature_names) for s in shares)
    return FederationData(train=train, test=breast.load_split("homo_test"))


def generated(features: int, *, rows: int = 200, workers: int = 2) -> FederationData:
    """A learnable logistic task with ``features`` standard-normal columns (seeded)."""
    rng = np.random.default_rng(features)
    beta = rng.standard_normal(features) / np.sqrt(features)
    names = tuple(f"x{j}" for j in range(features))

    def draw(n: int, first_id: int) -> Dataset:
        X = rng.standard_normal((n, features))
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-3.0 * (X @ beta)))).astype(np.int64)
        return Dataset(np.arange(first_id, first_id + n, dtype=np.int64), X, y, names)

    train = tuple(draw(rows, k * rows) for k in range(workers))
    return FederationData(train=train, test=draw(rows, workers * rows))


def scaling_point(run: dict[str, Any], cores: int) -> dict[str, Any]:
    """Per-round figures of one federation run (its first round, the setup, left out)."""
    split = round_breakdown(run["ps_records"], run["worker_records"])
    rounds = [r for r in run["ps_records"] if r["event"] == "round"][1:]
    measured = {r["iteration"] for r in rounds}
    steps = [
        r
        for records in run["worker_records"].values()
        for r in records
        if r["event"] == "iteration" and r["iteration"] in measured
    ]
    ps_cpu = statistics.fmean(r["cpu_s"] for r in rounds)
    workers_cpu = sum(r["cpu_s"] for r in steps) / len(rounds)
    return {
        "workers": run["workers"],
        "key_bits": run["key_bits"],
        "wall_s": run["wall_s"],
        "rounds": len(rounds),
        "round_s": round(split.round_s, 5),
        "compute_s": round(statistics.fmean(r["compute_s"] for r in steps), 5),
        "check_s": round(statistics.fmean(v for r in rounds for v in r["check_s"].values()), 5),
        "ps_cpu_s": round(ps_cpu, 5),
        "workers_cpu_s": round(workers_cpu, 5),
        "ps_cpu_share": round(ps_cpu / (ps_cpu + workers_cpu), 3),
        "floor_s": round((ps_cpu + workers_cpu) / cores, 5),
        "cores": cores,
    }


def sweep(
    name: str, values: list[int], run_at: Callable[[int], dict[str, Any]], cores: int
) -> list[dict[str, Any]]:
    points = []
    for value in values:
        try:
            point = {name: value, **scaling_point(run_at(value), cores)}
        except RuntimeError as exc:  # one failed point (a party refused) leaves the others
            print(f"  {name} {value}: skipped: {exc}")
            continue
        points.append(point)
        print(f"  {name} {value}: {point['round_s']:.3f} s/round (wall {point['wall_s']} s)")
    return points


def scaling_table(name: str, title: str, points: list[dict[str, Any]]) -> Table:
    table = Table(
        title=title,
        caption=(
            "s/round: PS hand-out to hand-out, mean after the first round; step: one worker's "
            "A·Enc(w)+b (wall, sharing the cores); check: the PS's check of one update (wall); "
            "CPU: per round, all workers' processes / the PS's; PS share: of that CPU; floor: "
            f"all of it over the {points[0]['cores']} cores"
        ),
    )
    for column in (name, "s/round", "×", "step", "check", "workers CPU", "PS CPU", "PS share"):
        table.add_column(column, justify="right")
    table.add_column("floor", justify="right")
    table.add_column("wall", justify="right")
    first = points[0]["round_s"]
    for p in points:
        table.add_row(
            str(p[name]),
            f"{p['round_s']:.3f}",
            f"{p['round_s'] / first:.2f}",
            f"{p['compute_s']:.3f}",
            f"{p['check_s']:.4f}",
            f"{p['workers_cpu_s']:.3f}",
            f"{p['ps_cpu_s']:.3f}",
            f"{100 * p['ps_cpu_share']:.0f}%",
            f"{p['floor_s']:.3f}",
            f"{p['wall_s']:.1f}",
        )
    return table


def plot_sweep(name: str, points: list[dict[str, Any]], path: Path, *, log: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p[name] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(xs, [p["round_s"] for p in points], "o-", label="round (PS hand-out to hand-out)")
    ax.plot(xs, [p["compute_s"] for p in points], "s--", label="one worker's A·Enc(w)+b")
    ax.plot(xs, [p["ps_cpu_s"] for p in points], "^--", label="PS CPU per round")
    ax.plot(
        xs,
        [p["floor_s"] for p in points],
        ":",
        color="grey",
        label=f"all CPU / {points[0]['cores']} cores",
    )
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(name.replace("_", " "))
    ax.set_ylabel("seconds")
    ax.set_title(f"homo-lr round time against {name.replace('_', ' ')} (loopback, processes)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def scaling(quick: bool, console: Console) -> dict[str, list[dict[str, Any]]]:
    """Round time against workers, features and key size, one federation per point."""
    cores = len(os.sched_getaffinity(0))
    iterations = 4 if quick else 8
    console.print("scaling with the number of workers (breast rows shared out)…")
    by_workers = sweep(
        "workers",
        [2, 4] if quick else [2, 4, 8, 16],
        lambda n: federation(iterations=iterations, workers=n, data=breast_among(n)),
        cores,
    )
    console.print("scaling with the number of features (generated data, 2 workers)…")
    by_features = sweep(
        "features",
        [30, 100] if quick else [30, 100, 300, 1000],
        # A round costs ~d² (35 s at d = 1000): the wider runs time one round after the first.
        lambda f: federation(iterations=iterations if f <= 100 else 2, data=generated(f)),
        cores,
    )
    console.print("scaling with the key size (breast, 2 workers)…")
    by_keys = sweep(
        "key_bits",
        [2048, 3072],
        lambda bits: federation(iterations=iterations, key_bits=bits),
        cores,
    )
    return {"workers": by_workers, "features": by_features, "key_bits": by_keys}


def breakdown_table(split: Breakdown, title: str) -> Table:
    table = Table(title=title)
    table.add_column("span")
    table.add_column("where")
    table.add_column("ms / round", justify="right")
    table.add_column("share", justify="right")
    for row in split.rows:
        if row.critical:
            table.add_row(
                row.span, row.party, f"{1000 * row.seconds:.2f}", f"{100 * split.share(row):.1f}%"
            )
    table.add_row(
        "[bold]round (mean; median)",
        "",
        f"[bold]{1000 * split.round_s:.2f}; {1000 * split.round_median_s:.2f}",
        "100%",
    )
    for row in split.rows:
        if not row.critical:
            table.add_row(
                f"[dim]{row.span} (overlapped)", row.party, f"[dim]{1000 * row.seconds:.2f}", ""
            )
    return table


def main(quick: bool = False) -> None:
    console = Console(width=140)
    iterations = 31 if quick else REFERENCE.iterations
    console.rule("homo-lr benchmark")
    console.print(
        f"{iterations}-iteration run, 2 workers, 2048 bits, separate processes "
        f"(load before: {os.getloadavg()[0]:.2f})…"
    )
    run = full_run(iterations)
    split: Breakdown = run.pop("breakdown")
    console.print(
        f"wall time {run['wall_s']} s ({float(run['wall_s']) / iterations:.3f} s/iteration), "
        f"exit {run['exit_code']}, last line: {run['last_line']}"
    )
    console.print(
        breakdown_table(split, f"one round, {split.rounds} rounds averaged (critical path)")
    )
    console.print("one worker iteration, 2048-bit keys (guest split, 227 rows × 31)…")
    step = per_iteration(phe_rows=16 if quick else 10_000, repeat=3 if quick else 7)
    table = Table(title="seconds per encrypted iteration, one worker")
    table.add_column("implementation")
    table.add_column("s/iteration", justify="right")
    table.add_column("sealfl is … × faster", justify="right")
    table.add_row("sealfl (Gram form), all cores", f"{step['sealfl_s']:.4f}", "")
    table.add_row("sealfl (Gram form), one core", f"{step['sealfl_one_core_s']:.4f}", "")
    table.add_row(
        "phe, same Gram form (one core)",
        f"{step['phe_gram_s']:.3f}",
        f"{step['speedup_vs_phe_gram']} ({step['speedup_vs_phe_gram_one_core']} on one core)",
    )
    table.add_row(
        f"phe, textbook form ({step['phe_textbook_rows_timed']} of {step['rows']} rows timed)",
        f"{step['phe_textbook_s_extrapolated']:.2f}",
        f"{step['speedup_vs_phe_textbook']}",
    )
    table.add_row(
        "sealfl, textbook form (X @ Enc(w), Enc(v) @ X)",
        f"{step['sealfl_textbook_s']:.4f}",
        f"{step['textbook_speedup_like_for_like']} vs phe textbook "
        f"({step['textbook_speedup_like_for_like_one_core']} on one core)",
    )
    console.print(table)
    curves = scaling(quick, console)
    titles = {
        "workers": "round time against the number of workers (processes on loopback)",
        "features": "round time against the number of features (generated, 2 workers)",
        "key_bits": "round time against the Paillier key size (breast, 2 workers)",
    }
    for name, points in curves.items():
        if not points:
            continue
        console.print(scaling_table(name, titles[name], points))
        plot_sweep(name, points, SCALING_PLOTS[name], log=name == "features")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        record = {
            "time": time.time(),
            "quick": quick,
            "load": os.getloadavg()[0],
            "step": step,
            "run": run,
            "breakdown": {
                "rounds": split.rounds,
                "round_s": split.round_s,
                "round_median_s": split.round_median_s,
                "rows": [
                    {"span": r.span, "party": r.party, "s": r.seconds, "critical": r.critical}
                    for r in split.rows
                ],
            },
            "scaling": curves,
        }
        fh.write(json.dumps(record) + "\n")
    plots = ", ".join(str(p) for p in SCALING_PLOTS.values())
    console.print(f"results appended to {RESULTS}; plots in {PLOT}, {plots}")


if __name__ == "__main__":
    main()

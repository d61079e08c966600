"""homo-lr benchmark: the whole 341-iteration run, and one worker iteration against phe.

1. Wall time of ``sealfl demo homo-lr --preset reference`` (2 workers, 2048-bit key, 341
   iterations, real processes on loopback with the simulated TEE), and its iter-340 line.
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

Run: ``sealfl bench homo-lr`` (``--quick``: 31 iterations for the run, smaller phe samples).
Results are printed as a table, appended as JSON lines to ``bench-results/homo_lr.jsonl``, and
the run's accuracy, loss and seconds per round are drawn to ``bench-results/homo_lr.png``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from phe import paillier
from rich.console import Console
from rich.table import Table

from sealfl import he
from sealfl.data import breast
from sealfl.fl.homo_lr.algorithm import REFERENCE, affine_from_gram, gram_statistics, with_bias
from sealfl.fl.homo_lr.demo import DemoOptions, run_demo
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.launch import PS_METRICS_FILE

RESULTS = Path("bench-results") / "homo_lr.jsonl"
PLOT = Path("bench-results") / "homo_lr.png"


def _time(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def full_run(iterations: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory(prefix="sealfl-bench-homo-lr-") as tmp,
        (Path(tmp) / "console.txt").open("w") as sink,
    ):
        quiet = Console(file=sink, width=120)
        start = time.perf_counter()
        code = run_demo(
            DemoOptions(
                workers=2,
                preset="reference",
                epochs=iterations,
                key_bits=2048,
                run_dir=Path(tmp) / "run",
            ),
            console=quiet,
        )
        wall = time.perf_counter() - start
        log = (Path(tmp) / "run" / "logs" / "worker-1.log").read_text()
        records = [
            json.loads(line)
            for line in (Path(tmp) / "run" / "ps" / PS_METRICS_FILE).read_text().splitlines()
        ]
    _plot(records, iterations)
    last = [line for line in log.splitlines() if line.startswith("iter:")]
    return {
        "exit_code": code,
        "iterations": iterations,
        "wall_s": round(wall, 2),
        "last_line": last[-1] if last else "",
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


def main(quick: bool = False) -> None:
    console = Console()
    iterations = 31 if quick else REFERENCE.iterations
    console.rule("homo-lr benchmark")
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
    console.print(f"{iterations}-iteration run, 2 workers, 2048 bits, separate processes…")
    run = full_run(iterations)
    console.print(
        f"wall time {run['wall_s']} s ({float(run['wall_s']) / iterations:.3f} s/iteration), "
        f"exit {run['exit_code']}, last line: {run['last_line']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        record = {"time": time.time(), "quick": quick, "step": step, "run": run}
        fh.write(json.dumps(record) + "\n")
    console.print(f"results appended to {RESULTS}; plot in {PLOT}")


if __name__ == "__main__":
    main()

"""Paillier benchmark: sealfl.he against python-paillier (phe), same key size, same inputs.

Measured in one run, per float:

* encryption (packed, public key only, DJN randomness), decryption (CRT) and homomorphic
  addition, for vectors of 30, 1,000 and 100,000 floats, on one core and on all cores;
* bytes per float on the wire;
* ``X @ Enc(w)`` and ``Enc(v) @ X`` at 227 × 31, the homo-lr shape.

phe encrypts one float per ciphertext with ``r^n`` randomness; its rates for the larger sizes
are extrapolated from the largest size it ran (the table says which). ``--quick`` runs phe on
30 floats and on a 23-row sample of the matrix products, and sealfl up to 1,000 floats.

Run: ``sealfl bench paillier [--quick] [--json PATH] [--bits 2048] [--cores N]``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from phe import paillier
from rich.console import Console
from rich.table import Table

from sealfl import he
from sealfl.he._parallel import available_cores

DEFAULT_JSON = Path("bench-results") / "paillier.json"
MATRIX_SHAPE = (227, 31)
TARGETS = {
    "encrypt_per_s": 70_000,
    "decrypt_per_s": 15_000,
    "add_per_s": 5_000_000,
    "bytes_per_float": 13,
    "matrix_s": 0.15,
    "matrix_speedup": 20,
}


@dataclass
class Row:
    """One measured operation at one size."""

    operation: str
    size: int
    sealfl_1core_per_s: float
    sealfl_cores_per_s: float
    phe_per_s: float
    phe_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.sealfl_1core_per_s / self.phe_per_s


def _timed(fn: Callable[[], Any], min_seconds: float = 0.2) -> tuple[float, Any]:
    """Seconds per call of ``fn`` (repeated until ``min_seconds``), and its last result."""
    calls, start = 0, time.perf_counter()
    while True:
        result = fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls, result


def _once(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class PheSide:
    """python-paillier with the same primes, timed on the largest size it is given."""

    def __init__(self, private_key: he.PaillierPrivateKey) -> None:
        self.public = paillier.PaillierPublicKey(private_key.public_key.n)
        self.private = paillier.PaillierPrivateKey(self.public, private_key.p, private_key.q)
        self.rates: dict[str, tuple[float, int]] = {}

    def measure_vectors(self, values: np.ndarray) -> None:
        floats = values.tolist()
        enc_s, encrypted = _once(lambda: [self.public.encrypt(x) for x in floats])
        dec_s, decrypted = _once(lambda: [self.private.decrypt(c) for c in encrypted])
        assert np.allclose(decrypted, values)
        add_s, _ = _timed(lambda: [a + b for a, b in zip(encrypted, encrypted, strict=True)])
        size = len(floats)
        self.rates = {
            "encrypt": (size / enc_s, size),
            "decrypt": (size / dec_s, size),
            "add": (size / add_s, size),
        }

    def rate(self, operation: str, size: int) -> tuple[float, str]:
        per_s, measured = self.rates[operation]
        note = "" if size == measured else f"extrapolated from {measured}"
        return per_s, note

    def matrix_seconds(self, X: np.ndarray, w: np.ndarray, v: np.ndarray, rows: int) -> dict:
        enc_w = [self.public.encrypt(float(x)) for x in w]
        enc_v = [self.public.encrypt(float(x)) for x in v[:rows]]
        sample = X[:rows]

        def matvec() -> list:
            return [sum(float(x) * c for x, c in zip(row, enc_w, strict=True)) for row in sample]

        def vecmat() -> list:
            columns = sample.T
            return [sum(float(x) * c for x, c in zip(col, enc_v, strict=True)) for col in columns]

        matvec_s, z = _once(matvec)
        vecmat_s, _ = _once(vecmat)
        z_plain = [self.private.decrypt(c) for c in z]
        assert np.allclose(z_plain, sample @ w)
        scale = X.shape[0] / rows  # both products are linear in the rows
        note = "" if rows == X.shape[0] else f"extrapolated from {rows} rows"
        return {"matvec_s": matvec_s * scale, "vecmat_s": vecmat_s * scale, "note": note}


def measure_vectors(
    private_key: he.PaillierPrivateKey, values: np.ndarray, cores: int
) -> dict[str, float]:
    public_key = private_key.public_key
    out: dict[str, float] = {}
    for label, n_cores in (("1core", 1), ("cores", cores)):
        enc_s, vector = _timed(lambda c=n_cores: he.encrypt_packed(public_key, values, cores=c))
        dec_s, plain = _timed(
            lambda c=n_cores, v=vector: he.decrypt_vector(private_key, v, cores=c)
        )
        assert np.allclose(plain, values, atol=2.0**-24)
        out[f"encrypt_{label}"] = len(values) / enc_s
        out[f"decrypt_{label}"] = len(values) / dec_s
    add_s, total = _timed(lambda: vector + vector)
    assert np.allclose(he.decrypt_vector(private_key, total), 2 * values, atol=2.0**-23)
    out["add"] = len(values) / add_s
    out["bytes_per_float"] = len(vector.to_bytes()) / len(values)
    return out


def measure_matrix(
    private_key: he.PaillierPrivateKey, X: np.ndarray, w: np.ndarray, v: np.ndarray, cores: int
) -> dict[str, float]:
    public_key = private_key.public_key
    enc_w = he.encrypt_vector(public_key, w, fraction_bits=24)
    enc_v = he.encrypt_vector(public_key, v, fraction_bits=24)
    out: dict[str, float] = {}
    for label, n_cores in (("1core", 1), ("cores", cores)):
        mv_s, z = _timed(lambda c=n_cores: he.matvec(X, enc_w, cores=c), 0.5)
        vm_s, g = _timed(lambda c=n_cores: he.vecmat(enc_v, X, cores=c), 0.5)
        out[f"matvec_{label}_s"] = mv_s
        out[f"vecmat_{label}_s"] = vm_s
    out["matvec_max_error"] = float(np.max(np.abs(he.decrypt_vector(private_key, z) - X @ w)))
    out["vecmat_max_error"] = float(np.max(np.abs(he.decrypt_vector(private_key, g) - v @ X)))
    return out


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _table(rows: list[Row], cores: int, bits: int) -> Table:
    table = Table(title=f"Paillier {bits}-bit, per float: sealfl.he vs phe (same key, same inputs)")
    for name in ("operation", "floats", "sealfl 1 core", f"sealfl {cores} cores", "phe", "× phe"):
        table.add_column(name, justify="left" if name == "operation" else "right")
    table.add_column("note")
    for row in rows:
        if row.operation.endswith("(s)"):
            cells = [f"{row.sealfl_1core_per_s:.3f} s", f"{row.sealfl_cores_per_s:.3f} s"]
            phe_cell = f"{row.phe_per_s:.2f} s"
            ratio = row.phe_per_s / row.sealfl_1core_per_s
        elif row.operation == "bytes per float":
            cells = [f"{row.sealfl_1core_per_s:.2f}", f"{row.sealfl_cores_per_s:.2f}"]
            phe_cell = f"{row.phe_per_s:.0f}"
            ratio = row.phe_per_s / row.sealfl_1core_per_s
        else:
            cells = [_rate(row.sealfl_1core_per_s), _rate(row.sealfl_cores_per_s)]
            phe_cell = _rate(row.phe_per_s)
            ratio = row.ratio
        table.add_row(
            row.operation, f"{row.size:,}", *cells, phe_cell, f"{ratio:,.0f}×", row.phe_note
        )
    return table


def _targets(rows: list[Row]) -> list[dict[str, Any]]:
    largest = {r.operation: r for r in rows}
    checks = [
        (
            "packed encrypt ≥ 70,000 floats/s",
            largest["encrypt"].sealfl_1core_per_s,
            TARGETS["encrypt_per_s"],
            ">=",
        ),
        (
            "decrypt ≥ 15,000 floats/s",
            largest["decrypt"].sealfl_1core_per_s,
            TARGETS["decrypt_per_s"],
            ">=",
        ),
        ("add ≥ 5,000,000 floats/s", largest["add"].sealfl_1core_per_s, TARGETS["add_per_s"], ">="),
        (
            "bytes per float ≤ 13",
            largest["bytes per float"].sealfl_1core_per_s,
            TARGETS["bytes_per_float"],
            "<=",
        ),
    ]
    for name in ("X @ Enc(w) (s)", "Enc(v) @ X (s)"):
        row = largest[name]
        checks.append((f"{name[:-4]} ≤ 0.15 s (1 core)", row.sealfl_1core_per_s, 0.15, "<="))
        checks.append((f"{name[:-4]} ≤ 0.15 s ({'all'} cores)", row.sealfl_cores_per_s, 0.15, "<="))
        checks.append(
            (f"{name[:-4]} ≥ 20× phe (1 core)", row.phe_per_s / row.sealfl_1core_per_s, 20, ">=")
        )
    return [
        {
            "target": name,
            "measured": value,
            "limit": limit,
            "met": value >= limit if op == ">=" else value <= limit,
        }
        for name, value, limit, op in checks
    ]


def main(
    *,
    quick: bool = False,
    json_path: Path = DEFAULT_JSON,
    bits: int = he.DEFAULT_KEY_BITS,
    cores: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print the tables and write the JSON report; return the report."""
    console = console or Console()
    cores = cores or available_cores()
    sizes = [30, 1_000] if quick else [30, 1_000, 100_000]
    phe_size = 30 if quick else 1_000
    phe_rows = 23 if quick else MATRIX_SHAPE[0]
    rng = np.random.default_rng(2048)

    keygen_s, (_, private_key) = _once(lambda: he.generate_keypair(bits))
    console.print(f"key generation ({bits} bits): {keygen_s:.2f} s; {cores} cores available")
    public_key = private_key.public_key
    warm_s, _ = _once(lambda: he.encrypt_packed(public_key, np.zeros(41 * 96), cores=cores))
    console.print(f"warm-up (DJN fixed-base tables in every process): {warm_s:.2f} s")

    phe_side = PheSide(private_key)
    with console.status(f"phe: {phe_size} floats"):
        phe_side.measure_vectors(rng.uniform(-1000, 1000, size=phe_size))

    rows: list[Row] = []
    vector_results: dict[int, dict[str, float]] = {}
    for size in sizes:
        with console.status(f"sealfl: {size:,} floats"):
            values = rng.uniform(-1000, 1000, size=size)
            result = measure_vectors(private_key, values, cores)
        vector_results[size] = result
        for op in ("encrypt", "decrypt"):
            phe_rate, note = phe_side.rate(op, size)
            rows.append(Row(op, size, result[f"{op}_1core"], result[f"{op}_cores"], phe_rate, note))
        phe_rate, note = phe_side.rate("add", size)
        rows.append(Row("add", size, result["add"], result["add"], phe_rate, note))
    largest = vector_results[sizes[-1]]["bytes_per_float"]
    rows.append(
        Row(
            "bytes per float",
            sizes[-1],
            largest,
            largest,
            public_key.ciphertext_bytes,
            "phe: one raw ciphertext per float",
        )
    )

    X = rng.normal(size=MATRIX_SHAPE)
    X[:, 0] = 1.0
    w = rng.normal(scale=0.5, size=MATRIX_SHAPE[1])
    v = rng.uniform(-0.5, 0.5, size=MATRIX_SHAPE[0])
    with console.status("sealfl: 227 × 31 matrix products"):
        matrix = measure_matrix(private_key, X, w, v, cores)
    with console.status(f"phe: matrix products on {phe_rows} rows"):
        phe_matrix = phe_side.matrix_seconds(X, w, v, phe_rows)
    shape = f"{MATRIX_SHAPE[0]}×{MATRIX_SHAPE[1]}"
    rows.append(
        Row(
            "X @ Enc(w) (s)",
            MATRIX_SHAPE[0] * MATRIX_SHAPE[1],
            matrix["matvec_1core_s"],
            matrix["matvec_cores_s"],
            phe_matrix["matvec_s"],
            f"{shape}; {phe_matrix['note']}".rstrip("; "),
        )
    )
    rows.append(
        Row(
            "Enc(v) @ X (s)",
            MATRIX_SHAPE[0] * MATRIX_SHAPE[1],
            matrix["vecmat_1core_s"],
            matrix["vecmat_cores_s"],
            phe_matrix["vecmat_s"],
            f"{shape}; {phe_matrix['note']}".rstrip("; "),
        )
    )

    console.print(_table(rows, cores, bits))
    targets = _targets(rows)
    target_table = Table(title="Targets (2048-bit, one core unless stated)")
    for name in ("target", "measured", "met"):
        target_table.add_column(name)
    for t in targets:
        target_table.add_row(
            t["target"],
            f"{t['measured']:,.3f}",
            "[green]yes[/green]" if t["met"] else "[red]no[/red]",
        )
    console.print(target_table)
    console.print(
        f"matrix products: max |error| vs numpy {matrix['matvec_max_error']:.1e} (X @ Enc(w)), "
        f"{matrix['vecmat_max_error']:.1e} (Enc(v) @ X) at 16 fraction bits for X"
    )
    report = {
        "benchmark": "paillier",
        "quick": quick,
        "bits": bits,
        "cores": cores,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "keygen_s": keygen_s,
        "warmup_s": warm_s,
        "layout": asdict(he.PackedLayout()),
        "rows": [{**asdict(r), "ratio_vs_phe": r.ratio} for r in rows],
        "matrix": {**matrix, "phe": phe_matrix},
        "targets": targets,
    }
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"figures written to {json_path}")
    return report

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
from dataclasses import asdict, dataclass
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


@dataclass
class Row:
    """One measured operation: a rate (floats/s), a duration (s) or a size (bytes/float)."""

    operation: str
    unit: str  # "per_s" (higher is better), "s" or "bytes" (lower is better)
    size: int
    sealfl_1core: float
    sealfl_cores: float
    phe: float
    phe_note: str = ""

    @property
    def speedup(self) -> float:
        """How many times better sealfl (one core) is than phe."""
        if self.unit == "per_s":
            return self.sealfl_1core / self.phe
        return self.phe / self.sealfl_1core

    def cell(self, value: float) -> str:
        if self.unit == "per_s":
            return f"{value:,.0f}/s"
        if self.unit == "s":
            return f"{value:.3f} s"
        return f"{value:.2f}"


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
        note = "" if size == measured else f"vectors from {measured} floats"
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
        note = "" if rows == X.shape[0] else f"products from {rows} of {X.shape[0]} rows"
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
    out["add_1core"] = len(values) / add_s
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


def _table(rows: list[Row], cores: int, bits: int) -> Table:
    table = Table(
        title=f"Paillier {bits}-bit: sealfl.he vs phe, same key and inputs",
        caption="* phe extrapolated: "
        + "; ".join(sorted({r.phe_note for r in rows if r.phe_note})),
    )
    table.add_column("operation")
    for name in ("size", "sealfl 1 core", f"sealfl {cores} cores", "phe", "vs phe"):
        table.add_column(name, justify="right")
    for row in rows:
        mark = "*" if row.phe_note else ""
        table.add_row(
            row.operation,
            f"{row.size:,}",
            row.cell(row.sealfl_1core),
            row.cell(row.sealfl_cores),
            row.cell(row.phe) + mark,
            f"{row.speedup:,.0f}×",
        )
    return table


def _check(name: str, measured: float, limit: float, higher_is_better: bool) -> dict[str, Any]:
    met = measured >= limit if higher_is_better else measured <= limit
    return {"target": name, "measured": measured, "limit": limit, "met": met}


def _targets(rows: list[Row]) -> list[dict[str, Any]]:
    last = {r.operation: r for r in rows}  # the largest size of each operation
    checks = [
        _check("encrypt ≥ 70,000 floats/s", last["encrypt"].sealfl_1core, 70_000, True),
        _check("decrypt ≥ 15,000 floats/s", last["decrypt"].sealfl_1core, 15_000, True),
        _check("add ≥ 5,000,000 floats/s", last["add"].sealfl_1core, 5_000_000, True),
        _check("bytes per float ≤ 13", last["bytes/float"].sealfl_1core, 13, False),
    ]
    for name in ("X @ Enc(w)", "Enc(v) @ X"):
        row = last[name]
        checks.append(_check(f"{name} ≤ 0.15 s, 1 core", row.sealfl_1core, 0.15, False))
        checks.append(_check(f"{name} ≤ 0.15 s, all cores", row.sealfl_cores, 0.15, False))
        checks.append(_check(f"{name} ≥ 20× phe, 1 core", row.speedup, 20, True))
    return checks


def _target_table(targets: list[dict[str, Any]]) -> Table:
    table = Table(title="Targets (one core unless stated)")
    for name in ("target", "measured", "met"):
        table.add_column(name, justify="right" if name == "measured" else "left")
    for t in targets:
        met = "[green]yes[/green]" if t["met"] else "[red]no[/red]"
        table.add_row(t["target"], f"{t['measured']:,.3f}", met)
    return table


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
    warm_s, _ = _once(lambda: he.encrypt_packed(public_key, np.zeros(45 * 96), cores=cores))
    console.print(f"warm-up (DJN fixed-base tables in every process): {warm_s:.2f} s")

    phe_side = PheSide(private_key)
    with console.status(f"phe: {phe_size} floats"):
        phe_side.measure_vectors(rng.uniform(-1000, 1000, size=phe_size))

    rows: list[Row] = []
    bytes_per_float = 0.0
    for size in sizes:
        with console.status(f"sealfl: {size:,} floats"):
            values = rng.uniform(-1000, 1000, size=size)
            result = measure_vectors(private_key, values, cores)
        bytes_per_float = result["bytes_per_float"]
        for op in ("encrypt", "decrypt", "add"):
            phe_rate, note = phe_side.rate(op, size)
            one, many = result[f"{op}_1core"], result.get(f"{op}_cores", result[f"{op}_1core"])
            rows.append(Row(op, "per_s", size, one, many, phe_rate, note))
    rows.append(
        Row(
            "bytes/float",
            "bytes",
            sizes[-1],
            bytes_per_float,
            bytes_per_float,
            public_key.ciphertext_bytes,
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
    cells = MATRIX_SHAPE[0] * MATRIX_SHAPE[1]
    for name, key in (("X @ Enc(w)", "matvec"), ("Enc(v) @ X", "vecmat")):
        rows.append(
            Row(
                name,
                "s",
                cells,
                matrix[f"{key}_1core_s"],
                matrix[f"{key}_cores_s"],
                phe_matrix[f"{key}_s"],
                phe_matrix["note"],
            )
        )

    console.print(_table(rows, cores, bits))
    targets = _targets(rows)
    console.print(_target_table(targets))
    console.print(
        f"227×31 products: max |error| vs numpy {matrix['matvec_max_error']:.1e} (X @ Enc(w)), "
        f"{matrix['vecmat_max_error']:.1e} (Enc(v) @ X); X at 16 fraction bits. "
        f"phe bytes/float: one raw {public_key.ciphertext_bytes}-byte ciphertext per float. "
        "Timings on a shared machine are noisy."
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
        "rows": [{**asdict(r), "speedup_vs_phe": r.speedup} for r in rows],
        "matrix": {**matrix, "phe": phe_matrix},
        "targets": targets,
    }
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"figures written to {json_path}")
    return report

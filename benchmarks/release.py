"""Model release benchmark: release envelopes against the sealed-file primitive they build on.

For one random model of ``size_mb`` MiB on local disk, measures (median of ``repeats``):

1. write: ``write_release`` for a two-recipient policy (one recipient holding its key, one
   behind a broker resource) against ``seal_file`` with a key file's key: the same chunked
   AES-256-GCM, plus the HPKE wraps and the header;
2. open: ``open_release`` with a recipient's key (HPKE unwrap, then the payload) against
   ``open_sealed_file`` (what ``sealfl seal decrypt`` runs);
3. the same two opens as the commands a user types, ``sealfl model open`` against
   ``sealfl seal decrypt``, each a fresh process (interpreter start and imports included).

Both sides write their output atomically (temporary file, fsync, rename) and read the input
from the page cache (it was just written); each pair runs back to back, the first of the pair
alternating between repeats, so drift on a shared machine falls on both. The fsync makes the
figures depend on the disk: ``TMPDIR=/dev/shm sealfl bench release`` takes it out. Run with
``sealfl bench release``.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sealfl.seal import (
    ReleaseKey,
    ReleasePolicy,
    SealingKey,
    open_release,
    open_sealed_file,
    seal_file,
    write_release,
)
from sealfl.seal._release_format import read_prefix

MIB = 1024 * 1024
UNWRAP_REPEATS = 200


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _cli(*args: str | Path) -> Callable[[], object]:
    command = [sys.executable, "-m", "sealfl.cli.main", *map(str, args)]
    return lambda: subprocess.run(command, check=True, capture_output=True, timeout=600)


def _unwrap_ms(envelope: Path, owner: ReleaseKey) -> float:
    """Median time to parse the header and unwrap the data key: all an open adds to a decrypt."""
    with envelope.open("rb") as stream:
        head = stream.read(1024 * 1024)
    samples = []
    for _ in range(UNWRAP_REPEATS):
        start = time.perf_counter()
        header, _prefix = read_prefix(io.BytesIO(head).read, str(envelope))
        index = header.index_of(owner)
        assert index is not None
        header.unwrap(index, owner, name=str(envelope))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def _write_model(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            step = min(left, 8 * MIB)
            out.write(os.urandom(step))
            left -= step


def _setup(workdir: Path) -> tuple[ReleasePolicy, ReleaseKey, SealingKey]:
    owner = ReleaseKey.generate(name="model-owner")
    enclave = ReleaseKey.generate(name="eval-enclave")
    owner.save(workdir / "keys")
    enclave.save(workdir / "keys")
    (workdir / "release.toml").write_text(
        '[[recipient]]\nname = "model-owner"\npublic_key = "keys/model-owner.pub"\n'
        '[[recipient]]\nname = "eval-enclave"\npublic_key = "keys/eval-enclave.pub"\n'
        'broker_resource = "bench/release-key/eval"\n'
    )
    key = SealingKey.generate()
    key.save(workdir / "dev.key")
    return ReleasePolicy.load(workdir / "release.toml"), owner, key


def main(*, size_mb: int = 100, repeats: int = 3, out: Path | None = None) -> dict[str, Any]:
    """Run the measurements, print a table, and write JSON to ``out`` if given."""
    console = Console()
    size = size_mb * MIB
    times: dict[str, list[float]] = {
        k: [] for k in ("release_write", "seal_write", "release_open", "seal_open",
                        "cli_model_open", "cli_seal_decrypt")
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sealfl-bench-release-") as tmp:
        workdir = Path(tmp)
        model = workdir / "model.bin"
        console.print(f"writing a {size_mb} MiB random model ...")
        _write_model(model, size)
        policy, owner, key = _setup(workdir)
        envelope, sealed = workdir / "model.release", workdir / "model.sealed"
        opened, decrypted = workdir / "opened.bin", workdir / "decrypted.bin"
        steps = {
            "release_write": lambda: write_release(envelope, model, policy, label="bench/model"),
            "seal_write": lambda: seal_file(model, sealed, key, label="bench/model"),
            "release_open": lambda: open_release(envelope, opened, private_key=owner),
            "seal_open": lambda: open_sealed_file(sealed, decrypted, key),
            "cli_model_open": _cli("model", "open", envelope, "--key",
                                   workdir / "keys/model-owner.key", "--out", opened),
            "cli_seal_decrypt": _cli("seal", "decrypt", sealed, decrypted,
                                     "--key", workdir / "dev.key"),
        }  # fmt: skip
        pairs = [("release_write", "seal_write"), ("release_open", "seal_open"),
                 ("cli_model_open", "cli_seal_decrypt")]  # fmt: skip
        for i in range(repeats):
            console.print(f"repeat {i + 1}/{repeats} ...")
            for pair in pairs:
                # Alternate which side goes first, so neither always follows the other's I/O.
                for name in pair if i % 2 == 0 else reversed(pair):
                    times[name].append(_timed(steps[name]))
        if opened.read_bytes() != model.read_bytes() or decrypted.stat().st_size != size:
            raise RuntimeError("an opened model differs from the original")
        overhead = envelope.stat().st_size - sealed.stat().st_size
        unwrap_ms = _unwrap_ms(envelope, owner)
    results = _summarise(times, size, repeats, overhead)
    results["unwrap_ms_median"] = unwrap_ms
    _print(console, results)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"results written to {out}")
    return results


def _summarise(
    times: dict[str, list[float]], size: int, repeats: int, overhead: int
) -> dict[str, Any]:
    med = {name: statistics.median(values) for name, values in times.items()}
    return {
        "model_bytes": size,
        "repeats": repeats,
        "envelope_overhead_bytes": overhead,
        "seconds_median": med,
        "seconds_all": times,
        "mb_per_s": {name: size / 1e6 / value for name, value in med.items()},
        "ratio": {
            "write_release_vs_seal_file": med["release_write"] / med["seal_write"],
            "open_release_vs_open_sealed_file": med["release_open"] / med["seal_open"],
            "cli_model_open_vs_seal_decrypt": med["cli_model_open"] / med["cli_seal_decrypt"],
        },
    }


def _print(console: Console, results: dict[str, Any]) -> None:
    med, rate, ratio = results["seconds_median"], results["mb_per_s"], results["ratio"]
    table = Table(
        title=f"model release, {results['model_bytes'] // MIB} MiB (median of {results['repeats']})"
    )
    for column in ("operation", "release envelope", "sealed file (baseline)", "ratio"):
        table.add_column(column, justify="right" if column != "operation" else "left")
    rows = (
        ("write (library)", "release_write", "seal_write", "write_release_vs_seal_file"),
        ("open (library)", "release_open", "seal_open", "open_release_vs_open_sealed_file"),
        ("open (command)", "cli_model_open", "cli_seal_decrypt", "cli_model_open_vs_seal_decrypt"),
    )
    for label, ours, base, key in rows:
        table.add_row(
            label,
            f"{med[ours]:.3f} s ({rate[ours]:.0f} MB/s)",
            f"{med[base]:.3f} s ({rate[base]:.0f} MB/s)",
            f"{ratio[key]:.2f}x",
        )
    console.print(table)
    console.print(
        f"envelope header: {results['envelope_overhead_bytes']} bytes more than the sealed file; "
        f"parsing it and unwrapping the data key (HPKE) takes {results['unwrap_ms_median']:.2f} ms "
        f"(median of {UNWRAP_REPEATS})"
    )

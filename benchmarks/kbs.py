"""Key-broker round trip on the simulated TEE: one fetch, against the RA-TLS connect alone.

The broker runs as its own process (``sealfl kbs serve-dev``: RA-TLS certificate, sealed store,
fsynced audit log), as in a deployment. Each timed fetch is the whole protocol a requester runs
(``KbsClient.fetch``):

1. ``Challenge`` on the broker's front door (a new TLS connection, pinned to the broker
   certificate verified once at start);
2. a fresh key and RA-TLS certificate whose claims hold the nonce (simulated quote);
3. enrolment (fetch the broker certificate, check the pin, nonce-signed possession proof, the
   broker verifies the evidence against the resource's policy) and the mutual-TLS handshake;
4. ``GetResource``: the broker re-verifies the certificate against the resource's policy, uses
   the nonce up, writes and fsyncs the audit line, and releases the value.

The comparison is step 3 alone with a certificate made in advance: the RA-TLS connect that
every sealfl channel pays (``sealfl bench ratls`` measures it against plain TLS). The broker's
own work on top is steps 1, 2 and 4. Goal: a fetch under 100 ms (median) on the simulated TEE.

Run with ``sealfl bench kbs`` (``--runs N``, ``--out results.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from sealfl.kbs import KbsClient, get_resource
from sealfl.net import fingerprint_verifier, open_secure_channel
from sealfl.seal import SealingKey
from sealfl.tee import SimulatedPlatform, SimulatedTee, create_ratls_certificate

TARGET_MS = 100.0
RESOURCE = "bench/seal-key/model"


def _measurement(role: str) -> bytes:
    return hashlib.sha256(b"sealfl bench kbs measurement:" + role.encode()).digest()


def _write_world(workdir: Path) -> SimulatedPlatform:
    platform = SimulatedPlatform.create(workdir / "platform")
    (workdir / "policy.toml").write_text(
        "[simulated]\nallow = true\n"
        f'measurements = ["{_measurement("requester").hex()}"]\n'
        f'platform_fingerprints = ["{platform.fingerprint}"]\n'
    )
    SealingKey.generate().save(workdir / "store.key")
    (workdir / "kbs.toml").write_text(
        '[kbs]\nlisten = "127.0.0.1:0"\nstore = "store"\naudit_log = "audit.jsonl"\n'
        f'[[kbs.resource]]\nname = "{RESOURCE}"\npolicy = "policy.toml"\ngenerate = true\n'
    )
    return platform


def _start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = workdir / "ready.json"
    log = (workdir / "broker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sealfl.cli.main", "kbs", "serve-dev",
            "--settings", str(workdir / "kbs.toml"),
            "--simulated-platform", str(workdir / "platform"),
            "--sealing-key-file", str(workdir / "store.key"),
            "--measurement", _measurement("kbs").hex(),
            "--ready-file", str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the broker did not start:\n" + (workdir / "broker.log").read_text())
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


def _measure(address: str, fingerprint: str, tee: SimulatedTee, runs: int) -> dict[str, Any]:
    verifier = fingerprint_verifier([fingerprint])
    client = KbsClient(address, server_verifier=verifier, provider=tee)
    for _ in range(3):  # warm up imports, code paths and the broker's pin check
        client.fetch(RESOURCE)
    steps: dict[str, list[float]] = {
        "fetch_ms": [],
        "challenge_ms": [],
        "certificate_ms": [],
        "enrol_connect_ms": [],
        "release_ms": [],
        "ratls_connect_ms": [],
    }
    for _ in range(runs):
        started = time.perf_counter()
        value = client.fetch(RESOURCE)
        steps["fetch_ms"].append(1000 * (time.perf_counter() - started))
        assert len(value) == 32

        # The same protocol step by step, for the breakdown.
        t0 = time.perf_counter()
        nonce = client.challenge()
        t1 = time.perf_counter()
        credentials = client.make_certificate(nonce, RESOURCE)
        t2 = time.perf_counter()
        channel = client.connect(credentials)
        t3 = time.perf_counter()
        get_resource(channel, RESOURCE)
        t4 = time.perf_counter()
        channel.close()
        for name, seconds in (
            ("challenge_ms", t1 - t0),
            ("certificate_ms", t2 - t1),
            ("enrol_connect_ms", t3 - t2),
            ("release_ms", t4 - t3),
        ):
            steps[name].append(1000 * seconds)

        # Baseline: the RA-TLS connect alone, certificate made in advance (not timed).
        ready = create_ratls_certificate(tee)
        started = time.perf_counter()
        baseline = open_secure_channel(address, credentials=ready, server_verifier=verifier)
        steps["ratls_connect_ms"].append(1000 * (time.perf_counter() - started))
        baseline.close()
    return steps


def _summary(steps: dict[str, list[float]]) -> dict[str, Any]:
    result: dict[str, Any] = {
        name: {
            "median": statistics.median(values),
            "p90": float(np.percentile(values, 90)),
            "runs": len(values),
        }
        for name, values in steps.items()
    }
    fetch = result["fetch_ms"]["median"]
    result["broker_overhead_ms"] = fetch - result["ratls_connect_ms"]["median"]
    result["target_ms"] = TARGET_MS
    result["met"] = fetch < TARGET_MS
    result["cpus"] = os.cpu_count()
    return result


def _print(console: Console, r: dict[str, Any]) -> None:
    table = Table(title="sealfl.kbs: broker round trip on the simulated TEE (loopback)")
    for column in ("step", "median ms", "p90 ms"):
        table.add_column(column, justify="left" if column == "step" else "right")
    rows = [
        ("fetch: challenge + certificate + enrol + release", "fetch_ms"),
        ("  1 Challenge (front door, new TLS connection)", "challenge_ms"),
        ("  2 fresh RA-TLS certificate with the nonce", "certificate_ms"),
        ("  3 enrol + mutual-TLS handshake", "enrol_connect_ms"),
        ("  4 GetResource (re-verify, nonce, audit fsync)", "release_ms"),
        ("baseline: RA-TLS connect, certificate made before", "ratls_connect_ms"),
    ]
    for label, key in rows:
        table.add_row(label, f"{r[key]['median']:.1f}", f"{r[key]['p90']:.1f}")
    console.print(table)
    verdict = "met" if r["met"] else "NOT met"
    console.print(
        f"fetch median {r['fetch_ms']['median']:.1f} ms over {r['fetch_ms']['runs']} runs: goal "
        f"< {r['target_ms']:.0f} ms {verdict}; the broker adds "
        f"{r['broker_overhead_ms']:.1f} ms to the RA-TLS connect ({r['cpus']} CPUs).",
        highlight=False,
    )


def main(*, runs: int = 50, out: Path | None = None) -> dict[str, Any]:
    """Start a broker process, time ``runs`` fetches and the baseline, print and save them."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sealfl-bench-kbs-") as tmp:
        workdir = Path(tmp)
        platform = _write_world(workdir)
        process, info = _start_broker(workdir)
        try:
            console.print(f"broker at {info['address']}; {runs} fetches ...")
            tee = SimulatedTee(platform, _measurement("requester"))
            steps = _measure(info["address"], info["fingerprint"], tee, runs)
        finally:
            process.terminate()
            process.wait(timeout=20)
        audit_lines = sum(1 for _ in (workdir / "audit.jsonl").open())
    results = _summary(steps)
    results["audit_lines"] = audit_lines
    _print(console, results)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**results, "samples": steps}, indent=2) + "\n")
        console.print(f"results written to {out}")
    return results


if __name__ == "__main__":
    main(runs=int(sys.argv[1]) if len(sys.argv) > 1 else 50)

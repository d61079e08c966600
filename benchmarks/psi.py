"""PSI benchmark: sealfl's ECDH-PSI between two processes over mutual RA-TLS, and openmined-psi.

Two parties, each a separate process on loopback with a simulated TEE: the leader serves
:class:`sealfl.psi.PsiServicer` on a :class:`sealfl.net.SecureServer`, the follower calls
:func:`sealfl.psi.run_psi_on_channel` over a :class:`sealfl.net.SecureChannel`; both verify the
other's RA-TLS evidence by policy. The sets are ``n`` ids per side (``user-%012d``) with half of
them shared, made inside each party process.

Reported per party: CPU seconds of the session (user + system, all threads, from just before
the session to its end), **ids/s per party-core** (``n`` over those CPU seconds: what one core
of one party gets through), peak memory; for the run: wall time of the session, **bytes per
id** (all PSI frames both ways over ``n``; gRPC and TLS framing not counted).

With ``--openmined-python PATH`` (an interpreter with ``openmined-psi==2.0.6``; it pins
protobuf 6, so it cannot live in sealfl's environment), openmined-psi runs on the same sets in
the same invocation (:mod:`openmined_peer`) and the table gives the ratio of its CPU per role to
sealfl's CPU per party.

A last line gives the *floor* (:func:`primitive_floor`): two X25519 exchanges and two field
square roots per party and id, measured in this process, which no implementation on
``cryptography`` and ``gmpy2`` can go below, and how far the run is from it.

Run with ``sealfl bench psi`` (``--quick``: 2·10^4 ids); writes ``psi.json`` in ``--out-dir``.
This file is also the party process: ``python benchmarks/psi.py party ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_IDS_PER_CORE = 10_000
TARGET_BYTES_PER_ID = 100
TARGET_OPENMINED_RATIO = 1.8
QUICK_N = 20_000
FULL_N = 1_000_000


# -- the party processes ----------------------------------------------------------------------


def _measurement(role: str) -> bytes:
    # A fixed value per role rather than measure_code(), which hashes sealfl's source and so
    # could differ between the two processes if the tree were edited while the benchmark runs.
    return hashlib.sha256(b"sealfl bench psi measurement:" + role.encode()).digest()


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ids(role: str, n: int) -> list[str]:
    start = 0 if role == "leader" else n // 2
    return [f"user-{i:012d}" for i in range(start, start + n)]


def _party(args: argparse.Namespace) -> None:
    from sealfl.net import SecureServer, open_secure_channel
    from sealfl.psi import (
        PsiResult,
        PsiServicer,
        PsiSettings,
        add_psi_servicer,
        run_psi_on_channel,
    )
    from sealfl.tee import (
        Policy,
        SimulatedPlatform,
        SimulatedTee,
        Verifier,
        create_ratls_certificate,
        verify_ratls_certificate,
    )

    sim = SimulatedPlatform.load(Path(args.platform))
    peer = "follower" if args.role == "leader" else "leader"
    verifier = Verifier(
        Policy.for_simulated(
            measurements=[_measurement(peer)], platform_fingerprints=[sim.fingerprint]
        )
    )
    credentials = create_ratls_certificate(SimulatedTee(sim, _measurement(args.role)))
    settings = PsiSettings(mode=args.mode, batch_size=args.batch, timeout_s=600)
    ids = _ids(args.role, args.n)
    result: PsiResult
    if args.role == "leader":
        server: SecureServer[Any] = SecureServer(
            credentials=credentials,
            peer_verifier=lambda pem: verify_ratls_certificate(pem, verifier),
            connection_age_grace_s=3600,
            max_connection_age_s=7200,
        )
        servicer = PsiServicer(ids, role="leader", settings=settings)
        add_psi_servicer(server, servicer)
        _emit("ready", address=server.start())
        cpu, wall = _cpu_s(), time.perf_counter()
        result = servicer.result(timeout_s=3600)
        server.stop(1)
    else:
        channel = open_secure_channel(
            args.address,
            credentials=credentials,
            server_verifier=lambda pem: verify_ratls_certificate(pem, verifier),
        )
        cpu, wall = _cpu_s(), time.perf_counter()
        result = run_psi_on_channel(channel, ids, role="follower", settings=settings)
        wall = time.perf_counter() - wall
        channel.close()
    _emit(
        "done",
        role=args.role,
        cpu_s=_cpu_s() - cpu,
        wall_s=wall if args.role == "follower" else None,
        count=result.count,
        transcript=result.transcript_hex(),
        bytes_sent=result.bytes_sent,
        bytes_received=result.bytes_received,
        peak_rss_mb=_peak_rss_mb(),
    )


def _start(role: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "party", "--role", role, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )


def _event(process: subprocess.Popen[str], name: str) -> dict[str, Any]:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                return dict(event)
    code = process.wait()
    raise RuntimeError(f"party process ended (exit {code}) before '{name}'")


def run_sealfl(n: int, *, batch: int, mode: str, work: Path) -> dict[str, Any]:
    """One session between two party processes; their reports and the run's figures."""
    from sealfl.tee import SimulatedPlatform

    platform_dir = work / "platform"
    if not platform_dir.exists():
        SimulatedPlatform.create(platform_dir)
    common = ["--platform", str(platform_dir), "--n", str(n), "--batch", str(batch)]
    common += ["--mode", mode]
    leader = _start("leader", *common)
    follower: subprocess.Popen[str] | None = None
    try:
        address = _event(leader, "ready")["address"]
        follower = _start("follower", *common, "--address", address)
        done_f = _event(follower, "done")
        done_l = _event(leader, "done")
    finally:
        for process in (leader, follower):
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    if done_l["transcript"] != done_f["transcript"] or done_l["count"] != done_f["count"]:
        raise RuntimeError("the two parties disagree on the transcript or the count")
    total = done_l["bytes_sent"] + done_l["bytes_received"]
    cpu = max(done_l["cpu_s"], done_f["cpu_s"])
    return {
        "n": n,
        "mode": mode,
        "batch": batch,
        "count": done_l["count"],
        "leader_cpu_s": done_l["cpu_s"],
        "follower_cpu_s": done_f["cpu_s"],
        "ids_per_s_per_party_core": n / cpu,
        "wall_s": done_f["wall_s"],
        "bytes_total": total,
        "bytes_per_id": total / n,
        "leader_peak_rss_mb": done_l["peak_rss_mb"],
        "follower_peak_rss_mb": done_f["peak_rss_mb"],
    }


def run_openmined(python: Path, n: int) -> dict[str, Any]:
    """Run :mod:`openmined_peer` with ``python`` on the same sets; its JSON report."""
    from sealfl.errors import ConfigError

    script = Path(__file__).with_name("openmined_peer.py")
    try:
        done = subprocess.run(
            [str(python), str(script), "--n", str(n), "--overlap", str(n // 2)],
            capture_output=True,
            text=True,
            timeout=7200,
        )
    except OSError as exc:
        raise ConfigError(
            f"--openmined-python {python}: could not run {script.name}: {exc}"
        ) from exc
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(
            f"--openmined-python {python}: {script.name} failed (exit {done.returncode}); is "
            f"openmined-psi==2.0.6 installed there? {tail[0]}"
        )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["bytes_per_id"] = (
        report["setup_bytes"] + report["request_bytes"] + report["response_bytes"]
    ) / n
    return dict(report)


def primitive_floor(reps: int = 1000, rounds: int = 3) -> dict[str, float]:
    """CPU µs of the two primitives each party runs twice per id, measured here and now.

    Per party and id the protocol needs two X25519 exchanges (mask its own hash, remask the
    peer's point) and two field exponentiations (the square roots of the two Elligator 2 maps of
    the random-oracle hash): ``floor = 2·x25519 + 2·powmod`` is what no implementation on
    ``cryptography`` and ``gmpy2`` can go below, whatever else it does. Measured in the
    benchmark's own interpreter, the best of ``rounds`` rounds (other load only adds time).
    """
    import os

    import gmpy2
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from sealfl.psi.curve25519 import P
    from sealfl.psi.masking import MaskingKey

    points = b"".join(
        X25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(reps)
    )
    bases = [gmpy2.mpz(int.from_bytes(os.urandom(32), "little")) % P for _ in range(reps)]
    exponent = (P + 3) // 8
    key = MaskingKey()
    x25519 = powmod = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        key.mask(points, field="floor")
        x25519 = min(x25519, (time.process_time() - started) / reps * 1e6)
        started = time.process_time()
        for base in bases:
            gmpy2.powmod(base, exponent, P)
        powmod = min(powmod, (time.process_time() - started) / reps * 1e6)
    return {
        "x25519_us": x25519,
        "powmod_us": powmod,
        "floor_us_per_id": 2 * x25519 + 2 * powmod,
    }


# -- the driver -------------------------------------------------------------------------------


def main(
    *,
    quick: bool = False,
    n: int | None = None,
    batch: int = 4096,
    mode: str = "both",
    openmined_python: Path | None = None,
    out_dir: Path = Path("bench-results"),
) -> dict[str, Any]:
    from rich.console import Console

    n = n or (QUICK_N if quick else FULL_N)
    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sealfl-bench-psi-"))
    console.print(f"sealfl PSI: {n:,} × {n:,} ids, 50% overlap, mode {mode}, two processes ...")
    ours = run_sealfl(n, batch=batch, mode=mode, work=work)
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "sealfl": ours,
        "floor": primitive_floor(),
    }
    if openmined_python is not None:
        console.print(f"openmined-psi 2.0.6 on the same sets ({openmined_python}) ...")
        peer = run_openmined(openmined_python, n)
        per_party = max(ours["leader_cpu_s"], ours["follower_cpu_s"])
        peer["ratio_server"] = peer["server_cpu_s"] / per_party
        peer["ratio_client"] = peer["client_cpu_s"] / per_party
        report["openmined"] = peer
    _print(console, report)
    (out_dir / "psi.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _print(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    ours = report["sealfl"]
    table = Table(title=f"PSI, {ours['n']:,} × {ours['n']:,} ids (50% overlap)")
    for column in (
        "implementation",
        "CPU/party (s)",
        "ids/s per party-core",
        "bytes/id",
        "wall (s)",
        "vs openmined-psi",
    ):
        table.add_column(column, justify="right")
    per_party = max(ours["leader_cpu_s"], ours["follower_cpu_s"])
    peer = report.get("openmined")
    ratio = "—" if peer is None else f"{min(peer['ratio_server'], peer['ratio_client']):.2f}×"
    table.add_row(
        "sealfl",
        f"{ours['leader_cpu_s']:.1f} / {ours['follower_cpu_s']:.1f}",
        f"{ours['n'] / per_party:,.0f}",
        f"{ours['bytes_per_id']:.1f}",
        f"{ours['wall_s']:.1f}",
        ratio,
    )
    if peer is not None:
        worst = max(peer["server_cpu_s"], peer["client_cpu_s"])
        table.add_row(
            "openmined-psi",
            f"{peer['client_cpu_s']:.1f} / {peer['server_cpu_s']:.1f}",
            f"{peer['n'] / worst:,.0f}",
            f"{peer['bytes_per_id']:.1f}",
            f"{peer['wall_s']:.1f}",
            "1.00×",
        )
    console.print(table)
    console.print(
        f"sealfl: ECDH-PSI on X25519, RFC 9380 RO hash, two processes over mutual RA-TLS, mode "
        f"{ours['mode']}; CPU leader / follower"
    )
    if peer is not None:
        console.print(
            f"openmined-psi 2.0.6: P-256, GCS, fpr {peer['fpr']:g}, both roles in one process; "
            "CPU client / server; ratio = its CPU per role over sealfl's per party (worst)"
        )
    console.print(
        f"sealfl peak memory {ours['leader_peak_rss_mb']:.0f} / "
        f"{ours['follower_peak_rss_mb']:.0f} MB; intersection {ours['count']:,}"
    )
    floor = report["floor"]
    achieved = per_party / ours["n"] * 1e6
    line = (
        f"floor per party and id: 2 X25519 ({floor['x25519_us']:.1f} µs) + 2 square roots "
        f"({floor['powmod_us']:.1f} µs) = {floor['floor_us_per_id']:.1f} µs; achieved "
        f"{achieved:.1f} µs ({achieved / floor['floor_us_per_id']:.2f}× the floor)"
    )
    if peer is not None:
        theirs = min(peer["server_cpu_s"], peer["client_cpu_s"]) / peer["n"] * 1e6
        line += f"; at the floor it would be {theirs / floor['floor_us_per_id']:.2f}× openmined-psi"
    console.print(line)
    checks = [
        (
            "ids/s per party-core",
            ours["ids_per_s_per_party_core"],
            f">= {TARGET_IDS_PER_CORE:,}",
            ours["ids_per_s_per_party_core"] >= TARGET_IDS_PER_CORE,
        ),
        (
            "bytes per id",
            ours["bytes_per_id"],
            f"<= {TARGET_BYTES_PER_ID}",
            ours["bytes_per_id"] <= TARGET_BYTES_PER_ID,
        ),
    ]
    if peer is not None:
        low = min(peer["ratio_server"], peer["ratio_client"])
        checks.append(
            (
                "x openmined-psi per party",
                low,
                f">= {TARGET_OPENMINED_RATIO}",
                low >= TARGET_OPENMINED_RATIO,
            )
        )
    for name, value, target, ok in checks:
        console.print(f"goal {name}: {value:,.2f} (target {target}): {'met' if ok else 'NOT met'}")


def _party_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="one party of sealfl bench psi")
    parser.add_argument("--role", choices=["leader", "follower"], required=True)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--mode", default="both")
    parser.add_argument("--address")
    _party(parser.parse_args(argv))


if __name__ == "__main__":
    if sys.argv[1:2] != ["party"]:
        raise SystemExit("usage: python benchmarks/psi.py party --role ... (or: sealfl bench psi)")
    _party_main(sys.argv[2:])

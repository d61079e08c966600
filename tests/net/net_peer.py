"""A server or client process for the end-to-end tests of sealfl.net (run as a script).

Each process makes its own simulated RA-TLS certificate (the key never leaves the process) on a
shared simulated platform, and talks JSON lines on stdout: one object per event. A server also
reads commands on stdin (``status``, ``swap-key``, ``quit``); a ``hold`` client reads ``ping``,
``ping-until-error`` and ``quit``.

Usage::

    net_peer.py server --platform DIR --role ps --accept worker-1 --accept worker-2 [...]
    net_peer.py server --platform DIR --role infer --open [--max-enrolled N]   # enrols anyone
    net_peer.py client --platform DIR --role worker-1 --server-role ps --address A SCENARIO

The ``burst`` scenario starts ``--count`` clients at once on threads (each with its own RA-TLS
certificate) and reports how many were served and how long each waited.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from sealfl.errors import SealflError
from sealfl.net import (
    SecureChannel,
    SecureServer,
    TensorStore,
    TransferServicer,
    accept_any_certificate,
    connect_pinned,
    fetch_server_certificate,
    get_tensor,
    open_secure_channel,
    ping,
    put_tensor,
)
from sealfl.net.protos import transfer_pb2_grpc
from sealfl.tee import (
    Policy,
    SimulatedPlatform,
    SimulatedTee,
    Verifier,
    create_ratls_certificate,
    verify_ratls_certificate,
)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (exec), in MB.

    ``getrusage`` is no good here: Linux carries ``ru_maxrss`` across fork and exec, so a peer
    started from a large pytest process would report its parent's peak. ``VmHWM`` belongs to
    the address space, which exec replaces.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM missing from /proc/self/status")


def measurement(role: str) -> bytes:
    # Not measure_code(): it hashes sealfl's source, which may change between the start of the
    # server and of a client while the tree is being edited. A fixed value per role is enough.
    return hashlib.sha256(b"sealfl net e2e measurement:" + role.encode()).digest()


def verifier_for(platform: SimulatedPlatform, roles: list[str]) -> Any:
    policy = Policy.for_simulated(
        measurements=[measurement(r) for r in roles],
        platform_fingerprints=[platform.fingerprint],
    )
    verifier = Verifier(policy)
    return lambda pem: verify_ratls_certificate(pem, verifier)


def credentials(platform: SimulatedPlatform, role: str) -> Any:
    return create_ratls_certificate(SimulatedTee(platform, measurement(role)))


def run_server(args: argparse.Namespace) -> int:
    platform = SimulatedPlatform.load(Path(args.platform))
    server: SecureServer[Any] = SecureServer(
        credentials=credentials(platform, args.role),
        peer_verifier=accept_any_certificate if args.open else verifier_for(platform, args.accept),
        max_connection_age_s=args.max_connection_age,
        connection_age_grace_s=0.2,
        max_message_bytes=8 << 20,
        max_enrolled=args.max_enrolled,
    )
    store = TensorStore(max_total_bytes=args.store_mb << 20)
    server.add_servicer(transfer_pb2_grpc.add_TransferServicer_to_server, TransferServicer(store))
    address = server.start()
    emit("ready", address=address, service_address=server.service_address)
    for line in sys.stdin:
        command = line.strip()
        if command == "status":
            emit(
                "status",
                enrolled=[
                    getattr(e.identity, "measurements", {}).get("measurement", e.fingerprint)
                    for e in server.enrolments()
                ],
                evictions=getattr(server, "evictions", 0),
                refusals=[{"peer": r.peer, "reason": r.reason} for r in server.refusals()],
                peak_rss_mb=peak_rss_mb(),
            )
        elif command == "swap-key":
            # Same measurement, new key: a genuine-looking server that is not the one verified.
            server.replace_credentials(credentials(platform, args.role))
            emit("swapped")
        elif command == "quit":
            break
    server.stop(0.5)
    emit("stopped", peak_rss_mb=peak_rss_mb())
    return 0


def open_channel(args: argparse.Namespace, platform: SimulatedPlatform) -> Any:
    started = time.perf_counter()
    channel = open_secure_channel(
        args.address,
        credentials=credentials(platform, args.role),
        server_verifier=verifier_for(platform, [args.server_role]),
        timeout_s=10.0,
    )
    emit(
        "connected",
        open_ms=1000 * (time.perf_counter() - started),
        server_measurement=channel.server_identity.measurements["measurement"],
        service_address=channel.address,
    )
    return channel


def hold(channel: SecureChannel[Any]) -> None:
    for line in sys.stdin:
        command = line.strip()
        if command == "ping":
            emit("pong", payload=ping(channel, b"again", timeout_s=5.0).decode())
        elif command == "ping-until-error":
            deadline = time.monotonic() + 15.0
            count = 0
            while time.monotonic() < deadline:
                ping(channel, b"x", timeout_s=5.0)  # raises once the pin fails
                count += 1
                time.sleep(0.05)
            emit("no-error", pings=count)
        elif command == "quit":
            return


def transfer(channel: SecureChannel[Any], megabytes: int) -> None:
    size = megabytes * 1024 * 1024
    data = np.random.default_rng(7).integers(0, 256, size=size, dtype=np.uint8)
    emit("generated", peak_rss_mb=peak_rss_mb())
    expected = hashlib.sha256(data).hexdigest()
    started = time.perf_counter()
    reply = put_tensor(channel, "big", data, timeout_s=120.0)
    put_s = time.perf_counter() - started
    sent_sha = reply.sha256.hex()
    del data
    started = time.perf_counter()
    back = get_tensor(channel, "big", max_bytes=size, timeout_s=120.0)
    get_s = time.perf_counter() - started
    emit(
        "transferred",
        bytes=size,
        server_sha256=sent_sha,
        received_sha256=back.sha256.hex(),
        expected_sha256=expected,
        put_mb_s=size / put_s / 1e6,
        get_mb_s=size / get_s / 1e6,
        peak_rss_mb=peak_rss_mb(),
    )


def never_enrolled(args: argparse.Namespace, platform: SimulatedPlatform) -> None:
    # Verify and pin the server exactly as an honest client would, but skip enrolment.
    server_pem = fetch_server_certificate(args.address)
    connect_pinned(
        args.service_address,
        server_certificate_pem=server_pem,
        server_verifier=verifier_for(platform, [args.server_role]),
        credentials=credentials(platform, args.role),
        timeout_s=5.0,
    )
    emit("connected-without-enrolment")


def burst(args: argparse.Namespace, platform: SimulatedPlatform) -> None:
    """``--count`` honest clients at once: connect (fetch, verify, enrol, handshake) and ping."""
    creds = [credentials(platform, args.role) for _ in range(args.count)]
    verify = verifier_for(platform, [args.server_role])
    start = threading.Barrier(args.count)
    waits: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(own: Any) -> None:
        start.wait()
        began = time.perf_counter()
        try:
            with open_secure_channel(
                args.address, credentials=own, server_verifier=verify, timeout_s=10.0
            ) as channel:
                ping(channel, b"burst", timeout_s=10.0)
        except SealflError as exc:
            with lock:
                errors.append(str(exc))
            return
        with lock:
            waits.append(time.perf_counter() - began)

    threads = [threading.Thread(target=one, args=(c,)) for c in creds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    emit(
        "burst",
        served=len(waits),
        errors=errors,
        median_ms=1000 * statistics.median(waits) if waits else None,
        max_ms=1000 * max(waits) if waits else None,
    )


def run_client(args: argparse.Namespace) -> int:
    platform = SimulatedPlatform.load(Path(args.platform))
    if args.scenario == "burst":
        burst(args, platform)
        return 0
    try:
        if args.scenario == "never-enrolled":
            never_enrolled(args, platform)
            return 0
        with open_channel(args, platform) as channel:
            started = time.perf_counter()
            payload = ping(channel, b"hello", timeout_s=5.0).decode()
            emit("pong", payload=payload, ping_ms=1000 * (time.perf_counter() - started))
            if args.scenario == "hold":
                hold(channel)
            elif args.scenario == "transfer":
                transfer(channel, args.megabytes)
    except SealflError as exc:
        emit("error", type=type(exc).__name__, message=str(exc))
        return 3
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    server = sub.add_parser("server")
    server.add_argument("--platform", required=True)
    server.add_argument("--role", required=True)
    server.add_argument("--accept", action="append", default=[])
    server.add_argument("--max-connection-age", type=float, default=600.0)
    server.add_argument("--store-mb", type=int, default=16)
    server.add_argument("--open", action="store_true", help="enrol anyone (accept any cert)")
    server.add_argument("--max-enrolled", type=int, default=1024)
    client = sub.add_parser("client")
    client.add_argument("--platform", required=True)
    client.add_argument("--role", required=True)
    client.add_argument("--server-role", required=True)
    client.add_argument("--address", required=True)
    client.add_argument("--service-address", default="")
    client.add_argument("--megabytes", type=int, default=200)
    client.add_argument("--count", type=int, default=30)
    client.add_argument("scenario", choices=["ping", "hold", "transfer", "never-enrolled", "burst"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_server(args) if args.kind == "server" else run_client(args)


if __name__ == "__main__":
    sys.exit(main())

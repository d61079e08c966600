"""RA-TLS transport benchmark: sealfl.net's mutual RA-TLS against plain TLS on loopback.

Measures, side by side:

1. connect time: RA-TLS (fetch the server certificate, verify its simulated evidence, enrol our
   RA-TLS certificate with a signed nonce, mutual-TLS handshake) against a plain gRPC
   mutual-TLS connection with certificates provisioned in advance;
2. per-RPC latency of a small unary call on an established channel: sealfl's SecureServer
   (dynamic credentials, per-RPC allow-list check) against a vanilla ``grpc.server`` with
   ``ssl_server_credentials``. The plain side uses certificates of the same kind (fresh RA-TLS
   certificates, presented as ordinary TLS certificates), so the comparison isolates what
   sealfl adds per call from the certificates' contents (key type, size);
3. throughput of one large tensor: the RA-TLS gRPC stream (chunked upload, SHA-256 checked at
   the receiver) against a raw TLS socket sending the same bytes into a preallocated buffer,
   which the receiver also hashes (in 1 MiB steps) and acknowledges with the digest, so both
   receivers do the same integrity work. The best of the repeats is reported for each path,
   which is the least disturbed by other load on a shared machine.

The servers run in a separate process (as in a deployment, they do not share the client's
interpreter lock). Simulated evidence has no collateral to fetch, so "cached collateral" holds
trivially; a real SGX/TDX verification adds the quote check itself (no network).

Run with ``sealfl bench ratls`` (``--quick`` for a short run).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from sealfl.net import (
    SecureServer,
    TensorStore,
    TlsCredentials,
    TransferServicer,
    fetch_server_certificate,
    open_secure_channel,
    put_tensor,
)
from sealfl.net.addresses import split_address
from sealfl.net.certificates import pinning_name
from sealfl.net.protos import transfer_pb2, transfer_pb2_grpc

TARGET_CONNECT_MS = 50.0
TARGET_RPC_OVERHEAD = 0.05
TARGET_THROUGHPUT_RATIO = 0.5


# -- server process ---------------------------------------------------------------------------


def _ratls(platform_dir: Path, role: str) -> Any:
    from sealfl.tee import SimulatedPlatform, SimulatedTee, create_ratls_certificate

    platform = SimulatedPlatform.load(platform_dir)
    return create_ratls_certificate(SimulatedTee(platform, _measurement(role)))


def _as_plain_tls(credentials: Any) -> TlsCredentials:
    return TlsCredentials(cert_pem=credentials.cert_pem, key_pem=credentials.key_pem)


def _measurement(role: str) -> bytes:
    # A fixed value per role rather than measure_code(), which hashes sealfl's source and so
    # would differ between processes if the tree were edited while the benchmark runs.
    return hashlib.sha256(b"sealfl bench ratls measurement:" + role.encode()).digest()


def _ratls_verifier(platform_dir: Path, role: str) -> Any:
    from sealfl.tee import (
        Policy,
        SimulatedPlatform,
        Verifier,
        verify_ratls_certificate,
    )

    platform = SimulatedPlatform.load(platform_dir)
    policy = Policy.for_simulated(
        measurements=[_measurement(role)], platform_fingerprints=[platform.fingerprint]
    )
    verifier = Verifier(policy)
    return lambda pem: verify_ratls_certificate(pem, verifier)


def _raw_tls_server(creds: TlsCredentials, workdir: Path) -> tuple[socket.socket, int]:
    cert, key = workdir / "raw-cert.pem", workdir / "raw-key.pem"
    cert.write_bytes(creds.cert_pem)
    key.write_bytes(creds.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            while True:
                head = _recv_exact(tls, 8)
                if head is None:
                    return
                (size,) = struct.unpack("!Q", head)
                buffer = np.empty(size, dtype=np.uint8)
                view = memoryview(buffer)
                digest = hashlib.sha256()
                got = hashed = 0
                while got < size:
                    n = tls.recv_into(view[got:], min(size - got, 1 << 20))
                    if n == 0:
                        return
                    got += n
                    if got - hashed >= 1 << 20 or got == size:  # hash in 1 MiB steps, as
                        digest.update(view[hashed:got])  # the gRPC receiver does per chunk
                        hashed = got
                tls.sendall(digest.digest())
                del buffer, view

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, listener.getsockname()[1]


def _recv_exact(tls: ssl.SSLSocket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        piece = tls.recv(size - len(data))
        if not piece:
            return None
        data += piece
    return data


def _plain_server_credentials(workdir: Path) -> TlsCredentials:
    return TlsCredentials(
        cert_pem=(workdir / "tls-server-cert.pem").read_bytes(),
        key_pem=(workdir / "tls-server-key.pem").read_bytes(),
    )


def serve_raw(workdir: Path) -> None:
    """Server process for the raw TLS socket alone (no gRPC threads competing with it)."""
    listener, raw_port = _raw_tls_server(_plain_server_credentials(workdir), workdir)
    print(json.dumps({"raw": f"127.0.0.1:{raw_port}"}), flush=True)
    sys.stdin.read()
    listener.close()


def _vanilla_server(
    creds: TlsCredentials, client_pem: bytes, store_mb: int
) -> tuple[grpc.Server, str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    transfer_pb2_grpc.add_TransferServicer_to_server(
        TransferServicer(TensorStore(max_total_bytes=store_mb << 20)), server
    )
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(creds.key_pem, creds.cert_pem)],
            root_certificates=client_pem,
            require_client_auth=True,
        ),
    )
    server.start()
    return server, f"127.0.0.1:{port}"


def serve(workdir: Path, store_mb: int) -> None:
    """Server process: RA-TLS SecureServer and a vanilla gRPC mutual-TLS server."""
    platform_dir = workdir / "platform"
    client_tls_pem = (workdir / "client-tls-cert.pem").read_bytes()
    ratls = SecureServer(
        credentials=_ratls(platform_dir, "server"),
        peer_verifier=_ratls_verifier(platform_dir, "client"),
    )
    store = TensorStore(max_total_bytes=store_mb << 20)
    ratls.add_servicer(transfer_pb2_grpc.add_TransferServicer_to_server, TransferServicer(store))
    ratls_address = ratls.start()

    tls_creds = _plain_server_credentials(workdir)
    # Two identical plain servers: the second is the A/A control, which shows how much two
    # servers that do exactly the same work differ on this machine (threads, cores, caches).
    vanilla = [_vanilla_server(tls_creds, client_tls_pem, store_mb) for _ in range(2)]
    print(
        json.dumps(
            {
                "ratls": ratls_address,
                "tls": vanilla[0][1],
                "tls_control": vanilla[1][1],
                "tls_cert_pem": tls_creds.cert_pem.decode(),
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the benchmark closes our stdin
    for server, _ in vanilla:
        server.stop(0)
    ratls.stop(0)


# -- client side ------------------------------------------------------------------------------


def _vanilla_channel(address: str, server_pem: bytes, client: TlsCredentials) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(server_pem, client.key_pem, client.cert_pem)
    channel = grpc.secure_channel(
        address,
        creds,
        options=[
            ("grpc.ssl_target_name_override", pinning_name(server_pem)),
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", 8 << 20),
            ("grpc.max_receive_message_length", 8 << 20),
        ],
    )
    # The same readiness probe as sealfl.net's channels: one call, answered UNIMPLEMENTED.
    try:
        channel.unary_unary(
            "/sealfl.net.Probe/Connect", request_serializer=None, response_deserializer=None
        )(b"", timeout=10)
    except grpc.RpcError as exc:
        if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
            raise
    return channel


def _time_ms(connect: Any) -> float:
    started = time.perf_counter()
    channel = connect()
    elapsed = 1000 * (time.perf_counter() - started)
    channel.close()
    return elapsed


def _connect(addresses: dict[str, Any], workdir: Path, client_tls: TlsCredentials, n: int) -> dict:
    platform_dir = workdir / "platform"
    client_ratls = _ratls(platform_dir, "client")
    server_verifier = _ratls_verifier(platform_dir, "server")
    server_pem = addresses["tls_cert_pem"].encode()

    def ratls_once() -> Any:
        return open_secure_channel(
            addresses["ratls"], credentials=client_ratls, server_verifier=server_verifier
        )

    def tls_once() -> Any:
        return _vanilla_channel(addresses["tls"], server_pem, client_tls)

    ratls_once().close(), tls_once().close()  # warm up imports and code paths
    ratls_ms, tls_ms, fetch_ms, verify_ms = [], [], [], []
    for _ in range(n):  # closing is not part of connecting, so it stays outside the timing
        ratls_ms.append(_time_ms(ratls_once))
        tls_ms.append(_time_ms(tls_once))
        # The first two steps of the RA-TLS connect on their own, for the breakdown.
        started = time.perf_counter()
        pem = fetch_server_certificate(addresses["ratls"])
        fetched = time.perf_counter()
        server_verifier(pem)
        fetch_ms.append(1000 * (fetched - started))
        verify_ms.append(1000 * (time.perf_counter() - fetched))
    return {"ratls_ms": ratls_ms, "tls_ms": tls_ms, "fetch_ms": fetch_ms, "verify_ms": verify_ms}


def _latency(addresses: dict[str, Any], workdir: Path, client_tls: TlsCredentials, n: int) -> dict:
    """Median latency of a 64-byte Ping; a second plain server is an A/A control for noise."""
    platform_dir = workdir / "platform"
    secure = open_secure_channel(
        addresses["ratls"],
        credentials=_ratls(platform_dir, "client"),
        server_verifier=_ratls_verifier(platform_dir, "server"),
    )
    plain = [
        _vanilla_channel(addresses[name], addresses["tls_cert_pem"].encode(), client_tls)
        for name in ("tls", "tls_control")
    ]
    secure_ping = secure.stub(transfer_pb2_grpc.TransferStub).Ping
    request = transfer_pb2.PingRequest(payload=b"x" * 64)
    stubs = [transfer_pb2_grpc.TransferStub(c).Ping for c in plain]
    paths: dict[str, Any] = {
        "ratls_us": lambda: secure.call(secure_ping, request, timeout_s=5.0),
        "tls_us": lambda: stubs[0](request, timeout=5.0),
        "tls_control_us": lambda: stubs[1](request, timeout=5.0),
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    blocks: dict[str, list[float]] = {name: [] for name in paths}
    block = 10
    order = list(paths)
    for round_ in range(max(1, n // block)):  # short interleaved blocks: bursts hit all alike
        rotated = order[round_ % len(order) :] + order[: round_ % len(order)]  # no order bias
        for name in rotated:
            call = paths[name]
            times = []
            for _ in range(block):
                started = time.perf_counter()
                call()
                times.append(1e6 * (time.perf_counter() - started))
            samples[name].extend(times)
            blocks[name].append(statistics.median(times))
    secure.close()
    for channel in plain:
        channel.close()
    # Overhead as the median of paired block ratios: robust to bursts of load from elsewhere.
    for name in ("ratls_us", "tls_control_us"):
        ratios = [a / b for a, b in zip(blocks[name], blocks["tls_us"], strict=True)]
        samples[name.replace("_us", "_paired_ratio")] = ratios
    return samples


def _raw_tls_send(address: str, server_pem: bytes, data: np.ndarray) -> float:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=server_pem.decode())
    context.check_hostname = False  # pinned: the only trusted certificate is the server's
    host, port = split_address(address)
    expected = hashlib.sha256(data).digest()
    with (
        socket.create_connection((host, port)) as sock,
        context.wrap_socket(sock) as tls,
    ):
        started = time.perf_counter()
        tls.sendall(struct.pack("!Q", data.nbytes))
        view = memoryview(data)
        for offset in range(0, data.nbytes, 1 << 20):
            tls.sendall(view[offset : offset + (1 << 20)])
        reply = _recv_exact(tls, 32)
        elapsed = time.perf_counter() - started
    if reply != expected:
        raise RuntimeError("raw TLS baseline: the server hashed different bytes")
    return elapsed


def _throughput(addresses: dict[str, Any], workdir: Path, mb: int, repeats: int) -> dict:
    platform_dir = workdir / "platform"
    data = np.random.default_rng(1).integers(0, 256, size=mb << 20, dtype=np.uint8)
    secure = open_secure_channel(
        addresses["ratls"],
        credentials=_ratls(platform_dir, "client"),
        server_verifier=_ratls_verifier(platform_dir, "server"),
    )
    grpc_s, raw_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        put_tensor(secure, "bench", data, timeout_s=300.0)
        grpc_s.append(time.perf_counter() - started)
        raw_s.append(_raw_tls_send(addresses["raw"], addresses["tls_cert_pem"].encode(), data))
    secure.close()
    return {"bytes": int(data.nbytes), "ratls_grpc_s": grpc_s, "raw_tls_s": raw_s}


def _start_server(workdir: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, __file__, *args, str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("benchmark server process exited before it was ready")
    return process, json.loads(line)


def main(*, quick: bool = False, tensor_mb: int = 200, out: Path | None = None) -> dict:
    """Run the three measurements, print a table, and write JSON to ``out`` if given."""
    from sealfl.tee import SimulatedPlatform

    console = Console()
    connects, pings, repeats = (10, 1000, 1) if quick else (30, 4000, 3)
    with tempfile.TemporaryDirectory(prefix="sealfl-bench-ratls-") as tmp:
        workdir = Path(tmp)
        SimulatedPlatform.create(workdir / "platform")
        # Plain TLS gets certificates of the same kind as RA-TLS (same key type and size).
        client_tls = _as_plain_tls(_ratls(workdir / "platform", "client"))
        (workdir / "client-tls-cert.pem").write_bytes(client_tls.cert_pem)
        server_tls = _as_plain_tls(_ratls(workdir / "platform", "server"))
        (workdir / "tls-server-cert.pem").write_bytes(server_tls.cert_pem)
        (workdir / "tls-server-key.pem").write_bytes(server_tls.key_pem)
        server, addresses = _start_server(workdir, "--serve", str(tensor_mb + 8))
        raw_server, raw = _start_server(workdir, "--serve-raw")
        addresses.update(raw)
        try:
            console.print("connect + verify + enrol ...")
            connect = _connect(addresses, workdir, client_tls, connects)
            console.print("per-RPC latency ...")
            latency = _latency(addresses, workdir, client_tls, pings)
            console.print(f"{tensor_mb} MB tensor throughput ...")
            throughput = _throughput(addresses, workdir, tensor_mb, repeats)
        finally:
            for process in (server, raw_server):
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=10)
    results = _summarise(connect, latency, throughput)
    _print(console, results)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        _plot(results, out.with_suffix(".png"))
        console.print(f"results written to {out} and {out.with_suffix('.png')}")
    return results


def _summarise(connect: dict, latency: dict, throughput: dict) -> dict:
    med = statistics.median
    ratls_connect, tls_connect = med(connect["ratls_ms"]), med(connect["tls_ms"])
    ratls_rpc, tls_rpc = med(latency["ratls_us"]), med(latency["tls_us"])
    overhead = med(latency["ratls_paired_ratio"]) - 1
    size = throughput["bytes"]
    grpc_mb_s = size / min(throughput["ratls_grpc_s"]) / 1e6
    raw_mb_s = size / min(throughput["raw_tls_s"]) / 1e6
    return {
        "connect_ms": {"ratls_median": ratls_connect, "tls_median": tls_connect,
                       "fetch_median": med(connect["fetch_ms"]),
                       "verify_median": med(connect["verify_ms"]),
                       "ratls_p90": _p90(connect["ratls_ms"]), "tls_p90": _p90(connect["tls_ms"]),
                       "target_ms": TARGET_CONNECT_MS, "met": ratls_connect <= TARGET_CONNECT_MS},
        "rpc_us": {"ratls_median": ratls_rpc, "tls_median": tls_rpc,
                   "aa_noise": med(latency["tls_control_paired_ratio"]) - 1,
                   "overhead": overhead, "target_overhead": TARGET_RPC_OVERHEAD,
                   "met": overhead <= TARGET_RPC_OVERHEAD},
        "throughput_mb_s": {"bytes": size, "ratls_grpc": grpc_mb_s, "raw_tls": raw_mb_s,
                            "ratio": grpc_mb_s / raw_mb_s, "target_ratio": TARGET_THROUGHPUT_RATIO,
                            "met": grpc_mb_s / raw_mb_s >= TARGET_THROUGHPUT_RATIO},
        "cpus": os.cpu_count(),
    }  # fmt: skip


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def _print(console: Console, r: dict) -> None:
    table = Table(title="sealfl.net: mutual RA-TLS vs plain TLS on loopback")
    table.add_column("measure", no_wrap=True)
    for column in ("RA-TLS (sealfl.net)", "plain TLS", "ratio", "target", "met"):
        table.add_column(column)
    c, p, t = r["connect_ms"], r["rpc_us"], r["throughput_mb_s"]
    table.add_row(
        "connect, median ms", f"{c['ratls_median']:.1f} (p90 {c['ratls_p90']:.1f})",
        f"{c['tls_median']:.1f} (p90 {c['tls_p90']:.1f})",
        f"{c['ratls_median'] / c['tls_median']:.1f}x", f"<= {c['target_ms']:.0f} ms",
        "yes" if c["met"] else "NO",
    )  # fmt: skip
    table.add_row(
        "unary RPC, median µs", f"{p['ratls_median']:.0f}", f"{p['tls_median']:.0f}",
        f"{100 * p['overhead']:+.1f}% (A/A {100 * p['aa_noise']:+.1f}%)",
        f"<= +{100 * p['target_overhead']:.0f}%",
        "yes" if p["met"] else "NO",
    )  # fmt: skip
    table.add_row(
        f"{t['bytes'] >> 20} MB stream, MB/s", f"{t['ratls_grpc']:.0f} (gRPC stream)",
        f"{t['raw_tls']:.0f} (raw socket)", f"{t['ratio']:.2f}",
        f">= {t['target_ratio']:.2f}", "yes" if t["met"] else "NO",
    )  # fmt: skip
    console.print(table)
    console.print(
        f"RA-TLS connect = fetch server certificate ({c['fetch_median']:.1f} ms) + verify its "
        f"evidence ({c['verify_median']:.1f} ms) + enrol (nonce, signature, client evidence "
        f"check) + mutual-TLS handshake; plain TLS = handshake with provisioned certificates.",
        highlight=False,
    )


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, p, t = r["connect_ms"], r["rpc_us"], r["throughput_mb_s"]
    panels = [
        ("connect (ms)", "plain TLS", c["ratls_median"], c["tls_median"], c["target_ms"]),
        ("unary RPC (µs)", "plain TLS", p["ratls_median"], p["tls_median"], None),
        (f"{t['bytes'] >> 20} MB (MB/s)", "raw TLS socket", t["ratls_grpc"], t["raw_tls"], None),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for axis, (title, baseline, ratls, plain, target) in zip(axes, panels, strict=True):
        axis.bar(["RA-TLS gRPC", baseline], [ratls, plain], color=["#4c72b0", "#999999"])
        if target is not None:
            axis.axhline(target, color="#c44e52", linestyle="--", label="target")
            axis.legend(loc="upper right")
        axis.set_title(title)
    figure.suptitle("sealfl.net on loopback: mutual RA-TLS vs plain TLS")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[3]), int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--serve-raw":
        serve_raw(Path(sys.argv[2]))
    else:
        main(quick="--quick" in sys.argv)

"""Hostile peers for the availability tests and the availability benchmark (also a script).

* :class:`HalfSentCalls` opens calls and never sends their request message, the way the issue's
  attacker parked a server's threads. Two flavours: ``raw`` speaks HTTP/2 by hand over a TLS
  socket (a preface, SETTINGS, then one HEADERS frame per call and never a DATA frame; no gRPC
  library involved, which is what an outsider would use), ``grpc`` uses a client-streaming call
  whose request iterator never yields. Each call gets its own connection unless told otherwise,
  so a per-connection stream limit does not stop it.
* :func:`enrol_throwaway` enrols a fresh self-signed certificate at a server's front door, as
  anyone may at an accept-any server, and returns what an attacker needs to reach the service
  listener (which only enrolled certificates can).

As a script it holds its calls until its stdin closes and reports JSON lines on stdout::

    attackers.py half-sent --address HOST:PORT --calls 8 [--flavour raw|grpc] [--service]
                           [--method /sealfl.net.Enrolment/Challenge]
    attackers.py flood-enrol --address HOST:PORT --count 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import socket
import ssl
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from sealfl.net import (
    TlsCredentials,
    accept_any_certificate,
    fetch_server_certificate,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.net.addresses import split_address
from sealfl.net.certificates import pinning_name

CHALLENGE = "/sealfl.net.Enrolment/Challenge"
PING = "/sealfl.net.Transfer/Ping"

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
_ACK, _END_HEADERS = 0x1, 0x4


@dataclass(frozen=True)
class Target:
    """Where to park calls, and the TLS material to get there."""

    address: str
    server_pem: bytes
    client: TlsCredentials | None = None  # needed on a mutual-TLS service listener


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)


def _literal(name: str, value: str) -> bytes:
    """HPACK "literal header field without indexing, new name", no Huffman (RFC 7541 6.2.2)."""
    out = bytearray([0x00])
    for part in (name.encode(), value.encode()):
        if len(part) >= 127:
            raise ValueError(f"header part too long for this tiny encoder: {part!r}")
        out += bytes([len(part)]) + part
    return bytes(out)


class _RawConnection:
    """One TLS connection speaking just enough HTTP/2 to open calls and then say nothing.

    All its socket I/O happens on its own thread: an ``ssl`` socket must not be read and
    written from two threads at once (that corrupts the TLS stream, and the server would drop
    the connection for the wrong reason).
    """

    def __init__(self, target: Target, method: str, source_host: str | None = None) -> None:
        host, port = split_address(target.address)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        if target.client is not None:
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
                cert.write_bytes(target.client.cert_pem)
                key.write_bytes(target.client.key_pem)
                context.load_cert_chain(cert, key)
        source = None if source_host is None else (source_host, 0)
        raw = socket.create_connection((host, port), timeout=10, source_address=source)
        self._tls = context.wrap_socket(raw, server_hostname=None)
        self._tls.settimeout(0.05)
        self._outbox: queue.Queue[bytes] = queue.Queue()
        self._method = method
        self._authority = target.address
        self._next_stream = 1
        self._stop = threading.Event()
        self.ended: set[int] = set()  # streams the server reset or answered
        self.closed = False
        self._outbox.put(_PREFACE + _frame(_SETTINGS, 0, 0))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def open_call(self) -> None:
        """Send HEADERS for a call, without END_STREAM, and never a DATA frame."""
        block = b"".join(
            _literal(name, value)
            for name, value in (
                (":method", "POST"),
                (":scheme", "https"),
                (":path", self._method),
                (":authority", self._authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            )
        )
        stream = self._next_stream
        self._next_stream += 2
        self._outbox.put(_frame(_HEADERS, _END_HEADERS, stream, block) + block)

    def _run(self) -> None:
        # Answer SETTINGS and PING as a live peer must, so the server cannot drop us for that.
        buffer = b""
        try:
            while not self._stop.is_set():
                while not self._outbox.empty():
                    self._tls.sendall(self._outbox.get())
                try:
                    chunk = self._tls.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    kind, flags = buffer[3], buffer[4]
                    stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                    payload, buffer = buffer[9 : 9 + length], buffer[9 + length :]
                    if kind == _SETTINGS and not flags & _ACK:
                        self._outbox.put(_frame(_SETTINGS, _ACK, 0))
                    elif kind == _PING and not flags & _ACK:
                        self._outbox.put(_frame(_PING, _ACK, 0, payload) + payload)
                    elif kind == _RST_STREAM or (kind == _HEADERS and flags & 0x1):
                        self.ended.add(stream)  # reset, or trailers: the server ended it
                    elif kind == _GOAWAY:
                        self._stop.set()
        except OSError:
            pass
        self.closed = True
        with contextlib.suppress(OSError):
            self._tls.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


class HalfSentCalls:
    """``calls`` calls to ``method`` that never send their request; :meth:`stop` ends them.

    ``ended()`` says how many the server has ended on its own (reset or answered): with read
    deadlines it ends them all after a while; a server that parks them ends none.
    ``source_host`` (raw only) binds the attacker's side to another loopback address, such as
    127.0.0.2, so a server can tell it from honest clients on 127.0.0.1 as it would tell two
    hosts apart.
    """

    def __init__(
        self,
        target: Target,
        *,
        calls: int,
        method: str = CHALLENGE,
        flavour: str = "raw",
        calls_per_connection: int = 1,
        source_host: str | None = None,
    ) -> None:
        self._stop = threading.Event()
        self._raw: list[_RawConnection] = []
        self._channels: list[grpc.Channel] = []
        self._futures: list[Any] = []
        for index in range(calls):
            if flavour == "raw":
                if index % calls_per_connection == 0:
                    self._raw.append(_RawConnection(target, method, source_host))
                self._raw[-1].open_call()
            elif flavour == "grpc":
                if index % calls_per_connection == 0:
                    self._channels.append(_grpc_channel(target))
                multi = self._channels[-1].stream_unary(method)
                self._futures.append(multi.future(self._never()))
            else:
                raise ValueError(f"flavour: expected 'raw' or 'grpc', got {flavour!r}")

    def _never(self) -> Iterator[bytes]:
        self._stop.wait()
        yield from ()

    def ended(self) -> int:
        """How many of the calls the server has ended by itself."""
        if self._raw:
            return sum(len(c.ended) for c in self._raw)
        return sum(1 for f in self._futures if f.done())

    def stop(self) -> None:
        self._stop.set()
        for connection in self._raw:
            connection.close()
        for future in self._futures:
            future.cancel()
        for channel in self._channels:
            channel.close()


def _grpc_channel(target: Target) -> grpc.Channel:
    client = target.client
    creds = grpc.ssl_channel_credentials(
        root_certificates=target.server_pem,
        private_key=None if client is None else client.key_pem,
        certificate_chain=None if client is None else client.cert_pem,
    )
    return grpc.secure_channel(
        target.address,
        creds,
        options=[
            ("grpc.ssl_target_name_override", pinning_name(target.server_pem)),
            ("grpc.use_local_subchannel_pool", 1),
        ],
    )


def front_door(address: str) -> Target:
    """The front door at ``address``: anyone may connect (no client certificate)."""
    return Target(address, fetch_server_certificate(address))


def enrol_throwaway(address: str) -> Target:
    """Enrol a fresh certificate at an accept-any server; return its service listener.

    The channel is left open and unclosed on purpose: the enrolment stays, as a careless or
    hostile client's would.
    """
    client = make_self_signed_credentials("attacker")
    channel = open_secure_channel(
        address, credentials=client, server_verifier=accept_any_certificate, timeout_s=10.0
    )
    target = Target(channel.address, channel.server_certificate_pem, client)
    _kept.append(channel)
    return target


_kept: list[Any] = []


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    half = sub.add_parser("half-sent")
    half.add_argument("--address", required=True)
    half.add_argument("--calls", type=int, default=8)
    half.add_argument("--flavour", choices=["raw", "grpc"], default="raw")
    half.add_argument("--method", default="")
    half.add_argument("--service", action="store_true", help="enrol, then park service calls")
    half.add_argument("--per-connection", type=int, default=1)
    half.add_argument("--source-host", default=None)
    flood = sub.add_parser("flood-enrol")
    flood.add_argument("--address", required=True)
    flood.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    if args.kind == "flood-enrol":
        for _ in range(args.count):
            enrol_throwaway(args.address)
        _emit("flooded", count=args.count)
        sys.stdin.read()
        return 0
    target = enrol_throwaway(args.address) if args.service else front_door(args.address)
    method = args.method or (PING if args.service else CHALLENGE)
    calls = HalfSentCalls(
        target,
        calls=args.calls,
        method=method,
        flavour=args.flavour,
        calls_per_connection=args.per_connection,
        source_host=args.source_host,
    )
    _emit("holding", calls=args.calls, address=target.address, method=method)
    for line in sys.stdin:
        if line.strip() == "status":
            _emit("status", ended=calls.ended())
    calls.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

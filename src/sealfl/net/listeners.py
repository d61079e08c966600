"""The two kinds of gRPC listener a :class:`~sealfl.net.SecureServer` runs, behind one face.

* :class:`AsyncListener` serves on an asyncio loop (``grpc.aio``), with the handlers bridged
  (:mod:`sealfl.net.bridge`): a call whose request has not arrived holds no thread, has a read
  deadline, and counts against its source address's limit. The front door is always one, and
  so is the service listener of a server that admits anyone, because there the callers are
  anonymous or self-enrolled and may be hostile.
* :class:`ThreadedListener` is gRPC's threaded server. It reads each request on a worker
  thread, so a peer that opens calls and never sends them holds threads until it goes away;
  it is kept for service listeners whose callers all passed attestation, because a small call
  costs about 210 µs there against 320-400 µs on the asyncio path (measured on loopback, 2
  cores, TLS; the RA-TLS benchmark's per-call target is +5 % over plain gRPC).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
import grpc.aio

from sealfl.errors import ChannelError
from sealfl.net.admission import AdmissionPolicy, PeerAdmission
from sealfl.net.bridge import Bridge, HandlerCollector
from sealfl.net.guard import GuardedRegistrar, PeerCheck, WrappingRegistrar
from sealfl.net.loop import LoopThread

__all__ = ["AsyncListener", "ThreadedListener"]

Options = Sequence[tuple[str, Any]]


def _bound(port: int, address: str) -> int:
    if port == 0:
        raise ChannelError(f"SecureServer: cannot bind {address} (in use or not local)")
    return port


class ThreadedListener:
    """gRPC's threaded server: ``max_workers`` threads, ``max_concurrent_rpcs`` admitted calls."""

    def __init__(
        self, *, name: str, options: Options, max_workers: int, max_concurrent_rpcs: int | None
    ) -> None:
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
            options=list(options),
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )

    def registrar(self, check: PeerCheck | None) -> grpc.Server:
        """Return what generated ``add_XServicer_to_server`` functions register with."""
        if check is None:
            return self._server
        return cast(grpc.Server, GuardedRegistrar(self._server, check))

    def bind(self, loop: LoopThread, address: str, credentials: grpc.ServerCredentials) -> int:
        """Bind ``address``; return the port."""
        try:
            port = self._server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise ChannelError(f"SecureServer: cannot bind {address}: {exc}") from exc
        return _bound(int(port), address)

    def start(self, loop: LoopThread) -> None:
        """Start serving."""
        self._server.start()

    def stop(self, loop: LoopThread, grace: float | None) -> None:
        """Stop, letting calls in flight finish for ``grace`` seconds, and wait."""
        self._server.stop(grace).wait()


class AsyncListener:
    """gRPC's asyncio server on the server's loop, with bridged handlers (module docstring)."""

    def __init__(
        self, *, name: str, options: Options, max_workers: int, admission: AdmissionPolicy
    ) -> None:
        self._options = list(options)
        self._admission = admission
        self._peers = PeerAdmission(admission)  # one count per listener, whatever registers
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._collector = HandlerCollector()
        self._server: grpc.aio.Server | None = None

    def registrar(self, check: PeerCheck | None) -> grpc.Server:
        """Return what generated ``add_XServicer_to_server`` functions register with."""
        bridge = Bridge(executor=self._executor, admission=self._peers, check=check)
        return cast(grpc.Server, WrappingRegistrar(self._collector, bridge.wrap))

    def bind(self, loop: LoopThread, address: str, credentials: grpc.ServerCredentials) -> int:
        """Make the server on ``loop`` (first time), bind ``address``; return the port."""

        async def bind() -> int:
            if self._server is None:
                self._server = grpc.aio.server(
                    options=self._options,
                    maximum_concurrent_rpcs=self._admission.max_calls,
                )
                self._server.add_generic_rpc_handlers(tuple(self._collector.handlers))
            return int(self._server.add_secure_port(address, credentials))

        try:
            port = loop.run(bind())
        except RuntimeError as exc:
            raise ChannelError(f"SecureServer: cannot bind {address}: {exc}") from exc
        return _bound(port, address)

    def start(self, loop: LoopThread) -> None:
        """Start serving."""
        if self._server is not None:
            loop.run(self._server.start())

    def stop(self, loop: LoopThread, grace: float | None) -> None:
        """Stop, letting calls in flight finish for ``grace`` seconds, and wait."""
        if self._server is not None:
            with contextlib.suppress(ChannelError):  # the loop is gone: nothing is served
                loop.run(self._server.stop(grace), timeout=(grace or 0) + 10.0)
        self._executor.shutdown(wait=False, cancel_futures=True)

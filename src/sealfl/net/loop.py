"""An asyncio event loop on a background thread, for the listeners that serve gRPC with asyncio.

A :class:`~sealfl.net.server.SecureServer` keeps its callers' threads free: its asyncio
listeners (``grpc.aio``) run on one loop of their own, started and stopped with the server, and
the rest of the program talks to it only through :meth:`LoopThread.run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sealfl.errors import ChannelError

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """One event loop running forever on a daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None = 30.0) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its exception).

        Raises
        ------
        ChannelError
            If the loop has stopped, or the coroutine takes longer than ``timeout`` seconds.
        """
        if not self._thread.is_alive():
            coroutine.close()
            raise ChannelError("the server's event loop has stopped")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise ChannelError(f"the server's event loop did not answer in {timeout} s") from exc

    def stop(self) -> None:
        """Stop the loop and wait for its thread (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10.0)

"""The worker process of :mod:`sealfl.he._parallel`: a dedicated entry point, nothing else.

A worker is a fresh interpreter started as ``python -I -c "<boot>" FD PATH...``: the boot line
sets ``sys.path`` to the parent's, imports this module and calls :func:`serve`. Nothing of the
program that started it is imported or run, whatever that program is (a script without an
``if __name__ == "__main__":`` guard, a script piped on standard input, an interactive session).
multiprocessing's ``spawn`` and ``forkserver`` start methods re-import the parent's ``__main__``
in every worker, which re-ran such scripts (a key pair generated per worker) or failed on
``<stdin>``; this entry point has no such step.

The worker reads ``(function, arguments)`` from its end of a socket pair, runs the function and
sends back ``(True, result)`` or ``(False, exception)``, until the parent closes its end. The
objects cross with multiprocessing's pickling, between this process and the process that
started it, over an anonymous socket pair that no one else holds: never over a network and
never from a file. The functions are named by module and qualified name and imported here;
:func:`sealfl.he._parallel.run_in_processes` refuses to send a function of ``__main__``.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

BOOT = (
    "import sys; sys.path[:] = sys.argv[2:]; "
    "from sealfl.he._worker import serve; serve(int(sys.argv[1]))"
)
"""The ``-c`` program of a worker process: argv[1] is its socket's fd, argv[2:] the path."""


def _sendable(exc: BaseException) -> BaseException:
    """Return ``exc`` if it survives the trip to the parent, else a RuntimeError naming it."""
    try:
        ForkingPickler.loads(ForkingPickler.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return exc


def serve(fd: int) -> None:
    """Run jobs sent on socket ``fd`` until the parent closes it; then return."""
    # Ctrl-C reaches the whole foreground process group: the parent decides what to do about
    # it (it stops this process by closing the socket), so it must not kill a worker mid-job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed its end or has gone
        reply: tuple[bool, Any]
        try:
            reply = (True, fn(*args))
        except BaseException as exc:
            reply = (False, _sendable(exc))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result that cannot be pickled
            conn.send((False, _sendable(RuntimeError(f"cannot return the result: {exc}"))))


if __name__ == "__main__":  # pragma: no cover - started through BOOT, not as a script
    sys.exit("sealfl.he._worker is started by sealfl.he._parallel")

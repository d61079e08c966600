"""Addresses, before the RA-TLS machinery: can the PS listen there, does a TLS server answer there.

Two questions whose answers used to arrive late or in gRPC's words:

- :func:`check_can_listen` (the PS, before it creates anything): is the port free and the
  host one of this machine's? "address in use" becomes one line naming the option, exit 2;
- :func:`wait_for_tls_server` (a worker, before it verifies the PS): is anything listening yet
  (wait for it, ``--wait-for-server``), and does it speak TLS? Something that accepts the
  connection but does not complete a TLS handshake is the wrong port, which no amount of
  retrying fixes, so that is said at once rather than after the channel's retries.

These are availability and usability checks only; trust still comes from verifying the PS's
certificate afterwards.
"""

from __future__ import annotations

import errno
import random
import socket
import ssl
import time
from collections.abc import Callable

from sealfl.errors import ChannelError, ConfigError
from sealfl.net.addresses import split_address

HANDSHAKE_TIMEOUT_S = 5.0
"""How long a server that accepted the connection gets to complete a TLS handshake."""


def check_can_listen(address: str, *, where: str) -> None:
    """Refuse an address this process could not listen on, naming the option ``where``.

    Port 0 (pick a free port) always passes. The probe socket is closed at once; the server
    binds for real afterwards, so a port taken in between still fails there.

    Raises
    ------
    ConfigError
        If the port is in use, the host is not an address of this machine (or unknown), or
        the port needs privileges.
    """
    host, port = split_address(address)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"{where} {address}: unknown host {host!r} ({exc.strerror})") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gRPC does: a port whose old connections linger in TIME_WAIT is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise ConfigError(f"{where} {address}: {_bind_problem(exc)}") from None


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            "the port is in use (another program, or another PS, listens there); choose "
            "another port or stop that program"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine; give one of its addresses, or 0.0.0.0 for all"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); choose a port above 1023"
    return f"cannot listen there ({exc.strerror or exc})"


def wait_for_tls_server(
    address: str,
    *,
    wait_s: float,
    where: str = "--server",
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once a TLS server answers at ``address``, waiting up to ``wait_s`` for one.

    Parameters
    ----------
    address
        ``host:port`` of the server's front door.
    wait_s
        How long to keep trying while nothing accepts connections there (0: one try).
    where
        The option that gave the address, for messages.
    handshake_timeout_s
        How long something that accepted the connection gets to complete a TLS handshake.
    clock, sleep
        Injectable for tests.

    Raises
    ------
    ChannelError
        If nothing accepts connections at ``address`` within ``wait_s``.
    ConfigError
        If something accepts connections there but does not complete a TLS handshake (a
        wrong port): said at once, without waiting.
    """
    host, port = split_address(address)
    deadline = clock() + wait_s
    attempt = 0
    while True:
        remaining = deadline - clock()
        try:
            with socket.create_connection(
                (host, port), timeout=max(min(remaining, 10.0), 1.0)
            ) as sock:
                _require_tls(sock, address, where, handshake_timeout_s)
            return
        except OSError as exc:  # refused, reset, unreachable: not there yet
            if clock() >= deadline:
                waited = f" within {wait_s:g} s" if wait_s > 0 else ""
                hint = "" if wait_s > 0 else "; start the PS first, or give --wait-for-server S"
                raise ChannelError(
                    f"{where} {address}: nothing accepts connections there{waited} "
                    f"({exc.strerror or exc}){hint}"
                ) from None
        # Jittered backoff up to 2 s: many workers waiting for one PS do not call in step.
        pause = random.uniform(0.5, 1.0) * min(2.0, 0.2 * 2**attempt)
        sleep(min(max(deadline - clock(), 0.0), pause))
        attempt += 1


def _require_tls(sock: socket.socket, address: str, where: str, timeout_s: float) -> None:
    """Complete a TLS handshake on ``sock`` or raise :class:`ConfigError` (not a TLS server).

    A reset connection is re-raised as it is: a server going down or coming up, not a sign of
    the wrong port.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust is decided later, by verifying the evidence
    context.set_alpn_protocols(["h2"])
    sock.settimeout(timeout_s)
    try:
        with context.wrap_socket(sock, server_hostname=None):
            return
    except TimeoutError:
        problem = f"no TLS handshake within {timeout_s:g} s"
    except ssl.SSLError as exc:
        problem = f"the TLS handshake failed: {exc.reason or exc}"
    raise ConfigError(
        f"{where} {address}: something accepts connections there but it is not a TLS server "
        f"({problem}); give the PS's front door, the address its log prints after 'listening on'"
    )

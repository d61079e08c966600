"""``host:port`` addresses, IPv6 included (``[::1]:50051``), and the transport's size defaults."""

from __future__ import annotations

from sealfl.errors import ConfigError

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "join_address", "split_address"]

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""8 MiB per message either way: room for a 2-4 MiB tensor chunk; larger payloads are streamed."""


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) into its parts, raising :class:`ConfigError`."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address: expected 'host:port', got {address!r}")
    return host.strip("[]"), int(port)


def join_address(host: str, port: int) -> str:
    """Join a host and a port, bracketing an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

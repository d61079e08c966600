"""Separate "hosts" on one machine: Linux network namespaces joined by a bridge.

Each host is a network namespace with its own loopback and one veth into a bridge that lives in
a namespace of its own, so hosts reach each other only over 10.x addresses, as machines on a LAN
would, and nothing touches the root namespace's network. Processes are started inside with
``ip netns exec`` (which execs, so the PID we keep is the party's own); cleanup kills what we
started by PID, then anything else still inside our namespaces (``ip netns pids``), then
deletes the namespaces, which removes the veths and the bridge, on failure too.

Needs root and ``ip`` with netns support; :func:`skip_reason` says why not, for ``pytest.skip``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from party_processes import PartyProcess

_IP_TIMEOUT_S = 10


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=check
    )


def skip_reason() -> str | None:
    """Return why namespaces cannot be used here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"sflprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Lan:
    """Hosts (namespaces) on one bridge; see the module docstring."""

    prefix: str
    subnet: str
    hosts: dict[str, str] = field(default_factory=dict)
    processes: list[PartyProcess] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def namespace(self, host: str) -> str:
        return f"{self.prefix}{list(self.hosts).index(host)}"

    def address(self, host: str) -> str:
        return self.hosts[host]

    def add_host(self, host: str) -> str:
        """Create the host's namespace and link; return its address."""
        index = len(self.hosts)
        address = f"{self.subnet}.{10 + index}"
        self.hosts[host] = address
        ns = self.namespace(host)
        bridge_ns = f"{self.prefix}br"
        inside, outside = f"{self.prefix}h{index}", f"{self.prefix}p{index}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "netns", bridge_ns)
        _ip("-n", bridge_ns, "link", "set", outside, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return address

    def start(
        self, host: str, name: str, argv: list[str], logs: Path, *, timeout_s: float
    ) -> PartyProcess:
        """Start ``argv`` on ``host``; its output goes to ``logs/<name>.log``."""
        party = PartyProcess(
            name, ["ip", "netns", "exec", self.namespace(host), *argv], logs, timeout_s=timeout_s
        )
        self.processes.append(party)
        return party

    def reachable(self, source: str, target: str) -> bool:
        """Whether ``source`` reaches ``target`` (a refused TCP connection counts: it answered)."""
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(('{self.address(target)}', 9), timeout=3).close()\n"
            "except ConnectionRefusedError:\n"
            "    pass\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace(source), sys.executable, "-c", probe],
            capture_output=True,
            timeout=_IP_TIMEOUT_S,
        )
        return done.returncode == 0

    def close(self) -> None:
        for party in self.processes:
            party.stop()
        for ns in self.namespaces:
            listed = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in listed:
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)


@contextmanager
def lan(hosts: list[str]) -> Iterator[Lan]:
    """Yield a LAN of ``hosts``; every namespace is deleted afterwards, whatever happened."""
    tag = os.getpid() % 10000
    prefix = f"sfl{tag}"
    net = Lan(prefix=prefix, subnet=f"10.231.{tag % 250}")
    try:
        bridge_ns = f"{prefix}br"
        _ip("netns", "add", bridge_ns)
        net.namespaces.append(bridge_ns)
        _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge_ns, "link", "set", "br0", "up")
        for host in hosts:
            net.add_host(host)
        yield net
    finally:
        net.close()

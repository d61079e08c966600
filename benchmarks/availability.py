"""Availability under hostile peers: issue 10's attacks (items 1, 3, 4), and what honest waits.

Every party is its own process on loopback: a server (``tests/net/net_peer.py server``, RA-TLS
on the simulated TEE), an attacker (``tests/net/attackers.py``), and honest clients
(``net_peer.py client``), which report how long they took to connect (fetch and verify the
server certificate, enrol, mutual-TLS handshake) and to make one call. Scenarios:

* ``baseline``: no attack;
* ``front-door-8``: 8 calls to ``Enrolment/Challenge`` whose request never comes (item 1);
* ``service-8``: the same on the service listener of a server that enrols anyone (item 1);
* ``front-door-200-other-host``: 200 such calls from 127.0.0.2, another host as far as the
  server can tell (its share is 64; the rest are refused at once);
* ``front-door-200-same-host``: the same from the honest clients' own address, the limit of
  the defence: they share the attacker's 64 slots until its calls' read deadline (10 s) ends
  them, and an honest client gives up after 9-18 s of busy refusals;
* ``flood-1100``: 1100 anonymous enrolments that never leave, at a server that enrols anyone
  with the default 1024 slots (item 3);
* ``burst-30`` / ``burst-100``: that many honest clients at once (item 4).

Run ``python benchmarks/availability.py`` (``--quick`` for fewer honest runs, ``--json FILE``).
``--pythonpath DIR`` runs the parties against another checkout's ``src`` (e.g. the one before
these changes) to compare. Measurements, not assertions: the tests in
``tests/net/test_net_availability.py`` assert that honest parties are served.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "net" / "net_peer.py"
ATTACKER = ROOT / "tests" / "net" / "attackers.py"


class Process:
    """A party: its JSON-lines events on a queue, stopped by :meth:`stop`."""

    def __init__(self, script: Path, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put({"event": "eof", "returncode": self.process.wait()})

    def expect(self, *names: str, timeout: float = 120.0) -> dict[str, Any]:
        event = self.events.get(timeout=timeout)
        if event["event"] not in names:
            raise RuntimeError(f"expected {names}, got {event}")
        return event

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _honest(platform: Path, address: str, env: dict[str, str]) -> dict[str, Any]:
    """One honest client: connect and ping; its times, or its error."""
    client = Process(
        PEER, "client", "--platform", str(platform), "--role", "worker-1",
        "--server-role", "ps", "--address", address, "ping", env=env,
    )  # fmt: skip
    try:
        first = client.expect("connected", "error", "eof", timeout=120)
        if first["event"] != "connected":
            return {"error": first.get("message", f"exit {first.get('returncode')}")}
        pong = client.expect("pong", "error", timeout=60)
        if pong["event"] != "pong":
            return {"error": pong["message"]}
        return {"open_ms": first["open_ms"], "ping_ms": pong["ping_ms"]}
    finally:
        client.stop()


def _scenario(name: str, platform: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    server_args = ["--open"] if name.startswith(("service", "flood")) else []
    server = Process(
        PEER, "server", "--platform", str(platform), "--role", "ps", "--accept", "worker-1",
        *server_args, env=env,
    )  # fmt: skip
    attacker: Process | None = None
    try:
        address = server.expect("ready")["address"]
        attack: list[str] = []
        if name == "front-door-8":
            attack = ["half-sent", "--address", address, "--calls", "8"]
        elif name == "service-8":
            attack = ["half-sent", "--address", address, "--calls", "8", "--service"]
        elif name.startswith("front-door-200"):
            attack = ["half-sent", "--address", address, "--calls", "200"]
            if name.endswith("other-host"):
                attack += ["--source-host", "127.0.0.2"]
        elif name == "flood-1100":
            attack = ["flood-enrol", "--address", address, "--count", "1100"]
        if name.startswith("burst-"):
            return _burst(platform, address, int(name.split("-")[1]), env)
        attack_note = ""
        if attack:
            attacker = Process(ATTACKER, *attack, env=env)
            started = time.perf_counter()
            held = attacker.expect("holding", "flooded", "eof", timeout=600)
            if held["event"] == "eof":
                attack_note = "the attack itself failed (refused)"
            else:
                attack_note = f"attack in place after {time.perf_counter() - started:.1f} s"
        results = [_honest(platform, address, env) for _ in range(runs)]
        return _summary(name, results, attack_note)
    finally:
        if attacker is not None:
            attacker.stop()
        server.stop()


def _burst(platform: Path, address: str, count: int, env: dict[str, str]) -> dict[str, Any]:
    client = Process(
        PEER, "client", "--platform", str(platform), "--role", "worker-1",
        "--server-role", "ps", "--address", address, "--count", str(count), "burst", env=env,
    )  # fmt: skip
    try:
        result = client.expect("burst", timeout=300)
    finally:
        client.stop()
    return {
        "scenario": f"burst-{count}",
        "served": f"{result['served']}/{count}",
        "open+ping median ms": _round(result["median_ms"]),
        "open+ping max ms": _round(result["max_ms"]),
        "first error": (result["errors"] or [""])[0][:120],
        "note": "",
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _summary(name: str, results: list[dict[str, Any]], note: str) -> dict[str, Any]:
    served = [r for r in results if "error" not in r]
    totals = [r["open_ms"] + r["ping_ms"] for r in served]
    errors = [r["error"] for r in results if "error" in r]
    return {
        "scenario": name,
        "served": f"{len(served)}/{len(results)}",
        "open+ping median ms": _round(statistics.median(totals)) if totals else None,
        "open+ping max ms": _round(max(totals)) if totals else None,
        "first error": (errors or [""])[0][:120],
        "note": note,
    }


SCENARIOS = [
    "baseline",
    "front-door-8",
    "service-8",
    "front-door-200-other-host",
    "front-door-200-same-host",
    "flood-1100",
    "burst-30",
    "burst-100",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 honest runs per scenario")
    parser.add_argument("--runs", type=int, default=5, help="honest clients per scenario")
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    parser.add_argument("--pythonpath", default=None, help="run the parties on this src")
    parser.add_argument("--only", action="append", choices=SCENARIOS, default=None)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([args.pythonpath, str(ROOT / "tests" / "net")])
    runs = 2 if args.quick else args.runs
    from sealfl.tee import SimulatedPlatform

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        platform = Path(tmp) / "platform"
        SimulatedPlatform.create(platform)
        for name in args.only or SCENARIOS:
            row = _scenario(name, platform, env, runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    width = max(len(r["scenario"]) for r in rows)
    print(f"\n{'scenario':{width}}  served   median ms   max ms   first error / note")
    for r in rows:
        print(
            f"{r['scenario']:{width}}  {r['served']:7}  {r['open+ping median ms']!s:>9}  "
            f"{r['open+ping max ms']!s:>7}   {r['first error'] or r['note']}"
        )


if __name__ == "__main__":
    main()

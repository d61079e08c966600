"""Flower 1.42's deployment engine on sealfl's hfl workload: the peer of ``sealfl bench hfl``.

``sealfl bench hfl --flower-python PATH`` runs this after each of its own federations, in the
same invocation and working directory, with ``PATH`` an interpreter that has ``flwr==1.42.*``
and torch (Flower is not a dependency of sealfl; a separate virtual environment is the usual
home). Everything Flower runs is the app in ``benchmarks/flower_hfl_peer/``; this module, run by
sealfl's interpreter, prepares its inputs, starts Flower's processes and reads the results:

1. **inputs**: the peer's configuration (:mod:`flower_hfl_peer.task`), sealfl's initial model
   as a flat float32 ``.npy`` with its manifest, and the paths and digests of the very shard
   files sealfl's workers trained on;
2. **TLS**: a throwaway certificate for ``127.0.0.1`` (Flower's TLS authenticates the server
   only; there is no client certificate and no attestation in Flower);
3. **processes**: a SuperLink (``flower-superlink``, runtime dependency installation off) and one
   SuperNode per worker (``flower-supernode``, default ``subprocess`` isolation: a new
   ``flwr-clientapp`` process per message), each a separate process on loopback, then
   ``flwr run`` submits the app to the SuperLink's Control API. Each SuperNode reaches the
   SuperLink through a byte-counting TCP relay of this process, which is how bytes per worker
   are measured (TCP payload: TLS records carrying HTTP, protobuf and the idle polls);
4. **results**: the ServerApp's round log gives each round's end (wall clock) and its slowest
   client's local training time, so the overhead is computed exactly as for sealfl: round
   wall time minus the slowest worker's local training, median over rounds 2..N.

Every process is started in its own session and stopped by PID on exit, with all its
descendants (the ServerApp and ClientApp processes Flower starts), also on error; every wait
has a deadline. ``HOME`` and ``FLWR_HOME`` point into the working directory, so the user's own
Flower configuration is neither read nor changed.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import ipaddress
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np

import sealfl
from sealfl.errors import ConfigError

FLOWER_SERIES = "1.42."
"""The Flower release series the peer app is written for (its Message API and CLI)."""

FLOWER_PIN = "flwr==1.42.0 torch==2.13.0"
"""What to install into the peer's environment (torch's CPU build, as sealfl's)."""

OPTION = "--flower-python"
PEER_DIR = Path(__file__).with_name("flower_hfl_peer")
SEALFL_SRC = Path(sealfl.__file__).resolve().parents[1]
EXECUTABLES = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr")
CONNECTION = "sealfl-bench"
"""The name of the SuperLink connection written into the peer's own ``config.toml``."""

PROBE_TIMEOUT_S = 120.0
START_TIMEOUT_S = 120.0
SUBMIT_TIMEOUT_S = 180.0
ROUND_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 10.0

_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import flwr, numpy, torch
import sealfl.data.batches, sealfl.models.nn
print(json.dumps({"flwr": flwr.__version__, "torch": torch.__version__,
                  "python": sys.version.split()[0]}))
"""


def peer_task() -> ModuleType:
    """Return ``flower_hfl_peer/task.py`` loaded by path (it needs only numpy to import)."""
    name = "sealfl_benchmarks_flower_hfl_peer_task"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PEER_DIR / "task.py")
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load the Flower peer's task module from {PEER_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _peer_env(python: Path, home: Path | None = None) -> dict[str, str]:
    """The environment of the peer's processes: its own bin first, nothing of sealfl's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["HOME"] = str(home)
        env["FLWR_HOME"] = str(home / ".flwr")
    return env


def check_interpreter(python: Path) -> dict[str, str]:
    """Check that ``python`` can run the peer: flwr 1.42, torch, sealfl's torch-only modules.

    Done before sealfl's own measurements, so a broken peer costs seconds, not a whole run.

    Returns
    -------
    dict
        ``{"flwr": version, "torch": version, "python": version}``.

    Raises
    ------
    ConfigError
        Naming ``--flower-python``, what is missing and how to install it.
    """
    if not python.is_file():
        raise ConfigError(f"{OPTION} {python}: no such interpreter file")
    hint = f"install it with: {python} -m pip install {FLOWER_PIN}"
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE, str(SEALFL_SRC)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=_peer_env(python),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{OPTION} {python}: cannot run it: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise ConfigError(
            f"{OPTION} {python}: it cannot import flwr, torch and sealfl's model code ({last}); "
            f"{hint}"
        )
    try:
        versions: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
        flwr_version = str(versions["flwr"])
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{OPTION} {python}: unexpected answer to the version probe ({exc}); {hint}"
        ) from exc
    if not flwr_version.startswith(FLOWER_SERIES):
        raise ConfigError(
            f"{OPTION} {python}: the peer app is written for flwr {FLOWER_SERIES}x, that "
            f"interpreter has flwr {flwr_version}; {hint}"
        )
    missing = [exe for exe in EXECUTABLES if not (python.parent / exe).is_file()]
    if missing:
        raise ConfigError(
            f"{OPTION} {python}: {', '.join(missing)} not found beside it in {python.parent} "
            "(give the python of the virtual environment flwr was installed into)"
        )
    return versions


# ---- inputs -----------------------------------------------------------------------------------


def write_peer_inputs(
    settings: Any, shards: list[Path], workdir: Path, *, round_timeout_s: float = ROUND_TIMEOUT_S
) -> Path:
    """Write sealfl's initial model and the peer's configuration; return the configuration file.

    Parameters
    ----------
    settings
        The :class:`~sealfl.fl.hfl.settings.Settings` sealfl's federation ran with.
    shards
        The shard files sealfl's workers read, in worker order.
    workdir
        Where the inputs and the peer's round log go (created if missing).
    round_timeout_s
        How long the peer's ServerApp waits for a round's replies.

    Raises
    ------
    ConfigError
        If the settings use what the peer app does not implement (augmentation, server
        optimisers, whole epochs).
    """
    from sealfl.data import read_shard
    from sealfl.fl.hfl.settings import Aggregation, Pipeline
    from sealfl.fl.hfl.training import initial_model
    from sealfl.models.nn import flatten

    if settings.pipeline is not Pipeline.PLAIN or settings.aggregation is not Aggregation.FEDAVG:
        raise ConfigError(
            "the Flower peer runs the bench's workload: pipeline 'plain' and aggregation "
            f"'fedavg', got {settings.pipeline.value!r} and {settings.aggregation.value!r}"
        )
    if settings.local_steps < 1 or settings.lr_milestones:
        raise ConfigError("the Flower peer runs a fixed number of local steps at one lr")
    task = peer_task()
    workdir.mkdir(parents=True, exist_ok=True)
    schema = read_shard(shards[0]).data.schema
    values, manifest = flatten(initial_model(settings, schema))
    initial = workdir / "initial.npy"
    np.save(initial, values, allow_pickle=False)
    config = task.PeerConfig(
        sealfl_src=str(SEALFL_SRC),
        model=settings.model,
        rounds=settings.rounds,
        clients=len(shards),
        local_steps=settings.local_steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
        shards=tuple(task.PeerFile(str(p.resolve()), task.sha256_file(p)) for p in shards),
        initial=task.PeerFile(str(initial.resolve()), task.sha256_file(initial)),
        manifest=manifest.to_json(),
        out=str(workdir.resolve()),
        round_timeout_s=float(round_timeout_s),
    )
    path = workdir / "peer.json"
    task.write_peer_config(config, path)
    return path


def write_app(directory: Path, peer_config: Path, *, secagg: bool = False) -> Path:
    """Lay out the Flower app (a FAB source directory) around ``flower_hfl_peer``.

    With ``secagg`` its components are the SecAgg+ ServerApp and ClientApp.

    The ``pyproject.toml`` is written here rather than kept in the repository, where linters
    would take it for a project root. Its one run-config value is the peer's configuration.
    """
    package = directory / PEER_DIR.name
    package.mkdir(parents=True, exist_ok=True)
    for source in sorted(PEER_DIR.glob("*.py")):
        shutil.copyfile(source, package / source.name)
    (directory / "LICENSE").write_text("Apache-2.0, as sealfl.\n")
    suffix = "_secagg" if secagg else ""
    (directory / "pyproject.toml").write_text(
        f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "sealfl-hfl-peer"
version = "1.0.0"
description = "sealfl bench hfl: the same workload on Flower's deployment engine"
license = {{ file = "LICENSE" }}
dependencies = ["flwr>=1.42.0", "torch>=2.13.0", "numpy>=1.26"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "sealfl"

[tool.flwr.app.components]
serverapp = "{PEER_DIR.name}.server_app{suffix}:app"
clientapp = "{PEER_DIR.name}.client_app{suffix}:app"

[tool.flwr.app.config]
peer-config = {json.dumps(str(peer_config.resolve()))}
"""
    )
    return directory


def write_tls(directory: Path) -> tuple[Path, Path]:
    """Write a throwaway self-signed certificate for 127.0.0.1 and its key; return the paths.

    The certificate is its own CA (Flower's SuperNodes and CLI are given it as the root).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealfl bench flower superlink")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "superlink.pem", directory / "superlink.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


# ---- processes and bytes ----------------------------------------------------------------------


def _free_port() -> int:
    """Return a free loopback port, below the ephemeral range if one is free there.

    Ports handed out by binding to port 0 come from the ephemeral range, where every outgoing
    connection on the machine also takes its local port; one below it is less likely to be
    taken between this check and the Flower process binding it (:func:`_start_serving`
    retries if it was).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = [random.randrange(max(1024, low - 12000), low) for _ in range(20)] + [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free loopback port")


class ByteRelay:
    """A loopback TCP relay to ``127.0.0.1:target`` that records every chunk it forwards.

    One per SuperNode, so the bytes it exchanges with the SuperLink can be summed over any
    time window (:meth:`bytes_between`). Recording is a timestamp and a length per chunk.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._chunks: list[tuple[float, int]] = []
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    self._chunks.append((time.time(), len(data)))
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def bytes_between(self, start: float, end: float) -> int:
        """Return the bytes forwarded (both ways) with a wall-clock time in ``(start, end]``."""
        with self._lock:
            return sum(n for t, n in self._chunks if start < t <= end)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.close()


def _descendants(pid: int) -> list[int]:
    """Return the PIDs of ``pid``'s living descendants (from ``/proc``), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


class FlowerProcesses:
    """Flower's processes of one run: started in their own sessions, stopped by PID."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], cwd: Path) -> None:
        """Start ``argv`` with its output in ``logs/<name>.log``."""
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def tails(self, lines: int = 8) -> str:
        """Return the last lines of every process's log, for an error message."""
        return "\n".join(f"--- {name}:\n{self.tail(name, lines)}" for name in self.procs)

    def tail(self, name: str, lines: int = 15) -> str:
        """Return the last ``lines`` lines of a process's log."""
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, names: tuple[str, ...] | None = None) -> None:
        """Raise if a process (of ``names``, default all) has exited: they run until stopped."""
        for name, proc in self.procs.items():
            if (names is None or name in names) and proc.poll() is not None:
                raise RuntimeError(
                    f"Flower's {name} exited with {proc.returncode}:\n{self.tail(name)}"
                )

    def stop_all(self, grace_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every process and its descendants, by PID; SIGKILL what remains after
        ``grace_s``.
        """
        pids = []
        for proc in self.procs.values():
            if proc.poll() is None:
                pids += [proc.pid, *_descendants(proc.pid)]
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, STOP_TIMEOUT_S)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while True:
                for proc in self.procs.values():
                    proc.poll()  # reap the processes started here
                pids = [p for p in pids if _alive(p)]
                if not pids or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if not pids:
                break
        for f in self._files:
            f.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_port(port: int, procs: FlowerProcesses, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check_alive((name,))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"Flower's {name} did not open port {port} in {timeout_s:g} s")


def _start_serving(
    procs: FlowerProcesses, commands: dict[str, Callable[[int], list[str]]], cwd: Path
) -> dict[str, int]:
    """Start each named server on a free port, all at once; return the ports once they listen.

    A server that lost its port to another program in the meantime is started again on
    another one (twice at most).
    """
    ports = {}
    for name, command in commands.items():
        ports[name] = _free_port()
        procs.start(name, command(ports[name]), cwd)
    for name, command in commands.items():
        for attempt in range(3):
            try:
                _wait_port(ports[name], procs, name, START_TIMEOUT_S)
                break
            except RuntimeError:
                if attempt == 2 or "address already in use" not in procs.tail(name):
                    raise
                ports[name] = _free_port()
                procs.start(name, command(ports[name]), cwd)
    return ports


def read_round_log(path: Path) -> list[dict[str, Any]]:
    """Return the ServerApp's round log (complete lines only)."""
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def _wait_done(path: Path, procs: FlowerProcesses, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = read_round_log(path)
        for r in records:
            if r["event"] == "done":
                return records
            if r["event"] == "error":
                raise RuntimeError(
                    f"Flower's ServerApp failed: {r['reason']}\n{r.get('trace', '')}"
                    f"\n{procs.tails()}"
                )
        procs.check_alive()
        time.sleep(0.5)
    raise RuntimeError(
        f"Flower's run did not finish in {timeout_s:g} s; logs in {procs.logs}:\n{procs.tails()}"
    )


# ---- the run ----------------------------------------------------------------------------------


def summarize(
    records: list[dict[str, Any]], relays: list[ByteRelay] | None, launched: float
) -> dict[str, Any]:
    """Turn the ServerApp's round log (and the relays' counts) into the bench's quantities.

    Round ``r``'s wall time is from the end of round ``r - 1`` (round 0: the initial model)
    to the end of round ``r``; overhead is that minus the round's slowest local training;
    medians are over rounds 2..N, as for sealfl.
    """
    start = next(r for r in records if r["event"] == "start")
    rounds = [r for r in records if r["event"] == "round"]
    done = next(r for r in records if r["event"] == "done")
    ends = [start["time"], *(r["time"] for r in rounds)]
    walls = [b - a for a, b in itertools.pairwise(ends)]
    overheads = [w - r["slowest_train_s"] for w, r in zip(walls, rounds, strict=True)]
    steady = slice(1, None) if len(rounds) > 1 else slice(None)
    out: dict[str, Any] = {
        "rounds": len(rounds),
        "round_wall_s": statistics.median(walls[steady]),
        "slowest_train_s": statistics.median(r["slowest_train_s"] for r in rounds[steady]),
        "overhead_ms": 1000 * statistics.median(overheads[steady]),
        "overhead_ms_max": 1000 * max(overheads[steady]),
        "first_round_s": walls[0],
        "startup_s": start["time"] - launched,
        "total_s": done["time"] - launched,
        "final_loss": rounds[-1]["loss"],
    }
    if relays:
        window = (ends[1], ends[-1]) if len(rounds) > 1 else (ends[0], ends[-1])
        n = max(1, len(rounds) - 1) if len(rounds) > 1 else 1
        per_node = [relay.bytes_between(*window) / n for relay in relays]
        out["bytes_per_worker_round"] = statistics.fmean(per_node)
        out["bytes_per_worker_total"] = statistics.fmean(
            relay.bytes_between(launched, done["time"]) for relay in relays
        )
    return out


def run(
    python: Path,
    settings: Any,
    shards: list[Path],
    workdir: Path,
    *,
    tls: bool = True,
    secagg: bool = False,
) -> dict[str, Any]:
    """Run sealfl's federation of ``settings`` on ``shards`` in Flower's deployment engine.

    With ``secagg``, Flower's SecAgg+ (legacy API) aggregates the updates.

    Parameters
    ----------
    python
        The peer's interpreter (checked with :func:`check_interpreter` beforehand).
    settings
        The :class:`~sealfl.fl.hfl.settings.Settings` sealfl ran with.
    shards
        sealfl's workers' shard files, in worker order (one SuperNode each).
    workdir
        An empty or new directory for the inputs, the app, logs and Flower's home.
    tls
        Server-authenticated TLS (Flower's secure mode); ``False`` runs ``--insecure``.

    Returns
    -------
    dict
        :func:`summarize`'s figures plus ``"transport"`` and ``"final_model"`` (the path of the
        final flat model).

    Raises
    ------
    RuntimeError
        If a Flower process exits, the run fails or a deadline passes (logs in ``workdir``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    round_log = workdir / "flower_rounds.jsonl"
    round_log.unlink(missing_ok=True)  # a previous run's "done" must not end this one
    peer_config = write_peer_inputs(settings, shards, workdir)
    app_dir = write_app(workdir / "app", peer_config, secagg=secagg)
    home = workdir / "home"
    (home / ".flwr").mkdir(parents=True, exist_ok=True)
    env = _peer_env(python, home)
    bin_dir = python.parent
    if tls:
        cert, key = write_tls(workdir / "tls")
        link_security = ["--ssl-ca-certfile", str(cert), "--ssl-certfile", str(cert)]
        link_security += ["--ssl-keyfile", str(key)]
        node_security = ["--root-certificates", str(cert)]
        cli_security = f"root-certificates = {json.dumps(str(cert))}"
    else:
        link_security = node_security = ["--insecure"]
        cli_security = "insecure = true"
    procs = FlowerProcesses(workdir / "logs", env)
    relays: list[ByteRelay] = []
    launched = time.time()
    try:
        superlink = [str(bin_dir / "flower-superlink"), *link_security]
        superlink += ["--disable-runtime-dependency-installation"]
        ports = _start_serving(
            procs, {"superlink": lambda port: [*superlink, "--port", str(port)]}, workdir
        )
        link_port = ports["superlink"]
        (home / ".flwr" / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{link_port}"\n{cli_security}\n'
        )
        supernodes = {}
        for k in range(len(shards)):
            relay = ByteRelay(link_port)
            relays.append(relay)
            supernode = [str(bin_dir / "flower-supernode"), *node_security]
            supernode += ["--superlink", f"127.0.0.1:{relay.port}"]
            supernode += ["--node-config", f"shard-index={k}"]
            supernodes[f"supernode-{k}"] = lambda port, argv=supernode: [
                *argv,
                *("--port", str(port)),  # its runtime API, for the ClientApp processes
            ]
        _start_serving(procs, supernodes, workdir)
        submit = subprocess.run(
            [str(bin_dir / "flwr"), "run", str(app_dir), CONNECTION],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBMIT_TIMEOUT_S,
            check=False,
        )
        (workdir / "logs" / "flwr-run.log").write_text(submit.stdout + submit.stderr)
        if submit.returncode != 0:
            raise RuntimeError(
                f"`flwr run` failed (exit {submit.returncode}):\n{submit.stdout}{submit.stderr}"
            )
        budget = START_TIMEOUT_S + settings.rounds * ROUND_TIMEOUT_S
        records = _wait_done(round_log, procs, budget)
        result = summarize(records, relays, launched)
    finally:
        procs.stop_all()
        for relay in relays:
            relay.close()
    result["transport"] = "TLS (server-authenticated)" if tls else "insecure"
    result["final_model"] = str(workdir / "flower_final.npy")
    return result


def evaluate_flat(settings: Any, model_file: Path, test_shard: Path) -> float:
    """Return the test accuracy of a flat model file (the peer's final model).

    Evaluated as sealfl's PS evaluates its own: same network, test shard and transform.
    """
    from sealfl.data import read_shard
    from sealfl.fl.hfl.training import evaluate, initial_model
    from sealfl.models.nn import load_flat, manifest_of

    test = read_shard(test_shard).data
    model = initial_model(settings, test.schema)
    values = np.load(model_file, allow_pickle=False)
    load_flat(model, values, manifest_of(model))
    return evaluate(model, test, settings).accuracy

"""``sealfl bench hfl --flower-python``: the sealfl side and the peer's torch half, no Flower.

Flower is not installed here (it is not a dependency of sealfl), so what is tested is what
runs in sealfl's interpreter, plus the peer's training step (``flower_hfl_peer/task.py`` needs
only torch and sealfl's model and data code): that the peer is handed exactly sealfl's initial
model, manifest and shard files, refuses anything else, and that the bench's figures follow
sealfl's definitions; the relay's byte counts and the teardown run on real sockets and
processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sealfl.cli.benchmarks import load_benchmark
from sealfl.data import partition_iid, read_shard, synthetic_images, write_shards
from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.hfl.settings import Settings
from sealfl.fl.hfl.training import initial_model
from sealfl.models.nn import flatten

flower = load_benchmark("flower_hfl")
task = flower.peer_task()


def _settings(**changes: Any) -> Settings:
    return Settings(model="resnet8", rounds=3, local_steps=2, batch_size=8).replace(**changes)


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    data = synthetic_images(40, size=8, seed=1)
    return write_shards(data, partition_iid(data.labels, 2, seed=0), tmp_path / "shards")


def test_the_peer_reads_back_sealfls_initial_model_manifest_and_shards(
    tmp_path: Path, shards: list[Path]
) -> None:
    settings = _settings(learning_rate=0.02, momentum=0.5, weight_decay=1e-4, seed=7)
    path = flower.write_peer_inputs(settings, shards, tmp_path / "peer", round_timeout_s=30)
    config = task.read_peer_config(path)

    schema = read_shard(shards[0]).data.schema
    expected, manifest = flatten(initial_model(settings, schema))
    initial = task.read_initial(config)
    assert initial.dtype == np.dtype("<f4")
    assert np.array_equal(initial, expected)  # bit for bit the PS's initial model
    assert config.manifest == manifest.to_json()
    assert [Path(s.path) for s in config.shards] == [p.resolve() for p in shards]
    for shard, file in zip(config.shards, shards, strict=True):
        assert shard.sha256 == task.sha256_file(file)
    assert (config.model, config.rounds, config.clients) == ("resnet8", 3, 2)
    assert (config.local_steps, config.batch_size, config.seed) == (2, 8, 7)
    assert (config.learning_rate, config.momentum, config.weight_decay) == (0.02, 0.5, 1e-4)
    assert config.round_timeout_s == 30
    assert Path(config.out) == (tmp_path / "peer").resolve()
    assert Path(config.sealfl_src, "sealfl", "models", "nn", "resnet.py").is_file()


def test_a_changed_initial_model_is_refused(tmp_path: Path, shards: list[Path]) -> None:
    config = task.read_peer_config(flower.write_peer_inputs(_settings(), shards, tmp_path))
    values = task.read_initial(config)
    values[0] += 1.0
    np.save(config.initial.path, values, allow_pickle=False)
    with pytest.raises(task.PeerConfigError, match="SHA-256 is"):
        task.read_initial(config)


def test_a_configuration_with_a_missing_or_extra_field_is_refused(
    tmp_path: Path, shards: list[Path]
) -> None:
    path = flower.write_peer_inputs(_settings(), shards, tmp_path)
    doc = json.loads(path.read_text())
    del doc["local_steps"]
    path.write_text(json.dumps(doc))
    with pytest.raises(task.PeerConfigError, match="expected keys"):
        task.read_peer_config(path)
    doc |= {"local_steps": -1}
    path.write_text(json.dumps(doc))
    with pytest.raises(task.PeerConfigError, match="local_steps must be a non-negative"):
        task.read_peer_config(path)


def test_settings_the_peer_does_not_implement_are_refused(
    tmp_path: Path, shards: list[Path]
) -> None:
    with pytest.raises(ConfigError, match="pipeline 'plain' and aggregation 'fedavg'"):
        flower.write_peer_inputs(_settings(pipeline="cifar"), shards, tmp_path)
    with pytest.raises(ConfigError, match="fixed number of local steps"):
        flower.write_peer_inputs(_settings(local_steps=0), shards, tmp_path)
    assert not (tmp_path / "peer.json").exists()


def test_the_peers_round_trains_sealfls_network_on_its_shard(
    tmp_path: Path, shards: list[Path]
) -> None:
    config = task.read_peer_config(flower.write_peer_inputs(_settings(), shards, tmp_path))
    initial = task.read_initial(config)
    first = task.train_round(config, 1, 1, initial)
    again = task.train_round(config, 1, 1, initial)
    assert first.values.dtype == np.dtype("<f4") and first.values.shape == initial.shape
    assert np.isfinite(first.values).all()
    assert not np.array_equal(first.values, initial)  # it trained
    assert np.array_equal(first.values, again.values)  # and reproducibly
    assert first.examples == 2 * 8
    assert first.seconds > 0 and np.isfinite(first.loss)
    other = task.train_round(config, 0, 1, initial)
    assert not np.array_equal(other.values, first.values)  # the other shard
    with pytest.raises(task.PeerConfigError, match="shard-index 2"):
        task.train_round(config, 2, 1, initial)


def test_the_peer_refuses_a_replaced_shard_and_another_network(
    tmp_path: Path, shards: list[Path]
) -> None:
    path = flower.write_peer_inputs(_settings(), shards, tmp_path)
    config = task.read_peer_config(path)
    initial = task.read_initial(config)
    doc = json.loads(path.read_text()) | {"model": "resnet20"}
    path.write_text(json.dumps(doc))
    with pytest.raises(ProtocolError, match="the peer's resnet20 is not sealfl's"):
        task.train_round(task.read_peer_config(path), 0, 1, initial)
    shards[0].write_bytes(shards[1].read_bytes())
    with pytest.raises(ConfigError, match="SHA-256 is"):
        task.train_round(config, 0, 1, initial)


def test_the_app_names_its_components_and_configuration(tmp_path: Path) -> None:
    peer_config = tmp_path / "peer.json"
    app = flower.write_app(tmp_path / "app", peer_config)
    project = tomllib.loads((app / "pyproject.toml").read_text())
    flwr = project["tool"]["flwr"]["app"]
    package = flower.PEER_DIR.name
    assert flwr["components"] == {
        "serverapp": f"{package}.server_app:app",
        "clientapp": f"{package}.client_app:app",
    }
    assert flwr["config"] == {"peer-config": str(peer_config.resolve())}
    assert project["project"]["license"] == {"file": "LICENSE"} and (app / "LICENSE").is_file()
    for name in ("__init__.py", "task.py", "client_app.py", "server_app.py"):
        assert (app / package / name).read_bytes() == (flower.PEER_DIR / name).read_bytes()
    secagg = flower.write_app(tmp_path / "app-secagg", peer_config, secagg=True)
    components = tomllib.loads((secagg / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert components["components"] == {  # Flower's SecAgg+ (legacy API) apps
        "serverapp": f"{package}.server_app_secagg:app",
        "clientapp": f"{package}.client_app_secagg:app",
    }


def test_rounds_are_summarised_with_sealfls_definitions() -> None:
    t0 = 1000.0
    records = [
        {"event": "start", "time": t0 + 4.0, "round": 0},
        {"event": "round", "time": t0 + 14.0, "round": 1, "slowest_train_s": 0.5, "loss": 2.0},
        {"event": "round", "time": t0 + 20.0, "round": 2, "slowest_train_s": 1.0, "loss": 1.5},
        {"event": "round", "time": t0 + 28.0, "round": 3, "slowest_train_s": 0.5, "loss": 1.0},
        {"event": "round", "time": t0 + 35.0, "round": 4, "slowest_train_s": 2.0, "loss": 0.5},
        {"event": "done", "time": t0 + 35.5, "rounds": 4},
    ]
    out = flower.summarize(records, None, t0)
    # Rounds 2..4: walls 6, 8, 7 s; overheads 5, 7.5, 5 s. Round 1 (10 s) only as first_round.
    assert out["round_wall_s"] == pytest.approx(7.0)
    assert out["slowest_train_s"] == pytest.approx(1.0)
    assert out["overhead_ms"] == pytest.approx(5000.0)
    assert out["overhead_ms_max"] == pytest.approx(7500.0)
    assert out["first_round_s"] == pytest.approx(10.0)
    assert out["startup_s"] == pytest.approx(4.0)
    assert out["total_s"] == pytest.approx(35.5)
    assert out["final_loss"] == 0.5
    assert "bytes_per_worker_round" not in out


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def test_the_relay_forwards_and_counts_both_directions() -> None:
    server, port = _echo_server()
    relay = flower.ByteRelay(port)
    payload = os.urandom(300_000)
    try:
        before = time.time()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            echoed = b""
            while data := s.recv(65536):
                echoed += data
        assert echoed == payload
        deadline = time.monotonic() + 10
        while relay.bytes_between(before, time.time()) < 2 * len(payload):
            assert time.monotonic() < deadline, relay.bytes_between(before, time.time())
            time.sleep(0.01)
        assert relay.bytes_between(before, time.time()) == 2 * len(payload)
        assert relay.bytes_between(0, before) == 0
    finally:
        relay.close()
        server.close()


def test_stopping_kills_every_process_and_its_descendants_by_pid(tmp_path: Path) -> None:
    procs = flower.FlowerProcesses(tmp_path / "logs", dict(os.environ))
    # A parent that starts a grandchild in a session of its own (as a daemon would) and ignores
    # SIGTERM, so only its PID, the descendant walk and SIGKILL can end them.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    procs.start("daemonish", [sys.executable, "-c", script], tmp_path)
    deadline = time.monotonic() + 20
    log = tmp_path / "logs" / "daemonish.log"
    while not log.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(log.read_text().split()[0])
    parent = procs.procs["daemonish"].pid
    assert grandchild in flower._descendants(parent)
    procs.stop_all(grace_s=0.5)
    assert procs.procs["daemonish"].poll() is not None
    done = subprocess.run(["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True)
    assert done.stdout.strip()[:1] in (b"", b"Z")  # gone (or a zombie awaiting its reaper)
    with pytest.raises(RuntimeError, match="daemonish exited"):
        procs.check_alive()


def test_the_comparison_table_gives_flower_over_sealfl() -> None:
    from rich.console import Console

    sealfl_row = {
        "model": "resnet20",
        "round_wall_s": 0.5,
        "slowest_train_s": 0.4,
        "overhead_ms": 25.0,
        "overhead_ms_max": 40.0,
        "bytes_per_worker_round": 2_000_000,
        "total_s": 10.0,
        "accuracy": 0.9,
    }
    flower_row = {
        "transport": "TLS (server-authenticated)",
        "round_wall_s": 10.0,
        "slowest_train_s": 0.8,
        "overhead_ms": 9000.0,
        "overhead_ms_max": 12000.0,
        "bytes_per_worker_round": 2_200_000,
        "total_s": 60.0,
        "accuracy": 0.8,
    }
    console = Console(record=True, width=120)
    load_benchmark("hfl")._flower_table(console, [sealfl_row | {"flower": flower_row}])
    lines = console.export_text().splitlines()

    def row(label: str) -> list[str]:
        cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if "│" in line]
        return next(c for c in cells if c[1] == label)

    assert row("overhead, median") == ["", "overhead, median", "25 ms", "9000 ms", "360x"]
    assert row("overhead, max")[-1] == "300x"
    assert row("round")[-1] == "20.0x"
    assert row("bytes / worker")[-1] == "1.10x"
    assert row("whole run")[-1] == "6.0x"
    assert row("test accuracy")[2:4] == ["0.900", "0.800"]
    assert row("transport")[:3] == ["resnet20", "transport", "mutual RA-TLS"]

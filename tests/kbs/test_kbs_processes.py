"""The broker as a real process (``sealfl kbs serve-dev``), with real requester and admin processes.

One allow/deny pass over the command line, then the broker is killed outright (SIGKILL, no
clean shutdown) and started again on the same store: resources and revocations survive, and
the audit log goes on in the same file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kbs_world import (
    RESOURCE_A,
    RESOURCE_B,
    RESOURCE_R,
    VALUE_B,
    World,
    make_world,
    measurement,
)
from sealfl_command import sealfl

from sealfl.errors import ChannelError
from sealfl.kbs import KbsAdmin, KbsClient
from sealfl.net import fingerprint_verifier

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class BrokerProcess:
    """``sealfl kbs serve-dev`` with our own PID; ready when its ready file appears."""

    def __init__(self, world: World, name: str) -> None:
        self.ready_file = world.directory / f"{name}.ready.json"
        self.log = world.directory / f"{name}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "sealfl.cli.main", "kbs", "serve-dev",
                    "--settings", str(world.config),
                    "--simulated-platform", str(world.platform_dir),
                    "--sealing-key-file", str(world.sealing_key_file),
                    "--measurement", measurement("kbs").hex(),
                    "--ready-file", str(self.ready_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=world.directory,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"broker did not start:\n{self.log.read_text()}")
            time.sleep(0.02)
        self.info: dict[str, Any] = json.loads(self.ready_file.read_text())
        assert self.info["pid"] == self.process.pid

    @property
    def address(self) -> str:
        return str(self.info["address"])

    @property
    def fingerprint(self) -> str:
        return str(self.info["fingerprint"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[World, list[BrokerProcess]]]:
    started: list[BrokerProcess] = []
    yield make_world(tmp_path), started
    for broker in started:
        broker.stop()


def test_allow_deny_pass_then_kill_and_restart_keeps_resources_and_revocations(
    brokers: tuple[World, list[BrokerProcess]],
) -> None:
    world, started = brokers
    first = BrokerProcess(world, "first")
    started.append(first)
    trust = ["--broker", first.address, "--broker-fingerprint", first.fingerprint]
    (world.directory / "token.bin").write_bytes(VALUE_B)

    put = sealfl(
        "kbs", "put", RESOURCE_B, "token.bin", *trust,
        "--admin-cert", "admin-cert.pem", "--admin-key", "admin-key.pem", cwd=world.directory,
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert f"put {RESOURCE_B}: {len(VALUE_B)} bytes, generation 1" in put.stdout

    requester = ["--simulated-platform", "platform", *trust]
    allowed = sealfl(
        "kbs", "fetch", RESOURCE_A, *requester, "--measurement", measurement("requester-a").hex(),
        "--out", "a.key", cwd=world.directory,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    value_a = (world.directory / "a.key").read_bytes()
    assert len(value_a) == 32 and (world.directory / "a.key").stat().st_mode & 0o777 == 0o600

    denied = sealfl(
        "kbs", "fetch", RESOURCE_A, *requester, "--measurement", measurement("requester-b").hex(),
        "--out", "stolen.key", cwd=world.directory,
    )  # fmt: skip
    assert denied.returncode == 1
    assert "fails the policy of 'hfl/seal-key/checkpoints'" in " ".join(denied.stderr.split())
    assert not (world.directory / "stolen.key").exists()

    verifier = fingerprint_verifier([first.fingerprint])
    KbsAdmin(first.address, server_verifier=verifier, credentials=world.admin).revoke(RESOURCE_R)

    # Killed outright: no clean shutdown, nothing flushed on the way out.
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    second = BrokerProcess(world, "second")
    started.append(second)
    verifier = fingerprint_verifier([second.fingerprint])

    def requester_client(role: str) -> KbsClient:
        return KbsClient(second.address, server_verifier=verifier, provider=world.tee(role))

    assert requester_client("requester-a").fetch(RESOURCE_A) == value_a
    assert requester_client("requester-b").fetch(RESOURCE_B) == VALUE_B
    with pytest.raises(ChannelError, match="'hfl/seal-key/retired' is revoked"):
        requester_client("requester-a").fetch(RESOURCE_R)

    lines = world.audit_lines()
    assert [x["action"] for x in lines if x["action"] == "generate"] == ["generate"] * 2
    gets = [(x["resource"], x["decision"]) for x in lines if x["action"] in ("get", "enrol")]
    assert (RESOURCE_A, "deny") in gets  # requester B's attempt, refused at enrolment
    released = [x["resource"] for x in lines if x["action"] == "get" and x["decision"] == "allow"]
    assert released == [RESOURCE_A, RESOURCE_A, RESOURCE_B]
    assert lines[-1]["action"] == "get" and lines[-1]["decision"] == "deny"

    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=20) == 0
    assert "kbs stopping" in second.log.read_text()

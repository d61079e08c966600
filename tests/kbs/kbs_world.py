"""The kbs tests' world: a simulated platform, requesters, policy files, an admin, a config.

Resources served by every broker here:

- ``hfl/seal-key/checkpoints`` (A): generated on first start, 32 bytes; policy A admits the
  measurement of requester A only;
- ``vfl/token/leader`` (B): put by the admin; policy B admits requester B only;
- ``hfl/seal-key/retired`` (R): generated, policy A; tests revoke it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl.kbs import KbsAdmin, KbsClient, RunningKbs
from sealfl.net import (
    TlsCredentials,
    certificate_fingerprint,
    fingerprint_verifier,
    make_self_signed_credentials,
)
from sealfl.seal import SealingKey
from sealfl.tee import SimulatedPlatform, SimulatedTee

RESOURCE_A = "hfl/seal-key/checkpoints"
RESOURCE_B = "vfl/token/leader"
RESOURCE_R = "hfl/seal-key/retired"
VALUE_B = b"leader-token-0123456789"


def measurement(role: str) -> bytes:
    # Fixed values, not measure_code(): the code may change under a long test session.
    return hashlib.sha256(b"sealfl kbs test measurement:" + role.encode()).digest()


class Clock:
    """A clock the test moves by hand (broker nonces, enrolments and verification use it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    directory: Path
    platform_dir: Path
    platform: SimulatedPlatform
    admin: TlsCredentials
    sealing_key_file: Path
    config: Path

    def tee(self, role: str, **platform_claims: Any) -> SimulatedTee:
        return SimulatedTee(self.platform, measurement(role), **platform_claims)

    def audit_lines(self, log: Path | None = None) -> list[dict[str, Any]]:
        path = log or self.directory / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _policy_toml(platform: SimulatedPlatform, *roles: str) -> str:
    measurements = ", ".join(f'"{measurement(role).hex()}"' for role in roles)
    return (
        "[simulated]\n"
        "allow = true\n"
        f"measurements = [{measurements}]\n"
        f'platform_fingerprints = ["{platform.fingerprint}"]\n'
    )


def make_world(directory: Path) -> World:
    platform_dir = directory / "platform"
    platform = SimulatedPlatform.create(platform_dir)
    (directory / "policy-a.toml").write_text(_policy_toml(platform, "requester-a"))
    (directory / "policy-b.toml").write_text(_policy_toml(platform, "requester-b"))
    (directory / "policy-kbs.toml").write_text(_policy_toml(platform, "kbs"))
    admin = make_self_signed_credentials("kbs-admin")
    (directory / "admin-cert.pem").write_bytes(admin.cert_pem)
    (directory / "admin-key.pem").write_bytes(admin.key_pem)
    key_file = directory / "store.key"
    SealingKey.generate().save(key_file)
    config = directory / "kbs.toml"
    config.write_text(
        f"""
workload = "kbs"            # the runtime's sections are someone else's business

[kbs]
listen = "127.0.0.1:0"
store = "store"
audit_log = "audit.jsonl"
admins = ["admin-cert.pem"]
nonce_ttl_s = 30

[[kbs.resource]]
name = "{RESOURCE_A}"
policy = "policy-a.toml"
generate = true
size = 32

[[kbs.resource]]
name = "{RESOURCE_B}"
policy = "policy-b.toml"

[[kbs.resource]]
name = "{RESOURCE_R}"
policy = "policy-a.toml"
generate = true
"""
    )
    return World(directory, platform_dir, platform, admin, key_file, config)


def broker_verifier(running: RunningKbs) -> Callable[[bytes], Any]:
    return fingerprint_verifier([running.fingerprint])


def client(world: World, running: RunningKbs, role: str, **platform_claims: Any) -> KbsClient:
    return KbsClient(
        running.address,
        server_verifier=broker_verifier(running),
        provider=world.tee(role, **platform_claims),
    )


def admin(world: World, running: RunningKbs, credentials: TlsCredentials | None = None) -> KbsAdmin:
    return KbsAdmin(
        running.address,
        server_verifier=broker_verifier(running),
        credentials=credentials or world.admin,
    )


def admin_fingerprint(world: World) -> str:
    return certificate_fingerprint(world.admin.cert_pem)

"""``sealfl kbs admin-keygen | audit`` and bad input (exit 2), in process and as processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kbs_world import World
from sealfl_command import one_line, sealfl
from typer.testing import CliRunner

from sealfl.cli import main as _registers_every_command  # noqa: F401
from sealfl.cli.app import app
from sealfl.errors import ConfigError
from sealfl.kbs import AuditLog, AuditRecord
from sealfl.net import certificate_fingerprint


def test_admin_keygen_writes_a_pair_and_never_overwrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(app, ["kbs", "admin-keygen", "--out", "admin"])
    assert made.exit_code == 0, made.output
    cert = (tmp_path / "admin" / "admin-cert.pem").read_bytes()
    assert f"fingerprint {certificate_fingerprint(cert)}" in made.output
    assert (tmp_path / "admin" / "admin-key.pem").stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(app, ["kbs", "admin-keygen", "--out", "admin"])
    assert isinstance(again.exception, ConfigError)
    assert "refusing to overwrite an admin identity" in str(again.exception)
    assert (tmp_path / "admin" / "admin-cert.pem").read_bytes() == cert


def test_audit_prints_the_decisions(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.record(AuditRecord(unix=1.0, action="generate", resource="a/b/c", decision="allow",
                           reason="generated"))  # fmt: skip
    log.record(AuditRecord(unix=2.0, action="get", resource="a/b/c", decision="deny",
                           reason="nonce stale", fingerprint="ab" * 32,
                           measurements={"measurement": "cd" * 32}))  # fmt: skip
    log.close()
    path = str(tmp_path / "audit.jsonl")
    table = CliRunner().invoke(app, ["kbs", "audit", path])
    assert table.exit_code == 0, table.output
    assert "2 decision(s)" in table.output and "nonce stale" in table.output
    assert "cdcdcdcd" in table.output  # the caller's measurement, shortened
    only = CliRunner().invoke(app, ["kbs", "audit", path, "--decision", "deny", "--json"])
    assert only.exit_code == 0, only.output
    (line,) = only.output.splitlines()
    assert json.loads(line)["reason"] == "nonce stale"


BAD_INPUT = {
    "audit-missing": (["kbs", "audit", "missing.jsonl"], "cannot read the audit log"),
    "audit-decision": (["kbs", "audit", "kbs.toml", "--decision", "maybe"], "--decision: expected"),
    "put-name": (
        ["kbs", "put", "a/b", "kbs.toml", "--broker", "127.0.0.1:1", "--admin-cert", "x",
         "--admin-key", "y", "--broker-fingerprint", "ab" * 32],
        "repo/type/tag",
    ),
    "put-trust": (
        ["kbs", "put", "a/b/c", "kbs.toml", "--broker", "127.0.0.1:1",
         "--admin-cert", "admin-cert.pem", "--admin-key", "admin-key.pem"],
        "give exactly one of --broker-policy and --broker-fingerprint",
    ),
    "put-key-mismatch": (
        ["kbs", "put", "a/b/c", "kbs.toml", "--broker", "127.0.0.1:1", "--admin-cert",
         "admin-cert.pem", "--admin-key", "store.key", "--broker-fingerprint", "ab" * 32],
        "admin private key: not an unencrypted PEM key",
    ),
    "revoke-fingerprint": (
        ["kbs", "revoke", "a/b/c", "--broker", "127.0.0.1:1", "--admin-cert",
         "admin-cert.pem", "--admin-key", "admin-key.pem", "--broker-fingerprint", "xyz"],
        "--broker-fingerprint: expected 64 hex digits",
    ),
    "fetch-out-exists": (
        ["kbs", "fetch", "a/b/c", "--broker", "127.0.0.1:1", "--simulated-platform",
         "platform", "--out", "kbs.toml", "--broker-fingerprint", "ab" * 32],
        "already exists",
    ),
    "serve-no-table": (
        ["kbs", "serve-dev", "--settings", "policy-a.toml", "--simulated-platform", "platform"],
        "no kbs table",
    ),
    "serve-measurement": (
        ["kbs", "serve-dev", "--settings", "kbs.toml", "--simulated-platform", "platform",
         "--measurement", "12"],
        "--measurement: expected 64 hex digits",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_a_config_error(
    world: World, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process (a process per case would cost a second each): ConfigError is exit 2."""
    args, message = BAD_INPUT[case]
    monkeypatch.chdir(world.directory)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), (result.output, result.exception)
    assert message in str(result.exception)


def test_bad_input_exits_2_as_a_process(world: World) -> None:
    result = sealfl("kbs", "put", "a/b", "x", "--broker", "h:1", "--admin-cert", "x",
                    "--admin-key", "y", "--broker-fingerprint", "ab" * 32,
                    cwd=world.directory)  # fmt: skip
    assert result.returncode == 2
    assert "repo/type/tag" in one_line(result.stderr)
    usage = sealfl("kbs", "put", "a/b/c", cwd=world.directory)  # missing options
    assert usage.returncode == 2

"""``sealfl kbs``: the key broker, its admins and its audit log; ``sealfl bench kbs``.

``sealfl kbs serve --config kbs.toml`` runs through the party runtime (``sealfl run``); the
commands here are the development broker (``serve-dev``, in the simulated TEE), an admin's
tools (``admin-keygen``, ``put``, ``revoke``), a development requester (``fetch``) and the
audit-log reader (``audit``). Exit status: 0 done, 1 refused (by the broker, or its evidence
failed our check), 2 bad input.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sealfl._files import check_output_path, create_new_file, make_directory, write_atomic
from sealfl.cli.app import app, bench_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console, print_line, print_table
from sealfl.cli.run_cmd import role
from sealfl.cli.tee_options import build_runtime
from sealfl.errors import ConfigError
from sealfl.kbs import (
    KbsAdmin,
    KbsClient,
    KbsSettings,
    RunningKbs,
    check_resource_name,
    load_kbs_settings,
    read_audit_log,
    serve_kbs,
)
from sealfl.kbs.config import MAX_VALUE_BYTES
from sealfl.net import (
    TlsCredentials,
    certificate_fingerprint,
    make_self_signed_credentials,
)
from sealfl.net.certificates import check_key_matches_certificate
from sealfl.runtime import RoleConfig, SealingSource, broker_verifier, load_role_config
from sealfl.seal import SealingKey
from sealfl.tee import SimulatedTee, measure_code
from sealfl.tee.collateral import collateral_source

kbs_app = typer.Typer(
    help="Key broker: resources released only to attested requesters, every decision audited.",
    no_args_is_help=True,
)
app.add_typer(kbs_app, name="kbs")

STORE_KEY_LABEL = "sealfl/kbs/store/v1"
BROKER_CERT_LIFETIME = datetime.timedelta(days=30)
"""A broker serves for weeks; its RA-TLS certificate lasts as long (renewal: a later issue)."""

BrokerOption = Annotated[
    str,
    typer.Option("--broker", help="The broker's front door, HOST:PORT.", show_default=False),
]
BrokerFingerprintOption = Annotated[
    str | None,
    typer.Option(
        "--broker-fingerprint",
        help="Trust the broker whose certificate has this SHA-256 (hex), as `serve-dev` prints.",
        show_default=False,
    ),
]
BrokerPolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--broker-policy",
        help="Trust a broker in a TEE whose RA-TLS evidence passes this policy.",
        show_default=False,
    ),
]
CollateralOption = Annotated[
    str | None,
    typer.Option(
        "--collateral",
        help="Collateral for a broker on a real TEE: a JSON file, a directory, or a PCCS URL.",
        show_default=False,
    ),
]
AdminCertOption = Annotated[
    Path,
    typer.Option("--admin-cert", help="Admin certificate (PEM).", show_default=False),
]
AdminKeyOption = Annotated[
    Path,
    typer.Option("--admin-key", help="Admin private key (PEM).", show_default=False),
]
NameArgument = Annotated[
    str, typer.Argument(help="Resource name, repo/type/tag.", show_default=False)
]
PlatformOption = Annotated[
    Path,
    typer.Option(
        "--simulated-platform",
        envvar="SEALFL_SIMULATED_PLATFORM",
        help="Directory of the simulated TEE platform to run on (development TEE).",
        show_default=False,
    ),
]
MeasurementOption = Annotated[
    str | None,
    typer.Option(
        "--measurement",
        help="Simulated measurement (64 hex) instead of the measured code and role.",
        show_default=False,
    ),
]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _measurement(text: str | None, role: str) -> bytes:
    if text is None:
        return measure_code({"role": role})
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise ConfigError(f"--measurement: expected 64 hex digits, got {text!r}")
    return value


def _broker_verifier(
    fingerprint: str | None, policy: Path | None, collateral: str | None
) -> Callable[[bytes], Any]:
    """Return the check a broker's certificate must pass: a pinned fingerprint or a policy."""
    return broker_verifier(
        policy=policy,
        fingerprint=fingerprint,
        collateral=collateral_source(collateral) if collateral is not None else None,
        names=("--broker-policy", "--broker-fingerprint"),
    )


def _admin(
    broker: str,
    fingerprint: str | None,
    policy: Path | None,
    collateral: str | None,
    cert: Path,
    key: Path,
) -> KbsAdmin:
    credentials = TlsCredentials(
        cert_pem=_read(cert, "admin certificate"), key_pem=_read(key, "admin key")
    )
    check_key_matches_certificate(credentials, party="admin")
    return KbsAdmin(
        broker,
        server_verifier=_broker_verifier(fingerprint, policy, collateral),
        credentials=credentials,
    )


@kbs_app.command("serve-dev")
def serve_dev(
    settings_file: Annotated[
        Path,
        typer.Option(
            "--settings", help="Broker config with a kbs table (TOML).", show_default=False
        ),
    ],
    simulated_platform: PlatformOption,
    sealing_key_file: Annotated[
        Path | None,
        typer.Option(
            "--sealing-key-file",
            help="Seal the store with this key file (default: a key derived in the simulated "
            "TEE, which changes with the code's measurement).",
            show_default=False,
        ),
    ] = None,
    measurement: MeasurementOption = None,
    plain_tls: Annotated[
        bool,
        typer.Option(
            "--plain-tls",
            help="Present a plain self-signed certificate (a broker on a trusted node, pinned "
            "by fingerprint) instead of an RA-TLS one.",
        ),
    ] = False,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            "--ready-file",
            help="Once serving, write {address, service_address, fingerprint, pid} as JSON here.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a development broker in the simulated TEE until SIGTERM or Ctrl-C."""
    settings = load_kbs_settings(settings_file)
    runtime = build_runtime(
        tee="simulated",
        platform=simulated_platform,
        measurement=lambda: _measurement(measurement, "kbs"),
    )
    credentials = (
        make_self_signed_credentials("kbs")
        if plain_tls
        else runtime.credentials(hostnames=("localhost",), lifetime=BROKER_CERT_LIFETIME)
    )
    key = (
        SealingKey.load(sealing_key_file)
        if sealing_key_file is not None
        else runtime.sealing_key(STORE_KEY_LABEL)
    )

    def ready(running: RunningKbs) -> None:
        assert isinstance(runtime.provider, SimulatedTee)
        tee = runtime.provider
        platform = tee.platform.fingerprint
        print_line(f"kbs measurement {tee.measurement.hex()} (simulated platform {platform})")
        if ready_file is not None:
            document = {
                "address": running.address,
                "service_address": running.service_address,
                "fingerprint": running.fingerprint,
                "pid": os.getpid(),
            }
            write_atomic(ready_file, json.dumps(document).encode(), mode=0o644)

    serve_kbs(
        settings, credentials=credentials, sealing_key=key, on_line=print_line, on_ready=ready
    )


@role("kbs", "broker")
def _broker_from_config(config: RoleConfig) -> None:
    """Serve the broker a role config describes; print a JSON ready line once it serves."""
    if config.kbs_table is None:
        raise ConfigError(f"{config.path}: a key broker's config needs a [kbs] table")
    settings = KbsSettings.from_table(
        config.kbs_table, base_dir=config.base_dir, source=str(config.path)
    )
    if config.listen is not None:
        settings = dataclasses.replace(settings, listen=config.listen)
    if config.sealing_plan().source is SealingSource.BROKER:
        raise ConfigError(f"{config.path}: sealing.source: a broker cannot get its key from itself")
    runtime = config.runtime(simulated_measurement=config.default_measurement)
    credentials = runtime.credentials(hostnames=("localhost",), lifetime=BROKER_CERT_LIFETIME)
    key = runtime.sealing_key(STORE_KEY_LABEL)

    def ready(running: RunningKbs) -> None:
        line = {
            "event": "ready",
            "address": running.address,
            "service_address": running.service_address,
            "fingerprint": running.fingerprint,
            "tee": runtime.kind.value,
        }
        print_line(json.dumps(line))

    serve_kbs(
        settings,
        credentials=credentials,
        sealing_key=key,
        collateral=runtime.collateral,
        on_line=print_line,
        on_ready=ready,
    )


@kbs_app.command("serve")
def serve(
    config: Annotated[
        Path,
        typer.Option(
            "--config", help="The broker's role config (workload = 'kbs').", show_default=False
        ),
    ],
) -> None:
    """Run the broker from its role config, as `sealfl run --config` does (TEE from the config)."""
    parsed = load_role_config(config)
    if (parsed.workload, parsed.role) != ("kbs", "broker"):
        raise ConfigError(
            f"{config}: expected workload = 'kbs' and role = 'broker', got "
            f"{parsed.workload!r} / {parsed.role!r}"
        )
    _broker_from_config(parsed)


@kbs_app.command("admin-keygen")
def admin_keygen(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Directory for admin-cert.pem and admin-key.pem.", show_default=False
        ),
    ],
    days: Annotated[
        int, typer.Option("--days", help="Validity of the certificate in days.", min=1, max=3650)
    ] = 365,
) -> None:
    """Make an admin certificate and key; print the fingerprint to list in kbs.admins."""
    credentials = make_self_signed_credentials("kbs-admin", lifetime=datetime.timedelta(days=days))
    make_directory(out, what="--out directory")
    cert_path, key_path = out / "admin-cert.pem", out / "admin-key.pem"
    refuse = "refusing to overwrite an admin identity (choose another --out)"
    create_new_file(key_path, credentials.key_pem, what="admin key", if_exists=refuse)
    try:
        create_new_file(cert_path, credentials.cert_pem, what="admin certificate", if_exists=refuse)
    except ConfigError:
        key_path.unlink(missing_ok=True)
        raise
    fingerprint = certificate_fingerprint(credentials.cert_pem)
    typer.echo(f"wrote {cert_path} and {key_path} (mode 0600)")
    typer.echo(f"fingerprint {fingerprint}")
    typer.echo(f'list it in the broker config: admins = ["{fingerprint}"]')


@kbs_app.command("put")
def put(
    name: NameArgument,
    value_file: Annotated[
        Path, typer.Argument(help="File holding the value ('-': standard input).")
    ],
    broker: BrokerOption,
    admin_cert: AdminCertOption,
    admin_key: AdminKeyOption,
    broker_fingerprint: BrokerFingerprintOption = None,
    broker_policy: BrokerPolicyOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Store the contents of VALUE_FILE as resource NAME (a new generation; admins only)."""
    check_resource_name(name)
    value = sys.stdin.buffer.read() if str(value_file) == "-" else _read(value_file, "value")
    if not 1 <= len(value) <= MAX_VALUE_BYTES:
        raise ConfigError(
            f"value {value_file}: expected 1 to {MAX_VALUE_BYTES} bytes, got {len(value)}"
        )
    admin = _admin(broker, broker_fingerprint, broker_policy, collateral, admin_cert, admin_key)
    generation = admin.put(name, value)
    typer.echo(f"put {name}: {len(value)} bytes, generation {generation}")


@kbs_app.command("revoke")
def revoke(
    name: NameArgument,
    broker: BrokerOption,
    admin_cert: AdminCertOption,
    admin_key: AdminKeyOption,
    broker_fingerprint: BrokerFingerprintOption = None,
    broker_policy: BrokerPolicyOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Revoke resource NAME: its value is deleted and nobody gets it until a new put."""
    check_resource_name(name)
    admin = _admin(broker, broker_fingerprint, broker_policy, collateral, admin_cert, admin_key)
    was_active = admin.revoke(name)
    typer.echo(f"revoked {name}" + ("" if was_active else " (it had no active value)"))


@kbs_app.command("fetch")
def fetch(
    name: NameArgument,
    broker: BrokerOption,
    simulated_platform: PlatformOption,
    out: Annotated[
        Path,
        typer.Option("--out", help="New file for the value (mode 0600).", show_default=False),
    ],
    measurement: MeasurementOption = None,
    broker_fingerprint: BrokerFingerprintOption = None,
    broker_policy: BrokerPolicyOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Fetch resource NAME as a requester in the simulated TEE (development)."""
    check_resource_name(name)
    if out.exists():
        raise ConfigError(f"--out {out} already exists: refusing to overwrite it")
    runtime = build_runtime(
        tee="simulated",
        platform=simulated_platform,
        measurement=lambda: _measurement(measurement, "requester"),
    )
    client = KbsClient(
        broker,
        server_verifier=_broker_verifier(broker_fingerprint, broker_policy, collateral),
        provider=runtime.provider,
    )
    value, generation = client.fetch_with_generation(name)
    create_new_file(out, value, what="fetched value", if_exists="refusing to overwrite it")
    typer.echo(f"fetched {name}: {len(value)} bytes, generation {generation} -> {out}")


@kbs_app.command("audit")
def audit(
    log: Annotated[Path, typer.Argument(help="The broker's audit log (JSON lines).")],
    resource: Annotated[
        str | None, typer.Option("--resource", help="Only this resource.", show_default=False)
    ] = None,
    decision: Annotated[
        str | None,
        typer.Option("--decision", help="Only 'allow' or 'deny'.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Show the broker's decisions as a table (or JSON lines), oldest first."""
    if decision not in (None, "allow", "deny"):
        raise ConfigError(f"--decision: expected 'allow' or 'deny', got {decision!r}")
    records = [
        r
        for r in read_audit_log(log)
        if (resource is None or r.resource == resource)
        and (decision is None or r.decision == decision)
    ]
    if as_json:
        for record in records:
            typer.echo(json.dumps(record.to_dict()))
        return
    table = Table(title=f"{log}: {len(records)} decision(s)")
    for column in ("time", "action", "resource", "decision", "role", "certificate", "reason"):
        table.add_column(column, overflow="fold")
    for record in records:
        colour = "green" if record.decision == "allow" else "red"
        measurement = record.measurements.get("measurement") or record.measurements.get(
            "mr_enclave", ""
        )
        who = (record.fingerprint or "-")[:16]
        if measurement:
            who += f"\nm {measurement[:16]}"
        table.add_row(
            record.time[:23],
            record.action,
            record.resource or "-",
            f"[{colour}]{record.decision}[/{colour}]",
            record.role or "-",
            who,
            record.reason,
        )
    print_table(output_console(), table)


@bench_app.command("kbs")
def bench_kbs(
    runs: Annotated[int, typer.Option("--runs", help="Fetches to time.", min=5, max=10000)] = 50,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the results as JSON to this file."),
    ] = None,
) -> None:
    """Broker round trip (challenge, fresh RA-TLS certificate, enrol, release) vs RA-TLS connect."""
    if out is not None:
        check_output_path(out, what="--out")
    load_benchmark("kbs").main(runs=runs, out=out)

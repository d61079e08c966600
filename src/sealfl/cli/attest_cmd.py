"""``sealfl attest``: verify quotes, inspect RA-TLS certificates, write policies from SIGSTRUCTs.

Exit status: 0 when the evidence is accepted (``verify``) or the key binding holds
(``inspect``), 1 when it is refused or does not hold (the reason is printed), 2 when an input
cannot be used at all (missing file, not a quote, not a certificate, bad policy or collateral,
a SIGSTRUCT that does not verify).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sealfl._files import write_atomic
from sealfl.cli.app import app
from sealfl.errors import AttestationError, ConfigError
from sealfl.tee import (
    Policy,
    SimulatedPlatform,
    Verdict,
    Verifier,
    collateral_source,
    inspect_ratls_certificate,
    load_policy,
    measure_code,
)
from sealfl.tee.sigstruct import policy_from_sigstruct, read_sigstruct

attest_app = typer.Typer(
    help="Attestation evidence: verify SGX/TDX quotes, inspect RA-TLS certificates.",
    no_args_is_help=True,
)
app.add_typer(attest_app, name="attest")

_LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last second a certificate can name
_SIMULATED_BANNER = (
    "*** SIMULATED evidence: made by a simulated platform for development; it proves nothing "
    "about isolation, and real verifiers refuse it ***"
)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _read_root_ca(path: Path) -> bytes:
    """Read ``--root-ca`` as an X.509 certificate (DER, or PEM) and return its DER bytes.

    Checked here so that a wrong file is bad input (exit status 2), not a quote that fails
    to verify (exit status 1) for a reason buried in the verdict.
    """
    data = _read_bytes(path, "root CA")
    try:
        certificate = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(data)
        )
    except ValueError as exc:
        raise ConfigError(
            f"--root-ca {path}: not an X.509 certificate in DER or PEM ({exc})"
        ) from exc
    return certificate.public_bytes(serialization.Encoding.DER)


def _print_fields(title: str, fields: Mapping[str, str]) -> None:
    typer.echo(f"{title}:")
    for name, value in fields.items():
        typer.echo(f"  {name}: {value}")


def _print_verdict(verdict: Verdict, policy_note: str) -> None:
    version = f" (quote v{verdict.quote_version})" if verdict.quote_version else ""
    if verdict.backend == "simulated":
        typer.echo(_SIMULATED_BANNER)
    typer.echo(f"verdict: {'ACCEPTED' if verdict.accepted else 'REFUSED'}")
    typer.echo(f"evidence: {verdict.backend}{version}")
    typer.echo(f"policy: {policy_note}")
    typer.echo(f"tcb status: {verdict.tcb_status or 'unknown (not verified)'}")
    typer.echo(f"advisories: {', '.join(verdict.advisories) or 'none'}")
    if verdict.platform_flags:
        _print_fields("platform", verdict.platform_flags)
    _print_fields("measurements", verdict.measurements)
    if verdict.report_data is not None:
        typer.echo(f"report_data: {verdict.report_data.hex()}")
    if verdict.reasons:
        typer.echo("reasons:")
        for reason in verdict.reasons:
            typer.echo(f"  - {reason}")


@attest_app.command("verify")
def verify(
    quote: Annotated[
        Path, typer.Argument(help="Raw quote file (SGX v3, TDX v4/v5).", show_default=False)
    ],
    collateral: Annotated[
        str,
        typer.Option(
            "--collateral",
            help="Collateral JSON (dcap-qvl QuoteCollateralV3), a directory of them, or the "
            "https:// URL of a PCCS/PCS to fetch it from.",
            show_default=False,
        ),
    ],
    at: Annotated[
        int,
        typer.Option(
            "--at",
            help="Unix time to verify at (collateral must be valid then).",
            min=0,
            max=_LATEST_TIME,
        ),
    ],
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy (TOML, or cczoo dynamic_config.json). Without it only the signature "
            "chain and the strict platform rules are checked, not the measurements.",
            show_default=False,
        ),
    ] = None,
    root_ca: Annotated[
        Path | None,
        typer.Option(
            "--root-ca",
            help="Trust anchor (DER) to pin instead of dcap-qvl's built-in Intel SGX Root CA.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Verify QUOTE with dcap-qvl at time --at, then apply the policy; print the verdict."""
    evidence = _read_bytes(quote, "quote")
    policy = load_policy(policy_file) if policy_file is not None else Policy()
    verifier = Verifier(
        policy,
        collateral=collateral_source(collateral),
        now=lambda: float(at),
        root_ca_der=_read_root_ca(root_ca) if root_ca is not None else None,
    )
    verdict = verifier.appraise(evidence, check_identity=policy_file is not None)
    if verdict.backend == "unknown":
        raise ConfigError(f"{quote}: not a usable quote ({'; '.join(verdict.reasons)})")
    note = str(policy_file) if policy_file else "none given: measurements not checked"
    if as_json:
        typer.echo(json.dumps({**verdict.to_dict(), "policy": note, "at": at}, indent=2))
    else:
        _print_verdict(verdict, note)
    if not verdict.accepted:
        raise typer.Exit(1)


@attest_app.command("inspect")
def inspect(
    cert: Annotated[Path, typer.Argument(help="RA-TLS certificate (PEM).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show a certificate's evidence format, measurements and whether its key binding holds.

    The quote's signature chain is not checked here (use ``verify`` with collateral).
    """
    cert_pem = _read_bytes(cert, "certificate")
    try:
        report = inspect_ratls_certificate(cert_pem)
    except AttestationError as exc:
        raise ConfigError(f"{cert}: {exc}") from exc
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        version = f" (quote v{report.quote_version})" if report.quote_version else ""
        if report.backend == "simulated":
            typer.echo(_SIMULATED_BANNER)
        typer.echo(f"format: {report.format}")
        typer.echo(f"evidence: {report.backend}{version}")
        typer.echo(f"subject: {report.subject}")
        typer.echo(f"valid: {report.not_before.isoformat()} .. {report.not_after.isoformat()}")
        _print_fields("measurements", report.measurements)
        typer.echo(f"report_data: {report.report_data.hex()}")
        if report.claims:
            _print_fields("claims", report.claims)
        state = "holds" if report.key_binding_holds else "DOES NOT HOLD"
        typer.echo(f"key binding: {state} ({report.key_binding_detail})")
    if not report.key_binding_holds:
        raise typer.Exit(1)


def _parse_config(items: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--config expects NAME=VALUE, got {item!r}")
        config[name] = value
    return config


@attest_app.command("measure")
def measure(
    config: Annotated[
        list[str] | None,
        typer.Option("--config", help="NAME=VALUE run setting included in the measurement."),
    ] = None,
) -> None:
    """Print the simulated measurement of this sealfl checkout and the given settings."""
    typer.echo(measure_code(_parse_config(config or [])).hex())


@attest_app.command("simulated-platform")
def simulated_platform(
    directory: Annotated[
        Path, typer.Argument(help="Directory for the new platform's key files.", show_default=False)
    ],
) -> None:
    """Create a simulated platform (development only) and print its fingerprint to trust."""
    platform = SimulatedPlatform.create(directory)
    result: dict[str, Any] = {"directory": str(directory), "fingerprint": platform.fingerprint}
    typer.echo(json.dumps(result))


@attest_app.command("policy-from-sig")
def policy_from_sig(
    file: Annotated[
        Path,
        typer.Argument(
            help="Gramine SIGSTRUCT (.sig, 1808 bytes; its signature is verified) or the JSON of "
            "gramine-sgx-sigstruct-view --output-format json.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the policy here instead of to stdout.", show_default=False
        ),
    ] = None,
    with_mr_enclave: Annotated[
        bool,
        typer.Option(
            "--with-mr-enclave",
            help="Also pin this exact build's MRENCLAVE (by default only signer, product id and "
            "minimum SVN are pinned).",
        ),
    ] = False,
    min_isv_svn: Annotated[
        int | None,
        typer.Option(
            "--min-isv-svn",
            help="Lowest ISVSVN accepted (default: the SIGSTRUCT's own isv_svn).",
            min=0,
            max=0xFFFF,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a TOML policy admitting enclaves signed like FILE: mr_signer, isv_prod_id, min SVN."""
    sig = read_sigstruct(file)
    text = policy_from_sigstruct(sig, with_mr_enclave=with_mr_enclave, min_isv_svn=min_isv_svn)
    if not sig.signature_verified:
        typer.echo(
            f"note: {file} is JSON, which carries no signature: it is trusted as given",
            err=True,
        )
    if sig.debug:
        typer.echo(
            f"warning: {file} is for a DEBUG enclave; this policy (allow_debug = false) refuses "
            "its evidence",
            err=True,
        )
    if min_isv_svn is not None and min_isv_svn > sig.isv_svn:
        typer.echo(
            f"note: --min-isv-svn {min_isv_svn} is above this build's isv_svn {sig.isv_svn}, so "
            "this build itself is refused",
            err=True,
        )
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_atomic(out, text.encode("utf-8"), mode=0o644)
        typer.echo(f"wrote {out}", err=True)

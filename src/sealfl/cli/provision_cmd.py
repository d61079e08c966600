"""``sealfl provision`` and ``sealfl bundle``: a project file in, a signed bundle per org out.

``sealfl provision project.toml --out bundles/ --key provisioner.key`` writes every
organisation's bundle (:mod:`sealfl.deploy.provision`) and prints the provisioner key's
fingerprint, which each host is given out of band. A host then starts a party only from a
bundle that checks: ``sealfl bundle run DIR --party NAME --provisioner FINGERPRINT`` verifies
the signature and every digest, the role and the security version, and runs the party as
``sealfl run --config`` would. Exit status: 0 done, 1 refused (tampered, rolled back, wrong
role), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealfl.cli.app import app
from sealfl.cli.run_cmd import run as run_config
from sealfl.deploy.bundle import check_start, verify_bundle
from sealfl.deploy.project import load_project
from sealfl.deploy.provision import provision

bundle_app = typer.Typer(
    help="Organisation bundles: verify one, or start a party from it.", no_args_is_help=True
)
app.add_typer(bundle_app, name="bundle")

ProvisionerOption = Annotated[
    str,
    typer.Option(
        "--provisioner",
        envvar="SEALFL_PROVISIONER",
        help="SHA-256 fingerprint of the provisioner's key, given to this host out of band.",
        show_default=False,
    ),
]


@app.command("provision")
def provision_command(
    project: Annotated[Path, typer.Argument(help="The federation's project.toml.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for one bundle per org.")],
    key: Annotated[
        Path,
        typer.Option("--key", help="The provisioner's Ed25519 key (made here if missing)."),
    ],
    roles: Annotated[
        Path, typer.Option("--roles", help="Role table with the SGX isv_prod_id of each role.")
    ] = Path("deploy/gramine/roles.toml"),
) -> None:
    """Write each organisation's signed bundle: role configs, policies, broker, release list."""
    parsed = load_project(project)
    result = provision(parsed, out=out, key_file=key, roles=roles)
    if result.new_key:
        typer.echo(f"new provisioner key: {key} (keep it private)")
    for org, directory in result.bundles.items():
        typer.echo(f"{org}: {directory}")
    typer.echo(f"provisioner fingerprint (give it to every host): {result.fingerprint}")


@bundle_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="An organisation's bundle directory.")],
    provisioner: ProvisionerOption,
) -> None:
    """Check a bundle's signature and the digest of every file in it."""
    manifest = verify_bundle(bundle, provisioner=provisioner)
    parties = ", ".join(f"{p.name} ({p.kind})" for p in manifest.parties.values())
    typer.echo(
        f"{bundle}: {manifest.project} / {manifest.org}, isv_svn {manifest.isv_svn}, "
        f"{len(manifest.files)} files intact; parties: {parties}"
    )


@bundle_app.command("run")
def run_command(
    bundle: Annotated[Path, typer.Argument(help="An organisation's bundle directory.")],
    party: Annotated[str, typer.Option("--party", help="The party of the bundle to start.")],
    provisioner: ProvisionerOption,
    role: Annotated[
        str | None,
        typer.Option("--role", envvar="SEALFL_EXPECT_ROLE", help="workload/role this host runs."),
    ] = None,
    min_isv_svn: Annotated[
        int, typer.Option("--min-isv-svn", help="Oldest security version accepted.")
    ] = 0,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="File recording the newest isv_svn started (rollback)."),
    ] = None,
) -> None:
    """Check the bundle (signature, digests, role, isv_svn), then run the party from it."""
    manifest = check_start(
        bundle,
        party=party,
        provisioner=provisioner,
        expect_role=role,
        min_isv_svn=min_isv_svn,
        state=state,
    )
    run_config(manifest.config(party))

"""``sealfl deploy``: render and check Gramine manifests for sealfl's roles.

``gramine-manifest`` renders the template of ``deploy/gramine/`` for one role (or every role)
with this interpreter's paths, so it runs inside the image being measured, then checks the
result; ``check-manifest`` checks a manifest someone edited. Exit status: 0 when every rule
holds, 2 when one does not (the problems are listed, one per line).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sealfl._files import make_directory, read_small_file, write_atomic
from sealfl.cli.app import app
from sealfl.deploy import (
    ImagePaths,
    ManifestRequest,
    RoleSpec,
    check_manifest,
    compiled_modules,
    load_role_table,
    render_manifest,
    required_distributions,
)
from sealfl.deploy.bundle import read_bundle_parties
from sealfl.errors import ConfigError

deploy_app = typer.Typer(
    help="Deployment files: Gramine manifests per role, checked against sealfl's rules.",
    no_args_is_help=True,
)
app.add_typer(deploy_app, name="deploy")

DEFAULT_TEMPLATE = Path("deploy/gramine/sealfl.manifest.template")
DEFAULT_ROLES = Path("deploy/gramine/roles.toml")
_MAX_MANIFEST_BYTES = 16 << 20

TemplateOption = Annotated[
    Path, typer.Option("--template", help="The manifest template (Jinja-style placeholders).")
]
RolesOption = Annotated[
    Path, typer.Option("--roles", help="The role table: isv_prod_id, enclave size, threads.")
]


def _spec(table: dict[str, RoleSpec], name: str, source: Path) -> RoleSpec:
    if name not in table:
        raise ConfigError(f"--role: {name!r} is not in {source}; expected one of {sorted(table)}")
    return table[name]


def _text(path: Path, what: str) -> str:
    data = read_small_file(path, what=what, max_bytes=_MAX_MANIFEST_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: a {what} is UTF-8 text ({exc})") from None


def _fail_on(problems: list[str], what: str) -> None:
    if problems:
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
        raise ConfigError(f"{what}: {len(problems)} rule(s) broken (listed above)")


@deploy_app.command("gramine-manifest")
def gramine_manifest(
    conf_dir: Annotated[
        Path, typer.Option("--conf-dir", help="Absolute path of the bundle (trusted) in the image.")
    ],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Absolute input directory.")],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Absolute directory for sealed outputs.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write <workload>-<role>.manifest into.")
    ],
    role_name: Annotated[
        list[str] | None,
        typer.Option("--role", help="workload/role to render (repeat; default: every role)."),
    ] = None,
    isv_svn: Annotated[
        int, typer.Option("--isv-svn", help="Security version (sgx.isvsvn); peers pin a minimum.")
    ] = 1,
    runtimedir: Annotated[
        Path, typer.Option("--runtimedir", help="Gramine's runtime directory (its glibc).")
    ] = Path("/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"),
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="An organisation's bundle: one manifest per party, named <party>.manifest, "
            "for its role and its config file (--conf-dir is where the bundle is in the image).",
        ),
    ] = None,
    template: TemplateOption = DEFAULT_TEMPLATE,
    roles: RolesOption = DEFAULT_ROLES,
) -> None:
    """Render the manifest of each role with this interpreter's paths, then check it."""
    table = load_role_table(roles)
    jobs: list[tuple[RoleSpec, str | None, str]]
    if bundle is not None:
        parties = read_bundle_parties(bundle)
        jobs = [(_spec(table, p.kind, roles), p.config, p.name) for p in parties]
    elif role_name:
        jobs = [(_spec(table, name, roles), None, "") for name in role_name]
    else:
        jobs = [(spec, None, "") for spec in table.values()]
    text = _text(template, "manifest template")
    paths = ImagePaths.of_this_interpreter(runtimedir=runtimedir)
    make_directory(out, what="output directory")
    for spec, config_name, party in jobs:
        started = time.perf_counter()
        request = ManifestRequest(
            spec=spec,
            isv_svn=isv_svn,
            conf_dir=conf_dir,
            data_dir=data_dir,
            out_dir=out_dir,
            config_name=config_name,
        )
        manifest = render_manifest(text, request, paths)
        rendered_s = time.perf_counter() - started
        problems = check_manifest(
            manifest,
            spec=spec,
            extensions=compiled_modules(extras=spec.extras),
            required=required_distributions(spec),
            expected_allowed=(data_dir, out_dir),
        )
        _fail_on(problems, f"{spec.name} manifest")
        target = out / (f"{party}.manifest" if party else f"{spec.workload}-{spec.role}.manifest")
        write_atomic(target, manifest.encode("utf-8"), mode=0o644)
        typer.echo(
            f"{target}: isv_prod_id {spec.isv_prod_id}, isv_svn {isv_svn}, "
            f"rendered in {rendered_s * 1000:.1f} ms, checked"
        )


@deploy_app.command("check-manifest")
def check_manifest_command(
    manifest: Annotated[Path, typer.Argument(help="A rendered manifest (TOML).")],
    role_name: Annotated[
        str | None, typer.Option("--role", help="workload/role it is for (checks isv_prod_id).")
    ] = None,
    extensions: Annotated[
        bool,
        typer.Option(
            "--extensions/--no-extensions",
            help="Also check that this interpreter's compiled modules are trusted.",
        ),
    ] = True,
    roles: RolesOption = DEFAULT_ROLES,
) -> None:
    """Check a manifest against sealfl's rules (debug, DCAP, argv, passthrough, paths)."""
    spec = _spec(load_role_table(roles), role_name, roles) if role_name else None
    problems = check_manifest(
        _text(manifest, "manifest"),
        spec=spec,
        extensions=compiled_modules(extras=spec.extras if spec else ()) if extensions else None,
        required=required_distributions(spec) if spec and extensions else (),
    )
    _fail_on(problems, str(manifest))
    typer.echo(f"{manifest}: every rule holds")

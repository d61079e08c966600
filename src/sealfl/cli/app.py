"""The root ``sealfl`` Typer application and its command groups.

Command modules (``sealfl.cli.*_cmd``) import the groups from here and register their commands;
:mod:`sealfl.cli.main` imports every command module and runs the application.
"""

from __future__ import annotations

import typer

from sealfl import __version__

app = typer.Typer(
    name="sealfl",
    help="Privacy-preserving machine learning: Paillier HE, attested TEEs (RA-TLS) and MPC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Benchmarks that compare sealfl with a named peer.", no_args_is_help=True
)
demo_app = typer.Typer(
    help="Run a workload end to end on this machine (simulated TEE, real crypto).",
    no_args_is_help=True,
)
model_app = typer.Typer(
    help="Release of a trained model to its owner: recipient keys, envelopes (HPKE), opening.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
app.add_typer(demo_app, name="demo")
app.add_typer(model_app, name="model")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sealfl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Privacy-preserving machine learning: Paillier HE, attested TEEs (RA-TLS) and MPC."""

"""``sealfl he`` (Paillier key files) and ``sealfl bench paillier``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from sealfl import he
from sealfl._files import check_output_path
from sealfl.cli.app import app, bench_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console
from sealfl.errors import ConfigError

he_app = typer.Typer(
    help="Paillier keys: generate and inspect key files (JSON, validated on load).",
    no_args_is_help=True,
)
app.add_typer(he_app, name="he")

_MAX_CORES = 1024
PRIVATE_FILE = "paillier-private.json"
PUBLIC_FILE = "paillier-public.json"


@he_app.command("keygen")
def keygen(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory for the two key files.", show_default=False),
    ],
    bits: Annotated[int, typer.Option(help="Modulus size: 2048 or 3072 (1024 warns).")] = 2048,
    force: Annotated[bool, typer.Option(help="Overwrite existing key files.")] = False,
) -> None:
    """Generate a Paillier key pair into DIR/paillier-private.json (0600) and -public.json."""
    private_path, public_path = out / PRIVATE_FILE, out / PUBLIC_FILE
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to replace it")
    console = output_console(stderr=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", he.WeakKeyWarning)
        public_key, private_key = he.generate_keypair(bits)
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}", highlight=False)
    he.save_private_key(private_key, private_path)
    he.save_public_key(public_key, public_path)
    typer.echo(f"private key: {private_path}")
    typer.echo(f"public key:  {public_path}")
    typer.echo(f"fingerprint: {public_key.fingerprint_hex} ({public_key.bits} bits)")


@he_app.command("inspect")
def inspect(
    key_file: Annotated[Path, typer.Argument(help="A Paillier key file.", show_default=False)],
) -> None:
    """Validate a key file and print its kind, size and fingerprint (never the secret)."""
    key = he.load_key(key_file)
    if isinstance(key, he.PaillierPrivateKey):
        public_key, kind = key.public_key, "private (p·q = n and both primes checked)"
    else:
        public_key, kind = key, "public"
    typer.echo(f"kind:        {kind}")
    typer.echo(f"bits:        {public_key.bits}")
    typer.echo(f"fingerprint: {public_key.fingerprint_hex}")


@bench_app.command("paillier")
def bench(
    quick: Annotated[bool, typer.Option(help="Small sizes, under a minute.")] = False,
    json_path: Annotated[
        Path, typer.Option("--json", help="Where to write the figures as JSON.")
    ] = Path("bench-results/paillier.json"),
    bits: Annotated[int, typer.Option(help="Key size for both libraries.")] = 2048,
    cores: Annotated[
        int | None, typer.Option(help="Cores for the parallel columns (default: all).")
    ] = None,
) -> None:
    """Paillier encryption, decryption, addition and matrix products against python-paillier."""
    if cores is not None and not 1 <= cores <= _MAX_CORES:
        raise ConfigError(f"--cores must be 1..{_MAX_CORES}, got {cores}")
    if bits not in (1024, 2048, 3072):
        raise ConfigError(f"--bits must be 1024, 2048 or 3072, got {bits}")
    check_output_path(json_path, what="--json")  # before minutes of measuring, not after
    load_benchmark("paillier").main(quick=quick, json_path=json_path, bits=bits, cores=cores)

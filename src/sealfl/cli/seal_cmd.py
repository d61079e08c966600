"""``sealfl seal``: development key files and sealed (chunked AES-256-GCM) files.

Every command replaces its output atomically and leaves it untouched when it fails; errors
come back as :class:`sealfl.errors.SealflError` and :mod:`sealfl.cli.main` turns them into a
message and exit status 2 (bad arguments or paths) or 1 (a file that fails to verify).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealfl.cli.app import app
from sealfl.errors import ConfigError, SealError
from sealfl.seal import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    SealingKey,
    inspect_sealed,
    open_sealed_file,
    seal_file,
)

seal_app = typer.Typer(
    help="Sealed files: AES-256-GCM in authenticated chunks, replaced atomically.",
    no_args_is_help=True,
)
app.add_typer(seal_app, name="seal")

KeyFile = Annotated[
    Path,
    typer.Option(
        "--key", "-k", help="Key file made by `sealfl seal keygen` (mode 0600).", show_default=False
    ),
]
SealedInput = Annotated[Path, typer.Argument(help="Sealed file to read.", show_default=False)]


def _load_key(key_file: Path) -> SealingKey:
    """Load ``--key``; a file that is not a sealing key file is bad input (exit status 2).

    :meth:`SealingKey.load` calls malformed contents a :class:`SealError`, since a key that
    arrives from elsewhere may have been tampered with; on the command line it is the file
    the user named, and a refusal (exit status 1) is kept for sealed files that fail to verify.
    """
    try:
        return SealingKey.load(key_file)
    except SealError as exc:
        raise ConfigError(f"--key: {exc}") from exc


def _refuse_key_as_output(out: Path, key_file: Path) -> None:
    """Stop a slip such as ``encrypt model key.json --key key.json`` from destroying the key."""
    if out.resolve() == key_file.resolve():
        raise ConfigError(f"output {out} is the key file; refusing to overwrite the key")


@seal_app.command("keygen")
def keygen(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the new key file (must not exist).",
            show_default=False,
        ),
    ],
) -> None:
    """Generate a random sealing key into a new key file, mode 0600 (for development)."""
    key = SealingKey.generate()
    key.save(out)
    typer.echo(f"wrote key file {out} (key id {key.key_id.hex()})")


@seal_app.command("encrypt")
def encrypt(
    src: Annotated[Path, typer.Argument(help="Plaintext file to seal.", show_default=False)],
    dst: Annotated[
        Path, typer.Argument(help="Sealed file to create or replace.", show_default=False)
    ],
    key_file: KeyFile,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help=f"Plaintext bytes per chunk, 1..{MAX_CHUNK_SIZE}.")
    ] = DEFAULT_CHUNK_SIZE,
    label: Annotated[
        str,
        typer.Option("--label", help="Content type recorded (and authenticated) in the header."),
    ] = "",
) -> None:
    """Seal SRC into DST; DST is replaced only once it is completely written."""
    _refuse_key_as_output(dst, key_file)
    key = _load_key(key_file)
    seal_file(src, dst, key, chunk_size=chunk_size, label=label)
    typer.echo(f"sealed {src} -> {dst} ({dst.stat().st_size} bytes, key id {key.key_id.hex()})")


@seal_app.command("decrypt")
def decrypt(
    src: SealedInput,
    dst: Annotated[
        Path, typer.Argument(help="Plaintext file to create or replace.", show_default=False)
    ],
    key_file: KeyFile,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Refuse the file unless its header carries this label."),
    ] = None,
) -> None:
    """Verify and decrypt SRC into DST; DST is replaced only if all of SRC authenticates."""
    _refuse_key_as_output(dst, key_file)
    key = _load_key(key_file)
    open_sealed_file(src, dst, key, label=label)
    typer.echo(f"opened {src} -> {dst} ({dst.stat().st_size} bytes)")


@seal_app.command("info")
def info(src: SealedInput) -> None:
    """Show a sealed file's header (format, chunk size, key id, label) without a key.

    The header is authenticated only when the file is opened with its key: treat it as a hint.
    """
    header = inspect_sealed(src)
    typer.echo(f"file:       {src}")
    typer.echo(f"format:     sealfl sealed file, version {header.version}")
    typer.echo(f"key id:     {header.key_id.hex()}")
    typer.echo(f"chunk size: {header.chunk_size}")
    typer.echo(f"label:      {header.label!r}")

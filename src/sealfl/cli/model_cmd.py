"""``sealfl model``: release a trained model to its owner, and open it there.

The producing party seals the model under a fresh data key wrapped (HPKE) for every recipient
of its release policy (``model release``; the parameter server does the same itself). A
recipient that holds its private key opens the envelope offline (``model open``); an attested
TEE first obtains its key from the key broker (``model fetch``). ``model keygen`` makes a
recipient's key pair, ``model inspect`` and ``model policy`` show who can open what.

Errors come back as :class:`sealfl.errors.SealflError`; :mod:`sealfl.cli.main` turns them into
a message and exit status 2 (bad input: a missing or malformed file) or 1 (a refusal: not a
recipient, tampered, truncated). A refused ``open`` writes nothing and leaves an existing
``--out`` file untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sealfl._files import check_output_path
from sealfl.cli.app import bench_app, model_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.errors import ConfigError
from sealfl.runtime import load_role_config
from sealfl.runtime.release import fetch_release
from sealfl.seal import (
    DEFAULT_CHUNK_SIZE,
    ReleaseInfo,
    ReleaseKey,
    ReleasePolicy,
    inspect_release,
    open_release,
    write_release,
)

Envelope = Annotated[Path, typer.Argument(help="Release envelope to read.", show_default=False)]
OutOption = Annotated[
    Path,
    typer.Option("--out", "-o", help="Model file to create or replace.", show_default=False),
]
ReleaseListOption = Annotated[
    str | None,
    typer.Option(
        "--release-list",
        help="Refuse the envelope unless its release-list digest is this (64 hex digits).",
    ),
]


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _parse_digest(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigError(f"--release-list: expected 64 hex digits (SHA-256), got {text!r}")
    return digest


def _print_recipients(info_or_policy: ReleaseInfo | ReleasePolicy) -> None:
    recipients = info_or_policy.recipients
    width = max(len(r.name) for r in recipients)
    for r in recipients:
        where = (
            f"broker resource {r.broker_resource}" if r.broker_resource else "holds its private key"
        )
        typer.echo(f"  {r.name:<{width}}  key {r.key_id.hex()}  {where}")


@model_app.command("keygen")
def keygen(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Directory for NAME.key and NAME.pub (created if needed).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="Recipient name; also the files' base name.")
    ] = "recipient",
) -> None:
    """Make a recipient key pair: NAME.key (private, 0600) and NAME.pub (for release policies).

    Neither file may exist yet. Keep NAME.key on the trusted node, or store its contents in the
    key broker as a resource for an attested TEE; list NAME.pub in the producer's policy.
    """
    key = ReleaseKey.generate(name=name)
    private, public = key.save(out)
    typer.echo(f"wrote private key {private} (mode 0600: keep it secret)")
    typer.echo(f"wrote public key  {public} (key id {key.key_id.hex()}: list it in release.toml)")


@model_app.command("release")
def release(
    src: Annotated[Path, typer.Argument(help="Model file to release.", show_default=False)],
    policy_file: Annotated[
        Path,
        typer.Option(
            "--policy",
            "-p",
            help="Release policy (TOML) listing the recipients.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Envelope to create or replace.", show_default=False),
    ],
    label: Annotated[
        str, typer.Option("--label", help="Content type, bound into every recipient's key.")
    ] = "",
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Plaintext bytes per payload chunk.")
    ] = DEFAULT_CHUNK_SIZE,
) -> None:
    """Seal SRC for every recipient of the policy into a release envelope (atomically)."""
    if _same_file(src, out):
        raise ConfigError(f"output {out} is the model file; write the envelope elsewhere")
    policy = ReleasePolicy.load(policy_file)
    info = write_release(out, src, policy, label=label, chunk_size=chunk_size)
    typer.echo(f"released {src} -> {out} ({info.model_bytes} bytes) to {policy.describe()}")


@model_app.command("open")
def open_(
    envelope: Envelope,
    key_file: Annotated[
        Path,
        typer.Option(
            "--key",
            "-k",
            help="Recipient private key (NAME.key from `model keygen`, or PEM).",
            show_default=False,
        ),
    ],
    out: OutOption,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Refuse the envelope unless it carries this label."),
    ] = None,
    release_list: ReleaseListOption = None,
) -> None:
    """Open ENVELOPE offline with a recipient's key; --out is written only if all of it verifies."""
    for other, what in ((envelope, "the envelope"), (key_file, "the key file")):
        if _same_file(out, other):
            raise ConfigError(f"output {out} is {what}; refusing to overwrite it")
    digest = _parse_digest(release_list)
    key = ReleaseKey.load(key_file)
    info = open_release(envelope, out, private_key=key, label=label, release_list=digest)
    typer.echo(
        f"opened {envelope} -> {out} ({info.model_bytes} bytes) as recipient {info.opened_by!r}"
    )


@model_app.command("fetch")
def fetch(
    envelope: Envelope,
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            help="Role config of this party: its TEE and its [broker] (peer and how to trust it).",
            show_default=False,
        ),
    ],
    out: OutOption,
    resource: Annotated[
        str | None,
        typer.Option(
            "--resource",
            help="Which broker-held recipient to open as (needed if the envelope lists several).",
            show_default=False,
        ),
    ] = None,
    release_list: ReleaseListOption = None,
) -> None:
    """Open ENVELOPE in this attested TEE: the key broker releases the recipient's key to it."""
    if _same_file(out, envelope):
        raise ConfigError(f"output {out} is the envelope; refusing to overwrite it")
    digest = _parse_digest(release_list)
    parsed = load_role_config(config)
    runtime = parsed.runtime(simulated_measurement=parsed.default_measurement)
    info = fetch_release(runtime, envelope, out, resource=resource, release_list=digest)
    typer.echo(
        f"opened {envelope} -> {out} ({info.model_bytes} bytes) as recipient {info.opened_by!r}, "
        f"its key released by the broker to this {runtime.kind.value} TEE"
    )


@model_app.command("inspect")
def inspect(
    envelope: Envelope,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
) -> None:
    """Show an envelope's header without a key: label, release list, recipients.

    Nothing shown is authenticated until a recipient opens the envelope: treat it as a hint.
    """
    info = inspect_release(envelope)
    if as_json:
        typer.echo(json.dumps(info.to_json(), indent=2))
        return
    size = "unknown" if info.model_bytes is None else f"{info.model_bytes} bytes"
    typer.echo(f"file:         {envelope}")
    typer.echo("format:       sealfl release envelope, version 1")
    typer.echo(f"suite:        {info.suite}")
    typer.echo(f"label:        {info.label!r}")
    typer.echo(f"release list: {info.release_list.hex()}")
    typer.echo(f"model size:   {size} (from the file size; verified only when opened)")
    typer.echo("recipients:")
    _print_recipients(info)


@model_app.command("policy")
def policy(
    policy_file: Annotated[
        Path, typer.Argument(help="Release policy (TOML) to check.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
) -> None:
    """Check a release policy and print its release-list digest (the RA-TLS claim value)."""
    loaded = ReleasePolicy.load(policy_file)
    if as_json:
        document = {
            "release_list": loaded.digest().hex(),
            "recipients": [
                {
                    "name": r.name,
                    "key_id": r.key_id.hex(),
                    "public_key": r.public_key.hex(),
                    "broker_resource": r.broker_resource,
                }
                for r in loaded.recipients
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"policy:       {policy_file}")
    typer.echo(f"release list: {loaded.digest().hex()}")
    typer.echo("recipients:")
    _print_recipients(loaded)


@bench_app.command("release")
def bench_release(
    size_mb: Annotated[int, typer.Option("--size-mb", help="Model size in MiB.")] = 100,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats (median).")] = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the results as JSON to this file."),
    ] = None,
) -> None:
    """Time `model release`/`model open` of a model against `seal encrypt`/`seal decrypt`."""
    if not 1 <= size_mb <= 4096:
        raise ConfigError(f"--size-mb: expected 1 to 4096, got {size_mb}")
    if not 1 <= repeats <= 50:
        raise ConfigError(f"--repeats: expected 1 to 50, got {repeats}")
    if out is not None:
        check_output_path(out, what="--out")
    load_benchmark("release").main(size_mb=size_mb, repeats=repeats, out=out)

"""Entry point of the ``sealfl`` command.

Importing a command module registers its commands on the groups of :mod:`sealfl.cli.app`.
Errors sealfl raises on purpose become one red line and exit status 2 (bad input) or 1.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Importing a command module registers its commands; add new modules here.
from sealfl.cli import (
    attest_cmd,  # sealfl attest ...
    he_cmd,  # sealfl he ..., bench paillier
    homo_lr_cmd,  # sealfl homo-lr ..., demo homo-lr, bench homo-lr
    infer_cmd,  # sealfl infer ..., demo infer, bench infer
    kbs_cmd,  # sealfl kbs ..., bench kbs
    model_cmd,  # sealfl model ..., bench release
    net_cmd,  # sealfl bench ratls
    run_cmd,  # sealfl run --config ROLE.toml
    seal_cmd,  # sealfl seal ...
)
from sealfl.cli.app import app
from sealfl.errors import ConfigError, SealflError

COMMAND_MODULES = (
    attest_cmd,
    he_cmd,
    homo_lr_cmd,
    infer_cmd,
    kbs_cmd,
    model_cmd,
    net_cmd,
    run_cmd,
    seal_cmd,
)


def main() -> None:
    """Run the ``sealfl`` command line, mapping sealfl errors to a message and an exit code."""
    try:
        app()
    except SealflError as exc:
        # The message is text, not markup: "[kbs]" or "[options]" in it must print as written.
        console = Console(stderr=True)
        console.print("[red]error:[/red] ", end="", highlight=False)
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


if __name__ == "__main__":
    main()

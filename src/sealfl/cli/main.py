"""Entry point of the ``sealfl`` command.

Importing a command module registers its commands on the groups of :mod:`sealfl.cli.app`.
Errors sealfl raises on purpose become one red line and exit status 2 (bad input) or 1.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Command modules: one import per module, each registers its own commands.
import sealfl.cli.attest_cmd  # sealfl attest ...
import sealfl.cli.he_cmd  # noqa: F401  (sealfl he ..., bench paillier)
import sealfl.cli.homo_lr_cmd  # noqa: F401  (sealfl homo-lr ..., demo homo-lr, bench homo-lr)
import sealfl.cli.infer_cmd  # sealfl infer ..., demo infer, bench infer
import sealfl.cli.net_cmd  # sealfl bench ratls
import sealfl.cli.seal_cmd  # noqa: F401  (sealfl seal ...)
from sealfl.cli.app import app
from sealfl.errors import ConfigError, SealflError


def main() -> None:
    """Run the ``sealfl`` command line, mapping sealfl errors to a message and an exit code."""
    try:
        app()
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except SealflError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()

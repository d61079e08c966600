"""``sealfl run --config ROLE.toml``: start one party from its role config alone.

This is how parties start in production, and the only way under Gramine, whose manifest fixes
this argv and lists the config among the trusted files: the config decides the workload, role,
TEE, policies, collateral, sealing keys, release list, data and options, and the host supplies
nothing but addresses (``SEALFL_LISTEN``, ``SEALFL_PEERS``; see :mod:`sealfl.runtime.role_config`).
The development subcommands (``sealfl homo-lr ps`` ...) take the same settings as flags.

Workload command modules register what each ``(workload, role)`` runs with :func:`role`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sealfl.cli.app import app
from sealfl.errors import ConfigError
from sealfl.runtime import RoleConfig, load_role_config

RoleHandler = Callable[[RoleConfig], None]
_HANDLERS: dict[tuple[str, str], RoleHandler] = {}
_IGNORED_ENV = ("SEALFL_TEE", "SEALFL_POLICY", "SEALFL_SIMULATED_PLATFORM", "SEALFL_COLLATERAL")


def role(workload: str, name: str) -> Callable[[RoleHandler], RoleHandler]:
    """Register the function that runs ``name`` of ``workload`` from a role config."""

    def register(handler: RoleHandler) -> RoleHandler:
        _HANDLERS[(workload, name)] = handler
        return handler

    return register


def known_roles() -> list[str]:
    """Return ``workload/role`` for every registered role, sorted."""
    return sorted(f"{w}/{r}" for w, r in _HANDLERS)


@app.command("run")
def run(
    config: Annotated[
        Path,
        typer.Option("--config", help="The role config (TOML) that describes this party."),
    ],
) -> None:
    """Run one party (PS, worker, server, broker ...) from its role config alone.

    Only SEALFL_LISTEN (host:port) and SEALFL_PEERS (name=host:port,...) are read from the
    environment, and only to place the party and its declared peers on the network.
    """
    parsed = load_role_config(config)
    handler = _HANDLERS.get((parsed.workload, parsed.role))
    if handler is None:
        raise ConfigError(
            f"{config}: no party {parsed.workload}/{parsed.role}; expected one of "
            f"{', '.join(known_roles())}"
        )
    ignored = [name for name in _IGNORED_ENV if name in os.environ]
    if ignored:
        typer.echo(
            f"note: {', '.join(ignored)} ignored: under `sealfl run` the role config decides",
            err=True,
        )
    handler(parsed)

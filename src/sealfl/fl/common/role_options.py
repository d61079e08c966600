"""Reading a workload's ``[options]`` from a role config: unknown keys and error wording.

A role config's options are the development subcommands' flags without their dashes
(``--min-workers`` is ``min_workers``). Each workload reads its own keys with
:class:`sealfl.runtime.Table`; these two helpers keep the checks and messages the same across
workloads: a key nobody reads is refused up front (a typo never silently drops a setting), and
an option's error (worded for the command line) names the file and the config key instead.
:func:`read_options` applies both around a workload's own reading, and refuses what that left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sealfl.errors import ConfigError
from sealfl.runtime import RoleConfig, Table

__all__ = ["in_config", "read_options", "refuse_unknown"]

_T = TypeVar("_T")


def refuse_unknown(table: Table, allowed: Iterable[str]) -> None:
    """Refuse keys of ``table`` outside ``allowed``.

    Raises
    ------
    ConfigError
        Naming the file, the unknown keys and the known ones.
    """
    known = set(allowed)
    unknown = sorted(set(table.raw()) - known)
    if unknown:
        raise table.fail(", ".join(unknown), f"unknown key(s); expected some of {sorted(known)}")


def in_config(config: RoleConfig, exc: ConfigError) -> ConfigError:
    """Name the config file and key in an option's error (``--min-workers`` → ``min_workers``)."""
    text = str(exc)
    if text.startswith(str(config.path)):
        return exc
    flag, sep, rest = text.partition(" ")
    if flag.startswith("--"):
        text = flag[2:].replace("-", "_") + sep + rest
    return ConfigError(f"{config.path}: options.{text}")


def read_options(
    config: RoleConfig, read: Callable[[Table], _T], *, allowed: Iterable[str] | None = None
) -> _T:
    """Return ``read(config.options)``: a role's options, read the same way for every workload.

    Keys outside ``allowed`` (when given) are refused before anything is read; an option's
    error names the file and the key (:func:`in_config`); a key left unread afterwards is
    refused (:meth:`sealfl.runtime.Table.finish`).

    Raises
    ------
    ConfigError
        Naming the file and key of a missing, mistyped or unknown option.
    """
    table = config.options
    if allowed is not None:
        refuse_unknown(table, allowed)
    try:
        options = read(table)
    except ConfigError as exc:
        raise in_config(config, exc) from None
    table.finish()
    return options

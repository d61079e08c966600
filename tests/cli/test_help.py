"""Every command and subcommand of ``sealfl`` answers ``--help`` (the issue asks for it)."""

from collections.abc import Iterator

import click
import pytest
import typer.main
from typer.testing import CliRunner

import sealfl.cli.main  # noqa: F401  (registers every command module)
from sealfl.cli.app import app


def _command_paths(
    command: click.Command, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    yield prefix
    # Typer's groups are not click.Group subclasses in every release: look for subcommands.
    subcommands: dict[str, click.Command] = getattr(command, "commands", {})
    for name, sub in subcommands.items():
        yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_the_command_tree_is_not_empty() -> None:
    assert len(COMMANDS) > 3


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "sealfl")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output

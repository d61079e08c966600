"""Rich consoles for the ``sealfl`` command: never hard-wrapped when output is not a terminal.

Rich wraps text at the terminal's width, and when output is a pipe or a file it assumes 80
columns. A log file then holds one error message broken over several lines, a path split in
two, and a party's output line whose continuation has lost the party's prefix; a test that
looks for a long temporary path in an error misses it. So everything the command prints for
people goes through :func:`output_console`: on a terminal Rich wraps as usual, elsewhere each
message stays one line (``soft_wrap``), however long. Tables are laid out at their natural
width there (:func:`print_table`), so no cell is folded either.
"""

from __future__ import annotations

import sys

from rich.console import Console, RenderableType
from rich.measure import Measurement

__all__ = ["output_console", "print_line", "print_table"]

_WIDEST_TABLE = 1000
"""Columns a table may take when printed to a pipe or file (beyond that its cells wrap)."""


def output_console(*, stderr: bool = False) -> Console:
    """Return a console on standard output (or standard error) for human-readable output.

    The choice between terminal and pipe is made now, from the stream as it is now.
    """
    stream = sys.stderr if stderr else sys.stdout
    try:
        on_terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        on_terminal = False
    if on_terminal:
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True)


def print_table(console: Console, table: RenderableType) -> None:
    """Print ``table``; to a pipe or file at its natural width, so that no cell wraps."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(_WIDEST_TABLE), table)
    width = console.width
    console.width = max(width, natural.maximum)  # print(width=) cannot exceed the console's
    try:
        console.print(table, soft_wrap=False)
    finally:
        console.width = width


def print_line(line: str) -> None:
    """Print a party's progress line now, not when a pipe's buffer fills.

    A supervisor, a log collector or a test reads a party's lines as they come (a party runs
    for minutes and may be killed); plain ``print`` keeps the column layout the parties chose,
    which a Rich console would mark up.
    """
    print(line, flush=True)

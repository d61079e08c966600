"""Options that the federated-learning party subcommands (``hfl``, ``vfl``) declare alike.

Each is declared once here, so that ``--threads`` or ``--listen`` means the same and reads the
same in every workload's ``--help``. A workload keeps its own declaration where its meaning
differs (its ``--preset``, or a ``--learning-rate`` whose help names its optimiser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["BatchOption", "ListenOption", "RunDirOption", "SeedOption", "ThreadsOption"]

ThreadsOption = Annotated[int, typer.Option("--threads", help="torch intra-op threads.")]
SeedOption = Annotated[int | None, typer.Option("--seed", show_default=False)]
BatchOption = Annotated[int | None, typer.Option("--batch-size", show_default=False)]
ListenOption = Annotated[str, typer.Option("--listen", help="HOST:PORT of the front door.")]
RunDirOption = Annotated[Path, typer.Option("--run-dir", help="Directory to create files in.")]

"""Replace a file all at once: write a temporary file beside it, fsync, then rename over it.

``os.replace`` within one directory is atomic on POSIX and Windows, so a reader (or a process
restarted after a crash) sees either the old file or the complete new one, never half of each.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sealfl.errors import ConfigError

TEMP_SUFFIX = ".sealfl-tmp"
"""Temporary files are ``.<name>.<random>.sealfl-tmp`` beside the destination.

A process killed outright (SIGKILL, power loss) cannot remove its temporary file; the
destination is still intact, and a leftover file with this suffix is safe to delete.
"""


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(dst: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``dst`` only if the ``with`` block completes.

    On any exception, from the block or from flushing and renaming, the temporary file is
    removed and ``dst`` is left exactly as it was. The new file has mode 0600, since it may
    hold plaintext.

    Raises
    ------
    ConfigError
        If the temporary file cannot be created or written, or cannot be renamed onto ``dst``
        (for example ``dst`` is a directory, or its directory does not exist).
    """
    directory = dst.parent
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{dst.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {dst}: cannot create a temporary file in {directory}: "
            f"{exc.strerror or exc}"
        ) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {dst}: {exc.strerror or exc}") from exc
        raise
    _fsync_directory(directory)

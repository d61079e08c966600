"""Writing files safely: replace one all at once, or create one that must not exist yet.

Every building block that writes a file (key files, sealed files, data sets, run records) goes
through here, so there is one place that gets the details right:

* :func:`atomic_output` / :func:`write_atomic` write a temporary file beside the destination,
  fsync it, and rename it over the destination. ``os.replace`` within one directory is atomic on
  POSIX and Windows, so a reader, or a process restarted after a crash, sees the old file or the
  complete new one, never half of each.
* :func:`create_new_file` creates a file that must not exist yet (``O_EXCL``), for secrets
  such as key files, where replacing an existing one would destroy what it protects.

Failures raise :class:`~sealfl.errors.ConfigError` naming the file, and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sealfl.errors import ConfigError

__all__ = ["TEMP_SUFFIX", "atomic_output", "create_new_file", "write_atomic"]

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
def atomic_output(dst: Path, *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``dst`` only if the ``with`` block completes.

    On any exception, from the block or from flushing and renaming, the temporary file is
    removed and ``dst`` is left exactly as it was. The new file gets ``mode`` (0600 unless
    said otherwise: what is written may be secret).

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
        os.fchmod(fd, mode)
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


def write_atomic(dst: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``dst`` with ``data`` all at once (see :func:`atomic_output`)."""
    with atomic_output(dst, mode=mode) as out:
        out.write(data)


def create_new_file(path: Path, data: bytes, *, what: str, if_exists: str) -> None:
    """Create ``path`` with mode 0600 holding ``data``; never replace an existing file.

    Parameters
    ----------
    what
        What the file is, for messages ("key file", "simulated platform file").
    if_exists
        Why an existing file is refused and what to do instead, appended to that message.

    Raises
    ------
    ConfigError
        If ``path`` exists, or cannot be created or written (a partial file is removed).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{what} {path} already exists: {if_exists}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # the umask may have narrowed O_CREAT's mode only
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc
        raise

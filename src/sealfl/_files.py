"""Writing files safely: replace one all at once, or create one that must not exist yet.

Every building block that writes a file (key files, sealed files, data sets, run records) goes
through here, so there is one place that gets the details right:

* :func:`atomic_output` / :func:`write_atomic` write a temporary file beside the destination,
  fsync it, and rename it over the destination. ``os.replace`` within one directory is atomic on
  POSIX and Windows, so a reader, or a process restarted after a crash, sees the old file or the
  complete new one, never half of each.
* :func:`create_new_file` creates a file that must not exist yet (``O_EXCL``), for secrets
  such as key files, where replacing an existing one would destroy what it protects.
* :func:`make_directory` creates an output directory and its parents, or says in one line why
  it cannot (a regular file in the way, no permission).
* :func:`check_output_path` refuses, before any work, an output file that could not be written
  once the work is done, without creating anything.

Failures raise :class:`~sealfl.errors.ConfigError` naming the file, and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sealfl.errors import ConfigError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_output",
    "check_output_path",
    "check_private_mode",
    "create_new_file",
    "make_directory",
    "read_small_file",
    "write_atomic",
]

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
            f"{_why(exc, directory)}"
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


def read_small_file(
    path: Path,
    *,
    what: str,
    max_bytes: int,
    private: bool = False,
    allow_insecure_permissions: bool = False,
) -> bytes:
    """Read a small regular file whole (a key, a certificate), refusing anything else.

    Parameters
    ----------
    what
        What the file is, for messages ("key file", "public key file").
    max_bytes
        Larger files are refused before they are read: they cannot be what was meant.
    private
        The file holds a secret: refuse it when group or others may read it (as ssh does), unless
        ``allow_insecure_permissions``.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, not a regular file, too large, or (``private``)
        readable by others; each message names the file.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {_why(exc, path)}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if private and not allow_insecure_permissions:
        check_private_mode(path, what=what, mode=info.st_mode)
    if info.st_size > max_bytes:
        raise ConfigError(
            f"{what} {path} is {info.st_size} bytes, not a {what} (at most {max_bytes} expected)"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {_why(exc, path)}") from exc


def check_private_mode(path: Path, *, what: str, mode: int | None = None) -> None:
    """Refuse a file holding a secret that group or others may read (as ssh does).

    Raises
    ------
    ConfigError
        Naming the file, its mode and the ``chmod`` that fixes it.
    """
    if mode is None:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"cannot read {what} {path}: {_why(exc, path)}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"{what} {path} has mode {stat.S_IMODE(mode):04o}, expected 0600 (group and others "
            f"must not read a secret): run `chmod 600 {path}`"
        )


def make_directory(path: Path, *, what: str = "directory") -> None:
    """Create directory ``path`` and its missing parents; an existing directory is fine.

    Parameters
    ----------
    what
        What the directory is for, for messages ("output directory", "key directory").

    Raises
    ------
    ConfigError
        If ``path`` or one of its parents exists and is not a directory, or cannot be created.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {_why(exc, path)}") from exc


def check_output_path(path: Path, *, what: str) -> None:
    """Refuse now an output file that could not be written later; create nothing.

    For commands that work for minutes and write their result at the end (benchmarks): a
    path under a regular file, a directory where a file is meant, or a directory that cannot
    be written is found before the work, not after it.

    Raises
    ------
    ConfigError
        Naming ``what`` (the option) and the reason.
    """
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; name a file")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise ConfigError(f"{what} {path}: {blocker} exists and is not a directory")
    existing = next((p for p in path.parents if p.is_dir()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: cannot create files in {existing}")


def _why(exc: OSError, directory: Path) -> str:
    """Say why ``directory`` could not be used: a file in its way, or the system's reason."""
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        return f"{blocker} exists and is not a directory"
    return exc.strerror or str(exc)


def _file_in_the_way(path: Path) -> Path | None:
    """Return the nearest of ``path`` and its parents that exists but is not a directory."""
    for candidate in reversed((path, *path.parents)):
        try:
            if candidate.exists() and not candidate.is_dir():
                return candidate
        except OSError:
            return None
    return None


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
        raise ConfigError(f"cannot create {what} {path}: {_why(exc, path.parent)}") from exc
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

"""Sealed files on disk: every write is atomic, and no unverified plaintext is ever left behind.

Opening a sealed file into a destination decrypts into a temporary file and renames it into
place only after the final chunk has been authenticated, so a file that fails halfway (tampered
or truncated) leaves the destination exactly as it was, and no partial plaintext on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from sealfl._files import atomic_output
from sealfl.errors import ConfigError
from sealfl.seal._format import DEFAULT_CHUNK_SIZE, SealedHeader, check_chunk_size, read_header
from sealfl.seal._keys import SealingKey
from sealfl.seal._stream import (
    exact_reader,
    open_chunks,
    open_sealed_stream,
    seal_chunks,
    seal_stream,
)

StrPath = str | os.PathLike[str]
_WHOLE = (bytes, bytearray, memoryview)  # data given whole, not as an iterable of pieces


def _open_input(path: Path, what: str) -> BinaryIO:
    """Open ``path`` for reading, turning ``OSError`` into a :class:`ConfigError` naming it."""
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{what} {path} is a directory, not a file") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def write_sealed(
    dst: StrPath,
    data: bytes | Iterable[bytes],
    key: SealingKey,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label: str = "",
) -> None:
    """Seal ``data`` into ``dst``, replacing it atomically.

    Parameters
    ----------
    dst : path-like
        The sealed file to create or replace. Its directory must exist.
    data : bytes or iterable of bytes
        The plaintext, whole or as pieces of any sizes (a generator lets a large model or
        checkpoint be sealed without holding it all in memory).
    key : SealingKey
        The sealing key.
    chunk_size : int
        Plaintext bytes per chunk, 1 .. 16 MiB.
    label : str
        Content type, authenticated; :func:`read_sealed` can insist on it.

    Raises
    ------
    ConfigError
        If ``chunk_size`` or ``label`` do not fit the format, or ``dst`` cannot be written.

    Notes
    -----
    If anything fails, including an exception raised by ``data`` midway, ``dst`` keeps its old
    contents and the temporary file is removed.
    """
    pieces = [bytes(data)] if isinstance(data, _WHOLE) else data
    with atomic_output(Path(dst)) as out:
        for part in seal_chunks(pieces, key, chunk_size=chunk_size, label=label):
            out.write(part)


def read_sealed(path: StrPath, key: SealingKey, *, label: str | None = None) -> bytes:
    """Return the plaintext of a sealed file, only if the whole file authenticates.

    Parameters
    ----------
    path : path-like
        The sealed file.
    key : SealingKey
        The key it was sealed with.
    label : str or None
        When given, refuse a file whose label differs.

    Raises
    ------
    ConfigError
        If the file cannot be read.
    SealError
        If it is not a sealed file or fails to verify; the message names the file, the chunk
        and its byte offset.
    """
    source = Path(path)
    with _open_input(source, "sealed file") as stream:
        read = exact_reader(stream, str(source))
        return b"".join(open_chunks(read, key, name=str(source), label=label))


def seal_file(
    src: StrPath,
    dst: StrPath,
    key: SealingKey,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label: str = "",
) -> None:
    """Seal the file ``src`` into ``dst`` with bounded memory, replacing ``dst`` atomically.

    ``src`` and ``dst`` may be the same path: the file is then sealed in place, atomically.

    Raises
    ------
    ConfigError
        If ``src`` cannot be read, ``dst`` cannot be written, or ``chunk_size`` or ``label``
        do not fit the format.
    """
    check_chunk_size(chunk_size)  # before it sizes any read
    source = Path(src)
    with _open_input(source, "input file") as stream, atomic_output(Path(dst)) as out:
        seal_stream(stream, out, key, chunk_size=chunk_size, label=label, name=str(source))


def open_sealed_file(
    src: StrPath, dst: StrPath, key: SealingKey, *, label: str | None = None
) -> None:
    """Decrypt the sealed file ``src`` into ``dst``, replacing ``dst`` only if all of it verifies.

    Memory stays at about one chunk. The plaintext goes to a temporary file beside ``dst`` that
    is renamed into place after the final chunk has been authenticated; on failure it is
    removed, and ``dst`` is untouched.

    Raises
    ------
    ConfigError
        If ``src`` cannot be read or ``dst`` cannot be written.
    SealError
        If ``src`` is not a sealed file or fails to verify anywhere.
    """
    source = Path(src)
    with _open_input(source, "sealed file") as stream, atomic_output(Path(dst)) as out:
        open_sealed_stream(stream, out, key, label=label, name=str(source))


def inspect_sealed(path: StrPath) -> SealedHeader:
    """Return the header of a sealed file without a key, to tell which key opens it.

    The header is not authenticated until a chunk is opened with the right key: treat its
    fields as a hint.

    Raises
    ------
    ConfigError
        If the file cannot be read.
    SealError
        If it is not a sealed file.
    """
    source = Path(path)
    with _open_input(source, "sealed file") as stream:
        header, _raw = read_header(exact_reader(stream, str(source)), str(source))
    return header

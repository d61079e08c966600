"""Streaming seal and open: one chunk in memory at a time, bytes and binary streams alike.

Both directions are generators over chunks, so the in-memory functions, the stream functions
and the file functions of :mod:`sealfl.seal._files` share one implementation of the framing.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag

from sealfl.errors import ConfigError, SealError
from sealfl.seal._format import (
    DEFAULT_CHUNK_SIZE,
    TAG_LEN,
    ChunkCipher,
    SealedHeader,
    check_chunk_size,
    read_header,
)
from sealfl.seal._keys import SealingKey

Reader = Callable[[int], bytes]
"""Returns up to ``n`` bytes, fewer only at the end of the input."""


def exact_reader(stream: BinaryIO, name: str) -> Reader:
    """Wrap ``stream.read`` so that a short read means end of input, even on pipes and sockets.

    ``OSError`` while reading becomes :class:`ConfigError` naming the input, so that a failure
    to read the source is never reported as a failure to write the destination.
    """

    def read(n: int) -> bytes:
        parts: list[bytes] = []
        remaining = n
        while remaining > 0:
            try:
                part = stream.read(remaining)
            except OSError as exc:
                raise ConfigError(f"cannot read {name}: {exc.strerror or exc}") from exc
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)

    return read


def rechunk(pieces: Iterable[bytes], chunk_size: int) -> Iterator[bytes]:
    """Regroup ``pieces`` of any sizes into full chunks, then one shorter final chunk.

    The final chunk holds ``0 .. chunk_size - 1`` bytes and is always yielded, so an empty input
    gives one empty chunk and an exact multiple of ``chunk_size`` ends with an empty chunk.
    At most about two chunks and one piece are held at once.
    """
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    yield bytes(buffer)


def seal_chunks(
    pieces: Iterable[bytes],
    key: SealingKey,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label: str = "",
) -> Iterator[bytes]:
    """Yield the header of a new sealed file, then its sealed chunks, from plaintext ``pieces``.

    Raises
    ------
    ConfigError
        If ``chunk_size`` or ``label`` do not fit the format.
    """
    check_chunk_size(chunk_size)
    header = SealedHeader.fresh(key, chunk_size=chunk_size, label=label)
    raw_header = header.to_bytes()
    cipher = ChunkCipher(key, raw_header, header.salt)
    yield raw_header
    for index, chunk in enumerate(rechunk(pieces, chunk_size)):
        yield cipher.seal(index, len(chunk) < chunk_size, chunk)


def check_header(header: SealedHeader, key: SealingKey, *, name: str, label: str | None) -> None:
    """Refuse a header sealed with another key or, when ``label`` is given, another label."""
    if header.key_id != key.key_id:
        raise SealError(
            f"{name} was sealed with key id {header.key_id.hex()}, "
            f"but the key given has id {key.key_id.hex()}"
        )
    if label is not None and header.label != label:
        raise SealError(f"{name} holds label {header.label!r}, expected {label!r}")


def open_chunks(
    read: Reader, key: SealingKey, *, name: str, label: str | None = None
) -> Iterator[bytes]:
    """Yield the plaintext of each chunk of a sealed input once that chunk is authenticated.

    Hazard: a chunk is yielded before later chunks are checked, so truncation is reported only
    when the generator finishes. A consumer must discard everything it received if this raises;
    :func:`sealfl.seal.open_sealed_file` does that by writing to a temporary file.

    Raises
    ------
    SealError
        Naming ``name``, the chunk index and its byte offset, if the input is not a sealed
        file, was sealed with another key or label, or fails authentication anywhere (tampered,
        truncated, reordered, duplicated, or extended with extra bytes).
    """
    header, raw_header = read_header(read, name)
    check_header(header, key, name=name, label=label)
    cipher = ChunkCipher(key, raw_header, header.salt)
    record_len = header.chunk_size + TAG_LEN
    offset = len(raw_header)
    index = 0
    while True:
        record = read(record_len)
        if not record:
            after = (
                "its header, with no chunk"
                if index == 0
                else f"chunk {index - 1}, which was not sealed as the final chunk"
            )
            raise SealError(f"{name} is truncated: it ends at byte {offset} after {after}")
        if len(record) < TAG_LEN:
            raise SealError(
                f"{name} is truncated: chunk {index} at byte {offset} has {len(record)} bytes, "
                f"fewer than its {TAG_LEN}-byte tag"
            )
        final = len(record) < record_len
        try:
            plaintext = cipher.open(index, final, record)
        except InvalidTag:
            what = "the header or chunk 0" if index == 0 else f"chunk {index}"
            raise SealError(
                f"{name}: {what} (at byte {offset}, {len(record)} bytes) failed authentication: "
                "the file was tampered with, truncated, extended or reordered, "
                "or sealed with another key"
            ) from None
        yield plaintext
        if final:
            # A record shorter than a full one was the end of the input (``read`` returns short
            # only there), so bytes appended after the final chunk lengthen that record and
            # fail its authentication above.
            return
        offset += len(record)
        index += 1


def seal_bytes(
    data: bytes, key: SealingKey, *, chunk_size: int = DEFAULT_CHUNK_SIZE, label: str = ""
) -> bytes:
    """Seal ``data`` in memory and return the sealed bytes.

    Parameters
    ----------
    data : bytes
        The plaintext.
    key : SealingKey
        The key; a fresh file key is derived from it for every call.
    chunk_size : int
        Plaintext bytes per chunk, 1 .. 16 MiB.
    label : str
        Content type, at most 255 UTF-8 bytes, authenticated; a reader may insist on it.

    Raises
    ------
    ConfigError
        If ``chunk_size`` or ``label`` do not fit the format.
    """
    return b"".join(seal_chunks([bytes(data)], key, chunk_size=chunk_size, label=label))


def open_sealed_bytes(
    blob: bytes, key: SealingKey, *, label: str | None = None, name: str = "<sealed bytes>"
) -> bytes:
    """Authenticate and decrypt a sealed blob; return the plaintext only if all of it is valid.

    Parameters
    ----------
    blob : bytes
        Output of :func:`seal_bytes` or the contents of a sealed file.
    key : SealingKey
        The key the blob was sealed with.
    label : str or None
        When given, refuse a blob whose label differs (so one kind of sealed file cannot be
        substituted for another sealed with the same key).
    name : str
        What to call the blob in error messages.

    Raises
    ------
    SealError
        If anything about the blob fails to verify; the message says what and where.
    """
    return b"".join(open_chunks(io.BytesIO(blob).read, key, name=name, label=label))


def seal_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: SealingKey,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label: str = "",
    name: str = "<input stream>",
) -> int:
    """Seal everything ``src`` yields until its end into ``dst``; return the bytes written.

    Memory stays at about two chunks, whatever the size of the input. ``dst`` is written as
    chunks are sealed: for an all-or-nothing file use :func:`sealfl.seal.seal_file`.

    Raises
    ------
    ConfigError
        If ``chunk_size`` or ``label`` do not fit the format, or reading ``src`` (called
        ``name`` in messages) fails.
    """
    check_chunk_size(chunk_size)  # before it sizes any read
    read = exact_reader(src, name)
    pieces = iter(lambda: read(chunk_size), b"")
    written = 0
    for part in seal_chunks(pieces, key, chunk_size=chunk_size, label=label):
        dst.write(part)
        written += len(part)
    return written


def open_sealed_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: SealingKey,
    *,
    label: str | None = None,
    name: str = "<sealed stream>",
) -> int:
    """Authenticate and decrypt ``src`` into ``dst`` chunk by chunk; return the bytes written.

    Hazard: ``dst`` receives each chunk once it is authenticated, but truncation of the whole
    is known only at the end. If this raises, whatever reached ``dst`` must be discarded. Use
    :func:`sealfl.seal.open_sealed_file` to get a destination that is all or nothing.

    Raises
    ------
    SealError
        If anything about the input fails to verify; the message names ``name`` and where.
    """
    written = 0
    for plaintext in open_chunks(exact_reader(src, name), key, name=name, label=label):
        dst.write(plaintext)
        written += len(plaintext)
    return written

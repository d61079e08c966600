"""Release of a sealed model to its owner: envelopes, release policies and recipient keys.

This module is the public home of model release (issue 9); :mod:`sealfl.seal` exports the same
names. A producer writes an envelope for a :class:`ReleasePolicy`; a recipient opens it with
its :class:`ReleaseKey`, offline (``sealfl model open``), or inside an attested TEE after the
key broker released that key (``sealfl model fetch``)::

    policy = ReleasePolicy.load("release.toml")         # its digest() is the RA-TLS claim
    write_release("model.release", model_bytes, policy, label="homo-lr/model")
    key = ReleaseKey.load("owner.key")                  # or ReleaseKey.from_bytes(resource)
    open_release("model.release", "model.bin", private_key=key, label="homo-lr/model")

Envelopes on disk: write one for a release policy, open one with a recipient's key.

Writing streams the model through :mod:`sealfl.seal`'s chunked AES-256-GCM under a fresh data
key into a temporary file that replaces the destination atomically. Opening unwraps the data
key with the recipient's private key (HPKE), then decrypts into a temporary file that is
renamed into place only after the final chunk authenticates; a refusal (not a recipient,
tampered, truncated) leaves no output and an existing output file untouched. Memory stays at
about one chunk either way. The byte layout is in :mod:`sealfl.seal._release_format`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric import x25519

from sealfl._files import atomic_output
from sealfl.errors import ConfigError, SealError
from sealfl.seal._files import _open_input
from sealfl.seal._format import DEFAULT_CHUNK_SIZE, TAG_LEN, check_chunk_size, read_header
from sealfl.seal._keys import SealingKey
from sealfl.seal._release_format import (
    DATA_KEY_LEN,
    ENVELOPE_ID_LEN,
    SUITE_NAME,
    EnvelopeHeader,
    payload_label,
    read_prefix,
)
from sealfl.seal._release_keys import ReleaseKey, read_public_key
from sealfl.seal._release_policy import RELEASE_LIST_CLAIM, Recipient, ReleasePolicy
from sealfl.seal._stream import Reader, exact_reader, open_chunks, seal_chunks

__all__ = [
    "RELEASE_LIST_CLAIM",
    "Recipient",
    "ReleaseInfo",
    "ReleaseKey",
    "ReleasePolicy",
    "inspect_release",
    "open_release",
    "read_public_key",
    "write_release",
]

StrPath = str | os.PathLike[str]
ReleaseSource = bytes | bytearray | memoryview | BinaryIO | StrPath
"""A model to release: bytes in memory, a binary stream read to its end, or a file path."""


@dataclass(frozen=True)
class ReleaseInfo:
    """What an envelope says about itself, and what happened to it.

    Parameters
    ----------
    path : Path
        The envelope.
    label : str
        Content type chosen by the producer.
    release_list : bytes
        The release-list digest: the producer's ``release-list`` RA-TLS claim value.
    recipients : tuple of Recipient
        Who can open it (names, public keys, broker resources), in the policy's order.
    envelope_id : bytes
        Random id of this envelope.
    model_bytes : int or None
        Size of the model. Exact after writing or opening; from :func:`inspect_release` it is
        computed from the file's size (not authenticated), ``None`` if that is inconsistent.
    opened_by : str or None
        The recipient whose key opened it (:func:`open_release` only).
    """

    path: Path
    label: str
    release_list: bytes
    recipients: tuple[Recipient, ...]
    envelope_id: bytes
    model_bytes: int | None = None
    opened_by: str | None = None
    suite: str = field(default=SUITE_NAME)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready summary (``sealfl model inspect --json``)."""
        return {
            "path": str(self.path),
            "label": self.label,
            "release_list": self.release_list.hex(),
            "suite": self.suite,
            "envelope_id": self.envelope_id.hex(),
            "model_bytes": self.model_bytes,
            "opened_by": self.opened_by,
            "recipients": [
                {
                    "name": r.name,
                    "key_id": r.key_id.hex(),
                    "public_key": r.public_key.hex(),
                    "broker_resource": r.broker_resource,
                }
                for r in self.recipients
            ],
        }

    def describe(self) -> str:
        """One line for logs: file, label, release list and recipients."""
        names = ", ".join(r.describe() for r in self.recipients)
        return (
            f"{self.path}: label {self.label!r}, release list {self.release_list.hex()[:16]}, "
            f"recipients {names}"
        )


def _info(path: Path, header: EnvelopeHeader, **extra: Any) -> ReleaseInfo:
    return ReleaseInfo(
        path=path,
        label=header.label,
        release_list=header.release_list,
        recipients=header.recipients,
        envelope_id=header.envelope_id,
        **extra,
    )


def _pieces(source: ReleaseSource, chunk_size: int, stack: list[BinaryIO]) -> Iterable[bytes]:
    """Plaintext pieces of ``source``; a file it opens is appended to ``stack`` to be closed."""
    if isinstance(source, bytes | bytearray | memoryview):
        return [bytes(source)]
    if isinstance(source, str | os.PathLike):
        stream = _open_input(Path(source), "model file")
        stack.append(stream)
        read = exact_reader(stream, str(source))
    elif hasattr(source, "read"):
        read = exact_reader(source, "<model stream>")
    else:
        raise ConfigError(
            f"source must be bytes, a binary stream or a path, got {type(source).__name__}"
        )
    return iter(lambda: read(chunk_size), b"")


def write_release(
    path: StrPath,
    source: ReleaseSource,
    policy: ReleasePolicy,
    *,
    label: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ReleaseInfo:
    """Seal a model for the recipients of ``policy`` into the envelope ``path``, atomically.

    Parameters
    ----------
    path : path-like
        The envelope to create or replace; its directory must exist.
    source : bytes, binary stream or path-like
        The model. Streams and files are read in chunks, so memory stays bounded.
    policy : ReleasePolicy
        Who will be able to open it.
    label : str
        Content type (``"homo-lr/model"``), at most 255 bytes of UTF-8; bound into every
        recipient's wrapped key, and a reader may insist on it.
    chunk_size : int
        Plaintext bytes per payload chunk, 1 .. 16 MiB.

    Returns
    -------
    ReleaseInfo
        The header's contents and the model's size.

    Raises
    ------
    ConfigError
        If an argument does not fit, ``source`` cannot be read or ``path`` cannot be written.
    SealError
        If a recipient's public key is refused by HPKE.

    Notes
    -----
    If anything fails, ``path`` keeps its old contents and no temporary file remains.
    """
    if not isinstance(policy, ReleasePolicy):
        raise ConfigError(f"policy must be a ReleasePolicy, got {type(policy).__name__}")
    check_chunk_size(chunk_size)
    data_key = os.urandom(DATA_KEY_LEN)
    header = EnvelopeHeader.wrap(
        policy, data_key, label=label, envelope_id=os.urandom(ENVELOPE_ID_LEN)
    )
    prefix = header.to_bytes()
    destination = Path(path)
    size = 0
    opened: list[BinaryIO] = []
    try:
        pieces = _pieces(source, chunk_size, opened)

        def counted() -> Iterator[bytes]:
            nonlocal size
            for piece in pieces:
                size += len(piece)
                yield piece

        with atomic_output(destination) as out:
            out.write(prefix)
            for part in seal_chunks(
                counted(), SealingKey(data_key), chunk_size=chunk_size, label=payload_label(prefix)
            ):
                out.write(part)
    finally:
        for stream in opened:
            stream.close()
    return _info(destination, header, model_bytes=size)


def _release_key(private_key: object) -> ReleaseKey:
    if isinstance(private_key, ReleaseKey):
        return private_key
    if isinstance(private_key, x25519.X25519PrivateKey):
        return ReleaseKey(private_key)
    raise ConfigError(
        f"private_key must be a ReleaseKey or an X25519PrivateKey, got {type(private_key).__name__}"
    )


def _prepend(first: bytes, read: Reader) -> Reader:
    """Return a reader of ``first`` then of ``read``, short only at the end of ``read``."""
    pending = bytearray(first)

    def reader(n: int) -> bytes:
        if not pending:
            return read(n)
        taken = bytes(pending[:n])
        del pending[:n]
        return taken + read(n - len(taken)) if len(taken) < n else taken

    return reader


def _not_a_recipient(name: str, header: EnvelopeHeader, key: ReleaseKey) -> SealError:
    listed = "; ".join(r.describe() for r in header.recipients)
    return SealError(
        f"{name} was not released to key {key.key_id.hex()} ({key.name}): its recipients are "
        f"{listed}"
    )


def open_release(
    path: StrPath,
    out_path: StrPath,
    *,
    private_key: ReleaseKey | x25519.X25519PrivateKey,
    label: str | None = None,
    release_list: bytes | None = None,
) -> ReleaseInfo:
    """Open the envelope ``path`` with a recipient's private key into ``out_path``.

    Parameters
    ----------
    path : path-like
        The envelope.
    out_path : path-like
        The model file to create or replace; replaced only once all of the model
        authenticates.
    private_key : ReleaseKey or X25519PrivateKey
        A recipient's key: from a ``.key`` file, or released by the key broker.
    label : str or None
        When given, refuse an envelope with another label.
    release_list : bytes or None
        When given, refuse an envelope released to another list than this digest (for example
        the ``release-list`` claim of the producer's RA-TLS certificate).

    Returns
    -------
    ReleaseInfo
        The header's contents, the model's size and the recipient that opened it.

    Raises
    ------
    ConfigError
        If ``path`` cannot be read or is not a release envelope, or ``out_path`` cannot be
        written.
    SealError
        A refusal: the key is not a recipient (the message lists the recipients), the label
        or release list differs, or anything fails to authenticate (header, wrapped key,
        payload, truncation). ``out_path`` is then left as it was.
    """
    key = _release_key(private_key)
    source = Path(path)
    name = str(source)
    with _open_input(source, "release envelope") as stream:
        read = exact_reader(stream, name)
        header, prefix = read_prefix(read, name)
        if label is not None and header.label != label:
            raise SealError(f"{name} holds label {header.label!r}, expected {label!r}")
        if release_list is not None and header.release_list != release_list:
            raise SealError(
                f"{name} was released to list {header.release_list.hex()}, expected "
                f"{bytes(release_list).hex()}"
            )
        index = header.index_of(key)
        if index is None:
            raise _not_a_recipient(name, header, key)
        data_key = SealingKey(header.unwrap(index, key, name=name))
        payload = f"{name} payload (from byte {len(prefix)})"
        sealed_header, raw_sealed = read_header(read, payload)
        if sealed_header.key_id != data_key.key_id:
            raise SealError(
                f"{payload} was sealed under another data key (id {sealed_header.key_id.hex()}, "
                f"this envelope's is {data_key.key_id.hex()}): the payload was replaced"
            )
        expected = payload_label(prefix)
        if sealed_header.label != expected:
            raise SealError(
                f"{name}: the envelope header was changed after sealing: the payload is bound "
                f"to header {sealed_header.label.removeprefix('sealfl-release ')[:16]}..., "
                f"this header is {expected.removeprefix('sealfl-release ')[:16]}..."
            )
        size = 0
        with atomic_output(Path(out_path)) as out:
            for plaintext in open_chunks(
                _prepend(raw_sealed, read), data_key, name=payload, label=expected
            ):
                out.write(plaintext)
                size += len(plaintext)
    return _info(source, header, model_bytes=size, opened_by=header.recipients[index].name)


def inspect_release(path: StrPath) -> ReleaseInfo:
    """Return an envelope's header without a key: label, release list, recipients.

    Nothing here is authenticated until a recipient opens the envelope: treat it as a hint
    (it is checked for consistency, so the recipients listed do hash to the release list
    shown). ``model_bytes`` is computed from the file size.

    Raises
    ------
    ConfigError
        If the file cannot be read or is not a release envelope.
    SealError
        If its header is truncated or malformed.
    """
    source = Path(path)
    name = str(source)
    with _open_input(source, "release envelope") as stream:
        read = exact_reader(stream, name)
        header, prefix = read_prefix(read, name)
        total = os.fstat(stream.fileno()).st_size
        try:
            sealed_header, raw_sealed = read_header(read, name)
        except SealError:
            model_bytes = None
        else:
            record = sealed_header.chunk_size + TAG_LEN
            rest = total - len(prefix) - len(raw_sealed)
            full, last = divmod(rest, record)
            model_bytes = full * sealed_header.chunk_size + last - TAG_LEN
            if last < TAG_LEN:
                model_bytes = None
    return _info(source, header, model_bytes=model_bytes)

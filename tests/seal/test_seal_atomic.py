"""Crash safety: a failed write or open leaves the old file intact and no temporary file behind."""

import io
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealfl.errors import ConfigError, SealError
from sealfl.seal import (
    TEMP_SUFFIX,
    SealingKey,
    open_sealed_file,
    read_sealed,
    seal_bytes,
    seal_stream,
    write_sealed,
)

KEY = SealingKey(bytes(range(32, 64)))
OLD_MODEL = b"old model, sealed before the failure"


class SourceFailedError(Exception):
    """Stands for any failure of the data source while a file is being written."""


def failing_source(pieces_before_failure: int) -> Iterator[bytes]:
    for _ in range(pieces_before_failure):
        yield b"x" * 1000
    raise SourceFailedError("the model serialiser failed midway")


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("pieces_before_failure", [0, 1, 50])
def test_a_source_failing_midway_leaves_the_old_sealed_file_intact(
    pieces_before_failure: int, tmp_path: Path
) -> None:
    target = tmp_path / "model.sealed"
    write_sealed(target, OLD_MODEL, KEY)
    before = target.read_bytes()

    with pytest.raises(SourceFailedError):
        write_sealed(target, failing_source(pieces_before_failure), KEY, chunk_size=256)

    assert target.read_bytes() == before
    assert read_sealed(target, KEY) == OLD_MODEL
    assert names(tmp_path) == ["model.sealed"]


def test_a_source_failing_midway_creates_no_file_where_there_was_none(tmp_path: Path) -> None:
    with pytest.raises(SourceFailedError):
        write_sealed(tmp_path / "new.sealed", failing_source(3), KEY)
    assert names(tmp_path) == []


def test_authentication_failing_in_the_last_chunk_leaves_no_partial_plaintext(
    tmp_path: Path,
) -> None:
    data = bytes(range(256)) * 64  # 16 KiB: many chunks are decrypted before the bad one
    sealed = tmp_path / "model.sealed"
    blob = bytearray(seal_bytes(data, KEY, chunk_size=1024))
    blob[-1] ^= 0x01
    sealed.write_bytes(blob)
    destination = tmp_path / "model.bin"
    destination.write_bytes(b"previous plaintext")

    with pytest.raises(SealError, match="chunk 16"):
        open_sealed_file(sealed, destination, KEY)

    assert destination.read_bytes() == b"previous plaintext"
    assert names(tmp_path) == ["model.bin", "model.sealed"]


def test_a_destination_that_cannot_be_replaced_is_a_config_error_and_cleaned_up(
    tmp_path: Path,
) -> None:
    occupied = tmp_path / "model.sealed"
    occupied.mkdir()
    (occupied / "keep").write_bytes(b"keep")
    with pytest.raises(ConfigError, match=r"cannot write .*model\.sealed"):
        write_sealed(occupied, b"model", KEY)
    assert (occupied / "keep").read_bytes() == b"keep"
    assert names(tmp_path) == ["model.sealed"]


def test_a_destination_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create a temporary file"):
        write_sealed(tmp_path / "absent" / "model.sealed", b"model", KEY)


CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from sealfl.seal import SealingKey, write_sealed

    def pieces():
        for i in range(100):
            if i == 50:
                os._exit(9)  # the process dies outright: no exception handler, no cleanup
            yield bytes(4096)

    write_sealed(Path(sys.argv[1]), pieces(), SealingKey(bytes.fromhex(sys.argv[2])))
    """
)


def test_a_process_killed_while_writing_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "model.sealed"
    write_sealed(target, OLD_MODEL, KEY)
    before = target.read_bytes()

    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), KEY.secret_bytes.hex()],
        capture_output=True,
        timeout=60,
    )

    assert child.returncode == 9, child.stderr
    assert target.read_bytes() == before
    leftovers = [n for n in names(tmp_path) if n != "model.sealed"]
    # A killed process cannot clean up: its temporary file stays, recognisable by name.
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".model.sealed.")
    assert leftovers[0].endswith(TEMP_SUFFIX)


class BrokenPipe(io.RawIOBase):
    """A readable stream whose device fails after the first read."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError(5, "Input/output error")
        return b"first piece"


def test_a_read_error_names_the_input_not_the_output() -> None:
    with pytest.raises(ConfigError, match=r"cannot read model source: Input/output error"):
        seal_stream(BrokenPipe(), io.BytesIO(), KEY, name="model source")  # type: ignore[arg-type]

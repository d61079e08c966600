"""Round trips over arbitrary data and chunk sizes, the documented byte layout, bounded memory."""

import hashlib
import io
import json
import struct
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from sealfl.errors import ConfigError, SealError
from sealfl.seal import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    SealingKey,
    inspect_sealed,
    open_sealed_bytes,
    open_sealed_file,
    open_sealed_stream,
    read_sealed,
    seal_bytes,
    seal_file,
    seal_stream,
    write_sealed,
)

KEY = SealingKey(hashlib.sha256(b"roundtrip test key").digest())
VECTORS = Path(__file__).parent / "vectors" / "seal_v1.json"


def decode_per_spec(blob: bytes, secret: bytes) -> tuple[str, int, bytes]:
    """Open a sealed blob following only the layout in sealfl.seal._format's docstring.

    Written independently of the implementation, so a change to either the code or the
    documented format that makes them disagree fails here.
    """
    magic, version, label_len, chunk_size, key_id, salt = struct.unpack(">8sBBI8s32s", blob[:54])
    assert (magic, version) == (b"\x89SEALFL\n", 1)
    assert key_id == hashlib.sha256(b"sealfl sealing key id\x00" + secret).digest()[:8]
    header = blob[: 54 + label_len]
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=44,
        salt=salt,
        info=b"sealfl seal v1: file key and nonce base",
    ).derive(secret)
    aead, nonce_base = AESGCM(okm[:32]), int.from_bytes(okm[32:], "big")
    header_hash = hashlib.sha256(header).digest()
    body = blob[len(header) :]
    record = chunk_size + 16
    plaintext, index, pos = b"", 0, 0
    while True:
        chunk = body[pos : pos + record]
        final = len(chunk) < record
        nonce = (nonce_base ^ index).to_bytes(12, "big")
        aad = header_hash + index.to_bytes(8, "big") + bytes([final])
        plaintext += aead.decrypt(nonce, chunk, aad)
        pos += len(chunk)
        if final:
            assert pos == len(body)
            return header[54:].decode(), chunk_size, plaintext
        index += 1


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=600), chunk_size=st.integers(min_value=1, max_value=80))
def test_bytes_round_trip_and_the_layout_matches_the_documentation(
    data: bytes, chunk_size: int
) -> None:
    blob = seal_bytes(data, KEY, chunk_size=chunk_size, label="prop")
    assert open_sealed_bytes(blob, KEY) == data
    assert decode_per_spec(blob, KEY.secret_bytes) == ("prop", chunk_size, data)
    full_chunks = len(data) // chunk_size
    assert len(blob) == 54 + len("prop") + len(data) + 16 * (full_chunks + 1)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 32, 48, 49])
def test_empty_input_and_exact_multiples_of_the_chunk_size(size: int) -> None:
    data = bytes(range(size))
    blob = seal_bytes(data, KEY, chunk_size=16)
    assert open_sealed_bytes(blob, KEY) == data


@settings(max_examples=40, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=100), max_size=12),
    chunk_size=st.integers(min_value=1, max_value=64),
)
def test_stream_round_trip_with_pieces_of_any_size(pieces: list[bytes], chunk_size: int) -> None:
    data = b"".join(pieces)
    sealed = io.BytesIO()
    written = seal_stream(io.BytesIO(data), sealed, KEY, chunk_size=chunk_size)
    assert written == len(sealed.getvalue())
    opened = io.BytesIO()
    assert open_sealed_stream(io.BytesIO(sealed.getvalue()), opened, KEY) == len(data)
    assert opened.getvalue() == data


class TrickleReader(io.RawIOBase):
    """A pipe-like stream that returns at most 3 bytes per read, well before its end."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 3) if size >= 0 else 3)


def test_short_reads_from_pipes_are_not_taken_for_the_end_of_input() -> None:
    data = bytes(range(256)) * 3
    sealed = io.BytesIO()
    seal_stream(TrickleReader(data), sealed, KEY, chunk_size=50)  # type: ignore[arg-type]
    opened = io.BytesIO()
    open_sealed_stream(TrickleReader(sealed.getvalue()), opened, KEY)  # type: ignore[arg-type]
    assert opened.getvalue() == data


def test_every_seal_uses_a_fresh_salt_so_equal_plaintexts_look_unrelated() -> None:
    first, second = (seal_bytes(b"same model", KEY) for _ in range(2))
    assert first[22:54] != second[22:54]
    assert first[58:] != second[58:]


def test_files_round_trip_and_inspect_shows_the_header(tmp_path: Path) -> None:
    plain, sealed, opened = tmp_path / "p.bin", tmp_path / "s.sealed", tmp_path / "o.bin"
    data = bytes(range(256)) * 1000
    plain.write_bytes(data)
    seal_file(plain, sealed, KEY, chunk_size=4096, label="homo-lr/model")
    open_sealed_file(sealed, opened, KEY, label="homo-lr/model")
    assert opened.read_bytes() == data
    assert read_sealed(sealed, KEY) == data
    header = inspect_sealed(sealed)
    assert (header.chunk_size, header.key_id, header.label) == (4096, KEY.key_id, "homo-lr/model")
    assert opened.stat().st_mode & 0o777 == 0o600


def test_write_sealed_accepts_bytes_and_an_iterable_of_pieces(tmp_path: Path) -> None:
    target = tmp_path / "model.sealed"
    write_sealed(target, b"weights", KEY)
    assert read_sealed(target, KEY) == b"weights"
    write_sealed(target, memoryview(b"a view"), KEY)
    assert read_sealed(target, KEY) == b"a view"
    write_sealed(target, (bytes([i]) * i for i in range(50)), KEY, chunk_size=7)
    assert read_sealed(target, KEY) == b"".join(bytes([i]) * i for i in range(50))


def test_sealing_in_place_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"plaintext model" * 100)
    seal_file(path, path, KEY, chunk_size=64)
    assert path.read_bytes()[:8] == b"\x89SEALFL\n"
    open_sealed_file(path, path, KEY)
    assert path.read_bytes() == b"plaintext model" * 100


@pytest.mark.parametrize("chunk_size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_a_chunk_size_outside_the_format_is_a_config_error(chunk_size: int) -> None:
    with pytest.raises(ConfigError, match=f"chunk size must be .* got {chunk_size}"):
        seal_bytes(b"x", KEY, chunk_size=chunk_size)


def test_a_label_too_long_for_the_header_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="label is 256 bytes"):
        seal_bytes(b"x", KEY, label="a" * 256)


def test_a_missing_input_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sealed file .*nothing\.sealed does not exist"):
        read_sealed(tmp_path / "nothing.sealed", KEY)
    with pytest.raises(ConfigError, match="is a directory"):
        seal_file(tmp_path, tmp_path / "out", KEY)


class CountingSink(io.RawIOBase):
    """A writable stream that keeps only a count, so memory measures the sealing alone."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.count += len(data)
        return len(data)


class ZeroSource(io.RawIOBase):
    """A readable stream of ``size`` zero bytes, produced as they are asked for."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return bytes(n)


def test_streaming_memory_stays_near_one_chunk_for_a_large_input() -> None:
    total = 24 * 1024 * 1024
    sealed = CountingSink()
    tracemalloc.start()
    try:
        seal_stream(ZeroSource(total), sealed, KEY)  # type: ignore[arg-type]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sealed.count > total
    assert peak < 8 * DEFAULT_CHUNK_SIZE, f"peak {peak} bytes for a {total}-byte input"


def test_a_file_sealed_by_an_earlier_release_still_opens() -> None:
    """Vector from tests/seal/vectors/seal_v1.json; its "source" field says where it came from."""
    vector = json.loads(VECTORS.read_text())
    key = SealingKey(bytes.fromhex(vector["key"]))
    blob = bytes.fromhex(vector["sealed"])
    expected = bytes.fromhex(vector["plaintext"])
    assert open_sealed_bytes(blob, key, label=vector["label"]) == expected
    assert decode_per_spec(blob, key.secret_bytes)[2] == expected
    with pytest.raises(SealError):
        open_sealed_bytes(blob[:-1], key)

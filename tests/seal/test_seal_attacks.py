"""Every attack on a sealed file is refused, and the destination it would replace is untouched.

The sealed file under attack has several chunks: 100 plaintext bytes at 16 bytes per chunk make
six full chunks and a final chunk of 4 bytes.
"""

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from sealfl.errors import SealError
from sealfl.seal import SealingKey, open_sealed_bytes, open_sealed_file, seal_bytes
from sealfl.seal._format import ChunkCipher, SealedHeader

CHUNK = 16
TAG = 16
RECORD = CHUNK + TAG
PLAINTEXT = bytes(range(100))
LABEL = "test/attack"
HEADER_LEN = 54 + len(LABEL)
OLD_DESTINATION = b"the previous plaintext, which must survive any failed open\n"

KEY = SealingKey(bytes(range(32)))
BLOB = seal_bytes(PLAINTEXT, KEY, chunk_size=CHUNK, label=LABEL)


def records(blob: bytes) -> tuple[bytes, list[bytes]]:
    """Split a sealed blob into its header and chunk records (the format's framing)."""
    body = blob[HEADER_LEN:]
    return blob[:HEADER_LEN], [body[i : i + RECORD] for i in range(0, len(body), RECORD)]


def flip(blob: bytes, offset: int) -> bytes:
    return blob[:offset] + bytes([blob[offset] ^ 0x01]) + blob[offset + 1 :]


def test_the_blob_under_attack_has_the_expected_shape() -> None:
    _header, chunks = records(BLOB)
    assert [len(c) for c in chunks] == [RECORD] * 6 + [4 + TAG]
    assert open_sealed_bytes(BLOB, KEY) == PLAINTEXT


def test_flipping_any_single_bit_of_the_file_is_refused() -> None:
    for offset in range(len(BLOB)):
        for bit in (0x01, 0x80):
            damaged = BLOB[:offset] + bytes([BLOB[offset] ^ bit]) + BLOB[offset + 1 :]
            with pytest.raises(SealError):
                open_sealed_bytes(damaged, KEY)


def test_truncating_at_every_length_is_refused() -> None:
    for length in range(len(BLOB)):
        with pytest.raises(SealError):
            open_sealed_bytes(BLOB[:length], KEY)


def _swap(chunks: list[bytes], i: int, j: int) -> list[bytes]:
    swapped = list(chunks)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return swapped


def _rebuild(edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    header, chunks = records(BLOB)
    return header + b"".join(edit(chunks))


def _other_file_header() -> bytes:
    """The header of another file sealed with the same key, spliced onto this file's chunks."""
    other = seal_bytes(PLAINTEXT, KEY, chunk_size=CHUNK, label=LABEL)
    return other[:HEADER_LEN] + BLOB[HEADER_LEN:]


def _other_file_chunk() -> bytes:
    """Chunk 2 of another file sealed with the same key and the same plaintext."""
    _other_header, other_chunks = records(seal_bytes(PLAINTEXT, KEY, chunk_size=CHUNK, label=LABEL))
    return _rebuild(lambda c: [*c[:2], other_chunks[2], *c[3:]])


def _header_field(offset: int, fmt: str, value: int) -> bytes:
    return BLOB[:offset] + struct.pack(fmt, value) + BLOB[offset + struct.calcsize(fmt) :]


# (attack, a fragment the error message must contain)
ATTACKS: dict[str, tuple[Callable[[], bytes], str]] = {
    "flip magic": (lambda: flip(BLOB, 0), "not a sealed file"),
    "flip version": (lambda: flip(BLOB, 8), "format version"),
    "flip chunk size": (lambda: flip(BLOB, 13), "failed authentication"),
    "huge chunk size": (lambda: _header_field(10, ">I", 2**31), "chunk_size"),
    "flip key id": (lambda: flip(BLOB, 14), "key id"),
    "flip salt": (lambda: flip(BLOB, 30), "the header or chunk 0"),
    "flip label": (lambda: flip(BLOB, 54), "the header or chunk 0"),
    "longer label length": (lambda: flip(BLOB, 9), "failed authentication"),
    "flip ciphertext of chunk 3": (lambda: flip(BLOB, HEADER_LEN + 3 * RECORD + 5), "chunk 3"),
    "flip tag of chunk 2": (lambda: flip(BLOB, HEADER_LEN + 2 * RECORD + CHUNK + 1), "chunk 2"),
    "flip tag of the final chunk": (lambda: flip(BLOB, len(BLOB) - 1), "chunk 6"),
    "drop the final chunk": (lambda: _rebuild(lambda c: c[:-1]), "not sealed as the final"),
    "drop chunk 1": (lambda: _rebuild(lambda c: [c[0], *c[2:]]), "chunk 1"),
    "swap chunks 1 and 4": (lambda: _rebuild(lambda c: _swap(c, 1, 4)), "chunk 1"),
    "duplicate chunk 2": (lambda: _rebuild(lambda c: [*c[:3], c[2], *c[3:]]), "chunk 3"),
    "final chunk moved forward": (lambda: _rebuild(lambda c: [c[0], c[-1]]), "chunk 1"),
    "cut inside chunk 4": (lambda: BLOB[: HEADER_LEN + 4 * RECORD + 20], "chunk 4"),
    "cut inside a tag": (lambda: BLOB[: HEADER_LEN + 5 * RECORD + 7], "fewer than its 16-byte tag"),
    "cut inside the header": (lambda: BLOB[:40], "truncated"),
    "header only": (lambda: BLOB[:HEADER_LEN], "after its header, with no chunk"),
    "append a byte": (lambda: BLOB + b"\x00", "chunk 6"),
    "append a copy of the final chunk": (lambda: BLOB + records(BLOB)[1][-1], "chunk 6"),
    "append a full chunk": (lambda: BLOB + bytes(RECORD), "chunk 6"),
    "another file's header": (_other_file_header, "the header or chunk 0"),
    "another file's chunk": (_other_file_chunk, "chunk 2"),
    "empty file": (lambda: b"", "is empty"),
    "not a sealed file": (lambda: b"just some plaintext that was never sealed", "not a sealed"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused_and_the_destination_is_untouched(attack: str, tmp_path: Path) -> None:
    make, fragment = ATTACKS[attack]
    sealed = tmp_path / "model.sealed"
    damaged = make()
    sealed.write_bytes(damaged)
    destination = tmp_path / "model.bin"
    destination.write_bytes(OLD_DESTINATION)

    with pytest.raises(SealError) as caught:
        open_sealed_file(sealed, destination, KEY)

    message = str(caught.value)
    assert str(sealed) in message
    assert fragment in message
    assert destination.read_bytes() == OLD_DESTINATION
    assert sealed.read_bytes() == damaged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.sealed"]


def test_wrong_key_is_refused_by_key_id_and_the_destination_is_untouched(tmp_path: Path) -> None:
    sealed = tmp_path / "model.sealed"
    sealed.write_bytes(BLOB)
    destination = tmp_path / "model.bin"
    destination.write_bytes(OLD_DESTINATION)
    other = SealingKey.generate()

    with pytest.raises(SealError, match=f"key id {KEY.key_id.hex()}.*{other.key_id.hex()}"):
        open_sealed_file(sealed, destination, other)

    assert destination.read_bytes() == OLD_DESTINATION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.sealed"]


def test_wrong_key_with_a_forged_key_id_still_fails_authentication() -> None:
    other = SealingKey.generate()
    forged = BLOB[:14] + other.key_id + BLOB[22:]
    with pytest.raises(SealError, match="the header or chunk 0"):
        open_sealed_bytes(forged, other)


def test_a_label_other_than_the_one_expected_is_refused() -> None:
    with pytest.raises(SealError, match="holds label 'test/attack', expected 'homo-lr/model'"):
        open_sealed_bytes(BLOB, KEY, label="homo-lr/model")
    assert open_sealed_bytes(BLOB, KEY, label=LABEL) == PLAINTEXT


def test_dropping_the_empty_final_chunk_of_an_exact_multiple_is_refused() -> None:
    data = bytes(3 * CHUNK)
    blob = seal_bytes(data, KEY, chunk_size=CHUNK)
    assert len(blob) == 54 + 3 * RECORD + TAG
    with pytest.raises(SealError, match=r"ends at byte \d+ after chunk 2, which was not sealed"):
        open_sealed_bytes(blob[:-TAG], KEY)


def _hand_sealed(last_sealed_as_final: bool) -> bytes:
    """Two chunks built with the format layer, the last one's final flag chosen by the test."""
    header = SealedHeader.fresh(KEY, chunk_size=CHUNK, label="")
    raw = header.to_bytes()
    cipher = ChunkCipher(KEY, raw, header.salt)
    return raw + cipher.seal(0, False, bytes(CHUNK)) + cipher.seal(1, last_sealed_as_final, b"end")


def test_a_last_chunk_not_sealed_as_final_is_refused_by_its_tag() -> None:
    assert open_sealed_bytes(_hand_sealed(True), KEY) == bytes(CHUNK) + b"end"
    with pytest.raises(SealError, match=r"chunk 1 \(at byte \d+, 19 bytes\) failed authentication"):
        open_sealed_bytes(_hand_sealed(False), KEY)

"""Release envelopes: every recipient opens what the producer wrote, from any kind of source."""

import hashlib
import io
import json
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from sealfl.errors import ConfigError, SealError
from sealfl.seal import (
    DEFAULT_CHUNK_SIZE,
    TEMP_SUFFIX,
    Recipient,
    ReleaseKey,
    ReleasePolicy,
    inspect_release,
    open_release,
    write_release,
)

VECTOR = json.loads((Path(__file__).parent / "vectors" / "release_v1.json").read_text())
OWNER = ReleaseKey.generate(name="model-owner")
ENCLAVE = ReleaseKey.generate(name="eval-enclave")
POLICY = ReleasePolicy(
    [
        Recipient(name="model-owner", public_key=OWNER.public_key),
        Recipient(
            name="eval-enclave",
            public_key=ENCLAVE.public_key,
            broker_resource="homo-lr/release-key/eval",
        ),
    ]
)
MODEL = bytes(range(256)) * 40 + b"tail"


@pytest.mark.parametrize("key", [OWNER, ENCLAVE], ids=["model-owner", "eval-enclave"])
def test_each_recipient_opens_the_model(tmp_path: Path, key: ReleaseKey) -> None:
    written = write_release(tmp_path / "m.release", MODEL, POLICY, label="homo-lr/model")
    opened = open_release(
        tmp_path / "m.release", tmp_path / "model.bin", private_key=key, label="homo-lr/model"
    )
    assert (tmp_path / "model.bin").read_bytes() == MODEL
    assert opened.opened_by == key.name
    assert opened.model_bytes == written.model_bytes == len(MODEL)
    assert opened.release_list == written.release_list == POLICY.digest()
    assert opened.recipients == POLICY.recipients
    assert opened.envelope_id == written.envelope_id
    assert opened.label == "homo-lr/model"


def test_a_raw_x25519_private_key_opens_too(tmp_path: Path) -> None:
    write_release(tmp_path / "m.release", MODEL, POLICY, label="x")
    info = open_release(tmp_path / "m.release", tmp_path / "out", private_key=OWNER.x25519)
    assert (tmp_path / "out").read_bytes() == MODEL and info.opened_by == "model-owner"


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 3, 64 * 3 + 5])
@pytest.mark.parametrize("kind", ["bytes", "stream", "path", "str"])
def test_sources_and_sizes_round_trip(tmp_path: Path, size: int, kind: str) -> None:
    model = hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1)
    model = model[:size]
    (tmp_path / "model.in").write_bytes(model)
    source = {
        "bytes": model,
        "stream": io.BytesIO(model),
        "path": tmp_path / "model.in",
        "str": str(tmp_path / "model.in"),
    }[kind]
    info = write_release(tmp_path / "m.release", source, POLICY, label="t", chunk_size=64)
    assert info.model_bytes == size
    assert inspect_release(tmp_path / "m.release").model_bytes == size
    open_release(tmp_path / "m.release", tmp_path / "out", private_key=ENCLAVE)
    assert (tmp_path / "out").read_bytes() == model


def test_inspect_shows_the_header_without_a_key(tmp_path: Path) -> None:
    written = write_release(tmp_path / "m.release", MODEL, POLICY, label="homo-lr/model")
    info = inspect_release(tmp_path / "m.release")
    assert info.label == "homo-lr/model"
    assert info.release_list == POLICY.digest()
    assert [r.name for r in info.recipients] == ["model-owner", "eval-enclave"]
    assert info.recipients[1].broker_resource == "homo-lr/release-key/eval"
    assert info.envelope_id == written.envelope_id
    assert info.opened_by is None
    summary = info.to_json()
    assert summary["recipients"][0]["key_id"] == OWNER.key_id.hex()
    assert summary["release_list"] == POLICY.digest().hex()


def test_two_envelopes_of_the_same_model_share_nothing_but_the_header_fields(
    tmp_path: Path,
) -> None:
    a = write_release(tmp_path / "a", MODEL, POLICY, label="x")
    b = write_release(tmp_path / "b", MODEL, POLICY, label="x")
    assert a.envelope_id != b.envelope_id
    blob_a, blob_b = (tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()
    assert len(blob_a) == len(blob_b) and blob_a[-64:] != blob_b[-64:]


def test_expected_release_list_is_checked(tmp_path: Path) -> None:
    write_release(tmp_path / "m.release", MODEL, POLICY, label="x")
    open_release(
        tmp_path / "m.release", tmp_path / "out", private_key=OWNER, release_list=POLICY.digest()
    )
    other = ReleasePolicy([POLICY.recipients[0]]).digest()
    (tmp_path / "out").write_bytes(b"keep")
    with pytest.raises(SealError, match=f"expected {other.hex()}"):
        open_release(
            tmp_path / "m.release", tmp_path / "out", private_key=OWNER, release_list=other
        )
    assert (tmp_path / "out").read_bytes() == b"keep"


def test_a_failing_source_leaves_the_old_envelope(tmp_path: Path) -> None:
    write_release(tmp_path / "m.release", MODEL, POLICY, label="old")
    before = (tmp_path / "m.release").read_bytes()

    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 3:
                raise OSError(5, "Input/output error")
            return b"x" * 100

    with pytest.raises(ConfigError, match="cannot read <model stream>: Input/output error"):
        write_release(tmp_path / "m.release", Broken(), POLICY, label="new", chunk_size=64)
    assert (tmp_path / "m.release").read_bytes() == before
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="label is 256 bytes"):
        write_release(tmp_path / "m", MODEL, POLICY, label="x" * 256)
    with pytest.raises(ConfigError, match="chunk size"):
        write_release(tmp_path / "m", MODEL, POLICY, label="x", chunk_size=0)
    with pytest.raises(ConfigError, match="policy must be a ReleasePolicy"):
        write_release(tmp_path / "m", MODEL, POLICY.recipients, label="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"model file .* does not exist"):
        write_release(tmp_path / "m", tmp_path / "missing.bin", POLICY, label="x")
    with pytest.raises(ConfigError, match="private_key must be a ReleaseKey"):
        open_release(tmp_path / "m", tmp_path / "o", private_key=b"k" * 32)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class ZeroSource(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return bytes(n)


def test_memory_stays_near_one_chunk_writing_and_opening_a_large_model(tmp_path: Path) -> None:
    total = 16 * 1024 * 1024
    tracemalloc.start()
    try:
        write_release(tmp_path / "big.release", ZeroSource(total), POLICY, label="big")
        _current, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        info = open_release(tmp_path / "big.release", tmp_path / "big.bin", private_key=OWNER)
        _current, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.model_bytes == total == (tmp_path / "big.bin").stat().st_size
    assert write_peak < 8 * DEFAULT_CHUNK_SIZE, f"write peak {write_peak} bytes"
    assert open_peak < 8 * DEFAULT_CHUNK_SIZE, f"open peak {open_peak} bytes"


def _vector_key(field: str) -> ReleaseKey:
    raw = bytes.fromhex(VECTOR[field])
    return ReleaseKey(x25519.X25519PrivateKey.from_private_bytes(raw))


@pytest.mark.parametrize("field", ["owner_private_key", "enclave_private_key"])
def test_an_envelope_written_by_an_earlier_release_still_opens(tmp_path: Path, field: str) -> None:
    """Vector from tests/seal/vectors/release_v1.json; its "source" field says where from."""
    envelope = tmp_path / "v.release"
    envelope.write_bytes(bytes.fromhex(VECTOR["envelope"]))
    info = open_release(
        envelope,
        tmp_path / "out",
        private_key=_vector_key(field),
        label=VECTOR["label"],
        release_list=bytes.fromhex(VECTOR["release_list"]),
    )
    assert (tmp_path / "out").read_bytes() == bytes.fromhex(VECTOR["plaintext"])
    assert info.model_bytes == len(bytes.fromhex(VECTOR["plaintext"]))
    envelope.write_bytes(bytes.fromhex(VECTOR["envelope"])[:-1])
    with pytest.raises(SealError):
        open_release(envelope, tmp_path / "out2", private_key=_vector_key(field))

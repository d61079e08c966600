"""Sealing keys: key files (format, permissions, validation) and keys derived from a TEE."""

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sealfl.errors import ConfigError, SealError
from sealfl.seal import (
    DEFAULT_TEE_LABEL,
    SealingKey,
    SealingKeySource,
    open_sealed_bytes,
    seal_bytes,
)
from sealfl.tee.simulated import MEASUREMENT_SIZE, SimulatedPlatform, SimulatedTee


def write_key_file(path: Path, document: Any, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(document))
    path.chmod(mode)
    return path


def valid_document(key: SealingKey) -> dict[str, Any]:
    return json.loads(key.to_key_file_bytes())


def test_a_saved_key_loads_back_and_the_file_is_private(tmp_path: Path) -> None:
    key = SealingKey.generate()
    path = tmp_path / "dev.key"
    key.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SealingKey.load(path) == key
    document = json.loads(path.read_text())
    assert document == {
        "format": "sealfl-sealing-key",
        "version": 1,
        "key_id": key.key_id.hex(),
        "key": base64.b64encode(key.secret_bytes).decode(),
    }


def test_saving_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "dev.key"
    first = SealingKey.generate()
    first.save(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists: refusing to overwrite"):
        SealingKey.generate().save(path)
    assert path.read_bytes() == before
    assert SealingKey.load(path) == first


def test_generated_keys_differ_and_repr_hides_the_secret() -> None:
    a, b = SealingKey.generate(), SealingKey.generate()
    assert a != b and a.key_id != b.key_id
    assert a.secret_bytes.hex() not in repr(a)
    assert repr(a) == f"SealingKey(key_id={a.key_id.hex()!r})"


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_a_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(SealError, match=f"32 bytes, got {length}"):
        SealingKey(bytes(length))


def _corrupt(key: SealingKey) -> dict[str, tuple[Any, str]]:
    """Key file documents that must be refused, with a fragment of the expected message."""
    good = valid_document(key)
    return {
        "not json": ("{not json", "is not JSON"),
        "a list": ([1, 2], "expected a JSON object, got list"),
        "missing key": ({k: v for k, v in good.items() if k != "key"}, "missing ['key']"),
        "extra field": ({**good, "comment": "x"}, "unexpected ['comment']"),
        "other format": ({**good, "format": "pem"}, "field 'format' is 'pem'"),
        "version 2": ({**good, "version": 2}, "field 'version' is 2, expected 1"),
        "version true": ({**good, "version": True}, "field 'version' is True"),
        "key not a string": ({**good, "key": 5}, "must be a base64 string, got int"),
        "bad base64": ({**good, "key": "!!!!"}, "field 'key' is not valid base64"),
        "short key": (
            {**good, "key": base64.b64encode(bytes(16)).decode()},
            "decodes to 16 bytes, expected 32",
        ),
        "altered key": (
            {**good, "key": base64.b64encode(bytes(32)).decode()},
            "field 'key_id' is",
        ),
    }


@pytest.mark.parametrize("case", sorted(_corrupt(SealingKey(bytes(range(32))))))
def test_a_corrupt_key_file_is_refused_naming_file_and_field(case: str, tmp_path: Path) -> None:
    document, fragment = _corrupt(SealingKey(bytes(range(32))))[case]
    path = tmp_path / "dev.key"
    if isinstance(document, str):
        path.write_text(document)
        path.chmod(0o600)
    else:
        write_key_file(path, document)
    with pytest.raises(SealError) as caught:
        SealingKey.load(path)
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


def test_a_key_file_others_can_read_is_refused_unless_allowed(tmp_path: Path) -> None:
    key = SealingKey.generate()
    path = write_key_file(tmp_path / "dev.key", valid_document(key), mode=0o644)
    with pytest.raises(ConfigError, match="has mode 0644, expected 0600"):
        SealingKey.load(path)
    assert SealingKey.load(path, allow_insecure_permissions=True) == key


def test_missing_directory_and_oversized_key_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SealingKey.load(tmp_path / "absent.key")
    with pytest.raises(ConfigError, match="not a regular file"):
        SealingKey.load(tmp_path)
    big = tmp_path / "big.key"
    big.write_bytes(bytes(5000))
    big.chmod(0o600)
    with pytest.raises(ConfigError, match="5000 bytes, not a key file"):
        SealingKey.load(big)


class FakeEnclave:
    """Implements SealingKeySource the way a TEE does: a key bound to identity and label."""

    def __init__(self, identity: bytes) -> None:
        self.identity = identity
        self.labels: list[bytes] = []

    def derive_sealing_key(self, label: bytes) -> bytes:
        self.labels.append(label)
        return hashlib.sha256(self.identity + b"\x00" + label).digest()


def test_a_tee_derived_key_is_stable_per_identity_and_label() -> None:
    enclave = FakeEnclave(b"measurement A")
    assert isinstance(enclave, SealingKeySource)
    key = SealingKey.from_tee(enclave)
    assert enclave.labels == [DEFAULT_TEE_LABEL]
    assert SealingKey.from_tee(FakeEnclave(b"measurement A")) == key
    assert SealingKey.from_tee(FakeEnclave(b"measurement B")) != key
    assert SealingKey.from_tee(enclave, label=b"checkpoints") != key
    blob = seal_bytes(b"model", key)
    with pytest.raises(SealError, match="sealed with key id"):
        open_sealed_bytes(blob, SealingKey.from_tee(FakeEnclave(b"measurement B")))


class BrokenSource:
    def derive_sealing_key(self, label: bytes) -> bytes:
        return b"short"


def test_a_tee_source_returning_the_wrong_length_is_refused() -> None:
    with pytest.raises(SealError, match=r"BrokenSource\.derive_sealing_key.*5 bytes, expected 32"):
        SealingKey.from_tee(BrokenSource())


def test_the_simulated_tee_seals_for_its_own_measurement_only(tmp_path: Path) -> None:
    platform = SimulatedPlatform.create(tmp_path / "platform")
    key = SealingKey.from_tee(SimulatedTee(platform, b"\x01" * MEASUREMENT_SIZE))
    again = SealingKey.from_tee(
        SimulatedTee(SimulatedPlatform.load(tmp_path / "platform"), b"\x01" * MEASUREMENT_SIZE)
    )
    other_code = SealingKey.from_tee(SimulatedTee(platform, b"\x02" * MEASUREMENT_SIZE))
    assert again == key
    assert other_code != key
    blob = seal_bytes(b"model", key)
    assert open_sealed_bytes(blob, again) == b"model"


def test_the_key_file_mode_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SealingKey.generate().save(tmp_path / "dev.key")
    finally:
        os.umask(old)
    assert (tmp_path / "dev.key").stat().st_mode & 0o777 == 0o600

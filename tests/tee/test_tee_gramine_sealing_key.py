"""GramineSgx's choice of sealing key (MRENCLAVE- or MRSIGNER-bound), on a fake /dev/attestation."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee import GramineSgx

MRENCLAVE_KEY = bytes(range(16))
MRSIGNER_KEY = bytes(range(100, 116))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "attestation"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "_sgx_mrenclave").write_bytes(MRENCLAVE_KEY)
    (root / "keys" / "_sgx_mrsigner").write_bytes(MRSIGNER_KEY)
    return root


def hkdf(secret: bytes, label: bytes) -> bytes:
    info = b"sealfl sgx sealing key v1\x00" + label
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def test_default_is_mrenclave(root: Path) -> None:
    provider = GramineSgx(root)
    assert provider.sealing_key == "mrenclave"
    assert provider.derive_sealing_key(b"model") == hkdf(MRENCLAVE_KEY, b"model")


def test_mrsigner_reads_its_own_file(root: Path) -> None:
    provider = GramineSgx(root, sealing_key="mrsigner")
    key = provider.derive_sealing_key(b"model")
    assert key == hkdf(MRSIGNER_KEY, b"model")
    assert key != GramineSgx(root).derive_sealing_key(b"model")
    # A rebuild changes the MRENCLAVE key, not the MRSIGNER one.
    (root / "keys" / "_sgx_mrenclave").write_bytes(bytes(16))
    assert provider.derive_sealing_key(b"model") == key


def test_missing_or_empty_key_file_is_named(root: Path) -> None:
    (root / "keys" / "_sgx_mrsigner").write_bytes(b"")
    with pytest.raises(AttestationError, match=r"keys/_sgx_mrsigner is empty"):
        GramineSgx(root, sealing_key="mrsigner").derive_sealing_key(b"model")
    (root / "keys" / "_sgx_mrsigner").unlink()
    with pytest.raises(AttestationError, match=r"cannot read .*keys/_sgx_mrsigner"):
        GramineSgx(root, sealing_key="mrsigner").derive_sealing_key(b"model")


@pytest.mark.parametrize("bad", ["MRSIGNER", "mrenclave ", "", "_sgx_mrsigner"])
def test_bad_policy_is_a_config_error(root: Path, bad: str) -> None:
    with pytest.raises(
        ConfigError, match=r"sealing_key: expected one of \['mrenclave', 'mrsigner'\]"
    ):
        GramineSgx(root, sealing_key=bad)  # type: ignore[arg-type]

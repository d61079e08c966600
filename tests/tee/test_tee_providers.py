"""Evidence generation in real TEEs, against fake /dev/attestation and configfs-tsm trees."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sealfl.errors import AttestationError
from sealfl.tee import EvidenceProvider, GramineSgx, SimulatedTee, TdxConfigfs

SGX_REPORT_DATA = b"Hello, world!".ljust(64, b"\x00")
TDX_REPORT_DATA = bytes.fromhex(
    "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
    "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
)


@pytest.fixture
def gramine_root(tmp_path: Path, sgx_vector) -> Path:
    """A directory laid out like Gramine's /dev/attestation, holding the real SGX quote."""
    root = tmp_path / "attestation"
    (root / "keys").mkdir(parents=True)
    (root / "attestation_type").write_text("dcap")
    (root / "user_report_data").write_bytes(bytes(64))
    (root / "quote").write_bytes(sgx_vector.quote)
    (root / "keys" / "_sgx_mrenclave").write_bytes(bytes(range(16)))
    return root


@pytest.fixture
def tsm_root(tmp_path: Path, tdx_vector) -> Path:
    """A configfs-tsm report directory with one entry, holding the real TDX quote."""
    root = tmp_path / "tsm" / "report"
    entry = root / "sealfl-test"
    entry.mkdir(parents=True)
    (entry / "provider").write_text("tdx_guest\n")
    (entry / "generation").write_text("3\n")
    (entry / "inblob").write_bytes(b"")
    (entry / "outblob").write_bytes(tdx_vector.quote)
    return root


def test_providers_fulfil_the_protocol(tee: SimulatedTee, tmp_path: Path) -> None:
    for provider in (tee, GramineSgx(tmp_path), TdxConfigfs(tmp_path)):
        assert isinstance(provider, EvidenceProvider)
    assert (GramineSgx.backend, TdxConfigfs.backend, SimulatedTee.backend) == (
        "sgx",
        "tdx",
        "simulated",
    )


def test_gramine_writes_report_data_then_reads_quote(gramine_root: Path, sgx_vector) -> None:
    quote = GramineSgx(gramine_root).quote(SGX_REPORT_DATA)
    assert quote == sgx_vector.quote
    assert (gramine_root / "user_report_data").read_bytes() == SGX_REPORT_DATA


def test_gramine_detects_a_quote_for_other_report_data(gramine_root: Path) -> None:
    with pytest.raises(AttestationError, match="another writer"):
        GramineSgx(gramine_root).quote(b"\x01" * 64)


def test_gramine_needs_dcap(gramine_root: Path) -> None:
    (gramine_root / "attestation_type").write_text("none")
    with pytest.raises(AttestationError, match=r'sgx\.remote_attestation = "dcap"'):
        GramineSgx(gramine_root).quote(SGX_REPORT_DATA)


def test_gramine_refuses_a_tdx_quote(gramine_root: Path, tdx_vector) -> None:
    (gramine_root / "quote").write_bytes(tdx_vector.quote)
    with pytest.raises(AttestationError, match="expected an SGX quote"):
        GramineSgx(gramine_root).quote(TDX_REPORT_DATA)


def test_gramine_outside_an_enclave(tmp_path: Path) -> None:
    with pytest.raises(AttestationError, match="Gramine"):
        GramineSgx(tmp_path / "absent").quote(SGX_REPORT_DATA)


def test_gramine_sealing_key(gramine_root: Path) -> None:
    provider = GramineSgx(gramine_root)
    key = provider.derive_sealing_key(b"model")
    assert len(key) == 32
    assert key == GramineSgx(gramine_root).derive_sealing_key(b"model")
    assert key != provider.derive_sealing_key(b"checkpoint")
    (gramine_root / "keys" / "_sgx_mrenclave").write_bytes(bytes(16))
    assert key != provider.derive_sealing_key(b"model")


def test_tdx_writes_inblob_and_reads_outblob(tsm_root: Path, tdx_vector) -> None:
    provider = TdxConfigfs(tsm_root, entry="sealfl-test")
    assert provider.quote(TDX_REPORT_DATA) == tdx_vector.quote
    assert (tsm_root / "sealfl-test" / "inblob").read_bytes() == TDX_REPORT_DATA


def test_tdx_detects_a_concurrent_writer_through_generation(tsm_root: Path, tdx_vector) -> None:
    entry = tsm_root / "sealfl-test"
    (entry / "outblob").unlink()
    os.mkfifo(entry / "outblob")

    def other_writer() -> None:
        # Opening the FIFO waits for the provider to start reading outblob; the other writer
        # then changes the entry (generation 3 -> 4) before the quote comes out.
        with (entry / "outblob").open("wb") as outblob:
            (entry / "generation").write_text("4\n")
            outblob.write(tdx_vector.quote)

    thread = threading.Thread(target=other_writer, daemon=True)
    thread.start()
    with pytest.raises(AttestationError, match="was 3 after writing inblob but 4"):
        TdxConfigfs(tsm_root, entry="sealfl-test").quote(TDX_REPORT_DATA)
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_tdx_detects_a_quote_for_other_report_data(tsm_root: Path) -> None:
    with pytest.raises(AttestationError, match="report_data expected 0101"):
        TdxConfigfs(tsm_root, entry="sealfl-test").quote(b"\x01" * 64)


def test_tdx_checks_the_provider(tsm_root: Path) -> None:
    (tsm_root / "sealfl-test" / "provider").write_text("sev_guest\n")
    with pytest.raises(AttestationError, match="expected 'tdx_guest', found 'sev_guest'"):
        TdxConfigfs(tsm_root, entry="sealfl-test").quote(TDX_REPORT_DATA)


def test_tdx_without_configfs(tmp_path: Path) -> None:
    with pytest.raises(AttestationError, match="configfs-tsm is not available"):
        TdxConfigfs(tmp_path / "absent").quote(TDX_REPORT_DATA)


@pytest.mark.parametrize("entry", [None, ""])
def test_tdx_creates_its_entry(tsm_root: Path, entry: str | None) -> None:
    provider = TdxConfigfs(tsm_root, entry=entry)
    assert provider.entry == f"sealfl-{os.getpid()}"
    # A plain directory does not grow configfs attributes, so reading provider fails.
    with pytest.raises(AttestationError, match="provider"):
        provider.quote(TDX_REPORT_DATA)
    assert provider.directory.is_dir()


@pytest.mark.parametrize("name", ["../x", "a/b", ".."])
def test_tdx_entry_names_are_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(AttestationError, match="plain name"):
        TdxConfigfs(tmp_path, entry=name)


def test_tdx_has_no_local_sealing_key(tmp_path: Path) -> None:
    with pytest.raises(AttestationError, match="key broker"):
        TdxConfigfs(tmp_path).derive_sealing_key(b"model")

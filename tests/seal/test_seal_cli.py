"""``sealfl seal keygen|encrypt|decrypt|info``, run as a real process."""

from pathlib import Path

import pytest
from sealfl_command import one_line, sealfl

from sealfl.seal import SealingKey


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with a key file (made by the library, to save a process) and a model."""
    SealingKey.generate().save(tmp_path / "dev.key")
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 700)
    return tmp_path


def test_keygen_encrypt_decrypt_round_trip(tmp_path: Path) -> None:
    workdir = tmp_path
    keygen = sealfl("seal", "keygen", "--out", "dev.key", cwd=workdir)
    assert keygen.returncode == 0, keygen.stderr
    assert (workdir / "dev.key").stat().st_mode & 0o777 == 0o600
    assert SealingKey.load(workdir / "dev.key").key_id.hex() in keygen.stdout
    (workdir / "model.bin").write_bytes(bytes(range(256)) * 700)
    sealed = sealfl(
        "seal", "encrypt", "model.bin", "model.sealed", "--key", "dev.key", "--chunk-size", "4096",
        "--label", "homo-lr/model", cwd=workdir,
    )  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    assert "model.sealed" in sealed.stdout
    opened = sealfl(
        "seal", "decrypt", "model.sealed", "out.bin", "-k", "dev.key", "--label", "homo-lr/model",
        cwd=workdir,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert (workdir / "out.bin").read_bytes() == (workdir / "model.bin").read_bytes()
    info = sealfl("seal", "info", "model.sealed", cwd=workdir)
    assert info.returncode == 0
    assert "chunk size: 4096" in info.stdout and "'homo-lr/model'" in info.stdout


def test_a_tampered_file_exits_1_names_the_chunk_and_keeps_the_destination(
    workdir: Path,
) -> None:
    assert (
        sealfl("seal", "encrypt", "model.bin", "m.sealed", "-k", "dev.key", cwd=workdir).returncode
        == 0
    )
    sealed = workdir / "m.sealed"
    blob = bytearray(sealed.read_bytes())
    blob[54 + 65536 + 16 + 100] ^= 0x40  # inside chunk 1
    sealed.write_bytes(blob)
    (workdir / "out.bin").write_bytes(b"keep me")

    result = sealfl("seal", "decrypt", "m.sealed", "out.bin", "-k", "dev.key", cwd=workdir)

    assert result.returncode == 1
    assert "m.sealed: chunk 1 (at byte 65606" in one_line(result.stderr)
    assert (workdir / "out.bin").read_bytes() == b"keep me"
    assert sorted(p.name for p in workdir.iterdir()) == [
        "dev.key",
        "m.sealed",
        "model.bin",
        "out.bin",
    ]


def test_a_wrong_key_exits_1_and_names_both_key_ids(workdir: Path) -> None:
    assert sealfl("seal", "keygen", "--out", "other.key", cwd=workdir).returncode == 0
    assert (
        sealfl("seal", "encrypt", "model.bin", "m.sealed", "-k", "dev.key", cwd=workdir).returncode
        == 0
    )
    result = sealfl("seal", "decrypt", "m.sealed", "out.bin", "-k", "other.key", cwd=workdir)
    assert result.returncode == 1
    assert "was sealed with key id" in one_line(result.stderr)
    assert not (workdir / "out.bin").exists()


# id: (command line after `sealfl seal`, fragment of the error message)
BAD_INPUT = {
    "keygen over a key": ("keygen --out dev.key", "dev.key already exists"),
    "missing input": ("encrypt absent.bin x.sealed -k dev.key", "absent.bin does not exist"),
    "missing key": ("encrypt model.bin x.sealed -k absent.key", "absent.key does not exist"),
    "key as output": ("encrypt model.bin dev.key -k dev.key", "is the key file"),
    "chunk size 0": ("encrypt model.bin x.sealed -k dev.key --chunk-size 0", "got 0"),
    "plaintext as sealed": ("decrypt model.bin x.bin -k dev.key", "model.bin is not a sealed"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_with_a_message_and_nothing_is_changed(
    workdir: Path, case: str
) -> None:
    args, fragment = BAD_INPUT[case]
    before = {p.name: p.read_bytes() for p in workdir.iterdir()}
    result = sealfl("seal", *args.split(), cwd=workdir)
    assert result.returncode != 0
    assert fragment in one_line(result.stderr)
    assert {p.name: p.read_bytes() for p in workdir.iterdir()} == before


def test_bad_arguments_exit_2_and_bad_files_exit_1(workdir: Path) -> None:
    missing = sealfl("seal", "encrypt", "absent.bin", "x.sealed", "-k", "dev.key", cwd=workdir)
    assert missing.returncode == 2
    corrupt = sealfl("seal", "decrypt", "model.bin", "x.bin", "-k", "dev.key", cwd=workdir)
    assert corrupt.returncode == 1


def test_the_seal_group_lists_its_commands_in_help(tmp_path: Path) -> None:
    result = sealfl("seal", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("keygen", "encrypt", "decrypt", "info"):
        assert command in result.stdout

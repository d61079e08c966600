"""``sealfl model keygen|policy|release|inspect|open``, run as real processes."""

import json
from pathlib import Path

import pytest
from sealfl_command import one_line, sealfl

from sealfl.seal import ReleaseKey, ReleasePolicy, write_release

POLICY = """
[[recipient]]
name = "model-owner"
public_key = "keys/model-owner.pub"
[[recipient]]
name = "eval-enclave"
public_key = "keys/eval-enclave.pub"
broker_resource = "homo-lr/release-key/eval"
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Keys (made by the library, to save processes), a policy, a model and its envelope."""
    ReleaseKey.generate(name="model-owner").save(tmp_path / "keys")
    ReleaseKey.generate(name="eval-enclave").save(tmp_path / "keys")
    ReleaseKey.generate(name="outsider").save(tmp_path / "keys")
    (tmp_path / "release.toml").write_text(POLICY)
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 700)
    policy = ReleasePolicy.load(tmp_path / "release.toml")
    write_release(tmp_path / "model.release", tmp_path / "model.bin", policy, label="homo-lr/model")
    return tmp_path


def test_keygen_policy_release_inspect_open_round_trip(tmp_path: Path) -> None:
    keygen = sealfl("model", "keygen", "--out", "keys", "--name", "model-owner", cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    key = ReleaseKey.load(tmp_path / "keys/model-owner.key")
    assert key.key_id.hex() in keygen.stdout
    assert (tmp_path / "keys/model-owner.key").stat().st_mode & 0o777 == 0o600
    ReleaseKey.generate(name="eval-enclave").save(tmp_path / "keys")
    (tmp_path / "release.toml").write_text(POLICY)
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 700)
    digest = ReleasePolicy.load(tmp_path / "release.toml").digest().hex()

    shown = sealfl("model", "policy", "release.toml", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["release_list"] == digest

    released = sealfl(
        "model", "release", "model.bin", "--policy", "release.toml", "--out", "model.release",
        "--label", "homo-lr/model", cwd=tmp_path,
    )  # fmt: skip
    assert released.returncode == 0, released.stderr
    assert "model.release" in released.stdout and digest[:16] in released.stdout

    inspected = sealfl("model", "inspect", "model.release", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert f"release list: {digest}" in inspected.stdout
    assert "broker resource homo-lr/release-key/eval" in inspected.stdout
    assert f"model size:   {256 * 700} bytes" in inspected.stdout

    opened = sealfl(
        "model", "open", "model.release", "--key", "keys/model-owner.key", "--out", "out.bin",
        "--label", "homo-lr/model", "--release-list", digest, cwd=tmp_path,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert "as recipient 'model-owner'" in opened.stdout
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "model.bin").read_bytes()


def test_inspect_json(workdir: Path) -> None:
    result = sealfl("model", "inspect", "model.release", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["label"] == "homo-lr/model"
    assert [r["name"] for r in document["recipients"]] == ["model-owner", "eval-enclave"]
    assert document["recipients"][1]["broker_resource"] == "homo-lr/release-key/eval"


def test_a_non_recipient_exits_1_lists_the_recipients_and_keeps_the_output(
    workdir: Path,
) -> None:
    (workdir / "out.bin").write_bytes(b"keep me")
    result = sealfl(
        "model", "open", "model.release", "--key", "keys/outsider.key", "--out", "out.bin",
        cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 1
    message = one_line(result.stderr)
    assert "model.release was not released to key" in message
    assert "model-owner (key" in message and "eval-enclave (key" in message
    assert (workdir / "out.bin").read_bytes() == b"keep me"


def test_a_tampered_envelope_exits_1_and_writes_nothing(workdir: Path) -> None:
    blob = bytearray((workdir / "model.release").read_bytes())
    blob[-100] ^= 0x01
    (workdir / "model.release").write_bytes(blob)
    result = sealfl(
        "model", "open", "model.release", "-k", "keys/eval-enclave.key", "-o", "out.bin",
        cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 1
    assert "failed authentication" in one_line(result.stderr)
    assert not (workdir / "out.bin").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("model", "open", "missing.release", "-k", "keys/model-owner.key", "-o", "o"),
         "release envelope missing.release does not exist"),
        (("model", "open", "model.bin", "-k", "keys/model-owner.key", "-o", "o"),
         "model.bin is not a sealfl release envelope"),
        (("model", "open", "model.release", "-k", "keys/model-owner.pub", "-o", "o"),
         "keys/model-owner.pub: field 'format' is 'sealfl-release-public-key'"),
        (("model", "open", "model.release", "-k", "keys/model-owner.key", "-o", "model.release"),
         "is the envelope; refusing to overwrite it"),
        (("model", "open", "model.release", "-k", "keys/model-owner.key", "-o", "o",
          "--release-list", "abc"), "--release-list: expected 64 hex digits"),
        (("model", "release", "model.bin", "-p", "nope.toml", "-o", "x.release"),
         "release policy nope.toml does not exist"),
        (("model", "keygen", "--out", "keys", "--name", "model-owner"),
         "keys/model-owner.key already exists"),
    ],
    ids=["missing-envelope", "not-an-envelope", "public-key-as-key", "out-is-envelope",
         "bad-digest", "missing-policy", "keygen-exists"],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_file(
    workdir: Path, args: tuple[str, ...], fragment: str
) -> None:
    before = (workdir / "model.release").read_bytes()
    result = sealfl(*args, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert fragment in one_line(result.stderr)
    assert (workdir / "model.release").read_bytes() == before
    assert not (workdir / "o").exists()

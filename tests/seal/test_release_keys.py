"""Recipient key files: created once with the right modes, read strictly, PEM accepted."""

import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from sealfl.errors import ConfigError
from sealfl.seal import ReleaseKey, SealingKey, read_public_key


def test_save_writes_a_private_0600_and_a_public_0644_file(tmp_path: Path) -> None:
    key = ReleaseKey.generate(name="model-owner")
    private, public = key.save(tmp_path / "new" / "dir")
    assert (private.name, public.name) == ("model-owner.key", "model-owner.pub")
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    loaded = ReleaseKey.load(private)
    assert loaded.public_key == key.public_key and loaded.name == "model-owner"
    assert read_public_key(public) == key.public_key
    document = json.loads(public.read_text())
    assert document["key_id"] == hashlib.sha256(key.public_key).hexdigest()[:16]
    assert key.key_id.hex() == document["key_id"]


def test_repr_does_not_show_the_private_key(tmp_path: Path) -> None:
    key = ReleaseKey.generate(name="owner")
    secret = json.loads(key.to_bytes())["private_key"]
    assert secret not in repr(key) and key.key_id.hex() in repr(key)


@pytest.mark.parametrize("existing", ["owner.key", "owner.pub"])
def test_save_never_overwrites_and_leaves_nothing_new(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"old")
    with pytest.raises(ConfigError, match="already exists: refusing to overwrite a key"):
        ReleaseKey.generate(name="owner").save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_bytes() == b"old"


def test_a_private_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    private, _public = ReleaseKey.generate(name="owner").save(tmp_path)
    os.chmod(private, 0o640)
    with pytest.raises(ConfigError, match="has mode 0640, expected 0600"):
        ReleaseKey.load(private)
    assert ReleaseKey.load(private, allow_insecure_permissions=True).name == "owner"


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(key_id="00" * 8), "field 'key_id' is '0000000000000000'"),
        (lambda d: d.update(private_key="AAAA"), "decodes to 3 bytes, expected 32"),
        (lambda d: d.update(private_key="not base64!"), "is not valid base64"),
        (lambda d: d.update(version=2), "field 'version' is 2, expected 1"),
        (lambda d: d.update(name="a b"), "name 'a b' is not a valid recipient name"),
        (lambda d: d.update(extra=1), "unexpected ['extra']"),
        (lambda d: d.pop("name"), "missing ['name']"),
    ],
)
def test_a_damaged_private_key_file_is_refused_naming_the_field(
    tmp_path: Path, edit, fragment: str
) -> None:
    key = ReleaseKey.generate(name="owner")
    document = json.loads(key.to_bytes())
    edit(document)
    raw = json.dumps(document).encode()
    with pytest.raises(ConfigError) as refused:
        ReleaseKey.from_bytes(raw, name="owner.key")
    assert "owner.key" in str(refused.value) and fragment in str(refused.value)


def test_other_kinds_of_key_file_are_refused(tmp_path: Path) -> None:
    sealing = SealingKey.generate().to_key_file_bytes()
    with pytest.raises(ConfigError, match="'sealfl-sealing-key', expected 'sealfl-release-private"):
        ReleaseKey.from_bytes(sealing, name="dev.key")
    public = ReleaseKey.generate().public_key_file_bytes()
    with pytest.raises(ConfigError, match="expected 'sealfl-release-private-key'"):
        ReleaseKey.from_bytes(public)
    with pytest.raises(ConfigError, match="neither PEM nor a JSON key file"):
        ReleaseKey.from_bytes(b"\x00garbage")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="expected an X25519 private key"):
        ReleaseKey.from_bytes(ec_pem)


def test_pem_keys_from_other_tools_are_accepted() -> None:
    key = x25519.X25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    loaded = ReleaseKey.from_bytes(pem)
    assert loaded.public_key == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_from_bytes_reads_what_to_bytes_wrote() -> None:
    """The broker stores a .key file's contents; the TEE reads them back with from_bytes."""
    key = ReleaseKey.generate(name="eval-enclave")
    again = ReleaseKey.from_bytes(key.to_bytes())
    assert again.public_key == key.public_key and again.name == "eval-enclave"


def test_a_missing_or_huge_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"private key file .*none\.key does not exist"):
        ReleaseKey.load(tmp_path / "none.key")
    big = tmp_path / "big.pub"
    big.write_bytes(b" " * 5000)
    with pytest.raises(ConfigError, match="5000 bytes, not a public key file"):
        read_public_key(big)

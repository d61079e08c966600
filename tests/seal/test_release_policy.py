"""Release policies: strict parsing, and a release-list digest that is stable and canonical."""

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from sealfl.errors import ConfigError
from sealfl.seal import Recipient, ReleaseKey, ReleasePolicy


def fixed_key(tag: str) -> bytes:
    secret = hashlib.sha256(f"release policy test: {tag}".encode()).digest()
    return ReleaseKey(x25519.X25519PrivateKey.from_private_bytes(secret)).public_key


OWNER = Recipient(name="model-owner", public_key=fixed_key("owner"))
ENCLAVE = Recipient(
    name="eval-enclave", public_key=fixed_key("enclave"), broker_resource="homo-lr/release-key/eval"
)
# SHA-256 of the documented canonical encoding of [OWNER, ENCLAVE]; pinned so that a change of
# the encoding (which would change every producer's RA-TLS claim) cannot go unnoticed.
PINNED_DIGEST = "16d3ea1318c29619d104052bd17bcaefcfd5f91977945268af18ea9b8101a763"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_digest_is_sha256_of_the_documented_canonical_encoding() -> None:
    expected_bytes = (
        '{"format":"sealfl-release-list","recipients":['
        f'{{"broker_resource":"homo-lr/release-key/eval","name":"eval-enclave",'
        f'"public_key":"{b64(ENCLAVE.public_key)}"}},'
        f'{{"broker_resource":null,"name":"model-owner","public_key":"{b64(OWNER.public_key)}"}}'
        '],"version":1}'
    ).encode("ascii")
    digest = ReleasePolicy([OWNER, ENCLAVE]).digest()
    assert digest == hashlib.sha256(expected_bytes).digest()
    assert len(digest) == 32


def test_digest_is_pinned() -> None:
    assert ReleasePolicy([OWNER, ENCLAVE]).digest().hex() == PINNED_DIGEST


def test_digest_does_not_depend_on_the_order() -> None:
    assert ReleasePolicy([OWNER, ENCLAVE]).digest() == ReleasePolicy([ENCLAVE, OWNER]).digest()


@pytest.mark.parametrize(
    "changed",
    [
        Recipient(name="model-owner2", public_key=OWNER.public_key),
        Recipient(name="model-owner", public_key=fixed_key("other")),
        Recipient(name="model-owner", public_key=OWNER.public_key, broker_resource="a/b"),
    ],
    ids=["name", "key", "broker-resource-added"],
)
def test_digest_changes_with_any_field(changed: Recipient) -> None:
    assert ReleasePolicy([changed, ENCLAVE]).digest() != ReleasePolicy([OWNER, ENCLAVE]).digest()


def test_digest_changes_when_a_recipient_is_added_or_dropped() -> None:
    both = ReleasePolicy([OWNER, ENCLAVE]).digest()
    assert ReleasePolicy([OWNER]).digest() != both
    assert ReleasePolicy([ENCLAVE]).digest() != both


def test_describe_names_every_recipient_and_the_digest() -> None:
    text = ReleasePolicy([OWNER, ENCLAVE]).describe()
    assert PINNED_DIGEST[:16] in text
    assert "model-owner (key " + OWNER.key_id.hex() in text
    assert "via broker resource homo-lr/release-key/eval" in text


# -- files -------------------------------------------------------------------------------------


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    ReleaseKey.generate(name="owner").save(tmp_path / "keys")
    ReleaseKey.generate(name="eval").save(tmp_path / "keys")
    return tmp_path


def write_policy(directory: Path, text: str) -> Path:
    path = directory / "release.toml"
    path.write_text(text)
    return path


GOOD = """
[[recipient]]
name = "model-owner"
public_key = "keys/owner.pub"
[[recipient]]
name = "eval-enclave"
public_key = "keys/eval.pub"
broker_resource = "homo-lr/release-key/eval"
"""


def test_load_reads_key_files_relative_to_the_policy(keydir: Path, tmp_path: Path) -> None:
    policy = ReleasePolicy.load(write_policy(keydir, GOOD))
    owner = ReleaseKey.load(keydir / "keys/owner.key")
    assert [r.name for r in policy.recipients] == ["model-owner", "eval-enclave"]
    assert policy.recipients[0].public_key == owner.public_key
    assert policy.recipients[0].broker_resource is None
    assert policy.recipients[1].broker_resource == "homo-lr/release-key/eval"
    assert policy.find(owner.key_id) == policy.recipients[0]
    assert policy.find(b"\x00" * 8) is None


def test_inline_base64_and_pem_public_keys(tmp_path: Path) -> None:
    pem_key = x25519.X25519PrivateKey.generate()
    (tmp_path / "other.pem").write_bytes(
        pem_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    text = (
        f'[[recipient]]\nname = "inline"\npublic_key = "{b64(OWNER.public_key)}"\n'
        '[[recipient]]\nname = "pem"\npublic_key = "other.pem"\n'
    )
    policy = ReleasePolicy.load(write_policy(tmp_path, text))
    assert policy.recipients[0].public_key == OWNER.public_key
    assert policy.recipients[1].public_key == ReleaseKey(pem_key).public_key


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the release list is empty"),
        ("recipient = []", "the release list is empty"),
        ('version = 1\n' + GOOD, "unknown top-level key(s) ['version']"),
        ('recipient = "x"', "'recipient' must be an array of tables"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.pub"\ncolour = "red"',
         "recipient 1 ('a'): unknown key(s) ['colour']"),
        ('[[recipient]]\npublic_key = "keys/owner.pub"',
         "recipient 1: missing required key 'name'"),
        ('[[recipient]]\nname = "a"', "recipient 1 ('a'): missing required key 'public_key'"),
        ('[[recipient]]\nname = "a b"\npublic_key = "keys/owner.pub"',
         "name 'a b' is not a valid recipient name"),
        ('[[recipient]]\nname = 7\npublic_key = "keys/owner.pub"',
         "name 7 is not a valid recipient name"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/missing.pub"',
         "recipient 1 ('a'): public_key: public key file"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.key"',
         "field 'format' is 'sealfl-release-private-key', expected 'sealfl-release-public-key'"),
        ('[[recipient]]\nname = "a"\npublic_key = 5', "public_key must be a key file path"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.pub"\nbroker_resource = 3',
         "broker_resource must be a string"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.pub"\nbroker_resource = "../x"',
         "broker_resource '../x' is not a valid resource name"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.pub"\n'
         '[[recipient]]\nname = "a"\npublic_key = "keys/eval.pub"',
         "recipient 2 ('a') has the same name 'a' as recipient 1"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.pub"\n'
         '[[recipient]]\nname = "b"\npublic_key = "keys/owner.pub"',
         "recipient 2 ('b') has the same public key"),
        ('[[recipient]]\nname = "a"\npublic_key = "keys/owner.pub"\nbroker_resource = "r"\n'
         '[[recipient]]\nname = "b"\npublic_key = "keys/eval.pub"\nbroker_resource = "r"',
         "recipient 2 ('b') has the same broker_resource 'r' as recipient 1"),
        ('[[recipient]\nname = "a"', "is not valid TOML"),
        (f'[[recipient]]\nname = "a"\npublic_key = "{b64(bytes(32))}"', "low-order X25519 point"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)  # fmt: skip
def test_policy_file_errors_name_the_file_and_the_entry(
    keydir: Path, text: str, fragment: str
) -> None:
    path = write_policy(keydir, text)
    with pytest.raises(ConfigError) as refused:
        ReleasePolicy.load(path)
    message = str(refused.value)
    assert str(path) in message
    assert fragment in message


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"release policy .*nope\.toml does not exist"):
        ReleasePolicy.load(tmp_path / "nope.toml")


def test_a_public_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ed.pem").write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = write_policy(tmp_path, '[[recipient]]\nname = "a"\npublic_key = "ed.pem"')
    with pytest.raises(ConfigError, match="expected an X25519 public key, got Ed25519PublicKey"):
        ReleasePolicy.load(path)


def test_a_public_key_file_whose_id_was_altered_is_refused(keydir: Path) -> None:
    pub = keydir / "keys/owner.pub"
    document = json.loads(pub.read_text())
    document["key_id"] = "00" * 8
    pub.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="field 'key_id' is '0000000000000000'"):
        ReleasePolicy.load(write_policy(keydir, GOOD))


def test_the_constructor_refuses_duplicates_and_an_empty_list() -> None:
    with pytest.raises(ConfigError, match="empty"):
        ReleasePolicy([])
    with pytest.raises(ConfigError, match="same public key"):
        ReleasePolicy([OWNER, Recipient(name="again", public_key=OWNER.public_key)])

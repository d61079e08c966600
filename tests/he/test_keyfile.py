"""Key files: documented JSON, validated on load, clear errors for corrupt or wrong-type files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from sealfl.errors import ConfigError
from sealfl.he import (
    PaillierPrivateKey,
    WeakKeyWarning,
    load_key,
    load_private_key,
    load_public_key,
    public_key_from_json,
    public_key_to_json,
    save_private_key,
    save_public_key,
)

pytestmark = pytest.mark.filterwarnings("ignore", category=WeakKeyWarning)


def test_roundtrip_and_permissions(key1024: PaillierPrivateKey, tmp_path: Path) -> None:
    save_private_key(key1024, tmp_path / "k" / "private.json")
    save_public_key(key1024.public_key, tmp_path / "k" / "public.json")
    assert load_private_key(tmp_path / "k" / "private.json") == key1024
    assert load_public_key(tmp_path / "k" / "public.json") == key1024.public_key
    mode = stat.S_IMODE((tmp_path / "k" / "private.json").stat().st_mode)
    assert mode == 0o600
    # Exactly the two key files: no temporary file left beside them, whatever its name.
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["private.json", "public.json"]


def test_document_is_the_documented_json(key1024: PaillierPrivateKey) -> None:
    document = json.loads(public_key_to_json(key1024.public_key))
    assert document == {
        "format": "sealfl-paillier-key",
        "version": 1,
        "kind": "public",
        "bits": 1024,
        "fingerprint": key1024.public_key.fingerprint_hex,
        "n": format(key1024.public_key.n, "x"),
    }


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(document))
    return path


def _private_document(key: PaillierPrivateKey) -> dict:
    from sealfl.he import private_key_to_json

    return json.loads(private_key_to_json(key))


def test_wrong_type_is_named(key1024: PaillierPrivateKey, tmp_path: Path) -> None:
    save_private_key(key1024, tmp_path / "private.json")
    save_public_key(key1024.public_key, tmp_path / "public.json")
    with pytest.raises(
        ConfigError, match=r"private.json: is a private key file, expected a public"
    ):
        load_public_key(tmp_path / "private.json")
    with pytest.raises(ConfigError, match=r"public.json: is a public key file, expected a private"):
        load_private_key(tmp_path / "public.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x80\x04pickle", "invalid JSON"),
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "a JSON list, expected an object"),
        (b'{"format": "pem"}', "field 'format' is 'pem', expected 'sealfl-paillier-key'"),
        (b'{"format": "sealfl-paillier-key", "version": 2, "kind": "public"}', "version 2"),
        (b'{"format": "sealfl-paillier-key", "version": 1, "kind": "shared"}', "'kind'"),
        (b'{"format": "sealfl-paillier-key", "version": 1, "kind": "public"}', "'n' is missing"),
        (
            b'{"format": "sealfl-paillier-key", "version": 1, "kind": "public", "n": 5}',
            "'n' is int",
        ),
        (b'{"format": "sealfl-paillier-key", "version": 1, "kind": "public", "n": "xyz"}', "hex"),
    ],
)
def test_corrupt_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_public_key(path)


def test_load_key_returns_either_kind(key1024: PaillierPrivateKey, tmp_path: Path) -> None:
    save_private_key(key1024, tmp_path / "private.json")
    save_public_key(key1024.public_key, tmp_path / "public.json")
    assert load_key(tmp_path / "private.json") == key1024
    assert load_key(tmp_path / "public.json") == key1024.public_key
    (tmp_path / "bad.json").write_text('{"format": "sealfl-paillier-key", "version": 1}')
    with pytest.raises(ConfigError, match=r"bad.json: field 'kind' is None, expected 'public'"):
        load_key(tmp_path / "bad.json")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_private_key(tmp_path / "absent.json")


def test_flipped_digit_of_n_fails_the_fingerprint(key1024: PaillierPrivateKey) -> None:
    document = json.loads(public_key_to_json(key1024.public_key))
    n_hex = document["n"]
    document["n"] = n_hex[:-3] + ("1" if n_hex[-3] != "1" else "3") + n_hex[-2:]
    with pytest.raises(ConfigError, match=r"fingerprint .* does not match n"):
        public_key_from_json(json.dumps(document).encode())


def test_bits_field_must_match(key1024: PaillierPrivateKey) -> None:
    document = json.loads(public_key_to_json(key1024.public_key))
    document["bits"] = 2048
    with pytest.raises(ConfigError, match="'bits' is 2048, but n has 1024"):
        public_key_from_json(json.dumps(document).encode())


def test_private_primes_are_checked(key1024: PaillierPrivateKey, tmp_path: Path) -> None:
    document = _private_document(key1024)
    document["p"] = format(key1024.p + 2, "x")
    with pytest.raises(ConfigError, match=r"key.json: .*p·q != n"):
        load_private_key(_write(tmp_path, document))
    document = _private_document(key1024)
    del document["q"]
    with pytest.raises(ConfigError, match="field 'q'"):
        load_private_key(_write(tmp_path, document))


def test_negative_modulus_is_refused(key1024: PaillierPrivateKey) -> None:
    document = json.loads(public_key_to_json(key1024.public_key))
    document["n"] = "-" + document["n"]
    with pytest.raises(ConfigError, match="modulus must be positive, got a negative number"):
        public_key_from_json(json.dumps(document).encode())

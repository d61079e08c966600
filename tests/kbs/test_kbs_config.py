"""The ``[kbs]`` table: what it accepts, and that every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealfl.errors import ConfigError
from sealfl.kbs import KbsSettings, ResourceSettings, check_resource_name, load_kbs_settings
from sealfl.net import certificate_fingerprint, make_self_signed_credentials

FINGERPRINT = "ab" * 32


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "kbs.toml"
    path.write_text(body)
    return path


def test_a_full_table_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    admin = make_self_signed_credentials("admin")
    (tmp_path / "admin.pem").write_bytes(admin.cert_pem)
    path = write(
        tmp_path,
        f"""
[tee]
kind = "simulated"

[kbs]
listen = "0.0.0.0:50080"
service_listen = "0.0.0.0:50081"
store = "store"
audit_log = "logs/audit.jsonl"
admins = ["admin.pem", "{FINGERPRINT.upper()}", "{":".join(["cd"] * 32)}"]
nonce_ttl_s = 12.5

[[kbs.resource]]
name = "hfl/seal-key/checkpoints"
policy = "policy.toml"
generate = true
size = 32

[[kbs.resource]]
name = "vfl/token/leader"
policy = "/abs/policy.toml"
""",
    )
    settings = load_kbs_settings(path)
    assert settings.listen == "0.0.0.0:50080"
    assert settings.service_listen == "0.0.0.0:50081"
    assert settings.store == tmp_path / "store"
    assert settings.audit_log == tmp_path / "logs" / "audit.jsonl"
    assert settings.admins == {certificate_fingerprint(admin.cert_pem), FINGERPRINT, "cd" * 32}
    assert settings.nonce_ttl_s == 12.5
    first, second = settings.resources
    assert first == ResourceSettings(
        "hfl/seal-key/checkpoints", tmp_path / "policy.toml", generate=True, size=32
    )
    assert second.policy == Path("/abs/policy.toml") and second.generated_size == 32
    assert settings.resource("vfl/token/leader") is second
    assert settings.resource("vfl/token/other") is None


def test_defaults(tmp_path: Path) -> None:
    settings = load_kbs_settings(
        write(
            tmp_path,
            '[kbs]\nstore = "s"\naudit_log = "a"\n[[kbs.resource]]\nname = "a/b/c"\npolicy = "p"\n',
        )
    )
    assert settings.listen == "127.0.0.1:50080"
    assert settings.service_listen is None
    assert settings.admins == frozenset()
    assert settings.nonce_ttl_s == 30.0


BASE = 'store = "s"\naudit_log = "a"\n'
RESOURCE = '[[kbs.resource]]\nname = "a/b/c"\npolicy = "p"\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"[kbs]\n{BASE}colour = 1\n{RESOURCE}", r"kbs\.colour: unknown key"),
        (f"[kbs]\n{BASE}{RESOURCE}polcy = 'x'\n", r"kbs\.resource\[0\]\.polcy: unknown key"),
        (f"[kbs]\n{BASE}", "lists no resource"),
        (f"[kbs]\naudit_log = 'a'\n{RESOURCE}", r"kbs\.store: missing"),
        (f"[kbs]\n{BASE}nonce_ttl_s = 0\n{RESOURCE}", "nonce_ttl_s: expected a positive"),
        (f"[kbs]\n{BASE}nonce_ttl_s = 'x'\n{RESOURCE}", r"kbs\.nonce_ttl_s: expected a number"),
        (f"[kbs]\n{BASE}listen = 'nowhere'\n{RESOURCE}", "expected 'host:port'"),
        (f"[kbs]\n{BASE}admins = ['missing.pem']\n{RESOURCE}", r"kbs\.admins\[0\]: 'missing"),
        (f"[kbs]\n{BASE}admins = 'x'\n{RESOURCE}", r"kbs\.admins: expected a list"),
        (f"[kbs]\n{BASE}{RESOURCE}{RESOURCE}", "'a/b/c' is listed twice"),
        (f"[kbs]\n{BASE}[[kbs.resource]]\nname = 'a/b'\npolicy = 'p'\n", r"resource\[0\]\.name"),
        (f"[kbs]\n{BASE}[[kbs.resource]]\nname = 'a/b/c'\n", r"resource\[0\]\.policy: missing"),
        (f"[kbs]\n{BASE}{RESOURCE}generate = 'yes'\n", r"\.generate: expected true or false"),
        (f"[kbs]\n{BASE}{RESOURCE}size = 0\n", r"resource\[0\]: resource 'a/b/c' size"),
        (f"[kbs]\n{BASE}{RESOURCE}size = 1.5\n", r"\.size: expected an integer"),
        (f"[kbs]\n{BASE}resource = 3\n", r"kbs\.resource: expected an array of tables"),
        ("[other]\nx = 1\n", r"no kbs table"),
        ("[kbs\n", "not valid TOML"),
    ],
)
def test_a_bad_table_is_refused_naming_file_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as refused:
        load_kbs_settings(path)
    assert str(path) in str(refused.value)


def test_an_admin_file_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "admin.pem").write_text("not a certificate")
    path = write(tmp_path, f"[kbs]\n{BASE}admins = ['admin.pem']\n{RESOURCE}")
    with pytest.raises(ConfigError, match=r"kbs\.admins\[0\]: admin certificate .* not a PEM"):
        load_kbs_settings(path)


@pytest.mark.parametrize(
    "name", ["hfl/seal-key/checkpoints", "a/b/c", "repo.x/type_y/tag-1.2", "A1/B2/C3"]
)
def test_good_resource_names(name: str) -> None:
    assert check_resource_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["a/b", "a/b/c/d", "a//c", "../b/c", "a/./c", "a/b/.c", "a/b/c d", "/a/b", "a/b/", "", 3],
)
def test_bad_resource_names(name: object) -> None:
    with pytest.raises(ConfigError, match="repo/type/tag"):
        check_resource_name(name)


def test_settings_made_in_code_are_checked_too(tmp_path: Path) -> None:
    resource = ResourceSettings("a/b/c")
    with pytest.raises(ConfigError, match="admin fingerprint"):
        KbsSettings(tmp_path, tmp_path / "a", (resource,), admins=frozenset({"XY"}))
    with pytest.raises(ConfigError, match="listed twice"):
        KbsSettings(tmp_path, tmp_path / "a", (resource, resource))

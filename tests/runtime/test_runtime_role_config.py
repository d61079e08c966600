"""Role configs: strict parsing, paths relative to the file, and only addresses from the host."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sealfl.errors import ConfigError
from sealfl.runtime import (
    LISTEN_ENV,
    PEERS_ENV,
    SealingSource,
    SgxSealingKey,
    TeeKind,
    load_role_config,
)

FULL = """
workload = "homo-lr"
role = "worker"

[tee]
kind = "gramine-sgx"
sgx_sealing_key = "mrsigner"

[attestation]
policy = "policy-worker.toml"
collateral = "collateral"

[sealing]
source = "file"
key_file = "dev.key"

[listen]
address = "0.0.0.0:50071"

[peers]
ps = "10.0.0.2:50070"
kbs = "10.0.0.3:50080"

[options]
train_set = "data/train.csv"
id = 1
"""


def _write(tmp_path: Path, text: str, name: str = "role.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_full_config_resolves_paths_against_its_own_directory(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    config = load_role_config(path, environ={})
    assert (config.workload, config.role) == ("homo-lr", "worker")
    assert config.tee is not None and config.tee.kind is TeeKind.GRAMINE_SGX
    assert config.tee.sgx_sealing_key is SgxSealingKey.MRSIGNER
    assert config.policy == tmp_path / "policy-worker.toml"
    assert config.collateral == str(tmp_path / "collateral")
    assert config.sealing_table["source"] == SealingSource.FILE.value
    assert config.listen == "0.0.0.0:50071"
    assert config.peer("ps") == "10.0.0.2:50070"
    assert config.options.path("train_set") == tmp_path / "data" / "train.csv"
    assert config.sha384 == hashlib.sha384(path.read_bytes()).digest()


def test_the_host_may_move_addresses_and_nothing_else(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    environ = {LISTEN_ENV: "127.0.0.1:0", PEERS_ENV: "ps=127.0.0.1:6000, kbs=[::1]:6001"}
    config = load_role_config(path, environ=environ)
    assert config.listen == "127.0.0.1:0"
    assert dict(config.peers) == {"ps": "127.0.0.1:6000", "kbs": "[::1]:6001"}
    assert config.policy == tmp_path / "policy-worker.toml"  # untouched by the environment


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({PEERS_ENV: "evil=1.2.3.4:5"}, "peer 'evil' is not declared"),
        ({PEERS_ENV: "ps"}, "expected name=host:port"),
        ({PEERS_ENV: "ps=host:99999"}, "port must be 0..65535, got 99999"),
        ({LISTEN_ENV: "nowhere"}, "SEALFL_LISTEN: address: expected 'host:port'"),
        ({LISTEN_ENV: "0.0.0.0:70000"}, "SEALFL_LISTEN: port must be 0..65535"),
    ],
)
def test_bad_addresses_from_the_host_are_refused(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_role_config(_write(tmp_path, FULL), environ=environ)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("workload", "workloads"), r"unknown top-level key\(s\) \['workloads'\]"),
        (('kind = "gramine-sgx"', 'kind = "sgx"'), "tee.kind: expected one of simulated"),
        (('sgx_sealing_key = "mrsigner"', 'sgx_sealing_key = "both"'), "expected one of mrenclave"),
        (('policy = "policy-worker.toml"', "policy = 3"), "attestation.policy: expected a string"),
        (("[listen]", "[listen]\nport = 1"), r"listen.port: unknown key"),
        (('source = "file"', 'source = "usb"'), "sealing.source: expected one of tee, broker"),
        (('ps = "10.0.0.2:50070"', "ps = 50070"), "peers.ps: expected 'host:port'"),
        (('role = "worker"\n', ""), "role: missing"),
    ],
)
def test_every_mistake_names_the_file_and_the_key(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    path = _write(tmp_path, FULL.replace(*edit, 1))
    with pytest.raises(ConfigError, match=message) as caught:
        load_role_config(path, environ={})
    assert str(path) in str(caught.value)


def test_options_refuse_keys_the_workload_did_not_read(tmp_path: Path) -> None:
    config = load_role_config(
        _write(tmp_path, FULL.replace("id = 1", "id = 1\nidd = 2")), environ={}
    )
    config.options.path("train_set")
    config.options.integer("id")
    with pytest.raises(ConfigError, match=r"options.idd: unknown key"):
        config.options.finish()


def test_a_broker_sealing_source_needs_its_resource_and_a_way_to_trust_the_broker(
    tmp_path: Path,
) -> None:
    text = FULL.replace('source = "file"\nkey_file = "dev.key"', 'source = "broker"')
    with pytest.raises(ConfigError, match=r"sealing\.resource: missing"):
        load_role_config(_write(tmp_path, text), environ={}).sealing_plan()
    text = text.replace('source = "broker"', 'source = "broker"\nresource = "homo-lr/seal-key/m"')
    plan = load_role_config(_write(tmp_path, text), environ={}).sealing_plan()
    assert (plan.source, plan.resource) == (SealingSource.BROKER, "homo-lr/seal-key/m")

    # Broker sealing without a [broker] to ask is refused when the runtime is built.
    config = load_role_config(_write(tmp_path, text.replace("gramine-sgx", "tdx")), environ={})
    with pytest.raises(ConfigError, match=r"needs a key broker \(\[broker\] peer\)"):
        config.runtime(simulated_measurement=bytes)

    with_broker = text + '\n[broker]\npeer = "kbs"\n'
    config = load_role_config(_write(tmp_path, with_broker), environ={})
    with pytest.raises(ConfigError, match=r"exactly one of broker\.policy and broker\.fingerprint"):
        config.broker()
    pinned = with_broker + 'fingerprint = "' + "ab" * 32 + '"\n'
    broker = load_role_config(_write(tmp_path, pinned), environ={}).broker()
    assert broker is not None and broker.address == "10.0.0.3:50080"
    undeclared = pinned.replace('peer = "kbs"', 'peer = "vault"')
    with pytest.raises(ConfigError, match=r"\[peers\] has no 'vault'"):
        load_role_config(_write(tmp_path, undeclared), environ={}).broker()


def test_a_kbs_table_belongs_to_a_broker_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kbs: a \[kbs\] table belongs in a key broker"):
        load_role_config(_write(tmp_path, FULL + "\n[kbs]\nstore = 's'\n"), environ={})
    broker = FULL.replace('workload = "homo-lr"', 'workload = "kbs"') + "\n[kbs]\nstore = 's'\n"
    assert load_role_config(_write(tmp_path, broker), environ={}).kbs_table == {"store": "s"}


def test_unreadable_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read role config"):
        load_role_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_role_config(_write(tmp_path, "workload = "), environ={})
    with pytest.raises(ConfigError, match="larger than"):
        load_role_config(_write(tmp_path, "#" * (2 << 20)), environ={})


def test_role_configs_keep_refusal_reasons_from_unauthenticated_peers_unless_asked(
    tmp_path: Path,
) -> None:
    quiet = load_role_config(_write(tmp_path, FULL), environ={})
    assert quiet.disclose_refusals is False
    loud = FULL.replace(
        'collateral = "collateral"', 'collateral = "collateral"\ndisclose_refusals = true'
    )
    assert load_role_config(_write(tmp_path, loud), environ={}).disclose_refusals is True

"""The sealed resource store: it survives a reopen, and refuses every kind of tampering at open."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kbs_world import RESOURCE_A, RESOURCE_B, World, admin, client

from sealfl.errors import ConfigError, SealError
from sealfl.kbs import ResourceStore, RunningKbs
from sealfl.seal import TEMP_SUFFIX, SealingKey

A, B = "hfl/seal-key/checkpoints", "vfl/token/leader"


@pytest.fixture
def key() -> SealingKey:
    return SealingKey.generate()


def value_files(directory: Path) -> list[Path]:
    return sorted((directory / "values").glob("*.sealed"))


def test_values_and_revocations_survive_a_reopen(tmp_path: Path, key: SealingKey) -> None:
    store = ResourceStore.open(tmp_path, key)
    assert store.put(A, b"a" * 32, now=1.0) == 1
    assert store.put(B, b"first", now=2.0) == 1
    assert store.put(B, b"second", now=3.0) == 2
    assert store.revoke(A, now=4.0) is True

    reopened = ResourceStore.open(tmp_path, key)
    assert reopened.get(B) == (b"second", 2)
    assert reopened.get(A) is None
    state = reopened.state(A)
    assert state is not None and state.revoked and state.generation == 1
    assert reopened.names() == [A, B]
    # The revoked value and the superseded generation are gone from disk.
    assert len(value_files(tmp_path)) == 1


def test_a_put_reinstates_a_revoked_resource(tmp_path: Path, key: SealingKey) -> None:
    store = ResourceStore.open(tmp_path, key)
    store.revoke(A, now=1.0)
    assert store.revoke(A, now=2.0) is False
    assert store.put(A, b"new", now=3.0) == 1
    assert ResourceStore.open(tmp_path, key).get(A) == (b"new", 1)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture
def filled(tmp_path: Path, key: SealingKey) -> Path:
    store = ResourceStore.open(tmp_path, key)
    store.put(A, b"a" * 32, now=1.0)
    store.put(B, b"token", now=1.0)
    return tmp_path


def _tamper_index(directory: Path) -> None:
    _flip_last_byte(directory / "index.sealed")


def _tamper_value(directory: Path) -> None:
    _flip_last_byte(value_files(directory)[0])


def _truncate_value(directory: Path) -> None:
    path = value_files(directory)[0]
    path.write_bytes(path.read_bytes()[:-20])


def _delete_value(directory: Path) -> None:
    value_files(directory)[0].unlink()


def _swap_values(directory: Path) -> None:
    first, second = value_files(directory)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


def _delete_index(directory: Path) -> None:
    (directory / "index.sealed").unlink()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_tamper_index, "the index cannot be opened"),
        (_tamper_value, "resource '"),
        (_truncate_value, "resource '"),
        (_delete_value, "does not exist"),
        (_swap_values, "label"),
        (_delete_index, "but no index.sealed"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_a_tampered_store_is_refused_at_open(
    filled: Path, key: SealingKey, tamper: Callable[[Path], None], message: str
) -> None:
    tamper(filled)
    with pytest.raises(SealError, match=message) as refused:
        ResourceStore.open(filled, key)
    assert str(filled) in str(refused.value)


def test_an_older_generation_put_back_is_refused(tmp_path: Path, key: SealingKey) -> None:
    store = ResourceStore.open(tmp_path, key)
    store.put(B, b"old token", now=1.0)
    (old,) = value_files(tmp_path)
    saved = old.read_bytes()
    store.put(B, b"new token", now=2.0)
    (new,) = value_files(tmp_path)
    new.write_bytes(saved)  # roll this one value back to generation 1
    with pytest.raises(SealError, match="label"):
        ResourceStore.open(tmp_path, key)


def test_another_key_cannot_open_the_store(filled: Path) -> None:
    with pytest.raises(SealError, match="another key"):
        ResourceStore.open(filled, SealingKey.generate())


def test_leftovers_of_an_interrupted_write_are_ignored(
    filled: Path, key: SealingKey, caplog: pytest.LogCaptureFixture
) -> None:
    stray = filled / "values" / f".x.sealed.abc{TEMP_SUFFIX}"
    stray.write_bytes(os.urandom(100))
    (filled / "values" / "0000-g9.sealed").write_bytes(os.urandom(100))
    store = ResourceStore.open(filled, key)
    assert store.get(B) == (b"token", 1)
    assert "does not reference" in caplog.text


def test_a_failed_index_write_keeps_the_previous_state(filled: Path, key: SealingKey) -> None:
    store = ResourceStore.open(filled, key)
    index = filled / "index.sealed"
    saved = index.read_bytes()
    index.unlink()
    index.mkdir()  # the new index cannot be renamed over a directory (even by root)
    try:
        with pytest.raises(ConfigError, match="cannot write"):
            store.put(B, b"never stored", now=9.0)
        with pytest.raises(ConfigError, match="cannot write"):
            store.revoke(B, now=9.0)
    finally:
        index.rmdir()
        index.write_bytes(saved)
    assert store.get(B) == (b"token", 1)
    assert len(value_files(filled)) == 2  # the new generation's file was removed again
    assert ResourceStore.open(filled, key).get(B) == (b"token", 1)


def test_a_broker_refuses_to_start_on_a_tampered_store(
    world: World, start_broker: Callable[..., RunningKbs]
) -> None:
    start_broker().stop()
    store = world.directory / "store"
    _tamper_index(store)
    with pytest.raises(SealError, match="kbs store"):
        start_broker()


def test_a_restarted_broker_keeps_its_resources_and_revocations(
    world: World, start_broker: Callable[..., RunningKbs]
) -> None:
    first = start_broker()
    generated = client(world, first, "requester-a").fetch(RESOURCE_A)
    admin(world, first).put(RESOURCE_B, b"token")
    admin(world, first).revoke(RESOURCE_B)
    first.stop()

    second = start_broker()  # new certificate, same store and key
    assert client(world, second, "requester-a").fetch(RESOURCE_A) == generated
    with pytest.raises(Exception, match="revoked"):
        client(world, second, "requester-b").fetch(RESOURCE_B)
    generates = [x for x in world.audit_lines() if x["action"] == "generate"]
    assert len(generates) == 2  # A and R on the first start only

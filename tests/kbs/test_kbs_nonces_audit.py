"""Challenge nonces (single use, lifetime, bounds) and the audit log's format."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from kbs_world import Clock

from sealfl.errors import ConfigError
from sealfl.kbs import AuditLog, AuditRecord, NonceBook, read_audit_log
from sealfl.kbs.nonces import NonceRefusedError


def test_a_nonce_is_used_once() -> None:
    clock = Clock()
    book = NonceBook(ttl_s=30, clock=clock)
    nonce, expires_at = book.issue()
    assert len(nonce) == 32 and expires_at == clock.now + 30
    book.consume(nonce)
    with pytest.raises(NonceRefusedError, match="already used"):
        book.consume(nonce)


def test_a_stale_nonce_is_refused_and_used_up() -> None:
    clock = Clock()
    book = NonceBook(ttl_s=30, clock=clock)
    nonce, _ = book.issue()
    clock.now += 30
    with pytest.raises(NonceRefusedError, match=r"stale: issued 30\.0 s ago"):
        book.consume(nonce)
    with pytest.raises(NonceRefusedError, match="already used"):
        book.consume(nonce)


def test_unknown_and_malformed_nonces_are_refused() -> None:
    book = NonceBook(ttl_s=30, clock=Clock())
    with pytest.raises(NonceRefusedError, match="not issued by this broker"):
        book.consume(os.urandom(32))
    with pytest.raises(NonceRefusedError, match="expected 32 bytes"):
        book.consume(b"short")


def test_the_book_is_bounded_and_forgets_lapsed_nonces_first() -> None:
    clock = Clock()
    book = NonceBook(ttl_s=10, clock=clock, max_pending=3, max_remembered=1)
    lapsed, _ = book.issue()
    clock.now += 25  # more than twice the lifetime: forgotten at the next issue
    fresh = [book.issue()[0] for _ in range(3)]
    assert book.pending() == 3
    with pytest.raises(NonceRefusedError, match="not issued"):
        book.consume(lapsed)
    newest = book.issue()[0]  # over the bound: the oldest pending one goes
    with pytest.raises(NonceRefusedError, match="not issued"):
        book.consume(fresh[0])
    book.consume(fresh[1])
    book.consume(newest)
    # Only one used nonce is remembered; an older replay is still refused, as unknown.
    with pytest.raises(NonceRefusedError, match="not issued"):
        book.consume(fresh[1])


def test_concurrent_consumers_get_a_nonce_once() -> None:
    book = NonceBook(ttl_s=30, clock=Clock())
    nonce, _ = book.issue()
    wins: list[bool] = []

    def race() -> None:
        try:
            book.consume(nonce)
            wins.append(True)
        except NonceRefusedError:
            wins.append(False)

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 15 + [True]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ConfigError, match="ttl_s > 0"):
        NonceBook(ttl_s=0, clock=Clock())


def test_audit_lines_have_every_field_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    record = AuditRecord(
        unix=1_700_000_000.25,
        action="get",
        resource="a/b/c",
        decision="deny",
        reason='nonce stale: "quoted"\nand a newline',
        role="requester",
        peer="ipv4:127.0.0.1:5000",
        fingerprint="ab" * 32,
        measurements={"measurement": "cd" * 32},
    )
    log.record(record)
    log.close()
    AuditLog(path).record(AuditRecord(unix=1.0, action="generate", resource="a/b/c",
                                      decision="allow", reason="made"))  # fmt: skip
    lines = path.read_text().splitlines()
    assert len(lines) == 2  # a newline in a reason cannot split or forge a line
    first = json.loads(lines[0])
    assert list(first) == [
        "time", "unix", "action", "resource", "decision", "reason", "role", "peer",
        "fingerprint", "measurements",
    ]  # fmt: skip
    assert first["time"] == "2023-11-14T22:13:20.250000+00:00"
    assert list(read_audit_log(path))[:1] == [record]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_closed_log_refuses_to_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")  # its directory is made
    assert (tmp_path / "logs" / "audit.jsonl").exists()
    log.close()
    with pytest.raises(ConfigError, match="closed"):
        log.record(AuditRecord(unix=1.0, action="get", resource=None, decision="deny", reason="x"))


def test_reading_a_damaged_log_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path).record(
        AuditRecord(unix=1.0, action="get", resource=None, decision="deny", reason="x")
    )
    with path.open("a") as out:
        out.write('{"unix": 1}\n')
    with pytest.raises(ConfigError, match=r"audit\.jsonl:2: audit record lacks"):
        list(read_audit_log(path))
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"audit\.jsonl:1: not a JSON line"):
        list(read_audit_log(path))


def test_a_record_with_an_unknown_action_or_decision_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="action"):
        AuditRecord(unix=1.0, action="steal", resource=None, decision="allow", reason="")
    with pytest.raises(ValueError, match="decision"):
        AuditRecord(unix=1.0, action="get", resource=None, decision="maybe", reason="")

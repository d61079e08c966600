"""The PSI session in one process: alignment, disclosure modes, replay and malformed frames.

Both parties run the real protocol on two threads; :class:`psi_parties.Tap` records what each
one sends and can turn it into a misbehaving peer by rewriting one frame.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from psi_parties import id_sets, run_both

from sealfl.errors import ChannelError, ConfigError, ProtocolError
from sealfl.psi import Mode, PsiSettings, compare_bytes, run_psi, transport_pair
from sealfl.psi import session as session_module
from sealfl.psi.masking import MaskingKey
from sealfl.psi.protos import psi_pb2

SMALL = PsiSettings(batch_size=64, timeout_s=10)
LOW_ORDER = {
    "zero": "00" * 32,
    "one": "01" + "00" * 31,
    "order-8 a": "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "order-8 b": "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "p - 1": "ec" + "ff" * 30 + "7f",
}


def settings(mode: Mode | str, **kw: object) -> PsiSettings:
    return PsiSettings(mode=Mode(mode), batch_size=64, timeout_s=10, **kw)  # type: ignore[arg-type]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> list[MaskingKey]:
    """Record each session's masking key (the real key; only its holder is changed)."""
    made: list[MaskingKey] = []

    class Recorded(MaskingKey):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(session_module, "MaskingKey", Recorded)
    return made


def frames(tap_sent: list[psi_pb2.PsiMessage], kind: str) -> list[psi_pb2.Points]:
    return [getattr(m, kind) for m in tap_sent if m.WhichOneof("body") == kind]


# -- alignment -------------------------------------------------------------------------------


def test_both_parties_derive_the_same_aligned_order() -> None:
    leader_ids, follower_ids = id_sets(300, 120)
    leader, follower = run_both(leader_ids, follower_ids, settings=SMALL).results()
    shared = leader.intersection(leader_ids)
    assert shared == follower.intersection(follower_ids)
    assert set(shared) == set(leader_ids) & set(follower_ids)
    assert leader.count == follower.count == 120
    assert (leader.own_size, leader.peer_size) == (300, 300)
    assert leader.transcript == follower.transcript and len(leader.transcript) == 32
    assert leader.order is not None and follower.order is not None
    assert [leader_ids[i] for i in leader.order.rows()] == [
        follower_ids[i] for i in follower.order.rows()
    ]


def test_each_session_is_fresh_keys_order_and_transcript() -> None:
    leader_ids, follower_ids = id_sets(200, 100)
    one, _ = run_both(leader_ids, follower_ids, settings=SMALL).results()
    two, _ = run_both(leader_ids, follower_ids, settings=SMALL).results()
    assert one.transcript != two.transcript
    assert one.intersection(leader_ids) != two.intersection(leader_ids)  # a fresh shuffle
    assert sorted(one.intersection(leader_ids)) == sorted(two.intersection(leader_ids))


def test_uneven_sets_bytes_and_an_empty_side() -> None:
    leader_ids = [b"\x00\xff" + bytes([i]) for i in range(50)]
    follower_ids = [bytes(b) for b in leader_ids[10:20]] + [b"other-%d" % i for i in range(7)]
    leader, follower = run_both(leader_ids, follower_ids, settings=SMALL).results()
    assert sorted(leader.intersection(leader_ids)) == sorted(leader_ids[10:20])
    assert leader.intersection(leader_ids) == follower.intersection(follower_ids)
    leader, follower = run_both(leader_ids, [], settings=SMALL).results()
    assert leader.count == follower.count == 0 and leader.peer_size == 0


# -- disclosure modes ------------------------------------------------------------------------


def test_mode_both_returns_in_order_both_ways() -> None:
    leader_ids, follower_ids = id_sets(150, 50)
    out = run_both(leader_ids, follower_ids, settings=settings("both"))
    _, follower = out.results()
    assert len(frames(out.leader_tap.sent, "remasked")) == len(
        frames(out.follower_tap.sent, "masked")
    )
    assert len(follower.intersection(follower_ids)) == 50


def test_mode_leader_only_gives_the_follower_sizes_only() -> None:
    leader_ids, follower_ids = id_sets(150, 50)
    out = run_both(leader_ids, follower_ids, settings=settings("leader-only"))
    leader, follower = out.results()
    assert len(leader.intersection(leader_ids)) == 50
    assert follower.count is None and follower.order is None
    assert (follower.own_size, follower.peer_size) == (150, 150)
    with pytest.raises(ProtocolError, match="the follower learns no intersection"):
        follower.intersection(follower_ids)
    # On the wire: the leader returns nothing, and its finish carries no count.
    assert frames(out.leader_tap.sent, "remasked") == []
    finish = frames(out.leader_tap.sent, "finish")
    assert len(finish) == 1 and not finish[0].HasField("count")


def test_mode_cardinality_gives_counts_only() -> None:
    leader_ids, follower_ids = id_sets(150, 50)
    leader, follower = run_both(
        leader_ids, follower_ids, settings=settings("cardinality")
    ).results()
    assert leader.count == follower.count == 50
    assert leader.order is None and follower.order is None
    for result, ids in ((leader, leader_ids), (follower, follower_ids)):
        with pytest.raises(ProtocolError, match="learns no intersection"):
            result.intersection(ids)


@pytest.mark.parametrize(("mode", "shuffled"), [("both", False), ("cardinality", True)])
def test_returned_values_are_in_order_only_where_the_mode_allows(
    keys: list[MaskingKey], mode: str, shuffled: bool
) -> None:
    """Recompute what the follower must return from the leader's points and its key."""
    leader_ids, follower_ids = id_sets(200, 80)
    out = run_both(leader_ids, follower_ids, settings=settings(mode))
    out.results()
    t = compare_bytes(64, 200, 200)
    sent = b"".join(p.points for p in frames(out.leader_tap.sent, "masked"))
    returned_bytes = b"".join(p.points for p in frames(out.follower_tap.sent, "remasked"))
    returned = [returned_bytes[i : i + t] for i in range(0, len(returned_bytes), t)]
    first = X25519PublicKey.from_public_bytes(sent[:32])
    follower_key = next(k._key for k in keys if k._key.exchange(first)[:t] in set(returned))
    expected = [
        follower_key.exchange(X25519PublicKey.from_public_bytes(sent[i : i + 32]))[:t]
        for i in range(0, len(sent), 32)
    ]
    assert sorted(returned) == sorted(expected)
    assert (returned != expected) is shuffled


def test_mode_enclave_only_keeps_ids_inside() -> None:
    leader_ids, follower_ids = id_sets(150, 50)
    leader, follower = run_both(
        leader_ids, follower_ids, settings=settings("enclave-only"), attested=True
    ).results()
    for result, ids in ((leader, leader_ids), (follower, follower_ids)):
        assert result.count == 50 and result.order is not None
        with pytest.raises(ProtocolError, match="enclave-only"):
            result.intersection(ids)
        shown = f"{result.summary()} {result.order!r} {result.order}"
        assert "user-" not in shown and not re.search(r"\d+, \d+", shown)
        assert "50 rows" in repr(result.order)
    # The trainer's handle still aligns.
    assert leader.order is not None and follower.order is not None
    assert [leader_ids[i] for i in leader.order.rows()] == [
        follower_ids[i] for i in follower.order.rows()
    ]


def test_mode_enclave_only_refuses_an_unattested_transport() -> None:
    end, _ = transport_pair(attested=False)
    with pytest.raises(ConfigError, match="enclave-only: needs an attested peer"):
        run_psi(["a"], role="leader", transport=end, settings=settings("enclave-only"))


# -- refusals --------------------------------------------------------------------------------


def test_a_frame_from_another_session_is_refused() -> None:
    leader_ids, follower_ids = id_sets(100, 40)
    earlier = run_both(leader_ids, follower_ids, settings=SMALL)
    earlier.results()
    recorded = next(m for m in earlier.follower_tap.sent if m.WhichOneof("body") == "masked")

    def replay(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "masked" and message.masked.seq == 0:
            return recorded
        return None

    out = run_both(leader_ids, follower_ids, settings=SMALL, follower_rewrite=replay)
    assert isinstance(out.leader, ProtocolError)
    assert "masked.session: this frame belongs to another session" in str(out.leader)
    assert isinstance(out.follower, ChannelError)


def test_a_replayed_frame_within_the_session_is_refused() -> None:
    leader_ids, follower_ids = id_sets(200, 40)

    def repeat(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "masked" and message.masked.seq == 1:
            message.masked.seq = 0
            return message
        return None

    out = run_both(leader_ids, follower_ids, settings=SMALL, follower_rewrite=repeat)
    assert isinstance(out.leader, ProtocolError)
    assert "masked.seq: expected 1, got 0" in str(out.leader)


def _corrupt_masked(points: bytes, *, entry: int, value: bytes) -> bytes:
    return points[: 32 * entry] + value + points[32 * entry + 32 :]


@pytest.mark.parametrize("name", sorted(LOW_ORDER))
def test_a_low_order_point_is_refused_naming_the_field(name: str) -> None:
    def poison(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "masked" and message.masked.seq == 0:
            message.masked.points = _corrupt_masked(
                message.masked.points, entry=3, value=bytes.fromhex(LOW_ORDER[name])
            )
            return message
        return None

    out = run_both(*id_sets(100, 10), settings=SMALL, follower_rewrite=poison)
    assert isinstance(out.leader, ProtocolError)
    assert "masked[0].points: entry 3 is a point of small order" in str(out.leader)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p[:-1], "masked[0].points: expected a multiple of 32 bytes"),
        (lambda p: b"", "masked[0].points: expected 1.."),
        (
            lambda p: _corrupt_masked(p, entry=2, value=b"\x09" + b"\x00" * 30 + b"\x80"),
            "masked[0].points: entry 2 has the top bit set",
        ),
        (
            lambda p: _corrupt_masked(p, entry=5, value=bytes.fromhex("ed" + "ff" * 30 + "7f")),
            "masked[0].points: entry 5 encodes u ≥ 2^255 − 19",
        ),
    ],
    ids=["short", "empty", "top-bit", "u-is-p"],
)
def test_malformed_points_are_refused_naming_the_field(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    def corrupt(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "masked" and message.masked.seq == 0:
            message.masked.points = change(message.masked.points)
            return message
        return None

    out = run_both(*id_sets(100, 10), settings=SMALL, follower_rewrite=corrupt)
    assert isinstance(out.leader, ProtocolError)
    assert expected in str(out.leader)


def test_more_points_than_declared_are_refused() -> None:
    def grow(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "masked" and message.masked.seq == 1:
            message.masked.points = message.masked.points * 2
            return message
        return None

    out = run_both(*id_sets(100, 10), settings=SMALL, follower_rewrite=grow)
    assert isinstance(out.leader, ProtocolError)
    assert "(the follower declared 100), got 72" in str(out.leader)


def test_malformed_returns_are_refused() -> None:
    t = compare_bytes(64, 100, 100)

    def cut(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "remasked" and message.remasked.seq == 0:
            message.remasked.points = message.remasked.points[:-1]
            return message
        return None

    out = run_both(*id_sets(100, 10), settings=SMALL, follower_rewrite=cut)
    assert isinstance(out.leader, ProtocolError)
    assert f"remasked[0].points: expected a multiple of {t} bytes" in str(out.leader)


def test_a_frame_that_is_not_a_psi_message_is_refused() -> None:
    def garble(message: psi_pb2.PsiMessage) -> bytes | None:
        return b"\xff\xff\xff" if message.WhichOneof("body") == "masked" else None

    out = run_both(*id_sets(50, 10), settings=SMALL, follower_rewrite=garble)
    assert isinstance(out.leader, ProtocolError)
    assert "not a PSI message" in str(out.leader)


def test_a_different_transcript_at_the_finish_is_refused() -> None:
    def lie(message: psi_pb2.PsiMessage) -> psi_pb2.PsiMessage | None:
        if message.WhichOneof("body") == "finish":
            message.finish.transcript = bytes(32)
            return message
        return None

    out = run_both(*id_sets(50, 10), settings=SMALL, follower_rewrite=lie)
    assert isinstance(out.leader, ProtocolError)
    assert "finish.transcript: the follower saw a different session" in str(out.leader)


@pytest.mark.parametrize(
    ("follower_settings", "contexts", "expected"),
    [
        (settings("cardinality"), (b"", b""), "hello.mode: this leader's policy says both"),
        (settings("both", statistical_bits=80), (b"", b""), "hello.statistical_bits"),
        (SMALL, (b"channel-1", b"channel-2"), "hello.context_digest: the two parties"),
    ],
    ids=["mode", "bound", "context"],
)
def test_hello_disagreements_are_refused(
    follower_settings: PsiSettings, contexts: tuple[bytes, bytes], expected: str
) -> None:
    out = run_both(
        *id_sets(20, 5),
        settings=SMALL,
        follower_settings=follower_settings,
        leader_context=contexts[0],
        follower_context=contexts[1],
    )
    assert isinstance(out.leader, ProtocolError) and expected in str(out.leader)
    assert isinstance(out.follower, ProtocolError | ChannelError)


def test_two_leaders_are_refused() -> None:
    a, b = transport_pair()
    import threading

    errors: list[BaseException] = []

    def other() -> None:
        try:
            run_psi(["x"], role="leader", transport=b, settings=SMALL)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    with pytest.raises(
        ProtocolError, match=r"hello\.role: this party is the leader, so expected follower"
    ):
        run_psi(["y"], role="leader", transport=a, settings=SMALL)
    thread.join(10)
    assert errors


def test_repeated_ids_are_refused_before_any_frame() -> None:
    end, _peer = transport_pair()
    ids = [f"id-{i}" for i in range(10)] + ["id-3"]
    with pytest.raises(ConfigError, match="ids: rows 3 and 10 hold the same id"):
        run_psi(ids, role="leader", transport=end, settings=SMALL)


def test_a_silent_peer_ends_at_the_deadline() -> None:
    end, _peer = transport_pair()
    with pytest.raises(ChannelError, match="nothing from the follower"):
        run_psi(["a", "b"], role="leader", transport=end, settings=PsiSettings(timeout_s=0.3))


def test_compare_bytes_keeps_false_matches_below_the_bound() -> None:
    assert compare_bytes(64, 10**6, 10**6) == 13  # 104 bits ≥ 64 + log2(10^12)
    for n in (1, 100, 10**4, 10**6, 10**9):
        t = compare_bytes(64, n, n)
        assert 8 * t >= 64 + np.log2(float(n) * n)
        assert 8 * (t - 1) < 64 + np.log2(float(n) * n) or t == 8
    assert compare_bytes(128, 2**32, 2**32) == 24

"""RFC 9380 hashing to curve25519, checked against the RFC's own vectors (appendices J.4.1, K.3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gmpy2
import pytest

from sealfl.errors import ConfigError
from sealfl.psi import CurveHasher, expand_message_xmd, hash_to_curve, hash_to_field
from sealfl.psi.curve25519 import A, P, hash_point_u, map_to_curve_elligator2

VECTORS = json.loads((Path(__file__).parent / "rfc9380_curve25519.json").read_text())
DST = VECTORS["dst"].encode()
RO = VECTORS["vectors"]
XMD = VECTORS["expand_message_xmd_sha512"]


def _point(pair: list[str]) -> tuple[int, int]:
    return int(pair[0], 16), int(pair[1], 16)


def _on_curve(x: int, y: int) -> bool:
    return (y * y - (x * x * x + A * x * x + x)) % P == 0


@pytest.mark.parametrize(
    "vector", XMD["vectors"], ids=lambda v: f"{v['msg'][:8]!r}-{v['len_in_bytes']}"
)
def test_expand_message_xmd_sha512_matches_rfc_k3(vector: dict) -> None:
    out = expand_message_xmd(vector["msg"].encode(), XMD["dst"].encode(), vector["len_in_bytes"])
    assert out.hex() == vector["uniform_bytes"]


@pytest.mark.parametrize("vector", RO, ids=lambda v: repr(v["msg"][:8]))
def test_hash_to_curve_matches_rfc_j41(vector: dict) -> None:
    msg = vector["msg"].encode()
    assert hash_to_field(msg, DST) == [int(u, 16) for u in vector["u"]]
    for u, q in zip(vector["u"], ("Q0", "Q1"), strict=True):
        assert map_to_curve_elligator2(int(u, 16)) == _point(vector[q])
    assert hash_to_curve(msg, DST) == _point(vector["P"])


@pytest.mark.parametrize("vector", RO, ids=lambda v: repr(v["msg"][:8]))
def test_batch_hasher_gives_the_rfc_u_coordinate(vector: dict) -> None:
    row = CurveHasher(DST).hash_u([vector["msg"].encode()])[0]
    assert int.from_bytes(bytes(row), "little") == _point(vector["P"])[0]


def test_batch_hasher_equals_the_reference_on_random_messages() -> None:
    dst = b"sealfl-test-" + os.urandom(8).hex().encode()
    messages = [os.urandom(i % 40) for i in range(60)]
    rows = CurveHasher(dst).hash_u(messages)
    for message, row in zip(messages, rows, strict=True):
        x, y = hash_to_curve(message, dst)  # type: ignore[misc]
        assert int.from_bytes(bytes(row), "little") == x
        assert _on_curve(x, y)


def test_every_mapped_point_is_on_the_curve_never_the_twist() -> None:
    # Both Elligator branches (g(x1) square or not) occur among 200 random inputs.
    branches = set()
    for _ in range(200):
        u = int.from_bytes(os.urandom(32), "little") % P
        x, y = map_to_curve_elligator2(u)
        assert _on_curve(x, y)
        branches.add(x == (-A * gmpy2.invert(1 + 2 * u * u, P)) % P)
    assert branches == {True, False}


def test_hash_point_u_handles_equal_inputs_through_the_reference_path() -> None:
    # u0 = u1 maps twice to the same point: the chord formula cannot add it, doubling can.
    u = hash_to_field(b"same", DST)[0]
    x, y = map_to_curve_elligator2(u)
    from sealfl.psi.curve25519 import add_affine, clear_cofactor_affine

    expected = clear_cofactor_affine(add_affine((x, y), (x, y)))
    assert expected is not None
    assert hash_point_u(u, u) == expected[0]
    # u0 = -u1 maps to the same point too (Elligator 2 depends on u² only).
    assert hash_point_u(u, P - u) == expected[0]


def test_domain_separation_changes_every_output() -> None:
    one, two = CurveHasher(b"session-1"), CurveHasher(b"session-2")
    messages = [b"user-%d" % i for i in range(20)]
    assert not (set(map(bytes, one.hash_u(messages))) & set(map(bytes, two.hash_u(messages))))


@pytest.mark.parametrize("dst", [b"", b"x" * 256])
def test_bad_domain_tags_are_refused(dst: bytes) -> None:
    with pytest.raises(ConfigError, match="dst"):
        CurveHasher(dst)

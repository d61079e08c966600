"""RFC 9380 hashing to curve25519, checked against the RFC's own vectors (appendices J.4.1, K.3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gmpy2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sealfl.errors import ConfigError
from sealfl.psi import CurveHasher, expand_message_xmd, hash_to_curve, hash_to_field
from sealfl.psi.curve25519 import (
    A,
    P,
    add_affine,
    batch_invert,
    clear_cofactor_affine,
    clear_cofactor_u,
    hash_point_u,
    map_to_curve_elligator2,
    sum_points_u,
)
from sealfl.psi.masking import MaskingKey

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
    doubled = add_affine((x, y), (x, y))
    expected = clear_cofactor_affine(doubled)
    assert doubled is not None and expected is not None
    assert hash_point_u(u, u) == expected[0]
    # u0 = -u1 maps to the same point too (Elligator 2 depends on u² only).
    assert hash_point_u(u, P - u) == expected[0]
    assert sum_points_u([gmpy2.mpz(u), gmpy2.mpz(P - u)]) == [doubled[0]]


def test_batch_sum_equals_the_reference_addition_on_random_field_elements() -> None:
    us = []
    for i in range(40):  # u1 = 0..39 included: both branches of the map occur, and u = 0
        us += [gmpy2.mpz(int.from_bytes(os.urandom(32), "little")) % P, gmpy2.mpz(i)]
    for i, got in enumerate(sum_points_u(us)):
        total = add_affine(
            map_to_curve_elligator2(us[2 * i]), map_to_curve_elligator2(us[2 * i + 1])
        )
        assert total is not None and got == total[0]


def test_batch_inversion_and_cofactor_clearing_match_the_plain_operations() -> None:
    values = [gmpy2.mpz(int.from_bytes(os.urandom(32), "little")) % P or 1 for _ in range(30)]
    assert batch_invert(values) == [gmpy2.invert(v, P) for v in values]
    # u = 0 is the point of order 2 (and stands for infinity): [8] of either is infinity, u 0.
    assert clear_cofactor_u([gmpy2.mpz(0)]) == [0]


def _ladder(k: int, u: int) -> int:
    """X25519's Montgomery ladder without clamping (RFC 7748 §5), for any scalar ``k``."""
    x2, z2, x3, z3 = 1, 0, u, 1
    for bit in reversed(range(k.bit_length())):
        if (k >> bit) & 1:
            x2, z2, x3, z3 = x3, z3, x2, z2
        a, b, c, d = x2 + z2, x2 - z2, x3 + z3, x3 - z3
        da, cb, aa, bb = d * a % P, c * b % P, a * a % P, b * b % P
        x3, z3 = (da + cb) ** 2 % P, u * (da - cb) ** 2 % P
        e = aa - bb
        x2, z2 = aa * bb % P, e * (aa + (A - 2) // 4 * e) % P
        if (k >> bit) & 1:
            x2, z2, x3, z3 = x3, z3, x2, z2
    return int(x2 * gmpy2.invert(z2, P) % P) if z2 % P else 0


def test_masking_the_sum_is_masking_the_rfc_point_with_the_scalar_over_8() -> None:
    # What the PSI sends for an id, X25519(k, u(Q0 + Q1)), is u([k/8]·hash_to_curve(id)).
    key = MaskingKey()
    raw = bytearray(key._key.private_bytes_raw())
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    k = int.from_bytes(raw, "little")
    assert k % 8 == 0
    hasher = CurveHasher(b"sealfl-test-cofactor")
    messages = [b"user-1", b"user-2", b""]
    masked = key.mask(hasher.sum_u(messages), field="test")
    for i, message in enumerate(messages):
        point = hash_to_curve(message, hasher.dst)
        assert point is not None
        expected = _ladder(k // 8, point[0])
        assert int.from_bytes(masked[32 * i : 32 * i + 32], "little") == expected
        # and the public X25519 gives the same with the public loader
        assert masked[32 * i : 32 * i + 32] == _public_exchange(key._key, hasher.sum_u([message]))


def _public_exchange(key: X25519PrivateKey, u: bytes) -> bytes:
    return key.exchange(X25519PublicKey.from_public_bytes(u))


def test_domain_separation_changes_every_output() -> None:
    one, two = CurveHasher(b"session-1"), CurveHasher(b"session-2")
    messages = [b"user-%d" % i for i in range(20)]
    assert not (set(map(bytes, one.hash_u(messages))) & set(map(bytes, two.hash_u(messages))))


@pytest.mark.parametrize("dst", [b"", b"x" * 256])
def test_bad_domain_tags_are_refused(dst: bytes) -> None:
    with pytest.raises(ConfigError, match="dst"):
        CurveHasher(dst)

"""The membership-oracle attack on Fedlearner's RSA blind-signature PSI, and why it fails here.

Fedlearner (``data_join/rsa_psi``) has the follower blind each ``H(y)`` as ``H(y)·r^e mod n``
with a 256-bit ``r``; the leader signs, returning ``H(y)^d·r``. For any guessed id ``g`` the
signer computes ``s·(H(g)^d)^-1 mod n``, which is below 2^256 exactly when ``y = g``: it can
test any guess against the follower's whole set, intersection or not.

The same attacker against sealfl's PSI holds everything the leader holds: its own key, the
session's hash, every frame the follower sent. A guess can be hashed and masked with the
leader's key, but the follower's points are masked with the follower's fresh key, so a test
needs ``[b]H(g)``, which needs ``b``. The last test runs the attack with ``b`` handed over
(what a short or reused blinding would give away) and finds every planted id, so the attack
itself is sound and it is the key that stops it.
"""

from __future__ import annotations

import hashlib
import secrets

import gmpy2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from psi_parties import run_both

from sealfl.psi import CurveHasher, PsiSettings, compare_bytes
from sealfl.psi import session as session_module
from sealfl.psi.masking import MaskingKey
from sealfl.psi.protos import psi_pb2

PLANTED = [f"planted-{i:04d}" for i in range(10)]  # in the follower's set, not the leader's
FOLLOWER = [f"user-{i:06d}" for i in range(200)] + PLANTED
LEADER = [f"user-{i:06d}" for i in range(100, 300)]  # shares user-000100..199 with the follower
GUESSES = PLANTED + [f"planted-{i:04d}" for i in range(10, 200)]  # the attacker's dictionary


# -- the weak construction, written here to show the attack works where it should -----------


def _h(value: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(value.encode()).digest(), "big") % n


def _rsa_blind_signature_view(blinding_bits: int | None) -> tuple[list[int], object]:
    """The signer's view of Fedlearner's RSA-PSI: the blinded signatures of the follower's ids."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    numbers = key.private_numbers()
    n, e, d = numbers.public_numbers.n, numbers.public_numbers.e, numbers.d
    signed = []
    for y in FOLLOWER:
        r = secrets.randbits(blinding_bits) if blinding_bits else secrets.randbelow(n - 2) + 2
        blinded = _h(y, n) * pow(r, e, n) % n  # the follower sends this
        signed.append(pow(blinded, d, n))  # the signer returns H(y)^d · r
    return signed, (n, d)


def _rsa_oracle(signed: list[int], key: object, guesses: list[str], bits: int) -> set[str]:
    n, d = key  # type: ignore[misc]
    bound = gmpy2.mpz(1) << bits
    found = set()
    for g in guesses:
        unsign = gmpy2.invert(gmpy2.powmod(_h(g, n), d, n), n)
        if any(gmpy2.mpz(s) * unsign % n < bound for s in signed):
            found.add(g)
    return found


def test_short_blinding_lets_the_signer_test_any_guessed_id() -> None:
    signed, key = _rsa_blind_signature_view(blinding_bits=256)  # Fedlearner's choice
    assert _rsa_oracle(signed, key, GUESSES, 256) == set(PLANTED)  # 10/10, no false hits
    signed, key = _rsa_blind_signature_view(blinding_bits=None)  # r uniform in Z_n
    assert _rsa_oracle(signed, key, GUESSES, 256) == set()


# -- the same attacker against this PSI ------------------------------------------------------


@pytest.fixture
def leader_view(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Run one real session and return everything the leader holds afterwards."""
    keys: list[MaskingKey] = []
    hashers: list[CurveHasher] = []

    class RecordedKey(MaskingKey):
        def __init__(self) -> None:
            super().__init__()
            keys.append(self)

    class RecordedHasher(CurveHasher):
        def __init__(self, dst: bytes) -> None:
            super().__init__(dst)
            hashers.append(self)

    monkeypatch.setattr(session_module, "MaskingKey", RecordedKey)
    monkeypatch.setattr(session_module, "CurveHasher", RecordedHasher)
    out = run_both(LEADER, FOLLOWER, settings=PsiSettings(batch_size=64, timeout_s=10))
    leader, _ = out.results()
    assert set(leader.intersection(LEADER)) == set(LEADER) & set(FOLLOWER)
    sent_by_leader = b"".join(
        m.masked.points for m in out.leader_tap.sent if m.WhichOneof("body") == "masked"
    )
    # Which recorded key is the leader's: the one whose masks of the leader's ids it sent.
    own = _chunks(hashers[0].sum_u([x.encode() for x in LEADER]), 32)
    sent = set(_chunks(sent_by_leader, 32))
    leader_key = next(k for k in keys if _x25519(k._key, own[0]) in sent)
    follower_key = next(k for k in keys if k is not leader_key)
    received: list[psi_pb2.PsiMessage] = out.follower_tap.sent
    return {
        "hasher": hashers[0],
        "leader_key": leader_key,
        "follower_key": follower_key,
        "masked": b"".join(m.masked.points for m in received if m.WhichOneof("body") == "masked"),
        "remasked": b"".join(
            m.remasked.points for m in received if m.WhichOneof("body") == "remasked"
        ),
        "t": compare_bytes(64, len(LEADER), len(FOLLOWER)),
    }


def _x25519(key: X25519PrivateKey, u: bytes) -> bytes:
    return key.exchange(X25519PublicKey.from_public_bytes(u))


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _ecdh_oracle(
    view: dict[str, object], guesses: list[str], extra_key: X25519PrivateKey | None
) -> set[str]:
    """Test each guess with everything the leader can compute against everything it received."""
    hasher: CurveHasher = view["hasher"]  # type: ignore[assignment]
    a: X25519PrivateKey = view["leader_key"]._key  # type: ignore[attr-defined]
    t: int = view["t"]  # type: ignore[assignment]
    masked = _chunks(view["masked"], 32)  # type: ignore[arg-type]
    targets = set(masked)  # the follower's [b]H(y)
    targets |= {_x25519(a, u)[:t] for u in masked}  # [ab]H(y), as the protocol computes
    targets |= set(_chunks(view["remasked"], t))  # [ab]H(x) for the leader's own x
    messages = [g.encode() for g in guesses]
    # Both forms of each guess's hash: the RFC point H(g) and the sum Q0 + Q1 the protocol
    # masks (H(g) = [8](Q0 + Q1)).
    hashed = zip(
        _chunks(hasher.hash_u(messages).tobytes(), 32),
        _chunks(hasher.sum_u(messages), 32),
        strict=True,
    )
    found = set()
    for g, forms in zip(guesses, hashed, strict=True):
        candidates = set()
        for h in forms:
            candidates |= {h, h[:t], _x25519(a, h), _x25519(a, h)[:t]}
            if extra_key is not None:
                candidates.add(_x25519(a, _x25519(extra_key, h))[:t])
        if candidates & targets:
            found.add(g)
    return found


def test_the_leader_cannot_test_guessed_ids_against_the_followers_set(
    leader_view: dict[str, object],
) -> None:
    assert _ecdh_oracle(leader_view, GUESSES, extra_key=None) == set()


def test_with_the_followers_key_the_same_attack_finds_every_planted_id(
    leader_view: dict[str, object],
) -> None:
    b: X25519PrivateKey = leader_view["follower_key"]._key  # type: ignore[attr-defined]
    assert _ecdh_oracle(leader_view, GUESSES, extra_key=b) == set(PLANTED)
    # and with a key the follower did not use, nothing (the attack needs exactly b)
    assert _ecdh_oracle(leader_view, GUESSES, extra_key=X25519PrivateKey.generate()) == set()

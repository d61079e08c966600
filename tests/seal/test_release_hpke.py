"""The key wrapping of release envelopes is RFC 9180 HPKE, checked against the RFC's vector.

cryptography's single-shot HPKE API draws the ephemeral key itself and has no public ``aad``
argument, so the RFC's known-answer vectors (which fix ``skE`` and use ``aad = "Count-i"``)
cannot be replayed through it directly. Instead:

1. an independent base-mode HPKE written here from RFC 9180 sections 4, 5.1 and 5.2 (on plain
   HMAC, HKDF-Expand, X25519 and AES-GCM) reproduces Appendix A.1.1 exactly: shared secret,
   key schedule, key, nonce and the ciphertexts, with the vector's own ``skE``;
2. that reference opens what ``cryptography``'s ``Suite.encrypt`` produced for our suite
   (AES-256-GCM, the same KEM and KDF), and ``Suite.decrypt`` opens what the reference sealed
   with a fixed ``skE``: the library interoperates with the RFC in both directions;
3. where ``cryptography`` has its private ``_decrypt_with_aad`` (50.x does), the vector's
   ciphertexts are also opened by the library directly.
"""

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from sealfl.seal import Recipient, ReleaseKey, ReleasePolicy, write_release
from sealfl.seal._release_format import SUITE, EnvelopeHeader, read_prefix

VECTOR = json.loads((Path(__file__).parent / "vectors" / "hpke_rfc9180_a1_1.json").read_text())
KEM_X25519_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AES_128_GCM, AES_256_GCM = 0x0001, 0x0002
NK = {AES_128_GCM: 16, AES_256_GCM: 32}


# -- RFC 9180 base mode, from the text ---------------------------------------------------------


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, length)


def raw_public(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def dhkem_shared_secret(dh: bytes, enc: bytes, pk_r: bytes) -> bytes:
    suite_id = b"KEM" + KEM_X25519_SHA256.to_bytes(2, "big")
    eae_prk = labeled_extract(suite_id, b"", b"eae_prk", dh)
    return labeled_expand(suite_id, eae_prk, b"shared_secret", enc + pk_r, 32)


def key_schedule(shared_secret: bytes, info: bytes, aead_id: int) -> dict[str, bytes]:
    suite_id = b"HPKE" + b"".join(
        i.to_bytes(2, "big") for i in (KEM_X25519_SHA256, KDF_HKDF_SHA256, aead_id)
    )
    psk_id_hash = labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = labeled_extract(suite_id, shared_secret, b"secret", b"")
    return {
        "key_schedule_context": context,
        "secret": secret,
        "key": labeled_expand(suite_id, secret, b"key", context, NK[aead_id]),
        "base_nonce": labeled_expand(suite_id, secret, b"base_nonce", context, 12),
        "exporter_secret": labeled_expand(suite_id, secret, b"exp", context, 32),
    }


def reference_seal(
    pk_r: bytes, info: bytes, aad: bytes, pt: bytes, sk_e: x25519.X25519PrivateKey, aead_id: int
) -> bytes:
    enc = raw_public(sk_e)
    dh = sk_e.exchange(x25519.X25519PublicKey.from_public_bytes(pk_r))
    schedule = key_schedule(dhkem_shared_secret(dh, enc, pk_r), info, aead_id)
    return enc + AESGCM(schedule["key"]).encrypt(schedule["base_nonce"], pt, aad)


def reference_open(
    sk_r: x25519.X25519PrivateKey, info: bytes, aad: bytes, sealed: bytes, aead_id: int
) -> bytes:
    enc, ct = sealed[:32], sealed[32:]
    dh = sk_r.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    schedule = key_schedule(dhkem_shared_secret(dh, enc, raw_public(sk_r)), info, aead_id)
    return AESGCM(schedule["key"]).decrypt(schedule["base_nonce"], ct, aad)


# -- 1. the reference reproduces the RFC's vector ----------------------------------------------


def _vector_keys() -> tuple[x25519.X25519PrivateKey, x25519.X25519PrivateKey]:
    sk_e = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["skEm"]))
    sk_r = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["skRm"]))
    return sk_e, sk_r


def test_the_reference_reproduces_rfc9180_a1_1_key_schedule() -> None:
    sk_e, sk_r = _vector_keys()
    assert raw_public(sk_e).hex() == VECTOR["pkEm"] == VECTOR["enc"]
    assert raw_public(sk_r).hex() == VECTOR["pkRm"]
    dh = sk_e.exchange(sk_r.public_key())
    shared = dhkem_shared_secret(dh, bytes.fromhex(VECTOR["enc"]), bytes.fromhex(VECTOR["pkRm"]))
    assert shared.hex() == VECTOR["shared_secret"]
    schedule = key_schedule(shared, bytes.fromhex(VECTOR["info"]), VECTOR["aead_id"])
    for name, value in schedule.items():
        assert value.hex() == VECTOR[name], name


@pytest.mark.parametrize(
    "encryption", VECTOR["encryptions"], ids=lambda e: str(e["sequence_number"])
)
def test_the_reference_reproduces_rfc9180_a1_1_ciphertexts(encryption: dict) -> None:
    sk_e, sk_r = _vector_keys()
    shared = dhkem_shared_secret(
        sk_e.exchange(sk_r.public_key()), raw_public(sk_e), raw_public(sk_r)
    )
    schedule = key_schedule(shared, bytes.fromhex(VECTOR["info"]), AES_128_GCM)
    seq = encryption["sequence_number"]
    nonce = (int.from_bytes(schedule["base_nonce"], "big") ^ seq).to_bytes(12, "big")
    assert nonce.hex() == encryption["nonce"]
    ct = AESGCM(schedule["key"]).encrypt(
        nonce, bytes.fromhex(encryption["pt"]), bytes.fromhex(encryption["aad"])
    )
    assert ct.hex() == encryption["ct"]


def test_the_reference_seal_with_the_vectors_ephemeral_key_gives_the_first_ciphertext() -> None:
    sk_e, sk_r = _vector_keys()
    first = VECTOR["encryptions"][0]
    sealed = reference_seal(
        raw_public(sk_r), bytes.fromhex(VECTOR["info"]), bytes.fromhex(first["aad"]),
        bytes.fromhex(first["pt"]), sk_e, AES_128_GCM,
    )  # fmt: skip
    assert sealed.hex() == VECTOR["enc"] + first["ct"]


# -- 2. the library interoperates with the reference, in our suite -----------------------------


def test_the_release_suite_is_x25519_hkdf_sha256_aes_256_gcm() -> None:
    sk_r = x25519.X25519PrivateKey.generate()
    expected = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
    sealed = SUITE.encrypt(b"k" * 32, sk_r.public_key(), info=b"i")
    assert expected.decrypt(sealed, sk_r, info=b"i") == b"k" * 32
    assert reference_open(sk_r, b"i", b"", sealed, AES_256_GCM) == b"k" * 32


@pytest.mark.parametrize("aead_id", [AES_128_GCM, AES_256_GCM])
def test_library_seal_opens_with_the_reference(aead_id: int) -> None:
    aead = {AES_128_GCM: AEAD.AES_128_GCM, AES_256_GCM: AEAD.AES_256_GCM}[aead_id]
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, aead)
    _sk_e, sk_r = _vector_keys()
    info, data_key = bytes.fromhex(VECTOR["info"]), os.urandom(32)
    sealed = suite.encrypt(data_key, sk_r.public_key(), info=info)
    assert reference_open(sk_r, info, b"", sealed, aead_id) == data_key
    with pytest.raises(InvalidTag):
        reference_open(sk_r, info + b"x", b"", sealed, aead_id)


@pytest.mark.parametrize("aead_id", [AES_128_GCM, AES_256_GCM])
def test_reference_seal_opens_with_the_library(aead_id: int) -> None:
    aead = {AES_128_GCM: AEAD.AES_128_GCM, AES_256_GCM: AEAD.AES_256_GCM}[aead_id]
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, aead)
    sk_e, sk_r = _vector_keys()
    info, data_key = bytes.fromhex(VECTOR["info"]), os.urandom(32)
    sealed = reference_seal(raw_public(sk_r), info, b"", data_key, sk_e, aead_id)
    assert sealed[:32].hex() == VECTOR["enc"]  # the vector's ephemeral key, so deterministic
    assert suite.decrypt(sealed, sk_r, info=info) == data_key


def test_an_envelope_wrap_is_rfc9180_with_the_documented_info(tmp_path: Path) -> None:
    """Open a real envelope's wrap with the reference: the format is implementable elsewhere."""
    key = ReleaseKey.generate(name="owner")
    policy = ReleasePolicy([Recipient(name=key.name, public_key=key.public_key)])
    write_release(tmp_path / "m.release", b"model", policy, label="test/model")
    with (tmp_path / "m.release").open("rb") as stream:
        header, _prefix = read_prefix(stream.read, "m.release")
    enc, wrapped = header.wraps[0]
    core = EnvelopeHeader(
        label=header.label, recipients=header.recipients,
        wraps=((b"", b""),), envelope_id=header.envelope_id,
    )  # fmt: skip
    info = b"sealfl release v1\x00" + core.core_hash() + (0).to_bytes(2, "big")
    data_key = reference_open(key.x25519, info, b"", enc + wrapped, AES_256_GCM)
    assert len(data_key) == 32


# -- 3. the library's own decryption against the vector, where it can take the aad -------------


def test_library_opens_rfc9180_a1_1_ciphertexts_directly() -> None:
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl

    decrypt_with_aad = getattr(rust_openssl.hpke, "_decrypt_with_aad", None)
    if decrypt_with_aad is None:
        pytest.skip("this cryptography release has no _decrypt_with_aad to pass the RFC's aad")
    _sk_e, sk_r = _vector_keys()
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
    for encryption in VECTOR["encryptions"][:1]:  # the single-shot API is sequence 0 only
        sealed = bytes.fromhex(VECTOR["enc"] + encryption["ct"])
        pt = decrypt_with_aad(
            suite, sealed, sk_r, info=bytes.fromhex(VECTOR["info"]),
            aad=bytes.fromhex(encryption["aad"]),
        )  # fmt: skip
        assert pt.hex() == encryption["pt"]

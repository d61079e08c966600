"""Key derivation, mask expansion and share encryption: the cryptographic core of a round.

- Pairwise mask seed of u and v: HKDF-SHA256 over the X25519 output of their mask keys, with
  the round tag and both ids (smaller first) in ``info`` under the label ``pair-mask``: 256 bits,
  never folded.
- Self-mask seed: HKDF-SHA256 over the worker's fresh 256-bit ``b_u`` with the tag and its id
  under ``self-mask``.
- Expansion: AES-256-CTR keystream from the seed (zero counter block: every seed keys exactly
  one stream), read as little-endian uint32. A fresh key pair and ``b_u`` per attempt and the
  tag in every derivation mean a mask is never used on two different values.
- Survivor-list confirmation: HMAC-SHA256 of the unmask request's digest under a key from HKDF
  over the same X25519 output of the cipher keys (label ``confirm``), with the direction
  (sender, receiver) in the message: the aggregator relays these tags but cannot make them.
- Share encryption: AES-256-GCM with a key from HKDF over the X25519 output of the cipher keys
  (label ``share-key``), a random 96-bit nonce, and (tag, sender, receiver) as associated data,
  so a ciphertext is refused in any other round, attempt or direction.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import ProtocolError
from sealfl.secagg.messages import SHARE_PLAINTEXT_BYTES, RoundTag
from sealfl.secagg.shamir import SHARE_BYTES

__all__ = [
    "confirmation_mac",
    "decrypt_shares",
    "encrypt_shares",
    "expand",
    "pair_seed",
    "self_seed",
]

_LABEL = b"sealfl secagg v1 "
_ZERO_BLOCK = bytes(16)


def _hkdf(ikm: bytes, label: bytes, tag: RoundTag, ids: tuple[int, ...]) -> bytes:
    info = _LABEL + label + b"\0" + tag.encode() + b"".join(struct.pack(">I", i) for i in ids)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def _exchange(private: bytes, public: bytes, *, what: str) -> bytes:
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError as exc:  # low-order point: all-zero output
        raise ProtocolError(f"{what}: X25519 with this public key failed ({exc})") from exc


def pair_seed(private: bytes, peer_public: bytes, tag: RoundTag, u: int, v: int) -> bytes:
    """Derive the 256-bit seed of the mask shared by workers ``u`` and ``v`` in this round."""
    shared = _exchange(private, peer_public, what=f"pair mask {u}-{v}")
    return _hkdf(shared, b"pair-mask", tag, (min(u, v), max(u, v)))


def self_seed(b_u: bytes, tag: RoundTag, u: int) -> bytes:
    """Derive the 256-bit seed of worker ``u``'s self-mask in this round."""
    return _hkdf(b_u, b"self-mask", tag, (u,))


def expand(seed: bytes, numel: int) -> npt.NDArray[np.uint32]:
    """``numel`` uniform uint32 from the AES-256-CTR keystream of ``seed``."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_BLOCK)).encryptor()
    stream = encryptor.update(bytes(4 * numel)) + encryptor.finalize()
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32, copy=False)


def _share_key(private: bytes, peer_public: bytes, tag: RoundTag, u: int, v: int) -> bytes:
    shared = _exchange(private, peer_public, what=f"share key {u}-{v}")
    return _hkdf(shared, b"share-key", tag, (min(u, v), max(u, v)))


def _ad(tag: RoundTag, sender: int, receiver: int) -> bytes:
    return _LABEL + b"shares\0" + tag.encode() + struct.pack(">II", sender, receiver)


def encrypt_shares(
    *,
    cipher_private: bytes,
    receiver_public: bytes,
    tag: RoundTag,
    sender: int,
    receiver: int,
    seed_share: bytes,
    key_share: bytes,
    entropy: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Seal the sender's two shares for one receiver: nonce || AES-GCM(ids, shares)."""
    key = _share_key(cipher_private, receiver_public, tag, sender, receiver)
    nonce = entropy(12)
    plain = struct.pack(">II", sender, receiver) + seed_share + key_share
    return nonce + AESGCM(key).encrypt(nonce, plain, _ad(tag, sender, receiver))


def decrypt_shares(
    ciphertext: bytes,
    *,
    cipher_private: bytes,
    sender_public: bytes,
    tag: RoundTag,
    sender: int,
    receiver: int,
) -> tuple[bytes, bytes]:
    """Open shares sent to ``receiver``; refuse anything sealed for another round or pair."""
    key = _share_key(cipher_private, sender_public, tag, sender, receiver)
    try:
        plain = AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], _ad(tag, sender, receiver))
    except InvalidTag as exc:
        raise ProtocolError(
            f"shares from worker {sender} to worker {receiver}: authentication failed "
            f"(another round, attempt, pair, or tampered)"
        ) from exc
    if len(plain) != SHARE_PLAINTEXT_BYTES or plain[:8] != struct.pack(">II", sender, receiver):
        raise ProtocolError(
            f"shares from worker {sender} to worker {receiver}: malformed plaintext"
        )
    return plain[8 : 8 + SHARE_BYTES], plain[8 + SHARE_BYTES :]


def confirmation_mac(
    *,
    cipher_private: bytes,
    peer_public: bytes,
    tag: RoundTag,
    sender: int,
    receiver: int,
    request_digest: bytes,
) -> bytes:
    """Return ``sender``'s tag telling ``receiver`` which unmask request it was sent.

    Workers compare these before answering the unmask stage (SecAgg's consistency check): an
    aggregator that shows different survivor lists to different workers cannot forge the tags
    of the ones it did not show a list to.
    """
    shared = _exchange(cipher_private, peer_public, what=f"confirmation {sender}-{receiver}")
    key = _hkdf(shared, b"confirm", tag, (min(sender, receiver), max(sender, receiver)))
    message = _LABEL + b"confirm\0" + struct.pack(">II", sender, receiver) + request_digest
    return hmac.new(key, message, hashlib.sha256).digest()

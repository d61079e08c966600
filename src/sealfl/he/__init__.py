"""Paillier homomorphic encryption: keys, fixed-point vectors, packing, encrypted linear algebra.

.. danger::
   Hazardous-materials layer: sharp tools for workloads in :mod:`sealfl.fl` to combine safely.
   A ciphertext is malleable by design and nothing here authenticates a peer; send vectors only
   over an authenticated channel (RA-TLS).

Standard Paillier with ``g = n + 1``: the same ``n, p, q`` decrypt python-paillier's raw
ciphertexts and python-paillier decrypts ours. Floats are fixed-point integers with an explicit
scale. Two vector kinds:

* :class:`EncryptedVector` (unpacked, one value per ciphertext): add, subtract, negate, add a
  plaintext, multiply by a plaintext scalar or vector, ``X @ Enc(w)`` and ``Enc(v) @ X``. The
  scale (fraction bits) is tracked exactly, and a public bound on every plaintext is tracked
  too: an operation that could wrap modulo ``n`` raises
  :class:`~sealfl.errors.EncodingOverflowError`.
* :class:`PackedVector` (many values per ciphertext, :class:`PackedLayout`): compact transport
  and sums of up to ``layout.max_summands`` vectors; about 11.4 bytes per float at 2048 bits.

Example: one step of encrypted logistic regression on a worker that holds ``X, y`` and only the
public key (the model owner holds the private key)::

    import numpy as np
    from sealfl import he

    public_key, private_key = he.generate_keypair()           # model owner, 2048 bits
    enc_w = he.encrypt_vector(public_key, w, fraction_bits=24)  # scale 2^24
    # worker:
    z = X @ enc_w                                   # scale 2^(24+16): X has 16 fraction bits
    y_hat = z.mul(0.25, fraction_bits=2) + 0.5      # scale 2^42; 0.5 encoded at that scale
    v = y_hat - y                                   # residuals, scale 2^42
    grad = (v @ X).mul(1 / len(y))                  # scale 2^(42+16+16)
    reg = enc_w.mul(alpha)                          # scale 2^(24+16)
    grad, reg = he.align_scales(grad, reg)          # exact: multiply by a power of two
    step = (grad + reg).mul(lr)                     # scale grows by 16 again
    enc_w_next = enc_w.rescale_to(step.scale_bits) - step
    # model owner:
    w_next = he.decrypt_vector(private_key, enc_w_next)
    wire = enc_w_next.to_bytes()                    # header + 512 bytes per value
    again = he.EncryptedVector.from_bytes(wire, public_key)

Packed vectors for aggregation::

    parts = [he.encrypt_packed(public_key, u) for u in updates]   # 45 floats per ciphertext
    total = he.sum_vectors(parts)                                  # counts summands
    mean = he.decrypt_vector(private_key, total) / len(parts)

Keys are JSON files (:func:`save_private_key`, :func:`load_public_key`, ...) with hexadecimal
integers, validated on load. Work is spread over all cores unless ``cores=`` says otherwise.
"""

from __future__ import annotations

from sealfl.he._encoding import DEFAULT_FRACTION_BITS, DEFAULT_INTEGER_BITS, PackedLayout
from sealfl.he._encrypt import decrypt_vector, encrypt_packed, encrypt_vector
from sealfl.he._keyfile import (
    load_key,
    load_private_key,
    load_public_key,
    private_key_from_json,
    private_key_to_json,
    public_key_from_json,
    public_key_to_json,
    save_private_key,
    save_public_key,
)
from sealfl.he._keys import (
    DEFAULT_KEY_BITS,
    PaillierPrivateKey,
    PaillierPublicKey,
    WeakKeyWarning,
    generate_keypair,
)
from sealfl.he._linalg import DEFAULT_MATRIX_FRACTION_BITS, matvec, vecmat
from sealfl.he._parallel import forbid_process_pool, process_pool_refusal
from sealfl.he._randomness import Randomness
from sealfl.he._vector import (
    DEFAULT_PLAIN_FRACTION_BITS,
    EncryptedVector,
    PackedVector,
    align_scales,
    capacity_bits,
    sum_vectors,
)
from sealfl.he._wire import vector_from_bytes, vector_to_bytes

__all__ = [
    "DEFAULT_FRACTION_BITS",
    "DEFAULT_INTEGER_BITS",
    "DEFAULT_KEY_BITS",
    "DEFAULT_MATRIX_FRACTION_BITS",
    "DEFAULT_PLAIN_FRACTION_BITS",
    "EncryptedVector",
    "PackedLayout",
    "PackedVector",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "Randomness",
    "WeakKeyWarning",
    "align_scales",
    "capacity_bits",
    "decrypt_vector",
    "encrypt_packed",
    "encrypt_vector",
    "forbid_process_pool",
    "generate_keypair",
    "load_key",
    "load_private_key",
    "load_public_key",
    "matvec",
    "private_key_from_json",
    "private_key_to_json",
    "process_pool_refusal",
    "public_key_from_json",
    "public_key_to_json",
    "save_private_key",
    "save_public_key",
    "sum_vectors",
    "vecmat",
    "vector_from_bytes",
    "vector_to_bytes",
]

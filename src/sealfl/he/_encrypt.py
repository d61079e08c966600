"""Encrypt float vectors (unpacked or packed) and decrypt them back."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sealfl.errors import ConfigError, EncodingOverflowError, HEError
from sealfl.he._crypt import decrypt_ciphertexts, encrypt_plaintexts
from sealfl.he._encoding import (
    DEFAULT_FRACTION_BITS,
    DEFAULT_INTEGER_BITS,
    PackedLayout,
    as_float_vector,
    decode_signed,
    scaled_integers,
)
from sealfl.he._keys import PaillierPrivateKey, PaillierPublicKey
from sealfl.he._randomness import Randomness
from sealfl.he._vector import EncryptedVector, PackedVector, capacity_bits


def encrypt_vector(
    public_key: PaillierPublicKey,
    values: ArrayLike,
    *,
    fraction_bits: int = DEFAULT_FRACTION_BITS,
    integer_bits: int = DEFAULT_INTEGER_BITS,
    randomness: Randomness = Randomness.DJN,
    private_key: PaillierPrivateKey | None = None,
    cores: int | None = None,
) -> EncryptedVector:
    """Encrypt floats one per ciphertext at scale ``2^fraction_bits``.

    Parameters
    ----------
    public_key
        Key to encrypt under.
    values
        1-D finite floats with ``|x| < 2^integer_bits``.
    fraction_bits
        Scale of the result; rounding error at most ``2^-(fraction_bits+1)``.
    integer_bits
        Declared range. It becomes the public bound of the vector (``fraction_bits +
        integer_bits`` bits), which later operations grow and check against the key size. A
        bound from the declared range rather than the actual values reveals nothing about them.
    randomness, private_key, cores
        See :func:`encrypt_packed`.

    Raises
    ------
    EncodingOverflowError
        If a value is out of the declared range.
    """
    if fraction_bits < 0 or integer_bits < 0:
        raise ConfigError(
            f"fraction_bits and integer_bits must be >= 0, got {fraction_bits}, {integer_bits}"
        )
    bound = fraction_bits + integer_bits
    if bound > capacity_bits(public_key):
        raise EncodingOverflowError(
            f"fraction_bits + integer_bits = {bound} exceeds the {capacity_bits(public_key)} bits "
            f"a {public_key.bits}-bit key holds"
        )
    array = as_float_vector(values)
    ints = scaled_integers(array, fraction_bits, bound, what="values")
    ciphertexts = encrypt_plaintexts(
        public_key,
        np.asarray(ints, dtype=object).tolist(),
        randomness=randomness,
        private_key=private_key,
        cores=cores,
    )
    return EncryptedVector(public_key, ciphertexts, scale_bits=fraction_bits, bound_bits=bound)


def encrypt_packed(
    public_key: PaillierPublicKey,
    values: ArrayLike,
    *,
    layout: PackedLayout | None = None,
    randomness: Randomness = Randomness.DJN,
    private_key: PaillierPrivateKey | None = None,
    cores: int | None = None,
) -> PackedVector:
    """Encrypt floats packed many per ciphertext (see :class:`PackedLayout`).

    Parameters
    ----------
    public_key
        Key to encrypt under.
    values
        1-D finite floats inside the layout's range.
    layout
        Slot layout; the default packs 45 values in [-1024, 1024) per 2048-bit ciphertext.
    randomness
        Source of encryption randomness (:class:`Randomness`); DJN by default.
    private_key
        The matching private key, if the caller holds it: randomness is then computed with the
        CRT, which is faster. Never needed.
    cores
        Cores to use; ``None`` means all this process may run on.

    Raises
    ------
    EncodingOverflowError
        If a value is outside the layout's range.
    """
    layout = layout or PackedLayout()
    array = as_float_vector(values)
    slots = layout.slots_for(public_key.bits)
    plaintexts = layout.pack(array, slots)
    ciphertexts = encrypt_plaintexts(
        public_key, plaintexts, randomness=randomness, private_key=private_key, cores=cores
    )
    return PackedVector(public_key, ciphertexts, layout=layout, length=array.shape[0])


def decrypt_vector(
    private_key: PaillierPrivateKey,
    vector: EncryptedVector | PackedVector,
    *,
    cores: int | None = None,
) -> NDArray[np.float64]:
    """Decrypt an unpacked or packed vector to floats.

    Raises
    ------
    HEError
        If the vector is under another key.
    EncodingOverflowError
        If a plaintext breaks the vector's public bound or the packed layout: the data was
        corrupted or produced by something other than this package's checked operations.
    """
    public_key = private_key.public_key
    if vector.public_key != public_key:
        raise HEError(
            f"cannot decrypt: vector is under key {vector.public_key.fingerprint_hex}, the "
            f"private key is for {public_key.fingerprint_hex}"
        )
    plaintexts = decrypt_ciphertexts(private_key, vector.ciphertexts, cores=cores)
    if isinstance(vector, PackedVector):
        return vector.layout.unpack(plaintexts, vector.length, vector.slots, vector.summands)
    n = public_key.n
    limit = 1 << vector.bound_bits
    for index, m in enumerate(plaintexts):
        if min(m, n - m) >= limit:
            raise EncodingOverflowError(
                f"decrypted entry {index} exceeds the vector's bound of 2^{vector.bound_bits}: "
                "the ciphertext was altered or computed outside the checked operations"
            )
    return decode_signed(plaintexts, n, vector.scale_bits)

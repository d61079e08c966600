"""Products of a plaintext float matrix with an encrypted vector, on either side.

``X @ Enc(w)`` (:func:`matvec`) and ``Enc(v) @ X`` (:func:`vecmat`) are what a worker of
encrypted logistic regression computes every step: the margins ``z = X·w`` from the encrypted
model and the gradient ``Xᵀ·v`` from the encrypted residuals. ``X`` is rounded to
``fraction_bits`` fraction bits; each output is then one multi-exponentiation
(:mod:`sealfl.he._multiexp`) and its scale is the vector's scale plus ``fraction_bits``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sealfl.errors import HEError
from sealfl.he._encoding import scaled_integers
from sealfl.he._multiexp import EXPONENT_LIMIT_BITS, multi_exponentiate
from sealfl.he._vector import EncryptedVector, check_bound

DEFAULT_MATRIX_FRACTION_BITS = 16


def encode_matrix(matrix: ArrayLike, fraction_bits: int) -> NDArray[np.int64]:
    """Round a finite float matrix to integers ``round(X·2^fraction_bits)`` (int64).

    Raises
    ------
    HEError
        If the matrix is not 2-D or holds NaN or infinity.
    EncodingOverflowError
        If an entry reaches ``2^(62 - fraction_bits)`` in magnitude.
    """
    if fraction_bits < 0:
        raise HEError(f"fraction_bits must be >= 0, got {fraction_bits}")
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2:
        raise HEError(f"matrix must be 2-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        row, col = np.argwhere(~np.isfinite(array))[0]
        raise HEError(f"matrix[{row}, {col}] is {array[row, col]}; only finite values can be used")
    flat = scaled_integers(
        array.reshape(-1), fraction_bits, EXPONENT_LIMIT_BITS, what="matrix (flattened)"
    )
    return np.asarray(flat, dtype=np.int64).reshape(array.shape)


def _row_sum_bits(exponents: NDArray[np.int64]) -> int:
    """Bits of the largest row sum of magnitudes: how much a product can grow a bound."""
    if exponents.size == 0:
        return 0
    # float64 sums of int64 magnitudes are within a relative 1e-15; the margin covers it.
    largest = float(np.max(np.sum(np.abs(exponents).astype(np.float64), axis=1)))
    return math.ceil(largest * (1 + 1e-12)).bit_length()


def _product(
    vector: EncryptedVector, exponents: NDArray[np.int64], fraction_bits: int, cores: int | None
) -> EncryptedVector:
    bound = vector.bound_bits + _row_sum_bits(exponents)
    check_bound(vector.public_key, bound)  # refuse before the expensive part
    ciphertexts = multi_exponentiate(
        vector.ciphertexts, exponents, vector.public_key.nsquare, cores=cores
    )
    return EncryptedVector(
        vector.public_key,
        ciphertexts,
        scale_bits=vector.scale_bits + fraction_bits,
        bound_bits=bound,
    )


def matvec(
    matrix: ArrayLike,
    vector: EncryptedVector,
    *,
    fraction_bits: int = DEFAULT_MATRIX_FRACTION_BITS,
    cores: int | None = None,
) -> EncryptedVector:
    """Return ``X @ Enc(w)``: one encrypted entry per row of ``X``.

    Parameters
    ----------
    matrix
        Plaintext float matrix ``X`` of shape ``(m, d)``.
    vector
        Encrypted ``w`` of length ``d``.
    fraction_bits
        Fraction bits ``X`` is rounded to; the result's scale is ``vector.scale_bits`` plus
        this. Rounding error per output is at most ``Σ_j |w_j|·2^-(fraction_bits+1)``.
    cores
        Cores to use; ``None`` means all this process may run on.

    Raises
    ------
    HEError
        If the shapes do not match.
    EncodingOverflowError
        If the result could exceed the plaintext space.
    """
    exponents = encode_matrix(matrix, fraction_bits)
    if exponents.shape[1] != len(vector):
        raise HEError(
            f"X @ Enc(w): X has {exponents.shape[1]} columns, expected {len(vector)} "
            "(the length of w)"
        )
    return _product(vector, exponents, fraction_bits, cores)


def vecmat(
    vector: EncryptedVector,
    matrix: ArrayLike,
    *,
    fraction_bits: int = DEFAULT_MATRIX_FRACTION_BITS,
    cores: int | None = None,
) -> EncryptedVector:
    """Return ``Enc(v) @ X``: one encrypted entry per column of ``X``.

    Parameters
    ----------
    vector
        Encrypted ``v`` of length ``m``.
    matrix
        Plaintext float matrix ``X`` of shape ``(m, d)``.
    fraction_bits
        Fraction bits ``X`` is rounded to; the result's scale is ``vector.scale_bits`` plus
        this.
    cores
        Cores to use; ``None`` means all this process may run on.

    Raises
    ------
    HEError
        If the shapes do not match.
    EncodingOverflowError
        If the result could exceed the plaintext space.
    """
    exponents = encode_matrix(matrix, fraction_bits)
    if exponents.shape[0] != len(vector):
        raise HEError(
            f"Enc(v) @ X: X has {exponents.shape[0]} rows, expected {len(vector)} (the length of v)"
        )
    return _product(vector, np.ascontiguousarray(exponents.T), fraction_bits, cores)

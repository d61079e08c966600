"""Encrypted vectors: unpacked (arithmetic with plaintexts) and packed (compact sums).

:class:`EncryptedVector` holds one fixed-point value per ciphertext with its *scale* (fraction
bits) and a public *bound*: every plaintext integer ``m`` satisfies ``|m| < 2^bound_bits``.
Each operation computes the new bound from the old one and the plaintext operands, and refuses
to run if it could exceed :func:`capacity_bits` (``2^(bits-2) <= n/2``), so a wrapped result can
never be returned silently. :class:`PackedVector` holds many values per ciphertext and supports
only addition, counting summands against the layout's headroom.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import gmpy2
import numpy as np
from gmpy2 import mpz
from numpy.typing import ArrayLike, NDArray

from sealfl.errors import EncodingOverflowError, HEError
from sealfl.he._encoding import (
    PackedLayout,
    as_float_vector,
    bits_for_sum,
    max_abs_bits,
    scaled_integers,
)
from sealfl.he._keys import PaillierPublicKey

if TYPE_CHECKING:
    from sealfl.he._randomness import Randomness

DEFAULT_PLAIN_FRACTION_BITS = 16


def capacity_bits(public_key: PaillierPublicKey) -> int:
    """Largest ``bound_bits`` an unpacked vector may reach: ``|m| < 2^(bits-2) < n/2``."""
    return public_key.bits - 2


def check_bound(public_key: PaillierPublicKey, bound_bits: int) -> None:
    """Refuse a plaintext bound of ``2^bound_bits`` that could wrap modulo ``n``.

    Raises
    ------
    EncodingOverflowError
        If ``bound_bits`` exceeds :func:`capacity_bits` of the key.
    """
    capacity = capacity_bits(public_key)
    if bound_bits > capacity:
        raise EncodingOverflowError(
            f"result could need {bound_bits} bits, more than the {capacity} bits a "
            f"{public_key.bits}-bit key holds without wrapping; decrypt and re-encrypt, "
            "or use fewer fraction bits"
        )


def _check_same_key(a: PaillierPublicKey, b: PaillierPublicKey, operation: str) -> None:
    if a != b:
        raise HEError(
            f"{operation}: vectors are under different keys ({a.fingerprint_hex} and "
            f"{b.fingerprint_hex})"
        )


def _check_length(expected: int, got: int, operation: str, what: str) -> None:
    if expected != got:
        raise HEError(f"{operation}: {what} has length {got}, expected {expected}")


class EncryptedVector:
    """A vector of fixed-point values, one Paillier ciphertext each.

    The plaintext of entry ``i`` is the integer ``m_i`` (negative values wrap modulo ``n``)
    and it stands for ``m_i / 2^scale_bits``.

    Parameters
    ----------
    public_key
        The key the ciphertexts are under.
    ciphertexts
        One ciphertext per entry, each in ``[1, n²)``.
    scale_bits
        Fraction bits of the plaintexts (``>= 0``).
    bound_bits
        Public bound: ``|m_i| < 2^bound_bits`` for every entry.

    Raises
    ------
    EncodingOverflowError
        If ``bound_bits`` exceeds :func:`capacity_bits` of the key.
    """

    __slots__ = ("bound_bits", "ciphertexts", "public_key", "scale_bits")
    # numpy must defer to our reflected operators: ``X @ enc`` and ``array + enc``.
    __array_ufunc__ = None

    def __init__(
        self,
        public_key: PaillierPublicKey,
        ciphertexts: list[mpz],
        *,
        scale_bits: int,
        bound_bits: int,
    ) -> None:
        if scale_bits < 0:
            raise HEError(f"scale_bits must be >= 0, got {scale_bits}")
        check_bound(public_key, bound_bits)
        capacity = capacity_bits(public_key)
        if scale_bits > capacity:
            # Operations keep bound_bits >= scale_bits, so only a forged header gets here;
            # left in, decryption would build 2**scale_bits (gigabytes for a 32-bit field).
            raise HEError(
                f"scale 2^{scale_bits} exceeds the {capacity}-bit plaintext space of a "
                f"{public_key.bits}-bit key: no value could be represented at that scale"
            )
        self.public_key = public_key
        self.ciphertexts = ciphertexts
        self.scale_bits = scale_bits
        self.bound_bits = bound_bits

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __repr__(self) -> str:
        return (
            f"EncryptedVector(len={len(self)}, scale_bits={self.scale_bits}, "
            f"bound_bits={self.bound_bits}, key={self.public_key.fingerprint_hex[:8]})"
        )

    def _derive(
        self, ciphertexts: list[mpz], *, scale_bits: int, bound_bits: int
    ) -> EncryptedVector:
        return EncryptedVector(
            self.public_key, ciphertexts, scale_bits=scale_bits, bound_bits=bound_bits
        )

    # -- addition ---------------------------------------------------------------------------

    def add(self, other: EncryptedVector) -> EncryptedVector:
        """Return the entrywise sum with another encrypted vector.

        Raises
        ------
        HEError
            If the keys, lengths or scales differ. Align scales first with
            :meth:`rescale_to` (or :func:`align_scales`): an implicit rescale would hide a
            growth of the plaintext bound.
        """
        if not isinstance(other, EncryptedVector):
            raise HEError(f"add: expected an EncryptedVector, got {type(other).__name__}")
        _check_same_key(self.public_key, other.public_key, "add")
        _check_length(len(self), len(other), "add", "second vector")
        if self.scale_bits != other.scale_bits:
            raise HEError(
                f"add: scales differ (2^{self.scale_bits} and 2^{other.scale_bits}); align them "
                "with rescale_to() or align_scales() first"
            )
        nsquare = self.public_key.nsquare
        return self._derive(
            [a * b % nsquare for a, b in zip(self.ciphertexts, other.ciphertexts, strict=True)],
            scale_bits=self.scale_bits,
            bound_bits=max(self.bound_bits, other.bound_bits) + 1,
        )

    def add_plain(self, values: ArrayLike) -> EncryptedVector:
        """Add a plaintext vector (or a scalar, broadcast), encoded at this vector's scale."""
        plain = self._plain_vector(values, "add_plain")
        ints = scaled_integers(
            plain, self.scale_bits, capacity_bits(self.public_key), what="add_plain values"
        )
        plain_ints = np.asarray(ints, dtype=object).tolist()
        times_message = self.public_key.times_message
        return self._derive(
            [times_message(c, m) for c, m in zip(self.ciphertexts, plain_ints, strict=True)],
            scale_bits=self.scale_bits,
            bound_bits=max(self.bound_bits, max_abs_bits(ints)) + 1,
        )

    def __add__(self, other: EncryptedVector | ArrayLike) -> EncryptedVector:
        if isinstance(other, EncryptedVector):
            return self.add(other)
        return self.add_plain(other)

    def __radd__(self, other: ArrayLike) -> EncryptedVector:
        return self.add_plain(other)

    def __neg__(self) -> EncryptedVector:
        return self.negate()

    def __sub__(self, other: EncryptedVector | ArrayLike) -> EncryptedVector:
        if isinstance(other, EncryptedVector):
            return self.add(other.negate())
        return self.add_plain(-self._plain_vector(other, "subtract"))

    def __rsub__(self, other: ArrayLike) -> EncryptedVector:
        return self.negate().add_plain(other)

    def negate(self) -> EncryptedVector:
        """Return ``-self`` (one modular inversion per entry)."""
        nsquare = self.public_key.nsquare
        return self._derive(
            [gmpy2.invert(c, nsquare) for c in self.ciphertexts],
            scale_bits=self.scale_bits,
            bound_bits=self.bound_bits,
        )

    # -- multiplication by plaintext --------------------------------------------------------

    def mul(
        self, factor: ArrayLike, *, fraction_bits: int = DEFAULT_PLAIN_FRACTION_BITS
    ) -> EncryptedVector:
        """Multiply by a plaintext scalar or an entrywise plaintext vector.

        The factor is rounded to ``fraction_bits`` fraction bits, and the result's scale is
        ``scale_bits + fraction_bits``. Use ``fraction_bits=0`` for integer factors and the
        smallest exact value for dyadic ones (``0.25`` needs 2) to keep the scale small.
        """
        if fraction_bits < 0:
            raise HEError(f"mul: fraction_bits must be >= 0, got {fraction_bits}")
        plain = self._plain_vector(factor, "mul")
        ints = scaled_integers(
            plain, fraction_bits, capacity_bits(self.public_key), what="mul factor"
        )
        bound = self.bound_bits + max_abs_bits(ints)
        check_bound(self.public_key, bound)  # refuse before the exponentiations
        nsquare = self.public_key.nsquare
        factors = np.asarray(ints, dtype=object).tolist()
        if np.ndim(factor) == 0:
            k = factors[0] if factors else 0
            if k >= 0:
                out = list(gmpy2.powmod_base_list(self.ciphertexts, k, nsquare))
            else:
                inverted = [gmpy2.invert(c, nsquare) for c in self.ciphertexts]
                out = list(gmpy2.powmod_base_list(inverted, -k, nsquare))
        else:
            pairs = zip(self.ciphertexts, factors, strict=True)
            out = [gmpy2.powmod(c, k, nsquare) for c, k in pairs]
        return self._derive(out, scale_bits=self.scale_bits + fraction_bits, bound_bits=bound)

    def __mul__(self, factor: ArrayLike) -> EncryptedVector:
        return self.mul(factor)

    def __rmul__(self, factor: ArrayLike) -> EncryptedVector:
        return self.mul(factor)

    def rescale_up(self, bits: int) -> EncryptedVector:
        """Multiply every plaintext by ``2^bits``: same values, scale ``scale_bits + bits``."""
        if bits < 0:
            raise HEError(f"rescale_up: bits must be >= 0, got {bits}")
        if bits == 0:
            return self
        check_bound(self.public_key, self.bound_bits + bits)  # refuse before the exponentiations
        nsquare = self.public_key.nsquare
        return self._derive(
            list(gmpy2.powmod_base_list(self.ciphertexts, 1 << bits, nsquare)),
            scale_bits=self.scale_bits + bits,
            bound_bits=self.bound_bits + bits,
        )

    def rescale_to(self, scale_bits: int) -> EncryptedVector:
        """Return the same values at a larger (or equal) scale; scales never go down.

        Raises
        ------
        HEError
            If ``scale_bits`` is smaller than the current scale: dividing an encrypted value
            by a power of two is not possible without the private key.
        """
        if scale_bits < self.scale_bits:
            raise HEError(
                f"rescale_to: cannot lower the scale from 2^{self.scale_bits} to "
                f"2^{scale_bits} under encryption"
            )
        return self.rescale_up(scale_bits - self.scale_bits)

    # -- linear algebra ---------------------------------------------------------------------

    def __rmatmul__(self, matrix: ArrayLike) -> EncryptedVector:
        from sealfl.he._linalg import matvec

        return matvec(matrix, self)

    def __matmul__(self, matrix: ArrayLike) -> EncryptedVector:
        from sealfl.he._linalg import vecmat

        return vecmat(self, matrix)

    # -- helpers ----------------------------------------------------------------------------

    def _plain_vector(self, values: ArrayLike, operation: str) -> NDArray[np.float64]:
        if np.ndim(values) == 0:  # a scalar, broadcast (and checked to be finite below)
            values = np.full(len(self), float(np.asarray(values)), dtype=np.float64)
        plain = as_float_vector(values, what=f"{operation} operand")
        _check_length(len(self), plain.shape[0], operation, "plaintext operand")
        return plain

    def rerandomized(
        self, *, randomness: Randomness | None = None, cores: int | None = None
    ) -> EncryptedVector:
        """Return the same plaintexts under fresh randomness.

        Use it before sending a result computed from your own data to the key owner when the
        ciphertext itself (not only its plaintext) must not reveal how it was computed.
        """
        from sealfl.he._crypt import encrypt_plaintexts
        from sealfl.he._randomness import Randomness

        zeros = encrypt_plaintexts(
            self.public_key,
            [0] * len(self),
            randomness=randomness or Randomness.DJN,
            cores=cores,
        )
        nsquare = self.public_key.nsquare
        return self._derive(
            [a * b % nsquare for a, b in zip(self.ciphertexts, zeros, strict=True)],
            scale_bits=self.scale_bits,
            bound_bits=self.bound_bits,
        )

    def to_bytes(self) -> bytes:
        """Serialise to the binary wire format of :mod:`sealfl.he._wire`."""
        from sealfl.he._wire import vector_to_bytes

        return vector_to_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes, public_key: PaillierPublicKey) -> EncryptedVector:
        """Parse and check an unpacked vector serialised by :meth:`to_bytes`.

        Raises
        ------
        HEError
            If the buffer is truncated, corrupted, packed, or from another key.
        """
        from sealfl.he._wire import vector_from_bytes

        vector = vector_from_bytes(data, public_key)
        if not isinstance(vector, EncryptedVector):
            raise HEError("expected an unpacked encrypted vector, got a packed one")
        return vector


def align_scales(*vectors: EncryptedVector) -> list[EncryptedVector]:
    """Rescale every vector up to the largest scale among them, so they can be added."""
    if not vectors:
        return []
    target = max(v.scale_bits for v in vectors)
    return [v.rescale_to(target) for v in vectors]


class PackedVector:
    """A vector of fixed-point values packed many per ciphertext (see :class:`PackedLayout`).

    Supports addition of vectors with the same key, layout and length; the result counts the
    summands and refuses to exceed ``layout.max_summands``. Decrypt with
    :func:`~sealfl.he.decrypt_vector`.
    """

    __slots__ = ("ciphertexts", "layout", "length", "public_key", "slots", "summands")

    def __init__(
        self,
        public_key: PaillierPublicKey,
        ciphertexts: list[mpz],
        *,
        layout: PackedLayout,
        length: int,
        summands: int = 1,
    ) -> None:
        slots = layout.slots_for(public_key.bits)
        expected = -(-length // slots)
        if len(ciphertexts) != expected:
            raise HEError(
                f"packed vector of {length} values needs {expected} ciphertexts at {slots} "
                f"slots each, got {len(ciphertexts)}"
            )
        if not 1 <= summands <= layout.max_summands:
            raise EncodingOverflowError(
                f"packed vector sums {summands} vectors; the layout's {layout.headroom_bits} "
                f"headroom bits allow 1 to {layout.max_summands}"
            )
        self.public_key = public_key
        self.ciphertexts = ciphertexts
        self.layout = layout
        self.length = length
        self.slots = slots
        self.summands = summands

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"PackedVector(len={self.length}, ciphertexts={len(self.ciphertexts)}, "
            f"summands={self.summands}, layout={self.layout})"
        )

    def add(self, other: PackedVector) -> PackedVector:
        """Return the slotwise sum; summand counts add up.

        Raises
        ------
        HEError
            If keys, layouts or lengths differ.
        EncodingOverflowError
            If the sum would count more summands than the headroom allows.
        """
        return sum_vectors([self, other])

    def __add__(self, other: PackedVector) -> PackedVector:
        return self.add(other)

    def to_bytes(self) -> bytes:
        """Serialise to the binary wire format of :mod:`sealfl.he._wire`."""
        from sealfl.he._wire import vector_to_bytes

        return vector_to_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes, public_key: PaillierPublicKey) -> PackedVector:
        """Parse and check a packed vector serialised by :meth:`to_bytes`."""
        from sealfl.he._wire import vector_from_bytes

        vector = vector_from_bytes(data, public_key)
        if not isinstance(vector, PackedVector):
            raise HEError("expected a packed encrypted vector, got an unpacked one")
        return vector


V = TypeVar("V", EncryptedVector, PackedVector)


def _product(columns: Sequence[Sequence[mpz]], nsquare: mpz) -> list[mpz]:
    out = list(columns[0])
    for column in columns[1:]:
        out = [a * b % nsquare for a, b in zip(out, column, strict=True)]
    return out


def sum_vectors(vectors: Iterable[V]) -> V:
    """Return the sum of one or more encrypted vectors of the same kind, key and length.

    Unpacked vectors must share a scale; packed vectors a layout, and their summand counts
    add up (at most ``layout.max_summands``).

    Raises
    ------
    HEError
        If the list is empty or the vectors are not compatible.
    EncodingOverflowError
        If the sum could overflow.
    """
    items = list(vectors)
    if not items:
        raise HEError("sum_vectors: need at least one vector, got none")
    first = items[0]
    for index, v in enumerate(items[1:], start=1):
        if type(v) is not type(first):
            raise HEError(
                f"sum_vectors: vector {index} is {type(v).__name__}, expected "
                f"{type(first).__name__}"
            )
        _check_same_key(first.public_key, v.public_key, "sum_vectors")
        _check_length(len(first), len(v), "sum_vectors", f"vector {index}")
    nsquare = first.public_key.nsquare
    columns = [v.ciphertexts for v in items]
    if isinstance(first, EncryptedVector):
        scales = {v.scale_bits for v in items}
        if len(scales) != 1:
            raise HEError(
                f"sum_vectors: scales differ ({sorted(scales)}); align them with align_scales()"
            )
        bound = max(v.bound_bits for v in items) + bits_for_sum(len(items))
        return EncryptedVector(
            first.public_key,
            _product(columns, nsquare),
            scale_bits=first.scale_bits,
            bound_bits=bound,
        )
    layouts = {v.layout for v in items}
    if len(layouts) != 1:
        raise HEError(f"sum_vectors: packed layouts differ: {sorted(map(str, layouts))}")
    summands = sum(v.summands for v in items)
    if summands > first.layout.max_summands:
        raise EncodingOverflowError(
            f"sum_vectors: the sum would hold {summands} summands; the layout's "
            f"{first.layout.headroom_bits} headroom bits allow at most {first.layout.max_summands}"
        )
    return PackedVector(
        first.public_key,
        _product(columns, nsquare),
        layout=first.layout,
        length=first.length,
        summands=summands,
    )

"""Fixed-point encodings of float vectors as Paillier plaintexts.

Unpacked (one value per ciphertext)
    ``x ↦ round(x·2^f)``, negative values wrapping modulo ``n``. The *scale* ``f`` (fraction
    bits) travels with the encrypted vector and grows when it is multiplied by an encoded
    plaintext, so the result is always ``integer / 2^scale``. A declared range
    ``|x| < 2^integer_bits`` gives a public bound on every plaintext, which each operation
    updates; an operation whose bound could reach ``2^(bits-2) <= n/2`` is refused before it
    could wrap.

Packed (:class:`PackedLayout`, many values per ciphertext)
    A slot holds ``round(x·2^f) + bias`` with ``bias = 2^(value_bits-1)``, so every slot is
    non-negative and carries never cross into the next slot. Above the value bits each slot
    keeps ``headroom_bits`` zero bits, room for the sum of up to ``2^headroom_bits`` vectors.
    The number of summands travels with the vector, and decoding removes ``summands·bias``.
    Packing only supports addition: negation or scaling would break the slot invariants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sealfl.errors import ConfigError, EncodingOverflowError, HEError

DEFAULT_FRACTION_BITS = 24
DEFAULT_INTEGER_BITS = 20
MAX_SLOT_BITS = 62


def as_float_vector(values: ArrayLike, *, what: str = "values") -> NDArray[np.float64]:
    """Return ``values`` as a 1-D float64 array with only finite entries.

    Raises
    ------
    HEError
        If the input is not one-dimensional or holds NaN or infinity.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise HEError(f"{what} must be a 1-D vector, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise HEError(f"{what}[{bad[0]}] is {array[bad[0]]}; only finite values can be encoded")
    return array


def scaled_integers(
    values: NDArray[np.float64], fraction_bits: int, limit_bits: int, *, what: str
) -> NDArray[np.int64] | list[int]:
    """Return ``round(values·2^fraction_bits)``, checking ``|result| < 2^limit_bits``.

    The result is an int64 array when the limit allows (the fast path), else a list of Python
    ints. Multiplying a float64 by a power of two is exact, so only the rounding is lossy.

    Raises
    ------
    EncodingOverflowError
        Naming the first entry whose magnitude reaches ``2^(limit_bits - fraction_bits)``.
    """
    with np.errstate(over="ignore"):
        scaled = np.rint(np.ldexp(values, fraction_bits))
    if np.all(np.isfinite(scaled)):
        limit = math.inf if limit_bits >= 1024 else 2.0**limit_bits  # any float fits 2^1024
        too_big = np.flatnonzero(np.abs(scaled) >= limit)
        ints: NDArray[np.int64] | list[int] = (
            scaled.astype(np.int64) if limit_bits <= 62 else [int(v) for v in scaled]
        )
    else:
        # x·2^f left the float range: scale exactly with Python integers (rare, slow path).
        ints = [round(Fraction(float(v)) * (1 << fraction_bits)) for v in values]
        too_big = np.array([i for i, v in enumerate(ints) if abs(v) >> limit_bits], dtype=int)
    if too_big.size:
        i = int(too_big[0])
        raise EncodingOverflowError(
            f"{what}[{i}] = {float(values[i])!r} does not fit the encoding: expected "
            f"|value| < 2^{limit_bits - fraction_bits} at {fraction_bits} fraction bits"
        )
    return ints


def max_abs_bits(integers: NDArray[np.int64] | list[int]) -> int:
    """Bit length of the largest magnitude in ``integers`` (0 for an empty or all-zero input)."""
    if isinstance(integers, np.ndarray):
        if integers.size == 0:
            return 0
        return int(np.max(np.abs(integers))).bit_length()
    return max((abs(v).bit_length() for v in integers), default=0)


def decode_signed(plaintexts: list[int], n: int, scale_bits: int) -> NDArray[np.float64]:
    """Map plaintexts in ``[0, n)`` to signed integers (upper half is negative) and unscale.

    Python's ``int / int`` rounds correctly even for integers beyond the float range.
    """
    half = n // 2
    denominator = 1 << scale_bits
    return np.array(
        [(m - n if m > half else m) / denominator for m in plaintexts], dtype=np.float64
    )


@dataclass(frozen=True)
class PackedLayout:
    """Slot layout of packed vectors: precision, range and summation headroom.

    Each slot is ``1 + integer_bits + fraction_bits + headroom_bits`` bits. The defaults give
    45-bit slots, 45 per 2048-bit plaintext (11.4 bytes per float in a 512-byte ciphertext),
    values with ``-1024 <= x < 1024`` at a resolution of ``2^-24 ≈ 6e-8`` (rounding error at
    most ``3e-8``), and sums of up to 1024 vectors. Model weights and updates in federated
    learning fit; choose a wider ``integer_bits`` for larger values (fewer slots).

    Parameters
    ----------
    fraction_bits
        Bits after the binary point; rounding error is at most ``2^-(fraction_bits+1)``.
    integer_bits
        Encodable values satisfy ``-2^integer_bits <= x < 2^integer_bits`` (after rounding).
    headroom_bits
        Free bits above each value so that up to ``2^headroom_bits`` vectors can be summed.
    """

    fraction_bits: int = DEFAULT_FRACTION_BITS
    integer_bits: int = 10
    headroom_bits: int = 10

    def __post_init__(self) -> None:
        for name in ("fraction_bits", "integer_bits", "headroom_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"PackedLayout.{name} must be an int >= 0, got {value!r}")
        if self.slot_bits > MAX_SLOT_BITS:
            raise ConfigError(
                f"PackedLayout slot of {self.slot_bits} bits exceeds the {MAX_SLOT_BITS}-bit "
                "maximum (1 + integer_bits + fraction_bits + headroom_bits)"
            )

    @classmethod
    def for_summands(
        cls,
        summands: int,
        *,
        fraction_bits: int = DEFAULT_FRACTION_BITS,
        integer_bits: int = 10,
    ) -> PackedLayout:
        """Return the layout with just enough headroom to sum ``summands`` vectors.

        Raises
        ------
        ConfigError
            If ``summands`` is not a positive integer.
        """
        if not isinstance(summands, int) or isinstance(summands, bool) or summands < 1:
            raise ConfigError(f"summands must be a positive integer, got {summands!r}")
        return cls(
            fraction_bits=fraction_bits,
            integer_bits=integer_bits,
            headroom_bits=(summands - 1).bit_length(),
        )

    @property
    def value_bits(self) -> int:
        """Bits of one biased value: sign, integer part and fraction."""
        return 1 + self.integer_bits + self.fraction_bits

    @property
    def slot_bits(self) -> int:
        """Bits of one slot: the value plus the summation headroom."""
        return self.value_bits + self.headroom_bits

    @property
    def bias(self) -> int:
        """Offset added to every encoded value so that slots never hold negative numbers."""
        return 1 << (self.value_bits - 1)

    @property
    def max_summands(self) -> int:
        """Largest number of vectors whose sum still fits every slot."""
        return 1 << self.headroom_bits

    def slots_for(self, key_bits: int) -> int:
        """Return the number of slots that fit below ``2^(key_bits-1)``, hence below ``n``."""
        slots = (key_bits - 1) // self.slot_bits
        if slots < 1:
            raise ConfigError(f"a {self.slot_bits}-bit slot does not fit a {key_bits}-bit key")
        return slots

    def pack(self, values: NDArray[np.float64], slots: int) -> list[int]:
        """Encode ``values`` and pack ``slots`` of them per plaintext, slot 0 in the low bits.

        Raises
        ------
        EncodingOverflowError
            If a value is outside ``[-2^integer_bits, 2^integer_bits)`` after rounding.
        """
        # |x·2^f| < 2^value_bits makes int64 safe; the slot range [-bias, bias) is checked next.
        scaled = scaled_integers(values, self.fraction_bits, self.value_bits, what="values")
        ints = np.asarray(scaled, dtype=np.int64)
        outside = np.flatnonzero((ints < -self.bias) | (ints >= self.bias))
        if outside.size:
            i = int(outside[0])
            raise EncodingOverflowError(
                f"values[{i}] = {float(values[i])!r} does not fit the packed encoding: expected "
                f"-2^{self.integer_bits} <= value < 2^{self.integer_bits} at "
                f"{self.fraction_bits} fraction bits"
            )
        biased = (ints + self.bias).tolist()
        width = self.slot_bits
        plaintexts = []
        for start in range(0, len(biased), slots):
            acc = 0
            for v in reversed(biased[start : start + slots]):
                acc = (acc << width) | v
            plaintexts.append(acc)
        return plaintexts

    def unpack(
        self, plaintexts: list[int], length: int, slots: int, summands: int
    ) -> NDArray[np.float64]:
        """Split plaintexts into slots, remove ``summands·bias`` and unscale.

        Raises
        ------
        EncodingOverflowError
            If a plaintext has bits above its last slot (a sum overflowed or the data is not
            a packed vector of this layout), a slot holds more than ``summands`` biased values
            can add up to (the summand count was understated), or a slot past ``length`` is
            not empty.
        """
        width = self.slot_bits
        mask = (1 << width) - 1
        raw: list[int] = []
        for index, m in enumerate(plaintexts):
            if m >> (width * slots):
                raise EncodingOverflowError(
                    f"plaintext {index} has bits above slot {slots - 1}: the packed sum "
                    "overflowed, or the vector does not use this layout"
                )
            raw.extend((m >> (width * j)) & mask for j in range(slots))
        extra = np.flatnonzero(raw[length:])
        if extra.size:
            raise EncodingOverflowError(
                f"slot {length + int(extra[0])} is beyond the vector's {length} values but not "
                "empty: the length was altered, or the vector does not use this layout"
            )
        slots_array = np.array(raw[:length], dtype=np.int64)
        # Each summand's biased value is below 2^value_bits, so no honest slot exceeds this.
        most = summands * ((1 << self.value_bits) - 1)
        over = np.flatnonzero(slots_array > most)
        if over.size:
            raise EncodingOverflowError(
                f"slot {int(over[0])} holds more than {summands} summand(s) can hold: the "
                "summand count was understated, or a sum overflowed"
            )
        centred = slots_array - summands * self.bias
        return np.ldexp(centred.astype(np.float64), -self.fraction_bits)


def bits_for_sum(count: int) -> int:
    """Extra bits a sum of ``count`` terms may need over its largest term: ``⌈log2(count)⌉``."""
    return (count - 1).bit_length() if count > 0 else 0

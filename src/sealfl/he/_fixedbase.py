"""Fixed-base exponentiation with one precomputed table row per byte of the exponent.

When the base never changes (the DJN generator ``h_s``), ``base^e`` for an exponent of ``8·W``
bits costs at most ``W - 1`` modular multiplications and no squaring: row ``i`` of the table
holds ``base^(k·256^i)`` for ``k = 0..255``, and the exponent's little-endian bytes pick one
entry per row. Byte windows keep the digit extraction in C (``int.to_bytes``) rather than in a
Python loop. For a 1024-bit exponent modulo a 4096-bit ``n²`` this replaces about 1200
multiplications of a square-and-multiply with 127, at the price of a 16 MiB table.
"""

from __future__ import annotations

from gmpy2 import mpz

_WINDOW = 256


class FixedBaseTable:
    """Precomputed powers of one base for exponents below ``2^exponent_bits``.

    Parameters
    ----------
    base
        The fixed base, already reduced modulo ``modulus``.
    modulus
        The modulus of every product.
    exponent_bits
        Largest exponent size the table serves; larger exponents raise ``ValueError``.
    """

    __slots__ = ("_modulus", "_nbytes", "_rows")

    def __init__(self, base: mpz, modulus: mpz, exponent_bits: int) -> None:
        self._modulus = modulus
        self._nbytes = (exponent_bits + 7) // 8
        rows: list[list[mpz]] = []
        row_base = mpz(base) % modulus
        for _ in range(self._nbytes):
            row = [mpz(1), row_base]
            for _k in range(2, _WINDOW):
                row.append(row[-1] * row_base % modulus)
            rows.append(row)
            row_base = row[-1] * row_base % modulus
        self._rows = rows

    def pow(self, exponent: int) -> mpz:
        """Return ``base^exponent mod modulus`` for ``0 <= exponent < 2^(8·rows)``."""
        digits = exponent.to_bytes(self._nbytes, "little")
        modulus = self._modulus
        acc = None
        for row, digit in zip(self._rows, digits, strict=True):
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % modulus
        return mpz(1) if acc is None else acc

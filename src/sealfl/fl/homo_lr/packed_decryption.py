"""The PS's decryption of one submission for its value check: packed, and checked at random.

Decrypting a ciphertext modulo ``p`` costs one exponentiation by ``p − 1`` modulo ``p²``
(about 1 ms at 2048 bits), so checking a 31-entry update entry by entry cost the PS as much
as the worker's whole step. The plaintexts are small (an honest entry is below ``2^90``,
against ``p ≈ 2^1024``), so the PS packs them first, inside the enclave and with its own
key: ``C = Π c_i^(2^(s·i)) mod p²`` holds ``Σ m_i·2^(s·i)`` with slots of ``s = bound + 1``
bits, about eleven entries per ciphertext, and the packing costs squarings only (``s`` per
entry, against ``1024`` for a decryption). Three decryptions then give all 31 entries.

Packing alone would trust the worker: entries beyond their slot spill into the next one, and
``(m_0 + 2^s, m_1 − 1)`` packs exactly like ``(m_0, m_1)``, so an out-of-range update could
decode to in-range values that it does not hold. The PS therefore also decrypts one random
combination ``Π c_i^(ρ_i)`` with secret, fresh 64-bit ``ρ_i`` and checks that it equals
``Σ ρ_i·v_i mod p`` for the decoded values ``v_i``. If some true entry ``m_i ≢ v_i (mod p)``,
the difference is a fixed nonzero vector chosen before the ``ρ_i`` were drawn, and
``Σ ρ_i·(m_i − v_i) ≡ 0 (mod p)`` has probability at most ``2^-64`` (for any fixed other
``ρ_j``, at most one of the ``2^64`` values of ``ρ_i`` satisfies it, ``p`` being prime and
larger). So, except with that probability, the decoded values are the entries' residues
modulo ``p``, which is what the entry-by-entry decryption returned: the same values, and the
same refusals (:class:`~sealfl.errors.HEError`) for a vector that breaks its declared bound.

Cost at 2048 bits, 31 entries: 3 packed decryptions + 1 for the combination + about 2.5 ms
of packing and combining, against 31 decryptions.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2
from gmpy2 import mpz

from sealfl.errors import HEError

CHECK_BITS = 64
"""Bits of each secret coefficient of the random combination: a vector whose entries are not
what their packing decodes to passes with probability at most ``2^-CHECK_BITS``."""

MIN_SLOTS = 2
"""Fewest entries a packed ciphertext must hold to be worth it; with larger declared bounds
the PS decrypts entry by entry."""


def decrypt_signed(
    ciphertexts: Sequence[mpz], bound_bits: int, *, p: mpz, psquare: mpz, hp: mpz
) -> list[int]:
    """Return the plaintexts of ``ciphertexts`` modulo ``p`` as signed integers.

    ``hp = L_p(g^(p−1) mod p²)^−1 mod p``. Exact for every plaintext within ``±p/2``; packed
    when ``bound_bits`` leaves room for :data:`MIN_SLOTS` entries per ciphertext.

    Raises
    ------
    HEError
        If an entry is not below ``2^bound_bits`` in magnitude (modulo ``p``): naming the
        entry when its decryption shows it, or when the packed decoding fails its random
        check.
    """
    reduced = [c % psquare for c in ciphertexts]
    slot = bound_bits + 1
    per_pack = (int(p.bit_length()) - 1) // slot
    if per_pack < MIN_SLOTS:
        return _each(reduced, bound_bits, p=p, psquare=psquare, hp=hp)
    return _packed(reduced, bound_bits, per_pack, p=p, psquare=psquare, hp=hp)


def _plaintexts(ciphertexts: Sequence[mpz], *, p: mpz, psquare: mpz, hp: mpz) -> list[mpz]:
    """Decrypt modulo ``p`` into ``[0, p)``: ``L_p(c^(p−1) mod p²)·h_p mod p``."""
    # gmpy2's list functions release the GIL: submissions decrypt side by side on threads.
    powered = gmpy2.powmod_base_list(list(ciphertexts), p - 1, psquare)
    return [(x - 1) // p * hp % p for x in powered]


def _each(reduced: list[mpz], bound_bits: int, *, p: mpz, psquare: mpz, hp: mpz) -> list[int]:
    half, limit = p // 2, 1 << bound_bits
    values = []
    for index, m in enumerate(_plaintexts(reduced, p=p, psquare=psquare, hp=hp)):
        signed = int(m) if m <= half else int(m - p)
        if abs(signed) >= limit:
            raise HEError(
                f"decrypted entry {index} exceeds the vector's declared bound of 2^{bound_bits}"
            )
        values.append(signed)
    return values


def _packed(
    reduced: list[mpz], bound_bits: int, per_pack: int, *, p: mpz, psquare: mpz, hp: mpz
) -> list[int]:
    slot = bound_bits + 1
    shift = mpz(1) << slot
    groups = [reduced[i : i + per_pack] for i in range(0, len(reduced), per_pack)]
    # Horner, from each group's top slot down, so that entry i lands at bit s·i; the groups
    # advance together so that each shift is one list call, which releases the GIL (two
    # submissions' checks then run on two cores, not one after the other).
    packs = [group[-1] for group in groups]
    for depth in range(2, per_pack + 1):
        open_ = [g for g, group in enumerate(groups) if len(group) >= depth]
        shifted = gmpy2.powmod_base_list([packs[g] for g in open_], shift, psquare)
        for g, value in zip(open_, shifted, strict=True):
            packs[g] = value * groups[g][-depth] % psquare
    rho = [secrets.randbits(CHECK_BITS) for _ in reduced]
    combination = _multi_power(reduced, rho, psquare)
    *packed, combined = _plaintexts([*packs, combination], p=p, psquare=psquare, hp=hp)
    offset, mask = mpz(1) << bound_bits, shift - 1
    values: list[int] = []
    for group, plain in zip(groups, packed, strict=True):
        # Each signed entry plus 2^bound fills its slot exactly when it is within the bound.
        lifted = (plain + sum(offset << (slot * i) for i in range(len(group)))) % p
        for _ in group:
            entry = int(lifted & mask) - int(offset)
            if entry == -int(offset):  # -2^bound: outside |m| < 2^bound
                raise HEError(
                    f"decrypted entry {len(values)} exceeds the vector's declared bound of "
                    f"2^{bound_bits}"
                )
            values.append(entry)
            lifted >>= slot
        if lifted:
            raise HEError(
                f"decrypted entries {len(values) - len(group)}–{len(values) - 1} exceed the "
                f"vector's declared bound of 2^{bound_bits} (their packing overflows)"
            )
    if sum(r * v for r, v in zip(rho, values, strict=True)) % p != combined:
        raise HEError(
            f"decrypted entries exceed the vector's declared bound of 2^{bound_bits} (their "
            "packed decoding fails the PS's random check)"
        )
    return values


_WINDOW = 4


def _multi_power(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> mpz:
    """Return ``Π bases[i]^exponents[i] mod modulus`` (non-negative exponents).

    Pippenger's buckets, 4-bit windows: per window, each base multiplies into the bucket of its
    digit and the buckets are summed with the running-product trick; about 1000
    multiplications for 31 bases and 64-bit exponents, against 2400 for one ``powmod`` each.
    """
    acc = mpz(1)
    top = max(int(e).bit_length() for e in exponents) if exponents else 0
    for shift in range((top - 1) // _WINDOW * _WINDOW, -1, -_WINDOW):
        for _ in range(_WINDOW):
            acc = acc * acc % modulus
        buckets: list[mpz | None] = [None] * (1 << _WINDOW)
        for base, exponent in zip(bases, exponents, strict=True):
            digit = (exponent >> shift) & ((1 << _WINDOW) - 1)
            if digit:
                held = buckets[digit]
                buckets[digit] = base if held is None else held * base % modulus
        running, total = mpz(1), mpz(1)
        for held in reversed(buckets[1:]):  # Σ d·bucket_d as running products
            if held is not None:
                running = running * held % modulus
            total = total * running % modulus
        acc = acc * total % modulus
    return acc

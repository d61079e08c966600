"""Many multi-exponentiations over shared bases: ``out_i = Π_j base_j^E[i, j] mod m``.

This is the kernel of both encrypted matrix products (``X @ Enc(w)`` has the ciphertexts of
``w`` as bases and ``X`` as exponents; ``Enc(v) @ X`` has ``v``'s ciphertexts and ``Xᵀ``).
The exponents are small signed integers (fixed-point matrix entries, about 20 bits), while a
modular multiplication at 2048-bit keys costs ~5 µs, so everything is about counting
multiplications:

* Exponents are recoded into signed base-``2^w`` digits in ``[-2^(w-1), 2^(w-1))``. A negative
  digit multiplies into a separate accumulator ``N`` that is inverted once per output at the
  end (batched with Montgomery's trick, three multiplications each), so no base is ever
  inverted and tables only hold positive powers up to ``2^(w-1)``.
* **comb** (fixed-base tables, for many outputs per base): for every base ``j`` and digit
  position ``t`` a table of ``base_j^(k·2^(wt))``, ``k = 1..2^(w-1)``; then every nonzero digit
  costs one multiplication and there are no squarings at all.
* **bucket** (Pippenger, for many bases per output): exponents in width-``w`` NAF (odd digits,
  one nonzero per ``w + 1`` bits on average); only ``base_j^(2^i)`` are precomputed; per
  output, digits are sorted into buckets by value and the buckets are combined with the
  running-product trick (two multiplications per odd bucket value).

:func:`multi_exponentiate` estimates the multiplication count of both for every window width
and runs the cheapest; large problems are split by bases over worker processes and the partial
products multiplied together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz
from numpy.typing import NDArray

from sealfl.he._parallel import resolve_cores, run_in_processes, split_evenly

_WINDOWS = range(3, 10)
_NAF_WINDOWS = range(5, 8)
# Below this many matrix entries (at ~4 multiplications each, ~15 ms at 2048 bits) a product
# stays in the calling process: a worker would cost more than it saves.
PARALLEL_MIN_ENTRIES = 800
EXPONENT_LIMIT_BITS = 62


def signed_digits(exponents: NDArray[np.int64], window: int) -> NDArray[np.int64]:
    """Recode ``exponents`` into digits ``d_t ∈ [-2^(w-1), 2^(w-1))`` with ``e = Σ d_t·2^(wt)``.

    Returns an array of shape ``(T, *exponents.shape)``; ``T`` is just enough for the largest
    magnitude (0 when every exponent is 0).
    """
    half, mask = 1 << (window - 1), (1 << window) - 1
    rest = exponents.astype(np.int64, copy=True)
    digits = []
    while np.any(rest):
        digit = ((rest + half) & mask) - half
        digits.append(digit)
        rest = (rest - digit) >> window
    if not digits:
        return np.zeros((0, *exponents.shape), dtype=np.int64)
    return np.stack(digits)


def naf_digits(exponents: NDArray[np.int64], window: int) -> NDArray[np.int64]:
    """Recode ``exponents`` in width-``w`` NAF: ``e = Σ d_i·2^i``, sparse odd digits.

    Every nonzero ``d_i`` is odd with ``|d_i| < 2^(w-1)`` and followed by at least ``w - 1``
    zeros. About one bit in ``w + 1`` carries a nonzero digit, against one window in ``w`` for
    :func:`signed_digits`, and only odd digits need buckets. Returns shape ``(bits, ...)``.
    """
    half, mask = 1 << (window - 1), (1 << window) - 1
    rest = exponents.astype(np.int64, copy=True)
    digits = []
    while np.any(rest):
        digit = np.where(rest & 1, ((rest + half) & mask) - half, 0)
        digits.append(digit)
        rest = (rest - digit) >> 1
    if not digits:
        return np.zeros((0, *exponents.shape), dtype=np.int64)
    return np.stack(digits)


@dataclass(frozen=True)
class _Plan:
    method: str
    window: int
    cost: int


def _plan(exponents: NDArray[np.int64]) -> tuple[_Plan, NDArray[np.int64]]:
    """Choose kernel and window by estimated multiplications; return them with the digits.

    Comb costs are exact counts from the recoded digits. Bucket costs estimate the NAF weight
    as ``w/(w+1)`` of the fixed-window weight (NAF recoding is the slow part of planning),
    and only the chosen window is recoded.
    """
    outputs, bases = exponents.shape
    best: tuple[_Plan, NDArray[np.int64]] | None = None
    weights: dict[int, int] = {}
    for window in _WINDOWS:
        digits = signed_digits(exponents, window)
        positions = digits.shape[0]
        weights[window] = int(np.count_nonzero(digits))
        table = int(np.max(np.abs(digits), axis=1).sum()) if positions else 0
        cost = table + bases * max(positions - 1, 0) + weights[window] + 4 * outputs
        if best is None or cost < best[0].cost:
            best = (_Plan("comb", window, cost), digits)
    assert best is not None
    if bases <= outputs:  # buckets pay off only with many bases per output
        return best
    bits = int(np.max(np.abs(exponents), initial=0)).bit_length() + 1
    bucket: _Plan | None = None
    for window in _NAF_WINDOWS:
        weight = weights[window] * window // (window + 1)
        cost = bases * (bits - 1) + weight + outputs * ((1 << window) + 8)
        if bucket is None or cost < bucket.cost:
            bucket = _Plan("bucket", window, cost)
    if bucket is None or bucket.cost >= best[0].cost:
        return best
    return bucket, naf_digits(exponents, bucket.window)


def _batch_invert(values: list[mpz], modulus: mpz) -> list[mpz]:
    """Invert every value with one modular inversion and ``3·(len - 1)`` multiplications."""
    if not values:
        return []
    prefix = [values[0]]
    for v in values[1:]:
        prefix.append(prefix[-1] * v % modulus)
    inverse = gmpy2.invert(prefix[-1], modulus)
    out = [mpz(0)] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inverse * prefix[i - 1] % modulus
        inverse = inverse * values[i] % modulus
    out[0] = inverse
    return out


def _finish(positive: list[mpz | None], negative: list[mpz | None], modulus: mpz) -> list[mpz]:
    """Return ``P_i · N_i^-1`` for every output (a missing factor counts as 1)."""
    which = [i for i, v in enumerate(negative) if v is not None]
    inverses = _batch_invert([v for v in negative if v is not None], modulus)
    out = [mpz(1) if p is None else p for p in positive]
    for i, inv in zip(which, inverses, strict=True):
        out[i] = out[i] * inv % modulus
    return out


def _product(factors: Sequence[mpz], indices: Sequence[int], modulus: mpz) -> mpz | None:
    """Return ``Π factors[i] for i in indices mod modulus`` (``None`` for no index)."""
    if not indices:
        return None
    acc = factors[indices[0]]
    for i in indices[1:]:
        acc = acc * factors[i] % modulus
    return acc


def _rows_of_nonzero(flat: NDArray[np.int64]) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Per row of ``flat``: the column indices of its nonzero digits and those digits."""
    rows, cols = np.nonzero(flat)
    values = flat[rows, cols]
    bounds = np.searchsorted(rows, np.arange(flat.shape[0] + 1))
    return [
        (cols[bounds[r] : bounds[r + 1]], values[bounds[r] : bounds[r + 1]])
        for r in range(flat.shape[0])
    ]


def _comb(bases: Sequence[mpz], digits: NDArray[np.int64], window: int, modulus: mpz) -> list[mpz]:
    positions, outputs, nbases = digits.shape
    half = 1 << (window - 1)
    largest = np.max(np.abs(digits), axis=1)  # (positions, bases): largest |digit| used
    # table[(j * positions + t) * half + k - 1] = base_j^(k·2^(w·t)) for k up to largest[t, j].
    table: list[mpz] = [mpz(1)] * (nbases * positions * half)
    for j, base in enumerate(bases):
        power = mpz(base)
        for t in range(positions):
            start, need = (j * positions + t) * half, int(largest[t, j])
            last = t + 1 == positions
            # The next position's base is this one's power 2^w: one more product from a full
            # row (entry half, squared), else w squarings; build the row only as far as pays.
            if not last and half - need < window:
                need = half
            entry = power
            for k in range(need):
                if k:
                    entry = entry * power % modulus
                table[start + k] = entry
            if last:
                break
            if need == half:
                power = entry * entry % modulus
            else:
                for _ in range(window):
                    power = power * power % modulus
    flat = digits.transpose(1, 2, 0).reshape(outputs, nbases * positions)
    positive: list[mpz | None] = []
    negative: list[mpz | None] = []
    for cols, values in _rows_of_nonzero(flat):
        index = cols * half + np.abs(values) - 1
        positive.append(_product(table, index[values > 0].tolist(), modulus))
        negative.append(_product(table, index[values < 0].tolist(), modulus))
    return _finish(positive, negative, modulus)


def _aggregate_odd_buckets(
    powers: Sequence[mpz], cols: NDArray[np.int64], digits: NDArray[np.int64], modulus: mpz
) -> mpz | None:
    """Return ``Π powers[c]^d`` over positive odd digits ``d``, by buckets.

    Bucket ``j`` multiplies every power whose digit is ``2j + 1``. With the running-product
    trick, ``S = Π_j bucket_j^j`` costs two multiplications per bucket value and leaves
    ``T = Π_j bucket_j`` in the running product; the result is ``S²·T``.
    """
    if digits.size == 0:
        return None
    order = np.argsort(-digits, kind="stable")
    cols_list, slots = cols[order].tolist(), ((digits[order] - 1) >> 1).tolist()
    running: mpz | None = None
    total: mpz | None = None
    i, count = 0, len(slots)
    for j in range(slots[0], -1, -1):
        while i < count and slots[i] == j:
            factor = powers[cols_list[i]]
            running = factor if running is None else running * factor % modulus
            i += 1
        if j and running is not None:
            total = running if total is None else total * running % modulus
    assert running is not None
    if total is None:
        return running
    return total * total % modulus * running % modulus


def _bucket(
    bases: Sequence[mpz], digits: NDArray[np.int64], window: int, modulus: mpz
) -> list[mpz]:
    """Bucket kernel over width-``window`` NAF digits (:func:`naf_digits`)."""
    bits, outputs, nbases = digits.shape
    powers: list[mpz] = []
    for base in bases:
        power = mpz(base)
        for i in range(bits):
            powers.append(power)
            if i + 1 < bits:
                power = power * power % modulus
    flat = digits.transpose(1, 2, 0).reshape(outputs, nbases * bits)
    positive: list[mpz | None] = []
    negative: list[mpz | None] = []
    for cols, values in _rows_of_nonzero(flat):
        sign = values > 0
        positive.append(_aggregate_odd_buckets(powers, cols[sign], values[sign], modulus))
        negative.append(_aggregate_odd_buckets(powers, cols[~sign], -values[~sign], modulus))
    return _finish(positive, negative, modulus)


def _multi_exponentiate_here(
    bases: Sequence[mpz], exponents: NDArray[np.int64], modulus: mpz
) -> list[mpz]:
    plan, digits = _plan(exponents)
    if digits.shape[0] == 0:
        return [mpz(1)] * exponents.shape[0]
    kernel = _comb if plan.method == "comb" else _bucket
    return kernel(bases, digits, plan.window, modulus)


def multi_exponentiate(
    bases: Sequence[mpz],
    exponents: NDArray[np.int64],
    modulus: mpz,
    *,
    cores: int | None = None,
) -> list[mpz]:
    """Return ``[Π_j bases[j]^exponents[i, j] mod modulus for every row i]``.

    Parameters
    ----------
    bases
        Units modulo ``modulus`` (negative exponents need their inverses to exist).
    exponents
        Integer matrix of shape ``(outputs, len(bases))``, entries below ``2^62`` in magnitude.
    modulus
        The modulus (``n²`` for Paillier ciphertexts).
    cores
        Cores to use; ``None`` means all this process may run on.
    """
    exponents = np.asarray(exponents, dtype=np.int64)
    if exponents.ndim != 2 or exponents.shape[1] != len(bases):
        raise ValueError(
            f"exponents must have shape (outputs, {len(bases)}), got {exponents.shape}"
        )
    workers = resolve_cores(cores)
    if workers > 1 and exponents.size >= PARALLEL_MIN_ENTRIES:
        shares = split_evenly(len(bases), workers)
    else:
        shares = [(0, len(bases))]
    jobs = [(list(bases[start:stop]), exponents[:, start:stop], modulus) for start, stop in shares]
    partials = run_in_processes(_multi_exponentiate_here, jobs, workers=workers)
    out = partials[0]
    for partial in partials[1:]:
        out = [a * b % modulus for a, b in zip(out, partial, strict=True)]
    return out

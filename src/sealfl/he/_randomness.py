"""Sources of the random ``n``-th residues that make Paillier encryption probabilistic.

Three modes (:class:`Randomness`):

``DJN`` (default)
    Damgård–Jurik–Nielsen short exponents: ``ρ = h_s^a`` with ``h_s = (-x²)^n mod n²`` for a
    random ``x`` drawn once per process, and a fresh random ``a`` of ``⌈k/2⌉`` bits for a
    ``k``-bit ``n``. ``h_s`` is fixed, so a :class:`~sealfl.he._fixedbase.FixedBaseTable` turns
    each ``h_s^a`` into ~102 multiplications. Security rests on the DJN assumption that such
    ``h_s^a`` are indistinguishable from uniform ``n``-th residues. With the private key at
    hand the tables work modulo ``p²`` and ``q²`` (CRT), on half-size numbers.
``CRT``
    Uniform ``n``-th residues (no extra assumption, the distribution of ``r^n``), computed
    modulo ``p²`` and ``q²`` with the private key and recombined: about four times faster than
    ``TEXTBOOK`` (see :class:`_CRTSource`).
``TEXTBOOK``
    Uniform ``r^n mod n²`` with the public key only: what python-paillier does.
"""

from __future__ import annotations

import enum
import secrets
import threading
from collections import OrderedDict
from typing import Protocol

import gmpy2
from gmpy2 import mpz

from sealfl.errors import ConfigError
from sealfl.he._fixedbase import FixedBaseTable
from sealfl.he._keys import PaillierPrivateKey, PaillierPublicKey


class Randomness(enum.Enum):
    """How encryption draws its random ``n``-th residue; see the module docstring."""

    DJN = "djn"
    CRT = "crt"
    TEXTBOOK = "textbook"


class ResidueSource(Protocol):
    """Something that draws random ``n``-th residues modulo ``n²``."""

    def draw(self, count: int) -> list[mpz]:
        """Return ``count`` independent random ``n``-th residues modulo ``n²``."""
        ...


def _random_unit(n: mpz) -> mpz:
    while True:
        r = mpz(secrets.randbelow(int(n) - 1) + 1)
        if gmpy2.gcd(r, n) == 1:
            return r


def _djn_generator(n: mpz) -> mpz:
    """Return ``h = -x² mod n`` for a fresh random unit ``x`` (DJN's generator before ``^n``)."""
    x = _random_unit(n)
    return (-(x * x)) % n


class _TextbookSource:
    def __init__(self, public_key: PaillierPublicKey) -> None:
        self._n = public_key.n_mpz
        self._nsquare = public_key.nsquare

    def draw(self, count: int) -> list[mpz]:
        bases = [_random_unit(self._n) for _ in range(count)]
        return list(gmpy2.powmod_base_list(bases, self._n, self._nsquare))


class _CRTSource:
    """Uniform ``n``-th residues from the private key, with half-length exponents.

    Modulo ``p²`` the ``n``-th residues are exactly the subgroup of order ``p - 1`` (``n``-th
    powering kills the order-``p`` part and permutes the rest, as ``gcd(q, p - 1) = 1``), and
    ``s ↦ s^p mod p²`` maps a uniform ``s mod p`` uniformly onto that subgroup. So ``s^p mod p²``
    and ``t^q mod q²`` recombined by the CRT are distributed exactly like ``r^n mod n²``, for
    two 1024-bit exponentiations modulo 2048-bit numbers instead of one 2048-bit modulo 4096.
    """

    def __init__(self, private_key: PaillierPrivateKey) -> None:
        self._key = private_key

    def draw(self, count: int) -> list[mpz]:
        p, q, psquare, qsquare = self._key.crt_moduli
        rp = gmpy2.powmod_base_list([_random_unit(p) for _ in range(count)], p, psquare)
        rq = gmpy2.powmod_base_list([_random_unit(q) for _ in range(count)], q, qsquare)
        combine = self._key.crt_combine_square
        return [combine(a, b) for a, b in zip(rp, rq, strict=True)]


class _DJNSource:
    def __init__(self, public_key: PaillierPublicKey) -> None:
        n, nsquare = public_key.n_mpz, public_key.nsquare
        self._exponent_bits = (public_key.bits + 1) // 2
        h_s = gmpy2.powmod(_djn_generator(n), n, nsquare)
        self._table = FixedBaseTable(h_s, nsquare, self._exponent_bits)

    def draw(self, count: int) -> list[mpz]:
        bits, table = self._exponent_bits, self._table
        return [table.pow(secrets.randbits(bits)) for _ in range(count)]


class _DJNCRTSource:
    def __init__(self, private_key: PaillierPrivateKey) -> None:
        self._key = private_key
        public_key = private_key.public_key
        n = public_key.n_mpz
        _p, _q, psquare, qsquare = private_key.crt_moduli
        self._exponent_bits = (public_key.bits + 1) // 2
        h = _djn_generator(n)
        self._table_p = FixedBaseTable(gmpy2.powmod(h, n, psquare), psquare, self._exponent_bits)
        self._table_q = FixedBaseTable(gmpy2.powmod(h, n, qsquare), qsquare, self._exponent_bits)

    def draw(self, count: int) -> list[mpz]:
        bits, tp, tq = self._exponent_bits, self._table_p, self._table_q
        combine = self._key.crt_combine_square
        out = []
        for _ in range(count):
            a = secrets.randbits(bits)
            out.append(combine(tp.pow(a), tq.pow(a)))
        return out


# A source holds up to 64 MiB of tables: keep the two most recent keys per process.
_CACHE_SIZE = 2
_cache: OrderedDict[tuple[str, int, bool], ResidueSource] = OrderedDict()
_cache_lock = threading.Lock()


def check_randomness(
    public_key: PaillierPublicKey,
    randomness: Randomness,
    private_key: PaillierPrivateKey | None = None,
) -> None:
    """Refuse arguments :func:`residue_source` cannot serve, without building a source.

    Raises
    ------
    ConfigError
        If ``CRT`` randomness is asked for without the private key, or the private key does not
        belong to ``public_key``.
    """
    if private_key is not None and private_key.public_key != public_key:
        raise ConfigError(
            f"private key {private_key.public_key.fingerprint_hex} does not match public key "
            f"{public_key.fingerprint_hex}"
        )
    if randomness is Randomness.CRT and private_key is None:
        raise ConfigError("CRT randomness needs the private key; use DJN or TEXTBOOK instead")


def residue_source(
    public_key: PaillierPublicKey,
    randomness: Randomness,
    private_key: PaillierPrivateKey | None = None,
) -> ResidueSource:
    """Return a (cached) source of random ``n``-th residues for this key and mode.

    DJN tables take a fraction of a second to build and up to 64 MiB, so the last few sources
    are kept per process.

    Raises
    ------
    ConfigError
        As :func:`check_randomness`.
    """
    check_randomness(public_key, randomness, private_key)
    use_crt = private_key is not None and randomness is not Randomness.TEXTBOOK
    cache_key = (randomness.value, public_key.n, use_crt)
    with _cache_lock:
        source = _cache.get(cache_key)
        if source is not None:
            _cache.move_to_end(cache_key)
            return source
    if randomness is Randomness.TEXTBOOK:
        source = _TextbookSource(public_key)
    elif randomness is Randomness.CRT:
        assert private_key is not None
        source = _CRTSource(private_key)
    elif private_key is not None:
        source = _DJNCRTSource(private_key)
    else:
        source = _DJNSource(public_key)
    with _cache_lock:
        _cache[cache_key] = source
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return source

"""Paillier key pairs with ``g = n + 1``, raw integer encryption and CRT decryption.

With ``g = n + 1`` the message part of a ciphertext needs no exponentiation:
``g^m = 1 + m·n (mod n²)``. A ciphertext is ``c = (1 + m·n)·ρ mod n²`` where ``ρ`` is a random
``n``-th residue (``r^n``, or ``h_s^a`` for DJN randomness, see :mod:`sealfl.he._randomness`).
These are the ciphertexts of python-paillier (``phe``): the same ``n, p, q`` decrypt each other's
raw ciphertexts.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from collections.abc import Sequence

import gmpy2
from gmpy2 import mpz

from sealfl.errors import ConfigError, HEError

DEFAULT_KEY_BITS = 2048
ALLOWED_KEY_BITS = (1024, 2048, 3072)
MIN_KEY_BITS = 1024
_FINGERPRINT_DOMAIN = b"sealfl-paillier-public-key-v1\x00"
_MILLER_RABIN_ROUNDS = 40


class WeakKeyWarning(UserWarning):
    """A Paillier key shorter than 2048 bits (about 80-bit security) was made or loaded."""


def _warn_if_weak(bits: int) -> None:
    if bits < DEFAULT_KEY_BITS:
        warnings.warn(
            f"a {bits}-bit Paillier modulus gives about 80-bit security; use 2048 or 3072 bits "
            "outside tests and demos",
            WeakKeyWarning,
            stacklevel=3,
        )


class PaillierPublicKey:
    """A Paillier public key ``n`` (the generator is fixed to ``g = n + 1``).

    Parameters
    ----------
    n
        The modulus, a product of two distinct odd primes of equal size. Only its size and
        parity can be checked without the primes; a key loaded from a file is checked further.

    Attributes
    ----------
    n
        The modulus as a Python ``int``.
    nsquare
        ``n²`` as a gmpy2 ``mpz``; every ciphertext lies in ``[1, n²)``.
    bits
        Bit length of ``n``.
    fingerprint
        16 bytes of SHA-256 over ``n``: names the key in vector headers and key files, so a
        vector from another key is refused before any arithmetic.
    """

    __slots__ = ("_n", "bits", "ciphertext_bytes", "fingerprint", "nsquare")

    def __init__(self, n: int) -> None:
        n_mpz = mpz(n)
        if n_mpz <= 0:
            raise HEError("Paillier modulus must be positive, got a negative number or zero")
        if n_mpz.bit_length() < MIN_KEY_BITS:
            raise HEError(
                f"Paillier modulus has {n_mpz.bit_length()} bits, expected at least {MIN_KEY_BITS}"
            )
        if n_mpz % 2 == 0:
            raise HEError("Paillier modulus must be odd (a product of two odd primes), got even")
        self._n = n_mpz
        self.nsquare = n_mpz * n_mpz
        self.bits = int(n_mpz.bit_length())
        self.ciphertext_bytes = (int(self.nsquare.bit_length()) + 7) // 8
        digest = hashlib.sha256(_FINGERPRINT_DOMAIN + int(n_mpz).to_bytes((self.bits + 7) // 8))
        self.fingerprint = digest.digest()[:16]

    @property
    def n(self) -> int:
        """The modulus ``n`` as a Python ``int``."""
        return int(self._n)

    @property
    def n_mpz(self) -> mpz:
        """The modulus ``n`` as a gmpy2 ``mpz`` (for arithmetic without conversions)."""
        return self._n

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 32 hexadecimal characters, for messages and file names."""
        return self.fingerprint.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and self._n == other._n

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"PaillierPublicKey(bits={self.bits}, fingerprint={self.fingerprint_hex})"

    def times_message(self, c: mpz, m: int) -> mpz:
        """Return ``c·g^m mod n²``: ``c`` with the plaintext ``m`` added (or encrypted in).

        With ``g = n + 1``, ``c·(1 + m·n) = c + n·(m·c mod n) (mod n²)``: one half-size
        product instead of a full ``n²``-sized one. Negative ``m`` wraps modulo ``n``.
        """
        n, nsquare = self._n, self.nsquare
        out = c + n * (mpz(m) * c % n)
        return out - nsquare if out >= nsquare else out

    def raw_encrypt(self, m: int, *, r: int | None = None) -> int:
        """Encrypt the integer ``m`` (taken modulo ``n``) with textbook randomness ``r^n``.

        Parameters
        ----------
        m
            The plaintext; negative values wrap modulo ``n``.
        r
            The randomness, ``0 < r < n`` and coprime to ``n``. Injectable so that known-answer
            and interoperability tests are exact; leave it ``None`` to draw one from the
            operating system.

        Returns
        -------
        int
            ``(1 + m·n)·r^n mod n²``, bit-identical to ``phe``'s ``raw_encrypt(m, r_value=r)``.
        """
        if r is None:
            r_mpz = mpz(secrets.randbelow(int(self._n) - 1) + 1)
        else:
            r_mpz = mpz(r)
            if not 0 < r_mpz < self._n or gmpy2.gcd(r_mpz, self._n) != 1:
                raise HEError("randomness r must satisfy 0 < r < n and gcd(r, n) = 1")
        rn = gmpy2.powmod(r_mpz, self._n, self.nsquare)
        return int(self.times_message(rn, m))

    def check_ciphertext(self, c: int, *, where: str = "ciphertext") -> mpz:
        """Return ``c`` as ``mpz`` after checking ``0 < c < n²`` and ``gcd(c, n) = 1``.

        Raises
        ------
        HEError
            If ``c`` cannot be a ciphertext under this key.
        """
        c_mpz = mpz(c)
        if not 0 < c_mpz < self.nsquare:
            raise HEError(f"{where} is outside [1, n²) for key {self.fingerprint_hex}")
        if gmpy2.gcd(c_mpz, self._n) != 1:
            raise HEError(f"{where} shares a factor with n: not a ciphertext of this key")
        return c_mpz


class PaillierPrivateKey:
    """A Paillier private key: the primes ``p, q`` of ``n`` and CRT constants for decryption.

    Decryption works modulo ``p²`` and ``q²`` separately (half-size numbers, half-size exponents)
    and recombines with the CRT, about four times faster than ``c^λ mod n²``.

    Parameters
    ----------
    public_key
        The matching public key.
    p, q
        The two prime factors of ``n``.

    Raises
    ------
    HEError
        If ``p·q != n``, ``p == q``, or either factor is not a probable prime.
    """

    __slots__ = (
        "_hp",
        "_hq",
        "_p",
        "_psquare",
        "_q",
        "_q2_inv_p2",
        "_q_inv_p",
        "_qsquare",
        "public_key",
    )

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        p_mpz, q_mpz = mpz(p), mpz(q)
        if p_mpz * q_mpz != public_key.n_mpz:
            raise HEError("private key primes do not match the public key: p·q != n")
        if p_mpz == q_mpz:
            raise HEError("private key primes must be distinct, got p == q")
        for name, prime in (("p", p_mpz), ("q", q_mpz)):
            if not gmpy2.is_prime(prime, _MILLER_RABIN_ROUNDS):
                raise HEError(f"private key factor {name} is not prime")
        if p_mpz < q_mpz:
            p_mpz, q_mpz = q_mpz, p_mpz
        self.public_key = public_key
        self._p, self._q = p_mpz, q_mpz
        self._psquare, self._qsquare = p_mpz * p_mpz, q_mpz * q_mpz
        self._q_inv_p = gmpy2.invert(q_mpz, p_mpz)
        self._q2_inv_p2 = gmpy2.invert(self._qsquare, self._psquare)
        self._hp = self._h_constant(p_mpz, self._psquare)
        self._hq = self._h_constant(q_mpz, self._qsquare)

    def _h_constant(self, prime: mpz, prime_square: mpz) -> mpz:
        g = self.public_key.n_mpz + 1
        lp = (gmpy2.powmod(g, prime - 1, prime_square) - 1) // prime
        return gmpy2.invert(lp, prime)

    @classmethod
    def from_primes(cls, p: int, q: int) -> PaillierPrivateKey:
        """Rebuild a private key (and its public key ``n = p·q``) from the two primes."""
        return cls(PaillierPublicKey(int(mpz(p) * mpz(q))), p, q)

    @property
    def p(self) -> int:
        """The larger prime factor of ``n``."""
        return int(self._p)

    @property
    def q(self) -> int:
        """The smaller prime factor of ``n``."""
        return int(self._q)

    @property
    def crt_moduli(self) -> tuple[mpz, mpz, mpz, mpz]:
        """``(p, q, p², q²)`` as ``mpz``, for CRT arithmetic elsewhere in this package."""
        return self._p, self._q, self._psquare, self._qsquare

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(bits={self.public_key.bits}, fingerprint=...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPrivateKey) and (self._p, self._q) == (other._p, other._q)

    def __hash__(self) -> int:
        return hash(self.public_key)

    def crt_combine(self, mod_p: mpz, mod_q: mpz) -> mpz:
        """Return the unique ``x mod n`` with ``x ≡ mod_p (mod p)`` and ``x ≡ mod_q (mod q)``."""
        return mod_q + self._q * ((mod_p - mod_q) * self._q_inv_p % self._p)

    def crt_combine_square(self, mod_p2: mpz, mod_q2: mpz) -> mpz:
        """Return ``x mod n²`` from its residues modulo ``p²`` and ``q²``."""
        return mod_q2 + self._qsquare * ((mod_p2 - mod_q2) * self._q2_inv_p2 % self._psquare)

    def decrypt_residues(self, powered_p: Sequence[mpz], powered_q: Sequence[mpz]) -> list[mpz]:
        """Finish CRT decryption from ``c^(p-1) mod p²`` and ``c^(q-1) mod q²``.

        Split out so that the expensive exponentiations can run batched in other threads
        (gmpy2's list functions release the GIL) while this cheap part stays here.
        """
        p, q, hp, hq = self._p, self._q, self._hp, self._hq
        return [
            self.crt_combine((xp - 1) // p * hp % p, (xq - 1) // q * hq % q)
            for xp, xq in zip(powered_p, powered_q, strict=True)
        ]

    def raw_decrypt(self, c: int) -> int:
        """Decrypt one ciphertext to its plaintext in ``[0, n)``.

        Raises
        ------
        HEError
            If ``c`` is not in ``[1, n²)`` or shares a factor with ``n``.
        """
        c_mpz = self.public_key.check_ciphertext(c)
        xp = gmpy2.powmod(c_mpz % self._psquare, self._p - 1, self._psquare)
        xq = gmpy2.powmod(c_mpz % self._qsquare, self._q - 1, self._qsquare)
        return int(self.decrypt_residues([xp], [xq])[0])


def _random_prime(bits: int) -> mpz:
    """Return a random prime of exactly ``bits`` bits with its two top bits set.

    Two top bits make the product of two such primes exactly ``2·bits`` long.
    """
    while True:
        candidate = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 1
        prime = gmpy2.next_prime(candidate)
        if prime.bit_length() == bits and gmpy2.is_prime(prime, _MILLER_RABIN_ROUNDS):
            return prime


def generate_keypair(
    bits: int = DEFAULT_KEY_BITS,
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Generate a Paillier key pair with an exactly ``bits``-bit modulus.

    Parameters
    ----------
    bits
        2048 (default) or 3072. 1024 is accepted for tests and demos and warns
        (:class:`WeakKeyWarning`): it gives only about 80-bit security.

    Raises
    ------
    ConfigError
        If ``bits`` is not one of 1024, 2048, 3072.
    """
    if bits not in ALLOWED_KEY_BITS:
        raise ConfigError(f"Paillier key size must be one of {ALLOWED_KEY_BITS}, got {bits}")
    _warn_if_weak(bits)
    half = bits // 2
    while True:
        p, q = _random_prime(half), _random_prime(half)
        # Distinct primes far apart: |p - q| tiny would let Fermat factoring find them.
        if abs(p - q).bit_length() > half - 100:
            break
    private_key = PaillierPrivateKey.from_primes(int(p), int(q))
    return private_key.public_key, private_key

"""Batched encryption and decryption of integer plaintexts, spread over cores.

Encryption draws one random residue per plaintext (:mod:`sealfl.he._randomness`) and
multiplies in the message part; batches above :data:`PARALLEL_MIN_CIPHERTEXTS` per core are
shared with worker processes. Decryption is CRT: ``c^(p-1) mod p²`` and ``c^(q-1) mod q²`` for
the whole batch through gmpy2's list exponentiation, which releases the GIL, so threads suffice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import gmpy2
from gmpy2 import mpz

from sealfl.he._keys import PaillierPrivateKey, PaillierPublicKey
from sealfl.he._parallel import resolve_cores, run_in_processes, run_in_threads, split_evenly
from sealfl.he._randomness import Randomness, check_randomness, residue_source

# Below this many ciphertexts per core (about 30 ms of work at 2048 bits) a batch stays in the
# calling process: handing it to a worker would cost more than it saves.
PARALLEL_MIN_CIPHERTEXTS = 48
SHARES_PER_CORE = 4


def _encrypt_here(
    public_key: PaillierPublicKey,
    plaintexts: Sequence[int],
    randomness: Randomness,
    private_key: PaillierPrivateKey | None,
) -> list[mpz]:
    residues = residue_source(public_key, randomness, private_key).draw(len(plaintexts))
    times_message = public_key.times_message
    return [times_message(r, m) for m, r in zip(plaintexts, residues, strict=True)]


@functools.lru_cache(maxsize=4)
def _keys_from_ints(
    n: int, p: int | None, q: int | None
) -> tuple[PaillierPublicKey, PaillierPrivateKey | None]:
    public_key = PaillierPublicKey(n)
    private_key = None if p is None or q is None else PaillierPrivateKey(public_key, p, q)
    return public_key, private_key


def _encrypt_job(
    n: int, p: int | None, q: int | None, mode: str, plaintexts: list[int]
) -> list[mpz]:
    """Worker-process entry: rebuild the key from integers and encrypt a share."""
    public_key, private_key = _keys_from_ints(n, p, q)
    return _encrypt_here(public_key, plaintexts, Randomness(mode), private_key)


def encrypt_plaintexts(
    public_key: PaillierPublicKey,
    plaintexts: Sequence[int],
    *,
    randomness: Randomness = Randomness.DJN,
    private_key: PaillierPrivateKey | None = None,
    cores: int | None = None,
) -> list[mpz]:
    """Encrypt integer plaintexts (each taken modulo ``n``) into ciphertexts modulo ``n²``.

    Parameters
    ----------
    public_key
        The key to encrypt under.
    plaintexts
        Integers; negative values wrap modulo ``n``.
    randomness
        Where the random residues come from; see :class:`~sealfl.he.Randomness`.
    private_key
        If given (and it matches), residues are computed with the CRT, which is faster.
    cores
        Cores to use; ``None`` means all this process may run on.
    """
    # Fail on a mismatched key or mode here, before any worker starts; only check, since on
    # the parallel path the workers build the (0.6 s, up to 64 MiB) DJN tables, not this process.
    check_randomness(public_key, randomness, private_key)
    budget = resolve_cores(cores)
    workers = min(budget, len(plaintexts) // PARALLEL_MIN_CIPHERTEXTS)
    if workers <= 1:
        return _encrypt_here(public_key, plaintexts, randomness, private_key)
    # More shares than workers, so that a busy core simply takes fewer of them.
    shares = split_evenly(
        len(plaintexts),
        min(SHARES_PER_CORE * workers, len(plaintexts) // PARALLEL_MIN_CIPHERTEXTS),
    )
    p = None if private_key is None else private_key.p
    q = None if private_key is None else private_key.q
    jobs = [
        (public_key.n, p, q, randomness.value, list(plaintexts[start:stop]))
        for start, stop in shares
    ]
    # At most `workers` shares run at once, as there are no more; the pool is the budget's.
    results = run_in_processes(_encrypt_job, jobs, workers=budget)
    return [c for share in results for c in share]


def _crt_powers(
    private_key: PaillierPrivateKey, ciphertexts: Sequence[mpz]
) -> tuple[list[mpz], list[mpz]]:
    p, q, psquare, qsquare = private_key.crt_moduli
    powered_p = gmpy2.powmod_base_list([c % psquare for c in ciphertexts], p - 1, psquare)
    powered_q = gmpy2.powmod_base_list([c % qsquare for c in ciphertexts], q - 1, qsquare)
    return list(powered_p), list(powered_q)


def decrypt_ciphertexts(
    private_key: PaillierPrivateKey, ciphertexts: Sequence[mpz], *, cores: int | None = None
) -> list[int]:
    """Decrypt ciphertexts (already checked to be in range) to plaintexts in ``[0, n)``."""
    shares = split_evenly(
        len(ciphertexts),
        min(resolve_cores(cores), len(ciphertexts) // PARALLEL_MIN_CIPHERTEXTS),
    )
    jobs = [(private_key, ciphertexts[start:stop]) for start, stop in shares]
    plaintexts: list[int] = []
    for powered_p, powered_q in run_in_threads(_crt_powers, jobs):
        plaintexts.extend(int(m) for m in private_key.decrypt_residues(powered_p, powered_q))
    return plaintexts

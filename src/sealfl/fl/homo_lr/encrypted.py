"""The encrypted side of homo-lr over :mod:`sealfl.he`: the worker's step and the PS's refresh.

Worker (public key only): ``Enc(w) ↦ A·Enc(w) + b`` (:func:`sealfl.fl.homo_lr.algorithm.
affine_from_gram` gives ``A, b``), one plaintext-matrix × ciphertext-vector product; the result
has scale ``2^(WEIGHT_FRACTION_BITS + MATRIX_FRACTION_BITS)``.

PS (key pair, inside the enclave): check each submission's form (key fingerprint, length,
scale, declared bound), decrypt it to check its values (:mod:`.screening`), average the usable
ones, and encrypt the average afresh at ``2^WEIGHT_FRACTION_BITS`` for the next iteration, which
resets the scale and the plaintext bound. A single worker's update is decrypted only inside the
enclave and only for that check and the average; what leaves it is the model's evaluation.

Decrypting each submission (rather than only their sum) costs no more than before: the PS
decrypts modulo ``p`` alone (:meth:`PaillierServerCrypto.decrypt_submission`), half a CRT
decryption, which is exact for any plaintext within ``±p/2`` and so for every honest update
(``< 2^90``, against ``p ≈ 2^1024`` at 2048 bits). A plaintext beyond that decodes to its
residue modulo ``p``, a value the check then bounds like any other: whatever a worker submits,
what enters the average is an update within the protocol's range, which it could have sent
honestly.

Re-randomisation: a worker sends ``A·Enc(w) + b`` without fresh randomness. Its ciphertexts'
random parts are products of powers of the PS's own encryption randomness, with the data in
the exponents; recovering those exponents is a discrete-logarithm problem modulo ``n²``, so a
ciphertext reveals nothing beyond its plaintext (which only the attested PS code decrypts).
Re-randomising (``rerandomized()``, one
encryption of zero per entry) would roughly double the worker's cost for no gain here.

Precision: ``w`` is encoded with 32 fraction bits and ``A`` with 32, so one step is exact to
about ``2^-33·(1 + Σ_j |w_j|)``, far below the 1e-6 to which the encrypted run must match the
plaintext one. Fewer bits would make the exponents, and the step, cheaper, and the match looser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gmpy2
import numpy as np

from sealfl import he
from sealfl.errors import ConfigError, HEError, ProtocolError
from sealfl.fl.homo_lr.algorithm import FloatArray

WEIGHT_FRACTION_BITS = 32
"""Scale of the encrypted model the PS sends."""
MATRIX_FRACTION_BITS = 32
"""Fraction bits of the worker's plaintext matrix ``A``."""
MATRIX_ENTRY_BITS = 62 - MATRIX_FRACTION_BITS
"""Largest entry of ``A`` the product can take, ``|A_ij| < 2^30``: :func:`sealfl.he.matvec`
encodes entries as signed 62-bit exponents."""
WEIGHT_INTEGER_BITS = 20
"""Declared range of a weight, ``|w| < 2^20`` (public bound of a fresh encryption)."""
SUBMISSION_SCALE_BITS = WEIGHT_FRACTION_BITS + MATRIX_FRACTION_BITS
"""Scale every worker's submission must have."""
SUM_HEADROOM_BITS = 32
"""Bits a submission's declared bound must leave free below the key's capacity, so that the
sum of up to ``2^32`` submissions (worker ids are 32-bit) can never be refused as an overflow
after the round has closed. An honest submission declares about 90 bits."""


@dataclass(frozen=True)
class PaillierWorkerCrypto:
    """A worker's encrypted step, under the PS's public key.

    Parameters
    ----------
    public_key
        The PS's Paillier public key (checked against its attested binding before use).
    cores
        Cores the matrix product may use; ``None``: all this process may run on.
    """

    public_key: he.PaillierPublicKey
    cores: int | None = None

    @classmethod
    def from_public_key_bytes(
        cls, data: bytes, *, cores: int | None = None
    ) -> PaillierWorkerCrypto:
        """Parse the public key the PS sent (:func:`sealfl.he.public_key_to_json` bytes).

        Raises
        ------
        ProtocolError
            If the bytes are not a valid Paillier public key.
        """
        try:
            key = he.public_key_from_json(data, source="PS public key")
        except (ConfigError, HEError) as exc:
            raise ProtocolError(f"the PS sent an unusable public key: {exc}") from exc
        return cls(public_key=key, cores=cores)

    def step(self, encrypted_weights: bytes, A: FloatArray, b: FloatArray) -> bytes:
        """Return ``Enc(A·w + b)`` serialised, from the serialised ``Enc(w)``.

        Raises
        ------
        ProtocolError
            If the PS's vector is malformed, under another key, or of the wrong length.
        """
        try:
            w = he.EncryptedVector.from_bytes(encrypted_weights, self.public_key)
        except HEError as exc:
            raise ProtocolError(f"the PS sent an unusable encrypted model: {exc}") from exc
        if len(w) != A.shape[1]:
            raise ProtocolError(
                f"the PS sent {len(w)} encrypted weights, expected {A.shape[1]} (features + bias)"
            )
        out = he.matvec(A, w, fraction_bits=MATRIX_FRACTION_BITS, cores=self.cores).add_plain(b)
        return out.to_bytes()


@dataclass
class PaillierServerCrypto:
    """The PS's key pair and its four operations (:class:`.server.ServerCrypto`).

    Parameters
    ----------
    public_key, private_key
        The key pair; make it inside the TEE with :meth:`generate`.
    cores
        Cores for encryption and decryption; ``None``: all.
    """

    public_key: he.PaillierPublicKey
    private_key: he.PaillierPrivateKey = field(repr=False)
    cores: int | None = None
    _public_bytes: bytes = field(init=False, repr=False, default=b"")
    _hp: gmpy2.mpz = field(init=False, repr=False, default=gmpy2.mpz(0))

    def __post_init__(self) -> None:
        self._public_bytes = he.public_key_to_json(self.public_key)
        # h_p = L_p(g^(p-1) mod p²)^-1 mod p with g = n + 1: decryption modulo p alone.
        p, _, psquare, _ = self.private_key.crt_moduli
        g = self.public_key.n_mpz + 1
        self._hp = gmpy2.invert((gmpy2.powmod(g, p - 1, psquare) - 1) // p, p)

    @classmethod
    def from_private_key_bytes(
        cls, data: bytes, *, cores: int | None = None
    ) -> PaillierServerCrypto:
        """Restore a key pair from :meth:`private_key_bytes` (a resumed PS's checkpoint).

        Raises
        ------
        ConfigError, HEError
            If the bytes are not a valid private key.
        """
        private_key = he.private_key_from_json(data, source="checkpoint private key")
        return cls(public_key=private_key.public_key, private_key=private_key, cores=cores)

    @classmethod
    def generate(
        cls, bits: int = he.DEFAULT_KEY_BITS, *, cores: int | None = None
    ) -> PaillierServerCrypto:
        """Generate a key pair (2048 bits by default; 1024 warns and is for tests only)."""
        public_key, private_key = he.generate_keypair(bits)
        return cls(public_key=public_key, private_key=private_key, cores=cores)

    def public_key_bytes(self) -> bytes:
        """Return the serialised public key (what workers get and the RA-TLS claim hashes)."""
        return self._public_bytes

    def private_key_bytes(self) -> bytes:
        """Return the serialised private key, for the PS's sealed checkpoint only."""
        return he.private_key_to_json(self.private_key)

    def encrypt(self, w: FloatArray) -> bytes:
        """Encrypt the model afresh at ``2^WEIGHT_FRACTION_BITS`` and serialise it."""
        vector = he.encrypt_vector(
            self.public_key,
            np.asarray(w, dtype=np.float64),
            fraction_bits=WEIGHT_FRACTION_BITS,
            integer_bits=WEIGHT_INTEGER_BITS,
            private_key=self.private_key,
            cores=self.cores,
        )
        return vector.to_bytes()

    def parse_submission(self, data: bytes, length: int) -> he.EncryptedVector:
        """Check a worker's vector: this key, ``length`` entries, the agreed scale.

        Raises
        ------
        ProtocolError
            If the bytes are malformed or truncated, the vector is under another key (its
            header names the key fingerprint), its length or scale is not the agreed one, or
            its declared bound leaves no room for the sum (:data:`SUM_HEADROOM_BITS`).
        """
        try:
            vector = he.EncryptedVector.from_bytes(data, self.public_key)
        except HEError as exc:
            raise ProtocolError(f"unusable encrypted vector: {exc}") from exc
        if len(vector) != length:
            raise ProtocolError(f"encrypted vector has {len(vector)} entries, expected {length}")
        if vector.scale_bits != SUBMISSION_SCALE_BITS:
            raise ProtocolError(
                f"encrypted vector has scale 2^{vector.scale_bits}, expected "
                f"2^{SUBMISSION_SCALE_BITS}"
            )
        max_bound = he.capacity_bits(self.public_key) - SUM_HEADROOM_BITS
        if vector.bound_bits > max_bound:
            raise ProtocolError(
                f"encrypted vector declares plaintexts below 2^{vector.bound_bits}, expected a "
                f"bound of at most 2^{max_bound} (room to sum the workers' vectors)"
            )
        return vector

    def decrypt_submission(self, vector: he.EncryptedVector) -> FloatArray:
        """Decrypt one parsed submission modulo ``p`` (inside the enclave), for the value check.

        Half the work of a CRT decryption, and exact for plaintexts within ``±p/2`` (see the
        module docstring for why that is all the PS needs).

        Raises
        ------
        HEError
            If a decrypted value breaks the vector's declared bound (not an honest worker's
            output).
        """
        p, _, psquare, _ = self.private_key.crt_moduli
        # gmpy2's list functions release the GIL: submissions decrypt side by side on threads.
        powered = gmpy2.powmod_base_list([c % psquare for c in vector.ciphertexts], p - 1, psquare)
        half, limit, hp = p // 2, 1 << vector.bound_bits, self._hp
        scale = 1 << vector.scale_bits
        values = []
        for index, x in enumerate(powered):
            m = (x - 1) // p * hp % p
            signed = int(m) if m <= half else int(m - p)
            if abs(signed) >= limit:
                raise HEError(
                    f"decrypted entry {index} exceeds the vector's declared bound of "
                    f"2^{vector.bound_bits}"
                )
            values.append(signed / scale)  # int / int: correctly rounded, like he's decoding
        return np.array(values, dtype=np.float64)

    def average(self, vectors: list[he.EncryptedVector]) -> FloatArray:
        """Add the vectors homomorphically, decrypt only the sum, and divide by their number.

        Raises
        ------
        ConfigError
            If there is nothing to average.
        """
        if not vectors:
            raise ConfigError("cannot average an empty list of encrypted vectors")
        # One sum: the bound grows by ⌈log2 K⌉ bits (pairwise adds would grow it by K - 1).
        total = he.sum_vectors(vectors)
        plain: FloatArray = he.decrypt_vector(self.private_key, total, cores=self.cores)
        return plain / len(vectors)

"""The encrypted side of homo-lr over :mod:`sealfl.he`: the worker's step and the PS's refresh.

Worker (public key only): ``Enc(w) ↦ A·Enc(w) + b`` (:func:`sealfl.fl.homo_lr.algorithm.
affine_from_gram` gives ``A, b``), one plaintext-matrix × ciphertext-vector product; the result
has scale ``2^(WEIGHT_FRACTION_BITS + MATRIX_FRACTION_BITS)``.

PS (key pair, inside the enclave): check each submission's form (key fingerprint, length,
scale, declared bound), decrypt it to check its values (:mod:`.screening`), average the usable
ones, and encrypt the average afresh at ``2^WEIGHT_FRACTION_BITS`` for the next iteration, which
resets the scale and the plaintext bound. A single worker's update is decrypted only inside the
enclave and only for that check and the average; what leaves it is the model's evaluation.

Decrypting each submission (rather than only their sum) costs less than a quarter of one
decryption per entry: the PS decrypts modulo ``p`` alone
(:meth:`PaillierServerCrypto.decrypt_submission`), half a CRT decryption, which is exact for
any plaintext within ``±p/2`` and so for every honest update (``< 2^90``, against
``p ≈ 2^1024`` at 2048 bits), and it packs about eleven entries into each ciphertext it
decrypts, with a random check that the packing hides nothing (:mod:`.packed_decryption`). A
plaintext beyond ``±p/2`` decodes to its residue modulo ``p``, a value the check then bounds
like any other: whatever a worker submits, what enters the average is an update within the
protocol's range, which it could have sent honestly.

Fresh encryption: the random part ``r^n`` of ``Enc(m) = r^n·(1 + m·n)`` does not depend on the
model, so the PS draws it while the workers compute (:meth:`PaillierServerCrypto.
prepare_encryption`), and handing out the next model costs one multiplication per weight.

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

import time
from dataclasses import dataclass, field

import gmpy2
import numpy as np

from sealfl import he
from sealfl.errors import ConfigError, HEError, ProtocolError
from sealfl.fl.homo_lr.algorithm import FloatArray
from sealfl.fl.homo_lr.packed_decryption import decrypt_signed
from sealfl.fl.homo_lr.timing import Spans

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
_FRESH_BOUND_BITS = WEIGHT_FRACTION_BITS + WEIGHT_INTEGER_BITS
"""Public bound of a freshly encrypted model, ``|w·2^32| < 2^52``."""
_PREPARE_CHUNK = 4
"""Encryptions of zero drawn between two yields of the GIL (about 1.5 ms of work at 2048 bits)."""


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

    def step(
        self, encrypted_weights: bytes, A: FloatArray, b: FloatArray, *, spans: Spans | None = None
    ) -> bytes:
        """Return ``Enc(A·w + b)`` serialised, from the serialised ``Enc(w)``.

        ``spans`` (optional) receives the time of its three parts: ``decode`` (parse and check
        the PS's vector), ``compute`` (the product) and ``encode`` (serialise the result).

        Raises
        ------
        ProtocolError
            If the PS's vector is malformed, under another key, or of the wrong length.
        """
        spans = spans or Spans()
        with spans.span("decode"):
            try:
                w = he.EncryptedVector.from_bytes(encrypted_weights, self.public_key)
            except HEError as exc:
                raise ProtocolError(f"the PS sent an unusable encrypted model: {exc}") from exc
        if len(w) != A.shape[1]:
            raise ProtocolError(
                f"the PS sent {len(w)} encrypted weights, expected {A.shape[1]} (features + bias)"
            )
        with spans.span("compute"):
            product = he.matvec(A, w, fraction_bits=MATRIX_FRACTION_BITS, cores=self.cores)
            out = product.add_plain(b)
        with spans.span("encode"):
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
    _zeros: he.EncryptedVector | None = field(init=False, repr=False, default=None)

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

    def _fresh(self, w: FloatArray) -> he.EncryptedVector:
        return he.encrypt_vector(
            self.public_key,
            np.asarray(w, dtype=np.float64),
            fraction_bits=WEIGHT_FRACTION_BITS,
            integer_bits=WEIGHT_INTEGER_BITS,
            private_key=self.private_key,
            cores=self.cores,
        )

    def prepare_encryption(self, length: int) -> None:
        """Draw the randomness of the next :meth:`encrypt` of ``length`` weights now.

        Encryption is ``Enc(m) = r^n·(1 + m·n)``: the costly part, the random ``r^n``, does
        not depend on the model. The PS draws it while the workers compute (as encryptions of
        zero), so that handing out the next model costs one multiplication per weight. Each
        drawn vector serves one encryption only.

        Drawn a few at a time, yielding the GIL in between: the drawing is Python code, and
        the PS's gRPC threads (still serialising the model for the workers, or checking an
        early submission) would otherwise wait up to a switch interval (5 ms) for it.
        """
        ciphertexts = []
        for start in range(0, length, _PREPARE_CHUNK):
            ciphertexts += self._fresh(np.zeros(min(_PREPARE_CHUNK, length - start))).ciphertexts
            time.sleep(0)  # releases the GIL: a waiting thread takes it now
        self._zeros = he.EncryptedVector(
            self.public_key,
            ciphertexts,
            scale_bits=WEIGHT_FRACTION_BITS,
            bound_bits=_FRESH_BOUND_BITS,  # what each part declared (zeros, encrypted afresh)
        )

    def encrypt(self, w: FloatArray) -> bytes:
        """Encrypt the model afresh at ``2^WEIGHT_FRACTION_BITS`` and serialise it.

        With randomness drawn by :meth:`prepare_encryption` (for this length), the ciphertexts
        are the same as a fresh encryption's: ``Enc(0)·(1 + m·n)``; otherwise, or if a weight
        is outside ``|w| < 2^WEIGHT_INTEGER_BITS``, it encrypts from scratch (which raises
        :class:`~sealfl.errors.HEError` for such a weight).
        """
        array = np.asarray(w, dtype=np.float64)
        zeros, self._zeros = self._zeros, None
        scaled = np.rint(np.ldexp(array, WEIGHT_FRACTION_BITS))
        in_range = bool(np.all(np.abs(scaled) < 2.0**_FRESH_BOUND_BITS))  # False for NaN and inf
        if zeros is None or len(zeros) != len(array) or not in_range:
            return self._fresh(array).to_bytes()
        vector = zeros.add_plain(array)  # the same rounding as a fresh encryption's encoding
        # The plaintexts are the rounded weights, checked above to be below 2^_FRESH_BOUND_BITS:
        # the fresh encryption's public bound (add_plain's own is one bit looser).
        return he.EncryptedVector(
            self.public_key,
            vector.ciphertexts,
            scale_bits=WEIGHT_FRACTION_BITS,
            bound_bits=_FRESH_BOUND_BITS,
        ).to_bytes()

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
        module docstring for why that is all the PS needs); packed, a few decryptions for the
        whole vector, with a random check that the packing hides nothing
        (:mod:`.packed_decryption`).

        Raises
        ------
        HEError
            If a decrypted value breaks the vector's declared bound (not an honest worker's
            output).
        """
        p, _, psquare, _ = self.private_key.crt_moduli
        signed = decrypt_signed(
            vector.ciphertexts, vector.bound_bits, p=p, psquare=psquare, hp=self._hp
        )
        scale = 1 << vector.scale_bits
        values = [m / scale for m in signed]  # int / int: correctly rounded, like he's decoding
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

"""The round's identity, its parameters and the four stages' messages, with their checks.

Every message carries the :class:`RoundTag` (session, round, attempt) it belongs to; the tag's
bytes go into every key derivation and every associated-data field, so nothing from one round
or attempt can be used in another. The checks here are the structural ones (lengths, ids,
duplicates) shared by the worker and the aggregator; each raises :class:`ProtocolError` naming
the message, the field, the party, and what was expected versus received.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError
from sealfl.secagg.quantize import Quantizer
from sealfl.secagg.shamir import SHARE_BYTES

__all__ = [
    "KeyAdvert",
    "MaskedInput",
    "Params",
    "RoundTag",
    "ShareBundle",
    "UnmaskRequest",
    "UnmaskResponse",
    "neighbours",
]

KEY_BYTES = 32


@dataclass(frozen=True)
class RoundTag:
    """Which round, and which attempt at it, a message belongs to.

    Attributes
    ----------
    session
        32 random bytes the aggregator draws once per run (bound to its RA-TLS identity in hfl).
    round
        The federated round, from 0.
    attempt
        Raised each time a round is restarted with fresh masks (see ``docs/secure-aggregation.md``).
    """

    session: bytes
    round: int
    attempt: int = 0

    def __post_init__(self) -> None:
        if len(self.session) != 32:
            raise ProtocolError(f"round tag session: expected 32 bytes, got {len(self.session)}")
        if not (0 <= self.round < 2**63 and 0 <= self.attempt < 2**32):
            raise ProtocolError(
                f"round tag: round/attempt out of range ({self.round}, {self.attempt})"
            )

    def encode(self) -> bytes:
        """Return the 44 bytes bound into key derivations and associated data."""
        return self.session + struct.pack(">QI", self.round, self.attempt)

    def check(self, got: RoundTag, *, what: str) -> None:
        """Raise unless ``got`` is this tag (another round, attempt or session is refused)."""
        if got != self:
            raise ProtocolError(
                f"{what}: round tag mismatch, expected round {self.round} attempt {self.attempt} "
                f"session {self.session.hex()[:16]}..., got round {got.round} attempt "
                f"{got.attempt} session {got.session.hex()[:16]}..."
            )


@dataclass(frozen=True)
class Params:
    """What the aggregator's operator sets for a run; every worker checks it gets the same.

    Attributes
    ----------
    workers
        The ids of the workers taking part (positive, distinct).
    threshold
        Shares needed to recover a secret: more than half of a neighbourhood (a worker and its
        neighbours, who hold its shares) and at most all of it. More than half, so that no
        worker's self-mask can be recovered in two attempts of one round (the restart rule).
    degree
        Neighbours per worker: ``None`` for all pairs (SecAgg), an even number for the
        k-regular Harary graph of SecAgg+.
    numel
        Length of the vectors summed.
    clip
        Quantisation clip range (:class:`.Quantizer`).
    """

    workers: tuple[int, ...]
    threshold: int
    numel: int
    clip: float
    degree: int | None = None

    def __post_init__(self) -> None:
        n = len(self.workers)
        if n < 2 or len(set(self.workers)) != n or any(w <= 0 or w >= 2**31 for w in self.workers):
            raise ConfigError(
                f"secagg workers: expected >= 2 distinct positive ids, got {self.workers}"
            )
        if self.degree is not None and (self.degree < 2 or self.degree % 2 or self.degree >= n):
            raise ConfigError(
                f"secagg degree: expected an even number in 2..{n - 1} or None (all pairs), "
                f"got {self.degree}"
            )
        k = n - 1 if self.degree is None else self.degree
        if not ((k + 1) // 2 < self.threshold <= k + 1):
            raise ConfigError(
                f"secagg threshold: expected {(k + 1) // 2 + 1}..{k + 1} for neighbourhoods of "
                f"{k + 1} (each worker and its {k} neighbours: more than half, at most all), "
                f"got {self.threshold}"
            )
        if self.numel <= 0:
            raise ConfigError(f"secagg numel: expected a positive length, got {self.numel}")
        Quantizer(self.clip, n)  # validates clip

    @property
    def quantizer(self) -> Quantizer:
        """The quantiser every party uses for this run."""
        return Quantizer(self.clip, len(self.workers))


def neighbours(params: Params, tag: RoundTag) -> dict[int, frozenset[int]]:
    """Each worker's neighbours for this round.

    All pairs when ``params.degree`` is None. Otherwise a Harary graph H(degree, n): the workers
    in a cyclic order, each joined to the ``degree / 2`` nearest on either side. The order is a
    permutation drawn from the round tag (SHA-256 of tag and id), so no party picks who is
    whose neighbour and it changes every round.
    """
    ids = sorted(params.workers)
    if params.degree is None:
        return {u: frozenset(v for v in ids if v != u) for u in ids}
    t = tag.encode()
    order = sorted(ids, key=lambda w: hashlib.sha256(t + struct.pack(">I", w)).digest())
    n, half = len(order), params.degree // 2
    graph: dict[int, set[int]] = {u: set() for u in ids}
    for i, u in enumerate(order):
        for d in range(1, half + 1):
            v = order[(i + d) % n]
            graph[u].add(v)
            graph[v].add(u)
    return {u: frozenset(vs) for u, vs in graph.items()}


def _check_key(value: bytes, *, what: str) -> None:
    if len(value) != KEY_BYTES:
        raise ProtocolError(
            f"{what}: expected a {KEY_BYTES}-byte X25519 public key, got {len(value)}"
        )


@dataclass(frozen=True)
class KeyAdvert:
    """Stage 1, worker -> everyone via the aggregator: this round's two public keys."""

    tag: RoundTag
    worker: int
    mask_public: bytes
    cipher_public: bytes

    def validate(self, params: Params) -> None:
        """Structural checks: a known worker, two 32-byte keys that differ."""
        who = f"key advert of worker {self.worker}"
        if self.worker not in params.workers:
            raise ProtocolError(
                f"{who}: worker: expected one of {params.workers}, got {self.worker}"
            )
        _check_key(self.mask_public, what=f"{who}: mask_public")
        _check_key(self.cipher_public, what=f"{who}: cipher_public")
        if self.mask_public == self.cipher_public:
            raise ProtocolError(f"{who}: mask_public and cipher_public must be different keys")


@dataclass(frozen=True)
class ShareBundle:
    """Stage 2, worker -> aggregator: one AES-GCM ciphertext of shares per neighbour."""

    tag: RoundTag
    sender: int
    ciphertexts: Mapping[int, bytes]

    def validate(self, allowed: frozenset[int]) -> None:
        """Receivers must be the sender's advertised neighbours; sizes fixed."""
        who = f"share bundle of worker {self.sender}"
        extra = set(self.ciphertexts) - allowed
        if extra:
            raise ProtocolError(
                f"{who}: ciphertexts: receivers {sorted(extra)} are not advertised "
                f"neighbours {sorted(allowed)}"
            )
        for v, ct in self.ciphertexts.items():
            if len(ct) != SHARE_CIPHERTEXT_BYTES:
                raise ProtocolError(
                    f"{who}: ciphertext for worker {v}: expected {SHARE_CIPHERTEXT_BYTES} "
                    f"bytes, got {len(ct)}"
                )


SHARE_PLAINTEXT_BYTES = 8 + 2 * SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = 12 + SHARE_PLAINTEXT_BYTES + 16


@dataclass(frozen=True)
class MaskedInput:
    """Stage 3, worker -> aggregator: the masked, quantised vector (uint32, 4 bytes a value)."""

    tag: RoundTag
    sender: int
    values: npt.NDArray[np.uint32] = field(repr=False)

    def validate(self, params: Params) -> None:
        """Dtype and length must be the run's."""
        who = f"masked input of worker {self.sender}"
        if self.values.dtype != np.uint32 or self.values.shape != (params.numel,):
            raise ProtocolError(
                f"{who}: values: expected uint32[{params.numel}], got "
                f"{self.values.dtype}{list(self.values.shape)}"
            )


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 4, aggregator -> each survivor: who sent a masked input and who did not."""

    tag: RoundTag
    survivors: frozenset[int]
    dropped: frozenset[int]

    def digest(self) -> bytes:
        """Canonical hash of the request (what a worker records before answering)."""
        body = (
            self.tag.encode()
            + b"S"
            + b"".join(struct.pack(">I", w) for w in sorted(self.survivors))
        )
        body += b"D" + b"".join(struct.pack(">I", w) for w in sorted(self.dropped))
        return hashlib.sha256(b"sealfl secagg v1 unmask request" + body).digest()


@dataclass(frozen=True)
class UnmaskResponse:
    """Stage 4, survivor -> aggregator: self-mask shares of survivors, key shares of dropouts."""

    tag: RoundTag
    sender: int
    seed_shares: Mapping[int, bytes]
    key_shares: Mapping[int, bytes]

    def validate(self, request: UnmaskRequest, holders: Mapping[int, frozenset[int]]) -> None:
        """Shares only for the peers the request names, of the kind it names, one each."""
        who = f"unmask response of worker {self.sender}"
        for kind, got, listed in (
            ("seed_shares", self.seed_shares, request.survivors),
            ("key_shares", self.key_shares, request.dropped),
        ):
            for peer, value in got.items():
                if peer not in listed:
                    raise ProtocolError(f"{who}: {kind}: worker {peer} is not listed for that kind")
                if self.sender not in holders.get(peer, frozenset()):
                    raise ProtocolError(f"{who}: {kind}: it holds no share of worker {peer}")
                if len(value) != SHARE_BYTES:
                    raise ProtocolError(
                        f"{who}: {kind}[{peer}]: expected {SHARE_BYTES} bytes, got {len(value)}"
                    )


def unique_ids(ids: Sequence[int], *, what: str) -> None:
    """Raise if an id repeats (a duplicate advert, bundle or share)."""
    seen: set[int] = set()
    for i in ids:
        if i in seen:
            raise ProtocolError(f"{what}: worker {i} appears twice")
        seen.add(i)

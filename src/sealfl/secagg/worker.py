"""A worker's side of a secure-aggregation round, and the rules it refuses by.

One :class:`SecAggWorker` per worker and run. Per attempt of a round it draws two fresh X25519
key pairs (mask key ``s_u``, share-encryption key ``c_u``) and a fresh 256-bit self-mask seed
``b_u``, shares ``b_u`` and the private ``s_u`` with its neighbours (Shamir, the run's
threshold), masks its quantised input, and in the last stage reveals, for each peer, *either*
the share of its self-mask seed (the peer survived) *or* the share of its mask key (the peer
dropped), never both.

Refusal rules (each a :class:`ProtocolError` naming the field):

- a message for another session, round or attempt; an attempt older than the current one;
- a roster or delivery that differs from one already acted on in this attempt (replay with
  other content), duplicate or unknown ids, wrong lengths, shares that fail authentication;
- masking a *different* value in an attempt whose masks were already used (the same value is
  re-sent byte for byte: that is how a round resumes after an aggregator restart);
- an unmask request that lists a peer as both survivor and dropped, lists this worker as
  dropped, leaves out a neighbour whose shares it holds, or has fewer than ``threshold``
  survivors; one arriving before this worker sent its masked input;
- a second, different unmask request for a round already answered, in this attempt or any other
  (the identical request gets the identical answer). The answer is recorded in the *ledger*
  before it is returned; the ledger (:meth:`ledger_bytes`, JSON) is what the worker must keep
  sealed across its own restarts, and a worker restored from it refuses the same way;
- with ``consistency=True`` (hfl uses it), an unmask request that fewer than ``threshold - 1``
  surviving neighbours confirmed seeing too (:meth:`SecAggWorker.confirm`,
  :meth:`SecAggWorker.check_confirmations`: SecAgg's consistency check, with HMAC tags under
  the pairwise cipher keys instead of signatures); and a second, different request to confirm.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealfl.errors import ProtocolError
from sealfl.secagg import shamir
from sealfl.secagg.masks import (
    confirmation_mac,
    decrypt_shares,
    encrypt_shares,
    expand,
    pair_seed,
    self_seed,
)
from sealfl.secagg.messages import (
    KeyAdvert,
    MaskedInput,
    Params,
    RoundTag,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
    neighbours,
    unique_ids,
)

__all__ = ["SecAggWorker", "public_key"]

LEDGER_FORMAT = "sealfl-secagg-worker-ledger/1"


def public_key(private: bytes) -> bytes:
    """Return the X25519 public key of a raw 32-byte private key."""
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


class _Attempt:
    """Secrets and progress of one attempt; dropped (forgotten) when a newer attempt starts."""

    def __init__(self, tag: RoundTag, entropy: Callable[[int], bytes]) -> None:
        self.tag = tag
        self.mask_private = entropy(32)
        self.cipher_private = entropy(32)
        self.seed = entropy(32)
        self.roster: dict[int, KeyAdvert] | None = None
        self.neighbours: frozenset[int] = frozenset()
        self.bundle: ShareBundle | None = None
        self.own_shares: tuple[bytes, bytes] | None = None
        self.held: dict[int, tuple[bytes, bytes]] = {}
        self.delivery_digest: bytes | None = None
        self.input_digest: bytes | None = None
        self.masked: MaskedInput | None = None
        self.confirmed: bytes | None = None  # digest of the unmask request it confirmed
        self.checked: bytes | None = None  # ... and found confirmed by enough neighbours


class SecAggWorker:
    """The worker's protocol state machine.

    Parameters
    ----------
    worker_id
        This worker's id (one of ``params.workers``).
    params
        The run's parameters; the worker refuses a roster or request inconsistent with them.
    entropy
        Source of random bytes, injectable so tests can be exact.
    ledger
        Bytes from :meth:`ledger_bytes` of this worker before a restart, or None.
    consistency
        Answer an unmask request only once it passed :meth:`check_confirmations`.
    """

    def __init__(
        self,
        *,
        worker_id: int,
        params: Params,
        entropy: Callable[[int], bytes] = os.urandom,
        ledger: bytes | None = None,
        consistency: bool = False,
    ) -> None:
        if worker_id not in params.workers:
            raise ProtocolError(
                f"secagg worker id: expected one of {params.workers}, got {worker_id}"
            )
        self.worker_id = worker_id
        self.params = params
        self.consistency = consistency
        self._entropy = entropy
        self._attempt: _Attempt | None = None
        self._session: bytes | None = None
        # round -> (attempt, request digest, response); written before an answer leaves.
        self._answered: dict[int, tuple[int, bytes, UnmaskResponse]] = {}
        if ledger is not None:
            self._load_ledger(ledger)

    # -- stage 1 ------------------------------------------------------------------------------
    def advertise(self, tag: RoundTag) -> KeyAdvert:
        """Fresh keys for a new attempt; the same advert again for the current one (resume)."""
        if self._session is not None and tag.session != self._session:
            raise ProtocolError(
                f"key advert request: session: expected {self._session.hex()[:16]}..., "
                f"got {tag.session.hex()[:16]}..."
            )
        done = self._answered.get(tag.round)
        if done is not None and done[0] != tag.attempt:
            raise ProtocolError(
                f"key advert request: round {tag.round} was already unmasked in attempt "
                f"{done[0]}; refusing attempt {tag.attempt} (two sums of the same inputs)"
            )
        current = self._attempt
        if current is not None and (tag.round, tag.attempt) < (
            current.tag.round,
            current.tag.attempt,
        ):
            raise ProtocolError(
                f"key advert request: round {tag.round} attempt {tag.attempt} is older than the "
                f"current round {current.tag.round} attempt {current.tag.attempt}"
            )
        if current is None or current.tag != tag:
            self._session = tag.session
            self._attempt = _Attempt(tag, self._entropy)
        a = self._attempt
        assert a is not None
        return KeyAdvert(
            tag, self.worker_id, public_key(a.mask_private), public_key(a.cipher_private)
        )

    def _current(self, tag: RoundTag, *, what: str) -> _Attempt:
        if self._attempt is None:
            raise ProtocolError(f"{what}: no round in progress (keys not advertised)")
        self._attempt.tag.check(tag, what=what)
        return self._attempt

    # -- stage 2 ------------------------------------------------------------------------------
    def share_keys(self, tag: RoundTag, roster: Sequence[KeyAdvert]) -> ShareBundle:
        """Check the roster of adverts and seal this worker's shares for each neighbour in it."""
        what = f"roster for worker {self.worker_id}"
        a = self._current(tag, what=what)
        unique_ids([ad.worker for ad in roster], what=what)
        adverts = {}
        for ad in roster:
            tag.check(ad.tag, what=f"{what}: advert of worker {ad.worker}")
            ad.validate(self.params)
            adverts[ad.worker] = ad
        if a.roster is not None:
            if a.roster != adverts:
                raise ProtocolError(f"{what}: differs from the roster already used in this attempt")
            assert a.bundle is not None
            return a.bundle
        mine = adverts.get(self.worker_id)
        if mine is None or (mine.mask_public, mine.cipher_public) != (
            public_key(a.mask_private),
            public_key(a.cipher_private),
        ):
            raise ProtocolError(f"{what}: this worker's own advert is missing or altered")
        if len(adverts) < self.params.threshold:
            raise ProtocolError(
                f"{what}: expected at least threshold {self.params.threshold} adverts, "
                f"got {len(adverts)}"
            )
        nbrs = neighbours(self.params, tag)[self.worker_id] & adverts.keys()
        holders = sorted(nbrs | {self.worker_id})
        if len(holders) < self.params.threshold:
            raise ProtocolError(
                f"{what}: {len(nbrs)} advertised neighbours cannot hold threshold "
                f"{self.params.threshold} shares"
            )
        seed_shares = shamir.split(a.seed, holders, self.params.threshold, entropy=self._entropy)
        key_shares = shamir.split(
            a.mask_private, holders, self.params.threshold, entropy=self._entropy
        )
        cts = {
            v: encrypt_shares(
                cipher_private=a.cipher_private,
                receiver_public=adverts[v].cipher_public,
                tag=tag,
                sender=self.worker_id,
                receiver=v,
                seed_share=seed_shares[v],
                key_share=key_shares[v],
                entropy=self._entropy,
            )
            for v in sorted(nbrs)
        }
        a.roster, a.neighbours = adverts, frozenset(nbrs)
        a.own_shares = (seed_shares[self.worker_id], key_shares[self.worker_id])
        a.bundle = ShareBundle(tag, self.worker_id, cts)
        return a.bundle

    # -- stage 3 ------------------------------------------------------------------------------
    def masked_input(
        self, tag: RoundTag, delivered: Mapping[int, bytes], values: npt.NDArray[np.floating]
    ) -> MaskedInput:
        """Open the neighbours' shares and return ``values`` quantised and masked."""
        what = f"share delivery to worker {self.worker_id}"
        a = self._current(tag, what=what)
        if a.roster is None or a.own_shares is None:
            raise ProtocolError(f"{what}: this worker has not shared its keys in this attempt")
        q = self.params.quantizer.quantize(np.asarray(values).reshape(-1))
        if q.shape != (self.params.numel,):
            raise ProtocolError(
                f"{what}: values: expected {self.params.numel} values, got {q.size}"
            )
        d_digest = hashlib.sha256(
            b"".join(v.to_bytes(4, "big") + ct for v, ct in sorted(delivered.items()))
        ).digest()
        i_digest = hashlib.sha256(q.tobytes()).digest()
        if a.masked is not None:
            if d_digest != a.delivery_digest:
                raise ProtocolError(
                    f"{what}: differs from the delivery already used in this attempt"
                )
            if i_digest != a.input_digest:
                raise ProtocolError(
                    f"{what}: values differ from the input already masked in round {tag.round} "
                    f"attempt {tag.attempt}; a mask is never reused on a new value"
                )
            return a.masked
        unknown = set(delivered) - a.neighbours
        if unknown:
            raise ProtocolError(
                f"{what}: senders {sorted(unknown)} are not this worker's neighbours"
            )
        held = {}
        for v, ct in sorted(delivered.items()):
            held[v] = decrypt_shares(
                ct,
                cipher_private=a.cipher_private,
                sender_public=a.roster[v].cipher_public,
                tag=tag,
                sender=v,
                receiver=self.worker_id,
            )
        if len(held) + 1 < self.params.threshold:
            raise ProtocolError(
                f"{what}: shares from {len(held)} neighbours, fewer than threshold - 1 = "
                f"{self.params.threshold - 1}"
            )
        n = self.params.numel
        y = q + expand(self_seed(a.seed, tag, self.worker_id), n)
        for v in sorted(held):
            mask = expand(
                pair_seed(a.mask_private, a.roster[v].mask_public, tag, self.worker_id, v), n
            )
            y = y + mask if self.worker_id < v else y - mask
        a.held, a.delivery_digest, a.input_digest = held, d_digest, i_digest
        a.masked = MaskedInput(tag, self.worker_id, y.astype(np.uint32, copy=False))
        return a.masked

    # -- stage 4 ------------------------------------------------------------------------------
    def _checked_request(self, request: UnmaskRequest, what: str) -> _Attempt:
        """Return the attempt, once the request passes the rules every unmask request must."""
        a = self._current(request.tag, what=what)
        both = request.survivors & request.dropped
        if both:
            raise ProtocolError(
                f"{what}: workers {sorted(both)} listed as both survivor and dropped"
            )
        if self.worker_id not in request.survivors:
            raise ProtocolError(
                f"{what}: survivors: lists this worker as dropped, but it is answering"
            )
        if a.masked is None:
            raise ProtocolError(
                f"{what}: this worker has not sent its masked input in this attempt"
            )
        unlisted = set(a.held) - request.survivors - request.dropped
        if unlisted:
            raise ProtocolError(
                f"{what}: neighbours {sorted(unlisted)} sent shares but are listed neither as "
                "survivor nor dropped"
            )
        if len(request.survivors) < self.params.threshold:
            raise ProtocolError(
                f"{what}: survivors: expected at least threshold {self.params.threshold}, "
                f"got {len(request.survivors)}"
            )
        return a

    def _confirmers(self, a: _Attempt, request: UnmaskRequest) -> list[int]:
        assert a.roster is not None
        return sorted(v for v in a.neighbours & request.survivors if v in a.roster)

    def confirm(self, request: UnmaskRequest) -> dict[int, bytes]:
        """Return this worker's tag of ``request`` for each surviving neighbour (one request).

        Raises
        ------
        ProtocolError
            If the request breaks a rule of :meth:`unmask`, or this attempt already confirmed
            a different request.
        """
        what = f"unmask request to confirm, to worker {self.worker_id}"
        a = self._checked_request(request, what)
        digest = request.digest()
        if a.confirmed is not None and a.confirmed != digest:
            raise ProtocolError(
                f"{what}: this worker already confirmed a different survivor list in round "
                f"{request.tag.round} attempt {request.tag.attempt}"
            )
        a.confirmed = digest
        assert a.roster is not None
        return {
            v: confirmation_mac(
                cipher_private=a.cipher_private,
                peer_public=a.roster[v].cipher_public,
                tag=request.tag,
                sender=self.worker_id,
                receiver=v,
                request_digest=digest,
            )
            for v in self._confirmers(a, request)
        }

    def check_confirmations(self, request: UnmaskRequest, tags: Mapping[int, bytes]) -> None:
        """Check that enough surviving neighbours saw this same request (tags sent to us).

        Raises
        ------
        ProtocolError
            If this worker did not confirm ``request`` itself, a tag is from a worker that is
            not a surviving neighbour or fails to verify (another list, or forged), or fewer
            than ``threshold - 1`` neighbours confirmed.
        """
        what = f"survivor-list confirmations to worker {self.worker_id}"
        a = self._checked_request(request, what)
        digest = request.digest()
        if a.confirmed != digest:
            raise ProtocolError(f"{what}: this worker has not confirmed this request itself")
        confirmers = set(self._confirmers(a, request))
        assert a.roster is not None
        for v, got in sorted(tags.items()):
            if v not in confirmers:
                raise ProtocolError(f"{what}: worker {v} is not a surviving neighbour")
            expected = confirmation_mac(
                cipher_private=a.cipher_private,
                peer_public=a.roster[v].cipher_public,
                tag=request.tag,
                sender=v,
                receiver=self.worker_id,
                request_digest=digest,
            )
            if not hmac.compare_digest(got, expected):
                raise ProtocolError(
                    f"{what}: worker {v}'s tag does not verify: it was shown another survivor "
                    "list, or the tag was altered"
                )
        if len(tags) + 1 < self.params.threshold:
            raise ProtocolError(
                f"{what}: {len(tags)} neighbours confirmed, fewer than threshold - 1 = "
                f"{self.params.threshold - 1}"
            )
        a.checked = digest

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Reveal seed shares of survivors or key shares of dropouts, once per round."""
        what = f"unmask request to worker {self.worker_id}"
        tag = request.tag
        digest = request.digest()
        done = self._answered.get(tag.round)
        if done is not None and self._session == tag.session:
            if (done[0], done[1]) == (tag.attempt, digest):
                return done[2]
            raise ProtocolError(
                f"{what}: round {tag.round} was already answered (attempt {done[0]}); a different "
                "request would reveal both shares of a peer"
            )
        a = self._checked_request(request, what)
        if self.consistency and a.checked != digest:
            raise ProtocolError(
                f"{what}: the survivor list was not confirmed by threshold - 1 = "
                f"{self.params.threshold - 1} neighbours (check_confirmations first)"
            )
        assert a.own_shares is not None
        seed_shares = {v: s for v, (s, _) in a.held.items() if v in request.survivors}
        seed_shares[self.worker_id] = a.own_shares[0]
        key_shares = {v: k for v, (_, k) in a.held.items() if v in request.dropped}
        response = UnmaskResponse(tag, self.worker_id, seed_shares, key_shares)
        self._answered[tag.round] = (tag.attempt, digest, response)
        return response

    @property
    def session(self) -> bytes | None:
        """The session this worker has taken part in (from its first advert or its ledger)."""
        return self._session

    # -- the durable ledger ---------------------------------------------------------------------
    def ledger_bytes(self) -> bytes:
        """Return the answered-unmask record as JSON (format in ``docs/secure-aggregation.md``).

        Seal and store it before sending each unmask answer; restore with ``ledger=``.
        """
        rounds = {
            str(r): {
                "attempt": att,
                "request": dig.hex(),
                "seed_shares": {str(k): v.hex() for k, v in resp.seed_shares.items()},
                "key_shares": {str(k): v.hex() for k, v in resp.key_shares.items()},
            }
            for r, (att, dig, resp) in sorted(self._answered.items())
        }
        body = {
            "format": LEDGER_FORMAT,
            "worker": self.worker_id,
            "session": None if self._session is None else self._session.hex(),
            "answered": rounds,
        }
        return json.dumps(body, sort_keys=True).encode()

    def _load_ledger(self, raw: bytes) -> None:
        try:
            body = json.loads(raw)
            if body["format"] != LEDGER_FORMAT or body["worker"] != self.worker_id:
                raise ValueError(f"format/worker {body['format']!r}/{body['worker']!r}")
            self._session = None if body["session"] is None else bytes.fromhex(body["session"])
            for r, entry in body["answered"].items():
                assert self._session is not None
                tag = RoundTag(self._session, int(r), int(entry["attempt"]))
                resp = UnmaskResponse(
                    tag,
                    self.worker_id,
                    {int(k): bytes.fromhex(v) for k, v in entry["seed_shares"].items()},
                    {int(k): bytes.fromhex(v) for k, v in entry["key_shares"].items()},
                )
                self._answered[int(r)] = (tag.attempt, bytes.fromhex(entry["request"]), resp)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise ProtocolError(f"secagg worker ledger: unreadable ({exc})") from exc

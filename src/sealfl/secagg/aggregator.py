"""The aggregator's side of a round: collect, route, unmask the sum; serialisable state.

:class:`SecAggAggregator` moves through four stages and never holds an unmasked individual
vector: what it keeps is every message it received (public keys, sealed share ciphertexts it
cannot open, masked vectors, unmask answers), and :meth:`finish` subtracts only the masks the
threshold of answers lets it rebuild (self-masks of survivors, pairwise masks towards dropouts)
from the *sum* of the survivors' masked vectors.

The whole state is :meth:`state_bytes` (no pickle): ``SAGG`` magic, a 4-byte big-endian length,
a UTF-8 JSON header (format ``sealfl-secagg-aggregator/1``: params, tag, stage, adverts, share
ciphertexts, masked senders in order, unmask answers, all bytes hex), then the masked vectors
as little-endian uint32 in that order. It goes into the sealed checkpoint after each stage; a
new object from :meth:`from_state` resumes the same attempt (the workers answer idempotently).
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError
from sealfl.secagg import shamir
from sealfl.secagg.masks import expand, pair_seed, self_seed
from sealfl.secagg.messages import (
    KeyAdvert,
    MaskedInput,
    Params,
    RoundTag,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
    neighbours,
)
from sealfl.secagg.worker import public_key

__all__ = ["DropoutError", "SecAggAggregator", "Stage"]

STATE_FORMAT = "sealfl-secagg-aggregator/1"
_MAGIC = b"SAGG"


class DropoutError(ProtocolError):
    """Too few workers remain for the round to complete; no partial result is produced."""


class Stage(enum.Enum):
    """Where a round stands on the aggregator."""

    ADVERTISE = "advertise"
    SHARE = "share"
    MASKED = "masked"
    UNMASK = "unmask"
    DONE = "done"


class SecAggAggregator:
    """One attempt of one round, on the aggregator.

    Parameters
    ----------
    params
        The run's parameters (the workers check they get the same).
    tag
        The round and attempt; a restart with fresh masks is a new object with ``attempt + 1``.
    """

    def __init__(self, *, params: Params, tag: RoundTag) -> None:
        self.params = params
        self.tag = tag
        self.stage = Stage.ADVERTISE
        self.adverts: dict[int, KeyAdvert] = {}
        self.bundles: dict[int, ShareBundle] = {}
        self.masked: dict[int, MaskedInput] = {}
        self.responses: dict[int, UnmaskResponse] = {}
        self._graph = neighbours(params, tag)

    def _expect(self, stage: Stage, what: str) -> None:
        if self.stage is not stage:
            raise ProtocolError(
                f"{what}: expected during stage {stage.value}, now {self.stage.value}"
            )

    def _once(self, store: dict[int, Any], sender: int, what: str) -> None:
        if sender in store:
            raise ProtocolError(
                f"{what}: worker {sender} already sent one in this attempt (replay)"
            )

    def _need(self, have: int, what: str) -> None:
        if have < self.params.threshold:
            raise DropoutError(
                f"round {self.tag.round} attempt {self.tag.attempt}: {what}: {have} workers, "
                f"fewer than threshold {self.params.threshold}; the round is abandoned"
            )

    # -- stage 1 ------------------------------------------------------------------------------
    def receive_advert(self, advert: KeyAdvert) -> None:
        """Accept one worker's public keys."""
        what = f"key advert of worker {advert.worker}"
        self._expect(Stage.ADVERTISE, what)
        self.tag.check(advert.tag, what=what)
        advert.validate(self.params)
        self._once(self.adverts, advert.worker, what)
        self.adverts[advert.worker] = advert

    def roster(self) -> tuple[KeyAdvert, ...]:
        """Close stage 1: the adverts every worker gets (needs ``threshold`` of them)."""
        if self.stage is Stage.ADVERTISE:
            self._need(len(self.adverts), "key adverts")
            self.stage = Stage.SHARE
        return tuple(self.adverts[w] for w in sorted(self.adverts))

    # -- stage 2 ------------------------------------------------------------------------------
    def _advertised_neighbours(self, worker: int) -> frozenset[int]:
        return self._graph[worker] & self.adverts.keys()

    def receive_shares(self, bundle: ShareBundle) -> None:
        """Accept one worker's sealed shares (one ciphertext for each advertised neighbour)."""
        what = f"share bundle of worker {bundle.sender}"
        self._expect(Stage.SHARE, what)
        self.tag.check(bundle.tag, what=what)
        if bundle.sender not in self.adverts:
            raise ProtocolError(f"{what}: sender did not advertise keys in this attempt")
        self._once(self.bundles, bundle.sender, what)
        expected = self._advertised_neighbours(bundle.sender)
        bundle.validate(expected)
        if set(bundle.ciphertexts) != expected:
            raise ProtocolError(
                f"{what}: ciphertexts: expected one for each of {sorted(expected)}, got "
                f"{sorted(bundle.ciphertexts)}"
            )
        self.bundles[bundle.sender] = bundle

    def close_sharing(self) -> None:
        """Close stage 2 (needs ``threshold`` bundles)."""
        if self.stage is Stage.SHARE:
            self._need(len(self.bundles), "share bundles")
            self.stage = Stage.MASKED

    def delivery(self, receiver: int) -> dict[int, bytes]:
        """Return the ciphertexts addressed to ``receiver``, by sender (once sharing is closed)."""
        if self.stage is Stage.ADVERTISE or self.stage is Stage.SHARE:
            raise ProtocolError(f"share delivery to worker {receiver}: sharing is not closed")
        return {
            s: b.ciphertexts[receiver]
            for s, b in sorted(self.bundles.items())
            if receiver in b.ciphertexts
        }

    # -- stage 3 ------------------------------------------------------------------------------
    def receive_masked(self, masked: MaskedInput) -> None:
        """Accept one worker's masked vector."""
        what = f"masked input of worker {masked.sender}"
        self._expect(Stage.MASKED, what)
        self.tag.check(masked.tag, what=what)
        if masked.sender not in self.bundles:
            raise ProtocolError(f"{what}: sender did not share its keys in this attempt")
        self._once(self.masked, masked.sender, what)
        masked.validate(self.params)
        self.masked[masked.sender] = masked

    def unmask_request(self) -> UnmaskRequest:
        """Close stage 3: survivors sent masked input; dropped shared keys but did not."""
        if self.stage is Stage.MASKED:
            self._need(len(self.masked), "masked inputs")
            self.stage = Stage.UNMASK
        self._expect(Stage.UNMASK, "unmask request")
        survivors = frozenset(self.masked)
        return UnmaskRequest(self.tag, survivors, frozenset(self.bundles) - survivors)

    # -- stage 4 ------------------------------------------------------------------------------
    def _holders(self) -> dict[int, frozenset[int]]:
        # Who holds shares of whom: u's advertised neighbours that u sealed shares for, and u.
        return {u: frozenset(b.ciphertexts) | {u} for u, b in self.bundles.items()}

    def receive_unmask(self, response: UnmaskResponse) -> None:
        """Accept one survivor's shares."""
        what = f"unmask response of worker {response.sender}"
        self._expect(Stage.UNMASK, what)
        self.tag.check(response.tag, what=what)
        request = self.unmask_request()
        if response.sender not in request.survivors:
            raise ProtocolError(f"{what}: sender is not a survivor of this attempt")
        self._once(self.responses, response.sender, what)
        response.validate(request, self._holders())
        self.responses[response.sender] = response

    def finish(self) -> npt.NDArray[np.float64]:
        """Return the dequantised sum of the survivors' inputs, or :class:`DropoutError`."""
        request = self.unmask_request()
        t, n = self.params.threshold, self.params.numel
        self._need(len(self.responses), "unmask responses")
        seeds: dict[int, bytes] = {}
        keys: dict[int, bytes] = {}
        for u in sorted(request.survivors):
            shares = {s: r.seed_shares[u] for s, r in self.responses.items() if u in r.seed_shares}
            if len(shares) < t:
                raise DropoutError(f"self-mask seed of worker {u}: {len(shares)} shares, need {t}")
            seeds[u] = shamir.reconstruct(shares, t, what=f"self-mask seed of worker {u}")
        for v in sorted(request.dropped):
            shares = {s: r.key_shares[v] for s, r in self.responses.items() if v in r.key_shares}
            if len(shares) < t:
                raise DropoutError(
                    f"mask key of dropped worker {v}: {len(shares)} shares, need {t}"
                )
            keys[v] = shamir.reconstruct(shares, t, what=f"mask key of worker {v}")
            if public_key(keys[v]) != self.adverts[v].mask_public:
                raise ProtocolError(
                    f"mask key of worker {v}: reconstructed key does not match its advert"
                )
        total = np.zeros(n, dtype=np.uint32)
        for u in sorted(request.survivors):
            total += self.masked[u].values
            total -= expand(self_seed(seeds[u], self.tag, u), n)
        for v, key in keys.items():
            for w in sorted(request.survivors):
                if v in self.bundles[w].ciphertexts:  # w received v's shares, so w masked with v
                    mask = expand(pair_seed(key, self.adverts[w].mask_public, self.tag, v, w), n)
                    if w < v:
                        total -= mask
                    else:
                        total += mask
        self.stage = Stage.DONE
        return self.params.quantizer.dequantize_sum(total, len(request.survivors))

    # -- state ---------------------------------------------------------------------------------
    def state_bytes(self) -> bytes:
        """Everything this attempt holds, in the documented binary format (no pickle)."""
        p = self.params
        order = sorted(self.masked)
        header = {
            "format": STATE_FORMAT,
            "params": {
                "workers": list(p.workers),
                "threshold": p.threshold,
                "numel": p.numel,
                "clip": p.clip,
                "degree": p.degree,
            },
            "tag": {
                "session": self.tag.session.hex(),
                "round": self.tag.round,
                "attempt": self.tag.attempt,
            },
            "stage": self.stage.value,
            "adverts": [
                [a.worker, a.mask_public.hex(), a.cipher_public.hex()]
                for _, a in sorted(self.adverts.items())
            ],
            "bundles": {
                str(u): {str(v): ct.hex() for v, ct in sorted(b.ciphertexts.items())}
                for u, b in sorted(self.bundles.items())
            },
            "masked": order,
            "responses": {
                str(u): {
                    "seed_shares": {str(k): v.hex() for k, v in sorted(r.seed_shares.items())},
                    "key_shares": {str(k): v.hex() for k, v in sorted(r.key_shares.items())},
                }
                for u, r in sorted(self.responses.items())
            },
        }
        raw = json.dumps(header, sort_keys=True).encode()
        body = b"".join(self.masked[u].values.astype("<u4").tobytes() for u in order)
        return _MAGIC + struct.pack(">I", len(raw)) + raw + body

    @classmethod
    def from_state(cls, raw: bytes) -> SecAggAggregator:
        """Rebuild an aggregator from :meth:`state_bytes` (e.g. after a restart)."""
        try:
            if raw[:4] != _MAGIC:
                raise ValueError("magic: expected b'SAGG'")
            (size,) = struct.unpack(">I", raw[4:8])
            h = json.loads(raw[8 : 8 + size])
            if h["format"] != STATE_FORMAT:
                raise ValueError(f"format: expected {STATE_FORMAT!r}, got {h['format']!r}")
            pp = h["params"]
            params = Params(
                workers=tuple(pp["workers"]),
                threshold=pp["threshold"],
                numel=pp["numel"],
                clip=pp["clip"],
                degree=pp["degree"],
            )
            tg = h["tag"]
            tag = RoundTag(bytes.fromhex(tg["session"]), tg["round"], tg["attempt"])
            agg = cls(params=params, tag=tag)
            agg.adverts = {
                w: KeyAdvert(tag, w, bytes.fromhex(m), bytes.fromhex(c)) for w, m, c in h["adverts"]
            }
            agg.bundles = {
                int(u): ShareBundle(
                    tag, int(u), {int(v): bytes.fromhex(ct) for v, ct in cts.items()}
                )
                for u, cts in h["bundles"].items()
            }
            body = raw[8 + size :]
            width = 4 * params.numel
            if len(body) != width * len(h["masked"]):
                raise ValueError(
                    f"vectors: expected {width * len(h['masked'])} bytes, got {len(body)}"
                )
            for i, u in enumerate(h["masked"]):
                values = np.frombuffer(body[i * width : (i + 1) * width], dtype="<u4").astype(
                    np.uint32
                )
                agg.masked[int(u)] = MaskedInput(tag, int(u), values)
            agg.responses = {
                int(u): UnmaskResponse(
                    tag,
                    int(u),
                    {int(k): bytes.fromhex(v) for k, v in r["seed_shares"].items()},
                    {int(k): bytes.fromhex(v) for k, v in r["key_shares"].items()},
                )
                for u, r in h["responses"].items()
            }
            agg.stage = Stage(h["stage"])
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise ProtocolError(f"secagg aggregator state: unreadable ({exc})") from exc
        return agg

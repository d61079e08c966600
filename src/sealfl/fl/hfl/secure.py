"""Secure aggregation in hfl (``--secure-aggregation``): the PS learns only the survivors' sum.

:mod:`sealfl.secagg` runs over hfl's mutual RA-TLS channel, on top of TEE aggregation: a worker
never sends its update in the clear, so the PS (in its enclave, or outside one when its policy
allows) sees only masked vectors and the unmasked *sum*. One round::

    worker                                          PS
    GetGlobal(v)                           <-  model v + SecAggRound(tag, params)
    SecAgg(advert: keys, weight)           ->  waits for every active seat (or the deadline)
                                           <-  roster (adverts + the RA-TLS identity each came over)
    SecAgg(bundle: one ciphertext a peer)  ->  waits for every roster member
                                           <-  the ciphertexts addressed to this worker
    train; SubmitUpdate(masked uint32)     ->  waits for every bundle sender
    SecAgg(unmask poll)                    <-  survivors / dropped
    SecAgg(confirm: tags of that list)     ->  waits for every survivor
                                           <-  the neighbours' tags for this worker
    SecAgg(answer: shares)                 ->  sum, dequantised; FedAvg step on the mean

A stage closes when the last message it waits for arrives (in that call's thread, so it never
waits for the PS's evaluation or checkpoint), or at the deadline (the PS's driver).

What a worker masks: ``(n_i / N) * u_i`` where ``u_i`` is its update minus the global model
(its gradient with the reference aggregation), ``n_i`` its weight (examples, announced in its
advert) and ``N`` the roster's total weight; the PS divides the sum by the survivors' share of
``N`` and adds the global model back. Each coordinate is clipped to ``[-clip, clip]`` before
quantisation (a bound on any one worker's influence, too); a worker counts and reports clipped
values.

Rules that hold end to end (each refusal a reply with a reason, the round going on):

- the PS takes an advert only from the certificate that holds the seat (or its seat token),
  records that certificate's fingerprint as the advert's identity and shows it in the roster; a
  worker refuses a roster in which its own advert, weight or identity was altered;
- a second, *different* message of a stage from one worker (a replay with other content) is
  refused; the *identical* message is answered again, which is how a resumed PS and a
  reconnecting worker continue the same attempt;
- masked inputs of another round, attempt or session are refused before a byte is taken;
- workers confirm the survivor list to each other before revealing shares (SecAgg's
  consistency check, :meth:`sealfl.secagg.SecAggWorker.check_confirmations`);
- a worker answers the unmask stage once per round (the core's ledger) and once per *update*
  (this module's ledger, across sessions: a PS that starts a new run cannot unmask the same
  update over another survivor set). Both are sealed to the worker's TEE before each answer.

The PS's state of the open round (:class:`SecureRound`) is sealed at every stage (label
``hfl/secagg``, beside the checkpoint); a resumed PS continues the same attempt with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.settings import Settings
from sealfl.secagg import (
    DropoutError,
    KeyAdvert,
    MaskedInput,
    Params,
    RoundTag,
    SecAggAggregator,
    ShareBundle,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = [
    "SECAGG_FILE",
    "SECAGG_LABEL",
    "SecAggOptions",
    "SecureRound",
    "UpdateLedger",
    "aggregate",
    "params_from_proto",
    "params_to_proto",
    "planned_weight",
    "session_of",
    "tag_from_proto",
    "tag_to_proto",
    "weighted_update",
]

SECAGG_FILE = "hfl_secagg.sealed"
"""The PS's secure-aggregation state of the open round, in its ``--out`` directory."""
SECAGG_LABEL = "hfl/secagg"
"""Label of that file (sealed with the checkpoint's key)."""
LEDGER_LABEL = "hfl/secagg-ledger"
"""Label of a worker's sealed unmask ledger."""
_LEDGER_FORMAT = "sealfl-hfl-secagg-ledger/1"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class SecAggOptions:
    """The PS operator's secure-aggregation settings.

    Parameters
    ----------
    threshold
        Shares needed to recover a secret, i.e. the fewest survivors a round completes with;
        ``None``: a majority of the seats (``n // 2 + 1``). Must be more than half of the seats.
    clip
        Each worker's weighted update is clipped to ``[-clip, clip]`` per value before
        quantisation; the sum's error is at most ``survivors * clip / (2^bits - 1)`` per value
        (``bits = 32 - ceil(log2 seats)``).
    degree
        Neighbours per worker (SecAgg+'s sparse graph; even), ``None`` for all pairs.

    Raises
    ------
    ConfigError
        Naming the option.
    """

    threshold: int | None = None
    clip: float = 16.0
    degree: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and self.threshold < 2:
            raise ConfigError(f"--secagg-threshold must be at least 2, got {self.threshold}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"--secagg-clip must be a positive number, got {self.clip}")

    def check_seats(self, worker_num: int) -> None:
        """Refuse a threshold that no federation of ``worker_num`` seats could use.

        Raises
        ------
        ConfigError
            Naming the option and the range.
        """
        if worker_num < 2:
            raise ConfigError("--secure-aggregation needs at least 2 workers (--worker-num)")
        self.params((*range(1, worker_num + 1),), 1)

    def params(self, workers: tuple[int, ...], numel: int) -> Params:
        """Return the round's parameters for these seats."""
        threshold = self.threshold if self.threshold is not None else len(workers) // 2 + 1
        try:
            return Params(
                workers=workers,
                threshold=threshold,
                numel=numel,
                clip=self.clip,
                degree=self.degree,
            )
        except ConfigError as exc:
            raise ConfigError(f"--secure-aggregation with seats {list(workers)}: {exc}") from None


def planned_weight(settings: Settings, examples: int) -> int:
    """Return the FedAvg weight a worker's round will have (announced before it trains).

    What :meth:`.training.LocalTrainer.train` reports: the shard's size, or with local steps
    the examples of that many minibatches (epochs cycled, the last batch of each short).
    """
    if not settings.local_steps:
        return examples
    b = settings.batch_size
    epoch = [b] * (examples // b) + ([examples % b] if examples % b else [])
    whole, part = divmod(settings.local_steps, len(epoch))
    return whole * examples + sum(epoch[:part])


def weighted_update(
    values: F32, global_values: F32, *, weight: int, total: int, gradient: bool
) -> F64:
    """Return what a worker masks: ``(weight / total) * (values - global)`` (or its gradient).

    The PS's sum of these over the survivors, times ``total / (their weight)``, is FedAvg's
    mean update (:func:`aggregate` adds it to the model).
    """
    update = values.astype(np.float64)
    if not gradient:
        update -= global_values
    update *= weight / total
    return update


def aggregate(mean: F64, global_values: F32, *, gradient: bool) -> F32:
    """Return the FedAvg upload of a secure round: the global model plus the mean update."""
    if gradient:
        return mean.astype(np.float32)
    return (global_values.astype(np.float64) + mean).astype(np.float32)


def session_of(run_id: str) -> bytes:
    """Return the 32-byte secure-aggregation session of a run (stable across a resume)."""
    return hashlib.sha256(b"sealfl hfl secagg session\0" + run_id.encode()).digest()


# ---- protobuf forms ------------------------------------------------------------------------


def tag_to_proto(tag: RoundTag) -> pb.SecAggTag:
    """Return the protobuf form of a round tag."""
    return pb.SecAggTag(session=tag.session, round=tag.round, attempt=tag.attempt)


def tag_from_proto(message: pb.SecAggTag) -> RoundTag:
    """Return a round tag (ProtocolError if malformed)."""
    return RoundTag(bytes(message.session), message.round, message.attempt)


def params_to_proto(params: Params) -> pb.SecAggParams:
    """Return the protobuf form of a round's parameters."""
    return pb.SecAggParams(
        workers=list(params.workers),
        threshold=params.threshold,
        numel=params.numel,
        clip=params.clip,
        degree=params.degree or 0,
    )


def params_from_proto(message: pb.SecAggParams) -> Params:
    """Return a round's parameters, refusing unusable ones as a ProtocolError."""
    try:
        return Params(
            workers=tuple(message.workers),
            threshold=message.threshold,
            numel=message.numel,
            clip=message.clip,
            degree=message.degree or None,
        )
    except ConfigError as exc:
        raise ProtocolError(f"secure-aggregation parameters from the PS: {exc}") from None


def peer_bytes(items: Mapping[int, bytes]) -> pb.SecAggList:
    """Return ``{peer: bytes}`` as a protobuf list (sorted by peer)."""
    return pb.SecAggList(
        items=[pb.SecAggPeerBytes(peer=k, value=v) for k, v in sorted(items.items())]
    )


def peer_map(message: pb.SecAggList, *, what: str) -> dict[int, bytes]:
    """Return a protobuf list as ``{peer: bytes}``, refusing a peer named twice."""
    out: dict[int, bytes] = {}
    for item in message.items:
        if item.peer in out:
            raise ProtocolError(f"{what}: worker {item.peer} appears twice")
        out[item.peer] = bytes(item.value)
    return out


def advert_to_proto(advert: KeyAdvert, weight: int, identity: str = "") -> pb.SecAggAdvert:
    """Return the protobuf form of a key advert with its weight and identity."""
    return pb.SecAggAdvert(
        worker_id=advert.worker,
        mask_public=advert.mask_public,
        cipher_public=advert.cipher_public,
        weight=weight,
        identity=identity,
    )


def advert_from_proto(message: pb.SecAggAdvert, tag: RoundTag) -> KeyAdvert:
    """Return the core's advert of a protobuf advert."""
    return KeyAdvert(
        tag, message.worker_id, bytes(message.mask_public), bytes(message.cipher_public)
    )


# ---- the PS's round ------------------------------------------------------------------------


class SecureRound:
    """One round's secure aggregation on the PS, beyond the core.

    Weights, identities, confirmations, idempotent replies, and its sealed form.

    Methods are called with the PS's lock held; they never block. ``None`` from a worker's
    call means "the stage has not closed yet: ask again".

    Parameters
    ----------
    version
        The model version the round trains on (the tag's round).
    agg
        The core aggregator of this attempt.
    """

    def __init__(self, *, version: int, agg: SecAggAggregator) -> None:
        self.version = version
        self.agg = agg
        self.weights: dict[int, int] = {}
        self.identities: dict[int, str] = {}
        self.confirmations: dict[int, dict[int, bytes]] = {}
        self.confirmations_closed = False
        self.train_loss: dict[int, float] = {}
        self.train_seconds: dict[int, float] = {}

    @property
    def tag(self) -> RoundTag:
        """The round's tag."""
        return self.agg.tag

    @property
    def params(self) -> Params:
        """The round's parameters."""
        return self.agg.params

    @property
    def stage(self) -> Stage:
        """The core's stage."""
        return self.agg.stage

    @property
    def closable(self) -> bool:
        """Whether a stage :meth:`close_stage` closes is open (not: answers, or done)."""
        return self.stage is not Stage.DONE and not (
            self.stage is Stage.UNMASK and self.confirmations_closed
        )

    # -- requests from workers ------------------------------------------------------------

    def advert(self, advert: KeyAdvert, weight: int, identity: str) -> list[pb.SecAggAdvert] | None:
        """Take a worker's advert; return the roster once stage 1 has closed."""
        who = f"key advert of worker {advert.worker}"
        if weight < 1:
            raise ProtocolError(f"{who}: weight: expected at least one example, got {weight}")
        known = self.agg.adverts.get(advert.worker)
        if known is not None:
            if known != advert or self.weights[advert.worker] != weight:
                raise ProtocolError(f"{who}: differs from its advert already taken (replay)")
        elif self.agg.stage is Stage.ADVERTISE:
            self.agg.receive_advert(advert)
            self.weights[advert.worker] = weight
            self.identities[advert.worker] = identity
        else:
            raise ProtocolError(f"{who}: stage 1 of this round closed without it")
        if self.agg.stage is Stage.ADVERTISE:
            return None
        return self.roster()

    def roster(self) -> list[pb.SecAggAdvert]:
        """Return the adverts of stage 1 with their weights and identities."""
        return [
            advert_to_proto(a, self.weights[w], self.identities[w])
            for w, a in sorted(self.agg.adverts.items())
        ]

    def bundle(self, bundle: ShareBundle) -> dict[int, bytes] | None:
        """Take a worker's sealed shares; return those addressed to it once sharing closed."""
        who = f"share bundle of worker {bundle.sender}"
        known = self.agg.bundles.get(bundle.sender)
        if known is not None:
            if dict(known.ciphertexts) != dict(bundle.ciphertexts):
                raise ProtocolError(f"{who}: differs from its bundle already taken (replay)")
        elif self.agg.stage is Stage.SHARE:
            self.agg.receive_shares(bundle)
        else:
            raise ProtocolError(f"{who}: stage {self.agg.stage.value}: not taking shares")
        if self.agg.stage in (Stage.ADVERTISE, Stage.SHARE):
            return None
        return self.agg.delivery(bundle.sender)

    def check_masked(self, worker: int, tag: RoundTag) -> None:
        """Refuse a masked input before its bytes are received, if it cannot be taken."""
        what = f"masked input of worker {worker}"
        self.tag.check(tag, what=what)
        if worker in self.agg.masked:
            return  # the identical input is accepted again, a different one refused on receipt
        if worker not in self.agg.bundles:
            raise ProtocolError(f"{what}: it shared no keys in this round")
        if self.agg.stage is not Stage.MASKED:
            raise ProtocolError(f"{what}: stage {self.agg.stage.value}: not taking inputs")

    def masked(self, masked: MaskedInput, loss: float, seconds: float) -> None:
        """Take a worker's masked vector (the identical one again is accepted)."""
        self.check_masked(masked.sender, masked.tag)
        known = self.agg.masked.get(masked.sender)
        if known is not None:
            if not np.array_equal(known.values, masked.values):
                raise ProtocolError(
                    f"masked input of worker {masked.sender}: differs from its input already "
                    "taken (replay)"
                )
            return
        self.agg.receive_masked(masked)
        self.train_loss[masked.sender] = loss
        self.train_seconds[masked.sender] = seconds

    def request(self) -> UnmaskRequest:
        """Return the unmask request of this round (once stage 3 closed)."""
        survivors = frozenset(self.agg.masked)
        return UnmaskRequest(self.tag, survivors, frozenset(self.agg.bundles) - survivors)

    def _survivor(self, worker: int, what: str) -> UnmaskRequest:
        if self.agg.stage not in (Stage.UNMASK, Stage.DONE):
            raise ProtocolError(f"{what}: stage {self.agg.stage.value}: no unmask request yet")
        request = self.request()
        if worker not in request.survivors:
            raise ProtocolError(f"{what}: worker {worker}'s masked input is not in this round")
        return request

    def unmask_poll(self, worker: int) -> UnmaskRequest | None:
        """Return the unmask request once stage 3 closed (to survivors only)."""
        if self.agg.stage in (Stage.ADVERTISE, Stage.SHARE, Stage.MASKED):
            if worker not in self.agg.bundles:
                raise ProtocolError(f"unmask poll of worker {worker}: it shared no keys")
            return None
        return self._survivor(worker, f"unmask poll of worker {worker}")

    def confirm(self, worker: int, tags: dict[int, bytes]) -> dict[int, bytes] | None:
        """Take a survivor's tags of the survivor list; return its neighbours' for it."""
        what = f"confirmation of worker {worker}"
        request = self._survivor(worker, what)
        known = self.confirmations.get(worker)
        if known is not None:
            if known != tags:
                raise ProtocolError(f"{what}: differs from its confirmation already taken")
        elif self.confirmations_closed:
            raise ProtocolError(f"{what}: the confirmations of this round closed without it")
        else:
            extra = set(tags) - request.survivors
            if extra:
                raise ProtocolError(f"{what}: tags for workers {sorted(extra)}, not survivors")
            self.confirmations[worker] = tags
        if not self.confirmations_closed:
            return None
        return {s: t[worker] for s, t in sorted(self.confirmations.items()) if worker in t}

    def answer(self, response: UnmaskResponse) -> None:
        """Take a survivor's shares (the identical answer again is accepted)."""
        what = f"unmask answer of worker {response.sender}"
        self.tag.check(response.tag, what=what)
        known = self.agg.responses.get(response.sender)
        if known is not None:
            if known != response:
                raise ProtocolError(f"{what}: differs from its answer already taken (replay)")
            return
        if not self.confirmations_closed or response.sender not in self.confirmations:
            raise ProtocolError(f"{what}: it did not take part in the confirmation")
        self.agg.receive_unmask(response)

    # -- the driver's view -----------------------------------------------------------------

    def waiting_for(self, active: set[int]) -> set[int]:
        """Return the workers the open stage still waits for (empty: it can close now)."""
        agg = self.agg
        if agg.stage is Stage.ADVERTISE:
            return active - set(agg.adverts)
        if agg.stage is Stage.SHARE:
            return set(agg.adverts) - set(agg.bundles)
        if agg.stage is Stage.MASKED:
            return set(agg.bundles) - set(agg.masked)
        if agg.stage is Stage.UNMASK and not self.confirmations_closed:
            return set(agg.masked) - set(self.confirmations)
        if agg.stage is Stage.UNMASK:
            return set(self.confirmations) - set(agg.responses)
        return set()

    def close_stage(self) -> str:
        """Close the open stage (DropoutError if too few); return its name."""
        agg = self.agg
        if agg.stage is Stage.ADVERTISE:
            agg.roster()
            return "adverts"
        if agg.stage is Stage.SHARE:
            agg.close_sharing()
            return "shares"
        if agg.stage is Stage.MASKED:
            agg.unmask_request()
            return "masked inputs"
        if agg.stage is Stage.UNMASK and not self.confirmations_closed:
            if len(self.confirmations) < self.params.threshold:
                raise DropoutError(
                    f"round {self.version + 1}: {len(self.confirmations)} confirmations, fewer "
                    f"than threshold {self.params.threshold}"
                )
            self.confirmations_closed = True
            return "confirmations"
        raise ProtocolError(f"secure aggregation: no stage to close at {agg.stage.value}")

    def finish(self) -> tuple[F64, tuple[int, ...], int]:
        """Return the survivors' mean update, the survivors, and their total weight."""
        if self.agg.stage is Stage.DONE:  # sealed after finishing: the sum again, from the state
            self.agg.stage = Stage.UNMASK
        total = self.agg.finish()
        survivors = tuple(sorted(self.agg.masked))
        roster_weight = sum(self.weights.values())
        weight = sum(self.weights[w] for w in survivors)
        return total * (roster_weight / weight), survivors, weight

    # -- sealed form -----------------------------------------------------------------------

    def to_bytes(self, run_id: str) -> bytes:
        """Return the state as a serialised :class:`pb.SecAggCheckpoint`."""
        message = pb.SecAggCheckpoint(
            run_id=run_id,
            version=self.version,
            aggregator=self.agg.state_bytes(),
            adverts=self.roster(),
            confirmations_closed=self.confirmations_closed,
        )
        for w, tags in self.confirmations.items():
            message.confirmations[w].CopyFrom(peer_bytes(tags))
        for w, loss in self.train_loss.items():
            message.train_loss[w] = loss
        for w, seconds in self.train_seconds.items():
            message.train_seconds[w] = seconds
        return message.SerializeToString()

    @classmethod
    def from_bytes(cls, raw: bytes) -> tuple[str, SecureRound]:
        """Return the run id and the round of :meth:`to_bytes` (ProtocolError if malformed)."""
        try:
            message = pb.SecAggCheckpoint.FromString(raw)
        except Exception as exc:  # protobuf's DecodeError, or anything it raises on garbage
            raise ProtocolError(f"secure-aggregation state: not readable ({exc})") from None
        agg = SecAggAggregator.from_state(bytes(message.aggregator))
        rnd = cls(version=message.version, agg=agg)
        for a in message.adverts:
            if a.worker_id not in agg.adverts:
                raise ProtocolError(
                    f"secure-aggregation state: a weight for worker {a.worker_id}, whose advert "
                    "the aggregator state lacks"
                )
            rnd.weights[a.worker_id] = a.weight
            rnd.identities[a.worker_id] = a.identity
        unweighted = set(agg.adverts) - set(rnd.weights)
        if unweighted:
            raise ProtocolError(
                "secure-aggregation state: no weight for the adverts of workers "
                f"{sorted(unweighted)}"
            )
        rnd.confirmations = {
            w: peer_map(tags, what="confirmations") for w, tags in message.confirmations.items()
        }
        rnd.confirmations_closed = message.confirmations_closed
        rnd.train_loss = dict(message.train_loss)
        rnd.train_seconds = dict(message.train_seconds)
        return message.run_id, rnd


# ---- the worker's ledger of answered updates -------------------------------------------


class UpdateLedger:
    """A worker's durable record of what it unmasked: the core's ledger plus its updates.

    The core refuses a second unmask answer for a round of one session. This adds: an update
    (by SHA-256 of its values and version) is unmasked in at most one (session, round,
    attempt, request), so a PS that begins a new run, with a new session, cannot collect a
    second sum over the same updates and another survivor set.

    The whole record is JSON, sealed by the worker (label :data:`LEDGER_LABEL`) before every
    answer it sends.
    """

    def __init__(self, worker_id: int, raw: bytes | None = None) -> None:
        self.worker_id = worker_id
        self.core: bytes | None = None
        self.updates: dict[str, str] = {}
        if raw is not None:
            try:
                body = json.loads(raw)
                if body["format"] != _LEDGER_FORMAT or body["worker"] != worker_id:
                    raise ValueError(f"format/worker {body['format']!r}/{body['worker']!r}")
                core = body["core"]
                self.core = None if core is None else core.encode()
                self.updates = {str(k): str(v) for k, v in body["updates"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ProtocolError(f"hfl secure-aggregation ledger: unreadable ({exc})") from exc

    @staticmethod
    def update_digest(version: int, values: F32) -> str:
        """Return the key of an update: its version and values."""
        h = hashlib.sha256(b"sealfl hfl secagg update\0" + version.to_bytes(8, "big"))
        h.update(np.ascontiguousarray(values, dtype="<f4").tobytes())
        return h.hexdigest()

    @staticmethod
    def answer_key(request: UnmaskRequest) -> str:
        """Return what an answer is bound to: the session, round, attempt and request."""
        return request.tag.encode().hex() + ":" + request.digest().hex()

    def check(self, update: str, request: UnmaskRequest) -> None:
        """Refuse to unmask ``update`` for ``request`` if it was unmasked for another one."""
        done = self.updates.get(update)
        if done is not None and done != self.answer_key(request):
            raise ProtocolError(
                f"unmask request to worker {self.worker_id}: this update was already unmasked "
                "in another session, round or attempt; a second sum over it is refused"
            )

    def record(self, update: str, request: UnmaskRequest, core: bytes) -> None:
        """Note an answer (before it is sent)."""
        self.updates[update] = self.answer_key(request)
        self.core = core

    def to_bytes(self) -> bytes:
        """Return the record as JSON."""
        body = {
            "format": _LEDGER_FORMAT,
            "worker": self.worker_id,
            "core": None if self.core is None else self.core.decode(),
            "updates": dict(sorted(self.updates.items())),
        }
        return json.dumps(body, sort_keys=True).encode()

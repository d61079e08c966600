"""The client's and the server's side of one query, and the schedule that drives them.

Each party is a small state machine over the levels of :meth:`QueryPlan.schedule`: ``open``
returns the arrays it sends at a level, ``close`` combines them with the peer's. A
:class:`Endpoint` decides what goes into each message. Its rule is *open your own level before
you close it, and open the next level as soon as the previous one is closed*, which makes
messages leapfrog: every message carries the sender's half of the level the peer is waiting
for and its half of the next one, so a level costs half a round trip, not a whole one. The
client opens the first two levels at once (neither needs anything from the server), so the
masked input and the first comparison round travel together.

The same code runs in one process (:func:`evaluate_locally`, used by the tests) and across
gRPC (:mod:`sealfl.fl.infer`), which only moves the messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError
from sealfl.mpc.compare import Comparator
from sealfl.mpc.dealer import (
    PartyMaterial,
    deal_query,
    expand_client,
    expand_server,
    session_mask,
)
from sealfl.mpc.plan import SPLINE_FRAC_BITS, Level, Linear, Output, QueryPlan
from sealfl.mpc.ring import U64, check_array, decode, encode

Arr = npt.NDArray[Any]
Message = dict[int, list[Arr]]


def _expect(
    level: str, arrays: Sequence[Arr], specs: Sequence[tuple[tuple[int, ...], Any]]
) -> None:
    """Raise :class:`ProtocolError` unless ``arrays`` match ``specs`` (shape, dtype) exactly."""
    if len(arrays) != len(specs):
        raise ProtocolError(
            f"{level}: expected {len(specs)} arrays from the peer, got {len(arrays)}"
        )
    for i, (arr, (shape, dtype)) in enumerate(zip(arrays, specs, strict=True)):
        check_array(arr, shape, dtype, what=f"{level}: array {i}")


class _Party:
    """What client and server share: comparisons, the spline and the level bookkeeping."""

    party: int

    def __init__(self, plan: QueryPlan, material: PartyMaterial) -> None:
        self.plan = plan
        self.material = material
        self.schedule = plan.schedule()
        self.logit_share: U64 | None = None
        self._cmp: Comparator | None = None
        self._zhat: U64 | None = None
        self.output_share: Arr | None = None
        if plan.output is Output.PROBABILITY:
            _ = self._spline_terms  # before the query: parties are made in the offline phase

    # -- Beaver linear layer ----------------------------------------------------------------
    def _close_beaver(self, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        """Open ``E = X - A`` and ``F = w - B``; this party's share of ``X @ w`` follows.

        ``X @ w = E @ F + E @ B + A @ F + C``: party 0 adds the public ``E @ F``.
        """
        n, d = self.plan.rows, self.plan.features
        _expect("linear", peer, [((n, d), np.uint64), ((d,), np.uint64)])
        m = self.material
        assert m.mask is not None and m.weight_mask is not None
        e = own[0] + peer[0]
        f = own[1] + peer[1]
        b = m.weight_mask + f if self.party == 0 else m.weight_mask
        self.logit_share = e @ b + m.mask @ f + m.logit

    # -- comparisons -----------------------------------------------------------------------
    def _comparator(self) -> Comparator:
        if self._cmp is None:
            cmp = self.plan.compare
            assert cmp is not None and self.logit_share is not None
            self._cmp = Comparator(self.party, cmp, self.logit_share, self.material.gates)
        return self._cmp

    def _open_compare(self, rnd: int) -> list[Arr]:
        out: list[Arr] = []
        if rnd == 0 and self.plan.output is Output.PROBABILITY:
            assert self.logit_share is not None and self.material.rho is not None
            out.append(self.logit_share + self.material.rho)
        return [*out, self._comparator().open(rnd)]

    def _close_compare(self, rnd: int, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        n = self.plan.rows
        cmp = self.plan.compare
        assert cmp is not None
        words = [(cmp.mask_shape(rnd, 1 - self.party, n), np.uint64)]
        if rnd == 0 and self.plan.output is Output.PROBABILITY:
            _expect(f"compare round {rnd}", peer, [((n,), np.uint64), *words])
            self._zhat = own[0] + peer[0]
            own, peer = own[1:], peer[1:]
        else:
            _expect(f"compare round {rnd}", peer, words)
        self._comparator().close(rnd, own[0], peer[0])

    # -- spline ----------------------------------------------------------------------------
    def _open_bits(self) -> list[Arr]:
        assert self.material.beta_xor is not None
        return [self._comparator().result() ^ self.material.beta_xor]

    def _close_bits(self, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        _expect("bits", peer, [((self.plan.rows, self.plan.columns), np.uint8)])
        self.output_share = self._spline_share(np.asarray(own[0] ^ peer[0], dtype=np.uint8))

    @cached_property
    def _spline_terms(self) -> tuple[U64, U64, U64, U64, U64]:
        """The parts of this party's spline share that need neither ``zhat`` nor the bits.

        With ``s``, ``c`` the encoded slope and intercept steps, ``a`` and ``r`` this party's
        shares of ``beta`` and ``beta * rho``, and ``b'`` the opened ``b ^ beta``, the share
        of ``sum_k b_k (s_k z + c_k)`` is (see :meth:`_spline_share`)

            zhat * S1 + S2 + z_i * (b' @ s) + sum_k b'_k (zhat * Q_k + P_k)

        with ``S1 = sum_k s_k a_k``, ``S2 = sum_k (c_k a_k - s_k r_k)`` (plus the base value at
        party 0), ``Q_k = -2 s_k a_k`` and ``P_k = 2 s_k r_k + c_k ([party 0] - 2 a_k)``: all
        computed once, before the query, so that the online step is a few array operations.
        """
        m = self.material
        assert m.beta_add is not None and m.beta_rho is not None
        spline = self.plan.spline
        out_scale = self.plan.output_frac_bits
        s = encode(spline.slope_steps, SPLINE_FRAC_BITS)
        c = encode(spline.intercept_steps, out_scale)
        a, r = m.beta_add, m.beta_rho
        s1 = (a * s).sum(axis=1, dtype=np.uint64)
        s2 = (a * c - r * s).sum(axis=1, dtype=np.uint64)
        own = np.uint64(1 if self.party == 0 else 0)
        if self.party == 0:
            s2 += encode(spline.base, out_scale)
        q = a * (np.uint64(0) - np.uint64(2) * s)
        p = r * (np.uint64(2) * s) + (own - np.uint64(2) * a) * c
        return s, s1, s2, q, p

    def _spline_share(self, opened: npt.NDArray[np.uint8]) -> U64:
        """Return this party's additive share of the spline, given the opened ``b ^ beta`` bits.

        ``b = b' ^ beta = b' + (1 - 2b') beta`` in the ring, and ``beta * z`` is
        ``beta * zhat - beta * rho`` with ``zhat = z + rho`` public, so the share of
        ``b_k (s_k z + c_k)`` is linear in this party's shares of ``beta`` and ``beta * rho``,
        with public coefficients.
        """
        assert self.logit_share is not None and self._zhat is not None
        s, s1, s2, q, p = self._spline_terms
        zhat = self._zhat
        bp = opened.astype(np.uint64)
        per_knot = zhat[:, None] * q
        per_knot += p
        per_knot *= bp
        y = zhat * s1 + s2 + self.logit_share * (bp @ s)
        y += per_knot.sum(axis=1, dtype=np.uint64)
        return np.asarray(y, dtype=np.uint64)

    # -- levels ----------------------------------------------------------------------------
    def open(self, level: int) -> list[Arr]:
        """Arrays this party sends at ``level``."""
        kind, idx = self.schedule[level]
        if kind is Level.LINEAR:
            return self._open_linear()
        if kind is Level.COMPARE:
            return self._open_compare(idx)
        if kind is Level.BITS:
            return self._open_bits()
        return self._open_reveal()

    def close(self, level: int, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        """Combine this party's and the peer's arrays of ``level``."""
        kind, idx = self.schedule[level]
        if kind is Level.LINEAR:
            self._close_linear(own, peer)
        elif kind is Level.COMPARE:
            self._close_compare(idx, own, peer)
        elif kind is Level.BITS:
            self._close_bits(own, peer)
        else:
            self._close_reveal(peer)

    def can_open_early(self, level: int) -> bool:
        """Whether ``level`` can be opened before the levels below it are closed."""
        return False

    def _open_linear(self) -> list[Arr]:
        raise NotImplementedError

    def _close_linear(self, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        raise NotImplementedError

    def _open_reveal(self) -> list[Arr]:
        raise NotImplementedError

    def _close_reveal(self, peer: Sequence[Arr]) -> None:
        raise NotImplementedError


class ClientParty(_Party):
    """The input owner, who also receives the output.

    Everything that does not depend on the input is computed when the party is made, before
    the rows are known (the offline phase): its logit share ``A @ F + Z0`` and, through
    :meth:`Endpoint.prepare`, its first comparison round. :meth:`load` takes the rows.

    Parameters
    ----------
    plan
        The query's public plan.
    material
        From :func:`sealfl.mpc.dealer.expand_client`.
    masked_model
        ``F = w - B``, the server's masked model of this session (input-owner variant only;
        ``None`` for Beaver).
    """

    party = 0

    def __init__(self, plan: QueryPlan, material: PartyMaterial, masked_model: U64 | None) -> None:
        super().__init__(plan, material)
        assert material.mask is not None
        if plan.linear is Linear.INPUT_OWNER:
            check_array(masked_model, (plan.features,), np.uint64, what="masked model")
            assert masked_model is not None
            self.logit_share = material.mask @ masked_model + material.logit
        # Where load() will encode the rows: made and written now (offline), so that encoding
        # a large batch does not wait for the system to map fresh pages.
        self._input_buffer = np.empty_like(material.mask)
        self._input_buffer.fill(0)
        self._masked_input: U64 | None = None
        self.result: Arr | None = None

    def load(self, inputs: Arr) -> None:
        """Take the input batch, ``rows x features`` floats, and mask it: ``E = X - A``."""
        if inputs.shape != (self.plan.rows, self.plan.features):
            raise ProtocolError(
                f"client input expected shape {(self.plan.rows, self.plan.features)}, "
                f"got {inputs.shape}"
            )
        assert self.material.mask is not None
        masked = encode(inputs, self.plan.frac_bits, out=self._input_buffer)
        masked -= self.material.mask
        self._masked_input = masked

    def can_open_early(self, level: int) -> bool:
        """Level 1 needs only the client's own logit share, so it travels with level 0.

        In the Beaver variant the logit share needs the server's openings first.
        """
        return level == 1 and self.plan.linear is Linear.INPUT_OWNER

    def _open_linear(self) -> list[Arr]:
        if self._masked_input is None:
            raise ProtocolError("the client's input must be loaded before the query starts")
        if self.plan.linear is Linear.BEAVER:
            assert self.material.weight_mask is not None
            return [self._masked_input, np.uint64(0) - self.material.weight_mask]
        return [self._masked_input]

    def _close_linear(self, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        if self.plan.linear is Linear.BEAVER:
            self._close_beaver(own, peer)
        else:
            _expect("linear", peer, [])

    def _open_reveal(self) -> list[Arr]:
        return []

    def _close_reveal(self, peer: Sequence[Arr]) -> None:
        n = self.plan.rows
        out = self.plan.output
        if out is Output.LABEL:
            _expect("reveal", peer, [((n, 1), np.uint8)])
            self.result = (self._comparator().result() ^ peer[0])[:, 0].astype(np.int64)
        elif out is Output.LOGIT:
            _expect("reveal", peer, [((n,), np.uint64)])
            assert self.logit_share is not None
            self.result = decode(self.logit_share + peer[0], self.plan.logit_frac_bits)
        else:
            _expect("reveal", peer, [((n,), np.uint64)])
            assert self.output_share is not None
            y = decode(self.output_share + peer[0], self.plan.output_frac_bits)
            self.result = np.clip(y, 0.0, 1.0)


class ServerParty(_Party):
    """The model owner, who learns nothing about the input or the output.

    Parameters
    ----------
    plan
        The query's public plan.
    material
        From :func:`sealfl.mpc.dealer.expand_server`.
    model
        The encoded weights ``w`` (``uint64``, scale ``2^frac_bits``).
    """

    party = 1

    def __init__(self, plan: QueryPlan, material: PartyMaterial, model: U64) -> None:
        super().__init__(plan, material)
        if model.shape != (plan.features,):
            raise ProtocolError(
                f"query has {plan.features} features but the model has {model.shape[0]}"
            )
        self._w = model

    def _open_linear(self) -> list[Arr]:
        if self.plan.linear is Linear.BEAVER:
            m = self.material
            assert m.mask is not None and m.weight_mask is not None
            return [np.uint64(0) - m.mask, self._w - m.weight_mask]
        return []

    def _close_linear(self, own: Sequence[Arr], peer: Sequence[Arr]) -> None:
        if self.plan.linear is Linear.BEAVER:
            self._close_beaver(own, peer)
            return
        _expect("linear", peer, [((self.plan.rows, self.plan.features), np.uint64)])
        self.logit_share = peer[0] @ self._w + self.material.logit

    def _open_reveal(self) -> list[Arr]:
        out = self.plan.output
        if out is Output.LABEL:
            return [self._comparator().result()]
        if out is Output.LOGIT:
            assert self.logit_share is not None
            return [self.logit_share]
        assert self.output_share is not None
        return [self.output_share]

    def _close_reveal(self, peer: Sequence[Arr]) -> None:
        _expect("reveal", peer, [])


class Endpoint:
    """Drives one party through the schedule, message by message.

    Parameters
    ----------
    party
        The party to drive.
    """

    def __init__(self, party: _Party) -> None:
        self.party = party
        self._levels = len(party.schedule)
        self._opened: dict[int, list[Arr]] = {}
        self._closed = 0
        self._prepared = False

    @property
    def done(self) -> bool:
        """The client is done when every level is closed; the server when it has revealed."""
        if self.party.party == 0:
            return self._closed == self._levels
        return len(self._opened) == self._levels

    def _open(self, level: int, out: Message) -> None:
        arrays = self.party.open(level)
        self._opened[level] = arrays
        out[level] = arrays

    def prepare(self) -> Message:
        """Open ahead, and return, the levels after the first that the client can open early.

        They need neither the server nor the input, so a client calls this before its rows
        are known, and can even send them then (``sealfl.fl.infer`` sends them with its
        prefetch): the work and the bytes leave the query's latency. :meth:`start` then
        returns level 0 alone; without ``prepare`` it returns these levels too.
        """
        out: Message = {}
        level = 1
        while level < self._levels and self.party.can_open_early(level):
            if level not in self._opened:
                self._open(level, out)
            level += 1
        self._prepared = True
        return out

    def start(self) -> Message:
        """Return the client's first message: level 0, and the early levels unless prepared."""
        out = {} if self._prepared else self.prepare()
        self._open(0, out)
        return dict(sorted(out.items()))

    def receive(self, message: Mapping[int, Sequence[Arr]]) -> Message:
        """Close the levels the peer sent and return this party's next message."""
        out: Message = {}
        for level in sorted(message):
            if level != self._closed or level >= self._levels:
                raise ProtocolError(
                    f"unexpected level {level} from the peer, expected level {self._closed}"
                )
            if level not in self._opened:
                self._open(level, out)
            self.party.close(level, self._opened[level], list(message[level]))
            self._closed += 1
        nxt = len(self._opened)
        if nxt < self._levels and self._closed == nxt:
            self._open(nxt, out)
        return out


def deal_locally(plan: QueryPlan, model: U64, session_b: U64) -> tuple[ClientParty, ServerParty]:
    """Deal one query and make both of its parties in this process (the offline phase).

    ``model`` is the encoded weights ``w``, ``session_b`` the session's weight mask ``B``
    (:func:`~sealfl.mpc.dealer.session_mask`); the client gets ``F = w - B``.
    """
    seed, deal = deal_query(plan, session_b)
    client = ClientParty(plan, expand_client(plan, seed), model - session_b)
    return client, ServerParty(plan, expand_server(plan, deal), model)


def evaluate_locally(plan: QueryPlan, inputs: Arr, weights: Arr) -> tuple[Arr, int]:
    """Run the whole protocol in one process: dealer, client and server.

    Returns
    -------
    tuple
        The client's result and the number of messages exchanged.
    """
    client, server = deal_locally(
        plan, encode(weights, plan.frac_bits), session_mask(plan.features)
    )
    client.load(np.asarray(inputs, np.float64))
    c_end, s_end = Endpoint(client), Endpoint(server)
    msg = c_end.start()
    messages = 1
    while True:
        reply = s_end.receive(msg)
        messages += 1
        c_msg = c_end.receive(reply)
        if c_end.done:
            break
        msg = c_msg
        messages += 1
    assert client.result is not None
    return client.result, messages

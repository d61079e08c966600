"""The public plan of one private-inference query, identical at client, server and dealer.

A query is ``rows x features`` inputs and one of three outputs:

- ``probability``: the sigmoid is evaluated inside MPC as a spline
  (:mod:`sealfl.mpc.spline`); the client receives the probability and nothing else.
- ``logit``: the server reveals its share of the logit to the client, which applies the sigmoid
  itself. One round trip; the client learns the logit (which the probability also determines).
- ``label``: one exact secure comparison ``logit >= 0``; the client learns only the label.

The plan fixes the message schedule, a list of *levels*; at each level both parties open some
arrays (possibly none) and then combine them with the other party's:

==========  ==============================================  ================================
level       client opens                                    server opens
==========  ==============================================  ================================
linear      ``E = X - A`` (masked input)                    nothing (Beaver: ``-A_1, w - B_1``)
compare 0   masked logit share (probability); the masked    the same (its products once per
            products of its bits in each four-bit group     row, not once per threshold)
compare j   masked ``G``, ``P`` planes of tree level ``j``   the same
bits        masked comparison bits (probability)            the same
reveal      nothing                                         its share of the output
==========  ==============================================  ================================

The client opens ``linear`` and ``compare 0`` together (neither needs the server; ``compare 0``
is even computed before the rows are known), and each later message carries the sender's half
of the level the peer waits for and of the next one: with a 32-bit comparison taking two rounds
(:mod:`sealfl.mpc.compare`), the sigmoid inside MPC takes two round trips, the revealed logit
one, and the label two.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sealfl.errors import ConfigError
from sealfl.mpc.compare import ComparePlan
from sealfl.mpc.ring import FRAC_BITS
from sealfl.mpc.spline import Spline, sigmoid_spline

COMPARE_FRAC_BITS = 10
"""Fractional bits of the coarsened logit the spline's knots are compared with."""

MAX_LOGIT = float(1 << 20)
"""Largest logit magnitude for which every output is right.

The logit lives at scale ``2^40`` in a 64-bit ring (``|z| < 2^23``); the probability output
compares a 32-bit copy at scale ``2^-10`` (``|z| < 2^21``) minus knots as far out as 7.6, so
beyond about ``2^21 - 8`` its comparisons wrap and the probability is silently wrong. Nothing
inside the protocol can check this bound (no party sees the logit): keep weights and inputs
such that it holds, which any sensible model does with a wide margin.
"""

SPLINE_FRAC_BITS = 20
"""Fractional bits of the spline's slope steps; the output lands at scale 2^(2f + 20)."""

MAX_ROWS = 1 << 17
"""Rows of one query. The dealer's material for the server is about 1.5 kB a row with the
sigmoid inside MPC (mostly the radix-8 level's mask products), so a query of this many rows
still fits in one message (185 MiB)."""

MAX_FEATURES = 1 << 16

MAX_CELLS = 1 << 24
"""``rows x features`` of one query: the masked input is 8 bytes a cell (128 MiB at most).

The dealer draws a query's material from the header alone, so these bounds are what keep one
header from costing it gigabytes for material that no channel could carry."""


class Output(enum.Enum):
    """What the client receives."""

    PROBABILITY = "probability"
    LOGIT = "logit"
    LABEL = "label"


class Linear(enum.Enum):
    """How the linear layer ``X @ w`` is computed.

    ``input-owner``: the client, who owns ``X`` entirely, keeps its mask ``A``; the server's
    model is masked once per session. The client sends ``X - A`` and nothing else, as many bytes
    as a plaintext call. ``beaver``: the general path, for inputs and weights that are both
    secret-shared (here the client's ``(X, 0)`` and the server's ``(0, w)``): a fresh Beaver
    triple ``(A, B, C = A @ B)`` per query, both parties open their shares of ``X - A`` and
    ``w - B``, so the input crosses the wire twice. Use it as the template for layers whose
    input is itself an MPC result.
    """

    INPUT_OWNER = "input-owner"
    BEAVER = "beaver"


class Level(enum.Enum):
    """Kinds of step in the message schedule."""

    LINEAR = "linear"
    COMPARE = "compare"
    BITS = "bits"
    REVEAL = "reveal"


@dataclass(frozen=True)
class QueryPlan:
    """Everything public about one query.

    Attributes
    ----------
    rows, features
        Shape of the client's input batch.
    output
        What the client receives.
    linear
        How the linear layer is computed.
    frac_bits
        Fractional bits of the encoded input and of the encoded weights.
    """

    rows: int
    features: int
    output: Output
    linear: Linear = Linear.INPUT_OWNER
    frac_bits: int = FRAC_BITS

    def __post_init__(self) -> None:
        if not 1 <= self.rows <= MAX_ROWS:
            raise ConfigError(f"rows must be between 1 and {MAX_ROWS}, got {self.rows}")
        if not 1 <= self.features <= MAX_FEATURES:
            raise ConfigError(f"features must be between 1 and {MAX_FEATURES}, got {self.features}")
        if self.rows * self.features > MAX_CELLS:
            raise ConfigError(
                f"rows x features must be at most {MAX_CELLS}, got {self.rows} x {self.features}"
                " (split the batch)"
            )

    @property
    def logit_frac_bits(self) -> int:
        """Scale of the logit: the product of two encodings."""
        return 2 * self.frac_bits

    @property
    def output_frac_bits(self) -> int:
        """Scale of the spline's output."""
        return self.logit_frac_bits + SPLINE_FRAC_BITS

    @property
    def spline(self) -> Spline:
        """The sigmoid spline used for ``probability``."""
        return sigmoid_spline()

    @cached_property
    def compare(self) -> ComparePlan | None:
        """Comparisons to run, or ``None`` for ``logit``."""
        if self.output is Output.LOGIT:
            return None
        if self.output is Output.LABEL:
            return ComparePlan(bits=64, shift=0, thresholds=np.zeros(1, dtype=np.int64))
        shift = self.logit_frac_bits - COMPARE_FRAC_BITS
        thresholds = np.rint(self.spline.knots * (1 << COMPARE_FRAC_BITS)).astype(np.int64)
        return ComparePlan(bits=32, shift=shift, thresholds=thresholds)

    @property
    def columns(self) -> int:
        """Comparisons per row (0 for ``logit``)."""
        cmp = self.compare
        return 0 if cmp is None else len(cmp.thresholds)

    @property
    def server_material_bytes(self) -> int:
        """Bytes of the dealer's material for the server (what the dealer keeps until fetched).

        The Z1 share, the mask products of every comparison round and, for ``probability``,
        the additive shares of ``beta`` and ``beta * rho``: about 1.5 kB a row with the sigmoid
        inside MPC, 25 bytes for ``label`` and 8 for ``logit``.
        """
        total = self.rows
        cmp = self.compare
        if cmp is not None:
            total += sum(int(np.prod(cmp.product_shape(r, self.rows))) for r in range(cmp.rounds))
        if self.output is Output.PROBABILITY:
            total += 2 * self.rows * self.columns
        return 8 * total

    def schedule(self) -> list[tuple[Level, int]]:
        """Return the levels of the message schedule, each with its index within its kind."""
        out = [(Level.LINEAR, 0)]
        cmp = self.compare
        if cmp is not None:
            out += [(Level.COMPARE, r) for r in range(cmp.rounds)]
        if self.output is Output.PROBABILITY:
            out.append((Level.BITS, 0))
        out.append((Level.REVEAL, 0))
        return out

    def round_trips(self) -> int:
        """Client-server round trips one query takes.

        Replays the message rule of :class:`sealfl.mpc.parties.Endpoint` on level numbers:
        a party opens a level before closing it, and opens the next one once every level it
        opened is closed. The input-owner client opens levels 0 and 1 in its first message;
        the Beaver client cannot (its logit share needs the server's openings), which costs
        the comparisons an extra round trip.
        """
        total = len(self.schedule())
        early = 2 if self.linear is Linear.INPUT_OWNER and total > 1 else 1
        state = {"client": [early, 0], "server": [0, 0]}  # levels opened, levels closed

        def receive(party: str, levels: list[int]) -> list[int]:
            opened, closed = state[party]
            out = []
            for level in levels:
                if level >= opened:
                    out.append(level)
                    opened += 1
                closed += 1
            if opened < total and closed == opened:
                out.append(opened)
                opened += 1
            state[party] = [opened, closed]
            return out

        message, trips = list(range(early)), 0
        while True:
            reply = receive("server", message)
            trips += 1
            message = receive("client", reply)
            if state["client"][1] == total:
                return trips

"""Where a homo-lr round goes: the PS's and the workers' metrics joined into one critical path.

A round starts when the PS hands out the model (``published``) and ends when it hands out the
next one. In between, the worker that answers last sets the pace: the model reaches it, it
decodes, computes and encodes its update, submits it and waits while the PS checks it; then
the PS averages, re-encrypts and (every 10th round) evaluates. What the PS does meanwhile
(drawing the next encryption's randomness, writing a checkpoint) and the other workers' spare
time, their wait at the barrier, are listed apart. The submit's reply travels while the PS is
already averaging, so the barrier row, the remainder, can be slightly negative.
:func:`round_breakdown` rebuilds that path for every round from the records of :mod:`.timing`
and averages it over the rounds, so the critical rows add up to the mean round.

The hand-over rows subtract the PS's wall-clock stamp from the worker's, so they hold on one
host (the benchmark's loopback federation), not across machines with unsynchronised clocks.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Breakdown", "BreakdownRow", "round_breakdown"]

Record = Mapping[str, Any]


@dataclass(frozen=True)
class BreakdownRow:
    """One span of the round: what, where, and its mean seconds per round."""

    span: str
    party: str
    seconds: float
    critical: bool = True
    """Whether the span is on the round's critical path (the rows that add up to the round)."""


@dataclass(frozen=True)
class Breakdown:
    """The mean round, span by span (:func:`round_breakdown`)."""

    rows: tuple[BreakdownRow, ...]
    rounds: int
    round_s: float
    """Mean seconds per round (the critical rows add up to it)."""
    round_median_s: float

    def share(self, row: BreakdownRow) -> float:
        """Return ``row``'s fraction of the mean round."""
        return row.seconds / self.round_s if self.round_s > 0 else 0.0

    def seconds(self, span: str) -> float:
        """Return the mean seconds of the row named ``span`` (0 if absent)."""
        return sum(row.seconds for row in self.rows if row.span == span)


MODEL_HAND_OUT = "model to the worker (long poll wakes, gRPC, TLS)"
DECODE = "decode Enc(w) (parse, ciphertext checks)"
COMPUTE = "A·Enc(w) + b"
ENCODE = "encode the update"
SUBMIT = "submit: gRPC both ways, PS handler"
CHECK = "PS check: parse, packed decryption, value check"
BARRIER = "barrier: PS wake-up, unmeasured gaps, less the submit reply's overlap"
AVERAGE = "average"
ENCRYPT = "re-encrypt (randomness drawn during the barrier)"
EVALUATE = "evaluation (every 10th round)"
CHECKPOINT = "sealed checkpoint, after the hand-out"
OTHER = "rest of the PS's round"
PREPARE = "draw the next encryption's randomness"
IDLE = "other workers waiting at the barrier"

_PARTIES = {
    MODEL_HAND_OUT: "PS → worker",
    DECODE: "worker",
    COMPUTE: "worker",
    ENCODE: "worker",
    SUBMIT: "worker → PS",
    CHECK: "PS",
    BARRIER: "PS",
    AVERAGE: "PS",
    ENCRYPT: "PS",
    EVALUATE: "PS",
    OTHER: "PS",
    PREPARE: "PS",
    CHECKPOINT: "PS",
    IDLE: "workers",
}
"""Every row, in the breakdown's order, with the party it runs on."""
_OVERLAPPED = frozenset({PREPARE, CHECKPOINT, IDLE})
"""The rows off the critical path (the others add up to the round)."""
_WORKER_SPANS = ("decode_s", "compute_s", "encode_s", "submit_s")
"""A worker's spans from holding the model to the PS's answer to its submission."""


def round_breakdown(
    ps_records: Iterable[Record], worker_records: Mapping[int, Iterable[Record]], *, skip: int = 1
) -> Breakdown:
    """Join the PS's ``round`` records with the workers' ``iteration`` records.

    Parameters
    ----------
    ps_records
        The PS's metrics (any events; ``round`` records are used).
    worker_records
        Each worker's metrics by worker id (``iteration`` records are used).
    skip
        Leading rounds to leave out (the first includes every worker's one-off setup).

    Raises
    ------
    ValueError
        If no round has a record from the PS and from each of its contributors.
    """
    steps = {
        (k, int(r["iteration"])): r
        for k, records in worker_records.items()
        for r in records
        if r.get("event") == "iteration"
    }
    rounds = sorted(
        (r for r in ps_records if r.get("event") == "round"), key=lambda r: int(r["iteration"])
    )[skip:]
    paths: list[dict[str, float]] = []
    totals: list[float] = []
    for r in rounds:
        t = int(r["iteration"])
        answered = {k: steps[(k, t)] for k in r.get("contributors", []) if (k, t) in steps}
        if answered and r.get("published") is not None:
            paths.append(_critical_path(r, answered))
            totals.append(float(r["seconds"]))
    if not paths:
        raise ValueError("no round with records from the PS and its workers to break down")
    rows = tuple(
        BreakdownRow(
            span=span,
            party=party,
            seconds=statistics.fmean(path[span] for path in paths),
            critical=span not in _OVERLAPPED,
        )
        for span, party in _PARTIES.items()
    )
    return Breakdown(
        rows=rows,
        rounds=len(paths),
        round_s=statistics.fmean(totals),
        round_median_s=statistics.median(totals),
    )


def _critical_path(r: Record, answered: Mapping[int, Record]) -> dict[str, float]:
    """Return one round's seconds by row, along the path of the worker that answered last.

    ``r`` is the PS's ``round`` record, ``answered`` the ``iteration`` records of the workers
    that contributed, by worker id. The critical rows add up to ``r["seconds"]``.
    """
    hand_out = {
        k: max(0.0, float(w["received"]) - float(r["published"])) for k, w in answered.items()
    }
    finished = {
        k: hand_out[k] + sum(w.get(name, 0.0) for name in _WORKER_SPANS)
        for k, w in answered.items()
    }
    last = max(finished, key=finished.__getitem__)
    w = answered[last]
    check = float(r.get("check_s", {}).get(str(last), 0.0))
    barrier = r.get("prepare_s", 0.0) + r.get("wait_s", 0.0)
    ps_after = {
        AVERAGE: r.get("average_s", 0.0),
        ENCRYPT: r.get("encrypt_s", 0.0),
        EVALUATE: r.get("evaluate_s", 0.0),
    }
    others = [finished[last] - done for k, done in finished.items() if k != last]
    return {
        MODEL_HAND_OUT: hand_out[last],
        DECODE: w.get("decode_s", 0.0),
        COMPUTE: w.get("compute_s", 0.0),
        ENCODE: w.get("encode_s", 0.0),
        SUBMIT: w.get("submit_s", 0.0) - check,
        CHECK: check,
        BARRIER: barrier - finished[last],
        **ps_after,
        OTHER: float(r["seconds"]) - barrier - sum(ps_after.values()),
        PREPARE: r.get("prepare_s", 0.0),
        CHECKPOINT: r.get("checkpoint_s", 0.0),
        IDLE: statistics.fmean(others) if others else 0.0,
    }

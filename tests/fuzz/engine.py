"""The fuzzing engine: Hypothesis draws inputs, this module judges what sealfl does with them.

Inputs come from :func:`inputs`: random bytes, and far more often a seed (a valid input made
by sealfl's own writers) with one to four mutations: bit flips, bytes set to boundary values
(0x00, 0x7f, 0x80, 0xff), inserted, deleted or duplicated runs, truncation, a splice with
another seed, and for text formats token changes: a number replaced by a huge, negative,
fractional or NaN one, a quoted string emptied or lengthened, a line dropped or repeated.
Corrupting valid inputs reaches the checks deep inside a format, which random bytes never
pass (a magic number, a length, a signature).

:func:`judge` runs a target on one input under a time bound and classifies the outcome:
accepted, refused with a :class:`~sealfl.errors.SealflError` (the only acceptable failure),
skipped (a message gRPC would not have delivered), a crash (any other exception) or a hang.
"""

from __future__ import annotations

import re
import signal
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hypothesis import strategies as st
from targets import Skip, Target

from sealfl.errors import SealflError

TIME_BOUND_S = 5.0
"""Longest one input may take; every parser here answers in milliseconds."""

_BOUNDARY = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_NUMBERS = (
    b"0",
    b"-1",
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"99999999999999999999999999999",
    b"-99999999999999999999999999999",
    b"18446744073709551616",
    b"0.5",
    b"1e-320",
    b'""',
    b"[]",
    b"{}",
    b"true",
)
_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_STRING = re.compile(rb'"[^"\n]*"')


class Hang(BaseException):
    """An input ran past :data:`TIME_BOUND_S`."""


def _alarm(signum: int, frame: types.FrameType | None) -> None:
    raise Hang


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in this (main) thread if the block runs longer than ``seconds``."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def _mutated(draw: st.DrawFn, target: Target) -> bytes:
    data = bytearray(draw(st.sampled_from(target.seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kinds = ["flip", "boundary", "insert", "delete", "duplicate", "truncate", "splice"]
        if target.text:
            kinds += ["number", "number", "string", "line"]
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "boundary" and data:
            data[at] = draw(st.sampled_from(_BOUNDARY))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            other = draw(st.sampled_from(target.seeds))
            data = data[:at] + other[draw(st.integers(0, len(other))) :]
        elif kind in ("number", "string"):
            pattern = _NUMBER if kind == "number" else _STRING
            matches = list(pattern.finditer(bytes(data)))
            if matches:
                match = draw(st.sampled_from(matches))
                new = (
                    draw(st.sampled_from(_NUMBERS))
                    if kind == "number"
                    else draw(st.sampled_from([b'""', b'"' + b"x" * 300 + b'"', b'"\\u0000"']))
                )
                data[match.start() : match.end()] = new
        elif kind == "line":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if draw(st.booleans()):
                del lines[i]
            else:
                lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    """Inputs for ``target``: mostly mutated seeds, some random bytes."""
    raw = st.binary(max_size=512)
    if not target.seeds:
        return raw
    return st.one_of(raw, _mutated(target), _mutated(target), _mutated(target))


@dataclass
class Outcome:
    """What one input did."""

    kind: str  # "accepted", "refused", "skipped", "crash", "hang"
    seconds: float
    error: BaseException | None = None


def judge(target: Target, data: bytes, *, bound_s: float | None = TIME_BOUND_S) -> Outcome:
    """Run ``target`` on ``data`` and classify what happened (see the module docstring)."""
    started = time.perf_counter()
    try:
        if bound_s is None:
            target.run(data)
        else:
            with time_bound(bound_s):
                target.run(data)
    except Skip:
        return Outcome("skipped", time.perf_counter() - started)
    except SealflError as exc:
        return Outcome("refused", time.perf_counter() - started, exc)
    except Hang as exc:
        return Outcome("hang", time.perf_counter() - started, exc)
    except Exception as exc:
        return Outcome("crash", time.perf_counter() - started, exc)
    return Outcome("accepted", time.perf_counter() - started)


def error_kind(exc: BaseException) -> str:
    """An error's type and message with numbers, hex and paths blurred: one per distinct check."""
    message = re.sub(r"0x[0-9a-f]+|[0-9a-f]{8,}|\d+", "#", str(exc))
    message = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+", "…", message)
    return f"{type(exc).__name__}: {message[:120]}"


@dataclass
class Stats:
    """Counts for one target."""

    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: set[str] = field(default_factory=set)
    crashes: dict[str, bytes] = field(default_factory=dict)  # error kind -> first input
    slowest_s: float = 0.0

    def add(self, data: bytes, outcome: Outcome) -> None:
        self.inputs += 1
        self.outcomes[outcome.kind] = self.outcomes.get(outcome.kind, 0) + 1
        self.slowest_s = max(self.slowest_s, outcome.seconds)
        if outcome.kind == "refused" and outcome.error is not None:
            self.errors.add(error_kind(outcome.error))
        elif outcome.kind in ("crash", "hang"):
            kind = "Hang" if outcome.kind == "hang" else error_kind(outcome.error or Exception())
            self.crashes.setdefault(kind, data)

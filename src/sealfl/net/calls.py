"""Deadlines, retries with backoff, and the mapping of ``grpc.RpcError`` to ChannelError.

Every call made through :mod:`sealfl.net` has a deadline. Three kinds of repeat:

* **busy**: a call the server refused for load before any handler ran (``RESOURCE_EXHAUSTED``
  marked busy, or gRPC's own concurrency limit) is repeated after a jittered backoff
  (:data:`BUSY_RETRY`), whatever the call: it never ran, so repeating it cannot apply it twice;
* **recovery**: a channel that repaired the cause of a failure (enrolled again, followed a
  server's signed handover) repeats the call at once if it cannot have reached a handler
  (:class:`Recovery`);
* **transient**: on ``UNAVAILABLE`` (the call did not reach a handler, or the connection broke),
  only when the caller passes a :class:`RetryPolicy`, which it must do only for idempotent
  calls: a retried non-idempotent call could be applied twice.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from sealfl.errors import ChannelError, ConfigError
from sealfl.net.admission import BUSY_METADATA_KEY, CORE_LIMIT_DETAILS

__all__ = [
    "BUSY_RETRY",
    "CertificatePinError",
    "Recovery",
    "RetryPolicy",
    "describe_rpc_error",
    "is_busy",
    "iterate_stream",
    "run_with_retry",
    "trailing_value",
]

R = TypeVar("R")


class CertificatePinError(ChannelError):
    """The server now presents a different certificate from the one verified and pinned.

    Never retried: the server's key changed after verification (a replaced server, or an
    attacker in the path), so nothing it says can be trusted without a fresh verification.
    """


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for idempotent calls.

    Parameters
    ----------
    attempts
        Total tries, the first included (1 means no retry).
    initial_backoff_s, max_backoff_s, multiplier
        The n-th retry waits ``min(max_backoff_s, initial_backoff_s * multiplier**n)``.
    jitter
        Fraction of each wait drawn at random, so that clients refused together do not all
        come back at the same instant.
    """

    attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"RetryPolicy.attempts: expected >= 1, got {self.attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError(
                "RetryPolicy backoff: expected 0 <= initial_backoff_s <= max_backoff_s, got "
                f"{self.initial_backoff_s} and {self.max_backoff_s}"
            )
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ConfigError(
                "RetryPolicy: expected multiplier >= 1 and 0 <= jitter <= 1, got "
                f"{self.multiplier} and {self.jitter}"
            )

    def backoff(self, retry: int) -> float:
        """Return the wait in seconds before retry number ``retry`` (0-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry)
        return base * (1 - self.jitter * random.random())


BUSY_RETRY = RetryPolicy(attempts=12, initial_backoff_s=0.05, max_backoff_s=3.0, jitter=0.5)
"""Backoff for calls refused as busy: 9-18 s in all (longer than the front door's 10 s read
deadline, so slots a slow peer held free up meanwhile), up to half of each wait drawn at
random so that a burst of clients refused together comes back spread out."""

_MAX_RECOVERIES = 2  # repairs per call: enough for "re-pin, then enrol again"; never a loop


class Recovery(enum.Enum):
    """What a channel's repair after a failed call allows (see :func:`run_with_retry`)."""

    NONE = "none"
    """Nothing was repaired: the failure stands (or is retried by the policy)."""
    REPEAT = "repeat"
    """Repaired, and the failed call cannot have reached a handler: repeat it now."""
    RECONNECTED = "reconnected"
    """Repaired, but the call may have reached the server: repeat it only if idempotent."""


def trailing_value(exc: grpc.RpcError, key: str) -> str | None:
    """Return the value of trailing metadata ``key`` on a failed call, or None."""
    if not isinstance(exc, grpc.Call):
        return None
    for item in exc.trailing_metadata() or ():
        name, value = item[0], item[1]
        if name == key:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def is_busy(exc: grpc.RpcError) -> bool:
    """Whether the server refused the call for load before running it (safe to repeat)."""
    if not isinstance(exc, grpc.Call) or exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    if trailing_value(exc, BUSY_METADATA_KEY) is not None:
        return True
    return (exc.details() or "").startswith(CORE_LIMIT_DETAILS)


def describe_rpc_error(exc: grpc.RpcError, *, what: str, peer: str) -> ChannelError:
    """Turn a gRPC error into a :class:`ChannelError` naming the call, the peer and the status."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return ChannelError(f"{what}: no answer from {peer} before the deadline ({details})")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return ChannelError(f"{what}: {peer} refused us: {details}")
    name = code.name if code is not None else "unknown status"
    return ChannelError(f"{what}: {peer} answered {name}: {details}")


_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE})


def run_with_retry(
    attempt: Callable[[], R],
    *,
    retry: RetryPolicy | None,
    describe: Callable[[grpc.RpcError], ChannelError],
    recover: Callable[[grpc.RpcError], Recovery] | None = None,
    transient: frozenset[grpc.StatusCode] = _TRANSIENT,
) -> R:
    """Run ``attempt``, repeating it as the module docstring says; map failures via ``describe``.

    ``recover(exc)`` may repair the channel and say whether the call may be repeated; it may
    also raise (a server whose certificate changed without a valid handover). ``transient``
    are the codes ``retry`` applies to. ``describe`` may return a
    :class:`CertificatePinError`, which ends the retries at once.
    """
    attempts = retry.attempts if retry is not None else 1
    failures = busy = recoveries = 0
    while True:
        try:
            return attempt()
        except grpc.RpcError as exc:
            if is_busy(exc) and busy < BUSY_RETRY.attempts - 1:
                time.sleep(BUSY_RETRY.backoff(busy))
                busy += 1
                continue
            if recover is not None and recoveries < _MAX_RECOVERIES:
                outcome = recover(exc)
                if outcome is Recovery.REPEAT or (
                    outcome is Recovery.RECONNECTED and retry is not None
                ):
                    recoveries += 1
                    continue
                if outcome is Recovery.RECONNECTED:
                    raise ChannelError(
                        f"{describe(exc)}; the channel has reconnected since, but the call was "
                        "not repeated: it may have reached the server, and it is not idempotent"
                    ) from exc
            error = describe(exc)
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if retry is None or code not in transient or isinstance(error, CertificatePinError):
                raise error from exc
            if failures == attempts - 1:
                raise ChannelError(f"{error} (after {attempts} attempts)") from exc
            time.sleep(retry.backoff(failures))
            failures += 1


def iterate_stream(
    responses: Iterator[R], *, describe: Callable[[grpc.RpcError], ChannelError]
) -> Iterator[R]:
    """Yield from a server-streaming call, mapping a gRPC error mid-stream to ChannelError."""
    try:
        yield from responses
    except grpc.RpcError as exc:
        raise describe(exc) from exc
    finally:
        cancel = getattr(responses, "cancel", None)  # a receiver that stops early frees the call
        if cancel is not None:
            cancel()

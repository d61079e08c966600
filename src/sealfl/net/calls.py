"""Deadlines, retries with backoff, and the mapping of ``grpc.RpcError`` to ChannelError.

Every call made through :mod:`sealfl.net` has a deadline. Retries happen only when the caller
passes a :class:`RetryPolicy`, which it must do only for idempotent calls, and only on
``UNAVAILABLE`` (the call did not reach a handler, or the connection broke): a retried
non-idempotent call could be applied twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from sealfl.errors import ChannelError, ConfigError

__all__ = [
    "CertificatePinError",
    "RetryPolicy",
    "describe_rpc_error",
    "iterate_stream",
    "run_with_retry",
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


def run_with_retry(
    attempt: Callable[[], R],
    *,
    retry: RetryPolicy | None,
    describe: Callable[[grpc.RpcError], ChannelError],
) -> R:
    """Run ``attempt``; on ``UNAVAILABLE`` retry per ``retry``; map failures through ``describe``.

    ``describe`` may return a :class:`CertificatePinError`, which ends the retries at once.
    """
    attempts = retry.attempts if retry is not None else 1
    for number in range(attempts):
        try:
            return attempt()
        except grpc.RpcError as exc:
            error = describe(exc)
            transient = isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.UNAVAILABLE
            if retry is None or not transient or isinstance(error, CertificatePinError):
                raise error from exc
            if number == attempts - 1:
                raise ChannelError(f"{error} (after {attempts} attempts)") from exc
            time.sleep(retry.backoff(number))
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


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

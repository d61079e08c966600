"""Challenge nonces: issued by the broker, bound into a requester's certificate, used once.

A requester asks for a nonce *before* it makes the RA-TLS certificate that asks for a resource,
and puts the nonce in the certificate's ``nonce`` claim, which its evidence covers. The broker
releases a resource only for a certificate whose nonce it issued less than ``ttl_s`` ago and
that no earlier request used: evidence made before the challenge (a recorded or pre-computed
certificate) and a second request with the same certificate are both refused.

Unlike the transport's enrolment nonces (:class:`sealfl.net.enrolment.ChallengeStore`, a yes
or no), a refusal here says *why* (never issued, already used, expired), because each reason is
a different line in the audit log and a different fix for the requester.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

from sealfl.errors import ConfigError

__all__ = ["NONCE_BYTES", "NonceBook", "NonceRefusedError"]

NONCE_BYTES = 32


class NonceRefusedError(Exception):
    """A nonce that may not be used; the message is the reason."""


class NonceBook:
    """Single-use nonces with a lifetime, bounded in number.

    Parameters
    ----------
    ttl_s
        Seconds a nonce stays usable after it was issued.
    clock
        Unix time source (injectable for tests).
    max_pending
        Nonces kept outstanding at most. Lapsed ones go first; beyond that the oldest is
        forgotten (a flood of challenges can make an honest requester ask again, never grow
        memory).
    max_remembered
        Used nonces remembered, to name a replay as such; an older replay is still refused (as
        a nonce this broker does not know).
    """

    def __init__(
        self,
        *,
        ttl_s: float,
        clock: Callable[[], float],
        max_pending: int = 4096,
        max_remembered: int = 4096,
    ) -> None:
        if ttl_s <= 0 or max_pending < 1 or max_remembered < 0:
            raise ConfigError(
                "NonceBook: expected ttl_s > 0, max_pending >= 1, max_remembered >= 0, got "
                f"{ttl_s}, {max_pending}, {max_remembered}"
            )
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._max_pending = max_pending
        self._max_remembered = max_remembered
        self._pending: OrderedDict[bytes, float] = OrderedDict()  # nonce -> issued at
        self._used: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> tuple[bytes, float]:
        """Return a fresh nonce and the Unix time at which it lapses."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        with self._lock:
            now = self._clock()
            # Forget nonces that lapsed more than a lifetime ago (they are kept a while so that
            # a late request is told "expired" rather than "unknown").
            while self._pending:
                oldest, issued = next(iter(self._pending.items()))
                if issued + 2 * self.ttl_s > now:
                    break
                del self._pending[oldest]
            self._pending[nonce] = now
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
        return nonce, now + self.ttl_s

    def consume(self, nonce: bytes) -> None:
        """Use ``nonce`` up, or raise :class:`NonceRefusedError` saying why it cannot be used.

        A nonce is used up by its first presentation whatever the outcome, so one challenge
        answers exactly one request.
        """
        if len(nonce) != NONCE_BYTES:
            raise NonceRefusedError(
                f"nonce: expected {NONCE_BYTES} bytes from this broker's Challenge, "
                f"got {len(nonce)}"
            )
        with self._lock:
            now = self._clock()
            issued = self._pending.pop(nonce, None)
            if issued is None:
                if nonce in self._used:
                    raise NonceRefusedError(
                        "nonce already used (a replay): every request needs a new Challenge "
                        "and a certificate made for it"
                    )
                raise NonceRefusedError(
                    "nonce not issued by this broker (or issued before it restarted, or long "
                    "lapsed): ask Challenge and make a new certificate with its nonce"
                )
            self._used[nonce] = None
            while len(self._used) > self._max_remembered:
                self._used.popitem(last=False)
        age = now - issued
        if age >= self.ttl_s:
            raise NonceRefusedError(
                f"nonce stale: issued {age:.1f} s ago, usable for {self.ttl_s:g} s: ask "
                "Challenge again"
            )

    def pending(self) -> int:
        """Return how many nonces are outstanding (issued, unused, not forgotten)."""
        with self._lock:
            return len(self._pending)

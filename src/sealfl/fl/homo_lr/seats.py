"""Seats of a federation: which party holds which worker id, and how it proves it later.

A seat is bound to the certificate that took it (its lineage: a renewal proved by the old key
keeps it, :mod:`sealfl.net.callers`) and to a random **seat token** the PS hands that worker
in its join reply, over mutual RA-TLS. A call from another certificate holds the seat only if
it presents the token; the seat then follows the new certificate. That covers

- a worker restarted in its TEE: it unseals the token from its seat file (sealed with its TEE's
  sealing key, so only the same enclave identity can read it) and joins with a fresh attested
  certificate;
- a worker that reconnects to a PS resumed from a checkpoint (the checkpoint keeps the tokens,
  sealed; the resumed PS's enrolments start afresh), whatever certificate it holds by then.

Why not a fresh attested certificate alone: it proves that the worker code runs on an accepted
platform, not that it is the same data owner. Any other attested party could then take over a
seat whose holder went quiet, which is the power issue 10 says one insider must not have.
Without its token (no seat file, another TEE identity), a restarted worker is refused and told
why; the federation then treats the seat as a worker that missed its deadline.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sealfl.errors import ProtocolError
from sealfl.fl.homo_lr.peers import Peer

TOKEN_BYTES = 32


@dataclass
class Seat:
    """One worker id, who holds it and its token.

    Attributes
    ----------
    worker_id
        The id.
    fingerprint
        SHA-256 of the certificate that holds the seat now.
    token
        The secret that proves the seat (never logged).
    n_samples
        Training rows the worker declared.
    """

    worker_id: int
    fingerprint: str
    token: bytes
    n_samples: int


class SeatRegistry:
    """The seats of one federation (not thread-safe: the PS calls it under its lock).

    Parameters
    ----------
    seats
        Seats to start with (from a checkpoint).
    """

    def __init__(self, seats: Iterable[Seat] = ()) -> None:
        self._seats = {seat.worker_id: seat for seat in seats}

    def __len__(self) -> int:
        return len(self._seats)

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._seats

    def ids(self) -> list[int]:
        """Seated worker ids, sorted."""
        return sorted(self._seats)

    def seats(self) -> list[Seat]:
        """Every seat, by worker id."""
        return [self._seats[k] for k in sorted(self._seats)]

    def get(self, worker_id: int) -> Seat | None:
        """Return the seat of ``worker_id``, if taken."""
        return self._seats.get(worker_id)

    def holder_of(self, fingerprint: str) -> int | None:
        """Return the worker id the certificate ``fingerprint`` holds, if any."""
        for worker_id, seat in self._seats.items():
            if seat.fingerprint == fingerprint:
                return worker_id
        return None

    def take(self, worker_id: int, peer: Peer, n_samples: int) -> Seat:
        """Give the free seat ``worker_id`` to ``peer`` with a fresh token.

        Raises
        ------
        ProtocolError
            If the seat is taken, or ``peer``'s certificate already holds another seat (one
            party, one seat: else it could submit several times per round).
        """
        if worker_id in self._seats:
            raise ProtocolError(f"worker id {worker_id} is already taken by another party")
        self._check_one_seat(worker_id, peer)
        seat = Seat(worker_id, peer.fingerprint, secrets.token_bytes(TOKEN_BYTES), n_samples)
        self._seats[worker_id] = seat
        return seat

    def prove(self, worker_id: int, peer: Peer, token: bytes, *, joining: bool = False) -> bool:
        """Check that ``peer`` holds seat ``worker_id``; return whether it moved to ``peer``.

        The certificate that holds the seat needs no token; another one needs the seat's token,
        and then the seat follows it.

        Raises
        ------
        ProtocolError
            If the seat is free, or held by another certificate and ``token`` is not its token
            (``joining`` picks the wording of a join refusal), or ``peer`` holds another seat.
        """
        seat = self._seats.get(worker_id)
        if seat is None:
            raise ProtocolError(f"worker {worker_id} has not joined")
        if seat.fingerprint == peer.fingerprint:
            return False
        if not token or not hmac.compare_digest(token, seat.token):
            if joining:
                raise ProtocolError(
                    f"worker id {worker_id} is already taken by another party; a restarted "
                    "worker takes its seat back only with the seat token it sealed at its first "
                    "join (--seat-file)"
                )
            raise ProtocolError(f"worker id {worker_id} belongs to another party's certificate")
        self._check_one_seat(worker_id, peer)
        seat.fingerprint = peer.fingerprint
        return True

    def _check_one_seat(self, worker_id: int, peer: Peer) -> None:
        other = self.holder_of(peer.fingerprint)
        if other is not None and other != worker_id:
            raise ProtocolError(
                f"worker {worker_id}: this certificate already joined as worker {other}; one "
                "party takes one seat"
            )

"""What a PSI session hands back to its party: sizes, maybe the aligned order, the transcript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from sealfl.errors import ConfigError, ProtocolError
from sealfl.psi.settings import Mode, Role

T = TypeVar("T")


class AlignedOrder:
    """The rows of this party's set that are in the intersection, in the order both agree on.

    Entry ``k`` of the leader's :meth:`rows` and entry ``k`` of the follower's are the same id.
    The order is the intersection sorted by the doubly-masked value of each id, which both
    parties hold and which is pseudo-random per session, so it reveals nothing about the ids and
    is a fresh shuffle each run. ``repr`` and ``str`` show only the count: the handle may be
    logged; the rows are for the trainer.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = np.asarray(rows, dtype=np.int64)
        self._rows.setflags(write=False)

    def __len__(self) -> int:
        return int(self._rows.size)

    def __repr__(self) -> str:
        return f"AlignedOrder(<{len(self)} rows>)"

    __str__ = __repr__

    def rows(self) -> np.ndarray:
        """Return indices into this party's id sequence, in the aligned order (read-only int64)."""
        return self._rows


@dataclass(frozen=True)
class PsiResult:
    """The outcome of one session for one party.

    Attributes
    ----------
    role, mode
        This party's role and the session's disclosure mode.
    own_size, peer_size
        The two set sizes (every mode discloses them).
    count
        The intersection size; None where the mode keeps it from this party (the follower in
        ``leader-only``).
    transcript
        SHA-256 over the session (both Hellos, every frame each way): both parties get the same
        32 bytes. Bind it where the session's outcome must be attributable, e.g. into RA-TLS
        claims or the vfl manifest.
    order
        The aligned order of this party's rows; None in ``cardinality`` mode and for the
        follower in ``leader-only``.
    bytes_sent, bytes_received
        Frame bytes this party sent and received (the protocol's payload; the transport's own
        framing, e.g. gRPC and TLS, comes on top).
    """

    role: Role
    mode: Mode
    own_size: int
    peer_size: int
    count: int | None
    transcript: bytes
    order: AlignedOrder | None
    bytes_sent: int = 0
    bytes_received: int = 0

    def transcript_hex(self) -> str:
        """Return the transcript hash in hexadecimal."""
        return self.transcript.hex()

    def summary(self) -> dict[str, object]:
        """Return what an operator, a log line or a report may show for this mode: never an id."""
        return {
            "role": self.role.value,
            "mode": self.mode.value,
            "own_size": self.own_size,
            "peer_size": self.peer_size,
            "count": self.count,
            "transcript": self.transcript_hex(),
        }

    def intersection(self, ids: Sequence[T]) -> list[T]:
        """Return this party's ids of the intersection, in the aligned order.

        ``ids`` is the sequence the session ran on.

        Raises
        ------
        ProtocolError
            In ``enclave-only`` mode (the ids stay inside the attested party: use
            :attr:`order` for training) and where the mode gives this party no order.
        ConfigError
            If ``ids`` is not as long as the set the session ran on.
        """
        if self.mode is Mode.ENCLAVE_ONLY:
            raise ProtocolError(
                "PSI mode enclave-only: the intersection stays inside the attested party; "
                "only its size is disclosed (the trainer uses result.order)"
            )
        if self.order is None:
            raise ProtocolError(
                f"PSI mode {self.mode.value}: the {self.role.value} learns no intersection"
            )
        if len(ids) != self.own_size:
            raise ConfigError(
                f"ids: expected the {self.own_size} ids the session ran on, got {len(ids)}"
            )
        return [ids[int(i)] for i in self.order.rows()]

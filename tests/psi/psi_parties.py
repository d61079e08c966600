"""Two PSI parties in one process (two threads over an in-process transport pair), with taps.

:class:`Tap` wraps a party's end of the link: it records every frame the party sends and may
rewrite one (a misbehaving peer), so tests can check what crosses the wire and how the honest
party reacts. Nothing here imitates the protocol: both parties run the real ``run_psi``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sealfl.psi import PsiResult, PsiSettings, run_psi, transport_pair
from sealfl.psi.protos import psi_pb2
from sealfl.psi.transport import QueueTransport

Rewrite = Callable[[psi_pb2.PsiMessage], psi_pb2.PsiMessage | bytes | None]


@dataclass
class Tap:
    """A transport that forwards to ``inner``, recording (and maybe rewriting) what is sent."""

    inner: QueueTransport
    rewrite: Rewrite | None = None
    raw: list[bytes] = field(default_factory=list)

    @property
    def attested(self) -> bool:
        return self.inner.attested

    @property
    def sent(self) -> list[psi_pb2.PsiMessage]:
        """The frames sent so far, parsed (a rewritten frame that does not parse is left out)."""
        parsed = []
        for frame in self.raw:
            try:
                parsed.append(psi_pb2.PsiMessage.FromString(frame))
            except Exception:
                continue
        return parsed

    def send(self, frame: bytes) -> None:
        if self.rewrite is not None:
            changed = self.rewrite(psi_pb2.PsiMessage.FromString(frame))
            if changed is not None:
                frame = changed if isinstance(changed, bytes) else changed.SerializeToString()
        self.raw.append(frame)
        self.inner.send(frame)

    def receive(self, timeout_s: float) -> bytes | None:
        return self.inner.receive(timeout_s)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Outcome:
    leader: PsiResult | BaseException
    follower: PsiResult | BaseException
    leader_tap: Tap
    follower_tap: Tap

    def results(self) -> tuple[PsiResult, PsiResult]:
        for what in (self.leader, self.follower):
            if isinstance(what, BaseException):
                raise what
        assert isinstance(self.leader, PsiResult) and isinstance(self.follower, PsiResult)
        return self.leader, self.follower


def run_both(
    leader_ids: Sequence[bytes | str],
    follower_ids: Sequence[bytes | str],
    *,
    settings: PsiSettings | None = None,
    follower_settings: PsiSettings | None = None,
    attested: bool = False,
    leader_rewrite: Rewrite | None = None,
    follower_rewrite: Rewrite | None = None,
    leader_context: bytes = b"",
    follower_context: bytes = b"",
) -> Outcome:
    """Run the leader here and the follower on a thread; return both outcomes and the taps."""
    settings = settings or PsiSettings(batch_size=64, timeout_s=10)
    lead_end, follow_end = transport_pair(attested=attested)
    lead_tap, follow_tap = Tap(lead_end, leader_rewrite), Tap(follow_end, follower_rewrite)
    outcomes: dict[str, PsiResult | BaseException] = {}

    def play(role: str, ids: Sequence[bytes | str], tap: Tap, s: PsiSettings, ctx: bytes) -> None:
        try:
            outcomes[role] = run_psi(ids, role=role, transport=tap, settings=s, context=ctx)
        except BaseException as exc:  # recorded for the test to inspect
            outcomes[role] = exc

    follower = threading.Thread(
        target=play,
        args=(
            "follower",
            follower_ids,
            follow_tap,
            follower_settings or settings,
            follower_context,
        ),
    )
    follower.start()
    play("leader", leader_ids, lead_tap, settings, leader_context)
    follower.join(timeout=60)
    assert not follower.is_alive(), "the follower did not end"
    return Outcome(outcomes["leader"], outcomes["follower"], lead_tap, follow_tap)


def id_sets(n: int, overlap: int) -> tuple[list[str], list[str]]:
    """Leader and follower ids in the benchmark's shape: ``overlap`` shared, the rest distinct."""
    leader = [f"user-{i:012d}" for i in range(n)]
    follower = [f"user-{i:012d}" for i in range(n - overlap, 2 * n - overlap)]
    return leader, follower

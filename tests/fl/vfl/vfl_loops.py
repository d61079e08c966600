"""The two step loops wired back to back in one process (no gRPC), for protocol tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.vfl.checkpoint import CheckpointStore
from sealfl.fl.vfl.follower import FollowerLoop, FollowerRun
from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.leader import LeaderLoop, LeaderRules, LeaderRun
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.schedule import BatchPlan
from sealfl.fl.vfl.settings import VflSettings
from sealfl.fl.vfl.stream import Duplex, Inbox
from sealfl.seal import SealingKey

KEY = SealingKey(bytes(range(32)))


def plan_of(settings: VflSettings, rows: int) -> BatchPlan:
    return BatchPlan.for_run(settings.train, rows)


def wire(leader_inbox: Inbox, follower_inbox: Inbox) -> tuple[Duplex, Duplex]:
    """Two duplexes back to back: what one side sends, the other's reader receives."""
    to_leader = Duplex(leader_inbox, name="the follower")
    to_follower = Duplex(follower_inbox, name="the leader")
    to_leader.start_reader(to_follower.outgoing())
    to_follower.start_reader(to_leader.outgoing(), cancel=to_leader.close)
    return to_leader, to_follower


def make_loops(
    settings: VflSettings,
    pair: Any,
    root: Path,
    *,
    rules: LeaderRules | None = None,
    resume: bool = False,
    follower_deadline_s: float = 20.0,
    on_connect: Callable[[Duplex, Duplex], None] | None = None,
) -> tuple[LeaderLoop, FollowerLoop, list[Duplex]]:
    plan = plan_of(settings, pair.n_rows)
    k = settings.model.cut_width
    leader = LeaderLoop(
        half=LeaderHalf(settings),
        ids=pair.leader.ids,
        x=pair.leader.X,
        y=pair.leader.labels(),
        plan=plan,
        cut_width=k,
        rules=rules or LeaderRules(step_deadline_s=20.0, checkpoint_every=3, resume=resume),
        store=CheckpointStore(root / "leader", KEY, role="leader"),
        settings_sha256=settings.digest(),
        run_id="run-1",
        export=lambda exported, run: b'{"manifest": true}',
        metrics=MetricsLog(None, party="leader"),
        on_line=lambda line: None,
        wire_dtype=settings.train.wire_dtype,
    )
    streams: list[Duplex] = []

    def connect(inbox: Inbox) -> Duplex:
        to_leader, to_follower = wire(leader.inbox, inbox)
        streams.append(to_leader)
        if on_connect is not None:
            on_connect(to_leader, to_follower)
        return to_follower

    follower = FollowerLoop(
        half=FollowerHalf(settings),
        ids=pair.follower.ids,
        x=pair.follower.X,
        plan=plan,
        cut_width=k,
        connect=connect,
        store=CheckpointStore(root / "follower", KEY, role="follower"),
        settings_sha256=settings.digest(),
        resume=resume,
        step_deadline_s=follower_deadline_s,
        export=lambda run: pb.Exported(half_sha256=b"\x01" * 32),
        save_manifest=lambda text: None,
        metrics=MetricsLog(None, party="follower"),
        on_line=lambda line: None,
        wire_dtype=settings.train.wire_dtype,
    )
    return leader, follower, streams


def run_both(leader: LeaderLoop, follower: FollowerLoop) -> tuple[LeaderRun, FollowerRun]:
    result: dict[str, Any] = {}

    def follow() -> None:
        try:
            result["follower"] = follower.run()
        except Exception as exc:
            result["follower_error"] = exc

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    run = leader.run()
    thread.join(timeout=30)
    if "follower_error" in result:
        raise result["follower_error"]
    return run, result["follower"]

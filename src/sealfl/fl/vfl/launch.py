"""Run the leader or the follower as a whole process: TEE, RA-TLS, PSI, training, export.

The wiring, and nothing else: the step protocol lives in :mod:`.leader` and :mod:`.follower`,
the halves in :mod:`.halves`, the PSI in :mod:`sealfl.psi`, and everything TEE (evidence,
policy, sealing keys) in the :class:`~sealfl.runtime.PartyRuntime` each party is given.

1. The leader listens (mutual RA-TLS with enrolment); its certificate claims ``vfl-settings``
   (the shared settings' digest) and ``vfl-half`` (its half's configuration digest). The
   follower verifies the leader's evidence by its policy and checks ``vfl-settings``; the
   leader verifies the follower's at enrolment by its own policy.
2. PSI on the same server and channel (:mod:`sealfl.psi`, the mode both declared). Each side
   keeps its intersected rows sorted by id, so the aligned order is the same on both sides and
   in every session (a resumed run aligns its rows exactly as the first one did).
3. Both sides make fresh certificates that also claim ``vfl-psi``, the PSI transcript hash,
   and the follower reconnects with it; the leader admits a training stream only from a
   certificate claiming this session's transcript and settings, and the follower trains only
   with a leader that claims them too.
4. The step stream (:mod:`.leader`, :mod:`.follower`), with coordinated sealed checkpoints.
5. Sealed export of each half and the joint manifest (:mod:`.export`).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from sealfl._files import make_directory, write_atomic
from sealfl.data.vertical import PartyData, read_party_csv
from sealfl.errors import AttestationError, ChannelError, ConfigError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.vfl.checkpoint import CHECKPOINT_LABEL, CheckpointStore
from sealfl.fl.vfl.export import (
    ALIGNED_LABEL,
    MANIFEST_FILE,
    aligned_record,
    build_manifest,
    file_sha256,
    half_file,
    half_label,
    seal_half,
    write_manifest,
)
from sealfl.fl.vfl.follower import FollowerLoop, FollowerRun
from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.leader import LeaderLoop, LeaderRules, LeaderRun
from sealfl.fl.vfl.limits import MAX_THREADS, check_count, check_seconds
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.protos import vfl_pb2_grpc as pb_grpc
from sealfl.fl.vfl.schedule import BatchPlan
from sealfl.fl.vfl.service import VflService, open_stream
from sealfl.fl.vfl.settings import VflSettings
from sealfl.fl.vfl.stream import ids_digest
from sealfl.models.nn.allocator import keep_freed_memory
from sealfl.net import (
    CertificatePinError,
    SecureChannel,
    SecureServer,
    open_secure_channel,
    refusal_reporter,
)
from sealfl.net.addresses import split_address
from sealfl.psi import (
    Mode,
    PsiResult,
    PsiServicer,
    PsiSettings,
    Role,
    add_psi_servicer,
    run_psi_on_channel,
)
from sealfl.runtime import PartyRuntime, check_address
from sealfl.tee import VerifiedPeer, measure_code

__all__ = [
    "ADDRESS_FILE",
    "FOLLOWER_METRICS_FILE",
    "HALF_CLAIM",
    "LEADER_METRICS_FILE",
    "PSI_CLAIM",
    "SETTINGS_CLAIM",
    "TRAINING_PSI_MODES",
    "FollowerOptions",
    "LeaderOptions",
    "aligned_rows",
    "aligning_psi_mode",
    "connect_to_leader",
    "missing_claims",
    "parse_psi_mode",
    "read_party",
    "role_measurement",
    "run_follower",
    "run_leader",
]

SETTINGS_CLAIM = "vfl-settings"
"""RA-TLS claim of both parties: SHA-256 of the shared settings (canonical JSON)."""
HALF_CLAIM = "vfl-half"
"""RA-TLS claim of each party: SHA-256 of its own half's configuration."""
PSI_CLAIM = "vfl-psi"
"""RA-TLS claim of both parties after the PSI: the session's transcript hash."""
ADDRESS_FILE = "leader.address"
"""Written into the leader's ``--out`` once it listens: its front-door address."""
LEADER_METRICS_FILE = "leader_metrics.jsonl"
FOLLOWER_METRICS_FILE = "follower_metrics.jsonl"
PSI_MODES = tuple(mode.value for mode in Mode)
TRAINING_PSI_MODES = (Mode.BOTH, Mode.ENCLAVE_ONLY)
"""The PSI modes vfl trains and predicts with (:func:`aligning_psi_mode`)."""
_RECLAIM_WAIT_S = 30.0
_MAX_CERTIFICATE_HOURS = 24 * 366


def role_measurement(role: str) -> bytes:
    """Return the simulated measurement of a vfl party (``"leader"`` or ``"follower"``).

    The same value :meth:`sealfl.runtime.RoleConfig.default_measurement` gives a role config
    with ``workload = "vfl"``.
    """
    return measure_code({"workload": "vfl", "role": role})


def parse_psi_mode(text: str) -> Mode:
    """Return the PSI mode named ``text`` (``--psi-mode``); ConfigError for another name."""
    try:
        return Mode(text)
    except ValueError:
        raise ConfigError(f"--psi-mode: expected one of {list(PSI_MODES)}, got {text!r}") from None


def aligning_psi_mode(text: str) -> Mode:
    """Return the PSI mode named ``text`` if it gives both parties an aligned order.

    Training and joint prediction need the same rows in the same order on both sides, so only
    ``both`` and ``enclave-only`` can serve them: ``cardinality`` gives neither side an order,
    and ``leader-only`` none to the follower, which must know which of its rows make each
    batch. Refused here, before anything starts, rather than after a PSI that disclosed sizes
    for nothing.

    Raises
    ------
    ConfigError
        For an unknown name, or one of the two modes above (saying why and what to use).
    """
    mode = parse_psi_mode(text)
    if mode in TRAINING_PSI_MODES:
        return mode
    why = (
        "gives neither party an aligned order, only the set sizes"
        if mode is Mode.CARDINALITY
        else "gives the follower no aligned order, and it must know which of its rows make "
        "each batch (enclave-only keeps the order inside both attested parties: the operators "
        "see only the count)"
    )
    raise ConfigError(
        f"--psi-mode: expected one of {[m.value for m in TRAINING_PSI_MODES]} for vfl, got "
        f"{text!r}: {mode.value} {why}"
    )


@dataclass(frozen=True, kw_only=True)
class LeaderOptions:
    """Options of ``sealfl vfl leader``, checked on construction (nothing is created).

    Parameters
    ----------
    data
        The leader's CSV: an id column, a label column and its feature columns.
    settings
        The shared settings; a follower claiming others is refused.
    rules
        Deadlines, checkpoint interval, resume.
    psi_mode
        The PSI's disclosure mode, ``both`` or ``enclave-only`` (:func:`aligning_psi_mode`;
        both parties must declare the same).
    policy_file
        The leader's attestation policy, recorded (by digest) in the joint manifest.
    line_style
        ``"reference"`` prints the reference system's progress lines.
    """

    data: Path
    settings: VflSettings
    listen: str = "127.0.0.1:50090"
    out_dir: Path = Path("vfl-leader")
    rules: LeaderRules = field(default_factory=LeaderRules)
    psi_mode: str = "both"
    id_column: str = "id"
    label_column: str = "y"
    threads: int = 1
    policy_file: Path | None = None
    certificate_hours: float = 24.0
    line_style: str = "plain"

    def __post_init__(self) -> None:
        check_address(self.listen, where="--listen")
        aligning_psi_mode(self.psi_mode)
        check_count(self.threads, "--threads", low=1, high=MAX_THREADS)
        hours = self.certificate_hours
        if not (math.isfinite(hours) and 0 < hours <= _MAX_CERTIFICATE_HOURS):
            raise ConfigError(
                f"--certificate-hours: expected hours in (0, {_MAX_CERTIFICATE_HOURS}], got {hours}"
            )
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"--out {self.out_dir}: is a file, expected a directory")


@dataclass(frozen=True, kw_only=True)
class FollowerOptions:
    """Options of ``sealfl vfl follower``.

    Parameters
    ----------
    data
        The follower's CSV: an id column and its feature columns.
    leader
        The leader's front door, ``host:port``.
    wait_for_leader_s
        How long to wait for the leader to listen; 0 gives up at once.
    step_deadline_s
        How long to wait for the leader's next message (reconnects included).
    """

    data: Path
    settings: VflSettings
    leader: str
    out_dir: Path = Path("vfl-follower")
    resume: bool = False
    psi_mode: str = "both"
    id_column: str = "id"
    threads: int = 1
    wait_for_leader_s: float = 0.0
    step_deadline_s: float = 60.0
    policy_file: Path | None = None

    def __post_init__(self) -> None:
        check_address(self.leader, where="--leader")
        aligning_psi_mode(self.psi_mode)
        check_count(self.threads, "--threads", low=1, high=MAX_THREADS)
        check_seconds(self.step_deadline_s, "--step-deadline")
        check_seconds(self.wait_for_leader_s, "--wait-for-leader", zero=True)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"--out {self.out_dir}: is a file, expected a directory")


# ---- pieces both parties use --------------------------------------------------------------


def read_party(
    path: Path, settings: VflSettings, *, role: str, id_column: str, label_column: str | None
) -> PartyData:
    """Read a party's CSV and check its width against the settings.

    Raises
    ------
    ConfigError
        Naming the file and what does not fit.
    """
    data = read_party_csv(path, id_column=id_column, label_column=label_column)
    want = settings.model.leader_features if role == "leader" else settings.model.follower_features
    if data.n_features != want:
        raise ConfigError(
            f"{path}: {data.n_features} feature columns, the settings' {role} half takes {want}"
        )
    return data


def aligned_rows(result: PsiResult, ids: tuple[str, ...], *, role: str) -> npt.NDArray[np.int64]:
    """Return this side's intersected rows sorted by id: the same order on both sides.

    Sorting by the id (which both sides hold for every intersected row) rather than keeping
    the PSI's session-random order makes the aligned order a function of the two id sets
    alone, so a resumed run, which runs a fresh PSI, trains on exactly the rows in exactly the
    order of the run it continues.

    Raises
    ------
    ConfigError
        If the PSI mode gives this side no aligned order (cardinality, or the follower in
        leader-only), so it cannot train.
    """
    if result.order is None:
        raise ConfigError(
            f"PSI mode {result.mode.value}: the {role} learns no aligned order, so it cannot "
            "train; use 'both' or 'enclave-only'"
        )
    rows = np.asarray(result.order.rows(), dtype=np.int64)
    order = sorted(range(len(rows)), key=lambda k: ids[int(rows[k])])
    return rows[np.asarray(order, dtype=np.int64)] if len(rows) else rows


def follower_psi(
    channel: SecureChannel[Any], data: PartyData, psi_mode: str
) -> tuple[PsiResult, PartyData]:
    """Run the follower's side of PSI on ``channel``, then close it.

    Returns the result and the follower's rows in the aligned order: training and joint
    prediction align the same way.
    """
    try:
        result = run_psi_on_channel(
            channel,
            data.ids,
            role=Role.FOLLOWER,
            settings=PsiSettings(mode=parse_psi_mode(psi_mode)),
        )
    finally:
        channel.close()
    return result, data.take(aligned_rows(result, data.ids, role="follower"))


def _prepare_torch(threads: int) -> None:
    """Set torch's thread count and keep freed tensor memory mapped between steps."""
    keep_freed_memory()
    torch.set_num_threads(threads)


def _claims(settings: VflSettings, role: str, psi: PsiResult | None = None) -> dict[str, bytes]:
    claims = {
        SETTINGS_CLAIM: bytes.fromhex(settings.digest()),
        HALF_CLAIM: bytes.fromhex(settings.half_digest(role)),  # type: ignore[arg-type]
    }
    if psi is not None:
        claims[PSI_CLAIM] = psi.transcript
    return claims


def missing_claims(peer: VerifiedPeer, wanted: Mapping[str, bytes], *, who: str) -> str | None:
    """Return why ``peer`` is refused (a claim of ``wanted`` missing or different), or None."""
    for claim, value in wanted.items():
        got = peer.claims.get(claim)
        if got != value:
            shown = got.hex()[:16] + "…" if isinstance(got, bytes) else "nothing"
            return (
                f"{who}'s attested certificate claims {claim} {shown}, expected {value.hex()[:16]}…"
            )
    return None


def _measurement(peer: VerifiedPeer) -> str:
    values = list(peer.measurements.values())
    return values[0] if values else ""


def _psi_summary(result: PsiResult) -> dict[str, Any]:
    return {
        "transcript_sha256": result.transcript.hex(),
        "mode": result.mode.value,
        "own_size": result.own_size,
        "peer_size": result.peer_size,
        "count": result.count,
    }


def _policy_sha(path: Path | None) -> str:
    return file_sha256(path) if path is not None else ""


def _plan(settings: VflSettings, rows: int) -> BatchPlan:
    return BatchPlan.for_run(settings.train, rows)


# ---- the leader ---------------------------------------------------------------------------


@dataclass
class LeaderResult:
    """The leader's run: the loop's record, and where things went."""

    run: LeaderRun
    psi: PsiResult
    manifest_path: Path
    half_path: Path


def run_leader(
    options: LeaderOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> LeaderResult:
    """Serve the follower: PSI, training, sealed export. Return what happened.

    Raises
    ------
    ConfigError
        If the data, an option, the listen address or the checkpoints are unusable.
    ChannelError, ProtocolError
        If the follower disappears past a deadline, or breaks the protocol.
    """
    settings = options.settings
    data = read_party(
        options.data,
        settings,
        role="leader",
        id_column=options.id_column,
        label_column=options.label_column,
    )
    data.labels()
    data_sha = file_sha256(options.data)
    _prepare_torch(options.threads)
    out = options.out_dir
    store = CheckpointStore(out, tee.sealing_key(CHECKPOINT_LABEL), role="leader")
    if not options.rules.resume and store.steps():
        raise ConfigError(
            f"{out} holds checkpoints of an earlier run (steps {store.steps()}): pass --resume to "
            "continue it, or use another --out"
        )
    half = LeaderHalf(settings)
    half_key = tee.sealing_key(half_label("leader"))
    make_directory(out, what="--out directory")
    metrics = MetricsLog(out / LEADER_METRICS_FILE, party="leader")
    claims = _claims(settings, "leader")
    lifetime = timedelta(hours=options.certificate_hours)
    refused = refusal_reporter(
        on_line, lambda detail: metrics.write("enrolment_refused", detail=detail), party="leader"
    )
    server: SecureServer[VerifiedPeer] = SecureServer(
        credentials=tee.credentials(claims=claims, lifetime=lifetime),
        peer_verifier=tee.verify_peer,
        address=options.listen,
        max_workers=8,
        max_connection_age_s=lifetime.total_seconds(),
        on_refusal=refused,
        disclose_refusal_reasons=tee.disclose_refusals,
        renew=lambda: tee.credentials(claims=claims, lifetime=lifetime),
    )
    psi = PsiServicer(
        data.ids, role=Role.LEADER, settings=PsiSettings(mode=parse_psi_mode(options.psi_mode))
    )
    add_psi_servicer(server, psi)
    service = VflService(server.identity_of)
    server.add_servicer(pb_grpc.add_VflServicer_to_server, service)
    on_line(
        f"leader: {len(data.ids)} rows, settings sha256 {settings.digest()[:16]}… bound into the "
        "RA-TLS certificate"
    )
    try:
        try:
            address = server.start()
        except ChannelError as exc:
            raise ConfigError(f"--listen {options.listen}: cannot listen there ({exc})") from None
        write_atomic(out / ADDRESS_FILE, f"{address}\n".encode(), mode=0o644)
        metrics.write("listening", address=address, settings=settings.digest())
        on_line(f"leader: listening on {address}; waiting for the follower (PSI first)")
        started = time.perf_counter()
        result = psi.result(timeout_s=options.rules.join_deadline_s)
        rows = aligned_rows(result, data.ids, role="leader")
        aligned = data.take(rows)
        summary = _psi_summary(result)
        metrics.write("psi", seconds=time.perf_counter() - started, **summary)
        on_line(
            f"leader: PSI ({result.mode.value}) done: {len(aligned.ids)} rows in common of "
            f"{result.own_size} here and {result.peer_size} at the follower; transcript "
            f"{result.transcript.hex()[:16]}…"
        )
        claims.update(_claims(settings, "leader", result))
        server.replace_credentials(tee.credentials(claims=claims, lifetime=lifetime))
        expected = _claims(settings, "follower", result)
        del expected[HALF_CLAIM]  # the follower's own half: recorded, not the leader's to pin
        follower_peer: list[VerifiedPeer] = []

        def admit(peer: VerifiedPeer) -> str | None:
            reason = missing_claims(peer, expected, who="the follower")
            if reason is None:
                follower_peer[:] = [peer]
            return reason

        plan = _plan(settings, aligned.n_rows)
        enclave_only = result.mode is Mode.ENCLAVE_ONLY
        aligned_key = tee.sealing_key(ALIGNED_LABEL) if enclave_only else None

        def export(exported: pb.Exported, run: LeaderRun) -> bytes:
            values, manifest = half.export()
            half_sha = seal_half(
                out / half_file("leader"),
                half_key,
                role="leader",
                settings=settings,
                values=values,
                manifest=manifest,
                run_id=run.run_id,
                data_sha256=data_sha,
            )
            peer = follower_peer[0] if follower_peer else None
            text = build_manifest(
                run_id=run.run_id,
                settings=settings,
                psi=summary,
                aligned=aligned_record(ids_digest(aligned.ids), key=aligned_key),
                steps=plan.steps,
                final_loss=run.final_loss,
                leader={
                    "half_sha256": half_sha,
                    "config_sha256": settings.half_digest("leader"),
                    "data_sha256": data_sha,
                    "policy_sha256": _policy_sha(options.policy_file),
                    "measurement": exported.leader_measurement,
                },
                follower={
                    "half_sha256": exported.half_sha256.hex(),
                    "config_sha256": exported.config_sha256.hex(),
                    "data_sha256": exported.data_sha256.hex(),
                    "policy_sha256": exported.policy_sha256.hex(),
                    "measurement": _measurement(peer) if peer is not None else "",
                },
            )
            write_manifest(out / MANIFEST_FILE, text)
            on_line(
                f"leader: half sealed at {out / half_file('leader')}; joint manifest at "
                f"{out / MANIFEST_FILE}"
            )
            return text

        loop = LeaderLoop(
            half=half,
            ids=aligned.ids,
            x=aligned.X,
            y=aligned.labels(),
            plan=plan,
            cut_width=settings.model.cut_width,
            rules=options.rules,
            store=store,
            settings_sha256=settings.digest(),
            run_id=secrets.token_hex(8),
            export=export,
            metrics=metrics,
            on_line=on_line,
            line_style=options.line_style,
            wire_dtype=settings.train.wire_dtype,
        )
        service.train.open(loop.inbox, admit)
        run = loop.run()
        leak = run.leak
        metrics.write(
            "done",
            steps=run.steps,
            final_loss=run.final_loss,
            norm_auc=leak.norm_auc if leak else None,
            cosine_auc=leak.cosine_auc if leak else None,
            leak=leak.leak if leak else None,
        )
        if leak is not None:
            on_line(
                f"leader: done: {run.steps} steps, final loss {run.final_loss:.6f}; label leak of "
                f"the gradients sent: norm attack AUC {leak.norm_auc:.3f}, cosine attack AUC "
                f"{leak.cosine_auc:.3f}, leak max(AUC, 1 - AUC) {leak.leak:.3f} (defence: "
                f"{settings.defence.kind})"
            )
        return LeaderResult(
            run=run,
            psi=result,
            manifest_path=out / MANIFEST_FILE,
            half_path=out / half_file("leader"),
        )
    finally:
        server.stop(grace=1.0)
        metrics.close()


# ---- the follower -------------------------------------------------------------------------


def _reachable(address: str) -> bool:
    import socket

    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def connect_to_leader(
    address: str,
    tee: PartyRuntime,
    claims: Mapping[str, bytes],
    *,
    wait_s: float,
    expect: Mapping[str, bytes],
) -> SecureChannel[VerifiedPeer]:
    """Verify the leader, enrol, and check its claims; retry while it is not (yet) there.

    A leader whose certificate does not claim ``expect``'s PSI transcript yet, or changes
    between our fetch and our enrolment (it is about to present, or presents, its post-PSI
    certificate), is verified again, for up to 30 s; one claiming other settings (or another
    manifest, at prediction) is refused at once: those never change.

    Raises
    ------
    AttestationError
        If the leader's evidence fails this party's policy, or its claims stay wrong.
    ChannelError
        If it cannot be reached within ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    reclaim_deadline = time.monotonic() + _RECLAIM_WAIT_S
    pause = 0.05
    while True:
        try:
            channel = open_secure_channel(
                address,
                credentials=tee.credentials(claims=dict(claims)),
                server_verifier=tee.verify_peer,
                renew=lambda: tee.credentials(claims=dict(claims)),
            )
        except CertificatePinError:
            # The leader presented its post-PSI certificate between our fetch and our
            # enrolment: verify it afresh.
            if time.monotonic() > reclaim_deadline:
                raise
            time.sleep(pause)
            continue
        except ChannelError as exc:
            if _reachable(address) or time.monotonic() + pause > deadline:
                hint = "" if wait_s else " (give --wait-for-leader S to wait for it)"
                raise ChannelError(
                    f"follower: cannot reach the leader at {address}: {exc}{hint}"
                ) from None
            time.sleep(pause)
            pause = min(1.0, pause * 2)
            continue
        who = f"the leader at {address}"
        lasting = {claim: value for claim, value in expect.items() if claim != PSI_CLAIM}
        reason = missing_claims(channel.server_identity, lasting, who=who)
        if reason is not None:
            # A leader's settings are fixed for its life (only its PSI claim changes): final.
            channel.close()
            raise AttestationError(
                f"{reason}: the two parties must declare the same settings (preset and "
                "overrides, the wire dtype included; to predict, the same manifest); refusing "
                "to work with it"
            )
        reason = missing_claims(channel.server_identity, expect, who=who)
        if reason is None:
            return channel
        channel.close()
        if time.monotonic() > reclaim_deadline:
            raise AttestationError(f"{reason}; refusing to work with it")
        time.sleep(pause)
        pause = min(0.5, pause * 2)


@dataclass
class FollowerResult:
    """The follower's run."""

    run: FollowerRun
    psi: PsiResult
    manifest_path: Path
    half_path: Path


def run_follower(
    options: FollowerOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> FollowerResult:
    """Attest the leader, run the PSI, train, and seal this half. Return what happened.

    Raises
    ------
    AttestationError
        If the leader's evidence fails this party's policy, or it claims other settings.
    ChannelError, ProtocolError
        If the leader cannot be reached, disappears past a deadline, or refuses.
    ConfigError
        If the data, an option or the checkpoints are unusable.
    """
    settings = options.settings
    data = read_party(
        options.data, settings, role="follower", id_column=options.id_column, label_column=None
    )
    data_sha = file_sha256(options.data)
    _prepare_torch(options.threads)
    out = options.out_dir
    store = CheckpointStore(out, tee.sealing_key(CHECKPOINT_LABEL), role="follower")
    if not options.resume and store.steps():
        raise ConfigError(
            f"{out} holds checkpoints of an earlier run (steps {store.steps()}): pass --resume to "
            "continue it, or use another --out"
        )
    half = FollowerHalf(settings)
    half_key = tee.sealing_key(half_label("follower"))
    make_directory(out, what="--out directory")
    metrics = MetricsLog(out / FOLLOWER_METRICS_FILE, party="follower")
    try:
        claims = _claims(settings, "follower")
        expect = {SETTINGS_CLAIM: claims[SETTINGS_CLAIM]}
        channel = connect_to_leader(
            options.leader, tee, claims, wait_s=options.wait_for_leader_s, expect=expect
        )
        leader_peer = channel.server_identity
        on_line(
            f"follower: leader at {options.leader} attested ({leader_peer.backend}, measurement "
            f"{_measurement(leader_peer)[:16]}…) with the same settings; PSI next"
        )
        started = time.perf_counter()
        result, aligned = follower_psi(channel, data, options.psi_mode)
        metrics.write("psi", seconds=time.perf_counter() - started, **_psi_summary(result))
        on_line(
            f"follower: PSI ({result.mode.value}) done: {len(aligned.ids)} rows in common; "
            f"transcript {result.transcript.hex()[:16]}…"
        )
        claims = _claims(settings, "follower", result)
        expect = {SETTINGS_CLAIM: claims[SETTINGS_CLAIM], PSI_CLAIM: claims[PSI_CLAIM]}
        channel = connect_to_leader(
            options.leader, tee, claims, wait_s=options.step_deadline_s, expect=expect
        )
        leader_peer = channel.server_identity

        def export(run: FollowerRun) -> pb.Exported:
            values, manifest = half.export()
            half_sha = seal_half(
                out / half_file("follower"),
                half_key,
                role="follower",
                settings=settings,
                values=values,
                manifest=manifest,
                run_id=run.run_id,
                data_sha256=data_sha,
            )
            on_line(f"follower: half sealed at {out / half_file('follower')}")
            return pb.Exported(
                half_sha256=bytes.fromhex(half_sha),
                config_sha256=bytes.fromhex(settings.half_digest("follower")),
                data_sha256=bytes.fromhex(data_sha),
                policy_sha256=bytes.fromhex(_policy_sha(options.policy_file)),
                sealed_path=str((out / half_file("follower")).resolve()),
                leader_measurement=_measurement(leader_peer),
            )

        def save_manifest(text: bytes) -> None:
            write_manifest(out / MANIFEST_FILE, text)
            on_line(f"follower: joint manifest at {out / MANIFEST_FILE}")

        loop = FollowerLoop(
            half=half,
            ids=aligned.ids,
            x=aligned.X,
            plan=_plan(settings, aligned.n_rows),
            cut_width=settings.model.cut_width,
            connect=lambda inbox: open_stream(channel, inbox),
            store=store,
            settings_sha256=settings.digest(),
            resume=options.resume,
            step_deadline_s=options.step_deadline_s,
            export=export,
            save_manifest=save_manifest,
            metrics=metrics,
            on_line=on_line,
            wire_dtype=settings.train.wire_dtype,
        )
        try:
            run = loop.run()
        finally:
            channel.close()
        on_line(f"follower: done: {run.steps} steps, the leader's final loss {run.final_loss:.6f}")
        return FollowerResult(
            run=run,
            psi=result,
            manifest_path=out / MANIFEST_FILE,
            half_path=out / half_file("follower"),
        )
    finally:
        metrics.close()

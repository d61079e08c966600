"""Run the parameter server or a worker as a whole process: TEE, RA-TLS, sealing, metrics.

The wiring, and nothing else: rounds live in :mod:`.server`, arithmetic in :mod:`.aggregation`,
torch in :mod:`.training`, and everything TEE (evidence, policy, sealing keys, release list) in
the :class:`~sealfl.runtime.PartyRuntime` each party is given.

The PS binds the digests of the federation's settings and of the model manifest into its RA-TLS
certificate (claims ``hfl-settings`` and ``hfl-manifest``), beside the release-list digest the
runtime adds; a worker verifies the PS's evidence by its policy, then checks those claims
against its own settings and prints who will be able to open the trained model before it
contributes anything. After every round the PS seals a checkpoint; at the end it seals the model
and, with a release list, writes it in a release envelope only the listed recipients can open.

With secure aggregation (:mod:`.secure`) the PS also binds ``hfl-secagg`` (SHA-256 of its
secure-aggregation options) into its certificate, seals the open round's protocol state at every
stage (``hfl_secagg.sealed``) and resumes it; a worker started with it never sends its update
in the clear, and seals its unmask ledger (beside its seat file) before every answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from torch import nn

from sealfl._files import make_directory, write_atomic
from sealfl.data import ImageSet, read_shard
from sealfl.errors import AttestationError, ChannelError, ConfigError, ProtocolError, SealError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.hfl.aggregation import ScreeningLimits, ServerOptimizer
from sealfl.fl.hfl.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_LABEL,
    evaluation_to_proto,
    load_checkpoint,
    save_checkpoint,
)
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.protos import hfl_pb2_grpc as pb_grpc
from sealfl.fl.hfl.secure import (
    LEDGER_LABEL,
    SECAGG_FILE,
    SECAGG_LABEL,
    SecAggOptions,
    SecureRound,
    UpdateLedger,
    advert_from_proto,
    advert_to_proto,
    peer_bytes,
    peer_map,
    planned_weight,
    weighted_update,
)
from sealfl.fl.hfl.server import (
    FinalModel,
    GlobalView,
    JoinInfo,
    ParameterServer,
    PsState,
    RoundEval,
    RoundRules,
    TrainingResult,
)
from sealfl.fl.hfl.service import HflService, PsLink, SubmitResult
from sealfl.fl.hfl.settings import Aggregation, Settings
from sealfl.fl.hfl.training import (
    LocalResult,
    LocalTrainer,
    evaluate,
    initial_model,
    parameter_masks,
    use_threads,
)
from sealfl.models import FlatManifest
from sealfl.models.nn import flatten, load_flat
from sealfl.net import (
    SecureChannel,
    SecureServer,
    certificate_fingerprint,
    open_secure_channel,
    refusal_reporter,
)
from sealfl.net.addresses import split_address
from sealfl.runtime import RELEASE_LIST_CLAIM, PartyRuntime, check_address
from sealfl.seal import SealingKey, read_sealed, write_sealed
from sealfl.seal.release import write_release
from sealfl.secagg import Params, RoundTag, SecAggWorker, UnmaskRequest
from sealfl.tee import RaTlsCredentials, VerifiedPeer, measure_code

__all__ = [
    "ADDRESS_FILE",
    "MANIFEST_CLAIM",
    "MODEL_FILE",
    "MODEL_LABEL",
    "PS_METRICS_FILE",
    "RELEASE_FILE",
    "SETTINGS_CLAIM",
    "PsOptions",
    "Resume",
    "WorkerOptions",
    "exit_code",
    "role_measurement",
    "run_ps",
    "run_worker",
]

SETTINGS_CLAIM = "hfl-settings"
"""RA-TLS claim of the PS: SHA-256 of the federation's settings (canonical JSON)."""
MANIFEST_CLAIM = "hfl-manifest"
"""RA-TLS claim of the PS: SHA-256 of the model manifest's canonical JSON."""
SECAGG_CLAIM = "hfl-secagg"
"""RA-TLS claim of a PS with secure aggregation: SHA-256 of its options (threshold, clip,
degree). A worker with ``--secure-aggregation`` refuses a PS without it."""
MODEL_FILE = "hfl_model.sealed"
"""The sealed trained model, in the PS's ``--out`` directory."""
RELEASE_FILE = "hfl_model.release"
"""The trained model in a release envelope for the PS's release list (when it has one)."""
MODEL_LABEL = "hfl/model"
"""Label of the sealed model and of its release envelope."""
SEAT_LABEL = "hfl/seat"
"""Label of a worker's sealed seat file (and of the key it is sealed with)."""
PS_METRICS_FILE = "ps_metrics.jsonl"
"""The PS's JSON-lines metrics, in its ``--out`` directory."""
ADDRESS_FILE = "ps.address"
"""Written into ``--out`` once the PS listens: its front-door address (readiness signal)."""
EXIT_STOPPED_BY_OPERATOR = 130

Resume = bool | Literal["auto"]
"""Whether a PS continues from the checkpoint in its ``--out`` directory:

- ``False``: start a new run (an old checkpoint there is replaced after the first round; the PS
  says so when it starts);
- ``True`` (``--resume``): continue it, and refuse to start without one: an operator who asks
  to continue a run must not get a new one silently, from round 1, because of a wrong
  directory;
- ``"auto"``: continue it if there is one, else start a new run. For a PS restarted by a
  supervisor (systemd, a container's restart policy) from one unchanging role config: the first
  start begins the run, every later one continues it. A checkpoint of other settings is still
  refused, as with ``True``.
"""

F32 = npt.NDArray[np.float32]
U32 = npt.NDArray[np.uint32]


def role_measurement(role: str) -> bytes:
    """Return the simulated measurement of an hfl party (``"ps"`` or ``"worker"``).

    The same value :meth:`sealfl.runtime.RoleConfig.default_measurement` gives a role config
    with ``workload = "hfl"``.
    """
    return measure_code({"workload": "hfl", "role": role})


def _positive(value: float, option: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a positive number, got {value}")


@dataclass(frozen=True, kw_only=True)
class PsOptions:
    """Options of ``sealfl hfl ps``, checked on construction (nothing is created).

    Parameters
    ----------
    test_set
        The PS's held-out test set: a shard file (``sealfl hfl prepare`` writes one).
    settings
        The federation's training settings; workers declaring others are refused.
    out_dir
        Metrics, checkpoint, sealed model and release envelope go here.
    resume
        Continue from the sealed checkpoint in ``out_dir``: ``True``, ``False`` or ``"auto"``
        (see :data:`Resume`).
    threads
        torch intra-op threads of the PS (its evaluations).
    certificate_hours
        Lifetime of the PS's RA-TLS certificate; it must outlast the run, since workers
        reconnecting later pin it.
    secure_aggregation
        Secure aggregation's options (``--secure-aggregation``), or ``None``.

    Raises
    ------
    ConfigError
        Naming the option of the first value out of range.
    """

    test_set: Path
    settings: Settings
    worker_num: int
    min_workers: int | None = None
    listen: str = "127.0.0.1:50080"
    out_dir: Path = Path("hfl-out")
    round_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    evaluate_every: int = 1
    resume: Resume = False
    threads: int = 1
    max_abs: float = ScreeningLimits.max_abs
    max_relative_change: float = ScreeningLimits.max_relative_change
    certificate_hours: float = 24.0
    secure_aggregation: SecAggOptions | None = None

    def __post_init__(self) -> None:
        check_address(self.listen, where="--listen")
        self.rules()
        if self.secure_aggregation is not None:
            self.secure_aggregation.check_seats(self.worker_num)
        if self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        _positive(self.max_abs, "--max-abs")
        _positive(self.max_relative_change, "--max-relative-change")
        _positive(self.certificate_hours, "--certificate-hours")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"--out {self.out_dir}: is a file, expected a directory")
        if not (isinstance(self.resume, bool) or self.resume == "auto"):
            raise ConfigError(f'--resume: expected true, false or "auto", got {self.resume!r}')

    def rules(self) -> RoundRules:
        """Return the core's counts and deadlines."""
        return RoundRules(
            worker_num=self.worker_num,
            min_workers=self.worker_num if self.min_workers is None else self.min_workers,
            round_deadline_s=self.round_deadline_s,
            join_deadline_s=self.join_deadline_s,
            evaluate_every=self.evaluate_every,
        )


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """Options of ``sealfl hfl worker``.

    Parameters
    ----------
    shard
        This worker's shard file (it reads nothing else).
    server
        The PS's front door, ``host:port``.
    wait_for_server_s
        How long to wait for the PS, at the start and whenever the worker loses it (a PS
        restarted with ``--resume``); 0 gives up at once.
    seat_file
        Where the seat token is kept, sealed to this worker's TEE, so a restart takes the seat
        back.
    expect_release
        The release-list digest (hex) this worker agrees to contribute under; a PS whose
        certificate claims another list is refused. ``None``: print it, accept any.
    secure_aggregation
        Send updates only masked (``--secure-aggregation``); a PS that does not claim secure
        aggregation in its certificate is refused. The unmask ledger is sealed beside
        ``seat_file`` (kept in memory only without one).

    Raises
    ------
    ConfigError
        If a value is out of range or an address malformed.
    """

    shard: Path
    worker_id: int
    server: str
    settings: Settings
    threads: int = 1
    seat_file: Path | None = None
    metrics_path: Path | None = None
    wait_for_server_s: float = 0.0
    expect_release: str | None = None
    secure_aggregation: bool = False

    @property
    def ledger_file(self) -> Path | None:
        """Where the sealed unmask ledger lives: beside the seat file."""
        if self.seat_file is None:
            return None
        return self.seat_file.with_name(self.seat_file.name + ".secagg")

    def __post_init__(self) -> None:
        if not 0 <= self.worker_id <= 2**32 - 1:
            raise ConfigError(f"--id must be between 0 and {2**32 - 1}, got {self.worker_id}")
        check_address(self.server, where="--server")
        if self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if not (math.isfinite(self.wait_for_server_s) and self.wait_for_server_s >= 0):
            raise ConfigError(
                f"--wait-for-server must be 0 or more seconds, got {self.wait_for_server_s}"
            )
        if self.expect_release is not None:
            text = self.expect_release.strip().lower()
            if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
                raise ConfigError(
                    f"--expect-release: expected 64 hex digits, got {self.expect_release!r}"
                )
        if self.seat_file is not None and self.seat_file.is_dir():
            raise ConfigError(f"--seat-file {self.seat_file}: is a directory, expected a file")


@contextlib.contextmanager
def operator_signals(stop: Callable[[str], None]) -> Iterator[list[int]]:
    """While active, Ctrl-C and SIGTERM call ``stop(reason)`` (a second signal kills).

    Only the main thread receives signals; elsewhere (a PS in a test) this does nothing.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: Any) -> None:
        if received:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        reason = f"stopped by the operator ({signal.Signals(signum).name})"
        threading.Thread(target=stop, args=(reason,), name="operator-stop", daemon=True).start()

    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handle) for signum in wanted}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---- the parameter server ---------------------------------------------------------------


class _PsHooks:
    """Evaluation, checkpoints and the final model of a PS process."""

    def __init__(
        self,
        *,
        options: PsOptions,
        tee: PartyRuntime,
        test: ImageSet,
        model: nn.Module,
        manifest: FlatManifest,
        checkpoint_key: SealingKey,
        model_key: SealingKey,
        on_line: Callable[[str], None],
    ) -> None:
        self.options = options
        self.tee = tee
        self.test = test
        self.model = model
        self.manifest = manifest
        self.checkpoint_key = checkpoint_key
        self.model_key = model_key
        self.on_line = on_line
        self.last_checkpoint_bytes = 0

    def evaluate(self, rounds_done: int, values: F32) -> RoundEval:
        load_flat(self.model, values, self.manifest)
        result = evaluate(self.model, self.test, self.options.settings)
        return RoundEval(rounds_done, result.loss, result.accuracy, result.per_class)

    def checkpoint(self, state: PsState) -> None:
        options = self.options
        rules = options.rules()
        self.last_checkpoint_bytes = save_checkpoint(
            options.out_dir / CHECKPOINT_FILE,
            state,
            self.checkpoint_key,
            settings=options.settings,
            manifest_digest=self.manifest.digest(),
            schema_digest=self.test.schema.digest(),
            worker_num=rules.worker_num,
            min_workers=rules.min_workers,
        )

    def save_secure(self, blob: bytes) -> None:
        write_sealed(
            self.options.out_dir / SECAGG_FILE, blob, self.checkpoint_key, label=SECAGG_LABEL
        )

    def finish(self, result: TrainingResult) -> FinalModel:
        out = self.options.out_dir
        message = pb.TrainedModel(
            settings=self.options.settings.to_proto(),
            manifest_json=self.manifest.to_json(),
            values=result.model.astype("<f4", copy=False).tobytes(),
            rounds_done=result.rounds_done,
            run_id=result.run_id,
            contributors=list(result.contributors),
            schema_json=self.test.schema.to_json(),
        )
        if result.evaluation is not None:
            message.evaluation.CopyFrom(evaluation_to_proto(result.evaluation))
        blob = message.SerializeToString()
        try:
            write_sealed(out / MODEL_FILE, blob, self.model_key, label=MODEL_LABEL)
            release = ""
            if self.tee.release is not None:
                write_release(out / RELEASE_FILE, blob, self.tee.release, label=MODEL_LABEL)
                release = str((out / RELEASE_FILE).resolve())
        except (ConfigError, SealError) as exc:
            note = f"the PS could not write the trained model: {exc}"
            self.on_line(f"PS: {note}")
            return FinalModel(note=note)
        model_path = str((out / MODEL_FILE).resolve())
        self.on_line(f"PS: trained model sealed at {model_path}")
        if release and self.tee.release is not None:
            self.on_line(f"PS: release envelope for {self.tee.release.describe()} at {release}")
        return FinalModel(model_path=model_path, release_path=release)


def run_ps(
    options: PsOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> tuple[TrainingResult, bool]:
    """Serve the workers, train, seal the model; return the result and whether stopped by signal.

    Raises
    ------
    ConfigError
        If the test set, an option, the listen address or the checkpoint is unusable; raised
        before any file is created.
    SealError
        If ``--resume`` finds a checkpoint sealed by another TEE identity, or altered.
    """
    settings = options.settings
    test = read_shard(options.test_set).data
    use_threads(options.threads)
    model = initial_model(settings, test.schema)
    initial, manifest = flatten(model)
    trainable, decay = parameter_masks(model, manifest)
    optimizer = ServerOptimizer(settings, trainable, decay)
    rules = options.rules()
    checkpoint_key = tee.sealing_key(CHECKPOINT_LABEL)
    model_key = tee.sealing_key(MODEL_LABEL)
    out = options.out_dir
    run_id: str | None = None
    start = 0
    secure_round: SecureRound | None = None
    evaluations: tuple[RoundEval, ...] = ()
    contributors: tuple[int, ...] = ()
    found = (out / CHECKPOINT_FILE).is_file()
    if options.resume == "auto" and not found:
        on_line(f'PS: no checkpoint at {out / CHECKPOINT_FILE}: starting a new run (resume "auto")')
    elif not options.resume and found:
        on_line(
            f"PS: starting a new run; the checkpoint of an earlier one at {out / CHECKPOINT_FILE} "
            'is replaced after round 1 (resume = true or "auto", or --resume, would continue it)'
        )
    if options.resume is True or (options.resume == "auto" and found):
        checkpoint = load_checkpoint(out / CHECKPOINT_FILE, checkpoint_key, numel=manifest.numel)
        checkpoint.check_matches(
            settings=settings,
            manifest_digest=manifest.digest(),
            schema_digest=test.schema.digest(),
            worker_num=rules.worker_num,
            min_workers=rules.min_workers,
            source=str(out / CHECKPOINT_FILE),
        )
        optimizer.load_state(checkpoint.state.server_state, manifest.numel)
        checkpoint.restore_rng()
        state = checkpoint.state
        run_id, start, initial = state.run_id, state.next_version, state.model
        evaluations, contributors = state.evaluations, state.contributors
        on_line(f"PS: resuming {checkpoint.describe()} from {out / CHECKPOINT_FILE}")
        secure_round = _restored_round(options, checkpoint_key, run_id, start, on_line)
    make_directory(out, what="--out directory")
    metrics = MetricsLog(out / PS_METRICS_FILE, party="ps")
    hooks = _PsHooks(
        options=options,
        tee=tee,
        test=test,
        model=model,
        manifest=manifest,
        checkpoint_key=checkpoint_key,
        model_key=model_key,
        on_line=on_line,
    )
    ps = ParameterServer(
        settings=settings,
        manifest=manifest,
        schema_digest=test.schema.digest(),
        initial=initial,
        optimizer=optimizer,
        rules=rules,
        hooks=hooks,
        metrics=metrics,
        on_line=on_line,
        limits=ScreeningLimits(options.max_abs, options.max_relative_change),
        run_id=run_id,
        start_version=start,
        evaluations=tuple(evaluations),
        contributors=tuple(contributors),
        secure=options.secure_aggregation,
        secure_round=secure_round,
        save_secure=hooks.save_secure,
    )
    if options.secure_aggregation is not None:
        on_line(
            f"PS: secure aggregation on ({_describe_secure(options.secure_aggregation)}): "
            "updates arrive masked; only the survivors' sum is unmasked"
        )
    try:
        return _serve(options, tee, ps, manifest.digest(), metrics, on_line)
    finally:
        metrics.close()


def _describe_secure(secure: SecAggOptions) -> str:
    threshold = "majority" if secure.threshold is None else str(secure.threshold)
    degree = "all pairs" if secure.degree is None else f"{secure.degree} neighbours"
    return f"threshold {threshold}, clip {secure.clip:g}, {degree}"


def secure_claim(secure: SecAggOptions) -> bytes:
    """Return the ``hfl-secagg`` claim of these options."""
    text = f"sealfl hfl secagg v1 threshold={secure.threshold} clip={secure.clip!r} "
    return hashlib.sha256((text + f"degree={secure.degree}").encode()).digest()


def _restored_round(
    options: PsOptions,
    key: SealingKey,
    run_id: str,
    version: int,
    on_line: Callable[[str], None],
) -> SecureRound | None:
    """Return the sealed secure state of the round the PS resumes at, if there is one."""
    path = options.out_dir / SECAGG_FILE
    if options.secure_aggregation is None or not path.is_file():
        return None
    raw = read_sealed(path, key, label=SECAGG_LABEL)
    try:
        saved_run, rnd = SecureRound.from_bytes(raw)
    except ProtocolError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if saved_run != run_id or rnd.version != version:
        on_line(f"PS: {path} holds another round's secure state; round {version + 1} starts anew")
        return None
    return rnd


def _serve(
    options: PsOptions,
    tee: PartyRuntime,
    ps: ParameterServer,
    manifest_digest: str,
    metrics: MetricsLog,
    on_line: Callable[[str], None],
) -> tuple[TrainingResult, bool]:
    settings = options.settings
    claims = {
        SETTINGS_CLAIM: bytes.fromhex(settings.digest()),
        MANIFEST_CLAIM: bytes.fromhex(manifest_digest),
    }
    if options.secure_aggregation is not None:
        claims[SECAGG_CLAIM] = secure_claim(options.secure_aggregation)
    lifetime = timedelta(hours=options.certificate_hours)
    credentials = tee.credentials(claims=claims, lifetime=lifetime)
    refused = refusal_reporter(
        on_line, lambda detail: metrics.write("enrolment_refused", detail=detail), party="PS"
    )

    server: SecureServer[VerifiedPeer] = SecureServer(
        credentials=credentials,
        peer_verifier=tee.verify_peer,
        address=options.listen,
        # Each worker parks one call on GetGlobal while it waits for a round; keep room.
        max_workers=min(256, 2 * options.worker_num + 4),
        on_refusal=refused,
        disclose_refusal_reasons=tee.disclose_refusals,
        # Ahead of notAfter: a new certificate with the same claims, handed over signed.
        renew=lambda: tee.credentials(claims=claims, lifetime=lifetime),
    )
    server.add_servicer(pb_grpc.add_HflServicer_to_server, HflService(ps))
    on_line(f"PS: settings {settings.describe()}; workers must declare the same")
    on_line(
        f"PS: model {settings.model} ({ps.manifest.numel:,} values, manifest sha256 "
        f"{manifest_digest[:16]}…) and settings sha256 {settings.digest()[:16]}… bound into "
        "the RA-TLS certificate"
    )
    if tee.release is not None:
        on_line(f"PS: the trained model will be released to {tee.release.describe()}")
    with operator_signals(ps.stop) as signals:
        try:
            address = server.start()
        except ChannelError as exc:
            raise ConfigError(f"--listen {options.listen}: cannot listen there ({exc})") from None
        try:
            out = options.out_dir
            write_atomic(out / ADDRESS_FILE, f"{address}\n".encode(), mode=0o644)
            metrics.write(
                "listening",
                address=address,
                worker_num=options.worker_num,
                rounds=settings.rounds,
                start_version=ps.version,
                settings=settings.as_dict(),
            )
            on_line(
                f"PS: listening on {address}; waiting for {options.worker_num} workers "
                f"(run {ps.run_id}, starting at round {ps.version + 1} of {settings.rounds})"
            )
            result = ps.run()
        finally:
            server.stop(grace=1.0)
    if not result.completed and (options.out_dir / CHECKPOINT_FILE).is_file():
        on_line(
            f"PS: stopped after {result.rounds_done} rounds ({result.stop_reason}); the state is "
            f"sealed in {options.out_dir / CHECKPOINT_FILE}: run the same command with --resume "
            '(a role config: resume = true or "auto") to continue'
        )
    elif result.evaluation is not None:
        e = result.evaluation
        per_class = " ".join(f"{a:.3f}" for a in e.per_class)
        on_line(
            f"PS: done: {result.rounds_done} rounds, test accuracy {e.accuracy:.4f}, loss "
            f"{e.loss:.4f}; per class: {per_class}"
        )
    return result, bool(signals)


def exit_code(result: TrainingResult, by_operator: bool) -> int:
    """Return the PS's exit status: 0 trained and saved, 130 stopped by a signal, else 1."""
    if result.completed:
        return 0 if result.final.model_path else 1
    return EXIT_STOPPED_BY_OPERATOR if by_operator else 1


# ---- a worker ---------------------------------------------------------------------------


def _listening(address: str) -> bool:
    """Whether anything accepts TCP connections at ``address`` right now."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _short(peer: VerifiedPeer) -> str:
    values = list(peer.measurements.values())
    return (values[0][:16] + "…") if values else "none"


@dataclass(frozen=True)
class _Prepared:
    """A worker's secure-aggregation round after stage 2: what masking needs."""

    tag: RoundTag
    params: Params
    worker: SecAggWorker
    weight: int
    total: int
    delivered: dict[int, bytes]
    bytes_before: int


class _Worker:
    """A worker process's state across reconnects."""

    def __init__(
        self, options: WorkerOptions, tee: PartyRuntime, on_line: Callable[[str], None]
    ) -> None:
        self.options = options
        self.tee = tee
        self.on_line = on_line
        self.name = f"worker {options.worker_id}"
        shard = read_shard(options.shard)
        self.data = shard.data
        use_threads(options.threads)
        self.trainer = LocalTrainer(options.settings, self.data, worker_id=options.worker_id)
        self.manifest = self.trainer.manifest
        self.seat_key = tee.sealing_key(SEAT_LABEL) if options.seat_file is not None else None
        self.token = self._load_token()
        self.metrics = MetricsLog(options.metrics_path, party=f"worker-{options.worker_id}")
        self.link: PsLink | None = None
        self.info: JoinInfo | None = None
        self.manifest_digest = self.manifest.digest()
        # Secure aggregation: this process's certificates, the protocol state, the ledger.
        self._mine: set[str] = set()
        self._secagg: SecAggWorker | None = None
        self.ledger_key = tee.sealing_key(LEDGER_LABEL) if options.ledger_file is not None else None
        self.ledger = self._load_ledger() if options.secure_aggregation else None
        self._trained: tuple[int, LocalResult] | None = None
        # Asks the PS for the next model while this worker's update is still being sent.
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfl-next-model")
        self._next: tuple[int, Future[GlobalView]] | None = None

    # -- seats ------------------------------------------------------------------------------

    def _load_token(self) -> bytes:
        path, key = self.options.seat_file, self.seat_key
        if path is None or key is None or not path.is_file():
            return b""
        try:
            ticket = pb.SeatTicket.FromString(read_sealed(path, key, label=SEAT_LABEL))
        except (ConfigError, SealError, ValueError) as exc:
            self.on_line(f"{self.name}: cannot open the seat file {path} ({exc}); joining anew")
            return b""
        if ticket.worker_id != self.options.worker_id:
            self.on_line(f"{self.name}: {path} is worker {ticket.worker_id}'s seat; joining anew")
            return b""
        return bytes(ticket.seat_token)

    def _save_token(self, info: JoinInfo) -> None:
        path, key = self.options.seat_file, self.seat_key
        if path is None or key is None:
            return
        ticket = pb.SeatTicket(
            run_id=info.run_id, worker_id=self.options.worker_id, seat_token=info.seat_token
        )
        try:
            write_sealed(path, ticket.SerializeToString(), key, label=SEAT_LABEL)
        except ConfigError as exc:
            self.on_line(f"{self.name}: could not write the seat file ({exc})")

    def _load_ledger(self) -> UpdateLedger:
        path, key = self.options.ledger_file, self.ledger_key
        if path is None or key is None:
            self.on_line(
                f"{self.name}: no --seat-file: the secure-aggregation ledger is kept in memory "
                "only, so a restarted worker would not remember what it unmasked"
            )
            return UpdateLedger(self.options.worker_id)
        if not path.is_file():
            return UpdateLedger(self.options.worker_id)
        # A ledger that cannot be opened is not skipped: it is what stops a second unmasking.
        try:
            return UpdateLedger(self.options.worker_id, read_sealed(path, key, label=LEDGER_LABEL))
        except ProtocolError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def _save_ledger(self) -> None:
        path, key = self.options.ledger_file, self.ledger_key
        if path is None or key is None or self.ledger is None:
            return
        write_sealed(path, self.ledger.to_bytes(), key, label=LEDGER_LABEL)

    def _credentials(self) -> RaTlsCredentials:
        """Make a fresh RA-TLS identity for a connection; remember it as this worker's."""
        credentials = self.tee.credentials()
        self._mine.add(certificate_fingerprint(credentials.cert_pem))
        return credentials

    # -- connection -------------------------------------------------------------------------

    def _open(self, wait_s: float) -> SecureChannel[VerifiedPeer]:
        """Verify the PS and connect, retrying while it is not (yet) there, for ``wait_s``."""
        deadline = time.monotonic() + wait_s
        pause = 0.2
        while True:
            try:
                return open_secure_channel(
                    self.options.server,
                    credentials=self._credentials(),  # a fresh key per connection
                    server_verifier=self.tee.verify_peer,
                    renew=self._credentials,  # past the hour, without dropping the seat
                )
            except ChannelError as exc:
                if _listening(self.options.server) or time.monotonic() + pause > deadline:
                    # Something answers there: a refusal or a broken handshake, not a PS that
                    # is still starting, so waiting would not help.
                    waited = f" within {wait_s:g} s" if wait_s else ""
                    hint = "" if wait_s else " (give --wait-for-server S to wait for it)"
                    raise ChannelError(
                        f"{self.name}: cannot reach the PS at {self.options.server}{waited}: "
                        f"{exc}{hint}"
                    ) from None
                time.sleep(pause)
                pause = min(2.0, pause * 2)

    def _check_ps(self, peer: VerifiedPeer) -> None:
        """Check the PS's bound settings and manifest; show and check its release list."""
        s = self.options.settings
        mine = {
            SETTINGS_CLAIM: bytes.fromhex(s.digest()),
            MANIFEST_CLAIM: bytes.fromhex(self.manifest.digest()),
        }
        for claim, value in mine.items():
            got = peer.claims.get(claim)
            if got != value:
                shown = got.hex()[:16] + "…" if isinstance(got, bytes) else "nothing"
                raise AttestationError(
                    f"PS at {self.options.server}: its attested certificate claims {claim} "
                    f"{shown}, this worker's is {value.hex()[:16]}… (the PS trains with other "
                    "settings or another model); refusing to contribute"
                )
        if self.options.secure_aggregation:
            secagg = peer.claims.get(SECAGG_CLAIM)
            if not isinstance(secagg, bytes):
                raise AttestationError(
                    f"PS at {self.options.server}: its certificate claims no secure aggregation "
                    f"({SECAGG_CLAIM}); this worker sends its update only masked "
                    "(--secure-aggregation); refusing"
                )
            self.on_line(f"{self.name}: the PS runs secure aggregation; updates leave masked")
        release = peer.claims.get(RELEASE_LIST_CLAIM)
        expected = self.options.expect_release
        if isinstance(release, bytes):
            self.on_line(
                f"{self.name}: the PS will release the trained model to the recipients of the "
                f"release list sha256 {release.hex()} (claimed in its attested certificate)"
            )
        else:
            self.on_line(f"{self.name}: the PS's certificate claims no release list")
        if expected is not None:
            got_hex = release.hex() if isinstance(release, bytes) else "none"
            if got_hex != expected.strip().lower():
                raise AttestationError(
                    f"PS at {self.options.server}: release list sha256 {got_hex}, this worker "
                    f"contributes only under {expected} (--expect-release); refusing"
                )

    def connect(self, wait_s: float) -> int:
        """(Re)connect, verify, join; return the version to train on next."""
        if self.link is not None:
            self.link.close()
        self._drop_next()
        started = time.perf_counter()
        channel = self._open(wait_s)
        peer = channel.server_identity
        self.on_line(
            f"{self.name}: PS at {self.options.server} attested ({peer.backend}, measurement "
            f"{_short(peer)})"
        )
        try:
            self._check_ps(peer)
        except AttestationError:
            channel.close()
            raise
        self.link = PsLink(channel)
        info = self.link.join(
            self.options.worker_id,
            self.options.settings,
            schema_digest=self.data.schema.digest(),
            manifest_digest=self.manifest_digest,
            num_examples=len(self.data),
            seat_token=self.token,
        )
        # From fetching the PS's certificate to the join reply: verification, enrolment, mTLS
        # (not the sealing and fsync of the seat file that follows).
        join_s = time.perf_counter() - started
        self.info = info
        self.token = info.seat_token
        self._save_token(info)
        self.metrics.write(
            "joined", run_id=info.run_id, next_version=info.next_version, join_s=join_s
        )
        self.on_line(
            f"{self.name}: joined run {info.run_id} in {1000 * join_s:.0f} ms ({len(self.data)} "
            f"examples); next round {info.next_version + 1} of {self.options.settings.rounds}"
        )
        return info.next_version

    # -- rounds -----------------------------------------------------------------------------

    def _get_global(self, version: int) -> GlobalView:
        """Block until the PS hands out the model for ``version`` (or says why not)."""
        assert self.link is not None and self.info is not None
        return self.link.get_global(
            self.options.worker_id,
            version,
            self.manifest,
            seat_token=self.token,
            timeout_s=self.info.round_deadline_s + 120.0,
        )

    def _ask_ahead(self, version: int) -> None:
        """Ask for model ``version`` now, in the background, before this round's update is in.

        The request then waits at the PS, which streams the model the moment the round opens,
        instead of after this worker has heard its update was accepted and asked anew: that
        exchange would sit on the round's critical path whenever this worker is the last.
        """
        self._next = (version, self._ahead.submit(self._get_global, version))

    def _take_next(self, version: int) -> GlobalView | None:
        """Return the answer asked for ahead, if it is for ``version`` (raising its error)."""
        ahead, self._next = self._next, None
        if ahead is None:
            return None
        asked, future = ahead
        if asked != version:  # never happens in the loop below; kept to be safe
            self._settle(future)
            return None
        return future.result()

    def _drop_next(self) -> None:
        """Forget a request asked ahead (its channel is being closed, so it ends)."""
        ahead, self._next = self._next, None
        if ahead is not None:
            self._settle(ahead[1])

    @staticmethod
    def _settle(future: Future[GlobalView]) -> None:
        with contextlib.suppress(Exception):
            future.result()

    def run(self) -> GlobalView:
        s = self.options.settings
        version = self.connect(self.options.wait_for_server_s)
        while True:
            assert self.link is not None and self.info is not None
            started = time.perf_counter()
            try:
                view = self._take_next(version) or self._get_global(version)
            except ChannelError as exc:
                version = self._reconnect(exc)
                continue
            if view.state == "waiting":
                continue
            if view.state == "stopped":
                raise ProtocolError(
                    f"{self.name}: the PS stopped training (or refused this worker): {view.reason}"
                )
            if view.state == "done":
                return view
            assert view.values is not None
            fetched = time.perf_counter()
            secure: dict[str, Any] = {}
            prepared: _Prepared | SubmitResult | None = None
            if self.options.secure_aggregation:
                try:  # stages 1 and 2 before training: the kill point "after masking set up"
                    prepared = self._prepare_secure(view, secure)
                except ChannelError as exc:
                    version = self._reconnect(exc)
                    continue
            result = self._train(view.version, view.values)
            trained = time.perf_counter()
            self._ask_ahead(view.version + 1)
            try:
                if isinstance(prepared, SubmitResult):
                    answer = prepared  # this worker sits the round out; nothing is sent
                elif prepared is not None:
                    answer = self._submit_masked(view, result, prepared, secure)
                else:
                    answer = self._send(view.version, result.values, result)
            except ChannelError as exc:
                version = self._reconnect(exc)
                continue
            if answer.stopped:
                raise ProtocolError(f"{self.name}: the PS stopped training: {answer.reason}")
            done = time.perf_counter()
            elapsed = done - started
            self.metrics.write(
                "round",
                round=view.version + 1,
                train_loss=result.loss,
                train_s=result.seconds,
                iteration_s=elapsed,
                fetch_s=fetched - started,  # includes waiting for the round to open
                submit_s=done - trained,
                examples=result.examples,
                steps=result.steps,
                accepted=answer.accepted,
                reason=answer.reason,
                **secure,
            )
            if s.aggregation is Aggregation.REFERENCE:
                # The reference system's log line, so runs can be compared line by line.
                self.on_line(
                    f"step: {view.version + 1:d}, loss: {result.loss:f}, iter time: {elapsed:.3f}"
                )
            else:
                self.on_line(
                    f"{self.name}: round {view.version + 1}/{s.rounds}: train loss "
                    f"{result.loss:.4f} ({result.seconds:.2f} s, {result.steps} steps)"
                    + ("" if answer.accepted else f"; refused: {answer.reason}")
                )
            version = view.version + 1

    def _send(
        self,
        version: int,
        values: F32 | U32,
        result: LocalResult,
        *,
        secagg_tag: RoundTag | None = None,
    ) -> SubmitResult:
        """Stream ``values`` as this worker's update on ``version`` (masked with a tag)."""
        assert self.link is not None
        return self.link.submit(
            self.options.worker_id,
            version,
            values,
            seat_token=self.token,
            num_examples=result.examples,
            train_loss=result.loss,
            train_seconds=result.seconds,
            manifest_digest=self.manifest_digest,
            secagg_tag=secagg_tag,
        )

    def _train(self, version: int, values: F32) -> LocalResult:
        """Train on ``version``, or return the result already trained on it.

        A resumed round re-sends the same masked update; training is deterministic, so this
        only saves time.
        """
        if self._trained is not None and self._trained[0] == version:
            return self._trained[1]
        result = self.trainer.train(version, values)
        self._trained = (version, result)
        return result

    def _secagg_worker(self, params: Params, tag: RoundTag) -> SecAggWorker:
        """Return the run's protocol state machine, renewed when the session or parameters change.

        A new object keeps the unmask ledger of the session (from memory, or sealed from before
        a restart); a new session (a new run) starts with an empty one, this module's ledger
        of unmasked updates still refusing a second unmasking of the same update.
        """
        current = self._secagg
        if current is not None and current.session in (None, tag.session):
            if current.params == params:
                return current
            core: bytes | None = current.ledger_bytes()
        else:
            assert self.ledger is not None
            core = self.ledger.core
            if core is not None and json.loads(core).get("session") != tag.session.hex():
                core = None
        self._secagg = SecAggWorker(
            worker_id=self.options.worker_id, params=params, ledger=core, consistency=True
        )
        return self._secagg

    def _prepare_secure(self, view: GlobalView, record: dict[str, Any]) -> _Prepared | SubmitResult:
        """Stages 1 and 2 of the round: advertise keys, check the roster, share, get shares.

        A refusal (by the PS, or by this worker of what the PS sent) skips the round: nothing
        is sent in the clear, and the round goes on without this worker.
        """
        assert self.link is not None and self.info is not None
        if view.secagg is None:
            return SubmitResult(
                False,
                reason="the PS sent a round without secure aggregation; not contributing to it",
            )
        started = time.perf_counter()
        bytes_before = self.link.secagg_bytes
        tag, params = view.secagg
        me, link = self.options.worker_id, self.link
        call = self._secagg_call()
        try:
            sa = self._secagg_worker(params, tag)
            weight = planned_weight(self.options.settings, len(self.data))
            advert = sa.advertise(tag)
            reply = link.secagg(me, tag, advert=advert_to_proto(advert, weight), **call)
            roster = {a.worker_id: a for a in reply.roster}
            mine = roster.get(me)
            if (
                len(roster) != len(reply.roster)
                or mine is None
                or advert_from_proto(mine, tag) != advert
                or mine.weight != weight
                or mine.identity not in self._mine
            ):
                raise ProtocolError(
                    f"{self.name}: the roster names a worker twice, or its advert of this worker "
                    "is missing or altered (keys, weight, or the RA-TLS identity it came over)"
                )
            total = sum(a.weight for a in reply.roster)
            bundle = sa.share_keys(tag, [advert_from_proto(a, tag) for a in reply.roster])
            reply = link.secagg(me, tag, bundle=peer_bytes(bundle.ciphertexts), **call)
            delivered = peer_map(reply.delivery, what="share delivery")
        except ProtocolError as exc:
            return SubmitResult(False, reason=str(exc))
        finally:
            record["secagg_setup_s"] = time.perf_counter() - started
        self.on_line(
            f"{self.name}: round {view.version + 1}: keys shared with {len(delivered)} "
            "neighbours; training"
        )
        return _Prepared(tag, params, sa, weight, total, delivered, bytes_before)

    def _secagg_call(self) -> dict[str, Any]:
        assert self.info is not None
        return {"seat_token": self.token, "timeout_s": self.info.round_deadline_s + 120.0}

    def _submit_masked(
        self, view: GlobalView, result: LocalResult, prepared: _Prepared, record: dict[str, Any]
    ) -> SubmitResult:
        """Stages 3 to 5: mask and send the update, confirm the survivors, answer."""
        started = time.perf_counter()
        try:
            return self._mask_and_unmask(view, result, prepared, record)
        except ProtocolError as exc:
            return SubmitResult(False, reason=str(exc))
        finally:
            record["secagg_s"] = time.perf_counter() - started

    def _mask_and_unmask(
        self, view: GlobalView, result: LocalResult, p: _Prepared, record: dict[str, Any]
    ) -> SubmitResult:
        assert self.link is not None and view.values is not None and self.ledger is not None
        me, link, tag, sa = self.options.worker_id, self.link, p.tag, p.worker
        if result.examples != p.weight:
            raise ProtocolError(
                f"{self.name}: trained on {result.examples} examples, advertised {p.weight}"
            )
        update = weighted_update(
            result.values,
            view.values,
            weight=p.weight,
            total=p.total,
            gradient=self.options.settings.aggregation is Aggregation.REFERENCE,
        )
        record["clipped"] = int(np.count_nonzero(np.abs(update) > p.params.clip))
        masking = time.perf_counter()
        masked = sa.masked_input(tag, p.delivered, update)
        record["mask_s"] = time.perf_counter() - masking
        answer = self._send(view.version, masked.values, result, secagg_tag=tag)
        if not answer.accepted:
            return answer
        call = self._secagg_call()
        reply = link.secagg(me, tag, unmask=pb.SecAggPoll(), **call)
        request = UnmaskRequest(
            tag,
            frozenset(reply.unmask_request.survivors),
            frozenset(reply.unmask_request.dropped),
        )
        tags = sa.confirm(request)
        reply = link.secagg(me, tag, confirm=peer_bytes(tags), **call)
        sa.check_confirmations(request, peer_map(reply.confirmations, what="confirmations"))
        update_key = UpdateLedger.update_digest(view.version, result.values)
        self.ledger.check(update_key, request)
        response = sa.unmask(request)
        self.ledger.record(update_key, request, sa.ledger_bytes())
        self._save_ledger()  # before the answer leaves
        shares = pb.SecAggAnswer(
            seed_shares=peer_bytes(response.seed_shares).items,
            key_shares=peer_bytes(response.key_shares).items,
        )
        link.secagg(me, tag, answer=shares, **call)
        record["survivors"] = sorted(request.survivors)
        # Protocol messages of stages 1, 2, 4 and 5 (the masked vector is the upload).
        record["secagg_bytes"] = link.secagg_bytes - p.bytes_before
        return answer

    def _reconnect(self, exc: ChannelError) -> int:
        wait_s = self.options.wait_for_server_s
        if wait_s <= 0:
            raise exc
        self.on_line(f"{self.name}: lost the PS ({exc}); reconnecting for up to {wait_s:g} s")
        self.metrics.write("reconnecting", reason=str(exc))
        return self.connect(wait_s)

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        self._drop_next()
        self._ahead.shutdown(wait=True)
        self.metrics.close()


def run_worker(
    options: WorkerOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> GlobalView:
    """Read the shard, attest the PS, check its claims, and train until the PS is done.

    Returns the PS's final answer (its last evaluation, where it sealed the model).

    Raises
    ------
    AttestationError
        If the PS's evidence fails this worker's policy, or its claimed settings, manifest or
        release list are not this worker's.
    ConfigError
        If the shard is unusable.
    ProtocolError
        If the PS refuses this worker or stops training.
    ChannelError
        If the PS cannot be reached (within ``--wait-for-server``).
    """
    worker = _Worker(options, tee, on_line)
    try:
        final = worker.run()
    finally:
        worker.close()
    e = final.evaluation
    accuracy = f"test accuracy {e.accuracy:.4f} (round {e.round})" if e is not None else ""
    on_line(f"worker {options.worker_id}: training done; the PS reports {accuracy}")
    return final

"""Run a parameter server or a worker as a whole process: TEE, RA-TLS, keys, sealing, metrics.

The wiring, and nothing else: the protocol lives in :mod:`.server` and :mod:`.worker`, the
mathematics in :mod:`.algorithm`, and the TEE (evidence, policy, sealing keys) in the
:class:`~sealfl.runtime.PartyRuntime` each party is given. The PS makes its Paillier key pair
in its TEE (or restores it from its sealed checkpoint) and binds the public key's hash into its
RA-TLS certificate; a worker verifies the PS's evidence against its policy, then checks that
binding before it uses the key. With a release list, the PS also writes the trained model in a
release envelope that only the listed recipients can open, and its certificate carries the
list's digest for the workers to see.

Every option is checked before anything is created: a bad ``--listen`` or ``--key-bits``, a
port in use, an unusable CSV or a checkpoint that does not match exits 2 with one line and no
files. While training, Ctrl-C or SIGTERM on the PS stops it cleanly (:func:`operator_signals`):
the workers are told "stopped by the operator" at once and the state is checkpointed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from sealfl._files import make_directory, write_atomic
from sealfl.data import Dataset, read_fate_csv
from sealfl.errors import AttestationError, ChannelError, ConfigError, SealError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.admission import Admission
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_LABEL,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from sealfl.fl.homo_lr.datacheck import check_training_data
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.messages import evaluation_to_proto, settings_to_proto
from sealfl.fl.homo_lr.peers import PARTY_NAME_CLAIM, Peer, check_party_name, peer_from_certificate
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.protos import homo_lr_pb2_grpc as pb_grpc
from sealfl.fl.homo_lr.reach import check_can_listen, wait_for_tls_server
from sealfl.fl.homo_lr.server import (
    JoinInfo,
    ParameterServer,
    SavedModel,
    ServerSettings,
    TrainingResult,
)
from sealfl.fl.homo_lr.service import GrpcPsLink, HomoLrService, peer_of_call
from sealfl.fl.homo_lr.worker import Worker, WorkerResult
from sealfl.he import EncryptedVector
from sealfl.net import SecureChannel, SecureServer, open_secure_channel, refusal_reporter
from sealfl.runtime import RELEASE_LIST_CLAIM, PartyRuntime, check_address
from sealfl.seal import SealingKey, read_sealed, write_sealed
from sealfl.seal.release import write_release
from sealfl.tee import VerifiedPeer, measure_code

PUBKEY_HASH_CLAIM = "paillier-pubkey-hash"
"""RA-TLS claim in which the PS binds SHA-256 of its serialised Paillier public key."""

MODEL_LABEL = "homo-lr/model"
"""Label of the sealed model file (authenticated; ``read_sealed`` can insist on it)."""
SEAT_LABEL = "homo-lr/seat"
"""Label of a worker's sealed seat file (and of the sealing key it is sealed with)."""

_MAX_HANDLER_THREADS = 256
"""The PS's gRPC handler threads at most (the service listener admits 256 calls at once)."""

UINT32_MAX = 2**32 - 1
"""Largest worker id or iteration count the protocol's messages carry."""
PAILLIER_KEY_BITS = (1024, 2048, 3072)
"""The modulus sizes :func:`sealfl.he.generate_keypair` makes (checked before anything starts)."""

MODEL_FILE = "homo_lr_model.sealed"
"""The sealed model, in the PS's ``--out`` directory."""
RELEASE_FILE = "homo_lr_model.release"
"""The model in a release envelope for the PS's release list (only when it has one)."""
PS_METRICS_FILE = "ps_metrics.jsonl"
"""The PS's JSON-lines metrics, in its ``--out`` directory."""
ADDRESS_FILE = "ps.address"
"""Written into ``--out`` once the PS listens: its front-door address (readiness signal)."""

EXIT_STOPPED_BY_OPERATOR = 130
"""The PS's exit status after Ctrl-C or SIGTERM (as a shell reports an interrupted command)."""


def read_binary_csv(path: Path) -> Dataset:
    """Read a FATE CSV whose labels must be 0 or 1, as logistic regression needs.

    Raises
    ------
    ConfigError
        If the file is unusable (see :func:`sealfl.data.read_fate_csv`) or a label is neither
        0 nor 1 (for example the -1/1 convention), naming the first such row.
    """
    data = read_fate_csv(path, require_label=True)
    bad = np.flatnonzero((data.labels() != 0) & (data.labels() != 1))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(
            f"{path}: column 'y': expected labels 0 or 1, got {int(data.labels()[i])} in the row "
            f"with id {int(data.ids[i])} ({bad.size} such rows)"
        )
    return data


def role_measurement(role: str) -> bytes:
    """Return the simulated measurement of a homo-lr party (``"ps"`` or ``"worker"``).

    The measurement covers sealfl's code and the role, so a policy can trust the PS code for
    the PS and the worker code for workers, and any change to either shows.
    """
    return measure_code({"workload": "homo-lr", "role": role})


@dataclass(frozen=True, kw_only=True)
class PsOptions:
    """Options of ``sealfl homo-lr ps``, all checked on construction (nothing is created).

    Parameters
    ----------
    hp
        The federation's training settings: the PS refuses workers that declare others.
    service_listen
        ``host:port`` of the mutual-TLS listener the workers train over (default: the front
        door's host and a free port); give it when a firewall opens fixed ports only.
    checkpoint_every
        Seal the state every this many iterations (and at any stop); 0 turns checkpoints off.
    resume
        Continue from the checkpoint in ``out_dir``.
    admit
        The admitted-workers list (:mod:`.admission`), beside the measurement policy.
    fallback_dir
        Where the model goes if ``out_dir`` cannot be written at the end (default: a new
        directory under the system's temporary directory).

    Raises
    ------
    ConfigError
        Naming the option of the first value out of range.
    """

    worker_num: int
    validate_set: Path
    hp: Hyperparameters = field(default_factory=Hyperparameters)
    listen: str = "127.0.0.1:50070"
    service_listen: str | None = None
    key_bits: int = 2048
    out_dir: Path = Path("homo-lr-out")
    min_workers: int | None = None
    round_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    checkpoint_every: int = 10
    resume: bool = False
    admit: Path | None = None
    fallback_dir: Path | None = None
    cores: int | None = None

    def __post_init__(self) -> None:
        _check_cores(self.cores)
        check_address(self.listen, where="--listen")
        if self.service_listen is not None:
            check_address(self.service_listen, where="--service-listen")
        if self.key_bits not in PAILLIER_KEY_BITS:
            raise ConfigError(
                f"--key-bits: expected one of {', '.join(map(str, PAILLIER_KEY_BITS))}, "
                f"got {self.key_bits}"
            )
        if self.worker_num > UINT32_MAX:
            raise ConfigError(f"--worker-num must be at most {UINT32_MAX}, got {self.worker_num}")
        if self.hp.iterations > UINT32_MAX:
            raise ConfigError(f"--epochs must be at most {UINT32_MAX}, got {self.hp.iterations}")
        for name, value in (
            ("--round-deadline", self.round_deadline_s),
            ("--join-deadline", self.join_deadline_s),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        self.server_settings()  # counts and the rest
        _check_directory(self.out_dir, where="--out")
        if self.fallback_dir is not None:
            _check_directory(self.fallback_dir, where="--fallback-dir")

    def server_settings(self) -> ServerSettings:
        """Return the core's settings.

        Raises
        ------
        ConfigError
            If a count is out of range.
        """
        return ServerSettings(
            worker_num=self.worker_num,
            min_workers=self.worker_num if self.min_workers is None else self.min_workers,
            hp=self.hp,
            round_deadline_s=self.round_deadline_s,
            join_deadline_s=self.join_deadline_s,
            checkpoint_every=self.checkpoint_every,
        )


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """Options of ``sealfl homo-lr worker``.

    Parameters
    ----------
    wait_for_server_s
        How long to wait for the PS to accept connections, at the start and whenever the
        worker loses it (a PS restarted with ``--resume``); 0 gives up at once.
    seat_file
        Where this worker keeps its seat token, sealed to its TEE, so that a restart takes its
        seat back (:mod:`.seats`).
    name
        This worker's name, claimed in its attested certificate (``party-name``), for a PS
        whose admitted-workers list names workers.

    Raises
    ------
    ConfigError
        If the id or the iteration count does not fit the protocol's 32-bit fields, an address
        or a name is malformed, or a count is out of range.
    """

    train_set: Path
    worker_id: int
    server: str
    hp: Hyperparameters
    metrics_path: Path | None = None
    max_wait_s: float = 900.0
    wait_for_server_s: float = 0.0
    seat_file: Path | None = None
    name: str | None = None
    cores: int | None = None

    def __post_init__(self) -> None:
        _check_cores(self.cores)
        # Both travel as uint32 protobuf fields, which would refuse them with a bare ValueError.
        if not 0 <= self.worker_id <= UINT32_MAX:
            raise ConfigError(f"--id must be between 0 and {UINT32_MAX}, got {self.worker_id}")
        if self.hp.iterations > UINT32_MAX:
            raise ConfigError(f"--epochs must be at most {UINT32_MAX}, got {self.hp.iterations}")
        check_address(self.server, where="--server")
        if not (math.isfinite(self.wait_for_server_s) and self.wait_for_server_s >= 0):
            raise ConfigError(
                f"--wait-for-server must be 0 or a positive number of seconds, "
                f"got {self.wait_for_server_s}"
            )
        if self.name is not None:
            check_party_name(self.name)
        if self.seat_file is not None and self.seat_file.is_dir():
            raise ConfigError(f"--seat-file {self.seat_file}: is a directory, expected a file")


def _check_cores(cores: int | None) -> None:
    # Checked here: the Paillier code would refuse it only at the first encryption.
    if cores is not None and cores < 1:
        raise ConfigError(f"--cores must be at least 1, got {cores}")


def _check_directory(path: Path, *, where: str) -> None:
    """Refuse a directory path that names a file, or lies under one (it could never be made)."""
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"lies under the file {part}"
                raise ConfigError(f"{where} {path}: {what}, expected a directory")
            return


# ---- the parameter server ---------------------------------------------------------------


def run_parameter_server(
    options: PsOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> TrainingResult:
    """Make (or restore) the key pair in the TEE, serve the workers, train, and seal the model.

    Raises
    ------
    ConfigError
        If the validation set, an option, a listen address or the checkpoint is unusable;
        raised before any file is created.
    SealError
        If ``--resume`` finds a checkpoint sealed by another TEE identity, or altered.
    """
    validation = read_binary_csv(options.validate_set)
    settings = options.server_settings()
    admission = Admission.load(options.admit) if options.admit is not None else None
    check_can_listen(options.listen, where="--listen")
    if options.service_listen is not None:
        check_can_listen(options.service_listen, where="--service-listen")
    out = options.out_dir
    checkpoint_path = out / CHECKPOINT_FILE
    sealing_key = tee.sealing_key(MODEL_LABEL)
    checkpoint_key = None
    if options.resume or options.checkpoint_every:
        checkpoint_key = tee.sealing_key(CHECKPOINT_LABEL)
    resume = None
    if options.resume:
        assert checkpoint_key is not None
        resume = load_checkpoint(checkpoint_path, checkpoint_key)
        resume.check_matches(
            hp=options.hp,
            feature_names=validation.feature_names,
            worker_num=settings.worker_num,
            min_workers=settings.min_workers,
            source=str(checkpoint_path),
        )
    # Everything is checked: from here on, files are made.
    make_directory(out, what="--out directory")
    metrics = MetricsLog(out / PS_METRICS_FILE, party="ps")
    try:
        return _serve(
            options, tee, validation, settings, admission, resume, metrics, on_line,
            keys=(sealing_key, checkpoint_key),
        )  # fmt: skip
    finally:
        metrics.close()


def _serve(
    options: PsOptions,
    tee: PartyRuntime,
    validation: Dataset,
    settings: ServerSettings,
    admission: Admission | None,
    resume: Checkpoint | None,
    metrics: MetricsLog,
    on_line: Callable[[str], None],
    *,
    keys: tuple[SealingKey, SealingKey | None],
) -> TrainingResult:
    sealing_key, checkpoint_key = keys
    out = options.out_dir
    checkpoint_path = out / CHECKPOINT_FILE
    if resume is not None:
        crypto = PaillierServerCrypto.from_private_key_bytes(
            resume.private_key, cores=options.cores
        )
        made = f"{crypto.public_key.bits}-bit Paillier key restored from the sealed checkpoint"
    else:
        crypto = PaillierServerCrypto.generate(options.key_bits, cores=options.cores)
        made = f"{options.key_bits}-bit Paillier key made in the TEE"
    key_hash = hashlib.sha256(crypto.public_key_bytes()).digest()
    credentials = tee.credentials(claims={PUBKEY_HASH_CLAIM: key_hash})
    on_line(
        f"PS: {made}; public key sha256 {key_hash.hex()[:16]}… bound into the RA-TLS certificate"
    )
    on_line(f"PS: training settings {options.hp.describe()}; workers must declare the same")
    if admission is not None:
        on_line(f"PS: admitting only the {len(admission.entries)} workers of {admission.source}")

    refused = refusal_reporter(
        on_line, lambda detail: metrics.write("enrolment_refused", detail=detail), party="PS"
    )

    def verify_worker(cert_pem: bytes) -> VerifiedPeer:
        peer = tee.verify_peer(cert_pem)
        if admission is not None:  # beside the policy: who, once the policy said what code
            admission.check_peer(peer_from_certificate(cert_pem, peer.claims))
        return peer

    server: SecureServer[VerifiedPeer] = SecureServer(
        credentials=credentials,
        peer_verifier=verify_worker,
        address=options.listen,
        service_address=options.service_listen,
        on_refusal=refused,
        disclose_refusal_reasons=tee.disclose_refusals,
        # A worker's GetModel waits in a handler thread until the next model (the long poll):
        # with fewer threads than workers, the last workers' submissions queued behind those
        # waits until their poll ended, 10 s (issue 16: 3 of 40 rounds at 16 workers). Room
        # for every worker's call, one abandoned call each (a retry) and a few more.
        max_workers=min(2 * options.worker_num + 4, _MAX_HANDLER_THREADS),
        # Past the certificate's hour: a new one with the same claims, handed over signed.
        renew=lambda: tee.credentials(claims={PUBKEY_HASH_CLAIM: key_hash}),
    )

    def identify(context: grpc.ServicerContext) -> Peer:
        try:
            claims = server.identity_of(context).claims
        except ChannelError:  # not enrolled: the per-call guard refuses such calls anyway
            claims = {}
        return peer_of_call(context, claims)

    if tee.release is not None:
        on_line(f"PS: the trained model will be released to {tee.release.describe()}")

    def save(checkpoint: Checkpoint) -> None:
        assert checkpoint_key is not None
        save_checkpoint(checkpoint_path, checkpoint, checkpoint_key)

    def seal(result: TrainingResult) -> SavedModel:
        return _seal_model(
            result, validation.feature_names, tee, sealing_key, options, session, on_line
        )

    ps: ParameterServer[EncryptedVector] = ParameterServer(
        crypto=crypto,
        validation=(validation.X, validation.labels().astype(np.float64)),
        feature_names=validation.feature_names,
        settings=settings,
        metrics=metrics,
        on_line=on_line,
        seal_model=seal,
        save_checkpoint=save if checkpoint_key is not None and options.checkpoint_every else None,
        admission=admission,
        resume=resume,
    )
    session = ps.session_id
    server.add_servicer(pb_grpc.add_HomoLrServicer_to_server, HomoLrService(ps, identify=identify))
    with operator_signals(ps.stop):
        try:
            address = server.start()
        except ChannelError as exc:  # the port was taken after the check
            raise ConfigError(f"--listen {options.listen}: cannot listen there ({exc})") from None
        try:
            write_atomic(out / ADDRESS_FILE, f"{address}\n".encode(), mode=0o644)
            if resume is not None:
                on_line(
                    f"PS: resumed {resume.describe()} from {checkpoint_path}; listening on "
                    f"{address}; waiting for the workers to rejoin"
                )
                metrics.write("resumed", session=session, next_iteration=resume.next_iteration)
            else:
                on_line(f"PS: listening on {address}; waiting for {options.worker_num} workers")
            metrics.write(
                "listening",
                address=address,
                service_address=server.service_address,
                worker_num=options.worker_num,
            )
            result = ps.run()
            # Completed or stopped, let the workers fetch the outcome (bounded by a grace period).
            ps.wait_for_final_fetches()
        finally:
            server.stop(grace=1.0)
    if not result.completed and ps.save_checkpoint is not None and checkpoint_path.is_file():
        on_line(
            f"PS: the state after {result.iterations_done} iterations is sealed at "
            f"{checkpoint_path}; run the same command with --resume to continue"
        )
    return result


def exit_code(result: TrainingResult) -> int:
    """Return the PS's exit status: 0 when the model was trained and saved.

    130 after Ctrl-C or SIGTERM; 1 when training stopped otherwise, or the trained model could
    not be written anywhere.
    """
    if result.completed:
        return 0 if result.saved is None or result.saved.path else 1
    return EXIT_STOPPED_BY_OPERATOR if result.stopped_by_operator else 1


@contextlib.contextmanager
def operator_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """While active, Ctrl-C and SIGTERM call ``stop("stopped by the operator (SIGINT)")``.

    The PS then tells every worker why within its next reply, instead of vanishing and leaving
    them to time out on "connection refused". A second signal ends the process at once. Only
    the main thread can receive signals: elsewhere (a PS run by a test or an embedding
    program) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        if received:  # the second one: no more grace
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        reason = f"stopped by the operator ({signal.Signals(signum).name})"
        # stop() takes the PS's lock, which this (main) thread may hold right now.
        threading.Thread(target=stop, args=(reason,), name="operator-stop", daemon=True).start()

    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handle) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _seal_model(
    result: TrainingResult,
    feature_names: tuple[str, ...],
    tee: PartyRuntime,
    sealing_key: SealingKey,
    options: PsOptions,
    session: str,
    on_line: Callable[[str], None],
) -> SavedModel:
    """Seal the model into ``--out``, or a fallback directory if that fails; say where.

    The trained model must not be lost because its directory vanished or filled up: the
    fallback is ``--fallback-dir`` or a new directory under the system's temporary directory.
    """
    model = _model_bytes(result, feature_names)
    fallback = options.fallback_dir or Path(tempfile.gettempdir()) / f"sealfl-homo-lr-{session}"
    primary = (options.out_dir / MODEL_FILE).resolve()

    def write(directory: Path) -> None:
        write_sealed(directory / MODEL_FILE, model, sealing_key, label=MODEL_LABEL)
        if tee.release is not None:
            write_release(directory / RELEASE_FILE, model, tee.release, label=MODEL_LABEL)

    directory, failures = _write_first((options.out_dir, fallback), write)
    if directory is None:
        note = f"the PS could not write the trained model anywhere: {'; '.join(failures)}"
        on_line(f"PS: {note}")
        return SavedModel(path="", note=note)
    path = (directory / MODEL_FILE).resolve()
    note = ""
    if failures:
        note = (
            f"the model could not be written to {primary} ({failures[0]}); it is sealed at "
            f"{path} instead"
        )
        on_line(f"PS: {note}")
    on_line(f"PS: trained model sealed at {path}")
    if tee.release is not None:
        on_line(
            f"PS: release envelope for {tee.release.describe()} at "
            f"{(directory / RELEASE_FILE).resolve()}"
        )
    return SavedModel(path=str(path), note=note)


def _write_first(
    directories: Sequence[Path], write: Callable[[Path], None]
) -> tuple[Path | None, list[str]]:
    """Write into the first directory that takes it; return it and why the others failed.

    The first directory is used as it is (one that vanished is not made again: it may have
    been an unmounted volume); later ones are created, private to this user.
    """
    failures: list[str] = []
    for index, directory in enumerate(directories):
        try:
            if index > 0:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write(directory)
        except (ConfigError, SealError, OSError) as exc:
            failures.append(str(exc))
            continue
        return directory, failures
    return None, failures


def _model_bytes(result: TrainingResult, feature_names: tuple[str, ...]) -> bytes:
    model = pb.TrainedModel(
        weights=[float(v) for v in result.weights],
        feature_names=list(feature_names),
        iterations_done=result.iterations_done,
        session_id=result.session_id,
        contributors=list(result.contributors),
    )
    if result.settings is not None:
        model.settings.CopyFrom(settings_to_proto(result.settings, len(feature_names)))
    if result.evaluation is not None:
        model.evaluation.CopyFrom(evaluation_to_proto(result.evaluation))
    return model.SerializeToString()


# ---- a worker ---------------------------------------------------------------------------


def run_worker(
    options: WorkerOptions,
    tee: PartyRuntime,
    *,
    on_line: Callable[[str], None] = print,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> WorkerResult:
    """Check the data, attest the PS, check its key binding, and train to the end.

    Raises
    ------
    AttestationError
        If the PS's evidence fails this worker's policy, or its key binding does not verify.
    ConfigError
        If the training set is unusable (naming file and column), or ``--server`` is not a TLS
        server.
    ProtocolError
        If the PS refuses this worker or stops training.
    ChannelError
        If the PS cannot be reached (within ``--wait-for-server``).
    """
    data = read_binary_csv(options.train_set)
    check_training_data(data, options.train_set, options.hp)
    seat_key = tee.sealing_key(SEAT_LABEL) if options.seat_file is not None else None
    token = _load_seat_token(options, seat_key, on_line)
    claims = {PARTY_NAME_CLAIM: options.name.encode()} if options.name else None
    credentials = tee.credentials(claims=claims)

    def connect(wait_s: float) -> SecureChannel[VerifiedPeer]:
        wait_for_tls_server(options.server, wait_s=wait_s)
        return open_secure_channel(
            options.server,
            credentials=credentials,
            server_verifier=tee.verify_peer,
            renew=lambda: tee.credentials(claims=claims),  # runs longer than a certificate
        )

    channel = connect(options.wait_for_server_s)
    peer = channel.server_identity
    on_line(
        f"worker {options.worker_id}: PS at {options.server} attested "
        f"({peer.backend}, measurement {_short_measurement(peer)})"
    )
    release = peer.claims.get(RELEASE_LIST_CLAIM)
    if isinstance(release, bytes):
        on_line(
            f"worker {options.worker_id}: the PS will release the model to the list with "
            f"sha256 {release.hex()[:16]}…"
        )
    link = GrpcPsLink(channel, reconnect=connect)

    def open_key(public_key: bytes) -> PaillierWorkerCrypto:
        digest = hashlib.sha256(public_key).digest()
        try:
            link.channel.server_identity.require_claim(PUBKEY_HASH_CLAIM, digest)
        except AttestationError as exc:
            raise AttestationError(
                f"PS at {options.server}: its Paillier public key is not the one bound into its "
                f"attested RA-TLS certificate ({exc}); refusing to use it"
            ) from exc
        on_line(
            f"worker {options.worker_id}: PS key binding verified (sha256 {digest.hex()[:16]}…)"
        )
        return PaillierWorkerCrypto.from_public_key_bytes(public_key, cores=options.cores)

    def remember(info: JoinInfo) -> None:
        if seat_key is not None and options.seat_file is not None:
            _save_seat_token(options, seat_key, info, on_line)

    metrics = MetricsLog(options.metrics_path, party=f"worker-{options.worker_id}")
    worker = Worker(
        worker_id=options.worker_id,
        data=data,
        hp=options.hp,
        link=link,
        open_key=open_key,
        metrics=metrics,
        on_line=on_line,
        on_progress=on_progress,
        on_joined=remember,
        seat_token=token,
        reconnect_s=options.wait_for_server_s,
        max_wait_s=options.max_wait_s,
    )
    try:
        return worker.run()
    finally:
        link.close()
        metrics.close()


def _load_seat_token(
    options: WorkerOptions, key: SealingKey | None, on_line: Callable[[str], None]
) -> bytes:
    """Return the seat token sealed in ``--seat-file`` for this worker id, or ``b""``."""
    path = options.seat_file
    if key is None or path is None or not path.is_file():
        return b""
    try:
        ticket = pb.SeatTicket.FromString(read_sealed(path, key, label=SEAT_LABEL))
    except (ConfigError, SealError, ValueError) as exc:
        on_line(
            f"worker {options.worker_id}: cannot open the seat file {path} ({exc}); joining "
            "without a seat token"
        )
        return b""
    if ticket.worker_id != options.worker_id:
        on_line(
            f"worker {options.worker_id}: the seat file {path} is worker {ticket.worker_id}'s; "
            "joining without a seat token"
        )
        return b""
    return bytes(ticket.seat_token)


def _save_seat_token(
    options: WorkerOptions, key: SealingKey, info: JoinInfo, on_line: Callable[[str], None]
) -> None:
    assert options.seat_file is not None
    ticket = pb.SeatTicket(
        session_id=info.session_id, worker_id=options.worker_id, seat_token=info.seat_token
    )
    try:
        write_sealed(options.seat_file, ticket.SerializeToString(), key, label=SEAT_LABEL)
    except ConfigError as exc:
        on_line(
            f"worker {options.worker_id}: could not write the seat file ({exc}); a restart "
            "would not get this seat back"
        )


def _short_measurement(peer: VerifiedPeer) -> str:
    values = list(peer.measurements.values())
    return (values[0][:16] + "…") if values else "none"

"""Run a parameter server or a worker as a whole process: TEE, RA-TLS, keys, sealing, metrics.

The wiring, and nothing else: the protocol lives in :mod:`.server` and :mod:`.worker`, the
mathematics in :mod:`.algorithm`, and the TEE (evidence, policy, sealing keys) in the
:class:`~sealfl.runtime.PartyRuntime` each party is given. The PS makes its Paillier key pair
in its TEE and binds the public key's hash into its RA-TLS certificate; a worker verifies the
PS's evidence against its policy, then checks that binding before it uses the key. With a
release list, the PS also writes the trained model in a release envelope that only the listed
recipients can open, and its certificate carries the list's digest for the workers to see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sealfl._files import write_atomic
from sealfl.data import Dataset, read_fate_csv
from sealfl.errors import AttestationError, ConfigError
from sealfl.fl.homo_lr.algorithm import Hyperparameters
from sealfl.fl.homo_lr.encrypted import PaillierServerCrypto, PaillierWorkerCrypto
from sealfl.fl.homo_lr.metrics import MetricsLog
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.protos import homo_lr_pb2_grpc as pb_grpc
from sealfl.fl.homo_lr.server import ParameterServer, ServerSettings, TrainingResult
from sealfl.fl.homo_lr.service import GrpcPsLink, HomoLrService, settings_to_proto
from sealfl.fl.homo_lr.worker import Worker, WorkerResult
from sealfl.he import EncryptedVector
from sealfl.net import SecureServer, open_secure_channel
from sealfl.runtime import RELEASE_LIST_CLAIM, PartyRuntime
from sealfl.seal import write_sealed
from sealfl.seal.release import write_release
from sealfl.tee import VerifiedPeer, measure_code

PUBKEY_HASH_CLAIM = "paillier-pubkey-hash"
"""RA-TLS claim in which the PS binds SHA-256 of its serialised Paillier public key."""

MODEL_LABEL = "homo-lr/model"
"""Label of the sealed model file (authenticated; ``read_sealed`` can insist on it)."""

UINT32_MAX = 2**32 - 1
"""Largest worker id or iteration count the protocol's messages carry."""

MODEL_FILE = "homo_lr_model.sealed"
"""The sealed model, in the PS's ``--out`` directory."""
RELEASE_FILE = "homo_lr_model.release"
"""The model in a release envelope for the PS's release list (only when it has one)."""
PS_METRICS_FILE = "ps_metrics.jsonl"
"""The PS's JSON-lines metrics, in its ``--out`` directory."""
ADDRESS_FILE = "ps.address"
"""Written into ``--out`` once the PS listens: its front-door address (readiness signal)."""


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
    """Options of ``sealfl homo-lr ps``.

    Raises
    ------
    ConfigError
        If ``cores`` is below 1.
    """

    worker_num: int
    validate_set: Path
    listen: str = "127.0.0.1:50070"
    key_bits: int = 2048
    out_dir: Path = Path("homo-lr-out")
    min_workers: int | None = None
    round_deadline_s: float = 60.0
    join_deadline_s: float = 300.0
    cores: int | None = None

    def __post_init__(self) -> None:
        _check_cores(self.cores)


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """Options of ``sealfl homo-lr worker``.

    Raises
    ------
    ConfigError
        If the id or the iteration count does not fit the protocol's 32-bit fields, or
        ``cores`` is below 1.
    """

    train_set: Path
    worker_id: int
    server: str
    hp: Hyperparameters
    metrics_path: Path | None = None
    max_wait_s: float = 900.0
    cores: int | None = None

    def __post_init__(self) -> None:
        _check_cores(self.cores)
        # Both travel as uint32 protobuf fields, which would refuse them with a bare ValueError.
        if not 0 <= self.worker_id <= UINT32_MAX:
            raise ConfigError(f"--id must be between 0 and {UINT32_MAX}, got {self.worker_id}")
        if self.hp.iterations > UINT32_MAX:
            raise ConfigError(f"--epochs must be at most {UINT32_MAX}, got {self.hp.iterations}")


def _check_cores(cores: int | None) -> None:
    # Checked here: the Paillier code would refuse it only at the first encryption.
    if cores is not None and cores < 1:
        raise ConfigError(f"--cores must be at least 1, got {cores}")


def run_parameter_server(
    options: PsOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> TrainingResult:
    """Generate the key pair in the TEE, serve the workers, train, and seal the model.

    Raises
    ------
    ConfigError
        If the validation set or an option is unusable.
    ChannelError
        If the listen address cannot be bound.
    """
    validation = read_binary_csv(options.validate_set)
    settings = ServerSettings(
        worker_num=options.worker_num,
        min_workers=options.worker_num if options.min_workers is None else options.min_workers,
        round_deadline_s=options.round_deadline_s,
        join_deadline_s=options.join_deadline_s,
    )
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out / PS_METRICS_FILE, party="ps")
    crypto = PaillierServerCrypto.generate(options.key_bits, cores=options.cores)
    key_hash = hashlib.sha256(crypto.public_key_bytes()).digest()
    credentials = tee.credentials(claims={PUBKEY_HASH_CLAIM: key_hash})
    on_line(
        f"PS: {options.key_bits}-bit Paillier key made in the TEE; "
        f"public key sha256 {key_hash.hex()[:16]}… bound into the RA-TLS certificate"
    )

    def refused(refusal: object) -> None:
        on_line(f"PS: refused a party at enrolment: {refusal}")
        metrics.write("enrolment_refused", detail=str(refusal))

    server: SecureServer[VerifiedPeer] = SecureServer(
        credentials=credentials,
        peer_verifier=tee.verify_peer,
        address=options.listen,
        on_refusal=refused,
    )
    sealing_key = tee.sealing_key(MODEL_LABEL)
    if tee.release is not None:
        on_line(f"PS: the trained model will be released to {tee.release.describe()}")

    def seal(result: TrainingResult) -> str:
        path = (out / MODEL_FILE).resolve()
        model = _model_bytes(result, validation.feature_names)
        write_sealed(path, model, sealing_key, label=MODEL_LABEL)
        on_line(f"PS: trained model sealed at {path}")
        if tee.release is not None:
            envelope = (out / RELEASE_FILE).resolve()
            write_release(envelope, model, tee.release, label=MODEL_LABEL)
            on_line(f"PS: release envelope for {tee.release.describe()} at {envelope}")
        return str(path)

    ps: ParameterServer[EncryptedVector] = ParameterServer(
        crypto=crypto,
        validation=(validation.X, validation.labels().astype(np.float64)),
        settings=settings,
        metrics=metrics,
        on_line=on_line,
        seal_model=seal,
    )
    server.add_servicer(pb_grpc.add_HomoLrServicer_to_server, HomoLrService(ps))
    address = server.start()
    write_atomic(out / ADDRESS_FILE, f"{address}\n".encode(), mode=0o644)
    on_line(f"PS: listening on {address}; waiting for {options.worker_num} workers")
    metrics.write("listening", address=address, worker_num=options.worker_num)
    try:
        result = ps.run()
        # Completed or stopped, let the workers fetch the outcome (bounded by a grace period).
        ps.wait_for_final_fetches()
        return result
    finally:
        server.stop(grace=1.0)
        metrics.close()


def run_worker(
    options: WorkerOptions,
    tee: PartyRuntime,
    *,
    on_line: Callable[[str], None] = print,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> WorkerResult:
    """Attest the PS, check its key binding, and train on the encrypted model to the end.

    Raises
    ------
    AttestationError
        If the PS's evidence fails this worker's policy, or its key binding does not verify.
    ConfigError
        If the training set is unusable.
    ProtocolError
        If the PS refuses this worker or stops training.
    ChannelError
        If the PS cannot be reached.
    """
    data = read_binary_csv(options.train_set)
    metrics = MetricsLog(options.metrics_path, party=f"worker-{options.worker_id}")
    credentials = tee.credentials()
    channel = open_secure_channel(
        options.server, credentials=credentials, server_verifier=tee.verify_peer
    )
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

    def open_key(public_key: bytes) -> PaillierWorkerCrypto:
        digest = hashlib.sha256(public_key).digest()
        try:
            peer.require_claim(PUBKEY_HASH_CLAIM, digest)
        except AttestationError as exc:
            raise AttestationError(
                f"PS at {options.server}: its Paillier public key is not the one bound into its "
                f"attested RA-TLS certificate ({exc}); refusing to use it"
            ) from exc
        on_line(
            f"worker {options.worker_id}: PS key binding verified (sha256 {digest.hex()[:16]}…)"
        )
        return PaillierWorkerCrypto.from_public_key_bytes(public_key, cores=options.cores)

    worker = Worker(
        worker_id=options.worker_id,
        data=data,
        hp=options.hp,
        link=GrpcPsLink(channel),
        open_key=open_key,
        metrics=metrics,
        on_line=on_line,
        on_progress=on_progress,
        max_wait_s=options.max_wait_s,
    )
    try:
        return worker.run()
    finally:
        channel.close()
        metrics.close()


def _short_measurement(peer: VerifiedPeer) -> str:
    values = list(peer.measurements.values())
    return (values[0][:16] + "…") if values else "none"


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
        iteration, ev = result.evaluation
        model.evaluation.CopyFrom(
            pb.Evaluation(iteration=iteration, accuracy=ev.accuracy, loss=ev.loss)
        )
    return model.SerializeToString()

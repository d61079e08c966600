"""Joint prediction from the two sealed halves, over the same kind of channel as training.

Neither half predicts alone: the leader's needs the follower's activation for every row. Each
party opens its own sealed half with its own sealing key (a tampered half fails to open) and
checks it is the half the joint manifest names (one of another run is refused); both bind the
manifest's digest into their RA-TLS claims (``vfl-manifest``), so each knows the other serves
the same trained model. Then, as in training: PSI on the prediction rows, fresh certificates
claiming its transcript, and one ``Predict`` stream: HELLO, WELCOME (``total_steps`` = batches),
then per batch START(b) -> ACTIVATION(b) (checked like a training activation), and FINISH. The
leader writes each aligned row's class probabilities, and scores them when it has labels.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console

from sealfl._files import make_directory, write_atomic
from sealfl.errors import ChannelError, ConfigError, ProtocolError
from sealfl.fl.vfl.cut import wire_dtype
from sealfl.fl.vfl.export import (
    MANIFEST_FILE,
    check_half,
    half_file,
    half_label,
    manifest_digest,
    open_half,
    read_manifest,
)
from sealfl.fl.vfl.halves import FollowerHalf, LeaderHalf
from sealfl.fl.vfl.launch import (
    PSI_CLAIM,
    aligned_rows,
    aligning_psi_mode,
    connect_to_leader,
    follower_psi,
    missing_claims,
    parse_psi_mode,
    read_party,
    role_measurement,
)
from sealfl.fl.vfl.limits import check_count, check_seconds
from sealfl.fl.vfl.protos import vfl_pb2 as pb
from sealfl.fl.vfl.protos import vfl_pb2_grpc as pb_grpc
from sealfl.fl.vfl.service import VflService, open_stream
from sealfl.fl.vfl.split import Evaluation, scores
from sealfl.fl.vfl.stream import Duplex, Inbox, cut_message, cut_values, ids_digest, message_kind
from sealfl.net import SecureServer
from sealfl.psi import Mode, PsiServicer, PsiSettings, Role, add_psi_servicer
from sealfl.runtime import PartyRuntime, check_address
from sealfl.seal import write_sealed
from sealfl.tee import VerifiedPeer

__all__ = [
    "MANIFEST_CLAIM",
    "PREDICTIONS_FILE",
    "PREDICTIONS_LABEL",
    "SEALED_PREDICTIONS_FILE",
    "PredictOptions",
    "PredictResult",
    "predict_follower",
    "predict_leader",
    "run_local_prediction",
]

MANIFEST_CLAIM = "vfl-manifest"
"""RA-TLS claim of both parties at prediction: SHA-256 of the joint manifest."""
PREDICTIONS_FILE = "predictions.csv"
SEALED_PREDICTIONS_FILE = "predictions.sealed"
"""PSI mode enclave-only: the same CSV sealed under the leader's key (its ids are the
intersection, which operators must not see); open it inside the leader's enclave."""
PREDICTIONS_LABEL = "vfl/predictions"
_BATCH = 1024


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """Options of ``sealfl vfl predict`` (either role).

    Parameters
    ----------
    data
        This party's rows to score (a CSV with an id column; the leader's may have labels).
    half
        This party's sealed half (``vfl_<role>_half.sealed``).
    manifest
        The joint manifest of the run that trained both halves.
    address
        The leader listens here; the follower connects here.
    out_dir
        The leader writes ``predictions.csv`` here.
    label_column
        The leader's label column, if its rows are labelled (``""``: unlabelled).
    """

    role: str
    data: Path
    half: Path
    manifest: Path
    address: str
    out_dir: Path = Path("vfl-predict")
    psi_mode: str = "both"
    id_column: str = "id"
    label_column: str = "y"
    deadline_s: float = 60.0
    wait_for_leader_s: float = 0.0
    batch_size: int = _BATCH

    def __post_init__(self) -> None:
        if self.role not in ("leader", "follower"):
            raise ConfigError(f"--role: expected leader or follower, got {self.role!r}")
        check_address(self.address, where="--listen" if self.role == "leader" else "--leader")
        aligning_psi_mode(self.psi_mode)
        check_seconds(self.deadline_s, "--deadline")
        check_seconds(self.wait_for_leader_s, "--wait-for-leader", zero=True)
        check_count(self.batch_size, "--batch-size", low=1, high=1 << 20)


@dataclass(frozen=True)
class PredictResult:
    """The leader's predictions: where they went and, with labels, how good they are."""

    path: Path
    rows: int
    evaluation: Evaluation | None

    @property
    def auc(self) -> float:
        """Test AUC (NaN without labels or with more than two classes)."""
        return self.evaluation.auc if self.evaluation is not None else float("nan")

    @property
    def accuracy(self) -> float:
        """Accuracy (NaN without labels)."""
        return self.evaluation.accuracy if self.evaluation is not None else float("nan")


def _open_checked(options: PredictOptions, tee: PartyRuntime) -> tuple[Any, bytes]:
    """Open this party's half and check it against the manifest; return it and the manifest."""
    text, document = read_manifest(options.manifest)
    half = open_half(options.half, tee.sealing_key(half_label(options.role)), role=options.role)
    check_half(document, half, source=str(options.half))
    return half, text


def predict_leader(
    options: PredictOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> PredictResult:
    """Serve the follower for joint prediction; write and return the predictions.

    Raises
    ------
    SealError
        If the leader's half is tampered with, not this party's, or not the manifest's.
    ChannelError, ProtocolError
        If the follower does not come, or breaks the protocol, within the deadline.
    """
    opened, text = _open_checked(options, tee)
    settings = opened.settings
    half = LeaderHalf(settings)
    half.load_state(opened.values, opened.manifest)
    label = options.label_column or None
    data = read_party(
        options.data, settings, role="leader", id_column=options.id_column, label_column=label
    )
    claims = {MANIFEST_CLAIM: manifest_digest(text)}
    lifetime = timedelta(hours=1)
    server: SecureServer[VerifiedPeer] = SecureServer(
        credentials=tee.credentials(claims=claims, lifetime=lifetime),
        peer_verifier=tee.verify_peer,
        address=options.address,
        disclose_refusal_reasons=tee.disclose_refusals,
    )
    psi = PsiServicer(
        data.ids, role=Role.LEADER, settings=PsiSettings(mode=parse_psi_mode(options.psi_mode))
    )
    add_psi_servicer(server, psi)
    service = VflService(server.identity_of)
    server.add_servicer(pb_grpc.add_VflServicer_to_server, service)
    try:
        address = server.start()
        make_directory(options.out_dir, what="--out directory")
        write_atomic(options.out_dir / "leader.address", f"{address}\n".encode(), mode=0o644)
        on_line(
            f"leader: serving joint prediction on {address} (manifest sha256 "
            f"{claims[MANIFEST_CLAIM].hex()[:16]}…)"
        )
        result = psi.result(timeout_s=options.deadline_s)
        rows = aligned_rows(result, data.ids, role="leader")
        aligned = data.take(rows)
        claims[PSI_CLAIM] = result.transcript
        server.replace_credentials(tee.credentials(claims=claims, lifetime=lifetime))
        inbox = Inbox()
        service.predict.open(inbox, lambda peer: missing_claims(peer, claims, who="the follower"))
        probs = _serve_predictions(
            inbox, half, aligned.ids, aligned.X, options, settings.model.cut_width
        )
    finally:
        server.stop(grace=1.0)
    evaluation = scores(probs, aligned.labels()) if aligned.y is not None else None
    text = _predictions_csv(aligned.ids, probs)
    if result.mode is Mode.ENCLAVE_ONLY:
        # Its ids are the intersection, which this mode keeps inside the attested parties.
        path = options.out_dir / SEALED_PREDICTIONS_FILE
        write_sealed(path, text, tee.sealing_key(PREDICTIONS_LABEL), label=PREDICTIONS_LABEL)
    else:
        path = options.out_dir / PREDICTIONS_FILE
        write_atomic(path, text, mode=0o600)
    shown = (
        f"; AUC {evaluation.auc:.4f}, accuracy {evaluation.accuracy:.4f}"
        if evaluation is not None
        else ""
    )
    on_line(f"leader: {len(aligned.ids)} rows scored jointly, written to {path}{shown}")
    return PredictResult(path=path, rows=len(aligned.ids), evaluation=evaluation)


def _batches(n: int, size: int) -> list[npt.NDArray[np.int64]]:
    return [np.arange(start, min(start + size, n)) for start in range(0, n, size)]


def _serve_predictions(
    inbox: Inbox,
    half: LeaderHalf,
    ids: tuple[str, ...],
    x: npt.NDArray[Any],
    options: PredictOptions,
    width: int,
) -> npt.NDArray[np.float64]:
    batches = _batches(len(ids), options.batch_size)
    aligned = ids_digest(ids)
    dtype = wire_dtype(half.settings.train.wire_dtype)

    def receive(stream: Duplex | None) -> tuple[Duplex, Any]:
        deadline = time.monotonic() + options.deadline_s
        while True:
            event = inbox.get(deadline)
            if event is None:
                raise ChannelError(
                    f"leader: the follower sent nothing for joint prediction within "
                    f"{options.deadline_s:g} s"
                )
            if event.message is None:
                if stream is None or event.stream is stream:
                    raise ChannelError(f"leader: the follower's stream ended: {event.reason}")
                continue
            if stream is None or event.stream is stream:
                return event.stream, event.message

    stream, message = receive(None)
    if message_kind(message) != "hello" or message.hello.aligned_sha256 != aligned:
        stream.send(pb.LeaderMessage(stop=pb.Stop(reason="other aligned rows than the leader's")))
        stream.close()
        raise ProtocolError("the follower's aligned prediction rows differ from the leader's")
    stream.send(pb.LeaderMessage(welcome=pb.Welcome(total_steps=len(batches))))
    parts = []
    for b, rows in enumerate(batches):
        start = pb.Start(step=b, batch=len(rows), ids_sha256=ids_digest([ids[r] for r in rows]))
        stream.send(pb.LeaderMessage(start=start))
        _, message = receive(stream)
        kind = message_kind(message)
        if kind != "activation" or message.activation.step != b:
            reason = f"expected the activation of batch {b}, got {kind}; refused"
            stream.send(pb.LeaderMessage(stop=pb.Stop(reason=reason, refused=True)))
            stream.close()
            raise ProtocolError(reason)
        what = f"activation of prediction batch {b} from the follower"
        try:
            act = cut_values(
                message.activation.value, rows=len(rows), width=width, what=what, dtype=dtype
            )
        except ProtocolError as exc:
            stream.send(pb.LeaderMessage(stop=pb.Stop(reason=str(exc), refused=True)))
            stream.close()
            raise
        parts.append(half.predict_proba(x[rows], act))
    stream.send(pb.LeaderMessage(finish=pb.Finish(steps=len(batches))))
    stream.close()
    classes = half.settings.model.classes
    return np.concatenate(parts) if parts else np.zeros((0, classes))


def _predictions_csv(ids: tuple[str, ...], probs: npt.NDArray[np.float64]) -> bytes:
    header = "id," + ",".join(f"p{k}" for k in range(probs.shape[1]))
    lines = [header] + [
        f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in zip(ids, probs, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def predict_follower(
    options: PredictOptions, tee: PartyRuntime, *, on_line: Callable[[str], None] = print
) -> int:
    """Attest the leader, run the PSI and stream this half's activations; return rows sent.

    Raises
    ------
    SealError
        If the follower's half is tampered with, not this party's, or not the manifest's.
    AttestationError
        If the leader fails this party's policy or claims another manifest.
    ChannelError, ProtocolError
        If the leader cannot be reached or refuses.
    """
    opened, text = _open_checked(options, tee)
    settings = opened.settings
    half = FollowerHalf(settings)
    half.load_state(opened.values, opened.manifest)
    data = read_party(
        options.data, settings, role="follower", id_column=options.id_column, label_column=None
    )
    claims = {MANIFEST_CLAIM: manifest_digest(text)}
    channel = connect_to_leader(
        options.address, tee, claims, wait_s=options.wait_for_leader_s, expect=claims
    )
    result, aligned = follower_psi(channel, data, options.psi_mode)
    claims[PSI_CLAIM] = result.transcript
    channel = connect_to_leader(
        options.address, tee, claims, wait_s=options.deadline_s, expect=claims
    )
    inbox = Inbox()
    try:
        stream = open_stream(channel, inbox, method="Predict")
        stream.send(pb.FollowerMessage(hello=pb.Hello(aligned_sha256=ids_digest(aligned.ids))))
        sent = _answer_predictions(inbox, stream, half, aligned.ids, aligned.X, options)
    finally:
        channel.close()
    on_line(f"follower: sent the activations of {sent} aligned rows for joint prediction")
    return sent


def _answer_predictions(
    inbox: Inbox,
    stream: Duplex,
    half: FollowerHalf,
    ids: tuple[str, ...],
    x: npt.NDArray[Any],
    options: PredictOptions,
) -> int:
    sent = 0
    position = 0
    dtype = wire_dtype(half.settings.train.wire_dtype)
    while True:
        event = inbox.get(time.monotonic() + options.deadline_s)
        if event is None:
            raise ChannelError(f"follower: nothing from the leader within {options.deadline_s:g} s")
        if event.message is None:
            raise ChannelError(f"follower: the leader ended the prediction stream: {event.reason}")
        message = event.message
        kind = message_kind(message)
        if kind == "welcome":
            continue
        if kind == "stop":
            raise ProtocolError(f"the leader stopped the prediction: {message.stop.reason}")
        if kind == "finish":
            stream.close()
            return sent
        if kind != "start":
            raise ProtocolError(f"the leader sent {kind!r} during prediction")
        start = message.start
        rows = np.arange(position, position + start.batch)
        if rows.size == 0 or rows[-1] >= len(ids):
            raise ProtocolError(f"the leader's batch {start.step} runs past this side's rows")
        if start.ids_sha256 != ids_digest([ids[r] for r in rows]):
            raise ProtocolError(f"batch {start.step}: the leader's rows are not this side's")
        act = cut_message(half.embed(x[rows]), dtype)
        stream.send(pb.FollowerMessage(activation=pb.Activation(step=start.step, value=act)))
        position += start.batch
        sent += start.batch


def run_local_prediction(
    run_dir: Path,
    paths: Mapping[str, Path],
    *,
    settings: Mapping[str, Any],
    console: Console,
    psi_mode: str = "both",
) -> PredictResult:
    """Run both prediction parties of a demo's run directory in this process (two threads).

    Each party uses the runtime its role config describes (its TEE, sealing keys, policy), as
    ``sealfl vfl predict`` would, and both declare ``psi_mode``.
    """
    import threading

    from sealfl.runtime import load_role_config

    runtimes: dict[str, PartyRuntime] = {}
    for role in ("leader", "follower"):
        config = load_role_config(run_dir / f"{role}.toml")
        runtimes[role] = config.runtime(
            simulated_measurement=functools.partial(role_measurement, role)
        )
    out = run_dir / "predict"
    leader = PredictOptions(
        role="leader",
        data=paths["leader-test"],
        half=run_dir / "leader" / half_file("leader"),
        manifest=run_dir / "leader" / MANIFEST_FILE,
        address="127.0.0.1:0",
        out_dir=out,
        psi_mode=psi_mode,
    )
    errors: list[BaseException] = []
    result: list[PredictResult] = []

    def lead() -> None:
        try:
            result.append(predict_leader(leader, runtimes["leader"], on_line=lambda _: None))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=lead, daemon=True)
    thread.start()
    address_file = out / "leader.address"
    deadline = time.monotonic() + 60
    while not address_file.is_file() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if address_file.is_file():
        follower = PredictOptions(
            role="follower",
            data=paths["follower-test"],
            half=run_dir / "follower" / half_file("follower"),
            manifest=run_dir / "follower" / MANIFEST_FILE,
            address=address_file.read_text().strip(),
            wait_for_leader_s=10.0,
            psi_mode=psi_mode,
        )
        predict_follower(follower, runtimes["follower"], on_line=lambda _: None)
    thread.join(timeout=120)
    if errors:
        raise errors[0]
    if not result:
        raise ChannelError("joint prediction did not finish")
    return result[0]

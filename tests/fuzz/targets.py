"""Fuzz targets: every parser and handler that takes bytes from another party, with seeds.

A target is a function of one ``bytes`` input that feeds it to sealfl the way a peer's or a
file's bytes arrive, plus seeds: valid inputs made here with sealfl's own writers, which the
mutators in :mod:`engine` corrupt. The property every target must keep (checked by the
engine): nothing but a :class:`~sealfl.errors.SealflError` escapes, and no input runs past
the time bound. A target returns normally for an input sealfl accepts.

Bytes a peer sends over gRPC arrive as a protobuf message: gRPC itself refuses a message that
does not parse, so for those targets an input that is not a valid message is skipped (counted
as such) and the rest reach sealfl's code.

Everything is built once per process by :func:`build_targets` in a scratch directory: a
1024-bit Paillier key, a simulated platform and RA-TLS certificate, a sealing key and sealed
file, a release key and envelope, a policy, role configs and a key-broker config, a CSV file.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from sealfl.errors import SealflError

NAMES = (
    "paillier-wire",
    "tensor-frames",
    "mpc-frames",
    "mpc-query-header",
    "mpc-dealer-material",
    "mpc-array",
    "ratls-certificate",
    "dice-evidence",
    "simulated-quote",
    "sealed-file",
    "release-envelope",
    "policy-file",
    "role-config",
    "kbs-config",
    "csv",
    "homo-lr-settings",
)
"""Every target :func:`build_targets` makes (known before building them, for test ids)."""


class Skip(Exception):  # noqa: N818 - not an error: the input never reaches sealfl
    """The input cannot arrive at this code (gRPC refuses a message that does not parse)."""


@dataclass
class Target:
    """One fuzz target: a function of the input bytes, and seeds to mutate."""

    name: str
    run: Callable[[bytes], object]
    seeds: list[bytes] = field(default_factory=list)
    text: bool = False  # the format is text (TOML, JSON, CSV, PEM): mutate tokens too
    what: str = ""


def _parse(message_type: type, data: bytes) -> object:
    try:
        return message_type.FromString(data)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise Skip(f"not a {message_type.__name__}: {exc}") from None


class _Scratch:
    """One file per target that each input is written to, for parsers that read files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def file(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path


def build_targets(directory: Path) -> dict[str, Target]:
    """Make every target, its seeds and the files it needs under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    scratch = _Scratch(directory)
    quiet = io.StringIO()
    with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        targets = [
            _paillier_wire(),
            _tensor_frames(),
            *_mpc_frames(),
            *_attestation(directory, scratch),
            _sealed_files(directory, scratch),
            _release_envelopes(directory, scratch),
            _policy_files(scratch),
            _role_configs(directory, scratch),
            _kbs_config(directory, scratch),
            _csv(scratch),
            _homo_lr_settings(),
        ]
    return {t.name: t for t in targets}


# -- Paillier ---------------------------------------------------------------------------------


def _paillier_wire() -> Target:
    import warnings

    from sealfl import he

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", he.WeakKeyWarning)
        public_key, _ = he.generate_keypair(1024)
    seeds = [
        he.encrypt_vector(public_key, np.array([0.5, -1.25, 3.0]), cores=1).to_bytes(),
        he.encrypt_packed(public_key, np.linspace(-1, 1, 50), cores=1).to_bytes(),
    ]

    def run(data: bytes) -> object:
        return he.vector_from_bytes(data, public_key)

    return Target("paillier-wire", run, seeds, what="he.vector_from_bytes, a peer's vector")


# -- network frames ---------------------------------------------------------------------------


def _length_prefixed(parts: list[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def _split_length_prefixed(data: bytes) -> list[bytes]:
    parts, offset = [], 0
    while offset + 2 <= len(data):
        (size,) = struct.unpack_from(">H", data, offset)
        parts.append(data[offset + 2 : offset + 2 + size])
        offset += 2 + size
    return parts


def _tensor_frames() -> Target:
    from sealfl.net.protos import tensor_pb2
    from sealfl.net.tensors import TensorChunker, receive_tensor

    seeds = [
        _length_prefixed(
            [c.SerializeToString() for c in TensorChunker(array, name="w", chunk_bytes=24)]
        )
        for array in (np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros(0, np.int64))
    ]

    def run(data: bytes) -> object:
        chunks = [_parse(tensor_pb2.TensorChunk, part) for part in _split_length_prefixed(data)]
        return receive_tensor(chunks, max_bytes=1 << 16, peer="fuzz")  # type: ignore[arg-type]

    return Target("tensor-frames", run, seeds, what="net.tensors.receive_tensor, chunk stream")


def _mpc_frames() -> list[Target]:
    from sealfl.fl.infer.protos import infer_pb2
    from sealfl.mpc import wire
    from sealfl.mpc.plan import Output, QueryPlan
    from sealfl.mpc.protos import mpc_pb2

    plan = QueryPlan(rows=2, features=3, output=Output(next(iter(o.value for o in Output))))
    predict = infer_pb2.PredictRequest()
    predict_frame = wire.encode_frame(
        predict, [wire.describe_array(predict.inputs, np.ones((2, 3)))]
    )
    step = infer_pb2.StepRequest()
    step.header.CopyFrom(wire.header_to_proto(plan, session_id="s", query_id="q"))
    step_arrays = wire.fill_message(step.message, {0: [np.arange(6, dtype=np.uint64)]})
    step_frame = wire.encode_frame(step, step_arrays)

    def predict_frame_of(data: bytes) -> object:
        return wire.decode_frame(data, infer_pb2.PredictRequest, lambda m: [("inputs", m.inputs)])

    def step_frame_of(data: bytes) -> object:
        request, arrays = wire.decode_frame(
            data, infer_pb2.StepRequest, lambda m: wire.message_arrays(m.message)
        )
        message = wire.message_from_frame(request.message, arrays)
        if request.HasField("header"):
            wire.plan_from_header(request.header)
        return message

    def run_frames(data: bytes) -> object:
        """Read the bytes as the server's Predict and Step handlers do; either may refuse."""
        refusal: SealflError | None = None
        decoded = []
        for decode in (predict_frame_of, step_frame_of):
            try:
                decoded.append(decode(data))
            except SealflError as exc:
                refusal = exc
        if not decoded and refusal is not None:
            raise refusal
        return decoded

    def headers(data: bytes) -> object:
        header = _parse(mpc_pb2.QueryHeader, data)
        return wire.plan_from_header(header)  # type: ignore[arg-type]

    def deals(data: bytes) -> object:
        return wire.deal_from_proto(_parse(mpc_pb2.ServerDeal, data))  # type: ignore[arg-type]

    def arrays(data: bytes) -> object:
        return wire.array_from_proto(_parse(mpc_pb2.Array, data), field="fuzz")  # type: ignore[arg-type]

    return [
        Target(
            "mpc-frames",
            run_frames,
            [predict_frame, step_frame],
            what="mpc.wire.decode_frame + message_from_frame (Predict/Step frames)",
        ),
        Target(
            "mpc-query-header",
            headers,
            [step.header.SerializeToString()],
            what="mpc.wire.plan_from_header, a client's QueryHeader",
        ),
        Target(
            "mpc-dealer-material",
            deals,
            [],
            what="mpc.wire.deal_from_proto, the dealer's ServerDeal",
        ),
        Target(
            "mpc-array",
            arrays,
            [wire.array_to_proto(np.arange(5, dtype=np.uint64)).SerializeToString()],
            what="mpc.wire.array_from_proto",
        ),
    ]


# -- attestation ------------------------------------------------------------------------------


def _attestation(directory: Path, scratch: _Scratch) -> list[Target]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from sealfl.tee import (
        Policy,
        SimulatedPlatform,
        SimulatedTee,
        Verifier,
        create_ratls_certificate,
        inspect_ratls_certificate,
        verify_ratls_certificate,
    )
    from sealfl.tee.dice import decode_claims, decode_tagged_evidence
    from sealfl.tee.simulated import verify_simulated_quote

    platform = SimulatedPlatform.create(directory / "platform")
    tee = SimulatedTee(platform, b"\x07" * 32)
    creds = create_ratls_certificate(tee, claims={"paillier-pk-hash": b"\x01" * 32})
    der = x509.load_pem_x509_certificate(creds.cert_pem).public_bytes(serialization.Encoding.DER)
    policy = Policy.for_simulated(
        measurements=[tee.measurement], platform_fingerprints=[platform.fingerprint]
    )
    verifier = Verifier(policy)
    extension = None
    quote = b""
    for ext in x509.load_der_x509_certificate(der).extensions:
        value = getattr(ext.value, "value", b"")
        if isinstance(value, bytes) and len(value) > 64:
            extension = value
    if extension is not None:
        with contextlib.suppress(SealflError):
            quote = decode_tagged_evidence(extension)[0]

    def certificate(data: bytes) -> object:
        pem = (
            data
            if data.startswith(b"-----BEGIN")
            else x509_pem(data)  # the DER a peer presents, as the TLS stack hands it over
        )
        inspect_ratls_certificate(pem)
        return verify_ratls_certificate(pem, verifier)

    def x509_pem(data: bytes) -> bytes:
        import base64

        body = base64.encodebytes(data).decode().replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return (
            "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
        ).encode()

    def dice(data: bytes) -> object:
        try:
            quote_bytes, claims = decode_tagged_evidence(data)
        except SealflError:
            return decode_claims(data)
        return decode_claims(claims), quote_bytes

    targets = [
        Target(
            "ratls-certificate", certificate, [der], what="tee.inspect/verify_ratls_certificate"
        ),
        Target(
            "dice-evidence",
            dice,
            [extension] if extension is not None else [],
            what="tee.dice decode_tagged_evidence + decode_claims",
        ),
        Target(
            "simulated-quote",
            verify_simulated_quote,
            [quote] if quote else [],
            what="tee.simulated.verify_simulated_quote",
        ),
    ]
    return targets


# -- sealed files and release envelopes -------------------------------------------------------


def _sealed_files(directory: Path, scratch: _Scratch) -> Target:
    from sealfl.seal import SealingKey, inspect_sealed, read_sealed, seal_bytes

    key = SealingKey.generate()
    seeds = [
        seal_bytes(b"model bytes " * 20, key, chunk_size=64, label="model"),
        seal_bytes(b"", key),
    ]

    def run(data: bytes) -> object:
        path = scratch.file("sealed.bin", data)
        inspect_sealed(path)
        return read_sealed(path, key)

    return Target("sealed-file", run, seeds, what="seal.inspect_sealed + read_sealed")


def _release_envelopes(directory: Path, scratch: _Scratch) -> Target:
    from sealfl.seal import ReleaseKey, ReleasePolicy, inspect_release, open_release, write_release

    owner = ReleaseKey.generate(name="owner")
    _, public = owner.save(directory / "owner")
    policy_path = directory / "release.toml"
    policy_path.write_text(
        f'[[recipient]]\nname = "owner"\npublic_key = "{public.relative_to(directory)}"\n'
    )
    envelope = directory / "seed.envelope"
    write_release(envelope, b"the model" * 30, ReleasePolicy.load(policy_path), label="model")
    out = directory / "opened.bin"

    def run(data: bytes) -> object:
        path = scratch.file("envelope.bin", data)
        inspect_release(path)
        return open_release(path, out, private_key=owner)

    return Target(
        "release-envelope", run, [envelope.read_bytes()], what="seal.release inspect/open_release"
    )


# -- files a user or a deployment hands over --------------------------------------------------


def _policy_files(scratch: _Scratch) -> Target:
    from sealfl.tee import load_policy

    seeds = [
        b'tcb_statuses = ["UpToDate", "SWHardeningNeeded"]\nrejected_advisories = []\n'
        b"allow_debug = false\nmax_evidence_age_seconds = 600\n\n[[sgx]]\n"
        b'mr_signer = "' + b"ab" * 32 + b'"\nisv_prod_id = 1\nmin_isv_svn = 2\n\n'
        b'[[tdx]]\nmr_td = "' + b"cd" * 48 + b'"\ntd_attributes = "0000001000000000"\n'
        b'td_attributes_mask = "ffffffffffffffff"\n\n[simulated]\nallow = true\n'
        b'measurements = ["'
        + b"01" * 32
        + b'"]\nplatform_fingerprints = ["'
        + b"02" * 32
        + b'"]\n',
        b'{"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",'
        b' "verify_isv_svn": "on", "verify_enclave_debuggable": "on", "sgx_mrs": [{'
        b'"mr_enclave": "' + b"11" * 32 + b'", "mr_signer": "' + b"22" * 32 + b'",'
        b' "isv_prod_id": "0", "isv_svn": "0",},],}',
    ]

    def run(data: bytes) -> object:
        name = "policy.json" if data.lstrip().startswith(b"{") else "policy.toml"
        return load_policy(scratch.file(name, data))

    return Target("policy-file", run, seeds, text=True, what="tee.load_policy (TOML, cczoo JSON)")


def _role_configs(directory: Path, scratch: _Scratch) -> Target:
    from sealfl.cli.main import run as sealfl
    from sealfl.runtime import load_role_config

    run_dir = directory / "homo-lr-run"
    seeds: list[bytes] = []
    if sealfl(["homo-lr", "prepare", "--run-dir", str(run_dir), "--workers", "1"]) == 0:
        configs = sorted(run_dir.glob("*.toml"))
        seeds = [p.read_bytes() for p in configs if b"\nworkload" in b"\n" + p.read_bytes()]

    def run(data: bytes) -> object:
        path = run_dir / "fuzzed.toml"
        path.write_bytes(data)
        return load_role_config(path, environ={})

    return Target("role-config", run, seeds, text=True, what="runtime.load_role_config")


def _kbs_config(directory: Path, scratch: _Scratch) -> Target:
    from sealfl.kbs.config import load_kbs_settings

    (directory / "kbs-policy.toml").write_text("allow_debug = false\n")
    seeds = [
        b'[kbs]\nstore = "kbs-store"\naudit_log = "kbs-audit.jsonl"\nadmins = ["'
        + b"ab" * 32
        + b'"]\n\n[[kbs.resource]]\nname = "homo-lr/seal-key/model"\npolicy = "kbs-policy.toml"\n'
        b'generate = true\n\n[[kbs.resource]]\nname = "homo-lr/release-key/eval"\n'
        b'policy = "kbs-policy.toml"\n'
    ]

    def run(data: bytes) -> object:
        return load_kbs_settings(scratch.file("kbs.toml", data))

    return Target("kbs-config", run, seeds, text=True, what="kbs.config.load_kbs_settings")


def _csv(scratch: _Scratch) -> Target:
    from sealfl.data.csv import read_fate_csv

    seeds = [
        b"id,y,x0,x1,x2\n1,0,0.5,-1.25,3e-2\n2,1,1,2,3\n3,0,-0.0,1e10,4\n",
        b"id,x0,x1\n7,0.1,0.2\n8,0.3,0.4\n",
    ]

    def run(data: bytes) -> object:
        return read_fate_csv(scratch.file("data.csv", data))

    return Target("csv", run, seeds, text=True, what="data.read_fate_csv")


def _homo_lr_settings() -> Target:
    from sealfl.fl.homo_lr.algorithm import Hyperparameters, Schedule
    from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb

    try:
        from sealfl.fl.homo_lr.messages import settings_from_proto, settings_to_proto
    except ImportError:  # before the messages module: the servicer's module had them
        from sealfl.fl.homo_lr.service import (  # type: ignore[attr-defined,no-redef]
            settings_from_proto,
            settings_to_proto,
        )

    hp = Hyperparameters(learning_rate=0.3, alpha=0.01, iterations=7, schedule=Schedule.CONSTANT)

    def run(data: bytes) -> object:
        return settings_from_proto(_parse(pb.TrainingSettings, data))  # type: ignore[arg-type]

    return Target(
        "homo-lr-settings",
        run,
        [settings_to_proto(hp, 30).SerializeToString()],
        what="homo_lr.service.settings_from_proto, a worker's JoinRequest settings",
    )

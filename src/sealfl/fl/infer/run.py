"""Start the infer workload's servers: the dealer and the model server in each mode.

These functions build and start a :class:`sealfl.net.SecureServer` and return what a client
needs to reach it (address, certificate fingerprint, and in TEE mode the measurement and the
simulated platform). The ``sealfl infer`` command runs them as separate processes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sealfl.errors import ConfigError
from sealfl.fl.infer.common import (
    MAX_MESSAGE_BYTES,
    MODEL_CLAIM,
    Mode,
)
from sealfl.fl.infer.dealer import SECRET_LABEL, DealerLimits, DealerServicer, DealerStore
from sealfl.fl.infer.keyfile import derive_secret, load_or_create_identity
from sealfl.fl.infer.protos import infer_pb2_grpc
from sealfl.fl.infer.quota import RowBudget
from sealfl.fl.infer.server import DealerLink, InferenceServicer, ServerLimits, frame_handlers
from sealfl.models import LogisticRegression
from sealfl.mpc import Output
from sealfl.net import (
    SecureServer,
    accept_any_certificate,
    certificate_fingerprint,
    make_self_signed_credentials,
)
from sealfl.runtime import PartyRuntime
from sealfl.seal import read_sealed, write_sealed
from sealfl.tee import SimulatedTee

MODEL_LABEL = "sealfl/infer/model"
"""Label of the sealed model file (authenticated, not secret)."""

_log = logging.getLogger(__name__)


@dataclass
class Running:
    """A started server and how to reach it.

    Attributes
    ----------
    server
        The running server; ``stop()`` it when done.
    address
        Its front door, ``host:port``.
    fingerprint
        SHA-256 of its certificate (pin it in plaintext and MPC modes).
    details
        Mode-specific facts for clients: the TEE measurement and platform fingerprint.
    """

    server: SecureServer[Any]
    address: str
    fingerprint: str
    details: dict[str, str] = field(default_factory=dict)

    def ready_line(self) -> dict[str, str]:
        """Return what a launched process prints once it serves (one JSON object)."""
        return {
            "event": "ready",
            "address": self.address,
            "fingerprint": self.fingerprint,
            **self.details,
        }


def start_dealer(
    *,
    address: str = "127.0.0.1:0",
    key_file: Path | None = None,
    limits: DealerLimits | None = None,
) -> Running:
    """Start a dealer (plain TLS with a self-signed certificate).

    Parameters
    ----------
    key_file
        Keep the dealer's identity here (made at the first start): its fingerprint, and the
        sessions it opened, then survive a restart. Without it, both are new at every start.
    limits
        Bounds of its memory (:class:`~sealfl.fl.infer.dealer.DealerLimits`).
    """
    if key_file is None:
        creds = make_self_signed_credentials("infer-dealer")
        secret = None
    else:
        creds = load_or_create_identity(key_file, party="infer-dealer")
        secret = derive_secret(creds, SECRET_LABEL)
    server: SecureServer[Any] = SecureServer(
        credentials=creds,
        peer_verifier=accept_any_certificate,
        address=address,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )
    store = DealerStore(secret=secret, limits=limits)
    server.add_servicer(infer_pb2_grpc.add_DealerServicer_to_server, DealerServicer(store))
    return Running(server, server.start(), certificate_fingerprint(creds.cert_pem))


def load_model_in_tee(
    tee: PartyRuntime, sealed_model: Path, *, provision_from: Path | None = None
) -> LogisticRegression:
    """Read the model from a file sealed to this TEE, sealing ``provision_from`` first if given.

    Provisioning happens inside the enclave: the plaintext model is read once, sealed with the
    party's sealing key (its TEE identity's, or one its key broker releases only to this
    measurement), and from then on only the sealed file is used.
    """
    key = tee.sealing_key(MODEL_LABEL)
    if provision_from is not None:
        model = LogisticRegression.load(provision_from)
        write_sealed(sealed_model, model.to_bytes(), key, label=MODEL_LABEL)
        _log.info("model %s sealed into %s", provision_from, sealed_model)
    if not sealed_model.is_file():
        raise ConfigError(
            f"sealed model {sealed_model} not found; provision it with --provision-from MODEL"
        )
    data = read_sealed(sealed_model, key, label=MODEL_LABEL)
    return LogisticRegression.from_bytes(data, source=str(sealed_model))


def start_model_server(
    *,
    mode: Mode,
    address: str = "127.0.0.1:0",
    model_path: Path | None = None,
    sealed_model: Path | None = None,
    tee: PartyRuntime | None = None,
    dealer_address: str | None = None,
    dealer_fingerprint: str | None = None,
    key_file: Path | None = None,
    allow_outputs: Collection[Output] = (Output.LABEL,),
    row_budget: RowBudget | None = None,
    limits: ServerLimits | None = None,
) -> Running:
    """Start the model server in ``mode``.

    Parameters
    ----------
    model_path
        The plaintext model (plaintext and MPC modes; in TEE mode, the file to provision from).
    sealed_model
        TEE mode: the sealed model file to serve.
    tee
        TEE mode: the party runtime of the enclave the server runs in.
    dealer_address, dealer_fingerprint
        MPC mode: where the dealer is and its pinned certificate.
    key_file
        Plaintext and MPC modes: keep the server's identity here (made at the first start),
        so its fingerprint survives a restart (:mod:`sealfl.fl.infer.keyfile`).
    allow_outputs, row_budget, limits
        What clients may ask and hold (:class:`~sealfl.fl.infer.server.InferenceServicer`).

    Raises
    ------
    ConfigError
        If an argument a mode needs is missing.
    """
    if key_file is not None and mode is Mode.TEE:
        raise ConfigError(
            "--key-file applies to plaintext and mpc modes: a TEE-mode server makes its key "
            "inside the enclave, with fresh evidence, at every start"
        )
    details: dict[str, str] = {"mode": mode.value}
    dealer: DealerLink | None = None
    renew: Callable[[], Any] | None = None
    if mode is Mode.TEE:
        if tee is None or sealed_model is None:
            raise ConfigError("TEE mode needs a TEE (--tee, --platform) and --sealed-model")
        model = load_model_in_tee(tee, sealed_model, provision_from=model_path)
        digest = hashlib.sha256(model.to_bytes()).digest()
        creds: Any = tee.credentials(claims={MODEL_CLAIM: digest}, hostnames=("localhost",))
        # Its certificate lives an hour: renew with the same claims; clients follow the handover.
        renew = partial(tee.credentials, claims={MODEL_CLAIM: digest}, hostnames=("localhost",))
        details["tee"] = tee.kind.value
        if isinstance(tee.provider, SimulatedTee):
            details |= {
                "measurement": tee.provider.measurement.hex(),
                "platform_fingerprint": tee.provider.platform.fingerprint,
            }
    else:
        if model_path is None:
            raise ConfigError(f"{mode.value} mode needs --model")
        model = LogisticRegression.load(model_path)
        if mode is Mode.MPC and (dealer_address is None or dealer_fingerprint is None):
            raise ConfigError("MPC mode needs --dealer and --dealer-fingerprint")
        if key_file is None:
            creds = make_self_signed_credentials(f"infer-{mode.value}")
        else:
            creds = load_or_create_identity(key_file, party=f"infer-{mode.value}")
    if mode is Mode.MPC:
        if dealer_address is None or dealer_fingerprint is None:
            raise ConfigError("MPC mode needs --dealer and --dealer-fingerprint")
        dealer = DealerLink.connect(dealer_address, dealer_fingerprint)
    servicer = InferenceServicer(
        mode=mode,
        model=model,
        dealer=dealer,
        allow_outputs=allow_outputs,
        row_budget=row_budget,
        limits=limits,
    )
    server: SecureServer[Any] = SecureServer(
        credentials=creds,
        peer_verifier=accept_any_certificate,
        address=address,
        max_message_bytes=MAX_MESSAGE_BYTES,
        renew=renew,
    )
    server.add_servicer(infer_pb2_grpc.add_InferenceServicer_to_server, servicer)
    server.add_handler(frame_handlers(servicer))
    details["features"] = str(model.n_features)
    details["outputs"] = ",".join(sorted(o.value for o in allow_outputs))
    return Running(server, server.start(), certificate_fingerprint(creds.cert_pem), details)

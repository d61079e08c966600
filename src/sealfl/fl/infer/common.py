"""Settings shared by the infer workload's three processes, and the error-to-status mapping."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from sealfl.errors import ConfigError, ProtocolError, SealflError
from sealfl.net import (
    SecureChannel,
    fingerprint_verifier,
    make_self_signed_credentials,
    open_secure_channel,
)
from sealfl.tee import measure_code

MAX_MESSAGE_BYTES = 256 << 20
"""Largest gRPC message: a 10000 x 528 batch of 8-byte values is 42 MB; this leaves room."""

CALL_TIMEOUT_S = 60.0
"""Deadline of one call; a query at batch 10000 takes well under a second."""

DEALER_TIMEOUT_S = 10.0
"""Deadline of a call to the dealer: a dealer that disappears fails the query after this."""

FRAME_SERVICE = "sealfl.infer.InferenceFrames"
"""gRPC service of the two calls that carry megabytes, ``Predict`` and ``Step``.

Their messages travel as frames (:func:`sealfl.mpc.wire.encode_frame`), raw bytes at the gRPC
layer: a ``PredictRequest`` or ``StepRequest`` whose arrays hold only dtype and shape, then
the arrays' bytes; the answers likewise. The other calls are plain protobuf
(``sealfl.infer.Inference`` in ``infer.proto``)."""

MODEL_CLAIM = "model-sha256"
"""RA-TLS claim of the TEE-mode server: SHA-256 of the model it unsealed (``to_bytes()``)."""

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Mode(enum.Enum):
    """How the server computes on the client's input."""

    PLAINTEXT = "plaintext"
    TEE = "tee"
    MPC = "mpc"


def tee_measurement() -> bytes:
    """Return the simulated measurement of the TEE-mode server: sealfl's code and settings.

    The client computes the same value from the same checkout to build its policy.
    """
    return measure_code({"workload": "infer", "mode": "tee"})


def refuse_bad_input(context: grpc.ServicerContext, call: Callable[[], T], *, what: str) -> T:
    """Run a handler body, turning bad input into INVALID_ARGUMENT with the reason.

    The server logs the refusal and keeps serving: a malformed request is the client's
    problem, never the server's.
    """
    try:
        return call()
    except (ProtocolError, ConfigError) as exc:
        _log.warning("%s refused: %s", what, exc)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {exc}")
    except SealflError as exc:
        _log.warning("%s failed: %s", what, exc)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: {exc}")
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def connect_dealer(
    address: str, fingerprint: str, *, party: str, timeout_s: float = 10.0
) -> SecureChannel[Any]:
    """Open a channel to the dealer at ``address``, pinning its certificate's ``fingerprint``.

    ``party`` names this end's fresh self-signed certificate; every call on the channel has
    the dealer's deadline (:data:`DEALER_TIMEOUT_S`).
    """
    return open_secure_channel(
        address,
        credentials=make_self_signed_credentials(party),
        server_verifier=fingerprint_verifier([fingerprint]),
        timeout_s=timeout_s,
        default_timeout_s=DEALER_TIMEOUT_S,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )

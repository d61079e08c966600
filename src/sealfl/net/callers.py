"""Who is calling: the enrolment the per-RPC check found for the call a handler is serving.

A workload that binds state to a client (homo-lr binds a worker's seat to it) must not bind it
to the certificate alone: a long-lived client renews its certificate every hour or so
(:mod:`sealfl.net.possession`, renewal), and the new certificate has a new fingerprint. It
binds it to the client's *lineage* instead, which a renewal proved by the old key carries over,
and which is the certificate's own fingerprint for a client that never renewed.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, cast

import grpc

from sealfl.errors import ProtocolError
from sealfl.net.allowlist import Enrolment

__all__ = ["caller_certificate", "caller_enrolment", "caller_lineage", "remember_caller"]

_ATTRIBUTE = "_sealfl_caller"
_callers: weakref.WeakKeyDictionary[Any, Enrolment[Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def remember_caller(context: grpc.ServicerContext, enrolment: Enrolment[Any]) -> None:
    """Record that the call with ``context`` was admitted as ``enrolment`` (the peer check)."""
    # On the context itself when it takes attributes (gRPC's does): this runs on every call.
    try:
        setattr(context, _ATTRIBUTE, enrolment)
    except AttributeError:
        with _lock:
            _callers[context] = enrolment


def caller_enrolment(context: grpc.ServicerContext) -> Enrolment[Any] | None:
    """Return the enrolment of the call being served, or None if no peer check admitted it."""
    found = getattr(context, _ATTRIBUTE, None)
    if isinstance(found, Enrolment):
        return found
    with _lock:
        return _callers.get(context)


def caller_lineage(context: grpc.ServicerContext) -> str | None:
    """Return the lineage of the client making this call (see the module docstring), or None.

    None means the call did not come through a :class:`~sealfl.net.SecureServer` service
    listener's peer check (for example a front-door call).
    """
    enrolment = caller_enrolment(context)
    return None if enrolment is None else enrolment.lineage


def caller_certificate(context: grpc.ServicerContext) -> bytes:
    """Return the client certificate (PEM) gRPC authenticated for this call.

    Raises
    ------
    ProtocolError
        If the call carries no client certificate (the server must require mutual TLS).
    """
    # grpc-stubs types the values loosely; at run time they are lists of PEM bytes.
    certs = cast(list[bytes], context.auth_context().get("x509_pem_cert") or [])
    if not certs:
        raise ProtocolError("call without an authenticated client certificate")
    return certs[0]

"""Who is calling: a worker's certificate, its key and the name its attested evidence claims.

The PS identifies a caller by the client certificate gRPC authenticated for the call (mutual
RA-TLS; the certificate's evidence passed the PS's policy at enrolment). Three facts about it
matter to homo-lr:

- the certificate's fingerprint (SHA-256 of the DER), or rather its lineage (the first
  certificate of its chain of renewals, :func:`sealfl.net.caller_lineage`): what binds a seat
  to a caller, and what the server's enrolment log shows;
- the SHA-256 of its SubjectPublicKeyInfo: the key, which an operator can pin in the PS's
  admitted-workers list (:mod:`.admission`) when a worker keeps its key;
- the ``party-name`` claim, bound into the evidence (``report_data``) with the rest of the
  claims, which names the data owner when the admitted-workers list names workers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from sealfl.errors import ConfigError
from sealfl.net import certificate_fingerprint
from sealfl.net.certificates import load_certificate

PARTY_NAME_CLAIM = "party-name"
"""RA-TLS claim in which a worker states its name (``--name``)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_party_name(name: str, *, where: str = "--name") -> str:
    """Return ``name`` if it is 1-64 letters, digits, ``.``, ``_`` or ``-`` (starting alnum).

    Raises
    ------
    ConfigError
        Naming ``where`` and the value.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: expected 1-64 letters, digits, '.', '_' or '-' starting with a letter or "
            f"digit, got {name!r}"
        )
    return name


@dataclass(frozen=True)
class Peer:
    """The caller of one RPC.

    Attributes
    ----------
    fingerprint
        SHA-256 (hex) of its certificate; on a server that tracks renewals, of the first
        certificate of its chain of renewals (its lineage), which a renewal keeps.
    key_sha256
        SHA-256 (hex) of its certificate's SubjectPublicKeyInfo; empty when unknown.
    name
        Its ``party-name`` claim, or ``None``.
    """

    fingerprint: str
    key_sha256: str = ""
    name: str | None = None

    def describe(self) -> str:
        """Return the caller in words: its certificate, and its name when it claims one."""
        named = f" ({self.name!r})" if self.name else ""
        return f"certificate sha256:{self.fingerprint[:16]}…{named}"


def key_sha256(cert_pem: bytes) -> str:
    """Return the SHA-256 (hex) of the certificate's SubjectPublicKeyInfo (DER)."""
    spki = (
        load_certificate(cert_pem, what="client certificate")
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(spki).hexdigest()


def peer_from_certificate(cert_pem: bytes, claims: Mapping[str, bytes] | None = None) -> Peer:
    """Describe the caller whose certificate is ``cert_pem``, with its verified ``claims``."""
    raw = (claims or {}).get(PARTY_NAME_CLAIM)
    name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None
    return Peer(
        fingerprint=certificate_fingerprint(cert_pem), key_sha256=key_sha256(cert_pem), name=name
    )

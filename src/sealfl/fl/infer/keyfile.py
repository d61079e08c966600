"""Persistent identities for long-lived infer servers and dealers: one key file, reused.

Plaintext- and MPC-mode servers and the dealer are verified by the fingerprint of their
self-signed certificate, which every client pins. A certificate made afresh at each start
would force every client to be reconfigured after a restart, so ``--key-file PATH`` keeps
the private key and its certificate in one file: made once (mode 0600, never overwritten,
:func:`sealfl._files.create_new_file`), then read at every start, so the fingerprint stays
the same. The dealer also derives the secret behind its session ids from the key
(:func:`derive_secret`), so sessions opened before a restart stay valid after it.

The certificate lives :data:`IDENTITY_LIFETIME`; after that the file is refused with the date
and what to do (move it away; a new one means a new fingerprint for the clients). TEE-mode
servers do not use key files: their key is made inside the enclave, with fresh evidence.
"""

from __future__ import annotations

import datetime
import logging
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl._files import create_new_file
from sealfl.errors import ConfigError
from sealfl.net import TlsCredentials, certificate_fingerprint, make_self_signed_credentials

__all__ = [
    "IDENTITY_LIFETIME",
    "derive_secret",
    "load_identity",
    "load_or_create_identity",
]

IDENTITY_LIFETIME = datetime.timedelta(days=365)
"""Validity of a persistent certificate: a year of restarts with the same fingerprint."""

RENEW_WARNING = datetime.timedelta(days=30)
"""A certificate this close to its end is used, with a warning at every start."""

_MAX_BYTES = 64 * 1024
_log = logging.getLogger(__name__)


def load_or_create_identity(
    path: Path, *, party: str, now: datetime.datetime | None = None
) -> TlsCredentials:
    """Return the identity kept in ``path``, making the file first if it does not exist.

    Parameters
    ----------
    path
        The key file (PEM private key, then PEM certificate).
    party
        Prefix of the certificate's subject when a new one is made ("infer-dealer").
    now
        The current time (injectable for tests of expiry).

    Raises
    ------
    ConfigError
        If the file exists but is not a usable key file (see :func:`load_identity`), or it
        cannot be created.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        return load_identity(path, now=now)
    made = make_self_signed_credentials(party, lifetime=IDENTITY_LIFETIME, now=now)
    try:
        create_new_file(
            path,
            made.key_pem + made.cert_pem,
            what="key file",
            if_exists="made by another process just now",
        )
    except ConfigError:
        if path.is_file():  # another process made it first: use theirs
            return load_identity(path, now=now)
        raise
    _log.info(
        "made key file %s: certificate sha256:%s, valid until %s",
        path,
        certificate_fingerprint(made.cert_pem),
        (now or datetime.datetime.now(datetime.UTC)) + IDENTITY_LIFETIME,
    )
    return made


def load_identity(path: Path, *, now: datetime.datetime | None = None) -> TlsCredentials:
    """Read a key file made by :func:`load_or_create_identity`.

    Raises
    ------
    ConfigError
        If it is missing, not a regular file, readable by group or others, not a PEM private
        key followed by its certificate, or the certificate is not valid at ``now``.
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"key file {path} has mode {mode:04o}, expected 0600 (group and others must not "
            f"read a private key): run `chmod 600 {path}`"
        )
    if info.st_size > _MAX_BYTES:
        raise ConfigError(
            f"key file {path} is {info.st_size} bytes; a key and its certificate take about "
            f"1 kB (at most {_MAX_BYTES} accepted): is it the right file?"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    return _parse(raw, path, now or datetime.datetime.now(datetime.UTC))


def _parse(raw: bytes, path: Path, now: datetime.datetime) -> TlsCredentials:
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"key file {path}: expected an unencrypted PEM private key followed by its "
            f"certificate (as `--key-file` makes it), got something else ({exc})"
        ) from None
    try:
        cert = x509.load_pem_x509_certificate(raw)
    except ValueError as exc:
        raise ConfigError(f"key file {path}: no PEM certificate after the key ({exc})") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ConfigError(f"key file {path}: the certificate is not the key's")
    if now >= cert.not_valid_after_utc:
        raise ConfigError(
            f"key file {path}: its certificate expired on {cert.not_valid_after_utc:%Y-%m-%d} "
            f"(now {now:%Y-%m-%d}); move the file away to make a new identity, then give "
            "clients the new fingerprint"
        )
    if now < cert.not_valid_before_utc:
        raise ConfigError(
            f"key file {path}: its certificate is valid only from "
            f"{cert.not_valid_before_utc.isoformat()} (now {now.isoformat()}): check the clock"
        )
    if cert.not_valid_after_utc - now < RENEW_WARNING:
        _log.warning(
            "key file %s: its certificate expires on %s; make a new one before then (clients "
            "will need its fingerprint)",
            path,
            f"{cert.not_valid_after_utc:%Y-%m-%d}",
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return TlsCredentials(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem)


def derive_secret(credentials: TlsCredentials, label: str) -> bytes:
    """Derive a 32-byte secret for ``label`` from the identity's private key (HKDF-SHA256).

    The same key file gives the same secret at every start, so state that a secret protects
    (the dealer's session ids) survives a restart; nobody without the key can compute it.
    """
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode())
    return hkdf.derive(der)

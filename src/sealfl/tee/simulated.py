"""The simulated TEE backend, for development and CI on machines without SGX or TDX.

Danger: simulated evidence proves nothing about isolation. A *simulated platform* is a local
ECDSA P-256 key (plus a sealing secret) that stands in for the CPU: it signs quotes that carry a
measurement of the code being run (:func:`sealfl.tee.measure_code`). A verifier accepts such a
quote only when its policy says ``allow_simulated`` *and* lists the platform's fingerprint, so
trusting a simulated platform is always an explicit act by the person who writes the policy.

Simulated quotes begin with :data:`SIMULATED_MARKER`; the DCAP verifier refuses anything that
carries it, and every generation or acceptance logs a warning.

A simulated TEE also states what a real quote's appraisal would say about its platform: a TCB
status (Intel's names, ``UpToDate`` by default) and a debug flag. Both are inside the signed part,
and the verifier applies the policy's platform rules to them, so a key broker's deny rules
("debug refused", "TCB status not allowed") can be tested with real processes and no hardware.

Quote layout (version 2): ``SIMULATED_MARKER || CBOR [version, measurement, report_data,
platform_spki, debug, tcb_status, signature]`` where the ECDSA-SHA256 signature covers
``SIMULATED_MARKER || CBOR [version, measurement, report_data, platform_spki, debug,
tcb_status]``. Version 1 quotes (without the platform claims) are no longer read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl._files import create_new_file
from sealfl.errors import AttestationError, ConfigError
from sealfl.tee.dice import loads_exact
from sealfl.tee.evidence import REPORT_DATA_SIZE, SEALING_KEY_SIZE, check_report_data
from sealfl.tee.policy import INTEL_TCB_STATUSES

logger = logging.getLogger(__name__)

_announced: set[tuple[str, str, bytes]] = set()
_announced_lock = threading.Lock()


def warn_simulated(event: str, platform_fingerprint: str, measurement: bytes) -> None:
    """Log that simulated evidence was generated or accepted (``event``), loudly once.

    The first time a process generates or accepts evidence of one (platform, measurement) it
    logs a warning; later occurrences go to debug, so a server verifying every connection does
    not bury its other output under identical warnings.
    """
    key = (event, platform_fingerprint, measurement)
    with _announced_lock:
        first = key not in _announced
        _announced.add(key)
    logger.log(
        logging.WARNING if first else logging.DEBUG,
        "SIMULATED TEE: %s simulated evidence (platform %s, measurement %s): it proves nothing "
        "about isolation and real verifiers refuse it",
        event,
        platform_fingerprint[:16],
        measurement.hex()[:16],
    )


#: Every simulated quote starts with these bytes; real quotes start with a little-endian version.
SIMULATED_MARKER = b"SEALFL-SIMULATED-QUOTE\x00"
SIMULATED_QUOTE_VERSION = 2
MEASUREMENT_SIZE = 32
#: The TCB status a simulated platform states unless told otherwise.
DEFAULT_TCB_STATUS = "UpToDate"
_QUOTE_ITEMS = 7

_KEY_FILE = "platform_key.pem"
_SECRET_FILE = "sealing_secret.bin"
_SECRET_SIZE = 32
_SEAL_INFO = b"sealfl simulated sealing key v1\x00"


def _fingerprint(spki_der: bytes) -> str:
    return hashlib.sha256(spki_der).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600, refusing to replace an existing file."""
    create_new_file(
        path,
        data,
        what="simulated platform file",
        if_exists="refusing to overwrite a platform key (load it with SimulatedPlatform.load, "
        "or choose an empty directory)",
    )


class SimulatedPlatform:
    """The simulated "machine": a quote-signing key and a sealing secret, kept in a directory.

    Create one per host (or per test) with :meth:`create`; a verifier trusts it by listing
    :attr:`fingerprint` in its policy.
    """

    def __init__(self, *, signing_key: ec.EllipticCurvePrivateKey, sealing_secret: bytes) -> None:
        if not isinstance(signing_key.curve, ec.SECP256R1):
            raise ConfigError(
                f"simulated platform key must be on P-256, got {signing_key.curve.name}"
            )
        if len(sealing_secret) != _SECRET_SIZE:
            raise ConfigError(
                f"simulated platform sealing secret must be {_SECRET_SIZE} bytes, "
                f"got {len(sealing_secret)}"
            )
        self._signing_key = signing_key
        self._sealing_secret = bytes(sealing_secret)
        self._spki = signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def create(cls, directory: Path) -> SimulatedPlatform:
        """Make a new platform and write its key files (mode 0600) into ``directory``.

        Raises
        ------
        ConfigError
            If a platform file already exists there (never overwritten) or it is not writable.
        """
        directory = Path(directory)
        key = ec.generate_private_key(ec.SECP256R1())
        secret = os.urandom(_SECRET_SIZE)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name in (_KEY_FILE, _SECRET_FILE):
                if (directory / name).exists():
                    raise ConfigError(
                        f"simulated platform file {directory / name} already exists: refusing "
                        "to overwrite a platform key"
                    )
            _write_private(directory / _KEY_FILE, key_pem)
            _write_private(directory / _SECRET_FILE, secret)
        except OSError as exc:
            raise ConfigError(f"cannot write simulated platform into {directory}: {exc}") from exc
        return cls(signing_key=key, sealing_secret=secret)

    @classmethod
    def load(cls, directory: Path) -> SimulatedPlatform:
        """Read a platform written by :meth:`create`.

        Raises
        ------
        ConfigError
            If a file is missing or does not hold a P-256 key / 32-byte secret.
        """
        directory = Path(directory)
        key_path, secret_path = directory / _KEY_FILE, directory / _SECRET_FILE
        try:
            key_pem = key_path.read_bytes()
            secret = secret_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read simulated platform in {directory}: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{key_path}: not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{key_path}: expected an EC private key, got {type(key).__name__}")
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"{key_path}: expected a P-256 key, got {key.curve.name}")
        if len(secret) != _SECRET_SIZE:
            raise ConfigError(
                f"{secret_path}: expected a {_SECRET_SIZE}-byte sealing secret, got {len(secret)} "
                "bytes"
            )
        return cls(signing_key=key, sealing_secret=secret)

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the platform's public key (SubjectPublicKeyInfo DER)."""
        return _fingerprint(self._spki)

    @property
    def public_key_der(self) -> bytes:
        """The platform's public key as SubjectPublicKeyInfo DER."""
        return self._spki

    def sign_quote(
        self,
        measurement: bytes,
        report_data: bytes,
        *,
        debug: bool = False,
        tcb_status: str = DEFAULT_TCB_STATUS,
    ) -> bytes:
        """Return a simulated quote over ``measurement``, ``report_data`` and platform claims.

        Parameters
        ----------
        debug, tcb_status
            What the quote states about the (simulated) platform; see :class:`SimulatedTee`.

        Raises
        ------
        AttestationError
            If the measurement is not 32 bytes or report_data not 64 bytes.
        ConfigError
            If ``tcb_status`` is not one of Intel's names or ``debug`` not a bool.
        """
        report_data = check_report_data(report_data)
        if len(measurement) != MEASUREMENT_SIZE:
            raise AttestationError(
                f"simulated measurement must be {MEASUREMENT_SIZE} bytes, got {len(measurement)}"
            )
        _check_platform_claims(debug, tcb_status)
        body = [
            SIMULATED_QUOTE_VERSION,
            bytes(measurement),
            report_data,
            self._spki,
            debug,
            tcb_status,
        ]
        signature = self._signing_key.sign(
            SIMULATED_MARKER + cbor2.dumps(body), ec.ECDSA(hashes.SHA256())
        )
        return SIMULATED_MARKER + cbor2.dumps([*body, signature])

    def sealing_key(self, measurement: bytes, label: bytes) -> bytes:
        """HKDF(platform secret, salt=measurement, info=label): 32 bytes."""
        return HKDF(
            algorithm=hashes.SHA256(),
            length=SEALING_KEY_SIZE,
            salt=bytes(measurement),
            info=_SEAL_INFO + bytes(label),
        ).derive(self._sealing_secret)


def _check_platform_claims(debug: bool, tcb_status: str) -> None:
    if not isinstance(debug, bool):
        raise ConfigError(f"simulated debug flag: expected a bool, got {type(debug).__name__}")
    if tcb_status not in INTEL_TCB_STATUSES:
        raise ConfigError(
            f"simulated tcb_status: expected one of {sorted(INTEL_TCB_STATUSES)}, "
            f"got {tcb_status!r}"
        )


class SimulatedTee:
    """Evidence provider for the simulated backend: one measured program on one platform.

    Parameters
    ----------
    platform
        The simulated platform whose key signs the quotes.
    measurement
        32 bytes, usually :func:`sealfl.tee.measure_code`.
    debug
        State that the simulated enclave is a debug one; a policy without ``allow_debug``
        refuses its evidence, as it would a real debug enclave.
    tcb_status
        The TCB status the platform states (one of Intel's names, ``Revoked`` included); a policy
        refuses it unless the status is in its ``tcb_statuses``.

    Raises
    ------
    ConfigError
        If the measurement is not 32 bytes or a platform claim is not valid.
    """

    backend: ClassVar[str] = "simulated"

    def __init__(
        self,
        platform: SimulatedPlatform,
        measurement: bytes,
        *,
        debug: bool = False,
        tcb_status: str = DEFAULT_TCB_STATUS,
    ) -> None:
        if len(measurement) != MEASUREMENT_SIZE:
            raise ConfigError(
                f"simulated measurement must be {MEASUREMENT_SIZE} bytes, got {len(measurement)}"
            )
        _check_platform_claims(debug, tcb_status)
        self._platform = platform
        self.measurement = bytes(measurement)
        self.debug = debug
        self.tcb_status = tcb_status

    @property
    def platform(self) -> SimulatedPlatform:
        """The platform whose key signs this TEE's quotes."""
        return self._platform

    def quote(self, report_data: bytes) -> bytes:
        """Return a simulated quote, and log that it is one."""
        warn_simulated("generating", self._platform.fingerprint, self.measurement)
        return self._platform.sign_quote(
            self.measurement, report_data, debug=self.debug, tcb_status=self.tcb_status
        )

    def derive_sealing_key(self, label: bytes) -> bytes:
        """HKDF(platform secret, measurement, label): other code or label, other key."""
        return self._platform.sealing_key(self.measurement, label)


@dataclass(frozen=True)
class SimulatedQuote:
    """A parsed simulated quote whose signature has been checked against its embedded key."""

    measurement: bytes
    report_data: bytes
    platform_fingerprint: str
    debug: bool = False
    tcb_status: str = DEFAULT_TCB_STATUS

    @property
    def measurements(self) -> dict[str, str]:
        """The quote's identity and platform claims as verdicts and inspections report them."""
        return {
            "measurement": self.measurement.hex(),
            "platform": self.platform_fingerprint,
            "debug": "true" if self.debug else "false",
            "tcb_status": self.tcb_status,
        }


def is_simulated_quote(quote: bytes) -> bool:
    """Tell whether ``quote`` carries the simulated marker."""
    return bytes(quote[: len(SIMULATED_MARKER)]) == SIMULATED_MARKER


def _field(body: Sequence[Any], index: int, name: str, size: int | None) -> bytes:
    value = body[index]
    if not isinstance(value, bytes):
        raise AttestationError(
            f"simulated quote field {name}: expected bytes, got {type(value).__name__}"
        )
    if size is not None and len(value) != size:
        raise AttestationError(
            f"simulated quote field {name}: expected {size} bytes, got {len(value)}"
        )
    return value


def verify_simulated_quote(quote: bytes) -> SimulatedQuote:
    """Parse ``quote`` and check its signature with the platform key it names.

    Which platforms to trust is the policy's decision (by fingerprint), not this function's.

    Raises
    ------
    AttestationError
        If the marker, structure, version or signature is wrong.
    """
    if not is_simulated_quote(quote):
        raise AttestationError("not a simulated quote: the SIMULATED marker is missing")
    decoded = loads_exact(bytes(quote[len(SIMULATED_MARKER) :]), "simulated quote")
    if not isinstance(decoded, list | tuple) or not decoded:
        shape = "an empty list" if isinstance(decoded, list | tuple) else type(decoded).__name__
        raise AttestationError(f"simulated quote: expected a CBOR array, got {shape}")
    if decoded[0] != SIMULATED_QUOTE_VERSION:
        raise AttestationError(
            f"simulated quote version: expected {SIMULATED_QUOTE_VERSION}, got {decoded[0]!r}"
        )
    if len(decoded) != _QUOTE_ITEMS:
        raise AttestationError(
            f"simulated quote: expected a CBOR array of {_QUOTE_ITEMS} items, got {len(decoded)}"
        )
    measurement = _field(decoded, 1, "measurement", MEASUREMENT_SIZE)
    report_data = _field(decoded, 2, "report_data", REPORT_DATA_SIZE)
    spki = _field(decoded, 3, "platform_key", None)
    debug, tcb_status = decoded[4], decoded[5]
    if not isinstance(debug, bool):
        raise AttestationError(
            f"simulated quote field debug: expected a bool, got {type(debug).__name__}"
        )
    if not isinstance(tcb_status, str) or tcb_status not in INTEL_TCB_STATUSES:
        raise AttestationError(
            f"simulated quote field tcb_status: expected one of {sorted(INTEL_TCB_STATUSES)}, "
            f"got {tcb_status!r}"
        )
    signature = _field(decoded, 6, "signature", None)
    try:
        public_key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AttestationError(f"simulated quote platform_key is not a public key: {exc}") from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise AttestationError("simulated quote platform_key: expected an EC P-256 key")
    signed = SIMULATED_MARKER + cbor2.dumps(decoded[: _QUOTE_ITEMS - 1])
    try:
        public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise AttestationError(
            "simulated quote signature does not verify with the platform key it carries"
        ) from exc
    return SimulatedQuote(
        measurement=measurement,
        report_data=report_data,
        platform_fingerprint=_fingerprint(spki),
        debug=debug,
        tcb_status=tcb_status,
    )

"""SGX evidence inside a Gramine enclave, through its ``/dev/attestation`` pseudo-files.

Gramine produces a DCAP quote when the enclave writes 64 bytes to ``user_report_data`` and then
reads ``quote``. The pair is not atomic, so this module serialises it within the process and
checks that the quote it got back carries the report_data it wrote (another writer in between
would change it).

Sealing keys come from Gramine's ``keys/`` pseudo-files, chosen by ``sealing_key``:

``"mrenclave"`` (default): ``keys/_sgx_mrenclave``
    Bound to this exact enclave build. Any change to code, manifest or trusted files gives a new
    key, so data sealed by one build cannot be read by the next: the safe choice when nothing
    must survive an upgrade (or the key broker re-provisions it).
``"mrsigner"``: ``keys/_sgx_mrsigner``
    Bound to the signing key and ``isv_prod_id``, so a rebuild signed by the same key for the
    same role can read what the previous build sealed. Gramine requests it at the enclave's
    own ISVSVN and CPUSVN, so raising ``isv_svn`` (or a microcode update) changes the key too.
    Every enclave the signer signs for that product id shares it: use it only with one signer
    per deployment and one ``isv_prod_id`` per role (see :mod:`sealfl.tee.sigstruct`).

The root directory is a parameter so tests can point it at a fake tree.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar, Literal, get_args

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee.evidence import (
    SEALING_KEY_SIZE,
    check_generated_quote,
    check_report_data,
    write_pseudo_file,
)

DEFAULT_ROOT = Path("/dev/attestation")
_SEAL_INFO = b"sealfl sgx sealing key v1\x00"
_MAX_QUOTE_SIZE = 64 * 1024

SealingKeyPolicy = Literal["mrenclave", "mrsigner"]


class GramineSgx:
    """Evidence provider for SGX enclaves run by Gramine (``sgx.remote_attestation = "dcap"``).

    Parameters
    ----------
    root
        Gramine's attestation directory (a fake tree in tests).
    sealing_key
        ``"mrenclave"`` or ``"mrsigner"``: which Gramine key :meth:`derive_sealing_key` starts
        from (module docstring: what each survives).

    Raises
    ------
    ConfigError
        If ``sealing_key`` is neither.
    """

    backend: ClassVar[str] = "sgx"
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, root: Path = DEFAULT_ROOT, *, sealing_key: SealingKeyPolicy = "mrenclave"
    ) -> None:
        if sealing_key not in get_args(SealingKeyPolicy):
            raise ConfigError(
                f"GramineSgx sealing_key: expected one of {list(get_args(SealingKeyPolicy))}, "
                f"got {sealing_key!r}"
            )
        self.root = Path(root)
        self.sealing_key: SealingKeyPolicy = sealing_key

    def _read(self, name: str, limit: int) -> bytes:
        path = self.root / name
        try:
            with path.open("rb") as handle:
                return handle.read(limit)
        except OSError as exc:
            raise AttestationError(
                f"cannot read {path}: {exc.strerror or exc} (is this process running inside a "
                "Gramine SGX enclave with remote attestation enabled?)"
            ) from exc

    def _check_attestation_type(self) -> None:
        path = self.root / "attestation_type"
        if not path.exists():
            return
        kind = self._read("attestation_type", 64).strip(b"\x00\n ").decode(errors="replace")
        if kind != "dcap":
            raise AttestationError(
                f"{path}: expected 'dcap', found {kind!r}; set sgx.remote_attestation = \"dcap\" "
                "in the Gramine manifest"
            )

    def quote(self, report_data: bytes) -> bytes:
        """Write ``report_data``, read back the DCAP quote, and check it carries that data.

        Raises
        ------
        AttestationError
            If the pseudo-files are missing, attestation is not DCAP, or the quote carries other
            report_data (a concurrent writer).
        """
        data = check_report_data(report_data)
        self._check_attestation_type()
        target = self.root / "user_report_data"
        with self._lock:
            try:
                write_pseudo_file(target, data)
            except OSError as exc:
                raise AttestationError(
                    f"cannot write {target}: {exc.strerror or exc} (not inside a Gramine enclave?)"
                ) from exc
            quote = self._read("quote", _MAX_QUOTE_SIZE)
        return check_generated_quote(quote, tee="sgx", report_data=data, source=self.root / "quote")

    def derive_sealing_key(self, label: bytes) -> bytes:
        """HKDF over Gramine's ``keys/_sgx_<sealing_key>`` and ``label``.

        Raises
        ------
        AttestationError
            If the key file is missing or empty.
        """
        name = f"keys/_sgx_{self.sealing_key}"
        secret = self._read(name, 1024)
        if not secret:
            raise AttestationError(f"{self.root / name} is empty")
        return HKDF(
            algorithm=hashes.SHA256(), length=SEALING_KEY_SIZE, salt=None, info=_SEAL_INFO + label
        ).derive(secret)

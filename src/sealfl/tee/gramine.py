"""SGX evidence inside a Gramine enclave, through its ``/dev/attestation`` pseudo-files.

Gramine produces a DCAP quote when the enclave writes 64 bytes to ``user_report_data`` and then
reads ``quote``. The pair is not atomic, so this module serialises it within the process and
checks that the quote it got back carries the report_data it wrote (another writer in between
would change it). ``keys/_sgx_mrenclave`` is Gramine's MRENCLAVE-bound sealing key.

The root directory is a parameter so tests can point it at a fake tree.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import AttestationError
from sealfl.tee.evidence import (
    SEALING_KEY_SIZE,
    check_generated_quote,
    check_report_data,
    write_pseudo_file,
)

DEFAULT_ROOT = Path("/dev/attestation")
_SEAL_INFO = b"sealfl sgx sealing key v1\x00"
_MAX_QUOTE_SIZE = 64 * 1024


class GramineSgx:
    """Evidence provider for SGX enclaves run by Gramine (``sgx.remote_attestation = "dcap"``)."""

    backend: ClassVar[str] = "sgx"
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

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
        """HKDF over Gramine's MRENCLAVE-bound key ``keys/_sgx_mrenclave`` and ``label``.

        Raises
        ------
        AttestationError
            If the key file is missing or empty.
        """
        secret = self._read("keys/_sgx_mrenclave", 1024)
        if not secret:
            raise AttestationError(f"{self.root / 'keys/_sgx_mrenclave'} is empty")
        return HKDF(
            algorithm=hashes.SHA256(), length=SEALING_KEY_SIZE, salt=None, info=_SEAL_INFO + label
        ).derive(secret)

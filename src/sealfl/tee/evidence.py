"""The contract every evidence backend fulfils, and the checks they share.

An *evidence provider* turns 64 bytes of ``report_data`` into evidence that a verifier can
check: a real SGX or TDX quote, or a simulated one. The caller chooses ``report_data`` so the
evidence vouches for something it made inside the TEE (in RA-TLS: the hash of the claims that
hold the certificate's public key). A provider also derives sealing keys bound to its identity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from sealfl.errors import AttestationError

#: Size of the ``report_data`` field of SGX reports and TDX TD reports.
REPORT_DATA_SIZE = 64
#: Size of a derived sealing key (AES-256).
SEALING_KEY_SIZE = 32

Backend = Literal["simulated", "sgx", "tdx"]


@runtime_checkable
class EvidenceProvider(Protocol):
    """A source of evidence inside one TEE (or a simulated one).

    Attributes
    ----------
    backend
        ``"simulated"``, ``"sgx"`` or ``"tdx"``: which verifier path the evidence needs.
    """

    @property
    def backend(self) -> str:
        """``"simulated"``, ``"sgx"`` or ``"tdx"`` (a class constant in every backend)."""
        ...

    def quote(self, report_data: bytes) -> bytes:
        """Return evidence whose signed report carries exactly ``report_data`` (64 bytes).

        Raises
        ------
        AttestationError
            If the TEE cannot produce evidence, or produced it for other ``report_data``.
        """
        ...

    def derive_sealing_key(self, label: bytes) -> bytes:
        """Return 32 bytes bound to this TEE identity and to ``label``.

        The same code on the same platform gets the same key back, so data sealed by one
        run can be unsealed by the next; different code or a different label gets another key.

        Raises
        ------
        AttestationError
            If this TEE has no local sealing key (TDX: keys come from a key broker).
        """
        ...


def check_report_data(report_data: bytes) -> bytes:
    """Return ``report_data`` as bytes after checking it is exactly 64 bytes.

    Raises
    ------
    AttestationError
        If it is not bytes of length 64.
    """
    if not isinstance(report_data, bytes | bytearray | memoryview):
        raise AttestationError(f"report_data must be bytes, got {type(report_data).__name__}")
    data = bytes(report_data)
    if len(data) != REPORT_DATA_SIZE:
        raise AttestationError(f"report_data must be {REPORT_DATA_SIZE} bytes, got {len(data)}")
    return data


def check_generated_quote(quote: bytes, *, tee: str, report_data: bytes, source: Path) -> bytes:
    """Return ``quote`` after checking that the TEE made it for this TEE type and ``report_data``.

    A quote for other ``report_data`` means another user of the same interface wrote in between
    (both Gramine's ``/dev/attestation`` and a configfs-tsm entry are shared by a process).

    Raises
    ------
    AttestationError
        If the quote is from another TEE type or carries other ``report_data``, naming ``source``.
    """
    from sealfl.tee.dcap import parse_quote_report  # dcap imports the simulated backend

    report = parse_quote_report(quote)
    if report.tee != tee:
        article = "an" if tee == "sgx" else "a"
        raise AttestationError(
            f"{source}: expected {article} {tee.upper()} quote, got {report.tee}"
        )
    if report.report_data != report_data:
        raise AttestationError(
            f"{source}: report_data expected {report_data.hex()}, found "
            f"{report.report_data.hex()} (another writer used this interface concurrently)"
        )
    return quote


def write_pseudo_file(path: Path, data: bytes) -> None:
    """Write ``data`` to an existing kernel or Gramine pseudo-file, as its drivers expect.

    Opened write-only without creating or truncating (a missing file means the TEE interface is
    absent, not that one should be made), and written until every byte is accepted.

    Raises
    ------
    OSError
        If the file cannot be opened or written.
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)

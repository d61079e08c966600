"""Fake Gramine ``/dev/attestation`` and configfs-tsm trees that answer like the real ones.

The quote pseudo-file is a FIFO: each time a provider opens it to read, a thread of this module
takes the report_data the provider has just written and answers with a real quote vector whose
report_data field is replaced by it. The signature no longer matches, so a verifier refuses the
quote, but everything a party does before verification (choose a provider, ask for evidence,
check that the quote carries its report_data, build an RA-TLS certificate) runs as on hardware.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

SGX_REPORT_DATA_OFFSET = 48 + 320  # quote header, then the report body's report_data
TDX_REPORT_DATA_OFFSET = 48 + 520  # quote header, then the TD report body's report_data


class QuoteResponder:
    """Answer each write to ``source`` with ``template`` carrying it, on the next read of ``fifo``.

    Both files are FIFOs, so every exchange is one write then one read, as with the kernel's
    and Gramine's pseudo-files: the provider's write blocks until this thread reads it.
    """

    def __init__(self, fifo: Path, source: Path, template: bytes, offset: int) -> None:
        self._fifo, self._source, self._template, self._offset = fifo, source, template, offset
        self.answered = 0
        os.mkfifo(source)
        os.mkfifo(fifo)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-quote")
        self._thread.start()

    def _serve(self) -> None:
        while True:
            with self._source.open("rb") as source:
                report_data = source.read()
            if not report_data:
                return  # closed without data: the test is done
            quote = bytearray(self._template)
            quote[self._offset : self._offset + 64] = report_data[:64]
            with self._fifo.open("wb") as out:
                out.write(bytes(quote))
            self.answered += 1

    def close(self) -> None:
        """Stop answering (an empty write ends the thread)."""
        fd = os.open(self._source, os.O_WRONLY)
        os.close(fd)
        self._thread.join(timeout=5)


def gramine_tree(root: Path, sgx_quote: bytes) -> QuoteResponder:
    """Lay out ``root`` like Gramine's /dev/attestation (DCAP) and answer its quote file."""
    (root / "keys").mkdir(parents=True)
    (root / "attestation_type").write_text("dcap")
    (root / "keys" / "_sgx_mrenclave").write_bytes(b"mrenclave-key-16")
    (root / "keys" / "_sgx_mrsigner").write_bytes(b"mrsigner-key--16")
    return QuoteResponder(
        root / "quote", root / "user_report_data", sgx_quote, SGX_REPORT_DATA_OFFSET
    )


def tsm_tree(root: Path, tdx_quote: bytes, entry: str) -> QuoteResponder:
    """Lay out ``root`` like configfs-tsm's report directory, with ``entry`` made in advance.

    (The kernel makes an entry's files when the directory is created; a plain directory cannot,
    so the entry a provider will use is prepared here.)
    """
    directory = root / entry
    directory.mkdir(parents=True)
    (directory / "provider").write_text("tdx_guest\n")
    (directory / "generation").write_text("1\n")
    return QuoteResponder(
        directory / "outblob", directory / "inblob", tdx_quote, TDX_REPORT_DATA_OFFSET
    )

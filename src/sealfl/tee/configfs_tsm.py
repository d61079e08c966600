"""TDX evidence through Linux configfs-tsm (``/sys/kernel/config/tsm/report``).

Protocol (Documentation/ABI/testing/configfs-tsm): make a report entry directory, check its
``provider`` is ``tdx_guest``, write 64 bytes to ``inblob``, read ``generation``, read the quote
from ``outblob``, read ``generation`` again. Each write to the entry bumps ``generation``, so a
changed value means another writer used the same entry between our write and our read; the
quote is then refused rather than trusted. The quote's report_data is also compared with ours.

The root directory is a parameter so tests can point it at a fake tree.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import ClassVar

from sealfl.errors import AttestationError
from sealfl.tee.evidence import check_generated_quote, check_report_data, write_pseudo_file

DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")
_EXPECTED_PROVIDER = "tdx_guest"
_MAX_QUOTE_SIZE = 64 * 1024


class TdxConfigfs:
    """Evidence provider for TDX guests using configfs-tsm.

    Parameters
    ----------
    root
        The configfs-tsm report directory.
    entry
        Name of the report entry to use (created if absent); defaults to one per process.
    """

    backend: ClassVar[str] = "tdx"
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, root: Path = DEFAULT_ROOT, *, entry: str | None = None) -> None:
        self.root = Path(root)
        self.entry = entry or f"sealfl-{os.getpid()}"
        if "/" in self.entry or self.entry in {"", ".", ".."}:
            raise AttestationError(f"configfs-tsm entry name must be a plain name, got {entry!r}")

    @property
    def directory(self) -> Path:
        """The report entry directory."""
        return self.root / self.entry

    def _read(self, name: str, limit: int = 4096) -> bytes:
        path = self.directory / name
        try:
            with path.open("rb") as handle:
                return handle.read(limit)
        except OSError as exc:
            raise AttestationError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def _generation(self) -> int:
        text = self._read("generation").strip()
        try:
            return int(text)
        except ValueError as exc:
            raise AttestationError(
                f"{self.directory / 'generation'}: expected an integer, found {text!r}"
            ) from exc

    def _open_entry(self) -> None:
        if not self.root.is_dir():
            raise AttestationError(
                f"{self.root} does not exist: configfs-tsm is not available (not a TDX guest, or "
                "configfs not mounted)"
            )
        try:
            self.directory.mkdir(exist_ok=True)
        except OSError as exc:
            raise AttestationError(f"cannot create report entry {self.directory}: {exc}") from exc
        provider = self._read("provider").strip().decode(errors="replace")
        if provider != _EXPECTED_PROVIDER:
            raise AttestationError(
                f"{self.directory / 'provider'}: expected {_EXPECTED_PROVIDER!r}, "
                f"found {provider!r}"
            )

    def quote(self, report_data: bytes) -> bytes:
        """Produce a TDX quote over ``report_data``, refusing one a concurrent writer touched.

        Raises
        ------
        AttestationError
            If configfs-tsm is missing, the provider is not TDX, ``generation`` changed during
            the read, or the quote carries other report_data.
        """
        data = check_report_data(report_data)
        with self._lock:
            self._open_entry()
            inblob = self.directory / "inblob"
            try:
                write_pseudo_file(inblob, data)
            except OSError as exc:
                raise AttestationError(f"cannot write {inblob}: {exc.strerror or exc}") from exc
            before = self._generation()
            quote = self._read("outblob", _MAX_QUOTE_SIZE)
            after = self._generation()
        if after != before:
            raise AttestationError(
                f"{self.directory / 'generation'}: was {before} after writing inblob but {after} "
                "after reading outblob; another writer used this report entry concurrently"
            )
        return check_generated_quote(
            quote, tee="tdx", report_data=data, source=self.directory / "outblob"
        )

    def derive_sealing_key(self, label: bytes) -> bytes:
        """TDX has no local sealing key: always raises.

        Raises
        ------
        AttestationError
            Always; a TD gets sealing keys from a key broker that verifies its evidence
            (:mod:`sealfl.seal`).
        """
        raise AttestationError(
            "TDX has no local sealing key (unlike SGX's MRENCLAVE key): obtain the key from a "
            "key broker that verifies this TD's RA-TLS evidence (sealfl.seal)"
        )

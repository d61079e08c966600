"""The outcome of appraising evidence: accepted or refused, and everything that led there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sealfl.errors import AttestationError


@dataclass(frozen=True)
class Verdict:
    """What a verifier concluded about one piece of evidence.

    A verdict is a report, suitable for printing; code that must *act* on evidence calls
    :meth:`raise_if_refused` (or :meth:`sealfl.tee.Verifier.verify`, which does).

    Attributes
    ----------
    accepted
        True only if the evidence is genuine and the policy accepts it.
    reasons
        Why it was refused (empty when accepted), one line per failed check.
    backend
        ``"sgx"``, ``"tdx"``, ``"simulated"`` or ``"unknown"`` (unparseable evidence).
    tcb_status, advisories
        The platform's TCB appraisal (``None`` when the signature chain did not verify).
    measurements
        Report-body fields, hex or decimal strings (empty when unparseable).
    report_data
        The 64 bytes the evidence vouches for (``None`` when unparseable).
    """

    accepted: bool
    reasons: tuple[str, ...]
    backend: str
    quote_version: int | None = None
    tcb_status: str | None = None
    advisories: tuple[str, ...] = ()
    measurements: Mapping[str, str] = field(default_factory=dict)
    report_data: bytes | None = None
    debug: bool | None = None
    platform_flags: Mapping[str, str] = field(default_factory=dict)

    def raise_if_refused(self) -> None:
        """Raise :class:`AttestationError` listing the reasons, unless the verdict is accepted.

        Raises
        ------
        AttestationError
            If the evidence was refused.
        """
        if not self.accepted:
            raise AttestationError(
                f"{self.backend} evidence refused: " + "; ".join(self.reasons or ("no reason",))
            )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary (bytes as hex)."""
        return {
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "backend": self.backend,
            "quote_version": self.quote_version,
            "tcb_status": self.tcb_status,
            "advisories": list(self.advisories),
            "measurements": dict(self.measurements),
            "report_data": None if self.report_data is None else self.report_data.hex(),
            "debug": self.debug,
            "platform_flags": dict(self.platform_flags),
        }

"""Real SGX / TDX DCAP quotes: parsing and signature-chain verification with ``dcap-qvl``.

Hazardous layer: :func:`verify_dcap_quote` checks that a quote is genuine (PCK chain up to the
pinned Intel root, CRLs, TCB info and QE identity from the collateral, at an explicit time) and
reports the platform's TCB status; it does *not* decide whether that status, or the enclave's
measurements, are acceptable. :class:`sealfl.tee.Verifier` applies a policy on top.

Supported: SGX quote v3; TDX quote v4 and v5.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcap_qvl
from cryptography import x509

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee.simulated import is_simulated_quote

_HEADER_SIZE = 48
_SGX_ISV_PROD_ID_OFFSET = _HEADER_SIZE + 256
_SGX_ISV_SVN_OFFSET = _HEADER_SIZE + 258
_SGX_DEBUG_FLAG = 0x02  # SGX_FLAGS_DEBUG, byte 0 of ATTRIBUTES.flags
_TDX_DEBUG_FLAG = 0x01  # TUD.DEBUG, bit 0 of TD_ATTRIBUTES
SUPPORTED_VERSIONS: Mapping[str, frozenset[int]] = {
    "sgx": frozenset({3}),
    "tdx": frozenset({4, 5}),
}


@dataclass(frozen=True)
class ValidityWindow:
    """When one item of collateral may be used: ``not_before <= t <= not_after`` (unix seconds).

    ``start_field`` names where ``not_before`` comes from (``issueDate`` for TCB info and QE
    identity, ``thisUpdate`` for a CRL); ``not_after`` is always the item's ``nextUpdate``.
    """

    item: str
    not_before: float
    not_after: float
    start_field: str


def _unix(moment: datetime.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _signed_json_window(item: str, text: str) -> ValidityWindow:
    document = json.loads(text)
    return ValidityWindow(
        item=item,
        not_before=_unix(datetime.datetime.fromisoformat(document["issueDate"])),
        not_after=_unix(datetime.datetime.fromisoformat(document["nextUpdate"])),
        start_field="issueDate",
    )


def _crl_window(item: str, der: bytes) -> ValidityWindow:
    crl = x509.load_der_x509_crl(bytes(der))
    if crl.next_update_utc is None:
        # Without nextUpdate a CRL never says it is stale: refuse it rather than trust it forever.
        raise ValueError(f"{item} has no nextUpdate")
    return ValidityWindow(
        item=item,
        not_before=_unix(crl.last_update_utc),
        not_after=_unix(crl.next_update_utc),
        start_field="thisUpdate",
    )


class Collateral:
    """Intel PCS collateral (CRLs, TCB info, QE identity) in dcap-qvl's ``QuoteCollateralV3`` JSON.

    Collateral is valid only inside a time window (:meth:`validity`): the intersection of the
    TCB info's and QE identity's ``issueDate``..``nextUpdate`` and the PCK CRL's and root CA
    CRL's ``thisUpdate``..``nextUpdate``. Verifying at a time outside it fails.
    """

    def __init__(self, inner: Any, *, source: str) -> None:
        self._inner = inner
        self.source = source
        try:
            tcb_info = json.loads(inner.tcb_info)
            self.tee = str(tcb_info["id"]).lower()
            self.fmspc = str(tcb_info["fmspc"]).upper()
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"collateral {source}: tcb_info lacks its id/fmspc fields ({exc})"
            ) from exc
        try:
            self._windows = (
                _signed_json_window("tcb_info", inner.tcb_info),
                _signed_json_window("qe_identity", inner.qe_identity),
                _crl_window("pck_crl", inner.pck_crl),
                _crl_window("root_ca_crl", inner.root_ca_crl),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"collateral {source}: cannot read its validity dates (tcb_info/qe_identity "
                f"issueDate and nextUpdate, CRL thisUpdate and nextUpdate): {exc}"
            ) from exc

    def validity_windows(self) -> tuple[ValidityWindow, ...]:
        """Return the windows of ``tcb_info``, ``qe_identity``, ``pck_crl`` and ``root_ca_crl``."""
        return self._windows

    def validity(self) -> tuple[float, float]:
        """Return ``(not_before, not_after)`` in unix seconds: when every item is valid at once.

        Unsigned dates read for choosing and caching; dcap-qvl checks the signed ones again.
        """
        return (
            max(w.not_before for w in self._windows),
            min(w.not_after for w in self._windows),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> Collateral:
        """Parse collateral JSON.

        Raises
        ------
        ConfigError
            If the text is not collateral JSON.
        """
        try:
            inner = dcap_qvl.QuoteCollateralV3.from_json(text)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"collateral {source}: not QuoteCollateralV3 JSON ({exc})") from exc
        return cls(inner, source=source)

    @classmethod
    def load(cls, path: Path) -> Collateral:
        """Read collateral JSON from ``path``.

        Raises
        ------
        ConfigError
            If the file cannot be read or is not collateral JSON.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read collateral {path}: {exc}") from exc
        return cls.from_json(text, source=str(path))

    @property
    def raw(self) -> Any:
        """The underlying ``dcap_qvl.QuoteCollateralV3``."""
        return self._inner

    def __repr__(self) -> str:
        return f"Collateral({self.tee} FMSPC {self.fmspc} from {self.source})"


def quote_fmspc(quote: bytes) -> str:
    """Return the FMSPC (platform family, upper-case hex) named by a quote's PCK certificate.

    Raises
    ------
    AttestationError
        If the quote carries no readable PCK certificate.
    """
    try:
        return str(dcap_qvl.parse_quote(bytes(quote)).fmspc()).upper()
    except ValueError as exc:
        raise AttestationError(
            f"cannot read the FMSPC from the quote's PCK certificate: {exc}"
        ) from exc


def select_collateral(quote: bytes, tee: str, available: Sequence[Collateral]) -> Collateral:
    """Pick the collateral for the quote's platform family (TCB info is per FMSPC).

    The choice uses unsigned labels only to select; dcap-qvl then verifies the signatures.

    Raises
    ------
    AttestationError
        If none of ``available`` is for this TEE and FMSPC.
    """
    fmspc = quote_fmspc(quote)
    for candidate in available:
        if candidate.tee == tee and candidate.fmspc == fmspc:
            return candidate
    have = ", ".join(f"{c.tee.upper()} {c.fmspc}" for c in available) or "none"
    raise AttestationError(
        f"no collateral for {tee.upper()} FMSPC {fmspc}: expected one of the given collateral "
        f"to match, have {have}"
    )


@dataclass(frozen=True)
class QuoteReport:
    """The fields of a quote's report body, as parsed (not yet verified).

    ``measurements`` maps names to lower-case hex (digests, attributes) or decimal (SVNs, ids).
    Hex fields are the bytes as they appear in the report, so 8-byte attribute fields read
    least significant byte first. TDX (TD report of quote v4, and v5's TD report 1.0/1.5):
    ``tee_tcb_svn``, ``mr_seam``, ``mr_signer_seam``, ``seam_attributes``, ``td_attributes``,
    ``xfam``, ``mr_td``, ``mr_config_id``, ``mr_owner``, ``mr_owner_config``, ``rtmr0`` ..
    ``rtmr3``. SGX: ``mr_enclave``, ``mr_signer``, ``isv_prod_id``, ``isv_svn``,
    ``attributes``, ``cpu_svn``.
    """

    tee: str
    version: int
    measurements: Mapping[str, str]
    report_data: bytes
    debug: bool


@dataclass(frozen=True)
class DcapResult:
    """A quote whose signature chain verified, with the platform's TCB appraisal."""

    report: QuoteReport
    tcb_status: str
    advisories: tuple[str, ...]
    platform_flags: Mapping[str, str]


def parse_quote_report(quote: bytes) -> QuoteReport:
    """Parse the header and report body of a real SGX or TDX quote without verifying it.

    Raises
    ------
    AttestationError
        If the quote is simulated, malformed, or of an unsupported version.
    """
    if is_simulated_quote(quote):
        raise AttestationError(
            "quote carries the SIMULATED marker: simulated evidence is never accepted as a "
            "real SGX/TDX quote"
        )
    try:
        parsed = dcap_qvl.parse_quote(bytes(quote))
    except ValueError as exc:
        raise AttestationError(f"not a DCAP quote: {exc}") from exc
    version = int(parsed.header.version)
    body = parsed.report
    if parsed.is_sgx():
        tee = "sgx"
        attributes = bytes(body.attributes)
        measurements = {
            "mr_enclave": bytes(body.mr_enclave).hex(),
            "mr_signer": bytes(body.mr_signer).hex(),
            "isv_prod_id": str(int.from_bytes(quote[_SGX_ISV_PROD_ID_OFFSET:][:2], "little")),
            "isv_svn": str(int.from_bytes(quote[_SGX_ISV_SVN_OFFSET:][:2], "little")),
            "attributes": attributes.hex(),
            "cpu_svn": bytes(body.cpu_svn).hex(),
        }
        debug = bool(attributes[0] & _SGX_DEBUG_FLAG)
    else:
        tee = "tdx"
        td_attributes = bytes(body.td_attributes)
        measurements = {
            "mr_td": bytes(body.mr_td).hex(),
            "rtmr0": bytes(body.rt_mr0).hex(),
            "rtmr1": bytes(body.rt_mr1).hex(),
            "rtmr2": bytes(body.rt_mr2).hex(),
            "rtmr3": bytes(body.rt_mr3).hex(),
            "td_attributes": td_attributes.hex(),
            "mr_seam": bytes(body.mr_seam).hex(),
            "mr_signer_seam": bytes(body.mr_signer_seam).hex(),
            "seam_attributes": bytes(body.seam_attributes).hex(),
            "mr_config_id": bytes(body.mr_config_id).hex(),
            "mr_owner": bytes(body.mr_owner).hex(),
            "mr_owner_config": bytes(body.mr_owner_config).hex(),
            "xfam": bytes(body.xfam).hex(),
            "tee_tcb_svn": bytes(body.tee_tcb_svn).hex(),
        }
        debug = bool(td_attributes[0] & _TDX_DEBUG_FLAG)
    if version not in SUPPORTED_VERSIONS[tee]:
        raise AttestationError(
            f"{tee.upper()} quote version {version} is not supported; expected one of "
            f"{sorted(SUPPORTED_VERSIONS[tee])}"
        )
    return QuoteReport(
        tee=tee,
        version=version,
        measurements=measurements,
        report_data=bytes(body.report_data),
        debug=debug,
    )


def verify_dcap_quote(
    quote: bytes, collateral: Collateral, *, now: float, root_ca_der: bytes | None = None
) -> DcapResult:
    """Verify ``quote`` against ``collateral`` at unix time ``now``.

    Parameters
    ----------
    root_ca_der
        Trust anchor to pin; ``None`` uses the Intel SGX Root CA built into dcap-qvl.

    Raises
    ------
    AttestationError
        If the quote is not genuine at ``now``: bad signature anywhere in the chain, revoked or
        expired certificates, collateral outside its window, or a TCB matching no level.
    """
    report = parse_quote_report(quote)
    seconds = int(now)
    try:
        verifier = dcap_qvl.QuoteVerifier(root_ca_der)
        # claims_only: the signature chain and collateral are checked in full, but the TCB
        # status and platform flags are returned for our own policy instead of judged here.
        claims = verifier.verify_with_policy(
            bytes(quote), collateral.raw, seconds, dcap_qvl.QuotePolicy.claims_only(seconds)
        )
        document = json.loads(claims.to_json())
    except ValueError as exc:
        raise AttestationError(
            f"DCAP verification of the {report.tee.upper()} quote failed at unix time "
            f"{seconds} with collateral {collateral.source}: {exc}"
        ) from exc
    tcb = document.get("tcb", {})
    pck = document.get("platform", {}).get("pck", {})
    return DcapResult(
        report=report,
        tcb_status=str(tcb.get("status", "Unknown")),
        advisories=tuple(str(a) for a in tcb.get("advisory_ids", [])),
        platform_flags={
            "dynamic_platform": str(pck.get("dynamic_platform", "Undefined")),
            "cached_keys": str(pck.get("cached_keys", "Undefined")),
            "smt_enabled": str(pck.get("smt_enabled", "Undefined")),
        },
    )

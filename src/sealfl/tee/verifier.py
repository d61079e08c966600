"""Appraise evidence against a policy: signature first, then identity and platform rules.

A :class:`Verifier` combines a :class:`~sealfl.tee.Policy` with what it needs to check real
quotes (collateral, a pinned root, the time). :meth:`Verifier.appraise` returns a
:class:`~sealfl.tee.Verdict` listing every failed rule; :meth:`Verifier.verify` raises
:class:`~sealfl.errors.AttestationError` instead of ever returning a refusal.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

from sealfl.errors import AttestationError
from sealfl.tee.collateral import CollateralSource, StaticCollateral
from sealfl.tee.dcap import (
    Collateral,
    parse_quote_report,
    verify_dcap_quote,
)
from sealfl.tee.evidence import check_report_data
from sealfl.tee.policy import Policy
from sealfl.tee.simulated import is_simulated_quote, verify_simulated_quote, warn_simulated
from sealfl.tee.verdict import Verdict

logger = logging.getLogger(__name__)


class Verifier:
    """Evidence plus policy gives a verdict.

    Parameters
    ----------
    policy
        What to accept.
    collateral
        Intel collateral for real quotes: a :class:`~sealfl.tee.collateral.CollateralSource`
        (files, a directory, a PCCS/PCS with a cache), or one or several
        :class:`~sealfl.tee.Collateral` (one per platform family, FMSPC; the one matching each
        quote is used). Collateral outside its validity window at the verification time is
        refused. Without any, every real quote is refused.
    now
        Clock returning unix seconds (injectable for tests and offline verification);
        defaults to :func:`time.time`.
    root_ca_der
        Trust anchor for real quotes; ``None`` uses the Intel SGX Root CA built into dcap-qvl.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        collateral: Collateral | Iterable[Collateral] | CollateralSource | None = None,
        now: Callable[[], float] | None = None,
        root_ca_der: bytes | None = None,
    ) -> None:
        self._policy = policy
        self._collateral: CollateralSource | None
        if collateral is None or isinstance(collateral, CollateralSource):
            self._collateral = collateral
        elif isinstance(collateral, Collateral):
            self._collateral = StaticCollateral([collateral])
        else:
            given = tuple(collateral)
            self._collateral = StaticCollateral(given) if given else None
        self._now = now or time.time
        self._root_ca_der = root_ca_der

    @property
    def policy(self) -> Policy:
        """The policy this verifier applies."""
        return self._policy

    def time(self) -> float:
        """Return the verifier's current time in unix seconds."""
        return float(self._now())

    def appraise(
        self, evidence: bytes, *, now: float | None = None, check_identity: bool = True
    ) -> Verdict:
        """Check ``evidence`` and return a verdict; never raises for bad evidence.

        Parameters
        ----------
        evidence
            A real SGX/TDX quote or a simulated quote.
        now
            Unix time to verify at; defaults to the verifier's clock.
        check_identity
            ``False`` reports on genuineness and platform rules only, ignoring the policy's
            identities (for describing evidence when no identity is known, as
            ``sealfl attest verify`` without ``--policy`` does). Never use it to admit a peer;
            :meth:`verify` always checks identities.
        """
        at = self.time() if now is None else float(now)
        if is_simulated_quote(evidence):
            return self._appraise_simulated(bytes(evidence), check_identity)
        return self._appraise_dcap(bytes(evidence), at, check_identity)

    def verify(
        self, evidence: bytes, *, report_data: bytes | None = None, now: float | None = None
    ) -> Verdict:
        """Appraise ``evidence`` and raise unless it is accepted and vouches for ``report_data``.

        Raises
        ------
        AttestationError
            With every reason the evidence was refused.
        """
        verdict = self.appraise(evidence, now=now)
        verdict.raise_if_refused()
        if report_data is not None and verdict.report_data != check_report_data(report_data):
            raise AttestationError(
                f"report_data: expected {bytes(report_data).hex()}, "
                f"found {(verdict.report_data or b'').hex()}"
            )
        return verdict

    def _appraise_simulated(self, evidence: bytes, check_identity: bool) -> Verdict:
        try:
            quote = verify_simulated_quote(evidence)
        except AttestationError as exc:
            return Verdict(accepted=False, reasons=(str(exc),), backend="simulated")
        policy = self._policy
        reasons: list[str] = []
        if not policy.allow_simulated:
            reasons.append("policy does not allow simulated evidence (allow_simulated = false)")
        else:
            if quote.platform_fingerprint not in policy.platform_fingerprints:
                reasons.append(
                    f"simulated platform {quote.platform_fingerprint} is not trusted: expected "
                    f"one of {sorted(policy.platform_fingerprints)}"
                )
            if check_identity and quote.measurement not in policy.simulated_measurements:
                reasons.append(
                    f"measurement: expected one of "
                    f"{sorted(m.hex() for m in policy.simulated_measurements)}, "
                    f"found {quote.measurement.hex()}"
                )
            # The platform states its TCB status and debug flag in the signed quote; the same
            # rules (and reason texts) as for real quotes apply, so deny rules are testable.
            reasons += policy.platform_refusals(
                tee="simulated",
                tcb_status=quote.tcb_status,
                advisories=(),
                debug=quote.debug,
                platform_flags={},
            )
        accepted = not reasons
        if accepted:
            warn_simulated("accepting", quote.platform_fingerprint, quote.measurement)
        return Verdict(
            accepted=accepted,
            reasons=tuple(reasons),
            backend="simulated",
            tcb_status=quote.tcb_status,
            measurements=quote.measurements,
            report_data=quote.report_data,
            debug=quote.debug,
        )

    def _appraise_dcap(self, evidence: bytes, at: float, check_identity: bool) -> Verdict:
        try:
            report = parse_quote_report(evidence)
        except AttestationError as exc:
            return Verdict(accepted=False, reasons=(str(exc),), backend="unknown")
        partial = Verdict(
            accepted=False,
            reasons=(),
            backend=report.tee,
            quote_version=report.version,
            measurements=report.measurements,
            report_data=report.report_data,
            debug=report.debug,
        )
        if self._collateral is None:
            return dataclasses.replace(
                partial, reasons=("no collateral given: real quotes cannot be verified",)
            )
        try:
            collateral = self._collateral.collateral_for(evidence, report.tee, at)
            result = verify_dcap_quote(evidence, collateral, now=at, root_ca_der=self._root_ca_der)
        except AttestationError as exc:
            return dataclasses.replace(partial, reasons=(str(exc),))
        reasons = self._policy.platform_refusals(
            tee=report.tee,
            tcb_status=result.tcb_status,
            advisories=result.advisories,
            debug=report.debug,
            platform_flags=result.platform_flags,
        )
        if check_identity:
            reasons += self._policy.identity_refusals(report.tee, report.measurements)
        return dataclasses.replace(
            partial,
            accepted=not reasons,
            reasons=tuple(reasons),
            tcb_status=result.tcb_status,
            advisories=result.advisories,
            platform_flags=result.platform_flags,
        )

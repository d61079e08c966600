"""Trusted execution: evidence (SGX, TDX, simulated), verification, policy, RA-TLS certificates.

Hazardous-materials layer: these are the sharp tools that :mod:`sealfl.net` and
:mod:`sealfl.seal` build on. A verifier raises :class:`sealfl.errors.AttestationError`; it never
returns False. Simulated evidence exists for development only; it is accepted solely by a policy
that allows it and names the simulated platform, and it always logs a warning.

Typical use::

    platform = SimulatedPlatform.create(tmp / "platform")
    tee = SimulatedTee(platform, measure_code({"role": "ps"}))
    creds = create_ratls_certificate(tee, claims={"paillier-pk-hash": digest})
    policy = Policy.for_simulated(measurements=[tee.measurement],
                                  platform_fingerprints=[platform.fingerprint])
    peer = verify_ratls_certificate(creds.cert_pem, Verifier(policy))
"""

from sealfl.tee.collateral import (
    CollateralSource,
    PccsCollateral,
    StaticCollateral,
    collateral_source,
)
from sealfl.tee.configfs_tsm import TdxConfigfs
from sealfl.tee.dcap import Collateral, QuoteReport, parse_quote_report
from sealfl.tee.evidence import REPORT_DATA_SIZE, EvidenceProvider
from sealfl.tee.gramine import GramineSgx
from sealfl.tee.measurement import measure_code
from sealfl.tee.policy import Policy, SgxIdentity, TdxIdentity
from sealfl.tee.policy_files import load_policy, mr_config_id_of
from sealfl.tee.ratls import (
    CertificateInspection,
    RaTlsCredentials,
    VerifiedPeer,
    create_ratls_certificate,
    inspect_ratls_certificate,
    verify_ratls_certificate,
)
from sealfl.tee.sigstruct import SigStruct, policy_from_sigstruct, read_sigstruct
from sealfl.tee.simulated import SimulatedPlatform, SimulatedTee
from sealfl.tee.verdict import Verdict
from sealfl.tee.verifier import Verifier

__all__ = [
    "REPORT_DATA_SIZE",
    "CertificateInspection",
    "Collateral",
    "CollateralSource",
    "EvidenceProvider",
    "GramineSgx",
    "PccsCollateral",
    "Policy",
    "QuoteReport",
    "RaTlsCredentials",
    "SgxIdentity",
    "SigStruct",
    "SimulatedPlatform",
    "SimulatedTee",
    "StaticCollateral",
    "TdxConfigfs",
    "TdxIdentity",
    "Verdict",
    "VerifiedPeer",
    "Verifier",
    "collateral_source",
    "create_ratls_certificate",
    "inspect_ratls_certificate",
    "load_policy",
    "measure_code",
    "mr_config_id_of",
    "parse_quote_report",
    "policy_from_sigstruct",
    "read_sigstruct",
    "verify_ratls_certificate",
]

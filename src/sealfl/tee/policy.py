"""What a verifier accepts: identities (measurements), TCB statuses, debug, simulated platforms.

A :class:`Policy` is applied to a report whose signature has already been verified. It lists
one or more acceptable identities per TEE kind; evidence is accepted when it matches *any* of
them and every platform-wide rule (TCB status, debug, platform flags) holds.

Defaults are the strict choice: only ``UpToDate`` TCBs, debug enclaves and TDs refused, dynamic
platforms and cached PCK keys refused, simulated evidence refused. Each relaxation is a named
field, so a policy file shows exactly what it lets through.

The platform rules (TCB statuses, debug) apply to simulated evidence too: a simulated platform
states a TCB status and a debug flag inside its signed quote, so a deny rule can be exercised
by real processes without SGX or TDX hardware.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sealfl.errors import ConfigError

#: TCB statuses a policy may accept (Intel's names, as dcap-qvl reports them). ``Revoked`` is
#: deliberately absent: no policy can accept a revoked platform.
KNOWN_TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
    }
)
#: Every TCB status Intel's appraisal can report, ``Revoked`` included (a simulated platform may
#: claim any of them, so that refusals can be tested).
INTEL_TCB_STATUSES = KNOWN_TCB_STATUSES | {"Revoked"}

_SGX_MEASUREMENT_SIZE = 32
_TDX_MEASUREMENT_SIZE = 48
_RTMR_COUNT = 4
_U16_MAX = 0xFFFF


def _check_digest(value: bytes | None, size: int, name: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise ConfigError(f"policy field {name}: expected {size} bytes, got {got}")
    return value


def _check_u16(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U16_MAX:
        raise ConfigError(f"policy field {name}: expected an integer 0..65535, got {value!r}")
    return value


@dataclass(frozen=True)
class SgxIdentity:
    """One acceptable SGX enclave: measurements compared exactly, ``isv_svn`` as a minimum.

    At least one of ``mr_enclave`` and ``mr_signer`` is required; an identity that pins neither
    would accept any enclave.
    """

    mr_enclave: bytes | None = None
    mr_signer: bytes | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None

    def __post_init__(self) -> None:
        _check_digest(self.mr_enclave, _SGX_MEASUREMENT_SIZE, "sgx.mr_enclave")
        _check_digest(self.mr_signer, _SGX_MEASUREMENT_SIZE, "sgx.mr_signer")
        _check_u16(self.isv_prod_id, "sgx.isv_prod_id")
        _check_u16(self.min_isv_svn, "sgx.min_isv_svn")
        if self.mr_enclave is None and self.mr_signer is None:
            raise ConfigError(
                "an SGX identity must pin mr_enclave or mr_signer (or both); "
                "one that pins neither would accept any enclave"
            )

    def mismatches(self, measurements: Mapping[str, str]) -> list[str]:
        """Return why ``measurements`` (hex / decimal strings) do not match; empty if they do."""
        found: list[str] = []
        for name, expected in (("mr_enclave", self.mr_enclave), ("mr_signer", self.mr_signer)):
            if expected is not None and measurements.get(name) != expected.hex():
                found.append(f"{name}: expected {expected.hex()}, found {measurements.get(name)}")
        if self.isv_prod_id is not None and measurements.get("isv_prod_id") != str(
            self.isv_prod_id
        ):
            found.append(
                f"isv_prod_id: expected {self.isv_prod_id}, found {measurements.get('isv_prod_id')}"
            )
        if self.min_isv_svn is not None:
            svn = int(measurements.get("isv_svn", "-1"))
            if svn < self.min_isv_svn:
                found.append(f"isv_svn: expected at least {self.min_isv_svn}, found {svn}")
        return found


#: Size of TDX ``TD_ATTRIBUTES`` and ``XFAM``.
TDX_ATTRIBUTES_SIZE = 8

#: A masked attribute check: ``(expected, mask)``, both as the 8 bytes appear in the report.
MaskedBytes = tuple[bytes, bytes]


def _check_masked(value: MaskedBytes | None, name: str) -> MaskedBytes | None:
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise ConfigError(
            f"policy field {name}: expected an (expected value, mask) pair, got {value!r}"
        )
    expected, mask = value
    _check_digest(expected, TDX_ATTRIBUTES_SIZE, name)
    _check_digest(mask, TDX_ATTRIBUTES_SIZE, f"{name}_mask")
    if not any(mask):
        raise ConfigError(
            f"policy field {name}_mask: a zero mask checks nothing; leave {name} out instead"
        )
    return value


def _masked_mismatch(name: str, pinned: MaskedBytes, found: str | None) -> str | None:
    """Return why ``found`` (hex) fails ``(value & mask) == expected & mask``; None if it passes."""
    expected, mask = pinned
    want = bytes(e & m for e, m in zip(expected, mask, strict=True))
    try:
        value = bytes.fromhex(found or "")
    except ValueError:
        value = b""
    if len(value) == len(mask) and bytes(v & m for v, m in zip(value, mask, strict=True)) == want:
        return None
    return f"{name}: expected {want.hex()} under mask {mask.hex()}, found {found}"


@dataclass(frozen=True)
class TdxIdentity:
    """One acceptable TDX trust domain: digests compared exactly, attributes under a mask.

    Why each field matters (a TD quote measures firmware and kernel, not sealfl):

    ``mr_td``, ``rtmrs``
        The initial TD memory (firmware) and the runtime registers (RTMR0..3: firmware
        configuration, kernel and command line, then whatever the guest extends). ``rtmrs`` holds
        four entries; ``None`` leaves that register unchecked.
    ``mr_config_id``, ``mr_owner``, ``mr_owner_config``
        48 bytes the host sets when it creates the TD and the TD cannot change. Pinning
        ``mr_config_id`` to the SHA-384 of a role's configuration binds that configuration to
        the quote (Trustee's "initdata" idea); the TD must still check it runs that file.
    ``mr_seam``
        The measurement of the TDX module (Intel's SEAM firmware).
    ``td_attributes``, ``xfam``
        ``(expected, mask)`` pairs of 8 bytes each, in the byte order of the report (the same
        hex ``sealfl attest verify`` prints): evidence matches when
        ``value & mask == expected & mask``. The DEBUG bit is also judged by the policy's
        ``allow_debug``.

    At least one of ``mr_td`` and the RTMRs must be pinned: the host chooses the other fields, so
    an identity pinning only them would accept any code.
    """

    mr_td: bytes | None = None
    rtmrs: tuple[bytes | None, ...] = (None, None, None, None)
    mr_config_id: bytes | None = None
    mr_owner: bytes | None = None
    mr_owner_config: bytes | None = None
    mr_seam: bytes | None = None
    td_attributes: MaskedBytes | None = None
    xfam: MaskedBytes | None = None

    def __post_init__(self) -> None:
        _check_digest(self.mr_td, _TDX_MEASUREMENT_SIZE, "tdx.mr_td")
        if len(self.rtmrs) != _RTMR_COUNT:
            raise ConfigError(
                f"tdx.rtmrs: expected {_RTMR_COUNT} entries (None for unchecked), "
                f"got {len(self.rtmrs)}"
            )
        for index, value in enumerate(self.rtmrs):
            _check_digest(value, _TDX_MEASUREMENT_SIZE, f"tdx.rtmr{index}")
        for name, digest in self._host_digests():
            _check_digest(digest, _TDX_MEASUREMENT_SIZE, f"tdx.{name}")
        _check_masked(self.td_attributes, "tdx.td_attributes")
        _check_masked(self.xfam, "tdx.xfam")
        if self.mr_td is None and all(value is None for value in self.rtmrs):
            raise ConfigError(
                "a TDX identity must pin mr_td or at least one RTMR; "
                "one that pins nothing would accept any trust domain"
            )

    def _host_digests(self) -> tuple[tuple[str, bytes | None], ...]:
        return (
            ("mr_config_id", self.mr_config_id),
            ("mr_owner", self.mr_owner),
            ("mr_owner_config", self.mr_owner_config),
            ("mr_seam", self.mr_seam),
        )

    def mismatches(self, measurements: Mapping[str, str]) -> list[str]:
        """Return why ``measurements`` do not match; empty if they do."""
        pinned = [
            ("mr_td", self.mr_td),
            *((f"rtmr{index}", value) for index, value in enumerate(self.rtmrs)),
            *self._host_digests(),
        ]
        found = [
            f"{name}: expected {expected.hex()}, found {measurements.get(name)}"
            for name, expected in pinned
            if expected is not None and measurements.get(name) != expected.hex()
        ]
        for name, masked in (("td_attributes", self.td_attributes), ("xfam", self.xfam)):
            if masked is not None:
                reason = _masked_mismatch(name, masked, measurements.get(name))
                if reason is not None:
                    found.append(reason)
        return found


def _check_fingerprint(value: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if (
        not isinstance(text, str)
        or len(text) != 64
        or any(c not in "0123456789abcdef" for c in text)
    ):
        raise ConfigError(f"platform fingerprint: expected 64 hex digits (SHA-256), got {value!r}")
    return text


@dataclass(frozen=True)
class Policy:
    """The rules evidence must satisfy (see the module docstring for the defaults' reasons).

    Attributes
    ----------
    sgx, tdx
        Acceptable identities; evidence of that kind matches if any one identity matches.
    tcb_statuses
        TCB statuses accepted for real evidence; ``UpToDate`` only by default.
    rejected_advisories
        Intel advisory ids refused even when the TCB status is accepted.
    allow_debug
        Accept SGX debug enclaves / TDX debug TDs (their memory is readable by the host).
    allow_dynamic_platform, allow_cached_keys, allow_smt
        Platform properties from the PCK certificate that a strict verifier refuses (SMT is
        accepted by default, as Intel's appraisal does).
    allow_simulated
        Accept simulated evidence at all; it must then come from a platform in
        ``platform_fingerprints`` and carry a measurement in ``simulated_measurements``.
    max_evidence_age
        If set, RA-TLS certificates must carry an ``iat`` (issued-at) claim no older than this.
    """

    sgx: tuple[SgxIdentity, ...] = ()
    tdx: tuple[TdxIdentity, ...] = ()
    tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    rejected_advisories: frozenset[str] = frozenset()
    allow_debug: bool = False
    allow_dynamic_platform: bool = False
    allow_cached_keys: bool = False
    allow_smt: bool = True
    allow_simulated: bool = False
    simulated_measurements: frozenset[bytes] = frozenset()
    platform_fingerprints: frozenset[str] = frozenset()
    max_evidence_age: timedelta | None = None
    source: str = field(default="<code>", compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.tcb_statuses) - KNOWN_TCB_STATUSES
        if unknown:
            raise ConfigError(
                f"policy {self.source}: unknown or unacceptable TCB status "
                f"{sorted(unknown)}; expected some of {sorted(KNOWN_TCB_STATUSES)}"
            )
        try:
            for measurement in self.simulated_measurements:
                _check_digest(measurement, _SGX_MEASUREMENT_SIZE, "simulated.measurements")
            fingerprints = frozenset(_check_fingerprint(f) for f in self.platform_fingerprints)
        except ConfigError as exc:
            raise ConfigError(f"policy {self.source}: {exc}") from exc
        object.__setattr__(self, "platform_fingerprints", fingerprints)
        if self.max_evidence_age is not None and self.max_evidence_age <= timedelta(0):
            raise ConfigError(
                f"policy {self.source}: max_evidence_age must be positive, "
                f"got {self.max_evidence_age}"
            )

    def platform_refusals(
        self,
        *,
        tee: str,
        tcb_status: str,
        advisories: Sequence[str],
        debug: bool,
        platform_flags: Mapping[str, str],
    ) -> list[str]:
        """Return why a genuine report breaks the platform rules; empty if it does not.

        Parameters
        ----------
        tee
            ``"sgx"``, ``"tdx"`` or ``"simulated"`` (whose platform claims its own TCB status
            and debug flag, so deny rules can be tested without hardware).
        tcb_status, advisories
            The TCB appraisal from the collateral (for simulated evidence: from the quote).
        debug
            The SGX DEBUG attribute, the TDX ``TUD.DEBUG`` bit, or the simulated debug flag.
        platform_flags
            ``dynamic_platform``, ``cached_keys``, ``smt_enabled`` from the PCK certificate
            (``"True"``, ``"False"`` or ``"Undefined"``).
        """
        reasons: list[str] = []
        if tcb_status not in self.tcb_statuses:
            reasons.append(
                f"TCB status: expected one of {sorted(self.tcb_statuses)}, found {tcb_status} "
                f"(advisories: {', '.join(advisories) or 'none'})"
            )
        refused = sorted(set(advisories) & self.rejected_advisories)
        if refused:
            reasons.append(f"advisories refused by policy: {', '.join(refused)}")
        if debug and not self.allow_debug:
            kind = "trust domain" if tee == "tdx" else "enclave"
            reasons.append(f"debug {kind} refused: policy has allow_debug = false")
        for flag, allowed, what, setting in (
            (
                "dynamic_platform",
                self.allow_dynamic_platform,
                "a dynamic platform",
                "allow_dynamic_platform",
            ),
            ("cached_keys", self.allow_cached_keys, "cached platform keys", "allow_cached_keys"),
            ("smt_enabled", self.allow_smt, "SMT (hyper-threading) enabled", "allow_smt"),
        ):
            if platform_flags.get(flag) == "True" and not allowed:
                reasons.append(f"the PCK certificate marks {what}; policy has {setting} = false")
        return reasons

    def identity_refusals(self, tee: str, measurements: Mapping[str, str]) -> list[str]:
        """Return why ``measurements`` match none of the ``tee`` identities (empty: one does)."""
        identities: Sequence[SgxIdentity | TdxIdentity] = self.sgx if tee == "sgx" else self.tdx
        if not identities:
            return [f"policy lists no acceptable {tee.upper()} identity"]
        mismatches = [identity.mismatches(measurements) for identity in identities]
        if any(not found for found in mismatches):
            return []
        if len(mismatches) == 1:
            return mismatches[0]
        return [
            f"matches none of the {len(mismatches)} {tee.upper()} identities: "
            + " | ".join(f"#{index}: " + ", ".join(found) for index, found in enumerate(mismatches))
        ]

    @classmethod
    def for_simulated(
        cls,
        *,
        measurements: Iterable[bytes],
        platform_fingerprints: Iterable[str],
        max_evidence_age: timedelta | None = None,
    ) -> Policy:
        """Build a policy that accepts only simulated evidence from the listed platforms.

        Parameters
        ----------
        measurements
            Acceptable :func:`sealfl.tee.measure_code` values (32 bytes each).
        platform_fingerprints
            :attr:`SimulatedPlatform.fingerprint` of every platform to trust.
        max_evidence_age
            Freshness bound for RA-TLS certificates' issued-at claim.

        Raises
        ------
        ConfigError
            If either list is empty or holds a malformed value.
        """
        measured = frozenset(bytes(m) for m in measurements)
        fingerprints = frozenset(platform_fingerprints)
        if not measured or not fingerprints:
            raise ConfigError(
                "Policy.for_simulated needs at least one measurement and one platform "
                f"fingerprint, got {len(measured)} and {len(fingerprints)}"
            )
        return cls(
            allow_simulated=True,
            simulated_measurements=measured,
            platform_fingerprints=fingerprints,
            max_evidence_age=max_evidence_age,
        )

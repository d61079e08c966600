"""Which TEE a party runs in: ``simulated``, ``gramine-sgx``, ``tdx``, or ``auto``-detected.

The choice is configuration (``--tee``, ``SEALFL_TEE`` or a role config's ``[tee] kind``), never a
guess that could fall back to something weaker: ``auto`` picks Gramine when its
``/dev/attestation/attestation_type`` pseudo-file exists, TDX when configfs-tsm's report
directory exists, and otherwise refuses, naming ``--tee simulated`` for development. The
simulated measurement hook applies only to the simulated TEE; on SGX and TDX the measurement is
whatever the hardware reports.

The device paths are parameters (:class:`TeeDevices`) so tests can point them at fake trees.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealfl.errors import ConfigError
from sealfl.he import forbid_process_pool
from sealfl.tee import EvidenceProvider, GramineSgx, SimulatedPlatform, SimulatedTee, TdxConfigfs
from sealfl.tee.configfs_tsm import DEFAULT_ROOT as DEFAULT_TSM_ROOT
from sealfl.tee.gramine import DEFAULT_ROOT as DEFAULT_GRAMINE_ROOT

_log = logging.getLogger(__name__)


class TeeKind(enum.StrEnum):
    """The TEE kinds a party can be told to run in."""

    SIMULATED = "simulated"
    GRAMINE_SGX = "gramine-sgx"
    TDX = "tdx"
    AUTO = "auto"


class SgxSealingKey(enum.StrEnum):
    """Which Gramine sealing key SGX parties derive their keys from.

    ``mrenclave`` binds sealed data to this exact enclave build; ``mrsigner`` to every enclave of
    the same signer (and product), so a newer build of the same role can open what an older one
    sealed.
    """

    MRENCLAVE = "mrenclave"
    MRSIGNER = "mrsigner"


def parse_tee_kind(text: str, *, where: str = "--tee") -> TeeKind:
    """Return the :class:`TeeKind` named by ``text``.

    Raises
    ------
    ConfigError
        If ``text`` names no kind, listing the valid ones.
    """
    try:
        return TeeKind(text.strip().lower())
    except ValueError:
        choices = ", ".join(kind.value for kind in TeeKind)
        raise ConfigError(f"{where}: expected one of {choices}, got {text!r}") from None


@dataclass(frozen=True)
class TeeDevices:
    """Where the TEE interfaces live (real paths by default; fake trees in tests)."""

    gramine_root: Path = DEFAULT_GRAMINE_ROOT
    tsm_root: Path = DEFAULT_TSM_ROOT


DEFAULT_DEVICES = TeeDevices()


def detect_tee(devices: TeeDevices = DEFAULT_DEVICES) -> TeeKind:
    """Return the real TEE this process runs in: Gramine SGX first, then TDX.

    Raises
    ------
    ConfigError
        If neither interface exists; the message names ``--tee simulated``.
    """
    if (devices.gramine_root / "attestation_type").exists():
        return TeeKind.GRAMINE_SGX
    if devices.tsm_root.is_dir():
        return TeeKind.TDX
    raise ConfigError(
        f"--tee auto: no TEE found ({devices.gramine_root / 'attestation_type'} and "
        f"{devices.tsm_root} are both absent, so this is neither a Gramine SGX enclave nor a TDX "
        "guest); on a development machine pass --tee simulated with --simulated-platform DIR"
    )


@dataclass(frozen=True)
class TeeChoice:
    """What to build a provider from; see :func:`make_provider`.

    Attributes
    ----------
    kind
        Requested kind (``auto`` is resolved by :func:`make_provider`).
    simulated_platform
        The simulated platform's directory (simulated only; refused with a real TEE, where it
        would suggest a measurement the hardware does not make).
    sgx_sealing_key
        Gramine's key the sealing keys derive from.
    devices
        Paths of the TEE interfaces.
    """

    kind: TeeKind
    simulated_platform: Path | None = None
    sgx_sealing_key: SgxSealingKey = SgxSealingKey.MRENCLAVE
    devices: TeeDevices = DEFAULT_DEVICES


def make_provider(
    choice: TeeChoice, *, simulated_measurement: Callable[[], bytes]
) -> tuple[TeeKind, EvidenceProvider]:
    """Build the evidence provider ``choice`` names; return it with the resolved kind.

    Parameters
    ----------
    choice
        The requested TEE.
    simulated_measurement
        Called only for the simulated TEE: the measurement it claims (on real TEEs the hardware
        measures the code, and nothing in sealfl may suggest otherwise).

    Raises
    ------
    ConfigError
        If ``auto`` finds no TEE, the simulated TEE lacks its platform, or a real TEE is given a
        simulated platform.
    """
    kind = detect_tee(choice.devices) if choice.kind is TeeKind.AUTO else choice.kind
    if kind is TeeKind.SIMULATED:
        if choice.simulated_platform is None:
            raise ConfigError(
                "--tee simulated needs the simulated platform's directory "
                "(--simulated-platform DIR, or simulated_platform in the role config's [tee])"
            )
        platform = SimulatedPlatform.load(choice.simulated_platform)
        return kind, SimulatedTee(platform, simulated_measurement())
    if choice.simulated_platform is not None:
        raise ConfigError(
            f"--tee {kind.value}: a simulated platform ({choice.simulated_platform}) was also "
            "given; it applies to --tee simulated only (on real TEEs the hardware measures)"
        )
    if kind is TeeKind.GRAMINE_SGX:
        # A worker process would be an enclave of its own: compute in-process instead.
        forbid_process_pool("running in a Gramine SGX enclave (a worker would be another enclave)")
        return kind, GramineSgx(
            choice.devices.gramine_root, sealing_key=choice.sgx_sealing_key.value
        )
    return kind, TdxConfigfs(choice.devices.tsm_root)

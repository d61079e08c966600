"""The TEE options every party subcommand shares, and the runtime they build.

``--tee simulated|gramine-sgx|tdx|auto`` (or ``SEALFL_TEE``) chooses the TEE. Without it, a
party given ``--simulated-platform`` runs in the simulated TEE (the development default, as
before ``--tee`` existed) and any other party detects its TEE (``auto``), which refuses on a
machine without one. ``sealfl run --config`` ignores these variables: a role config decides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sealfl.errors import ConfigError
from sealfl.runtime import PartyRuntime, TeeChoice, TeeKind, parse_tee_kind

TeeOption = Annotated[
    str | None,
    typer.Option(
        "--tee",
        envvar="SEALFL_TEE",
        help="TEE to run in: simulated, gramine-sgx, tdx or auto (default: simulated with "
        "--simulated-platform, else auto).",
        show_default=False,
    ),
]
PlatformOption = Annotated[
    Path | None,
    typer.Option(
        "--simulated-platform",
        envvar="SEALFL_SIMULATED_PLATFORM",
        help="Directory of the simulated TEE platform this party runs on (development TEE).",
        show_default=False,
    ),
]
PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        envvar="SEALFL_POLICY",
        help="Attestation policy (TOML, or cczoo JSON) for the peers' evidence.",
        show_default=False,
    ),
]
CollateralOption = Annotated[
    str | None,
    typer.Option(
        "--collateral",
        envvar="SEALFL_COLLATERAL",
        help="Intel collateral for peers' real quotes: a JSON file, a directory of them, or a "
        "PCCS URL (https://host:8081).",
        show_default=False,
    ),
]


def tee_choice(tee: str | None, platform: Path | None) -> TeeChoice:
    """Resolve ``--tee`` and ``--simulated-platform`` into a :class:`TeeChoice`."""
    if tee is None:
        kind = TeeKind.SIMULATED if platform is not None else TeeKind.AUTO
    else:
        kind = parse_tee_kind(tee)
    return TeeChoice(kind=kind, simulated_platform=platform)


def build_runtime(
    *,
    tee: str | None,
    platform: Path | None,
    measurement: Callable[[], bytes],
    policy: Path | None = None,
    collateral: str | None = None,
    release: Path | None = None,
) -> PartyRuntime:
    """Build a party's runtime from the shared options.

    Raises
    ------
    ConfigError
        If the TEE cannot be selected or a file is unusable.
    """
    return PartyRuntime.create(
        tee_choice(tee, platform),
        simulated_measurement=measurement,
        policy=policy,
        collateral=collateral,
        release=release,
    )


def peer_runtime(
    role_measurement: Callable[[str], bytes],
    role: str,
    policy: Path | None,
    platform: Path | None,
    tee: str | None,
    collateral: str | None,
    release: Path | None = None,
) -> PartyRuntime:
    """Build the runtime of federation party ``role``, which attests its peers: hence a policy.

    ``role_measurement`` is the workload's (its launcher's simulated measurement of a role).

    Raises
    ------
    ConfigError
        If ``--policy`` is missing, or as :func:`build_runtime`.
    """
    if policy is None:
        raise ConfigError("a policy is needed to verify peers: pass --policy FILE")
    return build_runtime(
        tee=tee,
        platform=platform,
        measurement=lambda: role_measurement(role),
        policy=policy,
        collateral=collateral,
        release=release,
    )

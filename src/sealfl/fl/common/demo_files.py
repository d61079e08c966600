"""What a demo (or ``prepare``) writes as the operator of every party of a federation.

A run directory on one machine holds what each party's operator would otherwise provide: a
simulated TEE platform, one attestation policy per role (workers trust the PS's measurement,
the PS trusts the workers'), the model owner's release key and the release list naming it, and
one role config per party (``sealfl run --config``). homo-lr and hfl write these the same way,
through this module; only their data, settings and wording differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sealfl._files import write_atomic
from sealfl.seal import ReleaseKey
from sealfl.tee import SimulatedPlatform

__all__ = [
    "OWNER",
    "role_config_toml",
    "simulated_policy_toml",
    "toml_value",
    "write_operator_files",
    "write_party_configs",
]

OWNER = "model-owner"
"""The release recipient the demos play: the model owner's trusted node."""


def toml_value(value: Any) -> str:
    """Return ``value`` (string, path, bool, number, or a list of them) as a TOML value."""
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def simulated_policy_toml(measurement: bytes, platform_fingerprint: str, *, written_by: str) -> str:
    """Return a policy (TOML, :func:`sealfl.tee.load_policy`) trusting one simulated identity.

    ``written_by`` names the command in the file's first comment (``sealfl hfl prepare``).
    """
    return (
        f"# Written by `{written_by}`: accept only simulated evidence from this run's\n"
        "# platform, with the measurement of the peer's role.\n"
        "max_evidence_age_seconds = 3600\n\n"
        "[simulated]\n"
        "allow = true\n"
        f'measurements = ["{measurement.hex()}"]\n'
        f'platform_fingerprints = ["{platform_fingerprint}"]\n'
    )


def write_operator_files(
    run_dir: Path,
    *,
    measurements: Mapping[str, bytes],
    written_by: str,
    reuse_owner_key: bool,
    roles: tuple[str, str] = ("ps", "worker"),
) -> dict[str, Path]:
    """Write what every party's operator would provide, but the data and the role configs.

    That is a simulated platform, a policy per role, the model owner's release key and the
    release list naming it.

    Parameters
    ----------
    run_dir
        The run directory (created if missing).
    measurements
        The measurement of each of the two ``roles``; each role's policy trusts the other's.
    written_by
        The command named in the files' comments.
    reuse_owner_key
        Keep the owner's key pair when ``run_dir`` already holds one (``prepare`` run again);
        otherwise a new one is made, and an existing one is refused.
    roles
        The serving role and the connecting one (``("leader", "follower")`` for vfl).

    Returns
    -------
    dict
        ``platform``, ``policy-<role>`` for both roles, ``owner-key`` and ``release``.

    Raises
    ------
    ConfigError
        If a file cannot be written, or the owner's key exists and may not be reused.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    platform_dir = run_dir / "platform"
    platform = SimulatedPlatform.create(platform_dir)
    paths = {"platform": platform_dir}
    for role, peer in (roles, roles[::-1]):
        path = run_dir / f"policy-{role}.toml"
        policy = simulated_policy_toml(
            measurements[peer], platform.fingerprint, written_by=written_by
        )
        write_atomic(path, policy.encode("utf-8"), mode=0o644)
        paths[f"policy-{role}"] = path
    owner_dir = run_dir / "owner"
    owner_key = owner_dir / f"{OWNER}.key"
    if reuse_owner_key and owner_key.is_file():
        owner_public = owner_dir / f"{OWNER}.pub"
    else:
        owner_key, owner_public = ReleaseKey.generate(name=OWNER).save(owner_dir)
    paths |= {"owner-key": owner_key, "release": run_dir / "release.toml"}
    release = (
        f"# Written by `{written_by}`: who can open the trained model (sealfl model open).\n"
        f'[[recipient]]\nname = "{OWNER}"\npublic_key = "{owner_public.relative_to(run_dir)}"\n'
    )
    write_atomic(paths["release"], release.encode("utf-8"), mode=0o644)
    return paths


def role_config_toml(
    role: str,
    *,
    workload: str,
    port: int,
    policy: str,
    options: Mapping[str, Any],
    peers: bool,
    release: str | None = None,
    server: str = "ps",
) -> str:
    """Return a simulated-TEE role config for ``role`` of ``workload`` (``sealfl run --config``).

    ``port`` is the example port of the serving party (``server``: the PS, the vfl leader)
    the file shows (the demo overrides it through the environment). Paths in ``options``
    must already be relative to the run directory, where the file goes.
    """
    lines = [
        f"# Written by `sealfl {workload} prepare` / `sealfl demo {workload}`. On SGX or TDX, set",
        '# kind = "gramine-sgx" or "tdx", drop simulated_platform, and point the policy at',
        "# your peers' real identities (`sealfl attest policy-from-sig`).",
        f"workload = {toml_value(workload)}",
        f"role = {toml_value(role)}",
        "",
        "[tee]",
        'kind = "simulated"',
        'simulated_platform = "platform"',
        "",
        "[attestation]",
        f"policy = {toml_value(policy)}",
        "",
    ]
    if release is not None:
        lines += ["[release]", f"policy = {toml_value(release)}", ""]
    if peers:
        lines += [
            "[peers]",
            f'{server} = "127.0.0.1:{port}"      # or SEALFL_PEERS={server}=HOST:PORT',
            "",
        ]
    else:
        lines += ["[listen]", f'address = "127.0.0.1:{port}"  # or SEALFL_LISTEN=HOST:PORT', ""]
    lines.append("[options]")
    lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def write_party_configs(
    run_dir: Path,
    paths: Mapping[str, Path],
    *,
    workload: str,
    port: int,
    ps: Mapping[str, Any],
    workers: Sequence[Mapping[str, Any]],
) -> dict[str, Path]:
    """Write ``ps.toml`` and ``worker-K.toml`` (K from 1) into ``run_dir``; return them by party.

    ``paths`` are :func:`write_operator_files`'s; ``ps`` and ``workers`` are the ``[options]``
    of the PS and of each worker in turn. Parties are named ``"ps"`` and ``"worker K"``.
    """

    def rel(path: Path) -> str:
        return str(path.relative_to(run_dir))

    release = rel(paths["release"])
    parties: list[tuple[str, str, str, Mapping[str, Any], str | None]] = [
        ("ps", "ps.toml", "ps", ps, release)
    ]
    parties += [
        (f"worker {k}", f"worker-{k}.toml", "worker", options, None)
        for k, options in enumerate(workers, start=1)
    ]
    configs = {}
    for name, file_name, role, options, release_policy in parties:
        configs[name] = run_dir / file_name
        text = role_config_toml(
            role,
            workload=workload,
            port=port,
            policy=rel(paths[f"policy-{role}"]),
            options=options,
            peers=role == "worker",
            release=release_policy,
        )
        write_atomic(configs[name], text.encode("utf-8"), mode=0o644)
    return configs

"""vfl's role configs: the ``[options]`` of the leader and the follower, for ``sealfl run``.

The keys are the development subcommands' options without their dashes, with ``_`` for ``-``
(``data``, ``out``, ``resume``, ``checkpoint_every``, ``step_deadline``, ``psi_mode`` ...);
paths are relative to the config file. The leader listens on the config's ``[listen] address``;
the follower finds the leader as the peer named ``leader``. Both take the shared settings as
``preset`` (default ``breast``) plus overrides (:data:`SETTING_KEYS`): ``epochs``,
``batch_size``, ``learning_rate``, ``optimizer``, ``seed``, ``defence``, ``sigma``,
``wire_dtype`` (``float32`` or ``float16``: how the cut tensors travel). The two
parties must end up with equal settings; each binds their digest into its RA-TLS certificate
and refuses a peer claiming others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sealfl.errors import ConfigError
from sealfl.fl.common.role_options import read_options
from sealfl.fl.vfl.launch import FollowerOptions, LeaderOptions
from sealfl.fl.vfl.leader import LeaderRules
from sealfl.fl.vfl.settings import PRESETS, DefenceSpec, VflSettings, preset
from sealfl.runtime import RoleConfig, Table

__all__ = [
    "ROLES",
    "SETTING_KEYS",
    "build_settings",
    "follower_options",
    "leader_options",
    "settings_of",
]

ROLES = ("leader", "follower")
SETTING_KEYS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "seed",
    "defence",
    "sigma",
    "wire_dtype",
)
"""The settings a role config (or a flag) may override on top of its preset."""
_SETTINGS_KEYS = frozenset({*SETTING_KEYS, "preset"})

_LEADER_KEYS = frozenset(
    {
        "data",
        "out",
        "resume",
        "checkpoint_every",
        "step_deadline",
        "join_deadline",
        "psi_mode",
        "threads",
        "log_every",
        "id_column",
        "label_column",
        "line_style",
        "certificate_hours",
    }
)
_FOLLOWER_KEYS = frozenset(
    {
        "data",
        "out",
        "resume",
        "step_deadline",
        "wait_for_leader",
        "psi_mode",
        "threads",
        "id_column",
    }
)


def build_settings(
    name: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    optimizer: str | None = None,
    seed: int | None = None,
    defence: str | None = None,
    sigma: float | None = None,
    wire_dtype: str | None = None,
) -> VflSettings:
    """Return preset ``name`` with the given overrides applied (``None``: keep the preset's).

    Raises
    ------
    ConfigError
        If the preset is unknown or a value is out of range.
    """
    if name not in PRESETS:
        raise ConfigError(f"--preset: expected one of {list(PRESETS)}, got {name!r}")
    settings = preset(name)
    train: dict[str, Any] = {
        key: value
        for key, value in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("lr", learning_rate),
            ("optimizer", optimizer),
            ("seed", seed),
            ("wire_dtype", wire_dtype),
        )
        if value is not None
    }
    if train:
        settings = settings.replace(train=dataclasses.replace(settings.train, **train))
    if defence is not None or sigma is not None:
        kind = defence if defence is not None else settings.defence.kind
        settings = settings.replace(
            defence=DefenceSpec(kind=kind, sigma=sigma or 0.0)  # type: ignore[arg-type]
        )
    return settings


def settings_of(name: str, given: Mapping[str, Any]) -> VflSettings:
    """Return preset ``name`` with the overrides ``given`` by key (:data:`SETTING_KEYS`).

    Raises
    ------
    ConfigError
        If a key is not one of :data:`SETTING_KEYS`, or as :func:`build_settings`.
    """
    unknown = sorted(set(given) - set(SETTING_KEYS))
    if unknown:
        raise ConfigError(f"vfl settings: unknown keys {unknown}; expected some of {SETTING_KEYS}")
    return build_settings(name, **given)


def settings_from_table(table: Table) -> VflSettings:
    """Read ``preset`` and the overriding keys of a role config's ``[options]``.

    Raises
    ------
    ConfigError
        Naming the file and key of an unknown preset or a value out of range.
    """
    name = table.string("preset", "breast")
    if name not in PRESETS:
        raise table.fail("preset", f"expected one of {list(PRESETS)}, got {name!r}")
    try:
        return build_settings(
            name,
            epochs=table.integer("epochs", minimum=1),
            batch_size=table.integer("batch_size", minimum=1),
            learning_rate=table.number("learning_rate"),
            optimizer=table.string("optimizer"),
            seed=table.integer("seed"),
            defence=table.string("defence"),
            sigma=table.number("sigma"),
            wire_dtype=table.string("wire_dtype"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{table.source}: options: {exc}") from None


def _rules(table: Table) -> LeaderRules:
    return LeaderRules(
        step_deadline_s=table.number("step_deadline", 60.0),
        join_deadline_s=table.number("join_deadline", 300.0),
        checkpoint_every=table.integer("checkpoint_every", 50),
        resume=table.boolean("resume"),
        log_every=table.integer("log_every", 10, minimum=1),
    )


def leader_options(config: RoleConfig) -> LeaderOptions:
    """Read the leader's options from its role config, refusing as :func:`read_options` does."""

    def read(table: Table) -> LeaderOptions:
        return LeaderOptions(
            data=table.path("data", required=True),
            settings=settings_from_table(table),
            listen=config.require_listen(),
            out_dir=table.path("out") or config.base_dir / "leader",
            rules=_rules(table),
            psi_mode=table.string("psi_mode", "both"),
            id_column=table.string("id_column", "id"),
            label_column=table.string("label_column", "y"),
            threads=table.integer("threads", 1, minimum=1),
            policy_file=config.policy,
            certificate_hours=table.number("certificate_hours", 24.0),
            line_style=table.string("line_style", "plain"),
        )

    return read_options(config, read, allowed=_LEADER_KEYS | _SETTINGS_KEYS)


def follower_options(config: RoleConfig) -> FollowerOptions:
    """Read the follower's options from its role config, refusing as :func:`read_options` does."""

    def read(table: Table) -> FollowerOptions:
        return FollowerOptions(
            data=table.path("data", required=True),
            settings=settings_from_table(table),
            leader=config.peer("leader"),
            out_dir=table.path("out") or config.base_dir / "follower",
            resume=table.boolean("resume"),
            psi_mode=table.string("psi_mode", "both"),
            id_column=table.string("id_column", "id"),
            threads=table.integer("threads", 1, minimum=1),
            wait_for_leader_s=table.number("wait_for_leader", 0.0),
            step_deadline_s=table.number("step_deadline", 60.0),
            policy_file=config.policy,
        )

    return read_options(config, read, allowed=_FOLLOWER_KEYS | _SETTINGS_KEYS)

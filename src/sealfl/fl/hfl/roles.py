"""hfl's role configs: the ``[options]`` of a PS or a worker, for ``sealfl run --config``.

The keys are the development subcommands' options without their dashes, with ``_`` for ``-``
(``worker_num``, ``test_set``, ``round_deadline`` ...); paths are relative to the config file.
The PS listens on the config's ``[listen] address``; a worker finds the PS as the peer named
``ps``. Both take the training settings as ``preset`` (default ``demo``) plus any of the
settings' own keys (``model``, ``rounds``, ``local_epochs``, ``local_steps``, ``batch_size``,
``learning_rate``, ``momentum``, ``weight_decay``, ``lr_milestones``, ``seed``, ``pipeline``,
``aggregation``, ``server_learning_rate``, ``server_momentum``), which override the preset's:
the PS's are the federation's, and it refuses workers whose settings differ.

Secure aggregation: ``secure_aggregation = true`` on the PS and on every worker; the PS also
takes ``secagg_threshold`` (default: a majority of the seats), ``secagg_clip`` (16.0) and
``secagg_degree`` (neighbours per worker, even; default all pairs).

A PS's ``resume`` is ``false`` (the default: a new run), ``true`` (continue the sealed
checkpoint in ``out``; refuse to start without one) or ``"auto"`` (continue it if there is one,
else start a new run: for a PS that a supervisor restarts from the same config).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sealfl.errors import ConfigError
from sealfl.fl.common.role_options import read_options
from sealfl.fl.hfl.launch import PsOptions, Resume, WorkerOptions
from sealfl.fl.hfl.secure import SecAggOptions
from sealfl.fl.hfl.settings import PRESETS, Settings
from sealfl.runtime import RoleConfig, Table

__all__ = ["ROLES", "SETTING_KEYS", "ps_options", "settings_from_table", "worker_options"]

ROLES = ("ps", "worker")
SETTING_KEYS = tuple(f.name for f in dataclasses.fields(Settings))
"""The settings' keys, as they appear in a role config's ``[options]``."""
_SETTINGS_KEYS = frozenset({*SETTING_KEYS, "preset"})

_PS_KEYS = frozenset(
    {
        "test_set",
        "worker_num",
        "min_workers",
        "out",
        "round_deadline",
        "join_deadline",
        "evaluate_every",
        "resume",
        "threads",
        "max_abs",
        "max_relative_change",
        "certificate_hours",
        "secure_aggregation",
        "secagg_threshold",
        "secagg_clip",
        "secagg_degree",
    }
)
_WORKER_KEYS = frozenset(
    {
        "shard",
        "id",
        "threads",
        "seat_file",
        "metrics",
        "wait_for_server",
        "expect_release",
        "secure_aggregation",
    }
)
_INTEGERS = {"rounds", "local_epochs", "local_steps", "batch_size", "seed"}
_STRINGS = {"model", "pipeline", "aggregation"}


def settings_from_table(config: RoleConfig, table: Table) -> Settings:
    """Read ``preset`` and the overriding settings keys.

    Raises
    ------
    ConfigError
        Naming the file and key of an unknown preset or a value out of range.
    """
    preset = table.string("preset", "demo")
    if preset not in PRESETS:
        raise table.fail("preset", f"expected one of {sorted(PRESETS)}, got {preset!r}")
    changes: dict[str, Any] = {}
    for key in SETTING_KEYS:
        if not table.has(key):
            continue
        if key in _INTEGERS:
            changes[key] = table.integer(key)
        elif key in _STRINGS:
            changes[key] = table.string(key)
        elif key == "lr_milestones":
            raw = table.raw().get(key)  # a list: no typed accessor; keys are checked up front
            if not isinstance(raw, list):
                raise table.fail(key, f"expected a list of round numbers, got {raw!r}")
            changes[key] = tuple(raw)
        else:
            changes[key] = table.number(key)
    try:
        return PRESETS[preset].replace(**changes)
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: options: {exc}") from None


def _resume(table: Table) -> Resume:
    """Read ``resume``: ``true``, ``false`` (the default) or ``"auto"`` (see :data:`Resume`)."""
    if not table.has("resume"):
        return False
    value = table.raw()["resume"]  # a bool or a string: no typed accessor takes both
    if isinstance(value, bool) or value == "auto":
        return value
    raise table.fail(
        "resume",
        "expected true (continue the checkpoint in out, refusing to start without one), "
        f'false (start a new run) or "auto" (continue it if there is one), got {value!r}',
    )


def _secure(table: Table) -> SecAggOptions | None:
    """Read ``secure_aggregation`` and its ``secagg_*`` options (refused without it)."""
    if not table.boolean("secure_aggregation"):
        for key in ("secagg_threshold", "secagg_clip", "secagg_degree"):
            if table.has(key):
                raise table.fail(key, "needs secure_aggregation = true")
        return None
    return SecAggOptions(
        threshold=table.integer("secagg_threshold", minimum=2),
        clip=table.number("secagg_clip", 16.0),
        degree=table.integer("secagg_degree", minimum=2),
    )


def ps_options(config: RoleConfig) -> PsOptions:
    """Read a PS's options from its role config, refusing as :func:`read_options` does."""

    def read(table: Table) -> PsOptions:
        return PsOptions(
            test_set=table.path("test_set", required=True),
            settings=settings_from_table(config, table),
            worker_num=table.integer("worker_num", required=True, minimum=1),
            min_workers=table.integer("min_workers", minimum=1),
            listen=config.require_listen(),
            out_dir=table.path("out") or config.base_dir / "hfl-out",
            round_deadline_s=table.number("round_deadline", 60.0),
            join_deadline_s=table.number("join_deadline", 300.0),
            evaluate_every=table.integer("evaluate_every", 1, minimum=1),
            resume=_resume(table),
            threads=table.integer("threads", 1, minimum=1),
            max_abs=table.number("max_abs", 1e4),
            max_relative_change=table.number("max_relative_change", 10.0),
            certificate_hours=table.number("certificate_hours", 24.0),
            secure_aggregation=_secure(table),
        )

    return read_options(config, read, allowed=_PS_KEYS | _SETTINGS_KEYS)


def worker_options(config: RoleConfig) -> WorkerOptions:
    """Read a worker's options from its role config, refusing as :func:`read_options` does."""

    def read(table: Table) -> WorkerOptions:
        return WorkerOptions(
            shard=table.path("shard", required=True),
            worker_id=table.integer("id", required=True),
            server=config.peer("ps"),
            settings=settings_from_table(config, table),
            threads=table.integer("threads", 1, minimum=1),
            seat_file=table.path("seat_file"),
            metrics_path=table.path("metrics"),
            wait_for_server_s=table.number("wait_for_server", 0.0),
            expect_release=table.string("expect_release"),
            secure_aggregation=table.boolean("secure_aggregation"),
        )

    return read_options(config, read, allowed=_WORKER_KEYS | _SETTINGS_KEYS)

"""homo-lr's role configs: the ``[options]`` of a PS or a worker, for ``sealfl run --config``.

The keys are the development subcommands' options without their dashes (``worker_num``,
``validate_set``, ``checkpoint_every`` ...); paths are relative to the config file. The PS
listens on the config's ``[listen] address`` (its training service on ``service_listen``, when
given); a worker finds the PS as the peer named ``ps``. Both take the training settings as a
``preset`` or as ``epochs``, ``learning_rate``, ``alpha`` and ``schedule``: the PS's are the
federation's, and it refuses workers that declare others.
"""

from __future__ import annotations

from sealfl.errors import ConfigError
from sealfl.fl.common.role_options import read_options
from sealfl.fl.homo_lr.algorithm import PRESETS, Hyperparameters, Schedule
from sealfl.fl.homo_lr.launch import PsOptions, WorkerOptions
from sealfl.runtime import RoleConfig, Table, check_address

ROLES = ("ps", "worker")
_SETTINGS = ("epochs", "learning_rate", "alpha", "schedule")


def training_settings(config: RoleConfig, table: Table) -> Hyperparameters:
    """Read a preset or the four hyperparameters (defaults: the worker command's).

    Raises
    ------
    ConfigError
        Naming the file and key of an unknown preset, a clash, or a value out of range.
    """
    preset = table.string("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise table.fail("preset", f"expected one of {sorted(PRESETS)}, got {preset!r}")
        clashing = [k for k in _SETTINGS if table.has(k)]
        if clashing:
            raise table.fail(", ".join(clashing), "give either preset or these, not both")
        return PRESETS[preset]
    try:
        return Hyperparameters(
            learning_rate=table.number("learning_rate", 0.15),
            alpha=table.number("alpha", 0.01),
            iterations=table.integer("epochs", 100, minimum=1),
            schedule=table.choice("schedule", Schedule, Schedule.SQRT_DECAY),
        )
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: options: {exc}") from None


def ps_options(config: RoleConfig) -> PsOptions:
    """Read a PS's options from its role config, refusing as :func:`read_options` does."""
    service_listen = config.options.string("service_listen")
    if service_listen is not None:
        check_address(service_listen, where=f"{config.path}: options.service_listen")

    def read(table: Table) -> PsOptions:
        return PsOptions(
            worker_num=table.integer("worker_num", required=True, minimum=1),
            validate_set=table.path("validate_set", required=True),
            hp=training_settings(config, table),
            listen=config.require_listen(),
            service_listen=service_listen,
            key_bits=table.integer("key_bits", 2048, minimum=1),
            out_dir=table.path("out") or config.base_dir / "homo-lr-out",
            min_workers=table.integer("min_workers"),
            round_deadline_s=table.number("round_deadline", 60.0),
            join_deadline_s=table.number("join_deadline", 300.0),
            checkpoint_every=table.integer("checkpoint_every", 10),
            resume=table.boolean("resume"),
            admit=table.path("admit"),
            fallback_dir=table.path("fallback_dir"),
            cores=table.integer("cores", minimum=1),
        )

    return read_options(config, read)


def worker_options(config: RoleConfig) -> WorkerOptions:
    """Read a worker's options from its role config (a preset or the four hyperparameters).

    Refused as :func:`read_options` refuses.
    """

    def read(table: Table) -> WorkerOptions:
        return WorkerOptions(
            train_set=table.path("train_set", required=True),
            worker_id=table.integer("id", required=True),
            server=config.peer("ps"),
            hp=training_settings(config, table),
            metrics_path=table.path("metrics"),
            wait_for_server_s=table.number("wait_for_server", 0.0),
            seat_file=table.path("seat_file"),
            name=table.string("name"),
            cores=table.integer("cores", minimum=1),
        )

    return read_options(config, read)

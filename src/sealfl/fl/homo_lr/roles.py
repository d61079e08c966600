"""homo-lr's role configs: the ``[options]`` of a PS or a worker, for ``sealfl run --config``.

The keys are the development subcommands' options without their dashes (``worker_num``,
``validate_set`` ...); paths are relative to the config file. The PS listens on the config's
``[listen] address``; a worker finds the PS as the peer named ``ps``.
"""

from __future__ import annotations

from sealfl.errors import ConfigError
from sealfl.fl.homo_lr.algorithm import PRESETS, Hyperparameters, Schedule
from sealfl.fl.homo_lr.launch import PsOptions, WorkerOptions
from sealfl.runtime import RoleConfig

ROLES = ("ps", "worker")


def ps_options(config: RoleConfig) -> PsOptions:
    """Read a PS's options from its role config.

    Raises
    ------
    ConfigError
        Naming the file and key of a missing, mistyped or unknown option.
    """
    table = config.options
    options = PsOptions(
        worker_num=table.integer("worker_num", required=True, minimum=1),
        validate_set=table.path("validate_set", required=True),
        listen=config.require_listen(),
        key_bits=table.integer("key_bits", 2048, minimum=1),
        out_dir=table.path("out") or config.base_dir / "homo-lr-out",
        min_workers=table.integer("min_workers"),
        round_deadline_s=table.number("round_deadline", 60.0),
        join_deadline_s=table.number("join_deadline", 300.0),
        cores=table.integer("cores", minimum=1),
    )
    table.finish()
    return options


def worker_options(config: RoleConfig) -> WorkerOptions:
    """Read a worker's options from its role config (a preset or the four hyperparameters).

    Raises
    ------
    ConfigError
        Naming the file and key of a missing, mistyped or unknown option.
    """
    table = config.options
    preset = table.string("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise table.fail("preset", f"expected one of {sorted(PRESETS)}, got {preset!r}")
        hp = PRESETS[preset]
        clashing = [k for k in ("epochs", "learning_rate", "alpha", "schedule") if table.has(k)]
        if clashing:
            raise table.fail(", ".join(clashing), "give either preset or these, not both")
    else:
        try:
            hp = Hyperparameters(
                learning_rate=table.number("learning_rate", 0.15),
                alpha=table.number("alpha", 0.01),
                iterations=table.integer("epochs", 100, minimum=1),
                schedule=table.choice("schedule", Schedule, Schedule.SQRT_DECAY),
            )
        except ConfigError as exc:
            raise ConfigError(f"{config.path}: options: {exc}") from None
    options = WorkerOptions(
        train_set=table.path("train_set", required=True),
        worker_id=table.integer("id", required=True),
        server=config.peer("ps"),
        hp=hp,
        metrics_path=table.path("metrics"),
        cores=table.integer("cores", minimum=1),
    )
    table.finish()
    return options

"""``sealfl vfl leader|follower|prepare|predict``, ``sealfl demo vfl``, ``sealfl bench vfl``.

Vertical split learning: a leader (labels) and a follower (more features), each in a TEE, over
mutual RA-TLS: PSI, then one step stream per run, coordinated sealed checkpoints, sealed export
with a joint manifest, and joint prediction. torch (the ``sealfl[hfl]`` extra) is imported only
inside the commands, so ``sealfl --help`` and every other command start without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sealfl.cli.app import app, bench_app, demo_app
from sealfl.cli.benchmarks import load_benchmark
from sealfl.cli.console import output_console, print_line
from sealfl.cli.fl_options import BatchOption, ListenOption, RunDirOption, SeedOption, ThreadsOption
from sealfl.cli.run_cmd import role
from sealfl.cli.tee_options import (
    CollateralOption,
    PlatformOption,
    PolicyOption,
    TeeOption,
    peer_runtime,
)
from sealfl.errors import ConfigError
from sealfl.runtime import RoleConfig

if TYPE_CHECKING:
    from sealfl.fl.vfl.settings import VflSettings

vfl_app = typer.Typer(
    help="Vertical split learning: a leader and a follower in TEEs, PSI, mutual RA-TLS.",
    no_args_is_help=True,
)
app.add_typer(vfl_app, name="vfl")


# ---- the settings both parties declare ----------------------------------------------------

PresetOption = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Base settings: 'breast' (FATE's hetero breast split), 'digits' (left/right "
        "halves), 'reference' (the cczoo seed's wide-and-deep run exactly) or 'default' (the "
        "same model, learnable). Flags below override it.",
    ),
]
EpochsOption = Annotated[int | None, typer.Option("--epochs", show_default=False)]
LrOption = Annotated[float | None, typer.Option("--learning-rate", show_default=False)]
OptimizerOption = Annotated[
    str | None, typer.Option("--optimizer", help="sgd or adam.", show_default=False)
]
DefenceOption = Annotated[
    str | None,
    typer.Option(
        "--defence",
        help="Noise on the returned gradient: none, max-norm or gaussian (--sigma).",
        show_default=False,
    ),
]
SigmaOption = Annotated[float | None, typer.Option("--sigma", show_default=False)]
WireDtypeOption = Annotated[
    str | None,
    typer.Option(
        "--wire-dtype",
        help="How the cut activation and its gradient travel: float32 (default) or float16 "
        "(half the bytes, rounded; both parties must say the same).",
        show_default=False,
    ),
]
PsiModeOption = Annotated[
    str,
    typer.Option(
        "--psi-mode",
        help="What the PSI discloses: both or enclave-only (the order stays inside the two "
        "attested parties; operators see only the count). Both parties must say the same; "
        "leader-only and cardinality give no aligned order to train or predict on.",
    ),
]
StepDeadlineOption = Annotated[
    float,
    typer.Option("--step-deadline", help="Seconds to wait for the peer's next message of a step."),
]
ResumeOption = Annotated[
    bool,
    typer.Option("--resume", help="Continue from the latest sealed checkpoint both parties hold."),
]


def _overrides(
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    optimizer: str | None,
    seed: int | None,
    defence: str | None,
    sigma: float | None,
    wire_dtype: str | None,
) -> dict[str, object]:
    """Return the settings flags that were given, by role-config key (``SETTING_KEYS``)."""
    flags = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": optimizer,
        "seed": seed,
        "defence": defence,
        "sigma": sigma,
        "wire_dtype": wire_dtype,
    }
    return {key: value for key, value in flags.items() if value is not None}


def _settings(preset: str, overrides: dict[str, object]) -> VflSettings:
    from sealfl.fl.vfl.roles import settings_of

    return settings_of(preset, overrides)


# ---- the parties ----------------------------------------------------------------------------


@vfl_app.command("leader")
def leader(
    data: Annotated[
        Path, typer.Option("--data", help="The leader's CSV: id, label and feature columns.")
    ],
    listen: ListenOption = "127.0.0.1:50090",
    out: Annotated[
        Path,
        typer.Option("--out", help="Metrics, sealed checkpoints, sealed half, joint manifest."),
    ] = Path("vfl-leader"),
    resume: ResumeOption = False,
    checkpoint_every: Annotated[
        int,
        typer.Option("--checkpoint-every", help="Steps between coordinated checkpoints."),
    ] = 50,
    step_deadline: StepDeadlineOption = 60.0,
    join_deadline: Annotated[
        float, typer.Option("--join-deadline", help="Seconds to wait for the follower.")
    ] = 300.0,
    log_every: Annotated[int, typer.Option("--log-every", help="Print every N steps.")] = 10,
    psi_mode: PsiModeOption = "both",
    label_column: Annotated[str, typer.Option("--label-column")] = "y",
    id_column: Annotated[str, typer.Option("--id-column")] = "id",
    threads: ThreadsOption = 1,
    preset: PresetOption = "breast",
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    optimizer: OptimizerOption = None,
    seed: SeedOption = None,
    defence: DefenceOption = None,
    sigma: SigmaOption = None,
    wire_dtype: WireDtypeOption = None,
    policy: PolicyOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Run the leader: PSI, the step stream, checkpoints, sealed export, leak report."""
    from sealfl.fl.vfl.launch import LeaderOptions, role_measurement, run_leader
    from sealfl.fl.vfl.leader import LeaderRules

    options = LeaderOptions(
        data=data,
        settings=_settings(
            preset,
            _overrides(
                epochs, batch_size, learning_rate, optimizer, seed, defence, sigma, wire_dtype
            ),
        ),
        listen=listen,
        out_dir=out,
        rules=LeaderRules(
            step_deadline_s=step_deadline,
            join_deadline_s=join_deadline,
            checkpoint_every=checkpoint_every,
            resume=resume,
            log_every=log_every,
        ),
        psi_mode=psi_mode,
        id_column=id_column,
        label_column=label_column,
        threads=threads,
        policy_file=policy,
        line_style="reference" if preset == "reference" else "plain",
    )
    runtime = peer_runtime(role_measurement, "leader", policy, simulated_platform, tee, collateral)
    run_leader(options, runtime, on_line=print_line)


@vfl_app.command("follower")
def follower(
    data: Annotated[Path, typer.Option("--data", help="The follower's CSV: id and features.")],
    leader_address: Annotated[
        str, typer.Option("--leader", help="HOST:PORT of the leader's front door.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Metrics, sealed checkpoints, sealed half, manifest.")
    ] = Path("vfl-follower"),
    resume: ResumeOption = False,
    step_deadline: StepDeadlineOption = 60.0,
    wait_for_leader: Annotated[
        float,
        typer.Option("--wait-for-leader", help="Seconds to wait for the leader to listen."),
    ] = 0.0,
    psi_mode: PsiModeOption = "both",
    id_column: Annotated[str, typer.Option("--id-column")] = "id",
    threads: ThreadsOption = 1,
    preset: PresetOption = "breast",
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    optimizer: OptimizerOption = None,
    seed: SeedOption = None,
    defence: DefenceOption = None,
    sigma: SigmaOption = None,
    wire_dtype: WireDtypeOption = None,
    policy: PolicyOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Run the follower: attest the leader, PSI, answer every step, seal its half."""
    from sealfl.fl.vfl.launch import FollowerOptions, role_measurement, run_follower

    options = FollowerOptions(
        data=data,
        settings=_settings(
            preset,
            _overrides(
                epochs, batch_size, learning_rate, optimizer, seed, defence, sigma, wire_dtype
            ),
        ),
        leader=leader_address,
        out_dir=out,
        resume=resume,
        psi_mode=psi_mode,
        id_column=id_column,
        threads=threads,
        wait_for_leader_s=wait_for_leader,
        step_deadline_s=step_deadline,
        policy_file=policy,
    )
    runtime = peer_runtime(
        role_measurement, "follower", policy, simulated_platform, tee, collateral
    )
    run_follower(options, runtime, on_line=print_line)


@role("vfl", "leader")
def _leader_from_config(config: RoleConfig) -> None:
    from sealfl.fl.vfl.launch import role_measurement, run_leader
    from sealfl.fl.vfl.roles import leader_options

    options = leader_options(config)
    runtime = config.runtime(simulated_measurement=lambda: role_measurement("leader"))
    run_leader(options, runtime, on_line=print_line)


@role("vfl", "follower")
def _follower_from_config(config: RoleConfig) -> None:
    from sealfl.fl.vfl.launch import role_measurement, run_follower
    from sealfl.fl.vfl.roles import follower_options

    options = follower_options(config)
    runtime = config.runtime(simulated_measurement=lambda: role_measurement("follower"))
    run_follower(options, runtime, on_line=print_line)


@vfl_app.command("predict")
def predict(
    role_name: Annotated[str, typer.Option("--role", help="leader or follower.")],
    data: Annotated[Path, typer.Option("--data", help="This party's rows to score (CSV).")],
    half: Annotated[Path, typer.Option("--half", help="This party's sealed half.")],
    manifest: Annotated[
        Path, typer.Option("--manifest", help="The joint manifest of the training run.")
    ],
    listen: Annotated[
        str | None, typer.Option("--listen", help="Leader: HOST:PORT.", show_default=False)
    ] = None,
    leader_address: Annotated[
        str | None,
        typer.Option("--leader", help="Follower: the leader's HOST:PORT.", show_default=False),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Leader: predictions.csv goes here.")] = Path(
        "vfl-predict"
    ),
    label_column: Annotated[
        str, typer.Option("--label-column", help="Leader: label column ('' if none).")
    ] = "y",
    id_column: Annotated[str, typer.Option("--id-column")] = "id",
    psi_mode: PsiModeOption = "both",
    deadline: Annotated[float, typer.Option("--deadline", help="Seconds per wait.")] = 60.0,
    wait_for_leader: Annotated[float, typer.Option("--wait-for-leader")] = 0.0,
    policy: PolicyOption = None,
    simulated_platform: PlatformOption = None,
    tee: TeeOption = None,
    collateral: CollateralOption = None,
) -> None:
    """Score rows jointly from the two sealed halves (run once as leader, once as follower)."""
    from sealfl.fl.vfl.launch import role_measurement
    from sealfl.fl.vfl.predict import PredictOptions, predict_follower, predict_leader

    if role_name == "leader":
        address = listen or "127.0.0.1:50091"
    elif role_name == "follower":
        if leader_address is None:
            raise ConfigError("--leader HOST:PORT is needed with --role follower")
        address = leader_address
    else:
        raise ConfigError(f"--role: expected leader or follower, got {role_name!r}")
    options = PredictOptions(
        role=role_name,
        data=data,
        half=half,
        manifest=manifest,
        address=address,
        out_dir=out,
        psi_mode=psi_mode,
        id_column=id_column,
        label_column=label_column,
        deadline_s=deadline,
        wait_for_leader_s=wait_for_leader,
    )
    runtime = peer_runtime(role_measurement, role_name, policy, simulated_platform, tee, collateral)
    if role_name == "leader":
        predict_leader(options, runtime, on_line=print_line)
    else:
        predict_follower(options, runtime, on_line=print_line)


# ---- preparing, the demo, the benchmark ----------------------------------------------------


@vfl_app.command("prepare")
def prepare(
    run_dir: RunDirOption = Path("vfl-run"),
    preset: PresetOption = "breast",
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    optimizer: OptimizerOption = None,
    seed: SeedOption = None,
    defence: DefenceOption = None,
    sigma: SigmaOption = None,
    wire_dtype: WireDtypeOption = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 50,
    rows: Annotated[
        int | None,
        typer.Option("--rows", help="Rows of generated data (wide-and-deep).", show_default=False),
    ] = None,
) -> None:
    """Make a simulated platform, policies, both parties' data and role configs.

    For running the leader and the follower by hand (one terminal each) from role configs, as
    on real TEEs. The policies pin the simulated measurement of this checkout: prepare again
    after changing the code.
    """
    from sealfl.fl.vfl.demo import check_rows, prepare_run_dir, write_data, write_role_configs
    from sealfl.fl.vfl.leader import LeaderRules

    overrides = _overrides(
        epochs, batch_size, learning_rate, optimizer, seed, defence, sigma, wire_dtype
    )
    check_rows(preset, rows, _settings(preset, overrides))
    LeaderRules(checkpoint_every=checkpoint_every)  # refused now, not when the leader starts
    paths = prepare_run_dir(run_dir)
    paths |= write_data(run_dir, preset, rows=rows)
    configs = write_role_configs(
        run_dir,
        paths,
        settings={"preset": preset, **overrides},
        leader_options={"checkpoint_every": checkpoint_every},
        follower_options={"wait_for_leader": 60.0},
    )
    typer.echo(f"prepared {run_dir}; run each party in its own terminal:\n")
    typer.echo(f"SEALFL_LISTEN=127.0.0.1:50090 sealfl run --config {configs['leader']}")
    typer.echo(f"SEALFL_PEERS=leader=127.0.0.1:50090 sealfl run --config {configs['follower']}")
    if "leader-test" in paths:
        typer.echo(
            "\nthen score the test rows jointly (each command with its role's --policy and "
            f"--simulated-platform {run_dir / 'platform'}):\n"
            f"sealfl vfl predict --role leader --data {paths['leader-test']} --half "
            f"{run_dir / 'leader' / 'vfl_leader_half.sealed'} --manifest "
            f"{run_dir / 'leader' / 'vfl_manifest.json'} --policy {paths['policy-leader']} ...\n"
            f"sealfl vfl predict --role follower --data {paths['follower-test']} --half "
            f"{run_dir / 'follower' / 'vfl_follower_half.sealed'} --manifest "
            f"{run_dir / 'follower' / 'vfl_manifest.json'} --leader 127.0.0.1:50091 ..."
        )


@demo_app.command("vfl")
def demo(
    preset: PresetOption = "breast",
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    learning_rate: LrOption = None,
    seed: SeedOption = None,
    defence: DefenceOption = None,
    sigma: SigmaOption = None,
    wire_dtype: WireDtypeOption = None,
    rows: Annotated[
        int | None,
        typer.Option("--rows", help="Rows of generated data (wide-and-deep).", show_default=False),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Where to put everything (default: a new directory under ./vfl-demo).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """PSI, split training, leak report, sealed export and joint prediction (simulated TEE)."""
    from sealfl.fl.vfl.demo import DemoOptions, run_demo

    settings = _overrides(epochs, batch_size, learning_rate, None, seed, defence, sigma, wire_dtype)
    _settings(preset, settings)  # refused here, before the demo starts anything
    code = run_demo(
        DemoOptions(preset=preset, settings=settings, run_dir=run_dir, rows=rows),
        console=output_console(),
    )
    if code:
        raise typer.Exit(code=code)


@bench_app.command("vfl")
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer steps and rounds.")] = False,
) -> None:
    """Time a split step over RA-TLS (two processes) against a centralised step; bytes per step."""
    load_benchmark("vfl").main(quick=quick)

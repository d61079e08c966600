"""The homo-lr commands refuse unusable arguments with a clear message, before any work."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import sealfl.cli.main  # noqa: F401  (registers the command modules)
from sealfl.cli.app import app
from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.common.metrics import MetricsLog
from sealfl.fl.homo_lr.algorithm import Hyperparameters, Schedule
from sealfl.fl.homo_lr.demo import DemoOptions, run_demo
from sealfl.fl.homo_lr.protos import homo_lr_pb2 as pb
from sealfl.fl.homo_lr.service import settings_from_proto, settings_to_proto
from sealfl.runtime import load_role_config


def _invoke(*args: str) -> Exception | None:
    result = CliRunner().invoke(app, list(args), env={"SEALFL_POLICY": "", "COLUMNS": "200"})
    return result.exception


def test_ps_without_policy_names_the_flag(tmp_path: Path) -> None:
    csv = tmp_path / "v.csv"
    csv.write_text("id,y,x0\n1,0,0.5\n")
    exc = _invoke("homo-lr", "ps", "--worker-num", "1", "--validate-set", str(csv))
    assert isinstance(exc, ConfigError) and "--policy FILE" in str(exc)


def test_worker_with_unknown_preset(tmp_path: Path) -> None:
    exc = _invoke(
        "homo-lr", "worker", "--train-set", "t.csv", "--id", "1", "--server", "x:1",
        "--preset", "fastest",
    )  # fmt: skip
    assert isinstance(exc, ConfigError) and "expected one of ['accurate', 'reference']" in str(exc)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 3}, "1 or 2 workers; got 3"),
        ({"preset": "x"}, "--preset: expected one of"),
        ({"epochs": 0}, "--epochs must be at least 1, got 0"),
    ],
)
def test_demo_options_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DemoOptions(**kwargs)  # type: ignore[arg-type]


def test_settings_round_trip_and_refusal() -> None:
    hp = Hyperparameters(learning_rate=0.3, alpha=0.0, iterations=7, schedule=Schedule.CONSTANT)
    assert settings_from_proto(settings_to_proto(hp, 30)) == (hp, 30)
    bad = settings_to_proto(hp, 30)
    bad.schedule = "cosine"
    with pytest.raises(ProtocolError, match="schedule: expected one of"):
        settings_from_proto(bad)
    with pytest.raises(ProtocolError, match="learning rate must be a positive number"):
        settings_from_proto(pb.TrainingSettings(schedule="constant", iterations=3, n_features=2))


def test_metrics_lines_are_json_with_null_for_nan(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m" / "x.jsonl", party="ps", clock=lambda: 12.5)
    log.write("evaluation", iteration=3, loss=math.nan)
    log.close()
    log.write("dropped")  # after close: ignored, no error
    records = [json.loads(line) for line in (tmp_path / "m" / "x.jsonl").read_text().splitlines()]
    assert records == [
        {"event": "evaluation", "party": "ps", "time": 12.5, "iteration": 3, "loss": None}
    ]


def test_prepare_writes_the_files_and_prints_the_commands(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["homo-lr", "prepare", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.output.count("sealfl run --config") == 3
    for name in ("ps.toml", "worker-1.toml", "worker-2.toml"):
        assert f"sealfl run --config {tmp_path / 'r' / name}" in result.output
    for name in ("policy-ps.toml", "policy-worker.toml", "data/breast_homo_test.csv"):
        assert (tmp_path / "r" / name).is_file()
    # Every role config it wrote loads, and names files that exist.
    for name in ("ps.toml", "worker-1.toml", "worker-2.toml"):
        config = load_role_config(tmp_path / "r" / name, environ={})
        assert config.policy is not None and config.policy.is_file()
        assert config.tee is not None and config.tee.simulated_platform is not None
        assert config.tee.simulated_platform.is_dir()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("1,1,0.5\n2,-1,0.3\n", r"expected labels 0 or 1, got -1 in the row with id 2 \(1 such"),
        ("1,2,0.5\n2,0,0.3\n", "got 2 in the row with id 1"),
    ],
)
def test_labels_other_than_0_and_1_are_refused(tmp_path: Path, rows: str, message: str) -> None:
    """The -1/1 convention would otherwise train a wrong model without a word."""
    from sealfl.fl.homo_lr.launch import read_binary_csv

    csv = tmp_path / "t.csv"
    csv.write_text("id,y,x0\n" + rows)
    with pytest.raises(ConfigError, match=message):
        read_binary_csv(csv)
    csv.write_text("id,y,x0\n1,1,0.5\n2,0,0.3\n")
    assert read_binary_csv(csv).labels().tolist() == [1, 0]


def test_min_workers_zero_is_refused_not_replaced(tmp_path: Path) -> None:
    """``--min-workers 0`` is out of range; it must not silently mean ``--worker-num``."""
    from sealfl.fl.homo_lr.launch import PsOptions

    csv = tmp_path / "v.csv"
    csv.write_text("id,y,x0\n1,0,0.5\n")
    with pytest.raises(ConfigError, match=r"--min-workers must be between 1 .*got 0"):
        PsOptions(
            worker_num=2, validate_set=csv, min_workers=0, key_bits=1024, out_dir=tmp_path / "o"
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", "-1"], "--id must be between 0 and 4294967295, got -1"),
        (["--id", "4294967296"], "--id must be between 0 and 4294967295, got 4294967296"),
        (["--id", "1", "--epochs", "4294967296"], "--epochs must be at most 4294967295"),
    ],
)
def test_worker_values_the_protocol_cannot_carry_are_refused(args: list[str], message: str) -> None:
    """They are 32-bit fields on the wire: refused up front, not as a protobuf ValueError."""
    exc = _invoke("homo-lr", "worker", "--train-set", "t.csv", "--server", "x:1", *args)
    assert isinstance(exc, ConfigError) and message in str(exc), exc


@pytest.mark.parametrize("role", ["ps", "worker"])
def test_cores_below_one_is_refused_before_any_work(tmp_path: Path, role: str) -> None:
    """Else it surfaced only at the first encryption, after the workers had joined."""
    args = (
        ["ps", "--worker-num", "1", "--validate-set", "v.csv"]
        if role == "ps"
        else ["worker", "--train-set", "t.csv", "--id", "1", "--server", "x:1"]
    )
    exc = _invoke("homo-lr", *args, "--cores", "0")
    assert isinstance(exc, ConfigError) and "--cores must be at least 1, got 0" in str(exc), exc


def test_policy_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    """$SEALFL_POLICY stands in for --policy: the next thing missing is the platform."""
    csv = tmp_path / "v.csv"
    csv.write_text("id,y,x0\n1,0,0.5\n")
    result = CliRunner().invoke(
        app,
        ["homo-lr", "ps", "--worker-num", "1", "--validate-set", str(csv)],
        env={"SEALFL_POLICY": str(tmp_path / "policy.toml"), "SEALFL_SIMULATED_PLATFORM": ""},
    )
    exc = result.exception
    assert isinstance(exc, ConfigError) and "--simulated-platform DIR" in str(exc), exc


def test_demo_shows_why_the_ps_did_not_start(tmp_path: Path) -> None:
    """Every line the PS wrote before exiting reaches the console, and its exit status is kept."""
    out = io.StringIO()
    code = run_demo(
        DemoOptions(key_bits=64, epochs=1, run_dir=tmp_path / "run"),
        console=Console(file=out, width=200),
    )
    assert code == 2
    expected = "ps.toml: options.key_bits: expected one of 1024, 2048, 3072, got 64"
    assert expected in out.getvalue(), out.getvalue()
    assert not (tmp_path / "run" / "ps").exists()  # refused before creating anything

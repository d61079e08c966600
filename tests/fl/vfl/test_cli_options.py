"""Absurd option values: every vfl command refuses them before it starts anything.

The option walk (``tests/cli/test_bad_options.py``) feeds bad values with junk around them, so
a party command stops at its junk data or missing policy before the value under test matters.
Here every other input is valid (a prepared run directory: platform, policies, data), so an
unchecked value would start a leader, a PSI or a demo; each must instead be refused with exit
2, one error line naming the option, and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealfl.cli.main import run

BIG = str(2**64)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vfl-options")
    assert run(["vfl", "prepare", "--run-dir", str(root / "run")]) == 0
    return root / "run"


def _party(prepared: Path, role: str) -> list[str]:
    """A valid command line of ``role`` (a leader would listen on a free port, briefly)."""
    common = [
        *("--data", str(prepared / "data" / f"{role}-train.csv")),
        *("--policy", str(prepared / f"policy-{role}.toml")),
        *("--simulated-platform", str(prepared / "platform")),
        *("--out", str(prepared / f"out-{role}")),
    ]
    if role == "leader":
        return ["vfl", "leader", *common, "--listen", "127.0.0.1:0", "--join-deadline", "1"]
    return ["vfl", "follower", *common, "--leader", "127.0.0.1:9"]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    code = run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("role", "option", "value", "named"),
    [
        ("leader", "--checkpoint-every", BIG, "--checkpoint-every"),
        ("leader", "--log-every", BIG, "--log-every"),
        ("leader", "--step-deadline", "1e300", "--step-deadline"),
        ("leader", "--join-deadline", "nan", "--join-deadline"),
        ("leader", "--threads", BIG, "--threads"),
        ("leader", "--seed", BIG, "train.seed"),
        ("leader", "--psi-mode", "cardinality", "--psi-mode"),
        ("leader", "--psi-mode", "leader-only", "--psi-mode"),
        ("follower", "--psi-mode", "cardinality", "--psi-mode"),
        ("follower", "--wait-for-leader", "1e300", "--wait-for-leader"),
        ("follower", "--step-deadline", "inf", "--step-deadline"),
        ("follower", "--threads", "5000", "--threads"),
        ("follower", "--seed", BIG, "train.seed"),
        ("follower", "--wire-dtype", "bfloat16", "train.wire_dtype"),
    ],
)
def test_a_party_refuses_before_it_starts(
    prepared: Path,
    capsys: pytest.CaptureFixture[str],
    role: str,
    option: str,
    value: str,
    named: str,
) -> None:
    argv = _party(prepared, role)
    argv += [f"{option}={value}"]
    line = _refused(argv, capsys, named, "got")
    assert not (prepared / f"out-{role}").exists(), line


def test_training_refuses_the_modes_that_give_no_aligned_order(
    prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused([*_party(prepared, "leader"), "--psi-mode", "leader-only"], capsys)
    assert "gives the follower no aligned order" in line and "enclave-only" in line
    line = _refused([*_party(prepared, "follower"), "--psi-mode", "cardinality"], capsys)
    assert "gives neither party an aligned order" in line


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--rows=-1", "--preset", "reference"], ["--rows", "expected", "got -1"]),
        (["--rows", BIG, "--preset", "default"], ["--rows", "[256, 1,000,000]"]),
        (["--rows", "10", "--preset", "reference"], ["--rows", "at least one batch of 32"]),
        (["--rows", "500"], ["--rows", "applies to the generated data", "'breast'"]),
        (["--seed", BIG], ["train.seed", "[0, 2**64 - 1]"]),
    ],
)
def test_demo_and_prepare_refuse_before_writing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragments: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    _refused(["demo", "vfl", "--run-dir", "demo", *argv], capsys, *fragments)
    _refused(["vfl", "prepare", "--run-dir", "prep", *argv], capsys, *fragments)
    assert sorted(tmp_path.iterdir()) == []


def test_prepare_refuses_a_checkpoint_interval_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    argv = ["vfl", "prepare", "--run-dir", str(run_dir), "--checkpoint-every", BIG]
    _refused(argv, capsys, "--checkpoint-every", "expected an integer in [0, 4,294,967,295]")
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--deadline", "nan"), ("--wait-for-leader", "inf"), ("--psi-mode", "cardinality")],
)
def test_predict_refuses_before_opening_anything(
    prepared: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    argv = [
        *("vfl", "predict", "--role", "follower", "--leader", "127.0.0.1:9"),
        *("--data", str(prepared / "data" / "follower-test.csv")),
        *("--half", str(prepared / "missing.sealed"), "--manifest", str(prepared / "missing")),
        *("--policy", str(prepared / "policy-follower.toml")),
        *("--simulated-platform", str(prepared / "platform")),
        f"{option}={value}",
    ]
    _refused(argv, capsys, option)

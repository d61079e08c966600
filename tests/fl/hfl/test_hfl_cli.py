"""The ``sealfl hfl`` commands as a user runs them: prepare, role configs, errors, the reference
preset on a CIFAR-10-format sample, report; and ``sealfl`` itself starting without torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hfl_parties import CLI, Party, events, fresh_measurements, start_role

from sealfl.cli import main as cli
from sealfl.data import synthetic_images, write_cifar10
from sealfl.errors import ConfigError
from sealfl.fl.hfl.demo import prepare_run_dir, write_data, write_role_configs
from sealfl.fl.hfl.roles import ps_options, worker_options
from sealfl.fl.hfl.settings import PRESETS
from sealfl.runtime import load_role_config

pytestmark = pytest.mark.timeout(240)


def sealfl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_the_command_line_starts_without_torch() -> None:
    code = (
        "import sys, sealfl.cli.main\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "hfl" in sealfl("--help").stdout


def test_prepare_writes_configs_that_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code = cli.run(
        ["hfl", "prepare", "--run-dir", str(run), "--model", "small-cnn", "--rounds", "3"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"sealfl run --config {run / 'ps.toml'}" in out
    for name in ("ps.toml", "worker-1.toml", "worker-2.toml", "release.toml", "policy-ps.toml"):
        assert (run / name).is_file(), name
    assert (run / "data" / "shards" / "shards.json").is_file()
    ps = ps_options(load_role_config(run / "ps.toml", environ={}))
    worker = worker_options(load_role_config(run / "worker-2.toml", environ={}))
    assert ps.settings == worker.settings
    assert ps.settings.model == "small-cnn" and ps.settings.rounds == 3
    assert worker.shard.name == "shard-1-of-2.npz" and worker.worker_id == 2


def test_bad_options_exit_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert cli.run(["hfl", "prepare", "--run-dir", str(run)]) == 0
    config = run / "worker-1.toml"
    config.write_text(config.read_text() + "learning_rat = 0.1\n")
    capsys.readouterr()
    assert cli.run(["run", "--config", str(config)]) == 2
    assert "options.learning_rat: unknown key" in capsys.readouterr().err
    quorum = cli.run(
        [
            "hfl", "ps", "--test-set", str(run / "data" / "test" / "shard-0-of-1.npz"),
            "--worker-num", "2", "--min-workers", "3", "--policy", str(run / "policy-ps.toml"),
            "--simulated-platform", str(run / "platform"),
        ]
    )  # fmt: skip
    assert quorum == 2
    assert "--min-workers must be between 1 and --worker-num (2), got 3" in capsys.readouterr().err
    assert cli.run(["hfl", "worker", "--shard", "x", "--id", "1", "--server", "nowhere"]) == 2
    assert "--server" in capsys.readouterr().err
    assert cli.run(["hfl", "report", str(tmp_path / "nowhere")]) == 2
    assert "no ps_metrics.jsonl" in capsys.readouterr().err


def test_resume_in_a_role_config(tmp_path: Path) -> None:
    """``resume``: false, true or "auto"; true refuses to start a new run without a checkpoint
    (a wrong ``out`` would otherwise restart a long run from round 1 unnoticed)."""
    run = tmp_path / "run"
    assert cli.run(["hfl", "prepare", "--run-dir", str(run), "--model", "small-cnn"]) == 0
    config = run / "ps.toml"
    original = config.read_text()  # [options] is the file's last table
    assert ps_options(load_role_config(config, environ={})).resume is False
    for written, expected in (("true", True), ("false", False), ('"auto"', "auto")):
        config.write_text(original + f"resume = {written}\n")
        assert ps_options(load_role_config(config, environ={})).resume == expected
    config.write_text(original + 'resume = "yes"\n')
    with pytest.raises(ConfigError, match=r"options\.resume: expected true .* got 'yes'"):
        ps_options(load_role_config(config, environ={}))

    config.write_text(original + "resume = true\n")
    refused = sealfl("run", "--config", str(config))
    assert refused.returncode == 2, refused.stderr
    assert "no checkpoint at" in refused.stderr and 'resume = "auto"' in refused.stderr
    assert not (run / "ps" / "hfl_model.sealed").exists()


@pytest.mark.slow
def test_reference_preset_on_a_cifar_sample(tmp_path: Path) -> None:
    """The reference's model, crops, gradients and Momentum at the PS, and its log line."""
    cifar = tmp_path / "cifar-10-batches-bin"
    cifar.mkdir()
    write_cifar10(synthetic_images(256, seed=1), cifar / "data_batch_1.bin")
    write_cifar10(synthetic_images(100, seed=2), cifar / "test_batch.bin")
    settings = PRESETS["reference"].replace(rounds=3)
    paths = prepare_run_dir(tmp_path, measurements=fresh_measurements())
    paths |= write_data(tmp_path, workers=2, dataset="cifar10", data_dir=tmp_path)
    configs = write_role_configs(tmp_path, paths, workers=2, settings=settings)
    logs = tmp_path / "logs"
    logs.mkdir()
    parties: list[Party] = []
    try:
        ps = start_role("ps", configs["ps"], logs, listen="127.0.0.1:0")
        parties.append(ps)
        ps.wait_for(lambda: (tmp_path / "ps" / "ps.address").is_file(), "its address")
        address = (tmp_path / "ps" / "ps.address").read_text().strip()
        for k in (1, 2):
            parties.append(start_role(f"worker-{k}", configs[f"worker {k}"], logs, ps=address))
        assert ps.finish() == 0, ps.output()
        for worker in parties[1:]:
            assert worker.finish() == 0, worker.output()
    finally:
        for party in parties:
            party.stop()
    lines = [line for line in parties[1].output().splitlines() if line.startswith("step: ")]
    assert [line.split(",")[0] for line in lines] == ["step: 1", "step: 2", "step: 3"]
    assert ", loss: " in lines[0] and ", iter time: " in lines[0]
    metrics = tmp_path / "ps" / "ps_metrics.jsonl"
    rounds = list(events(metrics, "round"))
    assert [r["examples"] for r in rounds] == [256, 256, 256]  # one batch of 128 per worker
    assert "resnet56-v2" in ps.output() and "855,834" not in ps.output()  # values, not params

    report = sealfl("hfl", "report", str(tmp_path))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "ps" / "hfl_report.png").read_bytes()[:4] == b"\x89PNG"
    assert "3 evaluated rounds" in report.stdout

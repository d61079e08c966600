"""The ``sealfl infer`` commands as a user runs them: train, serve, query, demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sealfl.data import breast
from sealfl.fl.infer.launch import PartyProcess, launch_server

SEALFL = [sys.executable, "-m", "sealfl.cli.main"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEALFL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _query(
    mode: str, server: PartyProcess, data: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """``sealfl infer query`` of ``data`` at ``server`` in ``mode``, with further ``options``."""
    address = server.ready["address"]
    return _run(
        "infer", "query", "--mode", mode, "--server", address, "--data", str(data), *options
    )


def test_train_serve_query(tmp_path: Path) -> None:
    breast.write_split("homo_guest", tmp_path / "train.csv")
    breast.write_split("homo_test", tmp_path / "test.csv")
    model = tmp_path / "model.npz"
    trained = _run("infer", "train", "--data", str(tmp_path / "train.csv"), "--out", str(model))
    assert trained.returncode == 0, trained.stderr
    assert "training accuracy" in trained.stdout and model.is_file()
    server = launch_server("plaintext", model=model, log_dir=tmp_path)
    try:
        test = tmp_path / "test.csv"
        queried = _query(
            "plaintext",
            server,
            test,
            "--server-fingerprint",
            server.ready["fingerprint"],
            "--out",
            str(tmp_path / "pred.csv"),
        )
        assert queried.returncode == 0, queried.stderr
        accuracy = float(queried.stdout.split("accuracy ")[1].split()[0].rstrip(";"))
        assert accuracy > 0.9
        lines = (tmp_path / "pred.csv").read_text().splitlines()
        assert lines[0] == "id,probability,label" and len(lines) == 1 + 114
        missing = _query("mpc", server, test)
        assert missing.returncode == 2
        assert "mpc mode needs --server-fingerprint" in missing.stderr
        unpinned_dealer = _query(
            "mpc", server, test, "--server-fingerprint", server.ready["fingerprint"]
        )
        assert unpinned_dealer.returncode == 2
        assert "mpc mode needs --dealer-fingerprint" in unpinned_dealer.stderr
    finally:
        server.stop()


def test_serve_without_model_is_a_clear_error() -> None:
    result = _run("infer", "serve", "--mode", "plaintext")
    assert result.returncode == 2
    assert "plaintext mode needs --model" in result.stderr


def test_demo_shows_all_modes_agree(tmp_path: Path) -> None:
    result = _run("demo", "infer", "--workdir", str(tmp_path), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all modes agree" in result.stdout


def test_mpc_query_from_the_command_line(tmp_path: Path) -> None:
    from sealfl.fl.infer.launch import launch_dealer

    breast.write_split("homo_guest", tmp_path / "train.csv")
    breast.write_split("homo_test", tmp_path / "test.csv")
    model = tmp_path / "model.npz"
    trained = _run("infer", "train", "--data", str(tmp_path / "train.csv"), "--out", str(model))
    assert trained.returncode == 0, trained.stderr
    dealer = launch_dealer(tmp_path)
    server = launch_server("mpc", model=model, log_dir=tmp_path, dealer=dealer)
    try:
        for output in ("probability", "label"):
            queried = _query(
                "mpc",
                server,
                tmp_path / "test.csv",
                "--server-fingerprint",
                server.ready["fingerprint"],
                "--dealer-fingerprint",
                dealer.ready["fingerprint"],
                "--output",
                output,
            )
            assert queried.returncode == 0, queried.stderr
            assert "2 round trips" in queried.stdout and "accuracy 0.9" in queried.stdout
    finally:
        server.stop()
        dealer.stop()


def test_query_refuses_a_malformed_model_hash_before_connecting(tmp_path: Path) -> None:
    breast.write_split("homo_test", tmp_path / "test.csv")
    for bad in ("abc", "zz" * 32, "00" * 31):
        result = _run(
            "infer",
            "query",
            "--mode",
            "tee",
            "--server",
            "127.0.0.1:9",
            "--data",
            str(tmp_path / "test.csv"),
            "--platform-fingerprint",
            "ab" * 32,
            "--model-sha256",
            bad,
        )
        assert result.returncode == 2, result.stderr
        message = " ".join(result.stderr.split())  # the console wraps long lines
        assert f"--model-sha256 must be 64 hex digits, got {bad!r}" in message


def test_bad_options_exit_2_before_anything_is_read_made_or_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sealfl.cli.main import run

    breast.write_split("homo_test", tmp_path / "test.csv")
    csv, key, out = str(tmp_path / "test.csv"), tmp_path / "new.key", tmp_path / "model.npz"
    missing_model = str(tmp_path / "absent.npz")  # never read: the options fail first
    serve = ["infer", "serve", "--model", missing_model, "--key-file", str(key)]
    mpc = ["--mode", "mpc", "--dealer", "127.0.0.1:9", "--dealer-fingerprint", "ab" * 32]
    query = ["infer", "query", "--server", "127.0.0.1:9", "--data", csv]
    pins = ["--server-fingerprint", "ab" * 32, "--dealer-fingerprint", "cd" * 32]
    cases = [
        (["infer", "dealer", "--address", "127.0.0.1:70000", "--key-file", str(key)], "port"),
        ([*serve, "--mode", "plaintext", "--address", "127.0.0.1:65536"], "--address: port"),
        ([*serve, *mpc[:4], "--dealer-fingerprint", "zz"], "--dealer-fingerprint must be"),
        ([*serve, *mpc, "--dealer", "localhost:123456"], "--dealer: port"),
        ([*serve, *mpc, "--allow-outputs", "logits"], "'logits' is not an output"),
        ([*serve, *mpc, "--row-budget", "-1"], "--row-budget: expected 0"),
        ([*query, "--mode", "mpc", *pins[:3], "zz"], "--dealer-fingerprint must be"),
        ([*query[:3], "127.0.0.1:99999", *query[4:], "--mode", "mpc", *pins], "--server: port"),
        ([*query, "--mode", "plaintext", "--server-fingerprint", "12:34"], "64 hex digits"),
        ([*query, "--mode", "tee", "--platform-fingerprint", "xyz"], "--platform-fingerprint"),
        ([*query, "--mode", "tee", "--platform", str(tmp_path)], "No such option"),
        (
            ["infer", "train", "--data", csv, "--out", str(out), "--learning-rate", "nan"],
            "--learning-rate must be a finite number > 0, got nan",
        ),
        (["infer", "train", "--data", csv, "--out", str(tmp_path / "no" / "m.npz")], "not exist"),
    ]
    for argv, message in cases:
        code = run(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
        assert "trained" not in err
    assert not key.exists() and not out.exists()

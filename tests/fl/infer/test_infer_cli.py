"""The ``sealfl infer`` commands as a user runs them: train, serve, query, demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    from sealfl.tee import SimulatedPlatform

    SimulatedPlatform.create(tmp_path / "platform")
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
            "--platform",
            str(tmp_path / "platform"),
            "--model-sha256",
            bad,
        )
        assert result.returncode == 2, result.stderr
        message = " ".join(result.stderr.split())  # the console wraps long lines
        assert f"--model-sha256 must be 64 hex digits, got {bad!r}" in message

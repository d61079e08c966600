"""One error, one line, wherever output goes; workload lines on standard output.

The commands run as real processes with their output on pipes (as under a log collector or a
test), where Rich used to wrap everything at 80 columns: a long path in an error then spanned
lines and a search for it missed.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.table import Table

from sealfl.cli.console import output_console, print_table

CLI = [sys.executable, "-m", "sealfl.cli.main"]
LONG = "a-directory-name-long-enough-to-wrap-" * 4


def sealfl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "SEALFL_TRACEBACK")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    """A directory whose path alone is longer than a line, holding a regular file."""
    directory = tmp_path / LONG / LONG
    directory.mkdir(parents=True)
    (directory / "plain.txt").write_text("not a key, a quote or a certificate\n")
    (directory / "plain.txt").chmod(0o600)
    return directory


def _one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_an_output_path_under_a_regular_file_is_one_line(deep: Path) -> None:
    plain = deep / "plain.txt"
    for args in (
        ["seal", "keygen", "--out", f"{plain}/sub/key"],
        ["he", "keygen", "--out", str(plain)],  # a file where the key directory should be
        ["he", "keygen", "--out", f"{plain}/keys"],
        ["model", "keygen", "--out", f"{plain}/keys"],
        ["attest", "simulated-platform", f"{plain}/platform"],
    ):
        result = sealfl(*args, cwd=deep)
        assert result.returncode == 2, (args, result.stderr)
        _one_error_line(result, str(plain), "not a directory")


def test_bad_input_files_exit_2_on_one_line(deep: Path, tmp_path: Path) -> None:
    plain = deep / "plain.txt"
    key = tmp_path / "seal.key"
    assert sealfl("seal", "keygen", "--out", str(key), cwd=tmp_path).returncode == 0
    sealed = tmp_path / "sealed"
    assert sealfl("seal", "encrypt", str(plain), str(sealed), "--key", str(key), cwd=tmp_path)
    cases = [
        # a file that is not a key, as --key: bad input, not a refusal
        (["seal", "encrypt", str(plain), str(tmp_path / "o"), "--key", str(plain)], "--key"),
        (["seal", "decrypt", str(sealed), str(tmp_path / "o"), "--key", str(plain)], "--key"),
        (["he", "inspect", str(plain)], str(plain)),
        (["attest", "inspect", str(plain)], str(plain)),
        (["seal", "info", str(deep / "missing")], str(deep / "missing")),
    ]
    for args, needle in cases:
        result = sealfl(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        _one_error_line(result, needle)


def test_a_bad_root_ca_is_bad_input(deep: Path, tmp_path: Path) -> None:
    from shared_files import shared_path

    vectors = shared_path("vectors")
    result = sealfl(
        "attest", "verify", str(vectors / "sgx_quote"),
        "--collateral", str(vectors / "sgx_quote_collateral.json"),
        "--at", "1752919277", "--root-ca", str(deep / "plain.txt"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    _one_error_line(result, "--root-ca", str(deep / "plain.txt"), "not an X.509 certificate")
    result = sealfl(
        "attest", "verify", str(vectors / "sgx_quote"),
        "--collateral", str(vectors / "sgx_quote_collateral.json"), "--at", str(2**64),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    _one_error_line(result, "--at")


def test_a_huge_number_in_a_policy_is_one_line(tmp_path: Path) -> None:
    from shared_files import shared_path

    vectors = shared_path("vectors")
    for line in (
        "max_evidence_age_seconds = 99999999999999999999999",
        "[[sgx]]\nmr_signer = '" + "00" * 32 + "'\nmin_isv_svn = 99999999999999999999999",
    ):
        policy = tmp_path / "policy.toml"
        policy.write_text(line + "\n")
        result = sealfl(
            "attest", "verify", str(vectors / "sgx_quote"),
            "--collateral", str(vectors / "sgx_quote_collateral.json"),
            "--at", "1752919277", "--policy", str(policy),
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2, result.stdout + result.stderr
        _one_error_line(result, str(policy))


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args, needle in (
        (["seal", "info", "--bogus", "x"], "--bogus"),
        (["he", "keygen"], "--out"),
        (["he", "keygen", "--out", "x", "--bits", "many"], "--bits"),
        (["no-such-command"], "no-such-command"),
    ):
        result = sealfl(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        line = _one_error_line(result, needle)
        assert "--help" in line  # where to look next


def test_a_warning_is_one_line_too(tmp_path: Path) -> None:
    result = sealfl("he", "keygen", "--out", str(tmp_path / LONG), "--bits", "1024", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("warning: a 1024-bit Paillier modulus")
    assert f"private key: {tmp_path / LONG}/paillier-private.json" in result.stdout.splitlines()


def test_a_pipe_console_keeps_each_message_and_table_row_on_one_line() -> None:
    sink = io.StringIO()
    console = output_console()
    console.file = sink  # a pipe: not a terminal
    message = "error: " + "/".join([LONG] * 4)
    console.print(message, markup=False)
    table = Table("party", "path")
    table.add_row("worker 1", "/".join([LONG] * 3))
    print_table(console, table)
    lines = sink.getvalue().splitlines()
    assert lines[0] == message
    assert any("worker 1" in row and row.rstrip(" │|").endswith(LONG) for row in lines), lines


def _read_all(fd: int, into: list[bytes]) -> None:
    """Drain a pty (a full one would block the writer); stops when the pty is closed."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


def _measurements() -> dict[str, bytes]:
    """Measure the homo-lr roles in a fresh process, as the parties about to start will."""
    code = (
        "from sealfl.fl.homo_lr.launch import role_measurement as m; "
        "print(m('ps').hex(), m('worker').hex())"
    )
    out = subprocess.run([*CLI[:1], "-c", code], capture_output=True, text=True, check=True)
    ps, worker = out.stdout.split()
    return {"ps": bytes.fromhex(ps), "worker": bytes.fromhex(worker)}


@pytest.mark.filterwarnings("ignore::sealfl.he.WeakKeyWarning")
def test_a_worker_with_stdout_to_a_file_and_stderr_on_a_terminal_logs_its_lines(
    tmp_path: Path,
) -> None:
    """``worker > log`` from a terminal: the iter lines land in the log, the bar on the tty."""
    from sealfl.fl.homo_lr.demo import prepare_run_dir
    from sealfl.fl.homo_lr.launch import ADDRESS_FILE

    run = prepare_run_dir(tmp_path, workers=1, measurements=_measurements())
    out = tmp_path / "ps"
    with (tmp_path / "ps.log").open("w") as ps_log:
        ps = subprocess.Popen(
            [
                *CLI,
                "homo-lr",
                "ps",
                "--worker-num",
                "1",
                "--validate-set",
                str(run["test"]),
                "--listen",
                "127.0.0.1:0",
                "--key-bits",
                "1024",
                "--epochs",  # the PS sets the training settings (the workers declare the same)
                "10",
                "--policy",
                str(run["policy-ps"]),
                "--out",
                str(out),
                "--simulated-platform",
                str(run["platform"]),
                "--cores",
                "1",
            ],
            stdout=ps_log,
            stderr=subprocess.STDOUT,
        )
    controller, terminal = pty.openpty()
    seen_on_terminal: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(controller, seen_on_terminal), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not (out / ADDRESS_FILE).is_file():
            assert ps.poll() is None, (tmp_path / "ps.log").read_text()
            assert time.monotonic() < deadline, "the PS did not start"
            time.sleep(0.05)
        address = (out / ADDRESS_FILE).read_text().strip()
        log = tmp_path / "worker.log"
        with log.open("w") as stdout:
            worker = subprocess.run(
                [
                    *CLI,
                    "homo-lr",
                    "worker",
                    "--train-set",
                    str(run["train-1"]),
                    "--id",
                    "1",
                    "--server",
                    address,
                    "--epochs",
                    "10",
                    "--policy",
                    str(run["policy-worker"]),
                    "--simulated-platform",
                    str(run["platform"]),
                    "--cores",
                    "1",
                ],
                stdout=stdout,
                stderr=terminal,
                timeout=120,
            )
        on_terminal = b"".join(seen_on_terminal).decode(errors="replace")
        assert worker.returncode == 0, log.read_text() + on_terminal
        lines = log.read_text().splitlines()
        assert [line.split()[:2] for line in lines if line.startswith("iter:")] == [
            ["iter:", "0"],
            ["iter:", "9"],
        ], lines
        assert ps.wait(timeout=60) == 0, (tmp_path / "ps.log").read_text()
    finally:
        os.close(terminal)
        os.close(controller)
        if ps.poll() is None:
            ps.kill()
            ps.wait()

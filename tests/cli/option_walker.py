"""Run every ``sealfl`` command with bad option values, in this process; report what users see.

Usage (from the tests, in a subprocess with a scratch working directory)::

    python option_walker.py OUT.jsonl FROM "seal keygen" "he keygen" ...

Each command is walked one parameter at a time: that parameter gets each bad value its type
has, the other required parameters get plausible junk (a junk file, "junk", 1), and the rest
keep their defaults. Commands that would run for long once their options pass (servers,
benchmarks, demos, clients that wait for a peer) get only values that no command may accept,
so each must refuse them before it starts. Every invocation goes through
:func:`sealfl.cli.main.run` with standard output and error captured (so, as in a pipe, neither
is a terminal) and a time bound; one JSON line per invocation is appended to OUT.jsonl. The
walk starts at command line number FROM (0 first); after a command line that ran past the
time bound the process exits with status 3, printing where to resume.
"""

from __future__ import annotations

import contextlib
import enum
import io
import json
import os
import signal
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from sealfl.cli.app import app
from sealfl.cli.main import run

TIME_BOUND_S = 8.0
LONG = "x" * 120  # a path component longer than an 80-column line
ADDRESS_WORDS = ("listen", "address", "server", "broker", "dealer")
# Commands that run until stopped, run for minutes, or wait for a peer once their options pass.
LONG_RUNNING = (
    "bench",
    "demo",
    "homo-lr ps",
    "homo-lr worker",
    "infer dealer",
    "infer serve",
    "infer query",
    "kbs serve",
    "kbs serve-dev",
    "kbs put",
    "kbs revoke",
    "kbs fetch",
    "model fetch",
    "run",
    "sim",
)


class Hang(BaseException):
    """An invocation ran past its time bound."""


def _alarm(signum: int, frame: types.FrameType | None) -> None:
    raise Hang


def commands() -> dict[str, Any]:
    """Return every leaf command by its path ("seal keygen")."""
    found: dict[str, Any] = {}

    def walk(command: Any, prefix: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", {})
        if not subcommands and prefix:
            found[" ".join(prefix)] = command
        for name, sub in subcommands.items():
            walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return found


class Scratch:
    """Files the bad values point at, and valid inputs, in the working directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.junk = root / "junk.txt"
        self.junk.write_text("junk\n")
        self.junk.chmod(0o600)  # key files must be 0600: get past that check to the parser
        self.binary = root / "binary.bin"
        self.binary.write_bytes(bytes(range(256)) * 4)
        self.binary.chmod(0o600)
        self.empty = root / "empty"
        self.empty.write_bytes(b"")
        self.empty.chmod(0o600)
        self.directory = root / "a-directory"
        self.directory.mkdir()
        deep = root / LONG / LONG
        deep.mkdir(parents=True)
        self.long_file = deep / "junk.txt"
        self.long_file.write_text("junk\n")
        self.long_file.chmod(0o600)
        self.counter = 0
        (root / "outputs").mkdir()
        self.good = self._valid_inputs(root / "valid")

    def fresh(self) -> str:
        """A path that does not exist yet (valid for an output)."""
        self.counter += 1
        return str(self.root / "outputs" / f"new-{self.counter}")

    def _valid_inputs(self, d: Path) -> dict[tuple[str, str], str]:
        """Make valid inputs with the commands themselves; map (command, parameter) to them."""
        d.mkdir()
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            for argv in (
                ["seal", "keygen", "--out", f"{d}/seal.key"],
                ["seal", "encrypt", str(self.junk), f"{d}/sealed", "--key", f"{d}/seal.key"],
                ["he", "keygen", "--out", f"{d}/he", "--bits", "1024"],
                ["model", "keygen", "--out", f"{d}/owner", "--name", "owner"],
                ["attest", "simulated-platform", f"{d}/platform"],
            ):
                code = run(argv)
                assert code == 0, (argv, quiet.getvalue())
            (d / "release.toml").write_text(
                '[[recipient]]\nname = "owner"\npublic_key = "owner/owner.pub"\n'
            )
            code = run(
                [
                    *("model", "release", str(self.junk)),
                    *("--policy", f"{d}/release.toml", "--out", f"{d}/envelope"),
                ]
            )
            assert code == 0, quiet.getvalue()
        from sealfl.data import breast
        from sealfl.tee import SimulatedPlatform, SimulatedTee, create_ratls_certificate

        platform = SimulatedPlatform.load(d / "platform")
        cert = create_ratls_certificate(SimulatedTee(platform, b"\x01" * 32))
        (d / "cert.pem").write_bytes(cert.cert_pem)
        csv = breast.write_split("homo_test", d / "data.csv")
        (d / "policy.toml").write_text("allow_debug = false\n")
        vectors = Path(__file__).resolve().parents[3] / "shared" / "vectors"
        good = {
            ("seal encrypt", "key_file"): f"{d}/seal.key",
            ("seal decrypt", "key_file"): f"{d}/seal.key",
            ("seal decrypt", "src"): f"{d}/sealed",
            ("seal info", "src"): f"{d}/sealed",
            ("he inspect", "key_file"): f"{d}/he/paillier-public.json",
            ("attest inspect", "cert"): f"{d}/cert.pem",
            ("model release", "policy_file"): f"{d}/release.toml",
            ("model open", "envelope"): f"{d}/envelope",
            ("model open", "key"): f"{d}/owner/owner.key",
            ("model inspect", "envelope"): f"{d}/envelope",
            ("model policy", "policy_file"): f"{d}/release.toml",
            ("infer train", "data"): str(csv),
            ("homo-lr worker", "train_set"): str(csv),
            ("homo-lr ps", "validate_set"): str(csv),
            ("infer query", "data"): str(csv),
            ("*", "simulated_platform"): f"{d}/platform",
            ("*", "platform"): f"{d}/platform",
            ("*", "policy"): f"{d}/policy.toml",
        }
        if (vectors / "sgx_quote").is_file():
            good |= {
                ("attest verify", "quote"): str(vectors / "sgx_quote"),
                ("attest verify", "collateral"): str(vectors / "sgx_quote_collateral.json"),
                ("attest verify", "at"): "1752919277",
            }
        return good


def _annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation
    return getattr(getattr(param, "type", None), "name", str)


def _is(annotation: Any, kind: type) -> bool:
    return annotation is kind or (isinstance(annotation, type) and issubclass(annotation, kind))


def _choices(annotation: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return []


def bad_values(param: Any, name: str, scratch: Scratch, *, long_running: bool) -> list[str]:
    """Values of ``param`` that a command should refuse (or, for files, may reject)."""
    annotation = _annotation(param)
    under_a_file = f"{scratch.junk}/sub/{LONG}"
    if _is(annotation, Path):
        if long_running:
            return [under_a_file]
        return [
            under_a_file,
            str(scratch.root / "missing" / LONG),
            str(scratch.directory),
            str(scratch.junk),
            str(scratch.binary),
            str(scratch.empty),
            str(scratch.long_file),
        ]
    if _is(annotation, bool):
        return []
    if _is(annotation, int):
        return ["-1", str(2**64), "99999999999999999999999999"] + ([] if long_running else ["0"])
    if _is(annotation, float):
        return ["nan", "inf", "-inf", "-1", "1e999"]
    if _choices(annotation):
        return ["bogus"]
    if any(word in name for word in ADDRESS_WORDS):
        return ["127.0.0.1:99999", "127.0.0.1:-1", "[::1", "no-port", ""]
    if long_running:
        return []
    return ["", "junk", LONG, "\t", "a=b=c", "-1"]


OUTPUT_NAMES = ("out", "dst", "json_path", "run_dir", "out_dir", "workdir", "ready_file")


def filler(path: str, param: Any, name: str, scratch: Scratch) -> str:
    """A value for a required parameter that is not the one under test: valid if we can."""
    good = scratch.good.get((path, name)) or scratch.good.get(("*", name))
    if good is not None:
        return good
    annotation = _annotation(param)
    if _is(annotation, Path):
        return scratch.fresh() if name in OUTPUT_NAMES else str(scratch.junk)
    if _is(annotation, int):
        return "1"
    if _is(annotation, float):
        return "1.0"
    choices = _choices(annotation)
    if choices:
        return str(choices[0])
    if any(word in name for word in ADDRESS_WORDS):
        return "127.0.0.1:1"
    return "junk"


def _args(param: Any, value: str) -> list[str]:
    if getattr(param, "param_type_name", "") == "argument":
        return ["--", value] if value.startswith("-") else [value]
    option = max(param.opts, key=len)
    return [f"{option}={value}"] if value.startswith("-") else [option, value]


def invocations(path: str, command: Any, scratch: Scratch) -> Iterator[list[str]]:
    """Yield argv lists: one bad value of one parameter each."""
    long_running = path.startswith(LONG_RUNNING)
    params = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
    for param in params:
        for value in bad_values(param, param.name, scratch, long_running=long_running):
            options: list[str] = []
            arguments: list[str] = []
            for other in params:
                if other is param:
                    args = _args(other, value)
                elif other.required:
                    args = _args(other, filler(path, other, other.name, scratch))
                else:
                    continue
                if getattr(other, "param_type_name", "") == "argument":
                    arguments += args
                else:
                    options += args
            # Options first, then "--" arguments: an argument that starts with "-" stays one.
            yield [*path.split(), *options, *arguments]


def invoke(argv: list[str]) -> dict[str, Any]:
    """Run one command line as the ``sealfl`` command would, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    hung = False
    code: Any
    signal.setitimer(signal.ITIMER_REAL, TIME_BOUND_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run(argv)
            except SystemExit as exc:
                code = exc.code
    except Hang:
        hung, code = True, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {
        "argv": argv,
        "code": code,
        "hung": hung,
        "seconds": round(time.monotonic() - started, 3),
        "stdout": out.getvalue()[-2000:],
        "stderr": err.getvalue()[-4000:],
    }


RESUME_EXIT = 3
"""Exit status after a hang: the process may hold a half-done import or a running server,
so the caller starts a fresh one with ``--from`` the next command line."""


def main() -> None:
    out_path, start, selected = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    signal.signal(signal.SIGALRM, _alarm)
    root = Path.cwd() / f"scratch-{start}"
    root.mkdir()
    scratch = Scratch(root)
    table = commands()
    index = -1
    with out_path.open("a", encoding="utf-8") as out:
        for path in selected:
            for argv in invocations(path, table[path], scratch):
                index += 1
                if index < start:
                    continue
                record = invoke(argv)
                record["command"] = path
                out.write(json.dumps(record) + "\n")
                out.flush()
                if record["hung"]:
                    print(f"resume {index + 1}", flush=True)
                    os._exit(RESUME_EXIT)
    # Servers a bad value failed to stop may have left threads or children: leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()

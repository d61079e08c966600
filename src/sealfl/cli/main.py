"""Entry point of the ``sealfl`` command.

Importing a command module registers its commands on the groups of :mod:`sealfl.cli.app`.

Whatever goes wrong reaches the user as one line on standard error, however long it is and
wherever the output goes (a terminal, a pipe, a log file), never as a traceback:

* an error sealfl raises on purpose: ``error: <message>``, exit status 2 for bad input
  (:class:`~sealfl.errors.ConfigError`) and 1 for a refusal (attestation, integrity, peers);
* a command line that does not parse (unknown option, missing argument, a value of the wrong
  type): ``error: <what> (see 'sealfl ... --help')``, exit status 2;
* an operating-system error that no command turned into a sealfl error: its message and the
  path, exit status 2 where the path is the problem (missing, not a directory, ...), else 1;
* anything else is a bug in sealfl: ``error: internal error ...`` with the exception's type and
  message, exit status 70 (``EX_SOFTWARE``); ``SEALFL_TRACEBACK=1`` shows the traceback.

Python warnings print as one ``warning: <message>`` line each.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

import typer

# Importing a command module registers its commands; add new modules here.
from sealfl.cli import (
    attest_cmd,  # sealfl attest ...
    deploy_cmd,  # sealfl deploy ...
    he_cmd,  # sealfl he ..., bench paillier
    hfl_cmd,  # sealfl hfl ..., demo hfl, bench hfl (torch imported inside the commands)
    homo_lr_cmd,  # sealfl homo-lr ..., demo homo-lr, bench homo-lr
    infer_cmd,  # sealfl infer ..., demo infer, bench infer
    kbs_cmd,  # sealfl kbs ..., bench kbs
    model_cmd,  # sealfl model ..., bench release
    net_cmd,  # sealfl bench ratls
    provision_cmd,  # sealfl provision, sealfl bundle ...
    psi_cmd,  # sealfl bench psi
    run_cmd,  # sealfl run --config ROLE.toml
    seal_cmd,  # sealfl seal ...
    sim_cmd,  # sealfl sim ..., bench sim (torch imported inside the commands)
    vfl_cmd,  # sealfl vfl ..., demo vfl, bench vfl (torch imported inside the commands)
)
from sealfl.cli.app import app
from sealfl.cli.console import output_console
from sealfl.errors import ConfigError, SealflError

COMMAND_MODULES = (
    attest_cmd,
    deploy_cmd,
    he_cmd,
    hfl_cmd,
    homo_lr_cmd,
    infer_cmd,
    kbs_cmd,
    model_cmd,
    net_cmd,
    provision_cmd,
    psi_cmd,
    run_cmd,
    seal_cmd,
    sim_cmd,
    vfl_cmd,
)

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 1
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE in sysexits.h
TRACEBACK_ENV = "SEALFL_TRACEBACK"

# click's base exception (typer vendors click in some releases and re-exports it in others).
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
# Errors of a path the user gave: bad input rather than a failure of this machine.
_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EROFS,
        errno.ENOTEMPTY,
    }
)


def one_line(text: str) -> str:
    """Join the lines of a message into one (``; `` between them), dropping blank ones."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _print_error(message: str) -> None:
    # The message is text, not markup: "[kbs]" or "[options]" in it must print as written.
    console = output_console(stderr=True)
    console.print("[red]error:[/red] ", end="", highlight=False)
    console.print(one_line(message), markup=False, highlight=False, soft_wrap=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line (Python's default adds the file, line and source)."""
    stream = file if file is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):  # stderr closed: not worth failing for
        stream.write(f"warning: {one_line(str(message))}\n")


def _usage_error(exc: Exception) -> int:
    message = getattr(exc, "format_message", lambda: str(exc))()
    ctx: Any = getattr(exc, "ctx", None)
    if ctx is not None:
        message = f"{message} (see '{ctx.command_path} --help')"
    _print_error(message)
    code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
    return code if isinstance(code, int) else EXIT_BAD_INPUT


def _os_error(exc: OSError) -> int:
    where = f"{exc.filename}: " if exc.filename is not None else ""
    _print_error(f"{where}{exc.strerror or exc}")
    return EXIT_BAD_INPUT if exc.errno in _PATH_ERRNOS else EXIT_REFUSED


def _internal_error(exc: BaseException) -> int:
    if os.environ.get(TRACEBACK_ENV):
        traceback.print_exception(exc)
    hint = "" if os.environ.get(TRACEBACK_ENV) else f"; {TRACEBACK_ENV}=1 shows where"
    _print_error(
        f"internal error (a bug in sealfl, please report it{hint}): {type(exc).__name__}: {exc}"
    )
    return EXIT_INTERNAL_ERROR


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: the process's arguments); return its exit status.

    Every failure is reported here as one line on standard error (see the module docstring).
    """
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        result = app(
            args=list(argv) if argv is not None else None,
            prog_name="sealfl",
            standalone_mode=False,
        )
    except SealflError as exc:
        _print_error(str(exc))
        return EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_REFUSED
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            return _usage_error_or_help(exc)
        return _usage_error(exc)
    except typer.Abort:
        _print_error("aborted")
        return EXIT_REFUSED
    except OSError as exc:
        return _os_error(exc)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            return _internal_error(exc)
        _print_error(
            "this command needs torch, which comes with the hfl extra: "
            "pip install -c constraints.txt -e '.[hfl]' (make test installs it)"
        )
        return EXIT_BAD_INPUT
    except Exception as exc:
        return _internal_error(exc)
    finally:
        warnings.showwarning = shown
    return result if isinstance(result, int) else 0


def _usage_error_or_help(exc: Exception) -> int:
    """Print a group's help when it is called without a subcommand, as ``--help`` would."""
    # Rich-formatted help is printed while the exception is made; plain help is its message.
    text = getattr(exc, "format_message", lambda: "")()
    if text.strip():
        typer.echo(text)
    return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the ``sealfl`` command line and exit with its status."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()

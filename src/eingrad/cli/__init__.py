"""The ``eingrad`` command line.

Commands: ``demo``, ``parse``, ``eval``, ``diff``, ``grad``, ``explain``,
``compile``, ``check``, ``graph``, ``serve`` (``eingrad COMMAND --help`` shows examples).
A program is given as text, ``-f FILE`` / ``@FILE`` / a file name, or ``-``
for stdin.

Exit codes: 0 success, 1 a user error (message, no traceback), 2 bad usage
(a bare ``eingrad`` prints the commands and exits 2).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence

from ..errors import (
    EingradError,
    MatrixNotationWarning,
    SurprisingSumWarning,
    ZeroDerivativeWarning,
    escape_controls,
)
from .parser import build_parser, short_help
from .style import Style

__all__ = ["build_parser", "main"]

# Warnings the user should see, printed as "SurprisingSumWarning: ...", not with a file and line.
USER_WARNINGS = (SurprisingSumWarning, ZeroDerivativeWarning, MatrixNotationWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse exits with 2 on bad usage).

    Nothing escapes as a traceback: an :class:`EingradError` is reported with its
    excerpt and hint (exit 1); output that cannot be written (a full disk) is one
    line (exit 1); anything else is an internal error, reported in one line with a
    request to report it (exit 1), unless ``EINGRAD_DEBUG`` is set (then it is raised).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) is None:  # a bare `eingrad`: what it can do
        print(short_help(parser), file=sys.stderr)
        return 2
    _check_program_given(args)
    try:
        return _run(args)
    except EingradError as err:
        _report_error(err, args)
        return 1
    except BrokenPipeError:  # eingrad demo | head: the reader has gone, nothing to report
        _silence_stdout()
        return 0
    except OSError as err:
        if err.errno not in _WRITE_ERRORS:
            return _internal_error(err)
        _silence_stdout()  # stdout on a full disk, or gone
        reason = err.strerror or str(err) or type(err).__name__
        _print_error(f"{Style(sys.stderr).error('OutputError')}: cannot write the output: {reason}")
        return 1
    except KeyboardInterrupt:
        _print_error("eingrad: interrupted")
        return 130
    except MemoryError:
        if _debug():
            raise
        _print_error(
            f"{Style(sys.stderr).error('MemoryError')}: out of memory\n"
            "  hint: use smaller sizes (--size), or fewer steps"
        )
        return 1
    except Exception as err:
        return _internal_error(err)


# The errors of a write that cannot be done: a full disk or quota, a file too large, a bad descriptor.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF}


def _internal_error(err: Exception) -> int:
    """A bug: one line and a request to report it (exit 1); raised with ``EINGRAD_DEBUG``."""
    if _debug():
        raise err
    message = str(err).splitlines()[0] if str(err) else ""
    _print_error(
        f"{Style(sys.stderr).error('InternalError')}: eingrad failed unexpectedly: "
        f"{type(err).__name__}{': ' + escape_controls(message) if message else ''}\n"
        "  this is a bug in eingrad: please report it, with the command you ran "
        "(EINGRAD_DEBUG=1 eingrad ... shows the traceback)"
    )
    return 1


def _run(args) -> int:
    """The command, with user warnings printed; stdout flushed, so that a write error is ours to report."""
    with warnings.catch_warnings(record=True) as caught:
        for category in USER_WARNINGS:
            warnings.simplefilter("always", category)
        try:
            code = args.func(args)
        finally:
            _report_warnings(caught)
    if sys.stdout is not None:
        sys.stdout.flush()
    return code


def _debug() -> bool:
    """``EINGRAD_DEBUG`` set (and not 0): internal errors are raised, with their traceback."""
    return os.environ.get("EINGRAD_DEBUG", "") not in ("", "0")


def _print_error(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # stderr is gone too: the exit code says it
        pass


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's stream), or closed
        pass


def _check_program_given(args) -> None:
    """Exactly one of PROGRAM and -f FILE (a usage error, exit 2, otherwise)."""
    if not hasattr(args, "program"):
        return
    if args.program is None and args.file is None:
        args.command_parser.error("give a program: as text, with -f FILE, or - to read stdin")
    if args.program is not None and args.file is not None:
        args.command_parser.error("give the program once: as text or with -f FILE, not both")


def _report_warnings(caught) -> None:
    style = Style(sys.stderr)
    for w in caught:
        print(f"{style.warning(w.category.__name__)}: {escape_controls(str(w.message))}", file=sys.stderr)


def _report_error(err: EingradError, args) -> None:
    """``ErrorClass: message`` with its caret excerpt and hint on stderr; JSON on stdout with --json."""
    _cli_hint(err)
    style = Style(sys.stderr)
    # The excerpt is escaped already; a message may quote a name or a path from the user.
    print(f"{style.error(type(err).__name__)}: {escape_controls(str(err))}", file=sys.stderr)
    if getattr(args, "format", None) == "json":
        error = {
            "type": type(err).__name__,
            "message": err.message,
            "line": err.line,
            "column": err.column,
            "hint": err.hint,
            "text": str(err),
        }
        try:
            print(json.dumps({"error": error}, ensure_ascii=False, indent=2), flush=True)
        except OSError:  # stdout is gone: the message on stderr is enough
            _silence_stdout()


# Library hints name Python keywords; on the command line they are options.
_HINTS = [
    (r"eg\.evaluate\(program, sizes=\{'(\w+)': (\w+)\}, \.\.\.\)", r"--size \1=\2"),
    (r"sizes=\{'(\w+)': n\}", r"--size \1=N"),
    (r"pass backend='(\w+)'", r"use --backend \1"),
    (r"order=(\d)", r"--order \1"),
    (r"seed='(\w+)'", r"--seed-name \1"),
    (r"^output names", r"--output names"),
    (r"^wrt names", r"--wrt names"),
]


def _cli_hint(err: EingradError) -> None:
    """The error's hint in command-line terms (``sizes={'i': n}`` is ``--size i=N``)."""
    if err.hint:
        for pattern, replacement in _HINTS:
            err.hint = re.sub(pattern, replacement, err.hint)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

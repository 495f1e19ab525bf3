"""The ``eingrad`` command line.

Commands: ``demo``, ``parse``, ``eval``, ``diff``, ``grad``, ``explain``,
``compile``, ``check``, ``graph`` (``eingrad COMMAND --help`` shows examples).
A program is given as text, ``-f FILE`` / ``@FILE`` / a file name, or ``-``
for stdin.

Exit codes: 0 success, 1 a user error (message, no traceback), 2 bad usage.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Sequence

from ..errors import EingradError, MatrixNotationWarning, SurprisingSumWarning, ZeroDerivativeWarning
from .parser import build_parser
from .style import Style

__all__ = ["build_parser", "main"]

# Warnings the user should see, printed as "SurprisingSumWarning: ...", not with a file and line.
USER_WARNINGS = (SurprisingSumWarning, ZeroDerivativeWarning, MatrixNotationWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse exits with 2 on bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_program_given(args)
    try:
        with warnings.catch_warnings(record=True) as caught:
            for category in USER_WARNINGS:
                warnings.simplefilter("always", category)
            try:
                return args.func(args)
            finally:
                _report_warnings(caught)
    except EingradError as err:
        _report_error(err, args)
        return 1
    except BrokenPipeError:  # eingrad demo | head: the reader has gone, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not fail again
        return 0


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
        print(f"{style.warning(w.category.__name__)}: {w.message}", file=sys.stderr)


def _report_error(err: EingradError, args) -> None:
    """``ErrorClass: message`` with its caret excerpt and hint on stderr; JSON on stdout with --json."""
    _cli_hint(err)
    style = Style(sys.stderr)
    print(f"{style.error(type(err).__name__)}: {err}", file=sys.stderr)
    if getattr(args, "format", None) == "json":
        error = {
            "type": type(err).__name__,
            "message": err.message,
            "line": err.line,
            "column": err.column,
            "hint": err.hint,
            "text": str(err),
        }
        print(json.dumps({"error": error}, ensure_ascii=False, indent=2))


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

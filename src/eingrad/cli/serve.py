"""``eingrad serve``: the web playground (needs the ``web`` extra)."""

from __future__ import annotations

import argparse

from ..errors import EingradError

__all__ = ["add_serve_command", "cmd_serve"]

HELP = "the web playground: type a program in a page, read its derivative, derivation, code and check"
EXAMPLES = [
    "eingrad serve",
    "eingrad serve --port 8080 --no-browser",
    "pip install 'eingrad[web]'   # what eingrad serve needs",
]


def add_serve_command(sub) -> argparse.ArgumentParser:
    """Register ``serve`` with the subcommands."""
    p = sub.add_parser(
        "serve", help=HELP, description=HELP[0].upper() + HELP[1:] + ". See docs/web.md.",
        epilog="examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 for any free port)")
    p.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    p.add_argument("--workers", type=int, default=2, help="requests computed at once, each in its own process (default 2)")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="SECONDS",
                   help="stop a request that takes longer (default 10)")
    p.set_defaults(func=cmd_serve, command_parser=p)
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise EingradError(
            f"eingrad serve needs the web extra, which is not installed ({err.name or err} is missing)",
            hint="pip install 'eingrad[web]'",
        ) from None
    if not 0 <= args.port <= 65535:
        args.command_parser.error(f"--port must be between 0 and 65535, not {args.port}")
    if args.workers < 1:
        args.command_parser.error("--workers must be at least 1")
    if not args.time_limit > 0:
        args.command_parser.error("--time-limit must be positive")
    from ..web import serve

    return serve(args.host, args.port, open_browser=not args.no_browser, workers=args.workers,
                 time_limit=args.time_limit)

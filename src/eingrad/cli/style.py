"""Colour for the terminal: only when the stream is a TTY and ``NO_COLOR`` is unset.

https://no-color.org: a set, non-empty ``NO_COLOR`` turns colour off; so does
``TERM=dumb``.  Output piped to a file or another program is never coloured.
"""

from __future__ import annotations

import os
from typing import TextIO

__all__ = ["Style", "use_colour"]

_CODES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "dim": "2"}


def use_colour(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal that may be coloured."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Style:
    """Wraps text in ANSI codes for one stream, or leaves it alone."""

    def __init__(self, stream: TextIO) -> None:
        self.enabled = use_colour(stream)

    def paint(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"

    def bold(self, text: str) -> str:
        return self.paint(text, "bold")

    def error(self, text: str) -> str:
        return self.paint(text, "bold", "red")

    def warning(self, text: str) -> str:
        return self.paint(text, "bold", "yellow")

    def ok(self, text: str) -> str:
        return self.paint(text, "bold", "green")

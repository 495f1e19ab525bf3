"""Error hierarchy, source spans and caret excerpts.

Every error a user can trigger is an :class:`EingradError`.  Errors that come
from a place in the program text carry a :class:`Span`, and their ``str``
shows the message, the source line with a caret under the offending text, and
a hint where there is an obvious fix::

    SizeError: index 'j' has size 3 in X_ij (axis 1) but size 4 in w_j (axis 0)
      line 1: z_i = X_ij w_j
                    ^^^^ ^^^
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = [
    "Span",
    "EingradError",
    "ParseError",
    "UnknownFunctionError",
    "ReservedNameError",
    "IndexRuleError",
    "ProgramError",
    "SizeError",
    "InputError",
    "MissingInputError",
    "UnknownInputError",
    "RankError",
    "InputTypeError",
    "SurprisingSumWarning",
    "ZeroDerivativeWarning",
    "MatrixNotationWarning",
    "escape_controls",
]


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open range ``[start, end)`` of character offsets into a source text."""

    start: int
    end: int

    def join(self, other: Span | None) -> Span:
        if other is None:
            return self
        return Span(min(self.start, other.start), max(self.end, other.end))


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


# Characters a terminal acts on instead of showing: C0 controls (ESC starts the
# sequences that move the cursor or clear the screen), DEL, C1 controls, and the
# bidirectional overrides that make text read differently from its order.
_CONTROL_NAMES = {"\t": "\\t", "\r": "\\r", "\n": "\\n"}
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(char: str) -> str:
    """``char`` as it may safely be shown on a terminal: a control character as ``\\x1b``."""
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return _CONTROL_NAMES.get(char, f"\\x{code:02x}")
    if char in _BIDI or 0xD800 <= code < 0xE000:  # a lone surrogate: a byte that was not UTF-8
        return f"\\u{code:04x}"
    return char


def escape_controls(text: str, keep_newlines: bool = True) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\t``):
    text from a program cannot move the cursor or clear the user's screen."""
    return "".join(c if keep_newlines and c == "\n" else _visible(c) for c in text)


def caret_excerpt(text: str, spans: list[Span]) -> str:
    """The source line(s) holding ``spans``, each followed by carets under them.

    Control characters in the source are shown escaped (``\\x1b``), with the
    carets under the escape, so a program cannot send a terminal its own commands."""
    by_line: dict[int, list[Span]] = {}
    for span in spans:
        line, _ = line_and_column(text, span.start)
        by_line.setdefault(line, []).append(span)
    lines = text.split("\n")
    out = []
    for line_no in sorted(by_line):
        source = lines[line_no - 1]
        prefix = f"  line {line_no}: "
        line_start = sum(len(s) + 1 for s in lines[: line_no - 1])
        marked = [False] * (len(source) + 1)
        for span in by_line[line_no]:
            start = span.start - line_start
            end = min(max(span.end - line_start, start + 1), len(source) + 1)
            for k in range(start, end):
                marked[k] = True
        # A tab shows as one space, a CRLF file's \r not at all; a caret may mark the end of the line.
        shown = [" " if c == "\t" else _visible(c) for c in source] + [" "]
        if source.endswith("\r"):
            shown[-2] = ""
        out.append(prefix + "".join(shown[:-1]).rstrip())
        carets = "".join(("^" if mark else " ") * len(piece) for piece, mark in zip(shown, marked, strict=True))
        out.append(" " * len(prefix) + carets.rstrip())
    return "\n".join(out)


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the caller's own code."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame = frame.f_back
        level += 1
    return level


class EingradError(Exception):
    """Base class of every error eingrad raises for bad input.

    Attributes: ``message`` (one sentence), ``source`` (the program text, if
    known), ``spans`` (where in it), ``hint`` (a suggested fix, or None),
    ``line`` and ``column`` (1-based, of the first span).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        spans: list[Span] | tuple[Span, ...] | Span | None = None,
        hint: str | None = None,
    ) -> None:
        if isinstance(spans, Span):
            spans = [spans]
        self.message = message
        self.source = source
        self.spans = [s for s in (spans or []) if s is not None]
        self.hint = hint
        super().__init__(message)

    @property
    def line(self) -> int | None:
        if self.source is None or not self.spans:
            return None
        return line_and_column(self.source, self.spans[0].start)[0]

    @property
    def column(self) -> int | None:
        if self.source is None or not self.spans:
            return None
        return line_and_column(self.source, self.spans[0].start)[1]

    def with_source(self, source: str) -> EingradError:
        """Attach the program text (used at the API boundary); returns self."""
        if self.source is None:
            self.source = source
        return self

    def __str__(self) -> str:
        parts = [self.message]
        if self.source is not None and self.spans:
            parts.append(caret_excerpt(self.source, self.spans))
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)


class ParseError(EingradError, ValueError):
    """The program text is not well-formed."""


class UnknownFunctionError(ParseError):
    """A call to a function eingrad does not know."""


class ReservedNameError(ParseError):
    """A reserved word (``sum``, ``delta``, ``exp``, ...) used as a tensor or index."""


class IndexRuleError(EingradError, ValueError):
    """A statement breaks the summation rule (target indices, binders)."""


class ProgramError(EingradError, ValueError):
    """The statements do not form a valid program (reassignment, rank clash, ...)."""


class SizeError(EingradError, ValueError):
    """The same index has different sizes, or a size cannot be determined."""


class InputError(EingradError, ValueError):
    """The arrays passed to a program do not fit it."""


class MissingInputError(InputError, KeyError):
    """An input of the program was not passed."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return EingradError.__str__(self)


class UnknownInputError(InputError, TypeError):
    """An array was passed under a name the program does not use."""


class RankError(InputError):
    """An array has a different number of axes than its tensor has indices."""


class InputTypeError(InputError, TypeError):
    """An array is not numeric."""


class TooLargeError(EingradError, MemoryError):
    """An array eingrad was about to allocate cannot fit in memory.

    Raised before the allocation is tried; the message names the array's shape
    and its size in bytes.  It is also a :class:`MemoryError`.
    """




def max_array_bytes() -> int:
    """The largest single array eingrad allocates: ``EINGRAD_MAX_BYTES`` or
    the machine's physical memory (8 GiB where that cannot be read)."""
    env = os.environ.get("EINGRAD_MAX_BYTES")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def format_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_allocation(shape, itemsize: int = 8, what: str = "an array") -> None:
    """Raise :class:`TooLargeError` if an array of ``shape`` cannot fit."""
    count = 1
    for n in shape:
        count *= int(n)
    size = count * int(itemsize)
    limit = max_array_bytes()
    if size > limit:
        raise TooLargeError(
            f"{what} of shape {tuple(int(n) for n in shape)} needs {format_bytes(size)}, "
            f"more than the {format_bytes(limit)} eingrad allows one array",
            hint="use smaller sizes, or raise the limit with the environment variable EINGRAD_MAX_BYTES",
        )


class ZeroDerivativeWarning(UserWarning):
    """A derivative is identically zero (the output does not depend on wrt)."""


class PrecisionWarning(UserWarning):
    """Results are computed in a narrower dtype than the inputs (the jax backend in float32)."""


class SurprisingSumWarning(UserWarning):
    """Legal but surprising input, such as ``L = log(p_i)`` (= log of the sum)."""


class MatrixNotationWarning(UserWarning):
    """Text that looks like matrix algebra (``Y = X W + b``) read as index notation: all scalars."""

"""Turns program text into tokens with their source spans.

Every character the lexer does not know is a positioned :class:`ParseError`
with a hint (a Unicode digit such as ``²`` or ``₂`` included: digits are the
ASCII ``0-9``).  A UTF-8 byte-order mark at the start of the text is skipped.
Number literals are range-checked here (LANGUAGE.md §4, docs/language.md
"Numbers"): at most :data:`MAX_DIGITS` digits, and a value float64 can hold
(a literal that would overflow to inf, or underflow to 0, is refused).
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction
from typing import NamedTuple

from ..errors import ParseError, Span

# Spellings accepted for operators, mapped to one canonical token text.
_ALIASES = {"−": "-", "·": "*", "×": "*", "∑": "Σ", "≥": ">=", "≤": "<="}
_OPEN = "([{"
_CLOSE = ")]}"

#: The most digits a number literal may have: float64 keeps 17 significant digits, but an
#: exact decimal the printer writes (2^-1074 has 751 digits) must parse back.
MAX_DIGITS = 1000

# One token per match; the groups are tried in order.  Whitespace other than a
# newline is skipped; a name is checked for non-letters after the match.
_TOKEN = re.compile(
    r"(?P<space>[^\S\n]+)"
    r"|(?P<comment>\#[^\n]*)"
    r"|(?P<sep>[\n;])"
    r"|(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[^\W_]+)"
    r"|(?P<op>\*\*|>=|<=|[-+*/^=(){}\[\],_|<>])"
)
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUBSCRIPTS = "₀₁₂₃₄₅₆₇₈₉"


class Token(NamedTuple):
    kind: str  # NAME, NUMBER, OP, SEP, EOF
    text: str
    start: int
    end: int

    @property
    def span(self) -> Span:
        return Span(self.start, self.end)


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text``; newlines inside brackets are whitespace, ``#`` starts a comment."""
    tokens: list[Token] = []
    append = tokens.append
    depth = 0
    pos = 1 if text.startswith("\ufeff") else 0  # a byte-order mark left by an editor
    n = len(text)
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in _ALIASES:
                canon = _ALIASES[ch]
                append(Token("NAME" if canon == "Σ" else "OP", canon, pos, pos + 1))
                pos += 1
                continue
            raise _unexpected(text, pos)
        kind = m.lastgroup
        end = m.end()
        if kind == "space" or kind == "comment":
            pass
        elif kind == "name":
            word = m.group()
            if not (word.isascii() and word[0].isalpha()):
                word = _check_name(text, pos, word)
                end = pos + len(word)
            append(Token("NAME", word, pos, end))
        elif kind == "op":
            op = m.group()
            if op in _OPEN:
                depth += 1
            elif op in _CLOSE:
                depth = max(depth - 1, 0)
            append(Token("OP", op, pos, end))
        elif kind == "number":
            if end < n and text[end] == ".":
                # 1.2.3 would otherwise read as the product 1.2 × .3
                stop = end
                while stop < n and (text[stop] in "0123456789."):
                    stop += 1
                raise ParseError(
                    f"malformed number {text[pos:stop]!r}",
                    source=text,
                    spans=Span(pos, stop),
                    hint="a number has at most one decimal point, e.g. 0.5 or 1e-3",
                )
            check_number(text, pos, end)
            append(Token("NUMBER", m.group(), pos, end))
        elif depth == 0 or m.group() == ";":  # sep: a newline inside brackets is whitespace
            append(Token("SEP", m.group(), pos, end))
        pos = end
    tokens.append(Token("EOF", "", n, n))
    return tokens


def number_value(literal: str) -> Fraction:
    """The exact value of a literal the lexer accepted."""
    return Fraction(literal)


def check_number(text: str, start: int, end: int) -> None:
    """Refuse a literal with too many digits, or out of float64's range."""
    literal = text[start:end]
    mantissa = literal.lower().partition("e")[0]
    digits = len(mantissa) - ("." in mantissa)
    if digits > MAX_DIGITS:
        raise ParseError(
            f"the number literal has {digits} digits, more than the {MAX_DIGITS} eingrad reads",
            source=text,
            spans=Span(start, end),
            hint="float64 keeps 17 significant digits; write it with fewer, e.g. 1.2345e-6",
        )
    value = float(literal)
    if value == float("inf"):
        raise ParseError(
            f"the number {_short(literal)} is too large: it overflows float64 (largest about 1.8e308)",
            source=text,
            spans=Span(start, end),
            hint="rescale the model so that its constants stay below 1e308",
        )
    if value == 0.0 and mantissa.strip("0.") != "":
        raise ParseError(
            f"the number {_short(literal)} is too small: it underflows float64 to 0 "
            "(smallest about 4.9e-324)",
            source=text,
            spans=Span(start, end),
            hint="write 0 if zero is meant, or rescale the model",
        )


def _short(literal: str) -> str:
    return literal if len(literal) <= 30 else literal[:12] + "…" + literal[-12:]


def _check_name(text: str, pos: int, word: str) -> str:
    """``word`` (letters, digits) cut at its first non-letter, non-ASCII-digit character.

    A name starts with a letter and goes on with letters and ASCII digits;
    anything else there (``²``, ``₂``, ``٣``) is an error with a hint.
    """
    for k, ch in enumerate(word):
        if ch.isalpha() if k == 0 else (ch.isalpha() or ch in "0123456789"):
            continue
        raise _unexpected(text, pos + k)
    return word


def _unexpected(text: str, pos: int) -> ParseError:
    """The error for a character no token starts or continues with."""
    ch = text[pos]
    before = _name_before(text, pos)
    hint = None
    what = f"unexpected character {ch!r}"
    if ch in _SUPERSCRIPTS:
        power = ""
        k = pos
        while k < len(text) and text[k] in _SUPERSCRIPTS:
            power += str(_SUPERSCRIPTS.index(text[k]))
            k += 1
        hint = f"write {before or 'x'}^{power} for a power"
        what = f"unexpected superscript digit {ch!r}"
    elif ch in _SUBSCRIPTS:
        hint = (
            f"indices are letters: write {before or 'x'}_i; for a name with a digit write "
            f"{before or 'x'}{_SUBSCRIPTS.index(ch)}"
        )
        what = f"unexpected subscript digit {ch!r}"
    elif ch.isdigit() or ch.isnumeric():
        value = unicodedata.digit(ch, None)
        if value is None:
            value = unicodedata.numeric(ch, None)
        hint = "numbers are written with the ASCII digits 0-9"
        if value is not None:
            hint += f": write {value:g}" if isinstance(value, float) else f": write {value}"
        what = f"unexpected digit {ch!r} ({unicodedata.name(ch, 'a non-ASCII digit').lower()})"
    elif ch == "'":
        hint = "derivatives are taken with eg.diff(program, 'x'), not written with a prime"
    elif ch == "∂":
        hint = "derivatives are taken with eg.diff(program, 'x'), not written in the program"
    elif ch == "√":
        hint = "write sqrt(x)"
    elif ch in "!&%@$≠":
        hint = "the language has + - * / ^ ** and the comparisons > >= < <= only"
    elif ch == "\ufeff":
        hint = "remove the invisible byte-order mark (only one at the very start of a file is skipped)"
    elif ch == ".":
        hint = "a number is written 0.5 or .5; a product is juxtaposition or *"
    elif not ch.isprintable() or ch.isspace():
        hint = f"remove the invisible character U+{ord(ch):04X}"
        what = f"unexpected invisible character U+{ord(ch):04X}"
    return ParseError(what, source=text, spans=Span(pos, pos + 1), hint=hint)


def _name_before(text: str, pos: int) -> str:
    """The name (letters, digits, an index list ``_ij``) written right before ``pos``."""
    k = pos
    while k > 0 and (text[k - 1].isalpha() or text[k - 1] in "0123456789_"):
        k -= 1
    return text[k:pos]

"""Turns program text into tokens with their source spans."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParseError, Span

# Spellings accepted for operators, mapped to one canonical token text.
_ALIASES = {"−": "-", "·": "*", "×": "*", "∑": "Σ", "≥": ">=", "≤": "<="}
_OPERATORS = ["**", ">=", "<=", ">", "<", "+", "-", "*", "/", "^", "=", "(", ")", "{", "}", "[", "]", ",", "_", "|"]
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class Token:
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
    depth = 0
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "#":
            while pos < n and text[pos] != "\n":
                pos += 1
            continue
        if ch in "\n;":
            if depth == 0 or ch == ";":
                tokens.append(Token("SEP", ch, pos, pos + 1))
            pos += 1
            continue
        if ch.isspace():
            pos += 1
            continue
        if ch.isdigit() or (ch == "." and pos + 1 < n and text[pos + 1].isdigit()):
            m = _NUMBER.match(text, pos)
            assert m is not None
            if m.end() < n and text[m.end()] == ".":
                # 1.2.3 would otherwise read as the product 1.2 × .3
                end = m.end()
                while end < n and (text[end].isdigit() or text[end] == "."):
                    end += 1
                raise ParseError(
                    f"malformed number {text[pos:end]!r}",
                    source=text,
                    spans=Span(pos, end),
                    hint="a number has at most one decimal point, e.g. 0.5 or 1e-3",
                )
            tokens.append(Token("NUMBER", m.group(0), pos, m.end()))
            pos = m.end()
            continue
        if ch.isalpha():
            end = pos + 1
            while end < n and text[end].isalnum():
                end += 1
            tokens.append(Token("NAME", text[pos:end], pos, end))
            pos = end
            continue
        if ch in _ALIASES:
            canon = _ALIASES[ch]
            kind = "NAME" if canon == "Σ" else "OP"
            tokens.append(Token(kind, canon, pos, pos + 1))
            pos += 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, pos):
                tokens.append(Token("OP", op, pos, pos + len(op)))
                if op in "([{":
                    depth += 1
                elif op in ")]}":
                    depth = max(depth - 1, 0)
                pos += len(op)
                break
        else:
            hint = None
            if ch == "'":
                hint = "derivatives are taken with eg.diff(program, 'x'), not written with a prime"
            elif ch in "!&%@$":
                hint = "the language has + - * / ^ ** and the comparisons > >= < <= only"
            raise ParseError(
                f"unexpected character {ch!r}", source=text, spans=Span(pos, pos + 1), hint=hint
            )
    tokens.append(Token("EOF", "", n, n))
    return tokens

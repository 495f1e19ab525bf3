"""Matrix forms as Unicode text (``Xᵀ diag(s ⊙ (𝟏 - s)) X``) and as LaTeX.

One renderer serves both: a :class:`Style` holds the symbols.  Juxtaposition
is the matrix product, ``⊙`` the elementwise one; the two never mix without
parentheses.  ``𝟏`` is a vector of ones (``𝟏ᵀ G`` sums the rows of ``G``),
``I`` the identity, ``diag(v)`` a diagonal matrix and ``diag(A)`` a
diagonal read out as a vector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

from ..functions import FUNCTIONS
from ..printing.latex import latex_number, latex_symbol
from ..printing.text import format_number
from .nodes import (
    Det,
    Diag,
    DiagOf,
    Func,
    Hadamard,
    Identity,
    Inverse,
    LogSumExpOf,
    MatMul,
    Node,
    Num,
    Ones,
    Plus,
    Power,
    Scale,
    SizeOf,
    Trace,
    Transpose,
    Var,
    Zeros,
    is_scalar,
)

__all__ = ["Style", "TEXT", "LATEX", "render"]

PLUS, NEG, PROD, HAD, POW, ATOM = range(6)
_TEXT_NAMES = {"sigmoid": "σ"}


@dataclass(frozen=True)
class Style:
    """The symbols of one output format."""

    open: str
    close: str
    transpose: str
    hadamard: str
    ones: str
    identity: str
    latex: bool
    sigmoid: str = ""

    def name(self, name: str) -> str:
        return latex_symbol(name) if self.latex else name

    def number(self, value: Fraction) -> str:
        return latex_number(value) if self.latex else format_number(value)

    def operator(self, word: str, arg: str) -> str:
        if self.latex:
            return f"\\operatorname{{{word}}}\\left({arg}\\right)"
        return f"{word}({arg})"

    def function(self, fn: str, arg: str) -> str:
        if fn == "sigmoid" and self.sigmoid:
            return f"{self.sigmoid}\\left({arg}\\right)" if self.latex else f"{self.sigmoid}({arg})"
        if not self.latex:
            return f"{_TEXT_NAMES.get(fn, fn)}({arg})"
        if fn == "sqrt":
            return f"\\sqrt{{{arg}}}"
        if fn == "softmax":
            return f"\\operatorname{{softmax}}\\left({arg}\\right)"
        return f"{FUNCTIONS[fn].latex}\\left({arg}\\right)"

    def power(self, base: str, exponent: Fraction, elementwise: bool) -> str:
        if self.latex:
            odot = "\\odot " if elementwise else ""
            return f"{base}^{{{odot}{latex_number(exponent)}}}"
        text = format_number(exponent)
        return f"{base}^{'⊙' if elementwise else ''}{f'({text})' if exponent < 0 else text}"

    def size(self, index: str) -> str:
        return f"\\lvert {latex_symbol(index)} \\rvert" if self.latex else f"|{index}|"


TEXT = Style("(", ")", "ᵀ", " ⊙ ", "𝟏", "I", latex=False)
LATEX = Style("\\left(", "\\right)", "^{\\top}", " \\odot ", "\\mathbf{1}", "I", latex=True)


def render(n: Node, style: Style = TEXT) -> str:
    """``n`` written out in ``style``.

    A tensor named like a symbol of the notation (``σ``, ``I``) keeps its name,
    and the symbol is spelled out instead (``sigmoid(x)``, ``𝕀``).
    """
    names = _names(n)
    if "σ" in names:
        style = replace(style, sigmoid="\\operatorname{sigmoid}" if style.latex else "sigmoid")
    if "I" in names:
        style = replace(style, identity="\\mathbb{I}" if style.latex else "𝕀")
    return _Renderer(style).render(n)[0]


def _names(n: Node) -> set[str]:
    own = {n.name} if isinstance(n, Var) else set()
    return own.union(*(_names(c) for c in n.children))


class _Renderer:
    def __init__(self, style: Style) -> None:
        self.s = style

    def render(self, n: Node) -> tuple[str, int]:
        """``n`` as (text, binding strength)."""
        s = self.s
        if isinstance(n, Var):
            return s.name(n.name), ATOM
        if isinstance(n, Num):
            return s.number(n.value), (NEG if n.value < 0 else ATOM)
        if isinstance(n, SizeOf):
            return s.size(n.index), ATOM
        if isinstance(n, Ones):
            return s.ones, ATOM
        if isinstance(n, Identity):
            return s.identity, ATOM
        if isinstance(n, Zeros):
            return "0", ATOM
        if isinstance(n, Transpose) and isinstance(n.arg, Inverse):
            return self.wrap(n.arg.arg, ATOM) + ("^{-\\top}" if s.latex else "⁻ᵀ"), ATOM
        if isinstance(n, Inverse):
            return self.wrap(n.arg, ATOM) + ("^{-1}" if s.latex else "⁻¹"), ATOM
        if isinstance(n, Det):
            inner = s.operator("det", self.render(n.arg)[0]).replace("\\operatorname{det}", "\\det")
            if not n.log:
                return inner, ATOM
            return (f"\\log\\left\\lvert {inner}\\right\\rvert" if s.latex else f"log|{inner}|"), ATOM
        if isinstance(n, Transpose):
            return self.wrap(n.arg, ATOM) + s.transpose, ATOM
        if isinstance(n, MatMul):
            return " ".join(self.wrap(f, ATOM) for f in n.factors), PROD
        if isinstance(n, Hadamard):
            return s.hadamard.join(self.wrap(f, POW) for f in n.factors), HAD
        if isinstance(n, Plus):
            return self.render_plus(n), PLUS
        if isinstance(n, Scale):
            return self.render_scale(n)
        if isinstance(n, Func):
            return s.function(n.fn, self.render(n.arg)[0]), ATOM
        if isinstance(n, Power):
            return s.power(self.wrap(n.arg, ATOM), n.exponent, not is_scalar(n)), POW
        if isinstance(n, (Diag, DiagOf)):
            return s.operator("diag", self.render(n.arg)[0]), ATOM
        if isinstance(n, Trace):
            return s.operator("tr", self.render(n.arg)[0]), ATOM
        if isinstance(n, LogSumExpOf):
            inner = s.function("exp", self.render(n.arg)[0])
            if n.left:
                inner = s.ones + s.transpose + " " + inner
            if n.right:
                inner = inner + " " + s.ones
            return s.function("log", inner), ATOM
        raise TypeError(f"cannot print {type(n).__name__}")

    def wrap(self, n: Node, at_least: int) -> str:
        text, strength = self.render(n)
        return text if strength >= at_least else self.s.open + text + self.s.close

    def render_plus(self, n: Plus) -> str:
        parts = [self.wrap(n.terms[0], NEG)]
        for term in n.terms[1:]:
            negated = _negated(term)
            if negated is None:
                parts.append(" + " + self.wrap(term, NEG))
            else:
                parts.append(" - " + self.wrap(negated, PROD))
        return "".join(parts)

    def render_scale(self, n: Scale) -> tuple[str, int]:
        magnitude = abs(n.coef)
        parts = [] if magnitude == 1 else [self.s.number(magnitude)]
        parts += [self.wrap(f, POW) for f in n.factors[:-1]]
        parts.append(self.wrap(n.factors[-1], NEG if len(parts) == 0 else PROD))
        text = " ".join(parts)
        if n.coef < 0:
            return "-" + text, NEG
        return text, PROD


def _negated(n: Node) -> Node | None:
    """``-n`` when ``n`` prints with a leading minus sign, else None."""
    if isinstance(n, Scale) and n.coef < 0:
        if n.coef == -1 and len(n.factors) == 1:
            return n.factors[0]
        return Scale(-n.coef, n.factors, rows=n.rows, cols=n.cols)
    if isinstance(n, Num) and n.value < 0:
        return Num(-n.value, rows=None, cols=None)
    return None

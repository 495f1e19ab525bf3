"""LaTeX for expressions, statements and programs (same hidden sums as the text)."""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from ..expr import (
    Add,
    Call,
    Choose,
    Compare,
    Const,
    Delta,
    Expr,
    LogSumExp,
    MatFn,
    Mul,
    Pick,
    Pow,
    Reduce,
    Shift,
    Size,
    Sum,
    Tensor,
    position_text,
)
from ..functions import FUNCTIONS
from .layout import hidden_sums, mean_parts, read_parts, softmax_parts
from .text import TextRenderer, _AbsoluteView, format_number, is_negative

CMP, ADD, MUL, UNARY, POW, ATOM = 0, 1, 2, 3, 4, 5
_COMPARE = {">": ">", ">=": "\\geq", "<": "<", "<=": "\\leq"}
_GREEK_CAPITALS = {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}


def latex_symbol(name: str) -> str:
    """A tensor or index name in LaTeX: Greek letters as macros, long names upright-italic."""
    pieces = []
    for ch in name:
        try:
            uname = unicodedata.name(ch)
        except ValueError:
            uname = ""
        if uname.startswith("GREEK SMALL LETTER "):
            word = uname.removeprefix("GREEK SMALL LETTER ").lower()
            pieces.append("\\" + {"lamda": "lambda"}.get(word, word) + " ")
        elif uname.startswith("GREEK CAPITAL LETTER "):
            word = uname.removeprefix("GREEK CAPITAL LETTER ").capitalize()
            word = {"Lamda": "Lambda"}.get(word, word)
            pieces.append("\\" + word + " " if word in _GREEK_CAPITALS else "\\mathrm{" + ch + "}")
        else:
            pieces.append(ch)
    text = "".join(pieces).strip().replace("∂", "\\partial ")
    if "∂" in name:  # a derivative placeholder in a derivation, e.g. ∂L/∂Y_nh
        import re

        return re.sub(r"_(\w+)", r"_{\1}", text)
    word = _GREEK_WORDS.get(name, name)
    if word in _GREEK_SMALL or word in _GREEK_CAPITALS:  # alpha, lam, eps, Sigma: α λ ε Σ
        return "\\" + word
    if len(name) > 1 and name.isascii():
        return "\\mathit{" + name + "}"
    return text


# Greek letters spelled out in ASCII names (``lam I`` is λ I, not the word "lamI").
_GREEK_SMALL = frozenset(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau "
    "upsilon phi chi psi omega varepsilon vartheta varphi".split()
)
_GREEK_WORDS = {"lam": "lambda", "lamda": "lambda", "eps": "epsilon"}


def latex_indices(indices: tuple[str, ...]) -> str:
    if not indices:
        return ""
    if any(len(i) > 1 for i in indices):
        return "_{" + ",".join(latex_symbol(i) for i in indices) + "}"
    pieces = [latex_symbol(i) for i in indices]
    text = pieces[0]
    for previous, piece in zip(pieces, pieces[1:], strict=False):
        # A macro needs a space before a letter: \alpha i, not \alphai.
        text += (" " if previous.startswith("\\") and piece[0].isalpha() else "") + piece
    return "_{" + text + "}"


def latex_number(value: Fraction) -> str:
    text = format_number(abs(value))
    if "/" in text:
        numerator, denominator = text.split("/")
        text = f"\\frac{{{numerator}}}{{{denominator}}}"
    elif "e" in text:
        mantissa, exponent = text.split("e")
        text = f"10^{{{exponent}}}" if mantissa == "1" else f"{mantissa} \\cdot 10^{{{exponent}}}"
    return ("-" if value < 0 else "") + text


class LatexRenderer:
    def __init__(self, hidden: frozenset) -> None:
        self.hidden = hidden

    def render(self, e: Expr, path: tuple[int, ...] = (), absolute: bool = False) -> tuple[str, int]:
        """``e`` as (text, precedence); ``absolute`` drops a leading minus sign."""
        if absolute:
            e = _AbsoluteView.of(e)
        if isinstance(e, Const):
            return latex_number(e.value), (UNARY if e.value < 0 else ATOM)
        if isinstance(e, Tensor):
            return latex_symbol(e.name) + latex_indices(e.indices), ATOM
        if isinstance(e, Delta):
            return "\\delta" + latex_indices(e.indices), ATOM
        if isinstance(e, Pick):  # δ[c, y[n]]: \delta_{c, y_{n}}
            table = latex_symbol(e.table.name) + latex_indices(e.table.indices)
            return "\\delta_{" + latex_symbol(e.index) + ", " + table + "}", ATOM
        if isinstance(e, Shift):  # δ[j, 2i+k]: \delta_{j, 2i+k}
            return "\\delta_{" + latex_symbol(e.index) + ", " + _latex_position(e) + "}", ATOM
        if isinstance(e, Size):
            return f"\\lvert {latex_symbol(e.index)} \\rvert", ATOM
        if isinstance(e, Add):
            parts = []
            for k, term in enumerate(e.terms):
                if k > 0 and is_negative(term):
                    text, prec = self.render(term, path + (k,), absolute=True)
                    parts.append(" - " + (text if prec > ADD else self.parens(text)))
                else:
                    text = self.wrap(term, path + (k,), ADD)
                    parts.append(text if k == 0 else " + " + text)
            return "".join(parts), ADD
        if isinstance(e, Mul):
            return self.render_product(e, path)
        if isinstance(e, Pow):
            if e.exponent == -1:  # the fraction bar groups: \frac{1}{a b}, not \frac{1}{(a b)}
                return f"\\frac{{1}}{{{self.render(e.base, path + (0,))[0]}}}", ATOM
            if e.exponent < 0:
                return f"\\frac{{1}}{{{self.render_power(e.base, -e.exponent, path)}}}", ATOM
            return self.render_power(e.base, e.exponent, path), POW
        if isinstance(e, Call) and (soft := softmax_parts(e)) is not None:
            zpath = path + (0,) + (() if isinstance(soft[1], Add) else (0,))
            body = self.render(soft[1], zpath)[0]
            idx = ",".join(latex_symbol(i) for i in soft[0])
            return f"\\operatorname{{softmax}}_{{{idx}}}\\left({body}\\right)", ATOM
        if isinstance(e, Compare):
            left = self.wrap(e.left, path + (0,), ADD)
            right = self.wrap(e.right, path + (1,), ADD)
            return f"{left} {_COMPARE[e.op]} {right}", CMP
        if isinstance(e, Choose):
            args = ", ".join(self.render(a, path + (k,))[0] for k, a in enumerate(e.args))
            name = f"\\{e.op}" if e.op in ("max", "min") else f"\\operatorname{{{e.op}}}"
            return f"{name}\\left({args}\\right)", ATOM
        if isinstance(e, Reduce):
            body = self.render(e.body, path + (0,))[0]
            idx = ",".join(latex_symbol(i) for i in e.indices)
            return f"\\{e.op}_{{{idx}}}\\left({body}\\right)", ATOM
        if isinstance(e, Sum) and (parts := mean_parts(e)) is not None:
            means, kept = parts
            if len(kept) == 1:
                body = self.render(e.body.factors[kept[0]], path + (0, kept[0]))[0]
            else:
                rest = Mul(tuple(e.body.factors[k] for k in kept))
                body = self.render_product(rest, path + (0,), tuple(path + (0, k) for k in kept))[0]
            idx = ",".join(latex_symbol(i) for i in means)
            text = f"\\operatorname{{mean}}_{{{idx}}}\\left({body}\\right)"
            others = ",".join(latex_symbol(i) for i in e.indices if i not in means)
            return (f"\\sum_{{{others}}} {text}", MUL) if others else (text, ATOM)
        if isinstance(e, Call):
            arg = self.render(e.arg, path + (0,))[0]
            if e.fn == "sqrt":
                return f"\\sqrt{{{arg}}}", ATOM
            return f"{FUNCTIONS[e.fn].latex}\\left({arg}\\right)", ATOM
        if isinstance(e, Sum):
            if (lookup := self.render_lookup(e, path)) is not None:  # X_{n, t-1}: the read's own sum
                return lookup
            if path in self.hidden:
                return self.render(e.body, path + (0,))
            body = self.wrap(e.body, path + (0,), MUL)
            return f"\\sum_{{{','.join(latex_symbol(i) for i in e.indices)}}} {body}", MUL
        if isinstance(e, LogSumExp):
            body = self.render(e.body, path + (0,))[0]
            idx = ",".join(latex_symbol(i) for i in e.indices)
            return f"\\operatorname{{logsumexp}}_{{{idx}}}\\left({body}\\right)", ATOM
        if isinstance(e, MatFn):
            return self.render_matfn(e, path), ATOM
        raise TypeError(f"cannot print {type(e).__name__}")

    def render_lookup(self, e: Sum, path: tuple[int, ...]) -> tuple[str, int] | None:
        """A hidden read at positions as the user writes it: ``Z_{n, y_{n}}`` for
        ``Σ_c Z_nc δ[c, y[n]]`` (LANGUAGE.md §10), ``s_{t-1, n}`` for ``Σ_j s_jn δ[j, t-1]`` (§11);
        None unless each summed index occurs once in one tensor and in its delta."""
        read = read_parts(e)
        if read is None:
            return None
        tensor, fixed, rest = read
        parts = []
        for i in tensor.indices:
            f = fixed.get(i)
            if isinstance(f, Pick):
                parts.append(latex_symbol(f.table.name) + latex_indices(f.table.indices))
            elif isinstance(f, Shift):
                parts.append(_latex_position(f))
            else:
                parts.append(latex_symbol(i))
        text = latex_symbol(tensor.name) + "_{" + ", ".join(parts) + "}"
        if not rest:
            return text, ATOM
        others, _ = self.render_product(Mul(tuple(e.body.factors[k] for k in rest)), path + (0,),
                                        tuple(path + (0, k) for k in rest))
        return f"{others} {text}", MUL

    def render_matfn(self, e: MatFn, path: tuple[int, ...]) -> str:
        """A^{-1}_{ij}, (A_{ik} B_{kj})^{-1}_{ij}, \\det_{ij}(...), \\log\\lvert\\det_{ij}(...)\\rvert."""
        body = self.render(e.body, path + (0,))[0]
        axes = latex_indices(e.axes)
        if e.op == "inv":
            if isinstance(e.body, Tensor) and e.body.indices == e.axes:
                return f"{latex_symbol(e.body.name)}^{{-1}}{axes}"
            return f"\\left({body}\\right)^{{-1}}{axes}"
        det = f"\\det{axes}\\left({body}\\right)"
        return det if e.op == "det" else f"\\log\\left\\lvert{det}\\right\\rvert"

    def wrap(self, e: Expr, path: tuple[int, ...], min_prec: int) -> str:
        text, prec = self.render(e, path)
        return text if prec >= min_prec else self.parens(text)

    @staticmethod
    def parens(text: str) -> str:
        return f"\\left({text}\\right)"

    def render_power(self, base: Expr, exponent: Fraction, path: tuple[int, ...]) -> str:
        base_text = self.wrap(base, path + (0,), ATOM)
        if exponent == 1:
            return base_text
        if exponent == Fraction(1, 2):
            return f"\\sqrt{{{self.render(base, path + (0,))[0]}}}"
        if isinstance(base, (Tensor, Delta)) and base.indices:
            base_text = "{" + base_text + "}"
        return f"{base_text}^{{{latex_number(exponent)}}}"

    def render_product(self, e: Mul, path: tuple[int, ...], paths: tuple | None = None) -> tuple[str, int]:
        numerator: list[str] = []
        denominators: list[tuple[Pow, tuple[int, ...]]] = []
        sign = ""
        for k, factor in enumerate(e.factors):
            fpath = path + (k,) if paths is None else paths[k]
            if isinstance(factor, Pow) and factor.exponent < 0:
                denominators.append((factor, fpath))
            elif k == 0 and isinstance(factor, Const) and (factor.value < 0 or factor.value == 1):
                sign = "-" if factor.value < 0 else ""
                if abs(factor.value) != 1:
                    numerator.append(latex_number(-factor.value))
            elif isinstance(factor, Sum) and k == len(e.factors) - 1 and not denominators:
                numerator.append(self.render(factor, fpath)[0])  # a sum may close a product
            elif isinstance(factor, Sum) and fpath in self.hidden:
                text, prec = self.render(factor, fpath)
                numerator.append(text if prec >= MUL else f"\\left({text}\\right)")
            else:
                numerator.append(self.wrap(factor, fpath, POW if numerator else UNARY))
        num = " ".join(numerator) or "1"
        if not denominators:
            return sign + num, MUL
        parts = []
        for factor, fpath in denominators:
            if -factor.exponent != 1:
                parts.append(self.render_power(factor.base, -factor.exponent, fpath))
            elif len(denominators) == 1:
                parts.append(self.render(factor.base, fpath + (0,))[0])
            else:
                parts.append(self.wrap(factor.base, fpath + (0,), POW))
        return f"{sign}\\frac{{{num}}}{{{' '.join(parts)}}}", (UNARY if sign else ATOM)


def _latex_position(e: Shift) -> str:
    """``2i+k-1`` with each index name as LaTeX writes it."""
    return "".join(latex_symbol(p) if p.isalpha() else p
                   for p in re.split(r"([A-Za-z][A-Za-z0-9]*)", position_text(e.terms, e.offset)))


def _hidden(e: Expr, free: tuple[str, ...]) -> frozenset:
    return hidden_sums(e, free, lambda expr, hidden: TextRenderer(hidden).render(expr)[0])


def latex_expr(e: Expr, free: tuple[str, ...] | None = None, explicit_sums: bool = False) -> str:
    free = tuple(sorted(e.free)) if free is None else free
    hidden = frozenset() if explicit_sums else _hidden(e, free)
    return LatexRenderer(hidden).render(e)[0]


def latex_statement(stmt) -> str:
    lhs = latex_symbol(stmt.target) + latex_indices(stmt.indices)
    return f"{lhs} = {latex_expr(stmt.expr, stmt.indices)}"


def latex_program(program) -> str:
    """One statement per line (``\\\\`` separated, ``&=`` aligned for display)."""
    return " \\\\\n".join(latex_statement(s).replace(" = ", " &= ", 1) for s in program.statements)

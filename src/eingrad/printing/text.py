"""Unicode index notation that parses back to the same expression."""

from __future__ import annotations

import math
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
from .layout import hidden_sums, mean_parts, read_parts, softmax_parts

CMP, ADD, MUL, UNARY, POW, ATOM = 0, 1, 2, 3, 4, 5
TAIL = MUL  # Σ_n x_n without parentheses: fine at the end of a product, else parenthesised


#: The longest number printed as a plain decimal; longer ones use an exact ``me-k`` form.
PLAIN_DIGITS = 32


def digits(n: int) -> str:
    """``str(n)`` for an int of any size (``str`` refuses ints over 4300 digits)."""
    if n.bit_length() < 10_000:  # about 3000 digits
        return str(n)
    from decimal import Decimal

    return str(Decimal(n))  # exact: an int converts to a Decimal without rounding


def format_number(value: Fraction) -> str:
    """An exact decimal where one exists (0.5, 1e-3 as 0.001), else p/q.

    Long decimals are written exactly in scientific form (``1e-40``, ``25e300``),
    which parses back to the same value.
    """
    sign = "-" if value < 0 else ""
    num, den = abs(value.numerator), value.denominator
    if den == 1:
        text = digits(num)
        stripped = text.rstrip("0")
        if len(text) > PLAIN_DIGITS and stripped:
            return f"{sign}{stripped}e{len(text) - len(stripped)}"
        return sign + text
    twos = (den & -den).bit_length() - 1
    rest = den >> twos
    fives = round(math.log(rest, 5)) if rest > 1 else 0  # a decimal when rest is a power of 5
    if 5**fives != rest:
        return f"{sign}{digits(num)}/{digits(den)}"
    scale = max(twos, fives)  # value = mantissa × 10^-scale exactly, mantissa not a multiple of 10
    mantissa = digits(num * 2 ** (scale - twos) * 5 ** (scale - fives))
    if scale + 2 > PLAIN_DIGITS:
        return f"{sign}{mantissa}e-{scale}"
    if len(mantissa) > scale:
        return f"{sign}{mantissa[:-scale]}.{mantissa[-scale:]}"
    return f"{sign}0.{'0' * (scale - len(mantissa))}{mantissa}"


def index_suffix(indices: tuple[str, ...]) -> str:
    if not indices:
        return ""
    if all(len(i) == 1 and i.isalpha() for i in indices):
        return "_" + "".join(indices)
    return "[" + ", ".join(indices) + "]"


def is_negative(e: Expr) -> bool:
    """True when ``e`` prints with a leading minus sign (a negative constant factor)."""
    if isinstance(e, Const):
        return e.value < 0
    return isinstance(e, Mul) and isinstance(e.factors[0], Const) and e.factors[0].value < 0


class _AbsoluteView:
    """``-e`` for a negative term, built so that child paths stay those of ``e``.

    A product keeps its factor list with the constant made positive, even when
    it becomes 1, so that the paths of hidden sums inside still line up.
    """

    @staticmethod
    def of(e: Expr) -> Expr:
        if isinstance(e, Const):
            return Const(abs(e.value))
        if isinstance(e, Mul):
            return Mul((Const(-e.factors[0].value),) + e.factors[1:])  # type: ignore[attr-defined]
        return e


class TextRenderer:
    """Renders a node with a given set of hidden sums; returns (text, precedence)."""

    def __init__(self, hidden: frozenset) -> None:
        self.hidden = hidden

    def render(self, e: Expr, path: tuple[int, ...] = (), absolute: bool = False) -> tuple[str, int]:
        """``e`` as (text, precedence); ``absolute`` drops a leading minus sign."""
        if absolute:
            e = _AbsoluteView.of(e)
        if isinstance(e, Const):
            text = format_number(abs(e.value))
            if e.value < 0:
                return "-" + text, UNARY
            return text, (MUL if "/" in text else ATOM)
        if isinstance(e, Tensor):
            return e.name + index_suffix(e.indices), ATOM
        if isinstance(e, Delta):
            return "δ" + index_suffix(e.indices), ATOM
        if isinstance(e, Pick):  # the one-hot delta of a lookup, δ[c, y[n]] (LANGUAGE.md §10)
            return f"δ[{e.index}, {e.table.name}[{', '.join(e.table.indices)}]]", ATOM
        if isinstance(e, Shift):  # the shifted delta of index arithmetic, δ[j, i+k] (LANGUAGE.md §11)
            return f"δ[{e.index}, {position_text(e.terms, e.offset)}]", ATOM
        if isinstance(e, Size):
            return f"|{e.index}|", ATOM
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
            return self.render_product(e, path), MUL
        if isinstance(e, Pow):
            if e.exponent < 0:
                return "1 / " + self.render_power(e.base, -e.exponent, path), MUL
            return self.render_power(e.base, e.exponent, path), POW
        if isinstance(e, Call):
            if (soft := softmax_parts(e)) is not None:
                over, z = soft  # z is the first term of exp's argument, or all but its last
                body = self.render(z, path + (0,) + (() if isinstance(z, Add) else (0,)))[0]
                return f"softmax{index_suffix(over)}({body})", ATOM
            return f"{e.fn}({self.render(e.arg, path + (0,))[0]})", ATOM
        if isinstance(e, Compare):
            left = self.wrap(e.left, path + (0,), ADD)
            right = self.wrap(e.right, path + (1,), ADD)
            return f"{left} {e.op} {right}", CMP
        if isinstance(e, Choose):
            args = ", ".join(self.render(a, path + (k,))[0] for k, a in enumerate(e.args))
            return f"{e.op}({args})", ATOM
        if isinstance(e, Reduce):
            return f"{e.op}{index_suffix(e.indices)}({self.render(e.body, path + (0,))[0]})", ATOM
        if isinstance(e, Sum) and (parts := mean_parts(e)) is not None:
            means, kept = parts
            text = f"mean{index_suffix(means)}({self.render_rest(e.body, kept, path + (0,))})"
            others = tuple(i for i in e.indices if i not in means)
            return (f"Σ{index_suffix(others)} {text}", TAIL) if others else (text, ATOM)
        if isinstance(e, Sum):
            if (read := read_parts(e)) is not None:  # X[n, t-1]: the sum is the read's own
                return self.render_read(e, read, path)
            if path in self.hidden:
                return self.render(e.body, path + (0,))
            body, prec = self.render(e.body, path + (0,))
            if prec >= MUL and not body.startswith("("):
                # Σ_n G_nh δ_hk binds the rest of the product; it reads as a product.
                return f"Σ{index_suffix(e.indices)} {body}", TAIL
            return f"Σ{index_suffix(e.indices)}({body})", ATOM
        if isinstance(e, LogSumExp):
            return f"logsumexp{index_suffix(e.indices)}({self.render(e.body, path + (0,))[0]})", ATOM
        if isinstance(e, MatFn):
            return f"{e.op}{index_suffix(e.axes)}({self.render(e.body, path + (0,))[0]})", ATOM
        raise TypeError(f"cannot print {type(e).__name__}")

    def render_read(self, e: Sum, read, path: tuple[int, ...]) -> tuple[str, int]:
        """``X[n, t-1]``, ``Z[n, y[n]]``: a read at positions (LANGUAGE.md §10–11), as the user writes it."""
        tensor, fixed, rest = read
        parts = []
        for i in tensor.indices:
            f = fixed.get(i)
            if isinstance(f, Pick):
                parts.append(f"{f.table.name}[{', '.join(f.table.indices)}]")
            elif isinstance(f, Shift):
                parts.append(position_text(f.terms, f.offset))
            else:
                parts.append(i)
        text = f"{tensor.name}[{', '.join(parts)}]"
        if not rest:
            return text, ATOM
        others = self.render_rest(e.body, rest, path + (0,))
        return f"{others} {text}", MUL

    def wrap(self, e: Expr, path: tuple[int, ...], min_prec: int) -> str:
        text, prec = self.render(e, path)
        return text if prec >= min_prec else self.parens(text)

    @staticmethod
    def parens(text: str) -> str:
        return f"({text})"

    def render_rest(self, body: Mul, kept: tuple[int, ...], path: tuple[int, ...]) -> str:
        """The factors ``kept`` of the product ``body`` (at ``path``), as one product."""
        if len(kept) == 1:
            return self.render(body.factors[kept[0]], path + (kept[0],))[0]
        rest = Mul(tuple(body.factors[k] for k in kept))
        return self.render_product(rest, path, tuple(path + (k,) for k in kept))

    def render_power(self, base: Expr, exponent: Fraction, path: tuple[int, ...]) -> str:
        base_text = self.wrap(base, path + (0,), ATOM)
        if exponent == 1:
            return base_text
        if exponent.denominator == 1 or "/" not in format_number(abs(exponent)):
            exp_text = ("-" if exponent < 0 else "") + format_number(abs(exponent))
        else:
            exp_text = f"({format_number(exponent)})"
        return f"{base_text}^{exp_text}"

    def render_product(self, e: Mul, path: tuple[int, ...], paths: tuple | None = None) -> str:
        out = ""
        for k, factor in enumerate(e.factors):
            fpath = path + (k,) if paths is None else paths[k]
            if isinstance(factor, Pow) and factor.exponent < 0:
                den = self.render_power(factor.base, -factor.exponent, fpath)
                if isinstance(factor.base, (Mul, Add)) and -factor.exponent == 1:
                    den = self.wrap(factor.base, fpath + (0,), ATOM)
                out = (out + "1" if out in ("", "-") else out) + " / " + den
                continue
            if k == 0 and isinstance(factor, Const):
                if abs(factor.value) == 1 and len(e.factors) > 1:
                    out = "-" if factor.value < 0 else ""
                    continue
                out = self.render(factor, fpath)[0]
                continue
            last = k == len(e.factors) - 1
            if isinstance(factor, Sum) and fpath not in self.hidden and last:
                text = self.render(factor, fpath)[0]  # Σ_n x_n may close a product
            elif isinstance(factor, Sum) and fpath in self.hidden:
                # A hidden sum's product joins the surrounding product: A_ij B_jk W_ik.
                text, prec = self.render(factor, fpath)
                if prec < MUL or (k > 0 and text.startswith("-")):
                    text = f"({text})"
            else:
                text = self.wrap(factor, fpath, UNARY if k == 0 else POW)
            if isinstance(factor, Const) and not text.startswith("("):
                text = f"({text})"
            out = out + text if out in ("", "-") else out + " " + text
        return out


def format_expr(e: Expr, free: tuple[str, ...] | None = None, explicit_sums: bool = False) -> str:
    """Index notation for one expression, sums hidden wherever the parser restores them.

    With ``explicit_sums`` every sum is written out (Σ_j), as derivations do.
    """
    free = tuple(sorted(e.free)) if free is None else free

    def render(expr: Expr, hidden: frozenset) -> str:
        return TextRenderer(hidden).render(expr)[0]

    return render(e, frozenset() if explicit_sums else hidden_sums(e, free, render))


def format_statement(stmt) -> str:
    return f"{stmt.target}{index_suffix(stmt.indices)} = {format_expr(stmt.expr, stmt.indices)}"


def format_program(program) -> str:
    return "\n".join(format_statement(s) for s in program.statements)

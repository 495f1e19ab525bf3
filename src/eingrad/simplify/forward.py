"""Forward values in results: a derivative written with the program's own intermediates.

``dLdZ_nc = P_nc dLdP_nc − softmax_c(Z_nc) Σ_i P_ni dLdP_ni`` reads better, and is
what a textbook writes, as ``P_nc dLdP_nc − P_nc Σ_i P_ni dLdP_ni`` when the program
computed ``P_nc = softmax_c(Z_nc)``: the same value, already in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from fractions import Fraction

from ..canonical import canonical
from ..expr import (
    LEAVES,
    ZERO,
    Add,
    Call,
    Choose,
    Const,
    Expr,
    LogSumExp,
    Mul,
    Pow,
    Reduce,
    Shift,
    Size,
    Sum,
    Tensor,
    add,
    factors_of,
    mul,
    rename_indices,
    walk,
)
from .engine import fold_softmax

__all__ = ["ForwardTable", "drop_centred_sums", "spread_sign", "use_forward_values"]

# Definitions worth naming where they recur: the nonlinear ones (relu, tanh, softmax,
# max, log-sum-exp, selections). A contraction X_nd W_dh is left as it reads, and so
# are matrix functions, which the Matrix Cookbook writes out (det(X) X⁻ᵀ).
_NAMED = (Call, Reduce, LogSumExp, Choose)


def _key(e: Expr) -> tuple:
    return (type(e).__name__, getattr(e, "fn", None), getattr(e, "op", None), len(e.free))


class ForwardTable:
    """The forward statements' definitions, indexed once for the many results of one
    gradient program (a loop unrolled τ steps folds O(τ) results against O(τ)
    definitions: indexing them once per result would be quadratic).

    The named definitions' kinds (``_key``) are found when a result is first folded; a
    kind's forms, the target indices renamed to placeholders ``$0, $1, ...`` and written
    canonically, only when a result holds a node of that kind (:meth:`patterns`).
    ``means`` are the statements ``m_I = mean_K(b)`` with their ``b``, found when first
    asked for."""

    __slots__ = ("_forms", "_means", "_pending", "_shifts", "_statements")

    def __init__(self, statements: Iterable) -> None:
        self._statements = list(statements)
        # kind -> [(position, statement, definition)], in statement order, not yet indexed
        # (None until a result is first folded: drop_centred_sums needs only the means).
        self._pending: dict[tuple, list] | None = None
        self._forms: dict[tuple, dict[Expr, tuple[int, object]]] = {}
        self._means: list | None = None
        self._shifts: bool | None = None

    @property
    def has_shifts(self) -> bool:
        """Whether a forward statement holds index arithmetic (§11): only then can a result."""
        if self._shifts is None:
            self._shifts = any(isinstance(n, Shift) for s in self._statements for n in walk(s.expr))
        return self._shifts

    @property
    def means(self) -> list:
        if self._means is None:
            self._means = [(s, body) for s in self._statements if (body := _mean_body(s.expr)) is not None]
        return self._means

    def _kinds(self) -> dict[tuple, list]:
        if self._pending is None:
            self._pending = {}
            for position, stmt in enumerate(self._statements):
                x = fold_softmax(stmt.expr)
                if not isinstance(x, _NAMED) or len(set(stmt.indices)) != len(stmt.indices):
                    continue
                if x.free != frozenset(stmt.indices) or len(stmt.indices) > 4:
                    continue
                self._pending.setdefault(_key(x), []).append((position, stmt, x))
        return self._pending

    def __bool__(self) -> bool:
        return bool(self._kinds()) or bool(self._forms)

    def patterns(self, key: tuple) -> dict[Expr, tuple[int, object]] | None:
        """The definitions of kind ``key``: renamed canonical form -> (position, statement)
        of its first definer; None when there are none."""
        forms = self._forms.get(key)
        if forms is None:
            pending = self._kinds().pop(key, None)
            if pending is None:
                return None
            forms = self._forms[key] = {}
            for position, stmt, x in pending:
                temp = {i: f"${k}" for k, i in enumerate(stmt.indices)}
                forms.setdefault(canonical(rename_indices(canonical(x), temp)), (position, stmt))
        return forms


def _table(statements: Iterable) -> ForwardTable:
    return statements if isinstance(statements, ForwardTable) else ForwardTable(statements)


def use_forward_values(e: Expr, statements: Iterable) -> Expr:
    """``e`` with every subexpression equal, up to the names of its free indices, to a
    statement's definition ``T_I = f(...)`` written as that target ``T_J``.

    Identity: ``f(x)_J = T_J`` when the program computed ``T_I = f(x)_I``; exact, the
    value is the one the forward pass holds.  Only nonlinear definitions (functions,
    softmax, reductions, selections, matrix functions) are matched, each with distinct
    target indices that its definition all mentions.  ``statements`` may be a
    :class:`ForwardTable` of them, built once for many results."""
    table = _table(statements)
    if not table:
        return e
    if not any(isinstance(node, _NAMED) for node in walk(e)):
        return e  # only a node of a named kind is a definition (most results hold none)
    memo: dict[Expr, Expr] = {}

    def visit(node: Expr) -> Expr:
        if isinstance(node, LEAVES):  # a leaf is no definition (each kind matched has operands)
            return node
        if node in memo:
            return memo[node]
        out = _match(node, table.patterns(_key(node)))
        if out is None and _is_softmax(node):
            out = node  # softmax_k(z_k) reads as itself, not as exp(z_k - l)
        if out is None:
            kids = tuple(visit(c) for c in node.children)
            out = node if kids == node.children else node.with_children(kids)
        memo[node] = out
        return out

    out = visit(e)
    visit = None  # noqa: F841 - breaks the closure's cycle: refcounting frees its memo now
    return out


def _is_softmax(node: Expr) -> bool:
    return isinstance(node, Call) and node.fn == "exp" and isinstance(node.arg, Add) and any(
        isinstance(f, LogSumExp) for t in node.arg.terms for f in factors_of(t))


def _match(node: Expr, patterns: dict | None) -> Expr | None:
    """The first definer's target (by position), read with the first order of ``node``'s
    free indices that makes its renamed canonical form a definition's."""
    if not patterns:
        return None
    free = sorted(node.free)
    base = canonical(node)
    best = None
    for order in itertools.permutations(free):
        temp = {i: f"${k}" for k, i in enumerate(order)}
        hit = patterns.get(canonical(rename_indices(base, temp)))
        if hit is not None and (best is None or hit[0] < best[0][0]):
            best = (hit, order)
    if best is None:
        return None
    (_, stmt), order = best
    return Tensor(stmt.target, tuple(order))


def drop_centred_sums(e: Expr, statements: Iterable) -> Expr:
    """``e`` with every sum of a centred variable written as 0.

    Identity: ``Σ_n(x_n − m) = 0`` when the program computed ``m = mean_n(x_n)``
    (``Σ_n x_n = |n| m``); the products and sums holding it become 0 with it.
    ``statements`` may be a :class:`ForwardTable` of them."""
    means = _table(statements).means
    if not means:
        return e
    memo: dict[Expr, Expr] = {}

    def visit(node: Expr) -> Expr:
        if node in memo:
            return memo[node]
        if isinstance(node, Sum) and any(_centred(node, s, body) for s, body in means):
            out: Expr = ZERO
        else:
            kids = tuple(visit(c) for c in node.children)
            if kids == node.children:
                out = node
            elif isinstance(node, Mul) and ZERO in kids:
                out = ZERO
            elif isinstance(node, Sum) and kids[0] == ZERO:
                out = ZERO
            elif isinstance(node, Add):
                out = add(*kids)
            else:
                out = node.with_children(kids)
        memo[node] = out
        return out

    return visit(e)


def _mean_body(e: Expr) -> Expr | None:
    """``b`` when ``e`` is ``mean_K(b)``, which the parser writes ``Σ_K(|K|⁻¹ b)``."""
    if not isinstance(e, Sum):
        return None
    sizes = {Pow(Size(k), Fraction(-1)) for k in e.indices}
    factors = factors_of(e.body)
    if not sizes <= set(factors):
        return None
    return mul(*(f for f in factors if f not in sizes))


def _centred(node: Sum, stmt, mean_body: Expr) -> bool:
    """Is ``node`` ``Σ_S(b − m_J)``, ``m_I = mean_K(b')`` with ``b`` ``b'`` renamed K→S, I→J?"""
    mean = stmt.expr
    body = node.body
    if not isinstance(body, Add) or len(mean.indices) != len(node.indices):
        return False
    for k, term in enumerate(body.terms):
        f = factors_of(term)
        if not (len(f) == 2 and f[0] == Const(-1) and isinstance(f[1], Tensor) and f[1].name == stmt.target):
            continue
        J = f[1].indices
        if len(set(J)) != len(J) or set(J) & set(node.indices) or len(J) != len(stmt.indices):
            continue
        rest = add(*(body.terms[:k] + body.terms[k + 1:]))
        target = canonical(rest)
        inner = canonical(mean_body)  # bound names apart from every free one
        if (set(inner.free) - set(mean.indices)) != set(stmt.indices):
            continue
        for order in itertools.permutations(node.indices):
            mapping = dict(zip(stmt.indices, J, strict=True)) | dict(zip(mean.indices, order, strict=True))
            temp = {i: f"${n}" for n, i in enumerate(mapping)}
            renamed = rename_indices(rename_indices(inner, temp), {temp[i]: mapping[i] for i in mapping})
            if canonical(renamed) == target:
                return True
    return False


def spread_sign(e: Expr) -> Expr:
    """``-(a - b)`` as ``b - a``: a result's leading minus taken into its sum, the positive
    terms first (``softmax_c(Z_nc) Σ_j Y_nj - Y_nc``, as a textbook writes ``P − Y``)."""
    if not (isinstance(e, Mul) and len(e.factors) == 2 and e.factors[0] == Const(-1)
            and isinstance(e.factors[1], Add)):
        return e
    terms = [mul(Const(-1), t) for t in e.factors[1].terms]
    positive = [t for t in terms if not _negative(t)]
    if not positive:
        return e
    return add(*positive, *(t for t in terms if _negative(t)))


def _negative(t: Expr) -> bool:
    f = factors_of(t)[0]
    return isinstance(f, Const) and f.value < 0

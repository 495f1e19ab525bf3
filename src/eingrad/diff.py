"""Exact symbolic derivatives in index notation (LANGUAGE.md §6).

``∂f_I/∂X_K`` is computed node by node, one rule per node type, with a fresh
index for every axis of ``X``: a reference to ``X`` itself gives a product of
Kronecker deltas (``∂X_ab/∂X_kl = δ_ak δ_bl``), and everything else follows
from the sum, product, power and chain rules.  Through a program, derivatives
run forward statement by statement: a reference to an earlier target is
replaced by that target's derivative, with its bound indices renamed apart.
Each statement's derivative is simplified before later statements use it.

Derivatives of elementwise functions are written against the forward value
where that is exact and cheaper: ``exp' = exp``, ``tanh' = 1 - tanh²``,
``σ' = σ(1 - σ)``; ``logsumexp`` gives the softmax.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from . import expr as E
from .errors import EingradError, SizeError, ZeroDerivativeWarning
from .expr import (
    ONE,
    ZERO,
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
    Pow,
    Reduce,
    Size,
    Sum,
    Tensor,
    add,
    call,
    mul,
    neg,
    power,
    rename_indices,
    sum_,
)
from .names import fresh_index
from .program import Program, Statement
from .simplify import simplify
from .simplify.engine import fold_softmax
from .simplify.forward import drop_centred_sums, use_forward_values

__all__ = ["DERIVATIVES", "Derivative", "DiffError", "diff_expr", "differentiate"]


class DiffError(EingradError, ValueError):
    """A derivative that cannot be taken as asked (unknown wrt, bad order, ...)."""


#: The highest derivative order ``diff`` takes (docs/language.md "Derivatives"): the
#: work and the result's rank grow with the order, and no model needs more.
MAX_ORDER = 16


# ---------------------------------------------------------------- elementwise functions
# f'(u) for each function, given u and the forward value y = f(u).

DERIVATIVES: dict[str, Callable[[Expr, Expr], Expr]] = {
    "exp": lambda u, y: y,  # exp' = exp
    "log": lambda u, y: power(u, -1),  # log' = 1/u
    "sqrt": lambda u, y: mul(Const(Fraction(1, 2)), power(y, -1)),  # sqrt' = 1/(2 sqrt u)
    "tanh": lambda u, y: add(ONE, neg(power(y, 2))),  # tanh' = 1 - tanh²
    "sigmoid": lambda u, y: mul(y, add(ONE, neg(y))),  # σ' = σ(1 - σ)
    "relu": lambda u, y: call("step", y),  # relu' = step(u) = step(relu(u)), 0 at 0
    "softplus": lambda u, y: call("sigmoid", u),  # softplus' = σ
    "abs": lambda u, y: call("sign", u),  # abs' = sign, 0 at 0
    "sin": lambda u, y: call("cos", u),
    "cos": lambda u, y: neg(call("sin", u)),
    "step": lambda u, y: ZERO,  # zero almost everywhere
    "sign": lambda u, y: ZERO,
}


# ---------------------------------------------------------------- the rules


@dataclass
class _Context:
    """What the rules need: ``wrt``, the fresh indices for its axes, earlier derivatives."""

    wrt: str
    wrt_indices: tuple[str, ...]
    # target -> (its indices, its derivative written with base_indices for wrt's axes)
    known: dict[str, tuple[tuple[str, ...], Expr]]
    base_indices: tuple[str, ...]
    taken: set[str]
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)
    statement_sources: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    # f(u) -> the target that holds it, so f' reads the forward value (1 - s² for s = tanh(u))
    forward_values: dict[Expr, Expr] = field(default_factory=dict)
    # renamed index -> the program's index whose declared size it has (no tensor fixes it)
    origins: dict[str, str] = field(default_factory=dict)


def diff_expr(e: Expr, ctx: _Context) -> Expr:
    """∂e/∂wrt, with ``ctx.wrt_indices`` as the indices of wrt's axes."""
    read = E.mentions(e)
    if ctx.wrt not in read and not any(name in ctx.known for name in read):
        return ZERO  # nothing below depends on wrt
    return _RULES[type(e)](e, ctx)


def _d_tensor(e: Tensor, ctx: _Context) -> Expr:
    """∂X_ab/∂X_kl = δ_ak δ_bl; ∂T_ab/∂X = ∂T/∂X with T's indices renamed; else 0."""
    if e.name == ctx.wrt:
        return mul(*(Delta((a, k)) for a, k in zip(e.indices, ctx.wrt_indices, strict=True)))
    if e.name in ctx.known:
        target_indices, derivative = ctx.known[e.name]
        mapping = dict(zip(ctx.base_indices, ctx.wrt_indices, strict=True))
        mapping.update(zip(target_indices, e.indices, strict=True))
        bound = E.all_indices(derivative) - set(target_indices) - set(ctx.base_indices)
        own = ctx.statement_sources.get(e.name, {})
        for old in sorted(bound):
            new = fresh_index(ctx.taken, old[0])
            ctx.taken.add(new)
            mapping[old] = new
            if old in ctx.sources:
                ctx.sources[new] = ctx.sources[old]
            elif old in own:
                ctx.sources[new] = own[old]
            else:
                ctx.origins[new] = ctx.origins.get(old, old)
        return rename_indices(derivative, mapping)
    return ZERO


def _d_const(e: Expr, ctx: _Context) -> Expr:
    """∂c/∂X = 0, ∂δ_ij/∂X = 0, ∂|i|/∂X = 0, ∂[a > b]/∂X = 0, ∂δ[c, y_n]/∂X = 0"""
    return ZERO


def _d_add(e: Add, ctx: _Context) -> Expr:
    """∂(a + b) = ∂a + ∂b"""
    return add(*(diff_expr(t, ctx) for t in e.terms))


def _d_mul(e: Mul, ctx: _Context) -> Expr:
    """∂(a b) = ∂a b + a ∂b (elementwise products too)"""
    terms = []
    for k, factor in enumerate(e.factors):
        d = diff_expr(factor, ctx)
        if d != ZERO:
            terms.append(mul(*e.factors[:k], d, *e.factors[k + 1 :]))
    return add(*terms)


def _d_pow(e: Pow, ctx: _Context) -> Expr:
    """∂(u^n) = n u^(n-1) ∂u"""
    d = diff_expr(e.base, ctx)
    if d == ZERO:
        return ZERO
    return mul(Const(e.exponent), power(e.base, e.exponent - 1), d)


def _d_call(e: Call, ctx: _Context) -> Expr:
    """∂f(u) = f'(u) ∂u, f' from DERIVATIVES (written against the forward value f(u))"""
    d = diff_expr(e.arg, ctx)
    if d == ZERO:
        return ZERO
    if e.fn not in DERIVATIVES:
        raise DiffError(
            f"the function {e.fn!r} has no derivative rule",
            hint="add one to eingrad.diff.DERIVATIVES",
        )
    return mul(DERIVATIVES[e.fn](e.arg, ctx.forward_values.get(e, e)), d)


def _d_sum(e: Sum, ctx: _Context) -> Expr:
    """∂(Σ_i u) = Σ_i ∂u"""
    return sum_(e.indices, diff_expr(e.body, ctx))


def _d_logsumexp(e: LogSumExp, ctx: _Context) -> Expr:
    """∂ logsumexp_i(u) = Σ_i softmax_i(u) ∂u, softmax_i(u) = exp(u - logsumexp_i(u))"""
    d = diff_expr(e.body, ctx)
    if d == ZERO:
        return ZERO
    softmax = call("exp", add(e.body, neg(e)))
    return sum_(e.indices, mul(softmax, d))


def _d_reduce(e: Reduce, ctx: _Context) -> Expr:
    """∂ max_k(u) = Σ_k w_k ∂u, w_k = [u_k = max_k u] / Σ_k [u_k = max_k u]: the derivative flows to
    the positions holding the max, ties share it equally (min likewise); [u = max u] is u >= max u"""
    d = diff_expr(e.body, ctx)
    if d == ZERO:
        return ZERO
    holds = E.compare(">=" if e.op == "max" else "<=", e.body, e)
    return sum_(e.indices, mul(holds, power(sum_(e.indices, holds), -1), d))


_HALF = Const(Fraction(1, 2))


def _d_choose(e: Choose, ctx: _Context) -> Expr:
    """∂max(a, b) = [a > b] ∂a + [a < b] ∂b + ½[a = b](∂a + ∂b), written ½((a > b) + (a >= b)) ∂a + …
    (min with < for >); ∂where(c, a, b) = where(c, 1, 0) ∂a + where(c, 0, 1) ∂b;
    ∂clip(x, lo, hi) = [lo < x < hi] ∂x + [x < lo < hi] ∂lo + [max(x, lo) > hi] ∂hi (0 at a bound)"""
    ds = [diff_expr(a, ctx) for a in e.args]
    if all(d == ZERO for d in ds):
        return ZERO
    if e.op in ("max", "min"):
        a, b = e.args
        gt, ge = (">", ">=") if e.op == "max" else ("<", "<=")
        terms = []
        for (x, y), d in zip(((a, b), (b, a)), ds, strict=True):
            if d != ZERO:
                terms.append(mul(_HALF, add(E.compare(gt, x, y), E.compare(ge, x, y)), d))
        return add(*terms)
    if e.op == "where":
        # written as products, so that the deltas of ∂a and ∂b meet the sums around them
        c = e.args[0]
        return add(mul(E.choose("where", c, ONE, ZERO), ds[1]), mul(E.choose("where", c, ZERO, ONE), ds[2]))
    x, lo, hi = e.args
    dx, dlo, dhi = ds
    terms = []
    if dx != ZERO:
        terms.append(mul(E.compare("<", lo, x), E.compare("<", x, hi), dx))
    if dlo != ZERO:
        terms.append(mul(E.compare("<", x, lo), E.compare("<", lo, hi), dlo))
    if dhi != ZERO:
        terms.append(mul(E.compare(">", E.choose("max", x, lo), hi), dhi))
    return add(*terms)


#: The identity each matrix function is differentiated by (the Matrix Cookbook's, in index
#: notation); explanations name it.
MATRIX_IDENTITIES = {
    "inv": "∂(A⁻¹)_ij = -Σ_ab (A⁻¹)_ia ∂A_ab (A⁻¹)_bj",
    "det": "∂ det A = det A Σ_ab (A⁻¹)_ba ∂A_ab",
    "logdet": "∂ log|det A| = Σ_ab (A⁻¹)_ba ∂A_ab",
}


def _d_matfn(e: MatFn, ctx: _Context) -> Expr:
    """∂(A⁻¹)_ij = −Σ_ab (A⁻¹)_ia ∂A_ab (A⁻¹)_bj; ∂ det A = det A Σ_ab (A⁻¹)_ba ∂A_ab;
    ∂ log|det A| = Σ_ab (A⁻¹)_ba ∂A_ab (A the matrix of the body, batch indices kept)"""
    i, j = e.axes
    taken = ctx.taken
    taken |= E.all_indices(e)
    a = fresh_index(taken, "a")
    taken.add(a)
    b = fresh_index(taken, "b")
    taken.add(b)
    for new, old in ((a, i), (b, j)):
        if old in ctx.sources:
            ctx.sources[new] = ctx.sources[old]
        else:
            ctx.origins[new] = ctx.origins.get(old, old)
    d = diff_expr(rename_indices(e.body, {i: a, j: b}), ctx)
    if d == ZERO:
        return ZERO

    def inverse(row: str, col: str) -> Expr:
        """(A⁻¹)_{row,col}: the inverse over the body with rows ``row`` and columns ``col``."""
        return MatFn("inv", (row, col), rename_indices(e.body, {i: row, j: col}))

    if e.op == "inv":
        return neg(sum_((a, b), mul(inverse(i, a), d, inverse(b, j))))
    trace = sum_((a, b), mul(inverse(b, a), d))
    return trace if e.op == "logdet" else mul(e, trace)


_RULES: dict[type, Callable] = {
    Tensor: _d_tensor,
    Delta: _d_const,
    Const: _d_const,
    Size: _d_const,
    Add: _d_add,
    Mul: _d_mul,
    Pow: _d_pow,
    Call: _d_call,
    Sum: _d_sum,
    LogSumExp: _d_logsumexp,
    Reduce: _d_reduce,
    Choose: _d_choose,
    Compare: _d_const,  # a comparison is 1 or 0: a constant (LANGUAGE.md §13)
    MatFn: _d_matfn,
    E.Pick: _d_const,  # δ[c, y[n]]: y holds integers, never differentiated (LANGUAGE.md §10)
    E.Shift: _d_const,  # δ[j, i+k]: a constant of index arithmetic (LANGUAGE.md §11)
}


# ---------------------------------------------------------------- sizes of indices


def statement_index_sources(stmt: Statement) -> dict[str, tuple[str, int]]:
    """For every index of ``stmt``: a (tensor, axis) whose length is that index's size."""
    sources: dict[str, tuple[str, int]] = {}
    deltas = []
    for node in E.walk(stmt.expr):
        if isinstance(node, Tensor):
            for axis, i in enumerate(node.indices):
                sources.setdefault(i, (node.name, axis))
        elif isinstance(node, Delta):
            deltas.append(node)
    changed = True
    while changed:
        changed = False
        for d in deltas:
            known = [i for i in d.indices if i in sources]
            for i in d.indices:
                if known and i not in sources:
                    sources[i] = sources[known[0]]
                    changed = True
    return sources


# ---------------------------------------------------------------- the user's index names


class AxisClasses:
    """Which tensor axes a program makes one size, and what the user calls them.

    A union-find over ``(tensor, axis)`` pairs, joined through each statement's
    index names (within a statement one name has one size: ``X_nd W_dh`` ties X's
    axis 1 to W's axis 0).  ``like`` maps names the program does not have (a
    gradient ``dLdY``, an upstream ``dLdY``) to the tensor whose shape they have.
    """

    def __init__(self, program: Program, like: dict[str, str] | None = None) -> None:
        self.program = program
        self.inputs = frozenset(program.inputs)
        self.like = dict(like or {})
        self.parent: dict[tuple, tuple] = {}
        self._names: dict[tuple, list[str]] | None = None
        pending: list[tuple[tuple, str]] = []  # (tensor, axis) and the name it is written with
        for k, stmt in enumerate(program.statements):
            for axis, i in enumerate(stmt.indices):
                self.union((stmt.target, axis), (k, i))
                pending.append(((stmt.target, axis), i))
            for node in E.walk(stmt.expr):
                if isinstance(node, Tensor):
                    for axis, i in enumerate(node.indices):
                        self.union((node.name, axis), (k, i))
                        pending.append(((node.name, axis), i))
                elif isinstance(node, Delta):
                    for i in node.indices[1:]:
                        self.union((k, node.indices[0]), (k, i))
        self.pending = pending

    def names(self, key: tuple) -> list[str]:
        """Every name the program gives the axes of ``key``'s class, first written first."""
        if self._names is None:  # computed again only after a union
            self._names = {}
            for axis, name in self.pending:
                names = self._names.setdefault(self.find(axis), [])
                if name not in names:
                    names.append(name)
        return self._names.get(self.find(key), [])

    def find(self, key: tuple) -> tuple:
        parent = self.parent
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            self._names = None

    def of(self, tensor: str, axis: int) -> tuple:
        """The class of ``tensor``'s axis (a gradient's axis is its tensor's)."""
        return self.find((self.like.get(tensor, tensor), axis))

    def own_name(self, tensor: str, axis: int) -> str | None:
        """What the program calls ``tensor``'s axis: its target's index, or its first use's."""
        name = self.like.get(tensor, tensor)
        program = self.program
        if program.is_target(name):
            indices = program.statement(name).indices
        elif name in self.inputs:
            indices = program.first_use(name).indices
        else:
            return None
        return indices[axis] if axis < len(indices) else None


def user_names(
    e: Expr, free: tuple[str, ...], classes: AxisClasses, sized: dict[str, tuple[str, int]] | None = None
) -> tuple[Expr, dict[str, str]]:
    """``e`` with each bound index and each size named as the program names its axis,
    where that is safe; returns the renamed expression and the renaming.

    A binder takes the name the program gives a tensor axis it runs over (the
    batch index of every term of an RNN's gradient is ``n`` again, not ``i``,
    ``j``...), unless that name is free in its body, bound around or inside it,
    a free index of ``e`` (``free``), or used elsewhere in ``e`` for an axis of
    another size.  A size ``|i|`` of an index that no tensor carries
    (``sized``: index -> its tensor axis) takes the name of an index that does
    carry an axis of that size, so the text evaluates on its own: ``2 / |n| …
    Σ_n(X_nh - mu_h)``.  Indices of ``free`` are never renamed.
    """
    sized = dict(sized or {})
    # The class of every index name in e: one class per name (a statement gives a
    # name one size, so two classes one name meets are one).
    name_class: dict[str, tuple] = {}

    def note(name: str, key: tuple) -> None:
        if name in name_class:
            classes.union(name_class[name], key)
        name_class[name] = classes.find(key)

    has_sizes = False
    for node in E.walk(e):
        if isinstance(node, Tensor):
            for axis, i in enumerate(node.indices):
                note(i, classes.of(node.name, axis))
        elif isinstance(node, Size):
            has_sizes = True
    for i, (tensor, axis) in sized.items():
        note(i, classes.of(tensor, axis))
    name_class = {i: classes.find(c) for i, c in name_class.items()}
    mapping: dict[str, str] = {}
    fixed = set(free)

    def candidates(index: str, body: Expr) -> Iterator[str]:
        # Lazily, each name once, in order: the loop below mostly takes the first (the
        # own name of the first tensor axis the binder runs over), so most of the body
        # is never walked.
        seen: set[str] = set()
        for node in E.walk(body):
            if isinstance(node, Tensor):
                for axis, i in enumerate(node.indices):
                    if i == index:
                        own = classes.own_name(node.name, axis)
                        if own is not None and own not in seen:
                            seen.add(own)
                            yield own
        if index in name_class:
            for name in classes.names(name_class[index]):
                if name not in seen:
                    seen.add(name)
                    yield name

    def rename_binders(node: Expr, around: frozenset[str], beside: frozenset[str]) -> Expr:
        # around: names bound by enclosing binders; beside: names occurring in the factors
        # (and arguments) next to node, not split from it by a +: an implicit sum over a
        # name there would take node's in (Σ_d in sigmoid(X_nd w_d) (1 - sigmoid(X_nd w_d))).
        if node.binds and not isinstance(node, MatFn):
            body = node.body
            new_indices = []
            for b in node.indices:
                c = name_class.get(b)
                chosen = b
                for p in candidates(b, body) if c is not None else []:
                    if p == b:
                        break
                    if (
                        p in fixed
                        or p in around
                        or p in beside
                        or p in node.indices
                        or p in new_indices
                        or p in E.index_names(body)
                        or name_class.get(p, c) != c
                    ):
                        continue
                    chosen = p
                    break
                if chosen != b:
                    body = rename_indices(body, {b: chosen})
                    name_class[chosen] = c
                    mapping[b] = chosen
                new_indices.append(chosen)
            inner = rename_binders(body, around | set(new_indices), beside)
            # Bound indices in sorted order, as the parser builds them (sum_ sorts them too).
            indices = tuple(sorted(new_indices))
            if inner is node.body and indices == node.indices:
                return node  # nothing renamed (most binders): the node itself, not a copy
            return node.rebind(indices, inner)
        if not _has_binder(node):
            return node
        if isinstance(node, MatFn):  # its axes are the matrix's inside: never a binder's new name
            return _same_node(node, (rename_binders(node.body, around | set(node.axes), beside),))
        children = node.children
        if isinstance(node, Add) or len(children) == 1:
            return _same_node(node, tuple(rename_binders(child, around, beside) for child in children))
        names = [_occurring(child) for child in children]
        return _same_node(node, tuple(
            rename_binders(child, around, beside.union(*names[:k], *names[k + 1 :]))
            for k, child in enumerate(children)
        ))

    out = rename_binders(e, frozenset(), frozenset())
    rename_binders = None  # noqa: F841 - breaks the closure's cycle: refcounting frees it now, not the collector
    if not has_sizes:  # renaming binders makes no size: none to name (most statements)
        return out, mapping
    # Sizes of indices no tensor carries: the name of one that carries an axis of that size.
    carried: dict[tuple, list[str]] = {}
    carried_names: set[str] = set()
    sizes: list[Size] = []
    for node in E.walk(out):
        if isinstance(node, (Tensor, Delta)):
            carried_names.update(node.indices)
        if isinstance(node, Tensor):
            for axis, i in enumerate(node.indices):
                carried.setdefault(name_class.get(i, classes.of(node.name, axis)), []).append(i)
        elif isinstance(node, Size):
            sizes.append(node)
    size_map: dict[str, str] = {}
    for node in sizes:  # in the order a walk meets them
        if node.index not in carried_names and node.index in name_class:
            names = carried.get(name_class[node.index])
            if names:
                own = classes.own_name(*sized[node.index]) if node.index in sized else None
                size_map[node.index] = own if own in names else names[0]
    if size_map:
        out = _rename_sizes(out, size_map)
        mapping.update(size_map)
    return out, mapping


def _rename_sizes(e: Expr, mapping: dict[str, str]) -> Expr:
    """Rename the indices of sizes only (``|i|`` -> ``|n|``); tensors and binders keep theirs."""
    if isinstance(e, Size):
        return Size(mapping.get(e.index, e.index))
    if mapping.keys().isdisjoint(E.index_names(e)) or isinstance(e, (Tensor, Delta)):
        return e
    return _same_node(e, tuple(_rename_sizes(child, mapping) for child in e.children))


@lru_cache(maxsize=65536)
def _occurring(e: Expr) -> frozenset[str]:
    """Index names of tensors, deltas and binders in ``e`` (a size |i| is not an occurrence)."""
    if isinstance(e, (Tensor, Delta)):
        return frozenset(e.indices)
    out = frozenset(e.binds)
    return out.union(*(_occurring(child) for child in e.children))


def _has_binder(e: Expr) -> bool:
    return not isinstance(e, E.LEAVES) and _has_binder_inside(e)  # a leaf binds nothing (not cached)


@lru_cache(maxsize=65536)
def _has_binder_inside(e: Expr) -> bool:
    return bool(e.binds) or isinstance(e, MatFn) or any(_has_binder(child) for child in e.children)


def _same_node(e: Expr, children: tuple[Expr, ...]) -> Expr:
    """``e`` over new children, its shape kept (no smart constructor regroups it)."""
    if all(new is old for new, old in zip(children, e.children, strict=True)):
        return e
    if isinstance(e, (Add, Mul)):
        return type(e)(children)
    if isinstance(e, Pow):
        return Pow(children[0], e.exponent)
    if isinstance(e, Call):
        return Call(e.fn, children[0])
    if e.binds:
        return e.rebind(e.indices, children[0])
    if isinstance(e, Choose):
        return Choose(e.op, children)
    if isinstance(e, Compare):
        return Compare(e.op, *children)
    return e.with_children(children)


# ---------------------------------------------------------------- derivatives of programs


@dataclass(frozen=True)
class Derivative:
    """``∂^order output / ∂wrt^order`` of a program, in index notation.

    ``indices`` are the output's indices, then one index per axis of ``wrt``
    for each order; as an array its shape is ``shape(output) + shape(wrt) * order``.
    """

    program: Program
    output: str
    wrt: str
    order: int
    output_indices: tuple[str, ...]
    wrt_indices: tuple[tuple[str, ...], ...]
    expr: Expr
    sources: dict[str, tuple[str, int]]
    # index -> the program's index whose declared size (``sizes=``) it takes
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def indices(self) -> tuple[str, ...]:
        return self.output_indices + tuple(i for group in self.wrt_indices for i in group)

    @property
    def is_zero(self) -> bool:
        return self.expr == ZERO

    def __str__(self) -> str:
        from .printing.text import format_expr, index_suffix

        order = "" if self.order == 1 else _superscript(self.order)
        lhs = f"∂{order}{self.output}{index_suffix(self.output_indices)}/" + "".join(
            f"∂{self.wrt}{index_suffix(group)}" for group in self.wrt_indices
        )
        return f"{lhs} = {format_expr(self.expr, self.indices)}"

    def latex(self) -> str:
        from .printing.latex import latex_expr, latex_indices, latex_symbol

        order = "" if self.order == 1 else f"^{{{self.order}}}"
        top = f"\\partial{order} {latex_symbol(self.output)}{latex_indices(self.output_indices)}"
        bottom = " ".join(
            f"\\partial {latex_symbol(self.wrt)}{latex_indices(group)}" for group in self.wrt_indices
        )
        return f"\\frac{{{top}}}{{{bottom}}} = {latex_expr(self.expr, self.indices)}"

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

    def matrix(self):
        """The derivative in matrix notation (``Xᵀ G``), or a false "no matrix form"; see ``eg.matrix_form``."""
        from .matrix import matrix_form

        return matrix_form(self)

    def __repr__(self) -> str:
        return f"<Derivative {self}>"

    def evaluate(self, arrays, declared=None):
        """The derivative as an array of shape ``shape(output) + shape(wrt) * order``."""
        import numpy as np

        from .evaluate import _is_python_number, evaluate_expression, evaluate_program
        from .sizes import infer_shapes

        forward = evaluate_program(self.program, arrays, declared)
        env = dict(forward)
        for name in self.program.inputs:
            env[name] = _as_array(name, arrays[name])
        shapes = {name: np.shape(value) for name, value in env.items()}
        info = infer_shapes(self.program, {name: shapes[name] for name in self.program.inputs}, declared)
        sizes = self.index_sizes(shapes, info.sizes[self.program.targets.index(self.output)], declared)
        # Python numbers are weak (lam=0.5 beside float32 arrays stays float32), as in evaluate.
        weak = {name for name in self.program.inputs if _is_python_number(arrays[name])}
        strong = [v.dtype for name, v in env.items() if name not in weak]
        dtype = np.result_type(*strong) if strong else np.result_type(*[v.dtype for v in env.values()], float)
        env.update((name, env[name].astype(dtype)) for name in weak if strong)
        return evaluate_expression(self.expr, env, sizes, self.indices, dtype)

    def index_sizes(self, shapes, own: dict[str, int], declared=None) -> dict[str, int]:
        """The size of every index of the derivative's formula and of its result.

        From the tensors it reads, then from ``sources`` (wrt's axes, renamed indices),
        then from ``own``, the sizes of the output statement's indices (an index only
        in a delta gets its size there), then from ``declared``.
        """
        sizes: dict[str, int] = {}
        for node in E.walk(self.expr):
            if isinstance(node, Tensor):
                for axis, i in enumerate(node.indices):
                    sizes.setdefault(i, shapes[node.name][axis])
        for i, (name, axis) in self.sources.items():
            if name in shapes:
                sizes.setdefault(i, shapes[name][axis])
        for i in E.all_indices(self.expr) | set(self.indices):
            if i in sizes:
                continue
            if i in own and i not in self.origins:
                sizes[i] = own[i]
            elif declared and self.origins.get(i, i) in declared:
                sizes[i] = int(declared[self.origins.get(i, i)])
            else:
                raise SizeError(
                    f"the size of index {i!r} of {self} cannot be determined",
                    hint=f"declare it: sizes={{{self.origins.get(i, i)!r}: n}}",
                )
        return sizes


def _as_array(name, value):
    from .evaluate import as_input_array

    return as_input_array(name, value)


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _check_request(program: Program, wrt: str, order: object, output: str | None) -> str:
    if isinstance(order, numbers.Integral) and not isinstance(order, bool):
        order = int(order)  # numpy integers too
    if isinstance(order, bool) or not isinstance(order, int):
        raise DiffError(f"order must be a positive integer, got {order!r}", hint="use order=1 or order=2")
    if order < 1:
        raise DiffError(f"order must be a positive integer, got {order}", hint="use order=1 or order=2")
    if order > MAX_ORDER:
        raise DiffError(
            f"order {order} is above the highest order eingrad takes, {MAX_ORDER}",
            hint=f"ask for order {MAX_ORDER} or less; the result has the axes of wrt once per order, "
            "so its size grows as size(wrt)^order",
        )
    if output is None:
        output = program.output
    if output not in program.targets:
        raise DiffError(
            f"{output!r} is not a target of the program (its targets are {', '.join(program.targets)})",
            hint="output names the statement to differentiate; it defaults to the last one",
        )
    require_input(program, wrt, DiffError, "derivatives")
    return output


def dependents(statements: list[Statement], sources: set[str]) -> set[str]:
    """The targets that depend on any name in ``sources`` (a forward pass over the statements)."""
    out: set[str] = set()
    while True:  # once, unless a recurrence reads targets assigned later (LANGUAGE.md §12)
        before = len(out)
        for stmt in statements:
            if any(ref.name in sources or ref.name in out for ref in E.tensor_refs(stmt.expr)):
                out.add(stmt.target)
        if len(out) == before:
            return out


class ThroughRecurrenceError(DiffError):
    """A derivative that runs through a recurrence (LANGUAGE.md §12): only ``grad`` gives it."""


def _check_no_recurrence(program: Program, statements: list[Statement], wrt: str, output: str) -> None:
    """A derivative through a recurrence (LANGUAGE.md §12) is itself a recurrence: ``diff``
    gives one expression, so it refuses; ``grad`` derives the reverse recurrence."""
    if not program.recurrences:
        return
    depends = dependents(statements, {wrt})
    for rec in program.recurrences:
        through = [m for m in rec.members if m in depends]
        if through and output in depends:
            stmt = program.statement(through[0])
            raise ThroughRecurrenceError(
                f"the derivative of {output!r} with respect to {wrt!r} runs through the recurrence "
                f"{through[0]!r}, which diff cannot write as one expression (it is a recurrence itself)",
                source=program.source,
                spans=stmt.target_span,
                hint=f"use eg.grad(program, wrt=[{wrt!r}]) for the gradient of a scalar, a reverse "
                f"recurrence; for a non-scalar output pass seed= (a vector-Jacobian product)",
            )


def require_input(program: Program, name: object, error: type[EingradError], what: str) -> None:
    """Raise ``error`` unless ``name`` is an input of ``program`` (wrt names inputs)."""
    if isinstance(name, str) and name in program.index_inputs:
        raise error(
            f"{name!r} is used as an index, so it holds integers: {what} with respect to it do not exist",
            source=program.source,
            spans=program.first_use(name).span,
            hint=f"an integer input such as {name!r} is data (labels, tokens), never differentiated; "
            f"ask for {what} with respect to the other inputs",
        )
    if isinstance(name, str) and name in program.inputs:
        return
    if isinstance(name, str) and program.is_target(name):
        raise error(
            f"{name!r} is computed by the program, not an input: {what} are taken "
            f"with respect to inputs (the inputs are {', '.join(program.inputs)})",
            source=program.source,
            spans=program.statement(name).target_span,
            hint="differentiate with respect to the inputs it is computed from",
        )
    if isinstance(name, (list, tuple, set, frozenset)):
        raise error(
            f"diff takes one input to differentiate with respect to, got {len(name)}: "
            f"{', '.join(map(repr, name))}",
            hint="ask for each separately (eg.diff(p, 'x'), eg.diff(p, 'y')), or for every gradient "
            "at once with eg.grad(p, wrt=[...])",
        )
    raise error(
        f"{name!r} is not an input of the program (its inputs are {', '.join(program.inputs)})",
        hint="wrt names inputs of the program",
    )


def differentiate(
    program: Program,
    wrt: str,
    order: int = 1,
    output: str | None = None,
    trace: list | None = None,
) -> Derivative:
    """``∂^order output/∂wrt^order`` through every statement, simplified."""
    import warnings

    from .errors import user_stacklevel

    output = _check_request(program, wrt, order, output)
    statements = list(program.needed_for([output]).statements)
    _check_no_recurrence(program, statements, wrt, output)
    taken: set[str] = set()
    for stmt in program.statements:
        taken.update(stmt.indices)
        taken.update(E.all_indices(stmt.expr))
    taken.update(program.targets)
    taken.update(program.inputs)  # no index named like a tensor (x_x)
    wrt_rank = program.rank(wrt)
    statement_sources = {s.target: statement_index_sources(s) for s in statements}

    def fresh_group() -> tuple[str, ...]:
        group = []
        for _ in range(wrt_rank):
            name = fresh_index(taken)
            taken.add(name)
            group.append(name)
        return tuple(group)

    base = fresh_group()
    sources: dict[str, tuple[str, int]] = {k: (wrt, axis) for axis, k in enumerate(base)}
    ctx = _Context(wrt, base, {}, base, taken, sources, statement_sources)
    out_stmt = program.statement(output)
    current: Expr = ZERO
    for stmt in statements:
        if isinstance(stmt.expr, Call):
            ctx.forward_values[stmt.expr] = Tensor(stmt.target, stmt.indices)
        raw = diff_expr(stmt.expr, ctx)
        aliases: dict[str, str] = {}
        # New names avoid every name in use elsewhere (sizes are tracked by name);
        # raw's own binders keep their names.  The statement's and wrt's indices
        # stay avoided even where the derivative no longer depends on them (a
        # binder renamed to such a name would take the wrong size, or be
        # captured when the statement's indices are substituted later).
        avoid = (taken - E.all_indices(raw)) | set(stmt.indices) | set(base)
        d = simplify(raw, aliases=aliases, avoid=avoid, trace=trace if stmt is out_stmt else None)
        centred = drop_centred_sums(d, statements)  # Σ_n(X_nh - mu_h) = 0, mu_h = mean_n(X_nh)
        if centred != d:
            d = simplify(centred, aliases=aliases, avoid=avoid, trace=trace if stmt is out_stmt else None)
        taken.update(aliases)  # a renamed index keeps its size entry: never reuse its name
        _follow_aliases(aliases, sources, statement_sources[stmt.target], ctx.origins)
        taken.update(E.all_indices(d))
        if d != ZERO:
            ctx.known[stmt.target] = (stmt.indices, d)
        if stmt is out_stmt:
            current = d
    groups = [base]
    # Higher orders: differentiate the derivative again; targets it mentions chain as before.
    for _ in range(order - 1):
        group = fresh_group()
        for axis, k in enumerate(group):
            sources[k] = (wrt, axis)
        if current == ZERO:  # every higher derivative is zero too: only the axes remain to name
            groups.append(group)
            continue
        ctx_k = _Context(
            wrt, group, ctx.known, base, taken, sources, statement_sources, ctx.forward_values,
            ctx.origins,
        )
        raw = diff_expr(current, ctx_k)
        aliases = {}
        keep = set(out_stmt.indices).union(*groups, group)
        current = simplify(raw, aliases=aliases, avoid=(taken - E.all_indices(raw)) | keep)
        taken.update(aliases)
        _follow_aliases(aliases, sources, statement_sources[output], ctx.origins)
        taken.update(E.all_indices(current))
        groups.append(group)
    for i, src in statement_sources[output].items():
        sources.setdefault(i, src)
    # Bound indices and sizes as the user names their axes (|n|, Σ_n), where that is safe.
    sized = {node.index: sources[node.index] for node in E.walk(current)
             if isinstance(node, Size) and node.index in sources and node.index not in ctx.origins}
    current, _ = user_names(current, out_stmt.indices + tuple(i for g in groups for i in g), AxisClasses(program), sized)
    current = _sizes_by_output(current, out_stmt, groups, sources, statement_sources[output], AxisClasses(program))
    if current == ZERO:
        what = f"{output!r} does not depend on {wrt!r}" if order == 1 else (
            f"the order-{order} derivative of {output!r} with respect to {wrt!r} is identically zero"
        )
        warnings.warn(ZeroDerivativeWarning(f"{what}: the derivative is zero"), stacklevel=user_stacklevel())
    # Every exp(z_k - logsumexp_j(z_j)) as the parser writes softmax_k(z_k), which prints so.
    current = use_forward_values(fold_softmax(current), statements)
    return Derivative(
        program, output, wrt, order, out_stmt.indices, tuple(groups), current, sources, ctx.origins
    )


def _sizes_by_output(e: Expr, out_stmt, groups, sources, own, classes: AxisClasses) -> Expr:
    """``|i|`` of a derivative's index written ``|n|`` when the output's own index ``n``
    runs over an axis of the same size (``∂Y_nh/∂X_ij``: ``1 / |n|``, never ``1 / |i|``)."""
    mapping: dict[str, str] = {}
    for k in (i for g in groups for i in g):
        if k not in sources:
            continue
        cls = classes.of(*sources[k])
        for o in out_stmt.indices:
            if o in own and classes.of(*own[o]) == cls:
                mapping[k] = o
                break
    if not mapping or not any(isinstance(n, Size) and n.index in mapping for n in E.walk(e)):
        return e
    memo: dict[Expr, Expr] = {}

    def visit(node: Expr) -> Expr:
        if node not in memo:
            if isinstance(node, Size):
                memo[node] = Size(mapping.get(node.index, node.index))
            else:
                kids = tuple(visit(c) for c in node.children)
                memo[node] = node if kids == node.children else node.with_children(kids)
        return memo[node]

    return visit(e)


def _follow_aliases(aliases: dict[str, str], sources: dict, own: dict, origins: dict) -> None:
    for new, old in aliases.items():
        if old in sources:
            sources[new] = sources[old]
        elif old in own:
            sources[new] = own[old]
        else:
            origins[new] = origins.get(old, old)

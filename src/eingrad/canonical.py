"""A canonical form under renaming of summed indices and reordering of operands.

Two expressions are *equivalent* here when they differ only in the names of
summed indices, the order of commutative operands (and of a delta's indices),
and where sums sit in a product (``A_ij Σ_k(B_jk C_k)`` ≡ ``Σ_k(A_ij B_jk C_k)``).
The canonical form:

1. pulls sums out of products and merges nested sums (prenex form);
2. sorts the operands of ``+`` and products by a key that ignores the names of
   summed indices;
3. renames summed indices ``%0, %1, ...`` by first appearance.

Operands whose keys tie are tried in every order (up to a budget) and the
smallest printed result wins, so symmetric cases such as ``A_ij A_jk`` still
reach one form.  The renamed indices cannot be written by users, so a
canonical expression is for comparison, not for printing.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction
from functools import lru_cache

from .expr import (
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
    add,
    mul,
    rename_indices,
    sum_,
)

__all__ = ["canonical", "canonical_statement", "equivalent"]

_PERMUTATION_BUDGET = 720


def _prenex(e: Expr, taken: set[str]) -> Expr:
    """Pull sums out of products (renaming bound indices apart) and merge nested sums."""
    if isinstance(e, (Tensor, Delta, Const, Size, Pick, Shift)):
        return e
    if isinstance(e, Mul):
        bound: list[str] = []
        factors: list[Expr] = []
        # Every factor first, so that names bound inside them are taken before renaming.
        for factor in [_prenex(f, taken) for f in e.factors]:
            while isinstance(factor, Sum):
                mapping = {}
                for i in factor.indices:
                    if i in taken or i in bound:
                        avoid = taken | set(bound) | set(factor.body.free) | set(mapping.values())
                        mapping[i] = _fresh(avoid | {i})
                body = rename_indices(factor.body, mapping)
                bound += [mapping.get(i, i) for i in factor.indices]
                factor = body
            factors.append(factor)
        for i in bound:
            taken.add(i)
        product = mul(*factors)
        return sum_(bound, product) if bound else product
    if isinstance(e, Sum):
        for i in e.indices:
            taken.add(i)
        return sum_(e.indices, _prenex(e.body, taken))
    if isinstance(e, (LogSumExp, Reduce)):
        for i in e.indices:
            taken.add(i)
        return e.rebind(e.indices, _prenex(e.body, taken))
    if isinstance(e, Choose):
        return Choose(e.op, tuple(_prenex(a, taken) for a in e.args))
    if isinstance(e, Compare):
        return Compare(e.op, _prenex(e.left, taken), _prenex(e.right, taken))
    if isinstance(e, MatFn):  # sums stay inside a matrix function (det(A + B) is not a sum)
        taken.update(e.indices)
        return MatFn(e.op, e.axes, _prenex(e.body, taken), e.span)
    if isinstance(e, Add):
        return add(*(_prenex(t, taken) for t in e.terms))
    if isinstance(e, Pow):
        return Pow(_prenex(e.base, taken), e.exponent)
    if isinstance(e, Call):
        return Call(e.fn, _prenex(e.arg, taken))
    raise TypeError(type(e).__name__)


def _fresh(taken: set[str]) -> str:
    k = 0
    while f"~{k}" in taken:
        k += 1
    return f"~{k}"


def _anonymous_key(e: Expr, bound: frozenset[str]) -> str:
    """A sort key that ignores the names of bound indices (but not their pattern in one tensor)."""
    if isinstance(e, Delta):
        # δ is symmetric: what counts is its free indices and how often each bound one occurs.
        counts = Counter(i for i in e.indices if i in bound)
        parts = sorted(i for i in e.indices if i not in bound) + sorted(f"*{n}" for n in counts.values())
        return f"δ({','.join(parts)})"
    if isinstance(e, Tensor):
        local: dict[str, str] = {}
        parts = []
        for i in e.indices:
            if i in bound:
                local.setdefault(i, f"*{len(local)}")
                parts.append(local[i])
            else:
                parts.append(i)
        return f"{e.name}({','.join(parts)})"
    if isinstance(e, Const):
        return f"#{e.value}"
    if isinstance(e, Pick):  # δ[c, y[n]]: the table's pattern, the picked index named or not
        index = "*" if e.index in bound else e.index
        return f"δ({index};{_anonymous_key(e.table, bound)})"
    if isinstance(e, Shift):  # δ[j, 2i+k]: coefficients kept, bound names anonymous
        terms = ",".join(f"{a}{'*' if n in bound else n}" for a, n in e.terms)
        return f"δ({'*' if e.index in bound else e.index};{terms};{e.offset})"
    if isinstance(e, Size):
        return "|*|" if e.index in bound else f"|{e.index}|"  # mean_k: Σ_k |k|^-1 …
    if isinstance(e, (Sum, LogSumExp, Reduce)):
        tag = "S" if isinstance(e, Sum) else "L" if isinstance(e, LogSumExp) else e.op
        return f"{tag}{len(e.indices)}[{_anonymous_key(e.body, bound | set(e.indices))}]"
    if isinstance(e, (Choose, Compare)):
        return f"{e.op}({';'.join(_anonymous_key(c, bound) for c in e.children)})"
    if isinstance(e, MatFn):
        inner = bound | set(e.indices)
        axes = ",".join("*" if i in inner else i for i in e.axes)
        return f"{e.op}({axes})[{_anonymous_key(e.body, inner)}]"
    if isinstance(e, (Add, Mul)):
        keys = sorted(_anonymous_key(c, bound) for c in e.children)
        return ("+(" if isinstance(e, Add) else "*(") + " ".join(keys) + ")"
    if isinstance(e, Pow):
        return f"^{e.exponent}({_anonymous_key(e.base, bound)})"
    if isinstance(e, Call):
        return f"{e.fn}({_anonymous_key(e.arg, bound)})"
    raise TypeError(type(e).__name__)


def _orderings(e: Expr, bound: frozenset[str], budget: list[int]) -> list[Expr]:
    """``e`` with operands sorted by key; one variant per order of tied operands."""
    if isinstance(e, Delta):
        # δ is symmetric in its indices: sort free ones, try every order of bound ones.
        if not bound & set(e.indices):
            return [Delta(tuple(sorted(e.indices)), e.span)]
        return [Delta(p, e.span) for p in dict.fromkeys(itertools.permutations(e.indices))]
    if isinstance(e, (Tensor, Const, Size, Pick, Shift)):
        return [e]
    if isinstance(e, (Sum, LogSumExp, Reduce)):
        inner = bound | set(e.indices)
        return [e.rebind(e.indices, b) for b in _orderings(e.body, inner, budget)]
    if isinstance(e, (Choose, Compare)):
        # operands keep their order (max(a, b) and max(b, a) are told apart: never wrongly equal)
        out = []
        for combo in itertools.product(*(_orderings(c, bound, budget) for c in e.children)):
            out.append(Choose(e.op, combo) if isinstance(e, Choose) else Compare(e.op, *combo))
            if len(out) > _PERMUTATION_BUDGET:
                break
        return out
    if isinstance(e, MatFn):
        inner = bound | set(e.indices)
        return [MatFn(e.op, e.axes, b, e.span) for b in _orderings(e.body, inner, budget)]
    if isinstance(e, (Pow, Call)):
        child = e.base if isinstance(e, Pow) else e.arg
        variants = _orderings(child, bound, budget)
        if isinstance(e, Pow):
            return [Pow(v, e.exponent) for v in variants]
        return [Call(e.fn, v) for v in variants]
    keyed = sorted(((_anonymous_key(c, bound), c) for c in e.children), key=lambda kc: kc[0])
    groups = [list(g) for _, g in itertools.groupby(keyed, key=lambda kc: kc[0])]
    child_variants = [[_orderings(c, bound, budget) for _, c in g] for g in groups]
    options_per_group = []
    for g, variants in zip(groups, child_variants, strict=True):
        options = []
        perms = itertools.permutations(range(len(g))) if _afford(len(g), budget) else [range(len(g))]
        for perm in perms:
            for combo in itertools.product(*(variants[p] for p in perm)):
                options.append(combo)
                if len(options) > _PERMUTATION_BUDGET:
                    break
        options_per_group.append(options)
    out = []
    cls = Add if isinstance(e, Add) else Mul
    for choice in itertools.product(*options_per_group):
        out.append(cls(tuple(c for group in choice for c in group)))
        if len(out) > _PERMUTATION_BUDGET:
            break
    return out


def _afford(n: int, budget: list[int]) -> bool:
    cost = math.factorial(n)
    if cost <= budget[0]:
        budget[0] //= cost
        return True
    return False


def _rename_by_first_appearance(e: Expr) -> Expr:
    """Rename bound indices ``%0, %1, ...`` by first appearance; sort each binder's list.

    Every binder gets names of its own: the summation rule makes sibling sums
    that bind one name (``Σ_j(A_ij) + Σ_j(B_ij)``), and they must reach the same
    form as sums that bind two different names.
    """
    count = itertools.count()

    def rename(node: Expr, scope: dict[str, dict[str, str]]) -> Expr:
        if isinstance(node, (Tensor, Delta)):
            new = []
            for i in node.indices:
                if i in scope:
                    own = scope[i]
                    if i not in own:
                        own[i] = f"%{next(count)}"
                    i = own[i]
                new.append(i)
            if isinstance(node, Tensor):
                return Tensor(node.name, tuple(new), node.span)
            return Delta(tuple(new), node.span)
        if isinstance(node, Shift):
            mapping = {}
            for i in node.indices:
                if i in scope:
                    own = scope[i]
                    if i not in own:
                        own[i] = f"%{next(count)}"
                    mapping[i] = own[i]
            return node.renamed(mapping)
        if isinstance(node, Pick):
            index = node.index
            if index in scope:
                own = scope[index]
                if index not in own:
                    own[index] = f"%{next(count)}"
                index = own[index]
            return Pick(index, rename(node.table, scope), node.span)  # type: ignore[arg-type]
        if isinstance(node, Size) and node.index in scope:  # |k| inside the sum over k (mean_k)
            own = scope[node.index]
            if node.index not in own:
                own[node.index] = f"%{next(count)}"
            return Size(own[node.index])
        if isinstance(node, MatFn):
            if node.op == "inv":  # its axes are the body's free indices, renamed as any other
                body = rename(node.body, scope)
                axes = tuple(scope[i].get(i, i) if i in scope else i for i in node.axes)
                return MatFn(node.op, axes, body, node.span)  # type: ignore[arg-type]
            own = {}
            body = rename(node.body, {**scope, **{i: own for i in node.axes}})
            axes = tuple(own[i] if i in own else f"%{next(count)}" for i in node.axes)
            return MatFn(node.op, axes, body, node.span)  # type: ignore[arg-type]
        if node.binds:
            own: dict[str, str] = {}
            body = rename(node.body, {**scope, **{i: own for i in node.indices}})
            names = [own[i] if i in own else f"%{next(count)}" for i in node.indices]
            return node.rebind(tuple(sorted(names)), body)
        kids = tuple(rename(c, scope) for c in node.children)
        if isinstance(node, Add):
            return Add(kids)
        if isinstance(node, Mul):
            return Mul(kids)
        if isinstance(node, Pow):
            return Pow(kids[0], node.exponent)
        if isinstance(node, Call):
            return Call(node.fn, kids[0])
        if isinstance(node, Choose):
            return Choose(node.op, kids)
        if isinstance(node, Compare):
            return Compare(node.op, *kids)
        return node

    return rename(e, {})


@lru_cache(maxsize=4096)
def canonical(e: Expr) -> Expr:
    """The canonical representative of ``e``'s class (free index names are kept)."""
    prenex = _prenex(e, set(e.free))
    candidates = _orderings(prenex, frozenset(), [_PERMUTATION_BUDGET])
    best = None
    best_key = None
    for candidate in candidates:
        renamed = _rename_by_first_appearance(candidate)
        key = repr(renamed)
        if best_key is None or key < best_key:
            best, best_key = renamed, key
    assert best is not None
    return best


def class_key(e: Expr) -> str:
    """A cheap invariant of ``e``'s canonical class: expressions with equal canonical forms
    have equal keys (the converse need not hold).

    Summed-index names are erased, operands sorted, sums seen through (their placement
    is not part of the class), nested products flattened and constants folded, as the
    prenex form does.  Comparing keys first spares ``canonical`` (which tries operand
    orders) for terms that cannot be alike.
    """
    return _class_key(e, e.free)


@lru_cache(maxsize=65536)
def _class_key(e: Expr, free: frozenset[str]) -> str:
    def index(i: str) -> str:
        return i if i in free else "_"

    if isinstance(e, Tensor):
        return f"{e.name}[{','.join(index(i) for i in e.indices)}]"
    if isinstance(e, Delta):
        return f"δ[{','.join(sorted(index(i) for i in e.indices))}]"
    if isinstance(e, Size):
        return f"|{index(e.index)}|"
    if isinstance(e, Pick):
        return f"δ[{index(e.index)};{_class_key(e.table, free)}]"
    if isinstance(e, Shift):
        return f"δ[{index(e.index)};{','.join(f'{a}{index(n)}' for a, n in e.terms)};{e.offset}]"
    if isinstance(e, Const):
        return str(e.value)
    if isinstance(e, Sum):
        return _class_key(e.body, free)
    if isinstance(e, LogSumExp):
        return f"lse({_class_key(e.body, free)})"
    if isinstance(e, Reduce):
        return f"{e.op}_({_class_key(e.body, free)})"
    if isinstance(e, (Choose, Compare)):
        return f"{e.op}({';'.join(_class_key(c, free) for c in e.children)})"
    if isinstance(e, MatFn):
        return f"{e.op}({','.join(index(i) for i in e.axes)})[{_class_key(e.body, free)}]"
    if isinstance(e, Pow):
        return f"({_class_key(e.base, free)})^{e.exponent}"
    if isinstance(e, Call):
        return f"{e.fn}({_class_key(e.arg, free)})"
    if isinstance(e, Mul):
        coefficient, keys = Fraction(1), []
        for factor in _product_factors(e):
            if isinstance(factor, Const):
                coefficient *= factor.value
            else:
                keys.append(_class_key(factor, free))
        return f"{coefficient}*[{' '.join(sorted(keys))}]"
    if isinstance(e, Add):
        total, keys = Fraction(0), []
        for term in e.terms:
            if isinstance(term, Const):
                total += term.value
            else:
                keys.append(_class_key(term, free))
        return f"{total}+[{' '.join(sorted(keys))}]"
    raise TypeError(type(e).__name__)


def _product_factors(e: Expr) -> list[Expr]:
    """The factors of a product, through sums and nested products (as the prenex form)."""
    while isinstance(e, Sum):
        e = e.body
    if not isinstance(e, Mul):
        return [e]
    return [f for factor in e.factors for f in _product_factors(factor)]


def equivalent(a: Expr, b: Expr) -> bool:
    """True when ``a`` and ``b`` differ only in summed-index names, operand order, sum placement."""
    return a.free == b.free and canonical(a) == canonical(b)


def canonical_statement(stmt) -> tuple[str, Expr]:
    """A statement's target and expression with target indices renamed by position."""
    mapping = {i: f"${k}" for k, i in enumerate(stmt.indices)}
    taken = set(mapping.values())
    # Rename bound indices out of the way first so that free renaming cannot capture.
    expr = canonical(stmt.expr)
    assert not (taken & {i for n in _walk_indices(expr) for i in n})
    return stmt.target, canonical(rename_indices(expr, mapping))


def _walk_indices(e: Expr):
    from .expr import walk

    for node in walk(e):
        if isinstance(node, (Tensor, Delta, Shift)):
            yield node.indices

"""Sums rewritten before lowering into the shapes BLAS computes well: a sum over a sum
of products, Σ_n (P_nc X_nd - X_nd Y_nc), is Xᵀ (P - Y) (the factor every term shares taken
out), not an n×d×c array of broadcast products summed; and a sum of per-step reductions is
one reduction of an accumulated array.  Each rewrite keeps the value, exactly."""

from __future__ import annotations

from .. import expr as E
from ..canonical import canonical
from ..expr import Add, Const, Expr, Mul, Sum

__all__ = ["merged_reductions", "regrouped_sum"]


def regrouped_sum(e: Sum) -> Expr | None:
    """``Σ body`` for a body that is a sum of terms, when computing that body would build an
    array wider than any of its factors: the factors every term shares taken out of the
    terms (Σ_n X_nd (P_nc - Y_nc)); where that is not enough (nothing shared, or what is
    left still wide), one sum per term, each a contraction of its own.  None where the
    body is fine as it is."""
    if not isinstance(e.body, Add) or not _widens(e.body):
        return None
    shared = _shared_factors(e.body)
    if shared is not None and not (isinstance(shared[1], Add) and _widens(shared[1])):
        common, rest = shared
        return E.sum_(e.indices, E.mul(*common, rest))
    # (a term without a summed index is summed to |n| times itself when it is lowered)
    return E.add(*(E.sum_(e.indices, term) for term in e.body.terms))


def _widens(body: Add) -> bool:
    """The sum's value has more axes than any factor of any of its terms."""
    widest = max(len(f.free) for term in body.terms for f in _factors(term))
    return len(body.free) > widest


def _factors(term: Expr) -> tuple[Expr, ...]:
    return term.factors if isinstance(term, Mul) else (term,)


def _shared_factors(body: Add) -> tuple[list[Expr], Expr] | None:
    """(the factors in every term, the sum of what is left of each term), or None."""
    keyed = []
    for term in body.terms:
        factors = [f for f in _factors(term) if not isinstance(f, Const)]
        coefficient = [f for f in _factors(term) if isinstance(f, Const)]
        keyed.append((coefficient, [(canonical(f), f) for f in factors]))
    common: list[Expr] = []
    for key, factor in list(keyed[0][1]):
        if not factor.free:
            continue  # a scalar factor: nothing to gain
        if all(any(k == key for k, _ in rest) for _, rest in keyed[1:]):
            common.append(factor)
            for _, rest in keyed:
                rest.pop(next(j for j, (k, _) in enumerate(rest) if k == key))
    if not common:
        return None
    left = [E.mul(*coefficient, *(f for _, f in rest)) for coefficient, rest in keyed]
    return common, E.add(*left)


def merged_reductions(terms: list[tuple[bool, Expr]], sizes: dict[str, int]) -> Expr | None:
    """Σ_n a_nh + Σ_i b_ih + Σ_j c_jh as Σ_n (a_nh + b_nh + c_nh): one reduction of an
    accumulated array instead of one per term (an RNN's bias gradient, a term per step).

    Only where every term sums an array no larger than one of its own factors (no
    product is widened: Σ_n X_nd A_nh is left alone), the summed sizes agree, and the
    new names capture nothing.  Which summed index maps to which does not matter: every
    one is summed over its whole range."""
    first = terms[0][1]
    if not isinstance(first, Sum) or any(i not in sizes for _, t in terms if isinstance(t, Sum) for i in t.indices):
        return None
    target = sorted(first.indices, key=lambda i: (sizes[i], i))
    bodies = []
    for negative, term in terms:
        if not isinstance(term, Sum) or len(term.indices) != len(target) or term.free != first.free:
            return None
        factors = term.body.factors if isinstance(term.body, Mul) else (term.body,)
        if not any(term.body.free <= set(f.free) for f in factors):
            return None
        own = sorted(term.indices, key=lambda i: (sizes[i], i))
        if [sizes[i] for i in own] != [sizes[i] for i in target]:
            return None
        mapping = dict(zip(own, target, strict=True))
        if (E.index_names(term.body) - set(own)) & set(target):
            return None  # a new name would capture one already there
        body = E.rename_indices(term.body, mapping)
        bodies.append(E.neg(body) if negative else body)
    return E.sum_(target, E.add(*bodies))

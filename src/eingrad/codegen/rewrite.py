"""Sums rewritten before lowering into the shapes BLAS computes well: a sum over a sum
of products, Σ_n (P_nc X_nd - X_nd Y_nc), is Xᵀ (P - Y) (the factor every term shares taken
out), not an n×d×c array of broadcast products summed; and a sum of per-step reductions is
one reduction of an accumulated array; a delta on the result's indices inside a product or
a sum is brought to the top, so that it is written into a diagonal, never built.  Each
rewrite keeps the value, exactly."""

from __future__ import annotations

from itertools import permutations

from .. import expr as E
from ..canonical import canonical
from ..expr import Add, Const, Delta, Expr, LogSumExp, Mul, Sum, factors_of
from .conv import has_shift

__all__ = ["deltas_outside", "merged_contractions", "merged_reductions", "regrouped_sum", "softmax_parts"]


def regrouped_sum(e: Sum) -> Expr | None:
    """``Σ body`` for a body that is a sum of terms: the factors every term shares taken out
    of the terms (Σ_n X_nd (P_nc - Y_nc), one product); where nothing is shared (or what is
    left is still wide) and computing the body would build an array wider than any of its
    factors, one sum per term, each a contraction of its own.  None where the body is fine
    as it is."""
    if not isinstance(e.body, Add):
        return None
    shared = _shared_factors(e.body)
    if shared is not None and not (isinstance(shared[1], Add) and _widens(shared[1])):
        # Always worth it: Σ_n (e_n X_nd - y_n X_nd) is one product Xᵀ(e - y), not two
        # broadcast products, a difference and a reduction.
        common, rest = shared
        return E.sum_(e.indices, E.mul(*common, rest))
    if not _widens(e.body):
        return None
    # (a term without a summed index is summed to |n| times itself when it is lowered)
    return E.add(*(E.sum_(e.indices, term) for term in e.body.terms))


def _widens(body: Add) -> bool:
    """The sum's value has more axes than any factor of any of its terms."""
    widest = max(len(f.free) for term in body.terms for f in factors_of(term))
    return len(body.free) > widest


def _shared_factors(body: Add) -> tuple[list[Expr], Expr] | None:
    """(the factors in every term, the sum of what is left of each term), or None."""
    keyed = []
    for term in body.terms:
        factors = [f for f in factors_of(term) if not isinstance(f, Const)]
        coefficient = [f for f in factors_of(term) if isinstance(f, Const)]
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
        factors = factors_of(term.body)
        if not any(term.body.free <= set(f.free) for f in factors) or has_shift(term.body):
            return None  # (x[2] + x[7]: two windows, not x times a sum of shift masks)
        own = sorted(term.indices, key=lambda i: (sizes[i], i))
        if [sizes[i] for i in own] != [sizes[i] for i in target]:
            return None
        mapping = dict(zip(own, target, strict=True))
        if (E.index_names(term.body) - set(own)) & set(target):
            return None  # a new name would capture one already there
        body = E.rename_indices(term.body, mapping)
        bodies.append(E.neg(body) if negative else body)
    return E.sum_(target, E.add(*bodies))


def deltas_outside(e: Expr, free: frozenset[str]) -> Expr:
    """``e`` with every delta on free indices that sits in a product or under a sum brought
    out to a term of its own: Σ_n P_nj (X_nq δ_jr - P_nr X_nq) X_ni (softmax regression's
    Hessian) is δ_jr Σ_n P_nj X_nq X_ni - Σ_n P_nj P_nr X_nq X_ni.  The first term is then
    written into the diagonal j = r; before, δ_jr was an array and the product n×d×c×c.

    Only the sums and products that hold such a delta are expanded; functions (exp(δ_ij))
    keep theirs."""
    if not any(isinstance(n, Delta) and set(n.indices) <= free for n in E.walk(e)):
        return e
    return _outside(e, free)


def _outside(e: Expr, free: frozenset[str]) -> Expr:
    if isinstance(e, Add):
        return E.add(*(_outside(t, free) for t in e.terms))
    if isinstance(e, Mul):
        expanded = [_outside(f, free) for f in e.factors]
        if not any(isinstance(f, Add) and any(_has_free_delta(t, free) for t in f.terms) for f in expanded):
            return E.mul(*expanded)
        products: list[list[Expr]] = [[]]
        for f in expanded:
            if isinstance(f, Add) and any(_has_free_delta(t, free) for t in f.terms):
                products = [p + [t] for p in products for t in f.terms]
            else:
                products = [p + [f] for p in products]
        return E.add(*(E.mul(*p) for p in products))
    if isinstance(e, Sum):
        body = _outside(e.body, free - set(e.indices))
        terms = body.terms if isinstance(body, Add) else (body,)
        if not any(_has_free_delta(t, free - set(e.indices)) for t in terms):
            return E.sum_(e.indices, body)
        return E.add(*(_sum_of_term(e.indices, t, free - set(e.indices)) for t in terms))
    return e


def _sum_of_term(indices: tuple[str, ...], term: Expr, free: frozenset[str]) -> Expr:
    """Σ_n δ_jr f = δ_jr Σ_n f: deltas on indices the sum does not bind, taken out."""
    factors = factors_of(term)
    outside = [f for f in factors if isinstance(f, Delta) and set(f.indices) <= free]
    inside = [f for f in factors if not (isinstance(f, Delta) and set(f.indices) <= free)]
    return E.mul(*outside, E.sum_(indices, E.mul(*inside)))


def _has_free_delta(term: Expr, free: frozenset[str]) -> bool:
    factors = factors_of(term)
    return any(isinstance(f, Delta) and set(f.indices) <= free for f in factors)


def softmax_parts(arg: Expr) -> tuple[Expr, tuple[str, ...]] | None:
    """``(z, (j,))`` when ``arg`` is z_ij - logsumexp_k(z_ik) (or z_ij - logsumexp_j(z_ij), as the
    parser writes softmax_j(z_ij)): exp of it is the softmax of z over j, computed in one buffer
    (max, subtract, exp, divide by the sum) instead of a log-sum-exp, a difference and a second exp."""
    if not isinstance(arg, Add):
        return None
    for k, negative in enumerate(arg.terms):
        if not (isinstance(negative, Mul) and len(negative.factors) == 2 and negative.factors[0] == Const(-1)):
            continue
        lse = negative.factors[1]
        z = E.add(*(arg.terms[:k] + arg.terms[k + 1 :]))
        if not isinstance(lse, LogSumExp) or not lse.free <= z.free:
            continue
        if lse.body == z and set(lse.indices) <= z.free and len(lse.indices) <= 3:
            return z, lse.indices  # softmax_j(z) as the parser writes it
        over = tuple(sorted(z.free - lse.free))
        if len(over) != len(lse.indices) or len(over) > 3:
            continue
        if set(over) & E.index_names(lse.body):
            continue  # renaming would capture
        target = canonical(z)
        for order in permutations(over):
            if canonical(E.rename_indices(lse.body, dict(zip(lse.indices, order, strict=True)))) == target:
                return z, over
    return None


# A contraction is merged into another only where it saves at least this many multiply-adds
# per entry of the sum it adds instead.
MERGE_GAIN = 8


def merged_contractions(terms: list[tuple[bool, Expr]], sizes: dict[str, int]) -> Expr | None:
    """Σ_j A_ij X_jn + Σ_m B_mi X_mn as Σ_j (A_ij + B_ji) X_jn: two products with one factor
    in common are one product of that factor with a sum (the gradient of ‖X Xᵀ‖² is
    (dLdG + dLdGᵀ) X, one matrix product, not two).  Only where the product saved costs
    MERGE_GAIN times more than the sum it adds (for A x + Aᵀ x, adding A + Aᵀ costs as much
    as the product it saves).  None when no two terms merge.

    Only pairs that share a factor are tried (terms are indexed by their factors' canonical
    forms): a sum of 1000 per-step terms is not 500 000 pairs."""
    by_factor: dict[tuple, list[int]] = {}
    keys: list[set] = []
    for k, (_, term) in enumerate(terms):
        keys.append(set(_factor_keys(term)))
        for key in keys[-1]:
            by_factor.setdefault(key, []).append(k)
    for a in range(len(terms)):
        partners = sorted({b for key in keys[a] for b in by_factor[key] if b > a})
        for b in partners:
            merged = _merged_pair(terms[a], terms[b], sizes)
            if merged is not None:
                rest = [E.neg(t) if negative else t for k, (negative, t) in enumerate(terms) if k not in (a, b)]
                return E.add(merged, *rest)
    return None


def _factor_keys(term: Expr):
    """For Σ_j (a product): each factor carrying j, as a key equal for the same factor in
    another such term (its summed index named alike, its form canonical)."""
    if not (isinstance(term, Sum) and len(term.indices) == 1 and isinstance(term.body, Mul)):
        return
    (j,) = term.indices
    for factor in term.body.factors:
        if j in factor.free and not isinstance(factor, Const):
            yield term.free, canonical(E.rename_indices(factor, {j: "$j"}))


def _merged_pair(first: tuple[bool, Expr], second: tuple[bool, Expr], sizes: dict[str, int]) -> Expr | None:
    (neg_a, a), (neg_b, b) = first, second
    if not (isinstance(a, Sum) and isinstance(b, Sum) and len(a.indices) == len(b.indices) == 1):
        return None
    if not (isinstance(a.body, Mul) and isinstance(b.body, Mul)) or a.free != b.free:
        return None
    (j,), (m,) = a.indices, b.indices
    if j != m:
        if j in E.index_names(b) or sizes.get(j) != sizes.get(m):
            return None  # renaming would capture
        b = E.sum_((j,), E.rename_indices(b.body, {m: j}))
    for k, factor in enumerate(a.body.factors):
        if j not in factor.free or isinstance(factor, Const):
            continue
        key = canonical(factor)
        at = next((q for q, other in enumerate(b.body.factors) if canonical(other) == key), None)
        if at is None:
            continue
        rest_a = E.mul(*(f for q, f in enumerate(a.body.factors) if q != k))
        rest_b = E.mul(*(f for q, f in enumerate(b.body.factors) if q != at))
        if rest_a.free != rest_b.free or not all(i in sizes for i in factor.free | rest_a.free):
            continue
        if has_shift(rest_a) or has_shift(rest_b):
            continue  # x[2] + x[7]: two windows (codegen.conv), not x times a sum of shift masks
        added = 1
        for i in rest_a.free:
            added *= sizes[i]
        saved = added
        for i in factor.free - rest_a.free:
            saved *= sizes[i]
        if saved < MERGE_GAIN * added:
            continue
        rest = E.add(E.neg(rest_a) if neg_a else rest_a, E.neg(rest_b) if neg_b else rest_b)
        return E.sum_((j,), E.mul(factor, rest))
    return None

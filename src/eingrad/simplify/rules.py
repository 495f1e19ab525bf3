"""The rule catalog, in priority order.

Each rule takes one node and returns its replacement, or ``None`` when it does
not apply.  The first line of each docstring is the identity it applies (the
step-by-step explanations print it); the second says why it terminates.
Bound index names are unique when rules run (the engine sees to it), so a rule
may substitute one index for another without capture.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from ..canonical import canonical, class_key
from ..expr import (
    ONE,
    ZERO,
    Add,
    Call,
    Const,
    Delta,
    Expr,
    Mul,
    Pow,
    Shift,
    Size,
    Sum,
    add,
    call,
    factors_of,
    mentions,
    merges_matrix_axes,
    mul,
    neg,
    power,
    rename_indices,
    sum_,
    walk,
)
from .rules_linalg import LINALG_APPLIES_TO, LINALG_RULES

Rule = Callable[[Expr], Expr | None]


def drops_indices(rule: Rule) -> Rule:
    """Mark a rule that may remove free indices (only by removing zeros or ones)."""
    rule.drops_indices = True  # type: ignore[attr-defined]
    return rule


def scoped(rule: Rule) -> Rule:
    """Mark a rule that also takes the indices bound around the node (by enclosing binders)."""
    rule.scoped = True  # type: ignore[attr-defined]
    return rule


# ---------------------------------------------------------------- zeros and constants


@drops_indices
def zero_factor(e: Expr) -> Expr | None:
    """0 · x = 0
    Removes a product."""
    if isinstance(e, Mul) and any(isinstance(f, Const) and f.value == 0 for f in e.factors):
        return ZERO
    return None


@drops_indices
def sum_of_zero(e: Expr) -> Expr | None:
    """Σ_i 0 = 0
    Removes a sum."""
    if isinstance(e, Sum) and isinstance(e.body, Const) and e.body.value == 0:
        return ZERO
    return None


@drops_indices
def power_of_zero(e: Expr) -> Expr | None:
    """0^n = 0 for n > 0
    Removes a power."""
    if isinstance(e, Pow) and isinstance(e.base, Const) and e.base.value == 0 and e.exponent > 0:
        return ZERO
    return None


_EXACT_AT_ZERO = {
    "exp": ONE, "tanh": ZERO, "sin": ZERO, "cos": ONE, "relu": ZERO, "sqrt": ZERO,
    "abs": ZERO, "step": ZERO, "sign": ZERO, "sigmoid": Const(Fraction(1, 2)),
}


def function_of_zero(e: Expr) -> Expr | None:
    """f(0) = its exact value (exp(0) = 1, tanh(0) = 0, σ(0) = 1/2, ...)
    Removes a function call."""
    if isinstance(e, Call) and isinstance(e.arg, Const) and e.arg.value == 0:
        return _EXACT_AT_ZERO.get(e.fn)
    return None


# ---------------------------------------------------------------- stable forms


def log_of_exp(e: Expr) -> Expr | None:
    """log(exp(x)) = x
    Removes two function calls.  exp(x) overflows or underflows long before x does, so
    log(exp(z_i - logsumexp_k(z_k))), a naive log-softmax, stays finite."""
    if isinstance(e, Call) and e.fn == "log" and isinstance(e.arg, Call) and e.arg.fn == "exp":
        return e.arg.arg
    return None


def log_of_sigmoid(e: Expr) -> Expr | None:
    """log(σ(x)) = -softplus(-x)
    Replaces two function calls by one.  σ(-1000) underflows to 0; softplus(1000) is 1000."""
    if isinstance(e, Call) and e.fn == "log" and isinstance(e.arg, Call) and e.arg.fn == "sigmoid":
        return neg(call("softplus", neg(e.arg.arg)))
    return None


# ---------------------------------------------------------------- deltas


@drops_indices
def delta_of_one_index(e: Expr) -> Expr | None:
    """δ_ii = 1, and δ_iij = δ_ij
    Removes a delta or one of its indices."""
    if isinstance(e, Delta):
        distinct = tuple(dict.fromkeys(e.indices))
        if len(distinct) == 1:
            return ONE
        if len(distinct) < len(e.indices):
            return Delta(distinct)
    return None


@drops_indices
def summed_delta_is_one(e: Expr) -> Expr | None:
    """Σ_j δ_jk x = x when x does not depend on j (Σ_j δ_jk = 1, broadcast along k)
    Removes one bound index and a delta."""
    if not isinstance(e, Sum):
        return None
    factors = factors_of(e.body)
    for k, d in enumerate(factors):
        if not isinstance(d, Delta) or len(set(d.indices)) != 2:
            continue
        others = factors[:k] + factors[k + 1 :]
        for j in dict.fromkeys(d.indices):
            if j in e.indices and not any(j in f.free for f in others):
                return sum_([i for i in e.indices if i != j], mul(*others))
    return None


def delta_eats_summed_index(e: Expr) -> Expr | None:
    """Σ_j A_ij δ_jk = A_ik: a delta eats a summed index and donates its other one
    Removes one bound index."""
    if not isinstance(e, Sum):
        return None
    factors = factors_of(e.body)
    bound = set(e.indices)
    for d in factors:
        if not isinstance(d, Delta):
            continue
        distinct = list(dict.fromkeys(d.indices))
        summed = [i for i in distinct if i in bound]
        kept = [i for i in distinct if i not in bound]
        if not summed or len(distinct) < 2:
            continue
        # Eat a summed index; donate a free one if there is one (Σ_j A_ij δ_jk = A_ik),
        # else the next summed one (A_ij δ_jk B_ik = A_ik B_ik, as the guide does it).
        eaten, donor = summed[0], (kept[0] if kept else summed[1])
        if any(merges_matrix_axes(f, {eaten: donor}) for f in factors):
            continue  # Σ_j δ_ij inv_ij(A): the inverse's diagonal stays a sum
        rest = [rename_indices(f, {eaten: donor}) for f in factors if f is not d]
        remaining = tuple(i for i in distinct if i != eaten)
        if len(remaining) > 1:  # δ_jkl eats j: δ_kl stays; δ_jk eats j: nothing stays
            rest.append(Delta(remaining))
        return sum_([i for i in e.indices if i != eaten], mul(*rest))
    return None


def unit_shift_turns_around(e: Expr) -> Expr | None:
    """Σ_t A_t δ[j, t+c] = Σ_t A_t δ[t, j-c]: a unit shift by a summed index reads the other way
    Makes the delta's index the summed one (a shift whose index is summed is left alone).
    ``δ[j, t-1]`` with ``t`` summed and ``j`` kept (the derivative with respect to
    ``s[t-1]``) is ``δ[t, j+1]``: the upstream gradient read one step ahead, the shift
    the other way (LANGUAGE.md §11); both are 1 exactly where j = t + c."""
    if not isinstance(e, Sum):
        return None
    factors = factors_of(e.body)
    for k, f in enumerate(factors):
        if not (isinstance(f, Shift) and len(f.terms) == 1 and f.terms[0][0] == 1):
            continue
        t, j = f.terms[0][1], f.index
        if t in e.indices and j not in e.indices:
            turned = Shift(t, ((1, j),), -f.offset, f.span)
            return sum_(e.indices, mul(*factors[:k], turned, *factors[k + 1:]))
    return None


@scoped
def delta_unifies_indices(e: Expr, bound: frozenset[str] = frozenset()) -> Expr | None:
    """δ_ij x_j = δ_ij x_i: in a product, the other factors name a delta's free indices by its first
    Replaces an index name by a smaller one (names only decrease).  Summed indices are
    left to the sum's delta to eat; free ones are never eaten, so without this rule
    δ_ij x_j and δ_ij x_i would be two normal forms of one value."""
    if not isinstance(e, Mul):
        return None
    for k, d in enumerate(e.factors):
        if not isinstance(d, Delta):
            continue
        free = sorted(i for i in set(d.indices) if i not in bound)
        mapping = {i: free[0] for i in free[1:]}
        touched = [m for m, f in enumerate(e.factors) if m != k and mapping.keys() & f.free]
        if touched and any(merges_matrix_axes(e.factors[m], mapping) for m in touched):
            continue  # δ_ij inv_ij(A): unifying would make the inverse's diagonal inv_ii
        if touched:
            return mul(*(rename_indices(f, mapping) if m in touched else f for m, f in enumerate(e.factors)))
    return None


def delta_power(e: Expr) -> Expr | None:
    """δ_ij^n = δ_ij for n > 0
    Removes a power."""
    if isinstance(e, Pow) and isinstance(e.base, Delta) and e.exponent > 0:
        return e.base
    return None


# ---------------------------------------------------------------- sums


def sum_over_absent_index(e: Expr) -> Expr | None:
    """Σ_i x = |i| x when x does not depend on i (so Σ_i δ_ii = |i|)
    Removes one bound index."""
    if not isinstance(e, Sum):
        return None
    absent = [i for i in e.indices if i not in e.body.free]
    if not absent:
        return None
    kept = [i for i in e.indices if i in e.body.free]
    return mul(*(Size(i) for i in absent), sum_(kept, e.body))


def sum_splits_over_terms(e: Expr) -> Expr | None:
    """Σ_i (a + b) = Σ_i a + Σ_i b, where a delta in some term can then eat i
    Moves the sum below an addition (a sum never moves up).  Without a delta to
    eat the index, splitting would only trade one reduction for several."""
    if isinstance(e, Sum) and isinstance(e.body, Add):
        bound = set(e.indices)
        if any(_has_delta_on(t, bound) for t in e.body.terms):
            return add(*(sum_(e.indices, t) for t in e.body.terms))
    return None


def _has_delta_on(term: Expr, indices: set[str]) -> bool:
    return any(isinstance(f, Delta) and set(f.indices) & indices for f in factors_of(term))


def sum_moves_past_factors(e: Expr) -> Expr | None:
    """Σ_i a b_i = a Σ_i b_i when a does not depend on i
    Moves a factor out of a sum (factors never move in)."""
    if not isinstance(e, Sum) or not isinstance(e.body, Mul):
        return None
    bound = set(e.indices)
    outside = [f for f in e.body.factors if not (f.free & bound)]
    if not outside:
        return None
    inside = [f for f in e.body.factors if f.free & bound]
    return mul(*outside, sum_(e.indices, mul(*inside)))


def sum_of_sums_in_product(e: Expr) -> Expr | None:
    """Σ_i a_i Σ_j b_ij = Σ_{i,j} a_i b_ij (a sum inside a summed product joins it)
    Removes one sum node."""
    if not isinstance(e, Sum) or not isinstance(e.body, Mul):
        return None
    for k, f in enumerate(e.body.factors):
        if isinstance(f, Sum):
            rest = e.body.factors[:k] + e.body.factors[k + 1 :]
            return sum_(e.indices + f.indices, mul(*rest, f.body))
    return None


def distribute_over_delta_terms(e: Expr) -> Expr | None:
    """Σ_j a_j (b + δ_jk c) = Σ_j a_j b + Σ_j a_j δ_jk c, so that the delta can eat j
    Moves a sum of terms holding a delta up to the sum, which then splits."""
    if not isinstance(e, Sum) or not isinstance(e.body, Mul):
        return None
    bound = set(e.indices)
    for k, f in enumerate(e.body.factors):
        if isinstance(f, Add) and any(_has_delta_on(t, bound) for t in f.terms):
            rest = e.body.factors[:k] + e.body.factors[k + 1 :]
            return sum_(e.indices, add(*(mul(*rest, t) for t in f.terms)))
    return None


# ---------------------------------------------------------------- like terms and factors


def _split_coefficient(term: Expr) -> tuple[Fraction, Expr]:
    if isinstance(term, Const):
        return term.value, ONE
    if isinstance(term, Mul) and isinstance(term.factors[0], Const):
        return term.factors[0].value, mul(*term.factors[1:])
    return Fraction(1), term


@drops_indices
def like_terms_combine(e: Expr) -> Expr | None:
    """a x + b x = (a + b) x, x alike up to renaming summed indices and operand order
    Removes at least one term."""
    if not isinstance(e, Add):
        return None
    split = [_split_coefficient(term) for term in e.terms]
    # Alike terms read the same tensors and have the same free indices: where no two
    # terms do (a loop's gradient, one term per step), none are alike, without keys.
    readers = {(mentions(rest), rest.free) for _, rest in split}
    if len(readers) == len(split):
        return None
    # Only terms with the same class key (same tensors, functions, powers and free
    # indices, in the same arrangement up to summed names) can be alike: compare those
    # cheap keys first, canonical forms only where they collide.
    signatures = [(class_key(rest), rest.free) for _, rest in split]
    if len(set(signatures)) == len(signatures):
        return None
    groups: dict[object, list[tuple[Fraction, Expr]]] = {}
    counts: dict[object, int] = {}
    for signature in signatures:
        counts[signature] = counts.get(signature, 0) + 1
    for (coefficient, rest), signature in zip(split, signatures, strict=True):
        key = canonical(rest) if counts[signature] > 1 else rest
        groups.setdefault(key, []).append((coefficient, rest))
    if len(groups) == len(e.terms):
        return None
    terms = []
    for members in groups.values():
        total = sum((c for c, _ in members), Fraction(0))
        if total != 0:
            terms.append(mul(Const(total), members[0][1]))
    return add(*terms)


@drops_indices
def like_factors_combine(e: Expr) -> Expr | None:
    """x^a x^b = x^(a+b) (x x = x^2; x/x = 1), x alike up to renaming summed indices
    Removes at least one factor.  exp(z_i - logsumexp_k(z_k)) / exp(z_i - logsumexp_l(z_l))
    is 1, not the 0/0 it would be where the exp underflows."""
    if not isinstance(e, Mul):
        return None
    exponents: dict[Expr, Fraction] = {}
    order: list[Expr] = []
    for f in e.factors:
        base, exponent = (f.base, f.exponent) if isinstance(f, Pow) else (f, Fraction(1))
        if isinstance(base, Const):
            base, exponent = f, Fraction(1)
        if base not in exponents:
            alike = _alike(base, order)
            if alike is None:
                order.append(base)
                exponents[base] = Fraction(0)
            else:
                base = alike
        exponents[base] += exponent
    if len(order) == len(e.factors):
        return None
    return mul(*(power(b, exponents[b]) if exponents[b] != 0 else ONE for b in order))


def _alike(base: Expr, others: list[Expr]) -> Expr | None:
    """The first of ``others`` equal to ``base`` up to the names of its summed indices."""
    if not any(n.binds for n in walk(base)):
        return None
    key = class_key(base)
    for other in others:
        if other.free == base.free and class_key(other) == key and canonical(other) == canonical(base):
            return other
    return None


RULES: list[Rule] = [
    zero_factor,
    sum_of_zero,
    power_of_zero,
    function_of_zero,
    log_of_exp,
    log_of_sigmoid,
    delta_of_one_index,
    delta_power,
    sum_over_absent_index,
    sum_splits_over_terms,
    sum_of_sums_in_product,
    summed_delta_is_one,
    delta_eats_summed_index,
    unit_shift_turns_around,
    distribute_over_delta_terms,
    sum_moves_past_factors,
    delta_unifies_indices,
    like_factors_combine,
    like_terms_combine,
    *LINALG_RULES,
]

RULES_BY_NAME = {rule.__name__: rule for rule in RULES}

#: The node types each rule can rewrite; the engine tries a rule only on those.
APPLIES_TO: dict[str, tuple[type, ...]] = {
    "zero_factor": (Mul,),
    "sum_of_zero": (Sum,),
    "power_of_zero": (Pow,),
    "function_of_zero": (Call,),
    "log_of_exp": (Call,),
    "log_of_sigmoid": (Call,),
    "delta_of_one_index": (Delta,),
    "summed_delta_is_one": (Sum,),
    "delta_eats_summed_index": (Sum,),
    "unit_shift_turns_around": (Sum,),
    "delta_unifies_indices": (Mul, Sum),
    "delta_power": (Pow,),
    "sum_over_absent_index": (Sum,),
    "sum_splits_over_terms": (Sum,),
    "sum_moves_past_factors": (Sum,),
    "sum_of_sums_in_product": (Sum,),
    "distribute_over_delta_terms": (Sum,),
    "like_terms_combine": (Add,),
    "like_factors_combine": (Mul,),
    **LINALG_APPLIES_TO,
}

__all__ = ["RULES", "RULES_BY_NAME"] + [rule.__name__ for rule in RULES]

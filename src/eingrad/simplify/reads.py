"""Shifted reads written back as the user writes them (LANGUAGE.md §11–12).

The simplifier merges sums, so a gradient comes out with one shifted delta tying a summed
index to a position shared by several tensors::

    Σ_{k,j} (1 − s_knj²) δ[t, k−1] U_hj dLds_knj

Here every tensor that holds ``k`` is read at ``k = t+1``, which is how a person writes it,
and how the parser builds ``dLds[t+1, n, j]`` (a sum of its own per read, zero outside the
array)::

    (1 − s[t+1, n, j]²) U_hj dLds[t+1, n, j]

The rewrite is exact when a tensor holding ``k`` is a factor of the product itself: outside
the array that factor reads 0, so the product is 0, as the delta made it.
"""

from __future__ import annotations

from ..expr import (
    Add,
    Expr,
    Mul,
    Shift,
    Sum,
    Tensor,
    add,
    factors_of,
    index_names,
    mentions,
    mul,
    rebuild,
    sum_,
    walk,
)
from ..names import fresh_index

__all__ = ["split_shifted_reads"]


def split_shifted_reads(e: Expr) -> Expr:
    """``Σ_k A_k B_k δ[k, t+1] = A[t+1] B[t+1]``: one shifted read per tensor (see above)."""
    if not any(isinstance(n, Shift) for n in walk(e)):
        return e
    return _split(e, set(index_names(e)) | set(mentions(e)))  # no index named like a tensor


def _split(e: Expr, taken: set[str]) -> Expr:
    if e.children:
        children = tuple(_split(c, taken) for c in e.children)
        if any(a is not b for a, b in zip(children, e.children, strict=True)):
            e = rebuild(e, children)
    if not isinstance(e, Sum):
        return e
    e = _common_shifts_out(e)
    if not isinstance(e.body, Mul):
        return e
    for shift in e.body.factors:
        if not isinstance(shift, Shift):
            continue
        read = _as_read(shift, e.indices)
        if read is None:
            continue
        k, position = read
        out = _substitute(e, shift, k, position, taken)
        if out is not None:
            return _split(out, taken)
    return e


def _common_shifts_out(e: Sum) -> Sum:
    """``Σ_j (3 δ[t, j-2] A + δ[t, j-2]) B = Σ_j δ[t, j-2] (3 A + 1) B``: a shift on a summed index
    that every term of a factor holds comes out of the terms, where it can fix that index."""
    factors = list(e.body.factors) if isinstance(e.body, Mul) else [e.body]
    changed = False
    for k, f in enumerate(factors):
        if not isinstance(f, Add):
            continue
        first = [g for g in factors_of(f.terms[0]) if isinstance(g, Shift) and set(g.indices) & set(e.indices)]
        for shift in first:
            if all(shift in factors_of(t) for t in f.terms[1:]):
                terms = []
                for t in f.terms:
                    rest = list(factors_of(t))
                    rest.remove(shift)
                    terms.append(mul(*rest))
                factors[k] = mul(shift, add(*terms))
                changed = True
                break
    return Sum(e.indices, mul(*factors)) if changed else e


def _as_read(shift: Shift, binds: tuple[str, ...]) -> tuple[str, Shift] | None:
    """``(k, δ[k, position])`` for a summed ``k`` the shift fixes: its own index, or a unit term
    (``δ[t, k−1]`` is ``δ[k, t+1]``)."""
    if shift.index in binds and shift.terms and not any(n == shift.index for _, n in shift.terms):
        if all(n not in binds or n != shift.index for _, n in shift.terms):
            return shift.index, shift
    if len(shift.terms) == 1 and shift.terms[0][0] == 1 and shift.terms[0][1] in binds and shift.index not in binds:
        k = shift.terms[0][1]
        return k, Shift(k, ((1, shift.index),), -shift.offset, shift.span)
    return None


def _substitute(e: Sum, shift: Shift, k: str, position: Shift, taken: set[str]) -> Expr | None:
    factors = [f for f in e.body.factors if f is not shift]
    holding = [f for f in factors if k in index_names(f)]
    if len(holding) == 1 and isinstance(holding[0], Tensor) and len(factors) == 1:
        return None  # one tensor reads k and nothing else: already a read, X[t+1]
    if any(n == k for _, n in position.terms):
        return None
    holders = [n for f in factors for n in walk(f) if k in index_names(n) and not n.children]
    if not holders or not all((isinstance(n, Tensor) and n.indices.count(k) == 1)
                              or (isinstance(n, Shift) and n.index != k) for n in holders):
        return None  # k in a delta, a size, a pick, or twice in one tensor: left as it is
    if not any(isinstance(n, Tensor) for n in holders):
        return None
    if any(k in getattr(n, "binds", ()) for f in factors for n in walk(f)):
        return None
    if not any(isinstance(f, Tensor) and k in f.indices for f in factors):
        return None  # no factor reads 0 outside the array: the delta's zero would be lost
    new_factors = [_reads(f, k, position, taken) for f in factors]
    binds = tuple(i for i in e.indices if i != k)
    body = mul(*new_factors)
    return sum_(binds, body) if binds else body


def _reads(e: Expr, k: str, position: Shift, taken: set[str]) -> Expr:
    if isinstance(e, Tensor):
        if k not in e.indices:
            return e
        if position.offset == 0 and len(position.terms) == 1 and position.terms[0][0] == 1:
            # at the position t itself: the tensor read at t (x_t, not Σ_j x_j δ[j, t])
            t = position.terms[0][1]
            return Tensor(e.name, tuple(t if i == k else i for i in e.indices), e.span)
        j = fresh_index(taken, "j")
        taken.add(j)
        indices = tuple(j if i == k else i for i in e.indices)
        return sum_((j,), mul(Tensor(e.name, indices, e.span), Shift(j, position.terms, position.offset)))
    if isinstance(e, Shift) and any(n == k for _, n in e.terms):
        # δ[j, a·k + b] with k = position: the positions compose (δ[j, o-2], o = t+2: δ[j, t])
        a = next(c for c, n in e.terms if n == k)
        coef = {n: c for c, n in e.terms if n != k}
        for c, n in position.terms:
            coef[n] = coef.get(n, 0) + a * c
        terms = tuple(sorted(((c, n) for n, c in coef.items() if c), key=lambda t: t[1]))
        return Shift(e.index, terms, e.offset + a * position.offset, e.span)
    if not e.children or k not in index_names(e):
        return e
    return rebuild(e, tuple(_reads(c, k, position, taken) for c in e.children))

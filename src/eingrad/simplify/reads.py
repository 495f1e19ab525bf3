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

from ..expr import Expr, Mul, Shift, Sum, Tensor, index_names, mul, rebuild, sum_, walk  # noqa: F401
from ..names import fresh_index

__all__ = ["split_shifted_reads"]


def split_shifted_reads(e: Expr) -> Expr:
    """``Σ_k A_k B_k δ[k, t+1] = A[t+1] B[t+1]``: one shifted read per tensor (see above)."""
    if not any(isinstance(n, Shift) for n in walk(e)):
        return e
    return _split(e, set(index_names(e)))


def _split(e: Expr, taken: set[str]) -> Expr:
    if e.children:
        children = tuple(_split(c, taken) for c in e.children)
        if any(a is not b for a, b in zip(children, e.children, strict=True)):
            e = rebuild(e, children)
    if not isinstance(e, Sum) or not isinstance(e.body, Mul):
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
    if e.indices == (k,) and len(factors) == 1 and isinstance(factors[0], Tensor):
        return None  # already one read, X[t+1]
    if any(n == k for _, n in position.terms):
        return None
    holders = [n for f in factors for n in walk(f) if k in index_names(n) and not n.children]
    if not holders or not all(isinstance(n, Tensor) and n.indices.count(k) == 1 for n in holders):
        return None  # k in a delta, a size, a pick, or twice in one tensor: left as it is
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
        j = fresh_index(taken, "j")
        taken.add(j)
        indices = tuple(j if i == k else i for i in e.indices)
        return sum_((j,), mul(Tensor(e.name, indices, e.span), Shift(j, position.terms, position.offset)))
    if not e.children or k not in index_names(e):
        return e
    return rebuild(e, tuple(_reads(c, k, position, taken) for c in e.children))

"""Rules for the matrix functions inv, det and logdet (LANGUAGE.md §9).

Each rule takes one node and returns its replacement, or ``None``; the first
line of each docstring is the identity, the second why it terminates.  The
engine runs them with the rules of :mod:`.rules` (``RULES`` concatenates the
catalogs).
"""

from __future__ import annotations

from ..canonical import equivalent
from ..expr import (
    ONE,
    ZERO,
    Delta,
    Expr,
    MatFn,
    Mul,
    Sum,
    factors_of,
    mul,
    power,
    rename_indices,
    sum_,
)


def _swap(e: MatFn) -> Expr:
    """The body of ``e`` read transposed: rows named as the columns and the other way round."""
    r, c = e.axes
    return rename_indices(e.body, {r: c, c: r})


def inverse_cancels_its_matrix(e: Expr) -> Expr | None:
    """Σ_j A_ij (A⁻¹)_jk = δ_ik and Σ_j (A⁻¹)_ij A_jk = δ_ik
    Removes one bound index and an inverse."""
    if not isinstance(e, Sum) or not isinstance(e.body, Mul):
        return None
    factors = e.body.factors
    for k, m in enumerate(factors):
        if not (isinstance(m, MatFn) and m.op == "inv" and m.body.free == set(m.axes)):
            continue  # (a batch of matrices: A A⁻¹ is an identity per batch value; left alone)
        r, c = m.axes
        for side, s in ((0, r), (1, c)):
            if s not in e.indices:
                continue
            for n, f in enumerate(factors):
                if n == k or s not in f.free or len(f.free) != 2:
                    continue
                if any(s in g.free for q, g in enumerate(factors) if q not in (k, n)):
                    continue
                (x,) = f.free - {s}
                # side 0: f is the matrix with rows x, columns s = r; side 1: rows s = c, columns x
                expected = rename_indices(m.body, {r: x, c: s} if side == 0 else {r: s, c: x})
                if not equivalent(f, expected):
                    continue
                rest = [g for q, g in enumerate(factors) if q not in (k, n)]
                d = Delta((x, c)) if side == 0 else Delta((r, x))
                return sum_([i for i in e.indices if i != s], mul(*rest, d))
    return None


def inverse_of_identity(e: Expr) -> Expr | None:
    """(s δ)⁻¹_ij = s⁻¹ δ_ij for a scalar s (the identity is its own inverse)
    Removes an inverse."""
    if not (isinstance(e, MatFn) and e.op == "inv"):
        return None
    factors = factors_of(e.body)
    deltas = [f for f in factors if isinstance(f, Delta)]
    if len(deltas) != 1 or set(deltas[0].indices) != set(e.axes) or len(deltas[0].indices) != 2:
        return None
    scale = [f for f in factors if f is not deltas[0]]
    if any(f.free for f in scale):
        return None
    return mul(power(mul(*scale), -1), Delta(e.axes)) if scale else Delta(e.axes)


def inverse_of_inverse(e: Expr) -> Expr | None:
    """((A⁻¹)⁻¹)_ij = A_ij
    Removes two inverses."""
    if isinstance(e, MatFn) and e.op == "inv" and isinstance(e.body, MatFn) and e.body.op == "inv":
        if e.body.axes == e.axes:
            return e.body.body
    return None


def determinant_of_identity(e: Expr) -> Expr | None:
    """det δ = 1, log|det δ| = 0
    Removes a determinant."""
    if isinstance(e, MatFn) and e.op != "inv" and isinstance(e.body, Delta) and set(e.body.indices) == set(e.axes):
        return ONE if e.op == "det" else ZERO
    return None


def symmetric_inverse_sorts_axes(e: Expr, bound: frozenset[str] = frozenset()) -> Expr | None:
    """(S⁻¹)_ji = (S⁻¹)_ij for a symmetric S (Sᵀ = S): a free axis before a summed one, else by name
    Swaps two names once (the order it makes is the one it keeps), so that like terms meet."""
    if not (isinstance(e, MatFn) and e.op == "inv"):
        return None
    r, c = e.axes
    if (r in bound) == (c in bound):
        wrong = r > c
    else:
        wrong = r in bound
    if not wrong:
        return None
    swapped = _swap(e)
    if not equivalent(swapped, e.body):
        return None
    return MatFn("inv", (c, r), swapped, e.span)


symmetric_inverse_sorts_axes.scoped = True  # type: ignore[attr-defined]


LINALG_RULES = [
    inverse_of_inverse,
    inverse_of_identity,
    determinant_of_identity,
    inverse_cancels_its_matrix,
    symmetric_inverse_sorts_axes,
]

LINALG_APPLIES_TO: dict[str, tuple[type, ...]] = {
    "inverse_of_inverse": (MatFn,),
    "inverse_of_identity": (MatFn,),
    "determinant_of_identity": (MatFn,),
    "inverse_cancels_its_matrix": (Sum,),
    "symmetric_inverse_sorts_axes": (MatFn,),
}

"""Lowering of the matrix functions inv, det and logdet (LANGUAGE.md §9).

As an expert writes them:

- an inverse contracted with something is a solve, never ``inv`` then a product:
  ``Σ_j inv_ij(A) b_j`` is ``solve(A, b)``, and a row-side contraction
  ``Σ_i a_i inv_ij(A)`` is ``solve(Aᵀ, a)``; a batch index makes it a batched solve;
- ``det`` and ``logdet`` come from ``slogdet`` (``logdet`` never forms the
  determinant, so it does not overflow at n = 1000; ``det`` is ``sign · exp(log|det|)``);
- an inverse is formed only where it is itself needed as an array (an output such as
  ``∂ log|det K|/∂K = K⁻ᵀ``, or an elementwise product).  Once a matrix's inverse is
  formed anywhere in the program, every product with it reuses that inverse (a matrix
  product) instead of factorising the matrix again: the inverse is a common
  subexpression, computed once per matrix (numpy has no LU factorisation to keep,
  so the one factorisation shared is the inverse itself).
"""

from __future__ import annotations

import math

from .. import expr as E
from ..backends import BackendError
from ..expr import Expr, MatFn, Sum, factors_of

__all__ = ["emit_matfn", "formed_inverses", "solved_factors"]


def _require(gen, op: str, e: MatFn) -> None:
    if op not in gen.backend.ops:
        from ..printing.text import format_expr

        what = {"batched_linalg": "batched linear algebra (one matrix per value of a batch index)",
                "logabsdet": "slogdet (for det and logdet)", "inv": "matrix inverse"}.get(op, op)
        raise BackendError(
            f"the {gen.backend.name} backend has no {what}, needed for {format_expr(e)}",
            hint="compile it with backend='numpy', 'torch', 'jax' or 'cupy'",
        )


def emit_matfn(gen, e: MatFn):
    """inv (formed), det or log|det| of the body's matrix, one per value of the batch indices."""
    from .emit import _uses

    body = _matrix(gen, e.body)
    i, j = e.axes
    batch = tuple(label for label in body.labels if label not in e.axes)
    if batch:
        _require(gen, "batched_linalg", e)
    labels = batch + (i, j)
    matrix = gen.aligned(body, labels)
    if e.op == "inv":
        _require(gen, "inv", e)
        return gen.temp(gen.op("inv", x=matrix), labels, _uses([body]), fresh=True)
    _require(gen, "logabsdet", e)
    code = gen.op("logabsdet" if e.op == "logdet" else "det", x=matrix)
    return gen.temp(code, batch, _uses([body]), fresh=bool(batch))


def _matrix(gen, body: Expr):
    """The body's value; ``A + λ δ`` is A copied with λ added to its diagonal, never an
    identity matrix built and added (as a statement's delta terms are)."""
    from .emit import Value, _split_delta_terms, _uses
    from .lines import Line

    dense, deltas = _split_delta_terms(body, set(body.free))
    if not dense or not deltas:
        return gen.emit(body)
    value = gen.emit(E.add(*dense))
    if set(value.labels) != set(body.free):
        return gen.emit(body)
    name = gen.fresh_name()
    gen.lines.append(Line(f"{name} = {gen.op('copy', x=value.code)}", name, _uses([value]), fresh=True))
    for term in deltas:
        gen.add_delta_term(name, term, value.labels)
    return Value(name, value.labels, True)


def formed_inverses(statements, sizes_list) -> set:
    """The common-subexpression keys of the inverses some statement needs as arrays: every
    inverse that is not a factor of a product that sums one of its axes with another factor."""
    from .emit import _cse_key

    formed = set()
    for stmt, sizes in zip(statements, sizes_list, strict=True):
        solvable: set[int] = set()
        for node in E.walk(stmt.expr):
            if isinstance(node, Sum):
                factors = factors_of(node.body)
                for f in factors:
                    if isinstance(f, MatFn) and f.op == "inv" and _partner(f, factors, set(node.indices)):
                        solvable.add(id(f))
        for node in E.walk(stmt.expr):
            if isinstance(node, MatFn) and node.op == "inv" and id(node) not in solvable:
                formed.add(_cse_key(node, sizes)[0])
    return formed


def _labels(g) -> set[str]:
    return set(g.free) if isinstance(g, Expr) else set(g.labels)


def _partner(f: MatFn, factors, summed: set[str], sizes: dict | None = None) -> tuple[int, str, list] | None:
    """(side, summed axis, the other factors holding it) for an inverse that can be a solve:
    side 1 sums its columns (A⁻¹ b), side 0 its rows (aᵀ A⁻¹ = (A⁻ᵀ a)ᵀ).  Given ``sizes``,
    the side whose partners carry fewer other entries (``xᵀ A⁻¹ B`` solves with x, not B)."""
    r, c = f.axes
    found = []
    for side, s, other in ((1, c, r), (0, r, c)):
        if s not in summed:
            continue
        partner = [g for g in factors if g is not f and s in _labels(g)]
        if partner and not any(other in _labels(g) for g in partner):
            found.append((side, s, partner))
    if not found:
        return None
    if sizes is None or len(found) == 1:
        return found[0]

    def width(option) -> int:
        _, s, partner = option
        return math.prod(sizes.get(i, 1) for i in set().union(*(_labels(g) for g in partner)) - set(f.free))

    return min(found, key=width)


def _connected(f: MatFn, partner: list, factors: list, out: tuple[str, ...], other: str) -> list:
    """The partner factors, and every factor linked to them by an index summed here that
    does not hold the inverse's other axis: the right-hand side an expert writes, ``Xᵀ y``
    in ``(XᵀX + λI)⁻¹ Xᵀ y`` (one vector, not the matrix ``Xᵀ``)."""
    group = list(partner)
    changed = True
    while changed:
        changed = False
        summed = {i for g in group for i in _labels(g)} - set(out) - set(f.free)
        for g in factors:
            if g is f or any(g is h for h in group) or other in _labels(g):
                continue
            if _labels(g) & summed:
                group.append(g)
                changed = True
    return group


def solved_factors(gen, factors: list, out: tuple[str, ...]) -> list | None:
    """``factors`` (expressions, or values already computed) with one inverse and the
    factors it is contracted with replaced by the solve that computes their product;
    None where no inverse is only multiplied (or its inverse is formed anyway)."""
    from .emit import _cse_key, _uses

    if "solve" not in gen.backend.ops:
        return None
    for f in factors:
        if not (isinstance(f, MatFn) and f.op == "inv"):
            continue
        if _cse_key(f, gen.sizes)[0] in gen.formed_inverses:
            continue  # the inverse is an array anyway: a product with it is a matrix product
        found = _partner(f, factors, set(f.free) - set(out), gen.sizes)
        if found is None:
            continue
        side, s, partner = found
        r, c = f.axes
        batch = tuple(sorted(f.free - {r, c}))
        partner = _connected(f, partner, factors, out, r if side == 1 else c)
        if batch and "batched_linalg" not in gen.backend.ops:
            continue
        if not set(batch) <= set().union(*(_labels(p) for p in partner)):
            continue  # one right-hand side for a batch of matrices: left to the product
        rest = [g for g in factors if g is not f and not any(g is p for p in partner)]
        needed = set(out) | {i for g in rest for i in _labels(g)} | set(batch) | {s}
        rhs_labels = tuple(i for i in dict.fromkeys(i for p in partner for i in sorted(_labels(p))) if i in needed)
        kept = r if side == 1 else c
        # The solve is a common subexpression (the forward pass's K⁻¹ y is the gradient's):
        # keyed as the sum it computes, where every factor is an expression.
        key = mapping = None
        if all(isinstance(p, Expr) for p in partner):
            summed = (set(f.free) | {i for p in partner for i in p.free}) - set(rhs_labels) - {kept} | {s}
            key, mapping = _cse_key(E.sum_(sorted(summed), E.mul(f, *partner)), gen.sizes)
            cached = gen.recall(key, mapping)
            if cached is not None:
                return rest + [cached]
        rhs = gen.contract(list(partner), rhs_labels)
        cols = tuple(i for i in rhs.labels if i not in batch and i != s)
        body = _matrix(gen, f.body)
        matrix = gen.aligned(body, batch + ((r, c) if side == 1 else (c, r)))
        nb = tuple(gen.sizes[i] for i in batch)
        k = math.prod(gen.sizes[i] for i in cols)
        b = gen.op("reshape", x=gen.aligned(rhs, batch + (s,) + cols), shape=nb + (gen.sizes[s], k))
        shape = nb + (gen.sizes[kept],) + tuple(gen.sizes[i] for i in cols)
        code = gen.op("reshape", x=gen.op("solve", a=matrix, b=b), shape=shape)
        value = gen.temp(code, batch + (kept,) + cols, _uses([body, rhs]), fresh=True)
        if key is not None:
            gen.remember(key, value, mapping)
        return rest + [value]
    return None

"""Classic backward-pass mistakes, named: the correct gradient recomputed with one factor,
index or term changed, and compared with the user's.

``dLdW1 equals the correct one without the relu mask step(H_nh)`` says more than
"4 of 4 entries wrong".  Each mistake is a small rewrite of one statement of eingrad's
gradient program (a mask dropped, a weight transposed, a softmax Jacobian replaced by
its diagonal, a term dropped or its sign flipped); the rewritten program is evaluated at
the check's inputs, and the first whose gradient equals the user's is reported.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import api
from .. import expr as E
from ..errors import EingradError
from ..program import Program, Statement
from .diagnose import matches

__all__ = ["classic_mistake"]

_MAX_TRIES = 80


def classic_mistake(
    gradients: Program, forward: Program, name: str, arrays: dict, declared, got: np.ndarray,
    rtol: float, atol: float,
) -> str | None:
    """What the user's ``got`` for ``name`` equals: the correct gradient with one classic
    mistake, in words (``None`` when no single mistake explains it)."""
    first = len(forward.statements)
    needed = gradients.needed_for([name])
    names = {s.target for s in needed.statements}
    tries = 0
    for k, stmt in enumerate(gradients.statements):
        if k < first or stmt.target not in names:
            continue
        for expr, what in _mistakes(stmt, forward):
            tries += 1
            if tries > _MAX_TRIES:
                return None
            statements = list(gradients.statements)
            statements[k] = replace(stmt, expr=expr)
            try:
                program = Program(tuple(statements), None)
                env = {key: v for key, v in arrays.items() if key in program.inputs}
                value = np.asarray(api.evaluate(program, env, sizes=declared)[name], dtype=np.float64)
            except (EingradError, ValueError, KeyError):
                continue
            if matches(got, value, rtol, atol) and not matches(got, value * 0, rtol, atol):
                return f"Yours equals the correct {name} {what}"
    return None


def _mistakes(stmt: Statement, forward: Program):
    """(rewritten expression, the mistake in words) for one gradient statement."""
    e = stmt.expr
    terms = e.terms if isinstance(e, E.Add) else (e,)
    softmax = {s.target for s in forward.statements if _is_softmax(s.expr)}
    # 1. a factor dropped: the relu mask, a sigmoid's or tanh's derivative
    for t, term in enumerate(terms):
        factors = E.factors_of(term)
        for f, factor in enumerate(factors):
            if not _is_local_factor(factor):
                continue
            rest = E.mul(*(factors[:f] + factors[f + 1:]))
            expr = E.add(*(terms[:t] + (rest,) + terms[t + 1:]))
            yield expr, _without(factor, stmt, rest)
    # 2. a weight transposed
    seen = set()
    for node in E.walk(e):
        if isinstance(node, E.Tensor) and len(node.indices) == 2 and node.name in forward.inputs:
            if node in seen or node.indices[0] == node.indices[1]:
                continue
            seen.add(node)
            swapped = E.Tensor(node.name, node.indices[::-1])
            expr = _replace(e, node, swapped)
            yield expr, (f"with {node.name} transposed in {stmt.target} (did you write {node.name} where "
                         f"{node.name}.T belongs, or the other way round?)")
    # 3. a sum taken on its diagonal: the softmax Jacobian replaced by its diagonal
    for node in E.walk(e):
        if not isinstance(node, E.Sum) or len(node.indices) != 1:
            continue
        (i,) = node.indices
        for c in stmt.indices:
            if c in node.body.free or c == i:
                continue
            diagonal = E.rename_indices(node.body, {i: c})
            expr = _replace(e, node, diagonal)
            reads = {r.name for r in E.tensor_refs(node.body)}
            if reads & softmax:
                p = sorted(reads & softmax)[0]
                what = (f"with the softmax's Jacobian replaced by its diagonal, as if {p} were elementwise "
                        f"(d{p}·{p}·(1−{p})); the softmax couples every {c}: "
                        f"d{stmt.target.removeprefix('dLd')} = {p}·(d{p} − Σ_{c} {p}·d{p})")
            else:
                what = f"with the sum over {i} in {stmt.target} taken only on its diagonal ({i} = {c})"
            yield expr, what
    # 4. a term dropped, or its sign flipped (a path of a shared weight missed)
    if len(terms) > 1:
        for t, term in enumerate(terms):
            rest = terms[:t] + terms[t + 1:]
            if term.free != frozenset(stmt.indices) and not all(r.free == term.free for r in rest):
                continue
            yield E.add(*rest), (f"without the term {term} of {stmt.target} (every path from the input to "
                                 "the output contributes a term)")
            yield E.add(*(rest[:t] + (E.neg(term),) + rest[t:])), (
                f"with the sign of the term {term} of {stmt.target} flipped")
    # 5. the whole statement's sign
    yield E.neg(e), f"with the sign of {stmt.target} flipped (a dropped or extra minus sign)"


def _is_softmax(e) -> bool:
    return isinstance(e, E.Call) and e.fn == "exp" and isinstance(e.arg, E.Add) and any(
        isinstance(f, E.LogSumExp) for t in e.arg.terms for f in E.factors_of(t))


def _is_local_factor(factor) -> bool:
    """A factor that is a local derivative (step(A), sigmoid'(…), 1 - s²), not an adjoint."""
    if isinstance(factor, (E.Call, E.Compare)):
        return True
    if isinstance(factor, E.Add):
        return not any(r.name.startswith("dLd") for r in E.tensor_refs(factor))
    return False


def _without(factor, stmt: Statement, rest) -> str:
    adjoint = next((r.name for r in E.tensor_refs(rest) if r.name.startswith("dLd")), None)
    if isinstance(factor, E.Call) and factor.fn == "step":
        fix = f": multiply {adjoint} by ({factor.arg} > 0)" if adjoint else ""
        return f"without the relu mask {factor} in {stmt.target}{fix}"
    return f"without the factor {factor} in {stmt.target} (the local derivative of its step)"


def _replace(e, old, new):
    if e == old:
        return new
    kids = tuple(_replace(c, old, new) for c in e.children)
    return e if kids == e.children else e.with_children(kids)

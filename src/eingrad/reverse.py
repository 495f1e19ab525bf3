"""Reverse mode: the gradient of a scalar output as a program in index notation.

The statements are walked in reverse topological order (the order they were
written, backwards), keeping one adjoint per target, as the guide does for
the unrolled RNN.  Each statement that reads a tensor contributes to that
tensor's adjoint.  The contribution is the statement's adjoint contracted
with the statement's own derivative, simplified until the deltas are gone:

    Y_nh = X_nd W_dh + b_h      gives      dLdb_h = Σ_n dLdY_nh
                                           dLdW_dh = X_nd dLdY_nh

Contributions from every path add up (a tensor read by several statements,
a parameter shared across time steps).  An adjoint that several contributions
need is emitted once, as a statement ``dLdT``.  Statements that no requested
gradient needs are not emitted, and symbolic zeros never become statements.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence

from . import expr as E
from .diff import DiffError, _Context, diff_expr
from .errors import ZeroDerivativeWarning, user_stacklevel
from .expr import ONE, ZERO, Call, Expr, Tensor, add, mul, rename_indices, sum_
from .names import fresh_index
from .program import Program, Statement
from .simplify import rename_bound_apart, simplify
from .simplify.rules import like_terms_combine

__all__ = ["GradError", "gradient_program"]


class GradError(DiffError):
    """A gradient that cannot be taken as asked (non-scalar output without a seed, ...)."""


def _needed(program: Program, output: str) -> list[Statement]:
    needed = {output}
    for stmt in reversed(program.statements):
        if stmt.target in needed:
            needed.update(ref.name for ref in E.tensor_refs(stmt.expr))
    return [s for s in program.statements if s.target in needed]


def _depends(statements: list[Statement], sources: set[str]) -> set[str]:
    """Targets that depend on any name in ``sources`` (forward pass)."""
    out: set[str] = set()
    for stmt in statements:
        if any(ref.name in sources or ref.name in out for ref in E.tensor_refs(stmt.expr)):
            out.add(stmt.target)
    return out


def _input_indices(program: Program, name: str, taken: set[str]) -> tuple[str, ...]:
    """Index names for an input's gradient: those of its first use, made distinct."""
    written = program.first_use(name).indices
    out: list[str] = []
    for i in written:
        if i in out:
            i = fresh_index(taken | set(out), i)
        out.append(i)
    return tuple(out)


def _unique_name(base: str, names: set[str]) -> str:
    if base not in names:
        return base
    k = 2
    while f"{base}{k}" in names:
        k += 1
    return f"{base}{k}"


def _check_request(program: Program, wrt: Sequence[str], output: str, seed: str | None) -> None:
    if output not in program.targets:
        raise GradError(
            f"{output!r} is not a target of the program (its targets are {', '.join(program.targets)})",
            hint="output names the statement to differentiate; it defaults to the last one",
        )
    out_stmt = program.statement(output)
    if out_stmt.indices and seed is None:
        from .printing.text import index_suffix

        lhs = output + index_suffix(out_stmt.indices)
        raise GradError(
            f"grad needs a scalar output, but {lhs} has indices {', '.join(out_stmt.indices)}",
            source=program.source,
            spans=out_stmt.target_span,
            hint=f"sum it to a scalar, or pass the upstream gradient as seed='dLd{output}' "
            "(an input with the output's shape)",
        )
    if seed is not None and (not isinstance(seed, str) or not re.fullmatch(r"[^\W\d_]\w*", seed) or "_" in seed):
        raise GradError(f"seed must be a tensor name such as 'dLd{output}', got {seed!r}")
    if seed is not None and (seed in program.inputs or seed in program.targets):
        raise GradError(f"seed {seed!r} is already a name in the program", hint="choose a new name")
    if isinstance(wrt, str):
        raise GradError(f"wrt must be a list of input names, got the string {wrt!r}", hint=f"write wrt=[{wrt!r}]")
    if not wrt:
        raise GradError("wrt is empty: name the inputs to differentiate with respect to")
    for name in wrt:
        if name in program.targets:
            stmt = program.statement(name)
            raise GradError(
                f"{name!r} is computed by the program, not an input: gradients are taken with "
                f"respect to inputs (the inputs are {', '.join(program.inputs)})",
                source=program.source,
                spans=stmt.target_span,
                hint="differentiate with respect to the inputs it is computed from",
            )
        if name not in program.inputs:
            raise GradError(
                f"{name!r} is not an input of the program (its inputs are {', '.join(program.inputs)})",
                hint="wrt names inputs of the program",
            )


def gradient_program(
    program: Program,
    wrt: Iterable[str],
    output: str | None = None,
    seed: str | None = None,
    prefix: str | None = None,
) -> Program:
    """The forward statements the gradients need, then one statement per adjoint and per input."""
    wrt = list(wrt) if not isinstance(wrt, str) else wrt
    output = output or program.output
    _check_request(program, wrt, output, seed)
    if prefix is None:
        match = re.fullmatch(rf"d(\w+)d{re.escape(output)}", seed) if seed else None
        prefix = f"d{match.group(1) if match else output}d"
    statements = _needed(program, output)
    depends = _depends(statements, set(wrt))
    names = set(program.targets) | set(program.inputs) | ({seed} if seed else set())
    taken: set[str] = set()
    for stmt in program.statements:
        taken |= set(stmt.indices) | E.all_indices(stmt.expr)

    out_stmt = program.statement(output)
    adjoint_names: dict[str, str] = {}
    adjoints: dict[str, list[Expr]] = {}  # target or input -> its contributions so far
    emitted: list[Statement] = []
    current: dict[str, Expr] = {output: Tensor(seed, out_stmt.indices) if seed else ONE}

    for stmt in reversed(statements):
        target = stmt.target
        if target not in current and target not in adjoints:
            continue
        if target != output:
            adjoint = _total(adjoints.pop(target, []))
            if adjoint == ZERO:
                continue
            if _worth_a_statement(adjoint):
                name = _unique_name(prefix + target, names)
                names.add(name)
                adjoint_names[target] = name
                emitted.append(Statement(name, stmt.indices, adjoint, like=target))
                current[target] = Tensor(name, stmt.indices)
            else:
                current[target] = adjoint
        seed_expr = current[target]
        forward_values = {stmt.expr: Tensor(target, stmt.indices)} if isinstance(stmt.expr, Call) else {}
        for read, part in _terms_by_read(stmt.expr).items():
            if read not in wrt and read not in depends:
                continue
            contribution = _contribution(program, stmt, part, read, seed_expr, taken, forward_values)
            if contribution != ZERO:
                adjoints.setdefault(read, []).append(contribution)

    gradients: list[Statement] = []
    for name in wrt:
        indices = _input_indices(program, name, taken)
        adjoint = _total(adjoints.get(name, []))
        target_name = _unique_name(prefix + name, names)
        names.add(target_name)
        if adjoint == ZERO:
            warnings.warn(
                ZeroDerivativeWarning(f"{output!r} does not depend on {name!r}: its gradient is zero"),
                stacklevel=user_stacklevel(),
            )
        gradients.append(Statement(target_name, indices, adjoint, like=name))
    return Program(tuple(statements) + tuple(emitted) + tuple(gradients), None)


def _total(contributions: list[Expr]) -> Expr:
    """The sum of simplified contributions, like terms combined.

    Each contribution is simplified on its own; terms of a sum cannot interact
    except as like terms, so combining those is all the sum needs.
    """
    total = add(*contributions)
    combined = like_terms_combine(total)
    return combined if combined is not None else total


def _worth_a_statement(adjoint: Expr) -> bool:
    """Constant adjoints (1, 2 |n|) are inlined; anything that reads a tensor is computed once."""
    return any(isinstance(node, Tensor) for node in E.walk(adjoint))


def _terms_by_read(e: Expr) -> dict[str, Expr]:
    """For each tensor ``e`` reads, the part of ``e`` that can depend on it.

    For a sum of terms that is only the terms that mention the tensor, so a loss
    with τ terms is differentiated in O(τ) overall rather than O(τ) per tensor.
    """
    terms = e.terms if isinstance(e, E.Add) else (e,)
    parts: dict[str, list[Expr]] = {}
    for term in terms:
        for name in sorted(E.mentions(term)):
            parts.setdefault(name, []).append(term)
    order = dict.fromkeys(ref.name for ref in E.tensor_refs(e))
    return {name: add(*parts[name]) if len(parts[name]) < len(terms) else e for name in order}


def _contribution(
    program: Program,
    stmt: Statement,
    part: Expr,
    read: str,
    seed_expr: Expr,
    taken: set[str],
    forward_values: dict[Expr, Expr],
) -> Expr:
    """Σ_I seed_I ∂stmt_I/∂read_K, simplified, with K renamed to read's gradient indices."""
    rank = program.rank(read)
    local_taken = set(taken) | E.all_indices(seed_expr) | set(stmt.indices)
    wrt_indices = []
    for _ in range(rank):
        k = fresh_index(local_taken, "k")
        local_taken.add(k)
        wrt_indices.append(k)
    wrt_t = tuple(wrt_indices)
    ctx = _Context(read, wrt_t, {}, wrt_t, local_taken, forward_values=forward_values)
    local = diff_expr(part, ctx)
    if local == ZERO:
        return ZERO
    contribution = simplify(sum_(stmt.indices, mul(local, seed_expr)))
    if contribution == ZERO:
        return ZERO
    # Name the adjoint's indices as the tensor's own (its target indices, or its first use).
    if read in program.targets:
        own = program.statement(read).indices
    else:
        own = _input_indices(program, read, taken)
    contribution = rename_bound_apart(contribution, avoid=set(own) | set(wrt_t))
    return rename_indices(contribution, dict(zip(wrt_t, own, strict=True)))


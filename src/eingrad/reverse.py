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
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from fractions import Fraction

from . import expr as E
from .diff import (
    AxisClasses,
    DiffError,
    _Context,
    dependents,
    diff_expr,
    require_input,
    statement_index_sources,
    user_names,
)
from .errors import ZeroDerivativeWarning, user_stacklevel
from .expr import ONE, ZERO, Call, Expr, Tensor, add, mul, rename_indices, sum_
from .names import fresh_index
from .program import Program, Statement, without_cyclic_gc
from .simplify import rename_bound_apart, simplify
from .simplify.engine import fold_softmax
from .simplify.forward import _NAMED, ForwardTable, drop_centred_sums, spread_sign, use_forward_values
from .simplify.reads import split_shifted_reads
from .simplify.rules import like_terms_combine

__all__ = ["GradError", "gradient_program"]


class GradError(DiffError):
    """A gradient that cannot be taken as asked (non-scalar output without a seed, ...)."""


def _input_indices(program: Program, name: str, taken: set[str]) -> tuple[str, ...]:
    """Index names for an input's gradient: those of its first use, made distinct."""
    written = program.first_use(name).indices
    out: list[str] = []
    for i in written:
        if i in out:
            i = fresh_index(taken | set(out), i)
        out.append(i)
    return tuple(out)


def _own_indices(program: Program, name: str, taken: set[str], cache: dict) -> tuple[str, ...]:
    """``_input_indices``, computed once per input: ``taken`` grows (fresh names of sizes),
    and the gradient statement must have the indices its contributions were renamed to."""
    key = ("own indices", name)
    if key not in cache:
        cache[key] = _input_indices(program, name, taken)
        taken.update(cache[key])  # no size |n| gets one of these names
    return cache[key]


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
        require_input(program, name, GradError, "gradients")


def gradient_program(
    program: Program,
    wrt: Iterable[str],
    output: str | None = None,
    seed: str | None = None,
    prefix: str | None = None,
) -> Program:
    """The forward statements the gradients need, then one statement per adjoint and per input."""
    # The collector paused: its full passes over a heap that grows with the program made
    # grad superlinear (0.75 ms a step at τ = 100, 1.5 ms at τ = 2000).
    with without_cyclic_gc(), _forward_tables():
        return _gradient_program(program, wrt, output, seed, prefix)


# The forward statements' definitions indexed for _folded, by the identity of the
# statement list it is given, for the duration of one gradient_program call.
_FORWARD_TABLES: ContextVar[dict[int, tuple[list, ForwardTable]] | None] = ContextVar("forward_tables", default=None)


@contextmanager
def _forward_tables():
    """Index the forward statements once per gradient program, not once per emitted
    statement (which made an unrolled loop's gradient quadratic in its length)."""
    token = _FORWARD_TABLES.set({})
    try:
        yield
    finally:
        _FORWARD_TABLES.reset(token)


def _forward_table(forward: list[Statement]) -> ForwardTable:
    """The :class:`ForwardTable` of ``forward``, built once per list while a gradient
    program is built (the list is not changed meanwhile); built afresh outside one."""
    tables = _FORWARD_TABLES.get()
    if tables is None:
        return ForwardTable(forward)
    entry = tables.get(id(forward))
    if entry is None or entry[0] is not forward:
        entry = tables[id(forward)] = (forward, ForwardTable(forward))
    return entry[1]


def _gradient_program(
    program: Program,
    wrt: Iterable[str],
    output: str | None,
    seed: str | None,
    prefix: str | None,
) -> Program:
    if not isinstance(wrt, (str, Iterable)):
        raise GradError(f"wrt must be a list of input names, got {wrt!r}", hint="write wrt=['W', 'b']")
    wrt = list(wrt) if not isinstance(wrt, str) else wrt
    output = output or program.output
    _check_request(program, wrt, output, seed)
    if prefix is not None and (not isinstance(prefix, str) or not re.fullmatch(r"[^\W\d_]\w*", prefix) or "_" in prefix):
        # The prefix starts every gradient's name (dLdW): a '_' in it would start indices.
        raise GradError(f"prefix must start a tensor name, such as 'dLd', got {prefix!r}")
    if prefix is None:
        match = re.fullmatch(rf"d(\w+)d{re.escape(output)}", seed) if seed else None
        prefix = f"d{match.group(1) if match else output}d"
    statements = list(program.needed_for([output]).statements)
    depends = dependents(statements, set(wrt))
    names = set(program.targets) | set(program.inputs) | ({seed} if seed else set())
    taken: set[str] = set()
    for stmt in program.statements:
        taken |= set(stmt.indices) | E.all_indices(stmt.expr)

    out_stmt = program.statement(output)
    # What the user calls each axis: statements are renamed to those names once finished.
    classes = AxisClasses(program, {seed: output} if seed else {})
    adjoint_names: dict[str, str] = {}
    adjoints: dict[str, list[Expr]] = {}  # target or input -> its contributions so far
    emitted: list[Statement] = []
    current: dict[str, Expr] = {output: Tensor(seed, out_stmt.indices) if seed else ONE}
    cache: dict = {}  # contributions by statement shape (see _contribution)

    groups = {m: rec for rec in program.recurrences for m in rec.members}
    for stmt in reversed(statements):
        target = stmt.target
        if target in groups:
            rec = groups[target]
            if target == rec.members[-1]:
                group = [program.statement(m) for m in reversed(rec.members)]
                emitted.extend(_group_adjoints(program, group, wrt, depends, current, adjoints, names,
                                               adjoint_names, classes, prefix, taken, cache, statements))
            continue
        if target not in current and target not in adjoints:
            continue
        if target != output:
            adjoint, sized = _total(adjoints.pop(target, []), stmt.indices, classes)
            if adjoint == ZERO:
                continue
            if _worth_a_statement(adjoint):
                adjoint, sized = _readable_sizes(program, adjoint, sized, stmt.indices, target)
                name = _unique_name(prefix + target, names)
                names.add(name)
                adjoint_names[target] = name
                classes.like[name] = target
                adjoint_stmt = Statement(name, stmt.indices, adjoint, like=target, sizes_from=sized)
                emitted.append(_folded(_readable(adjoint_stmt, classes), statements))
                current[target] = Tensor(name, stmt.indices)
            else:
                current[target] = adjoint
        forward_values = {stmt.expr: Tensor(target, stmt.indices)} if isinstance(stmt.expr, Call) else {}
        reads = [(read, part) for read, part in _terms_by_read(stmt.expr).items() if read in wrt or read in depends]
        found = _contributions(program, stmt, reads, current[target], taken, forward_values, cache)
        if stmt.indices and not isinstance(current[target], Tensor) and any(_unsized(c.expr) for _, c in found):
            # An inlined constant adjoint (dLdY_nh = 1) summed away leaves a size that no
            # tensor fixes (dLdb_h = |n|): make it a statement (dLdb_h = Σ_n dLdY_nh).
            name = _unique_name(prefix + target, names)
            names.add(name)
            adjoint_names[target] = name
            classes.like[name] = target
            emitted.append(_readable(Statement(name, stmt.indices, current[target], like=target), classes))
            current[target] = Tensor(name, stmt.indices)
            found = _contributions(program, stmt, reads, current[target], taken, forward_values, cache)
        for read, contribution in found:
            adjoints.setdefault(read, []).append(contribution)

    gradients: list[Statement] = []
    for name in wrt:
        indices = _own_indices(program, name, taken, cache)
        adjoint, sized = _readable_sizes(program, *_total(adjoints.get(name, []), indices, classes), indices, name)
        target_name = _unique_name(prefix + name, names)
        names.add(target_name)
        if adjoint == ZERO:
            warnings.warn(
                ZeroDerivativeWarning(f"{output!r} does not depend on {name!r}: its gradient is zero"),
                stacklevel=user_stacklevel(),
            )
            # 0 x_I, not 0: the statement reads x, so the program still takes x as an
            # input (the output's statements may not read it) and the text parses back.
            adjoint = E.Mul((ZERO, Tensor(name, indices)))
        gradient = Statement(target_name, indices, adjoint, like=name, sizes_from=sized)
        gradients.append(_folded(_readable(gradient, classes), statements))
    result = Program(tuple(statements) + tuple(emitted) + tuple(gradients), None)
    if seed and seed not in result.inputs:  # every gradient is zero: the seed is still taken
        result = Program(result.statements, None, frozenset({seed}))
    return result


def _group_adjoints(program, group, wrt, depends, current, adjoints, names, adjoint_names, classes,
                    prefix, taken, cache, statements) -> list[Statement]:
    """The adjoints of a recurrence's members (LANGUAGE.md §12), ``group`` in reverse order.

    Each member's adjoint is named before any is known, because the members' statements
    contribute to each other's adjoints: ``s[t]`` reads ``s[t-1]``, so ``dLds[t-1]`` takes
    ``dLds[t]`` times ``∂s[t]/∂s[t-1]``.  The adjoint statements read each other at the
    opposite shifts: a recurrence running the other way, derived once whatever |t| is.
    """
    for stmt in group:  # the output's seed (seed=, or 1) is its adjoint's first term
        if stmt.target in current:
            adjoints.setdefault(stmt.target, []).insert(0, _Contribution(current[stmt.target], ()))
    for stmt in group:
        name = _unique_name(prefix + stmt.target, names)
        names.add(name)
        adjoint_names[stmt.target] = name
        classes.like[name] = stmt.target
        current[stmt.target] = Tensor(name, stmt.indices)
    for stmt in group:
        forward_values = {stmt.expr: Tensor(stmt.target, stmt.indices)} if isinstance(stmt.expr, Call) else {}
        reads = [(read, part) for read, part in _terms_by_read(stmt.expr).items() if read in wrt or read in depends]
        found = _contributions(program, stmt, reads, current[stmt.target], taken, forward_values, cache)
        for read, contribution in found:
            adjoints.setdefault(read, []).append(contribution)
    out = []
    for stmt in group:
        adjoint, sized = _total(adjoints.pop(stmt.target, []), stmt.indices, classes)
        if adjoint == ZERO:
            adjoint = E.Mul((ZERO, Tensor(stmt.target, stmt.indices)))
        adjoint, sized = _readable_sizes(program, adjoint, sized, stmt.indices, stmt.target)
        name = adjoint_names[stmt.target]
        adjoint_stmt = Statement(name, stmt.indices, adjoint, like=stmt.target, sizes_from=sized)
        out.append(_folded(_readable(adjoint_stmt, classes), statements))
    return out


def _folded(stmt: Statement, forward: list[Statement]) -> Statement:
    """The statement with every exp(z_k - logsumexp_j(z_j)) written as softmax_k(z_k) is parsed,
    so that it prints as ``softmax_k(z_k)`` (the same value), and with the forward pass's
    own values where they recur (``P_nc`` for ``softmax_c(Z_nc)``)."""
    # Only the forward statements the gradient program keeps (those its output needs).
    table = _forward_table(forward)
    folded = drop_centred_sums(stmt.expr, table)
    # The kinds of node the statement holds, in one walk: most gradient statements (an
    # unrolled loop's adjoints, 1000 terms of its dLdW) have no log-sum-exp to fold and
    # no function or reduction to find among the forward values, and skip both passes.
    kinds = {type(node) for node in E.walk(folded)}
    if E.LogSumExp in kinds:
        folded = fold_softmax(folded)
    if any(issubclass(kind, _NAMED) for kind in kinds):
        folded = use_forward_values(folded, table)
    folded = spread_sign(folded)
    if table.has_shifts:
        folded = split_shifted_reads(folded)
    return stmt if folded is stmt.expr else replace(stmt, expr=folded)


def _sibling_binders(terms: list[Expr], classes: AxisClasses | None,
                     binders: list[list[str]] | None = None) -> frozenset[str]:
    """Bound names that run over one axis class wherever a term binds them: the terms may
    all keep them (``n`` in each of the 1000 terms of an unrolled RNN's ``dLdW``).
    ``binders``: each term's bound names (``_binders_of``), if known."""
    if classes is None or len(terms) < 2:
        return frozenset()
    roots: dict[str, set] = {}
    for k, term in enumerate(terms):
        bound = set(binders[k] if binders is not None else _binders_of(term))
        if not bound:
            continue
        seen = set()
        for node in E.walk(term):
            if isinstance(node, Tensor):
                for axis, i in enumerate(node.indices):
                    if i in bound:
                        roots.setdefault(i, set()).add(classes.of(node.name, axis))
                        seen.add(i)
        for i in bound - seen:  # bound but read by no tensor (a delta's, a size's): unknown
            roots.setdefault(i, set()).update({None, ()})
    return frozenset(i for i, r in roots.items() if len(r) == 1)


def _binders_of(e: Expr) -> list[str]:
    """The names ``e``'s binders bind, one entry per binder and name (a name bound twice
    is there twice)."""
    return [i for node in E.walk(e) for i in node.binds]


def _apart_already(total: Expr, binders: list[list[str]], avoid: set[str], siblings: frozenset[str]) -> bool:
    """Would ``rename_bound_apart(total, avoid=avoid, siblings=siblings)`` rename nothing?

    It renames a binder whose name is free in ``total``, in ``avoid``, bound around it or
    before it in its term, or (names not in ``siblings``) bound by an earlier term.  Where
    no binder is (most adjoints: each contribution was renamed apart on its own) the sum
    is kept without walking it again.  ``binders``: each term's, from ``_binders_of``."""
    seen = total.free | avoid
    if not (siblings and isinstance(total, E.Add)):  # one walk over the whole sum
        names = [i for bound in binders for i in bound]
        return len(set(names)) == len(names) and seen.isdisjoint(names)
    earlier: set[str] = set()  # names other than siblings that earlier terms bind
    for bound in binders:
        own = set(bound)
        if len(own) != len(bound) or not seen.isdisjoint(own) or not earlier.isdisjoint(own):
            return False
        earlier |= own - siblings
    return True


def _total(contributions: list[Expr], indices: tuple[str, ...],
           classes: AxisClasses | None = None) -> tuple[Expr, tuple]:
    """The sum of simplified contributions, like terms combined.

    Each contribution is simplified on its own; terms of a sum cannot interact
    except as like terms, so combining those is all the sum needs.
    """
    # Each contribution names its bound indices on its own; within one statement an
    # index name has one size, so rename them apart across the whole sum.  New names
    # avoid the statement's ``indices``: the sum need not mention them all (a gradient
    # constant along an axis), and a binder named like one would capture it.
    # Nor may a binder of one contribution share its name with a size |n| of another.
    sized_names = {entry[0] for c in contributions for entry in c.sizes_from}
    total = add(*(c.expr for c in contributions))
    terms = list(total.terms) if isinstance(total, E.Add) else [total]
    binders = [_binders_of(term) for term in terms]
    siblings = _sibling_binders(terms, classes, binders) if isinstance(total, E.Add) else frozenset()
    avoid = set(indices) | sized_names
    if not _apart_already(total, binders, avoid, siblings - sized_names):
        total = rename_bound_apart(total, avoid=avoid, siblings=siblings - sized_names)
    combined = like_terms_combine(total)
    total = combined if combined is not None else total
    if not sized_names:  # no size to keep (most adjoints): no need to look for sizes
        return total, ()
    sizes = {node.index for node in E.walk(total) if isinstance(node, E.Size)}
    sized = tuple(entry for c in contributions for entry in c.sizes_from if entry[0] in sizes)
    return total, sized


def _readable_sizes(
    program: Program, e: Expr, sized: tuple, indices: tuple[str, ...], like: str
) -> tuple[Expr, tuple]:
    """Sizes named as the program names their axes (``/ |n|``, not ``/ |i|``) where that
    name is free in the statement; one name per axis.

    While contributions are collected, each size has a name used nowhere else, so that
    sums of contributions cannot confuse two sizes; a finished statement can say |n|."""
    if not sized:  # no size to name
        return e, sized
    carried = {i for node in E.walk(e) if isinstance(node, (Tensor, E.Delta)) for i in node.indices}
    carried |= {i for node in E.walk(e) for i in node.binds}
    ugly = {name for name, _, _ in sized if name not in carried}
    used = (E.all_indices(e) - ugly) | set(indices)
    mapping: dict[str, str] = {}
    by_axis: dict[tuple[str, int], str] = {}
    for name, tensor, axis in sized:
        if name not in ugly or name in mapping:
            continue
        if (tensor, axis) not in by_axis:
            # The statement's own axis (dLdx_n = 1 / |n|), or a free index the statement
            # reads on that same axis, or else a fresh name after the program's.
            same = [indices[axis]] if tensor == like else [
                node.indices[axis] for node in E.walk(e)
                if isinstance(node, Tensor) and node.name == tensor and node.indices[axis] in indices]
            if same:
                by_axis[(tensor, axis)] = same[0]
            else:
                ref = program.statement(tensor) if program.is_target(tensor) else program.first_use(tensor)
                by_axis[(tensor, axis)] = fresh_index(used, ref.indices[axis])
                used.add(by_axis[(tensor, axis)])
        mapping[name] = by_axis[(tensor, axis)]
    if not mapping:
        return e, sized
    renamed = tuple(dict.fromkeys((mapping.get(name, name), tensor, axis) for name, tensor, axis in sized))
    return rename_indices(e, mapping), renamed


def _readable(stmt: Statement, classes: AxisClasses) -> Statement:
    """A finished gradient statement in the user's index names, that evaluates on its own.

    While contributions are collected every bound index and size has a name used
    nowhere else; here binders and sizes take the names the program gives their
    axes (:func:`~eingrad.diff.user_names`).  Then what the text alone could not
    size gets a tensor that carries it: a target index that nothing on the right
    carries reads the tensor whose shape the target has, to the power 0
    (``dLdx_i = x_i^0``, a 1 for every ``x_i``), and a size ``|n|`` that no tensor
    carries becomes ``Σ_n x_n^0``.
    """
    sized = {i: (t, axis) for i, t, axis in stmt.sizes_from}
    expr, mapping = user_names(stmt.expr, stmt.indices, classes, sized)
    # Indices a tensor sizes, directly or through deltas (δ_ij alone sizes nothing).
    carried = set(statement_index_sources(Statement(stmt.target, stmt.indices, expr)))
    if stmt.like is not None and not set(stmt.indices) <= carried and expr != ZERO:
        expr = mul(E.power(Tensor(stmt.like, stmt.indices), 0), expr)
        carried |= set(stmt.indices)
    renamed = {mapping.get(i, i): src for i, src in sized.items()}
    while renamed:  # sizes to carry come from sizes_from: none without it
        sizes = {node.index for node in E.walk(expr) if isinstance(node, E.Size)}
        loose = sorted((sizes - carried) & renamed.keys())
        if not loose:
            break
        # One count per tensor: |i| |j| of X's two axes is Σ_ij X_ij^0, not two sums.
        tensor = renamed[loose[0]][0]
        group = {renamed[i][1]: i for i in loose if renamed[i][0] == tensor}
        carrier, names = _size_carrier(loose[0], tensor, group, expr, stmt, classes)
        expr = _substitute_size(expr, loose[0], carrier)
        carried |= names
    sizes_from = tuple(dict.fromkeys((mapping.get(i, i), t, axis) for i, t, axis in stmt.sizes_from))
    return Statement(stmt.target, stmt.indices, expr, like=stmt.like, sizes_from=sizes_from)


def _size_carrier(
    index: str, tensor: str, group: dict[int, str], e: Expr, stmt: Statement, classes: AxisClasses
) -> tuple[Expr, set[str]]:
    """``|i|`` written with the tensor axis whose length it is, and the names it carries:
    ``Σ_i x_i^0``, or ``(Σ_ij X_ij^0) / |j|`` for one axis of a matrix.  ``group``
    (axis -> size name) are the sizes of ``tensor``'s axes that need carrying: the
    count runs over them by their names, so one count carries them all."""
    program = classes.program
    base = classes.like.get(tensor, tensor)
    rank = program.rank(base) if (program.is_target(base) or base in classes.inputs) else max(group) + 1
    used = E.all_indices(e) | set(stmt.indices)
    indices = []
    for k in range(rank):
        if k in group:
            indices.append(group[k])
            continue
        name = fresh_index(used, classes.own_name(tensor, k) or "j")
        used.add(name)
        indices.append(name)
    count = sum_(indices, E.power(Tensor(tensor, tuple(indices)), 0))
    divisors = [E.power(E.Size(i), -1) for i in indices if i != index]
    return (mul(count, *divisors) if divisors else count), set(indices)


def _substitute_size(e: Expr, index: str, value: Expr) -> Expr:
    """``e`` with every ``|index|`` replaced by ``value``; ``|j| / |j|`` in a product cancels."""
    if isinstance(e, E.Size):
        return value if e.index == index else e
    if index not in E.index_names(e) or not e.children:
        return e
    out = E.rebuild(e, tuple(_substitute_size(child, index, value) for child in e.children))
    if isinstance(out, E.Mul):
        factors = list(out.factors)
        for f in list(factors):
            inverse = E.Pow(f, Fraction(-1)) if isinstance(f, E.Size) else None
            if inverse is not None and f in factors and inverse in factors:
                factors.remove(f)
                factors.remove(inverse)
        if len(factors) != len(out.factors):
            out = mul(*factors)
    return out


def _worth_a_statement(adjoint: Expr) -> bool:
    """Constant adjoints (1, 2 |n|) are inlined; anything that reads a tensor is computed once."""
    return any(isinstance(node, Tensor) for node in E.walk(adjoint))


def _contributions(
    program: Program,
    stmt: Statement,
    reads: list[tuple[str, Expr]],
    seed_expr: Expr,
    taken: set[str],
    forward_values: dict[Expr, Expr],
    cache: dict,
) -> list[tuple[str, Expr]]:
    """The nonzero contribution of ``stmt`` to the adjoint of each tensor in ``reads``."""
    found = []
    for read, part in reads:
        contribution = _contribution(program, stmt, part, read, seed_expr, taken, forward_values, cache)
        if contribution.expr != ZERO:
            found.append((read, contribution))
    return found


def _unsized(e: Expr) -> bool:
    """``e`` holds a size |i| of an index that no tensor or delta of ``e`` carries."""
    carried = {i for node in E.walk(e) if isinstance(node, (Tensor, E.Delta)) for i in node.indices}
    return any(isinstance(node, E.Size) and node.index not in carried for node in E.walk(e))


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
    cache: dict,
) -> Expr:
    """Σ_I seed_I ∂stmt_I/∂read_K, simplified, with K renamed to read's gradient indices.

    A program built in a loop repeats one statement shape with other tensor names
    (x7, s6, dLds7), so contributions are cached by shape: tensor names become
    placeholders in the key and are put back in the result.
    """
    own = program.statement(read).indices if program.is_target(read) else _own_indices(program, read, taken, cache)
    # Placeholders number the names by first appearance in the part of the statement
    # that reads ``read`` (all of it, or its terms that mention it): the renamed part
    # is computed once however many tensors it reads, and one term of a long loss
    # looks like every other.
    shape = _part_shape(part, stmt.target, seed_expr, cache)
    to_placeholder = shape.to_placeholder
    renamed_part = shape.part
    key = (renamed_part, shape.seed, to_placeholder[read], stmt.indices, own, bool(forward_values))
    hit = cache.get(key)
    if hit is None:
        hit = _derive_contribution(program, stmt, renamed_part, read, to_placeholder,
                                   shape.seed, taken, forward_values, own)
        cache[key] = hit
    back = shape.back
    expr = E.rename_tensors(hit.expr, back)
    if not hit.sizes_from:
        return _Contribution(expr, ())
    # Sizes get fresh names per use: two contributions' |n| need not be one size.
    fresh = {}
    for index, _, _ in hit.sizes_from:
        fresh[index] = fresh_index(taken | E.all_indices(expr), "n")
        taken.add(fresh[index])
    sized = tuple((fresh[i], back[t], axis) for i, t, axis in hit.sizes_from)
    return _Contribution(rename_indices(expr, fresh), sized)


@dataclass
class _Shape:
    """Part of a statement and its seed with tensor names replaced by placeholders."""

    to_placeholder: dict[str, str]
    back: dict[str, str]
    part: Expr
    seed: Expr


def _part_shape(part: Expr, target: str, seed_expr: Expr, cache: dict) -> _Shape:
    key = ("shape", part, target, seed_expr)
    shape = cache.get(key)
    if shape is None:
        names = dict.fromkeys(
            [r.name for r in E.tensor_refs(part)] + [target] + [r.name for r in E.tensor_refs(seed_expr)]
        )
        to_placeholder = {name: f"T{k}" for k, name in enumerate(names)}
        back = {placeholder: name for name, placeholder in to_placeholder.items()}
        # One object per renamed form: the contribution cache's keys then compare by
        # identity, not node by node, for every step of a loop.
        renamed_part = E.rename_tensors(part, to_placeholder)
        renamed_seed = E.rename_tensors(seed_expr, to_placeholder)
        renamed_part = cache.setdefault(("form", renamed_part), renamed_part)
        renamed_seed = cache.setdefault(("form", renamed_seed), renamed_seed)
        shape = cache[key] = _Shape(to_placeholder, back, renamed_part, renamed_seed)
    return shape


@dataclass(frozen=True)
class _Contribution:
    """One term of an adjoint, and where the sizes |i| it holds come from."""

    expr: Expr
    sizes_from: tuple[tuple[str, str, int], ...]


def _derive_contribution(
    program: Program,
    stmt: Statement,
    part: Expr,
    read: str,
    to_placeholder: dict[str, str],
    seed_expr: Expr,
    taken: set[str],
    forward_values: dict[Expr, Expr],
    own: tuple[str, ...],
) -> Expr:
    """The uncached contribution, on the placeholder-named statement."""
    forward_values = {E.rename_tensors(k, to_placeholder): E.rename_tensors(v, to_placeholder)
                      for k, v in forward_values.items()}
    read = to_placeholder[read]
    rank = len(own)
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
        return _Contribution(ZERO, ())
    aliases: dict[str, str] = {}
    contribution = simplify(sum_(stmt.indices, mul(local, seed_expr)), aliases=aliases)
    if contribution == ZERO:
        return _Contribution(ZERO, ())
    # A size |i| of a summed-away index: its length is that of a tensor axis of the statement.
    target = to_placeholder[stmt.target]
    sources = statement_index_sources(Statement(target, stmt.indices, part))
    sources.update({i: (target, axis) for axis, i in enumerate(stmt.indices)})
    sized = []
    for node in E.walk(contribution):
        if isinstance(node, E.Size) and node.index not in {s[0] for s in sized}:
            origin = aliases.get(node.index, node.index)
            if origin in sources:
                sized.append((node.index, *sources[origin]))
    # A size's index may be a name that the renaming below gives to an index of the
    # tensor (|j| v_kk, then k -> j): give each size a name used nowhere else first.
    avoid = set(own) | set(wrt_t) | E.all_indices(contribution)
    renamed = {}
    for index, _, _ in sized:
        renamed[index] = fresh_index(avoid, "n")
        avoid.add(renamed[index])
    contribution = rename_indices(contribution, renamed)
    sized = [(renamed[i], t, axis) for i, t, axis in sized]
    # Name the adjoint's indices as the tensor's own (its target indices, or its first use).
    contribution = rename_bound_apart(contribution, avoid=set(own) | set(wrt_t) | {s[0] for s in sized})
    return _Contribution(rename_indices(contribution, dict(zip(wrt_t, own, strict=True))), tuple(sized))


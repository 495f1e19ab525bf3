"""Index sizes: inferred from the arrays passed, unified through deltas, or declared.

Within one statement, every occurrence of an index has one size (LANGUAGE.md
§5 rule 6), and all indices of a delta share one size.  Sizes of a target's
indices give the shape of the target, which later statements then see.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import MissingInputError, RankError, SizeError, Span, UnknownInputError
from .expr import Delta, Expr, MatFn, Pick, Shift, Size, Sum, Tensor, position_text, walk
from .program import Program, Statement

__all__ = ["ShapeInfo", "arithmetic_positions", "infer_shapes", "statement_sizes", "step_shapes", "valid_length"]


def _ref_text(ref: Tensor | Delta, source: str | None) -> str:
    if source is not None and ref.span is not None:
        return source[ref.span.start : ref.span.end]
    from .printing.text import index_suffix

    head = ref.name if isinstance(ref, Tensor) else "δ"
    return head + index_suffix(ref.indices)


@dataclass(frozen=True)
class ShapeInfo:
    """Shapes of every tensor (inputs and targets) and index sizes per statement."""

    shapes: dict[str, tuple[int, ...]]
    sizes: list[dict[str, int]]


def statement_sizes(
    stmt: Statement,
    shapes: Mapping[str, tuple[int, ...]],
    declared: Mapping[str, int] | None = None,
    source: str | None = None,
) -> dict[str, int]:
    """The size of every index of ``stmt``, given the shapes of the tensors it reads."""
    return _statement_sizes(stmt.expr, shapes, _declared_sizes(declared), source, stmt.indices)


def _declared_sizes(declared: Mapping[str, int] | None) -> dict[str, int]:
    """``declared`` checked to hold whole, non-negative sizes (bool, 2.5, "3" and None are not)."""
    if declared is not None and not isinstance(declared, Mapping):
        raise SizeError(
            f"sizes must map index names to sizes, got {type(declared).__name__}",
            hint="write sizes={'i': 3}",
        )
    out = {}
    for index, n in (declared or {}).items():
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise SizeError(
                f"the declared size of index {index!r} must be a non-negative integer, got {n!r}",
                hint=f"declare sizes as whole numbers, e.g. sizes={{{index!r}: 3}}",
            )
        out[index] = int(n)
    return out


def _statement_sizes(expr: Expr, shapes, declared, source, target_indices=(), partial=False) -> dict[str, int]:
    """``partial``: tensors without a shape yet (a recurrence's members) are skipped, and
    indices left unsized are left out instead of raising."""
    size: dict[str, int] = {}
    origin: dict[str, tuple[Tensor | Delta | None, int]] = {}
    deltas: list[Delta] = []
    matrices: list[MatFn] = []
    for node in walk(expr):
        if isinstance(node, MatFn):
            matrices.append(node)
        if isinstance(node, Delta):
            deltas.append(node)
        elif isinstance(node, Tensor):
            if partial and node.name not in shapes:
                continue
            shape = shapes[node.name]
            for axis, (index, n) in enumerate(zip(node.indices, shape, strict=True)):
                if index in size and size[index] != n:
                    first, first_axis = origin[index]
                    raise SizeError(
                        f"index {index!r} has size {size[index]} in {_ref_text(first, source)} "
                        f"(axis {first_axis}) but size {n} in {_ref_text(node, source)} (axis {axis})",
                        source=source,
                        spans=[first.span, node.span],
                        hint="the same index must have the same size everywhere in its statement",
                    )
                if index not in size:
                    size[index] = n
                    origin[index] = (node, axis)
    # A declared size constrains the index wherever it occurs in this statement, except where
    # it names the summed axis of a read (the parser's own name in x[t-1] or Z[n, y[n]]).
    reads = {n.index for n in walk(expr) if isinstance(n, (Shift, Pick))} & {
        i for n in walk(expr) if isinstance(n, Sum) for i in n.indices}
    for index, n in declared.items():
        if not _occurs(expr, index) or index in reads:
            continue
        if index in size and size[index] != int(n):
            first, axis = origin[index]
            raise SizeError(
                f"index {index!r} is declared with size {n} but has size {size[index]} in "
                f"{_ref_text(first, source)} (axis {axis})",
                source=source,
                spans=[first.span],
                hint="remove the declaration or pass arrays of the declared size",
            )
        if index not in size:
            size[index] = int(n)
            origin[index] = (None, -1)
    # Deltas tie their indices to one size; propagate until nothing changes.
    changed = True
    while changed:
        changed = _square(matrices, size, origin, source)
        for d in deltas:
            known = [(i, size[i]) for i in d.indices if i in size]
            for (i, n), (j, m) in zip(known, known[1:], strict=False):
                if n != m:
                    raise SizeError(
                        f"the indices of {_ref_text(d, source)} have different sizes: "
                        f"{i!r} has size {n} ({_origin_text(origin[i], source)}) but "
                        f"{j!r} has size {m} ({_origin_text(origin[j], source)})",
                        source=source,
                        spans=[d.span, _origin_span(origin[i]), _origin_span(origin[j])],
                        hint="all indices of a Kronecker delta must range over one size",
                    )
            if known:
                for i in d.indices:
                    if i not in size:
                        size[i] = known[0][1]
                        origin[i] = origin[known[0][0]]
                        changed = True
    _valid_sizes([n for n in walk(expr) if isinstance(n, Shift)], size, origin, source, strict=not partial)
    if partial:
        return size
    for d in deltas:
        missing = [i for i in d.indices if i not in size]
        if missing:
            raise SizeError(
                f"the size of index {missing[0]!r} cannot be determined: it occurs only in deltas",
                source=source,
                spans=[d.span],
                hint=f"declare it, e.g. eg.evaluate(program, sizes={{{missing[0]!r}: 3}}, ...)",
            )
    for node in walk(expr):
        if isinstance(node, Pick) and node.index not in size:
            raise SizeError(
                f"the size of index {node.index!r} cannot be determined: it occurs only in "
                f"the delta δ[{node.index}, {node.table.name}[...]], whose values {node.table.name!r} indexes",
                source=source,
                spans=[node.span],
                hint=f"use {node.index!r} in a tensor of the same statement, or declare it, "
                f"e.g. sizes={{{node.index!r}: 10}}",
            )
        if isinstance(node, Size) and node.index not in size:
            raise SizeError(
                f"the size of index {node.index!r} in |{node.index}| cannot be determined",
                source=source,
                hint=f"use {node.index!r} in a tensor of the same statement, or declare it, "
                f"e.g. sizes={{{node.index!r}: 3}}",
            )
    return size


def _valid_sizes(shifts: list[Shift], size: dict, origin: dict, source: str | None, strict: bool = True) -> None:
    """The "valid" size of an index that only index arithmetic sizes (LANGUAGE.md §11);
    ``strict``: an index left unsized is a ``SizeError`` (else it is left out).

    In ``δ[j, a·i + Σ b·k + c]`` with every name but ``i`` sized, ``|i|`` is the largest size for
    which no position passes the end of ``j``'s axis: ⌊(|j| − 1 − c − Σ max(b, 0)(|k| − 1)) / a⌋ + 1.
    """
    changed = True
    while changed:
        changed = False
        found: dict[str, list] = {}  # index -> (its valid size by one shift, the shift)
        negative: dict[str, Shift] = {}
        for s in shifts:
            missing = [(a, n) for a, n in s.terms if n not in size]
            if len(missing) != 1 or s.index not in size:
                continue
            (a, i), = missing
            if a < 0:
                negative.setdefault(i, s)
                continue
            reach = s.offset + sum(max(b, 0) * (size[k] - 1) for b, k in s.terms if k != i)
            found.setdefault(i, []).append((max(0, (size[s.index] - 1 - reach) // a + 1), s))
        # Several shifts size one index: the smallest, so that no read passes its array's end.
        for i, candidates in found.items():
            n, s = min(candidates, key=lambda c: c[0])
            size[i] = n
            origin[i] = origin[s.index]
            changed = True
        for i, s in negative.items():
            if strict and i not in size and not found:
                raise SizeError(
                    f"the size of index {i!r} cannot be determined: it occurs only with a negative "
                    f"coefficient in the position {position_text(s.terms, s.offset)}",
                    source=source,
                    spans=[s.span] if s.span else None,
                    hint=f"declare it, e.g. sizes={{{i!r}: 10}}",
                )
    if not strict:
        return
    for s in shifts:
        missing = [n for _, n in s.terms if n not in size]
        if len(missing) > 1:
            names = " and ".join(repr(n) for n in missing)
            raise SizeError(
                f"the sizes of indices {names} cannot be determined: they are sized only by the index "
                f"arithmetic {position_text(s.terms, s.offset)}",
                source=source,
                spans=[s.span] if s.span else None,
                hint=f"declare one of them, e.g. sizes={{{missing[-1]!r}: 2}} for a window of 2",
            )
        if s.index not in size:
            raise SizeError(
                f"the size of index {s.index!r} cannot be determined: it occurs only in the shifted "
                f"delta δ[{s.index}, {position_text(s.terms, s.offset)}]",
                source=source,
                spans=[s.span] if s.span else None,
                hint=f"use {s.index!r} in a tensor of the same statement, or declare it, e.g. sizes={{{s.index!r}: 10}}",
            )


def arithmetic_positions(expr: Expr) -> list[tuple[Shift, str]]:
    """The deltas of index arithmetic in one statement whose position has exactly one index
    that no tensor there carries, with a positive coefficient: ``(δ[j, i+k], "i")`` of
    ``Y[n,i] = X[n, i+k] K[k]``, where the valid size rule sizes ``i``."""
    carried = {i for node in walk(expr) if isinstance(node, (Tensor, Delta)) for i in node.indices}
    out = []
    for node in walk(expr):
        if isinstance(node, Shift):
            loose = [(a, i) for a, i in node.terms if i not in carried]
            if len(loose) == 1 and loose[0][0] > 0:
                out.append((node, loose[0][1]))
    return out


def valid_length(shift: Shift, index: str, size_of) -> int | None:
    """The length of the axis ``shift`` reads for which the valid size rule gives ``index`` the
    size ``size_of(index)``: the reach of the other terms plus ``a·(|index| − 1) + 1``; None
    where ``size_of`` (a name -> size or None) does not know a size."""
    sizes = {n: size_of(n) for _, n in shift.terms}
    if any(n is None for n in sizes.values()):
        return None
    a = next(a for a, n in shift.terms if n == index)
    reach = shift.offset + sum(b * (sizes[n] - 1) for b, n in shift.terms if n != index and b > 0)
    return max(1, reach + a * (sizes[index] - 1) + 1)


def _square(matrices: list[MatFn], size: dict, origin: dict, source: str | None) -> bool:
    """inv/det/logdet take square matrices: both axes one size (one sized from the other)."""
    changed = False
    for m in matrices:
        i, j = m.axes
        if i in size and j in size and size[i] != size[j]:
            raise SizeError(
                f"{m.op}_{i}{j}(...) needs a square matrix, but its rows {i!r} have size {size[i]} "
                f"({_origin_text(origin[i], source)}) and its columns {j!r} have size {size[j]} "
                f"({_origin_text(origin[j], source)})",
                source=source,
                spans=[s for s in (m.span, _origin_span(origin[i]), _origin_span(origin[j])) if s],
                hint=f"{m.op} is defined for square matrices only; for a least-squares solve write "
                f"inv_ij(X_ki X_kj) X_lj y_l",
            )
        for a, b in ((i, j), (j, i)):
            if a in size and b not in size:
                size[b] = size[a]
                origin[b] = origin[a]
                changed = True
    return changed


def _origin_text(origin: tuple[Tensor | Delta | None, int], source: str | None) -> str:
    ref, axis = origin
    if ref is None:
        return "declared"
    return f"from {_ref_text(ref, source)}, axis {axis}"


def _origin_span(origin: tuple[Tensor | Delta | None, int]) -> Span | None:
    return origin[0].span if origin[0] is not None else None


def _occurs(expr: Expr, index: str) -> bool:
    return any(
        (isinstance(n, (Tensor, Delta, Shift)) and index in n.indices)
        or (isinstance(n, (Size, Pick)) and n.index == index)
        for n in walk(expr)
    )


def check_inputs(program: Program, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every input passed, nothing unknown passed, each with the right number of axes."""
    inputs = program.inputs
    targets = set(program.targets)
    unknown = [name for name in shapes if name not in inputs and name not in program.unread]
    if unknown:
        name = unknown[0]
        if name in targets:
            raise UnknownInputError(
                f"{name!r} is computed by the program and cannot be passed as an input",
                source=program.source,
                spans=[program.statement(name).target_span],
                hint="remove it from the arrays; the program assigns it",
            )
        close = difflib.get_close_matches(name, inputs, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownInputError(
            f"{name!r} is not an input of the program (its inputs are {', '.join(inputs)})",
            hint=hint + "pass exactly the program's inputs",
        )
    for name in inputs:
        ref = program.first_use(name)
        if name not in shapes:
            raise MissingInputError(
                f"input {name!r} was not passed",
                source=program.source,
                spans=[ref.span],
                hint=f"pass it: eg.evaluate(program, {name}=...); the program's inputs are "
                f"{', '.join(inputs)}",
            )
        shape = shapes[name]
        if len(shape) != len(ref.indices):
            from .printing.text import index_suffix

            written = name + index_suffix(ref.indices)
            raise RankError(
                f"{name!r} has {len(ref.indices)} ind{'ex' if len(ref.indices) == 1 else 'ices'} in "
                f"{written} but the array passed has {len(shape)} ax{'is' if len(shape) == 1 else 'es'} "
                f"(shape {tuple(shape)})",
                source=program.source,
                spans=[ref.span],
                hint="pass an array with one axis per index"
                + (", or a number for a scalar" if not ref.indices else ""),
            )


def infer_shapes(
    program: Program,
    shapes: Mapping[str, tuple[int, ...]],
    declared: Mapping[str, int] | None = None,
    context: Mapping[str, tuple[int, ...]] | None = None,
) -> ShapeInfo:
    """Shapes of all targets and the index sizes of every statement.

    ``context``: shapes of arrays the program does not read but whose shape a gradient
    statement takes (``dLdb_h`` has b's shape; asked for alone, its statements may not read b)."""
    check_inputs(program, shapes)
    declared = _declared_sizes(declared)
    all_shapes = {k: tuple(int(n) for n in v) for k, v in (context or {}).items()}
    all_shapes.update((k, tuple(int(n) for n in v)) for k, v in shapes.items())
    per_statement = []
    firsts = {rec.members[0]: rec for rec in program.recurrences}
    for stmt in program.statements:
        if stmt.target in firsts:  # a recurrence's members read each other (§12)
            _recurrence_shapes(program, firsts[stmt.target], all_shapes, declared)
        known = declared
        if stmt.sizes_from:
            known = {**declared, **{i: all_shapes[t][axis] for i, t, axis in stmt.sizes_from if t in all_shapes}}
        like = all_shapes.get(stmt.like) if stmt.like is not None else None
        if like is not None:
            # The target has the shape of ``like``: its indices are sized before the deltas
            # propagate sizes (a gradient dLdu_ij = δ_ij of a trace reads no tensor).
            known = {**known, **dict(zip(stmt.indices, like, strict=True))}
        size = _statement_sizes(stmt.expr, all_shapes, known, program.source, stmt.indices)
        if like is not None:
            for i, n in zip(stmt.indices, like, strict=True):
                size.setdefault(i, n)
        missing = [i for i in stmt.indices if i not in size]
        if missing:  # pragma: no cover - every target index occurs on the right
            raise SizeError(
                f"the size of index {missing[0]!r} cannot be determined",
                source=program.source,
                spans=[stmt.target_span or Span(0, 0)],
            )
        all_shapes[stmt.target] = tuple(size[i] for i in stmt.indices)
        per_statement.append(size)
    return ShapeInfo(all_shapes, per_statement)


def _recurrence_shapes(program: Program, rec, all_shapes: dict, declared: dict) -> None:
    """The shapes of a recurrence's members, from what sizes their statements without
    each other's reads (every statement is checked in full afterwards)."""
    members = [program.statement(m) for m in rec.members]
    for _ in range(len(members)):
        for stmt in members:
            if stmt.target in all_shapes:
                continue
            shapes = {k: v for k, v in all_shapes.items()}
            size = _statement_sizes(stmt.expr, shapes, declared, program.source, stmt.indices, partial=True)
            if all(i in size for i in stmt.indices):
                all_shapes[stmt.target] = tuple(size[i] for i in stmt.indices)
    for stmt in members:
        if stmt.target not in all_shapes:
            size = _statement_sizes(stmt.expr, all_shapes, declared, program.source, stmt.indices, partial=True)
            missing = next(i for i in stmt.indices if i not in size)
            raise SizeError(
                f"the size of index {missing!r} of {stmt.target!r} cannot be determined: only the "
                "recurrence's own reads carry it",
                source=program.source,
                spans=[stmt.target_span] if stmt.target_span else None,
                hint=f"read an input with {missing!r} in the recurrence, or declare it, "
                f"e.g. sizes={{{missing!r}: 10}}",
            )


def step_shapes(plan, shapes: Mapping[str, tuple[int, ...]], declared: Mapping[str, int] | None = None
                ) -> tuple[ShapeInfo | None, ShapeInfo]:
    """The index sizes of a recurrence's step form (:func:`eingrad.recurrence.step_plan`): of
    its hoisted statements (None if it has none) and of its step program, from the shapes of
    the arrays around it (the program's inputs and targets).  A step reads an array without
    its recurrence axis; an indicator of ``δ[t, c]`` is a scalar."""
    known = dict(shapes)
    hoisted = None
    if plan.hoisted:
        pre = Program(plan.hoisted, plan.step.source)
        hoisted = infer_shapes(pre, {k: known[k] for k in pre.inputs}, declared)
        known.update(hoisted.shapes)
    given: dict[str, tuple[int, ...]] = {}
    for read in plan.reads:
        whole = known[read.tensor]
        given[read.name] = whole[:read.axis] + whole[read.axis + 1:]
    given.update((name, ()) for name, _ in plan.indicators)
    given.update((k, known[k]) for k in plan.step.inputs if k not in given)
    return hoisted, infer_shapes(plan.step, {k: given[k] for k in plan.step.inputs}, declared)

"""Recurrences (LANGUAGE.md §12) in generated code: a loop over the steps.

A recurrence group runs in its step form (:func:`eingrad.recurrence.step_plan`): the
statements it hoists (the parts that read no member, ``x_tnd W_dh``) are ordinary
statements of the main function, computed over every step at once; then one call of a
module-level function generated here runs the steps::

    s = _recurrence_0(size_t, size_n, size_h, size_k, xp.float64, sPre, U, b)

numpy, CuPy, torch and dask get a Python loop whose body is the step program's code,
inlined (no call per step): per step the slices of the arrays it reads (``sPre[τ]``,
zero outside the array), the indicators of ``δ[t, c]`` (0-d arrays of the members'
dtype), the members' earlier steps (kept in variables, never read back from an array),
and each member's value appended to a list, stacked once after the loop (no in-place
write into an array autograd may record: torch inputs that require grad work).  JAX gets
``jax.lax.scan`` (carry: the members' last ``depth`` steps; xs: the slices, shifted
beforehand with zero padding; ``reverse=True`` for a backward recurrence), so the
compiled function stays one ``jax.jit`` program.

Every size the step code uses is a size variable of the main function (read from the
arrays at entry and checked there), passed as an argument: the step code reads no size
and checks nothing per step, and nothing in it depends on the number of steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import expr as E
from ..errors import check_allocation
from ..recurrence import StepRead
from .buffers import resolve_stacks
from .emit import Generator, statement_text
from .linalg import formed_inverses
from .lines import OUT, Line, complete_uses, debug_checks, release_dead, write_in_place, written

__all__ = ["HELPERS", "LoopCode", "emit_loop", "laid_out"]

# Defined in the generated module when a loop calls them (``used_helpers`` keeps only those).
HELPERS = {
    "numpy": '''
def _step_dtype(*arrays):
    return xp.result_type(*arrays)
''',
    "torch": '''
def _step_dtype(*arrays):
    dtype = arrays[0].dtype
    for a in arrays[1:]:
        dtype = xp.promote_types(dtype, a.dtype)
    return dtype
''',
    "jax": '''
def _step_dtype(*arrays):
    return xp.result_type(*arrays)

def _shifted(x, axis, offset, n):
    """Row τ (of n) is x at τ + offset along ``axis`` (moved first), zero outside x."""
    x = xp.moveaxis(x, axis, 0)
    before = min(max(-offset, 0), n)
    end = min(max(x.shape[0] - offset, before), n)
    part = x[before + offset:end + offset]
    if before or end < n:
        part = xp.pad(part, ((before, n - end),) + ((0, 0),) * (x.ndim - 1))
    return part
''',
}
HELPERS["cupy"] = HELPERS["dask"] = HELPERS["numpy"]


@dataclass
class LoopCode:
    """A recurrence's loop: the module-level function's source and the call's lines in the
    main function (members bound to the arrays it returns)."""

    source: str
    lines: list[Line] = field(default_factory=list)


def laid_out(plan):
    """``plan`` (a ``StepPlan``) with each hoisted array laid out as the loop reads it: the
    axis sliced per step first, then the others in the order of the member reading it
    (``E[w[t, n], h]`` over every step is ``[t, n, h]``, not ``[h, t, n]``; the gradient's
    ``1 - s_knj²`` read at ``k = t + 1`` is ``[k, n, j]``): a step's slice is contiguous
    and needs no transpose.  The same values: a hoisted target's index order is free."""
    from ..program import Program, Statement

    hoisted = list(plan.hoisted)
    reads = list(plan.reads)
    statements = list(plan.step.statements)
    for h, stmt in enumerate(hoisted):
        mine = [k for k, r in enumerate(reads) if r.tensor == stmt.target]
        axes = {reads[k].axis for k in mine}
        if len(axes) != 1:
            continue
        (q,) = axes
        names = {reads[k].name for k in mine}
        rest = [i for p, i in enumerate(stmt.indices) if p != q]
        # the order of the first statement that reads a slice: its target's indices first
        use = next(((node, st) for st in statements for node in E.walk(st.expr)
                    if isinstance(node, E.Tensor) and node.name in names), None)
        if use is None:
            continue
        node, reader = use
        order = sorted(range(len(rest)), key=lambda p: (reader.indices.index(node.indices[p])
                                                        if node.indices[p] in reader.indices else len(reader.indices), p))
        if q == 0 and order == sorted(order):
            continue
        hoisted[h] = Statement(stmt.target, (stmt.indices[q],) + tuple(rest[p] for p in order), stmt.expr,
                               span=stmt.span, target_span=stmt.target_span)
        for k in mine:
            reads[k] = dataclasses.replace(reads[k], axis=0)
        statements = [dataclasses.replace(st, expr=_permuted(st.expr, names, order)) for st in statements]
    if hoisted == list(plan.hoisted):
        return plan
    step = Program(tuple(statements), plan.step.source)
    return dataclasses.replace(plan, hoisted=tuple(hoisted), reads=tuple(reads), step=step)


def _permuted(e, names: set[str], order: list[int]):
    """``e`` with every read of a tensor in ``names`` taking its indices in ``order``."""
    if isinstance(e, E.Tensor):
        if e.name in names:
            return E.Tensor(e.name, tuple(e.indices[p] for p in order), e.span)
        return e
    if not (E.mentions(e) & names):
        return e
    return E.rebuild(e, tuple(_permuted(c, names, order) for c in e.children))


class _Recorded:
    """A statement's size codes (``compile._Codes``) that remembers the variables used."""

    def __init__(self, codes, used: dict[str, None]) -> None:
        self.codes, self.used = codes, used

    def get(self, index: str) -> str | None:
        code = self.codes.get(index)
        if code is not None:
            self.used.setdefault(code)
        return code


def emit_loop(
    main: Generator,
    plan,
    name: str,
    step_sizes: list[dict[str, int]],
    real_step_sizes: list[dict[str, int]],
    member_codes: Callable[[str], object],
    member_sizes: Callable[[str], tuple[dict[str, int], dict[str, int]]],
    program,
    in_range: Callable[[str, int], bool],
) -> LoopCode:
    """The loop of the recurrence ``plan`` (a ``StepPlan``), named ``name``.

    ``step_sizes``/``real_step_sizes``: the index sizes of each step statement at the
    sizes the code is planned for and at the call's; ``member_codes(m)``: the size codes
    of member ``m``'s statement in the main function; ``member_sizes(m)``: its sizes
    (planned, the call's); ``program``: the program the group is in; ``in_range(tensor,
    axis)``: that axis of ``tensor`` surely has one entry per step (its size is the
    recurrence index's), so a read at the step needs no bounds check."""
    rec, step = plan.recurrence, plan.step
    backend = main.backend.name
    used: dict[str, None] = {}  # size variables the loop reads, in order of first use
    integer = {r.name for r in plan.reads if r.tensor in main.integer}
    integer |= {n for n in step.inputs if n in main.integer}
    gen = Generator(main.backend, fuse=main.fuse, debug=main.debug, itemsize=main.itemsize,
                    integer=frozenset(integer))
    for n in step.inputs:
        gen.var(n)
    gen.formed_inverses = formed_inverses(list(step.statements), step_sizes)
    for k, stmt in enumerate(step.statements):
        codes = _Recorded(member_codes(stmt.target), used)
        gen.statement(stmt, step_sizes[k], statement_text(stmt), None, codes, real_step_sizes[k])
    # numpy, CuPy, torch without autograd: each member an array made before the loop, each
    # step written into its row; otherwise (autograd records, dask) a list stacked after.
    prealloc = backend in ("numpy", "cupy") or (backend == "torch" and main.fuse)
    arrays = {m: f"_m{k}" for k, m in enumerate(rec.members)}
    rows = {m: _slice(arrays[m], rec.axis_of(m), "_tau") for m in rec.members} if prealloc else {}
    # (torch's debug check sees a column of a matrix overlap the next one: rows along the
    # first axis only are computed in place there, the others copied)
    into = {m: row for m, row in rows.items() if backend != "torch" or rec.axis_of(m) == 0}
    read_names = {r.name for r in plan.reads}
    indicator_names = {n for n, _ in plan.indicators}
    whole = [n for n in step.inputs if n not in read_names and n not in indicator_names]
    helpers, once, body, direct = _step_code(gen, list(step.inputs), list(step.targets), whole, into,
                                             tuple(arrays.values()))
    if gen.literal:
        main.literal = True

    def size_code(member: str, index: str) -> str:
        code = _Recorded(member_codes(member), used).get(index)
        if code is None:
            main.literal = True
            return str(member_sizes(member)[0][index])
        return code

    # ---- what the loop reads: sources sliced per step, arrays passed whole, indicators
    members = set(rec.members)
    sources: dict[str, str] = {}  # program tensor (not a member) -> parameter
    for r in plan.reads:
        if r.tensor not in members and r.tensor not in sources:
            sources[r.tensor] = f"_a{len(sources)}"
    shapes: dict[str, str] = {}  # member -> its step shape in code
    full: dict[str, str] = {}  # member -> its whole shape in code
    for m in rec.members:
        stmt = program.statement(m)
        axis = rec.axis_of(m)
        parts = [size_code(m, i) for i in stmt.indices]
        step_parts = parts[:axis] + parts[axis + 1:]
        shapes[m] = _tuple(step_parts)
        full[m] = _tuple(parts)
        _check_member(main, m, member_sizes(m)[1], stmt.indices)
    first, axis0 = plan.length_of
    steps_code = size_code(first, program.statement(first).indices[axis0])
    # ---- the members' earlier (later, backward) steps each step reads: carried variables
    depth: dict[str, int] = {}
    carried: dict[tuple[str, int], str] = {}
    for r in plan.reads:
        if r.tensor in members:
            depth[r.tensor] = max(depth.get(r.tensor, 0), abs(r.offset))
            carried[(r.tensor, abs(r.offset))] = gen.var(r.name)
    taken = set(gen.taken)
    for m, d in depth.items():
        for k in range(1, d + 1):
            carried.setdefault((m, k), _local(f"_p{rec.members.index(m)}_{k}", taken))
    like = next((v for k, v in main.names.items() if k not in main.integer), None)
    like_code = like or "xp.asarray(0.0, dtype=xp.float64)"
    params = list(used) + ["_like"] + list(sources.values()) + [gen.var(n) for n in whole]
    floats = ["_like"] + [sources[t] for t in sources if t not in main.integer]
    floats += [gen.var(n) for n in whole if n not in integer]
    args = list(used) + [like_code] + [main.var(t) for t in sources] + [main.var(n) for n in whole]
    # ---- the function
    lines = [f"def {name}({', '.join(params)}):"]
    out = lines.append
    comment = ", ".join(rec.members)
    index = program.statement(first).indices[axis0]
    out(f"    # the recurrence {comment} along {index}, step by step "
        f"{'forward' if rec.direction > 0 else 'backward'}")
    out(f"    _dt = _step_dtype({', '.join(floats)})")
    for text in once:
        out("    " + text)
    zeros = _zeros_template(backend)
    if backend == "jax":
        _jax_loop(out, plan, gen, sources, in_range, steps_code, shapes, carried, depth, body, zeros)
        results = [f"_ys[{k}]" if rec.axis_of(m) == 0 else f"xp.moveaxis(_ys[{k}], 0, {rec.axis_of(m)})"
                   for k, m in enumerate(rec.members)]
    else:
        results = _python_loop(out, plan, gen, sources, in_range, steps_code, shapes, carried, depth, body,
                               zeros, backend, arrays, rows, direct, full)
    out("    return (" + ", ".join(results) + ",)")
    source = helpers + "\n".join(lines) + "\n"
    # ---- the call in the main function
    uses = tuple(a for a in args[len(used):] if a.isidentifier())
    call = f"{name}({', '.join(args)})"
    out_lines: list[Line] = []
    if len(rec.members) == 1:
        target = main.var(rec.members[0])
        out_lines.append(Line(f"{target} = {call}[0]", target, uses, fresh=True))
    else:
        tup = main.fresh_name()
        out_lines.append(Line(f"{tup} = {call}", tup, uses))
        for k, m in enumerate(rec.members):
            target = main.var(m)
            out_lines.append(Line(f"{target} = {tup}[{k}]", target, (tup,), fresh=True))
    return LoopCode(source, out_lines)


def _step_code(gen: Generator, inputs: list[str], outputs: list[str], whole: list[str], rows: dict[str, str],
               skip: tuple[str, ...]) -> tuple[str, list[str], list[str], set[str]]:
    """(the helpers the step's code calls, its lines computed once before the loop, its lines
    in the loop, the members written into their rows).

    The passes of ``Generator.function`` over the step's lines, inputs and ``outputs`` kept
    (no size is read in the step: every size is the main function's).  Lines that read only
    the ``whole`` inputs (passed whole, the same at every step) and each other, as ``h0 V``
    of an initial state ``δ[t, 0] h0_nk V_kh``, run once before the loop.  ``rows``:
    member -> the row of its preallocated array (numpy, CuPy, torch without autograd); a
    member whose last step is elementwise is computed into its row (``xp.tanh(z,
    out=s_all[τ])``), no copy, the debug check of that write made here (``skip``: the
    arrays of rows)."""
    names = [gen.var(n) for n in inputs]
    out_vars = {gen.var(o) for o in outputs}
    lines = complete_uses(gen.lines, names)
    once = _invariant(lines, {gen.var(n) for n in whole}, out_vars)
    lines = [line for line in lines if line not in once]
    names += [line.defines for line in once if line.defines]  # inputs of the loop's lines
    keep = out_vars | set(names)
    lines = write_in_place(lines, keep)
    lines = resolve_stacks(lines, names, keep, gen.fresh_name, gen.masks)
    direct: set[str] = set()
    for m, row in rows.items():
        var = gen.var(m)
        line = next((line for line in reversed(lines) if line.defines == var), None)
        if line is not None and line.out_to is not None and line.view is None and line.alias is None:
            line.text = f"{var} = {line.out_to.replace(OUT, row)}"
            line.shares, line.fresh = None, False
            direct.add(m)
    lines = release_dead(complete_uses(lines, names), keep)
    if gen.debug:
        # (a member's row is written through its name too: the arrays of rows are not values)
        lines = debug_checks(lines, {line.view[0] for line in lines if line.view} | set(skip))
        for m in sorted(direct):
            var = gen.var(m)
            k = next(k for k, line in enumerate(lines) if line.defines == var and rows[m] in line.text)
            lines.insert(k, Line(f"_check_write({rows[m]}, {var!r}, locals(), {skip!r})"))
    texts = [line.text for line in lines]
    before = ["# the same at every step: computed once"] + [line.text for line in once] if once else []
    # The helpers those lines call, as the generator finds them for a function.
    probe = Generator(gen.backend, lines=[Line(text) for text in before + texts]).function("_probe", [], []).source
    return probe.partition("def _probe(")[0], before, texts, direct


def _invariant(lines: list[Line], whole: set[str], outputs: set[str]) -> list[Line]:
    """The lines that compute the same at every step: each reads only arrays passed whole and
    what such lines define, and no other line writes into what they define."""
    excluded: set[str] = set()
    while True:
        found: list[Line] = []
        same = set(whole)
        for line in lines:
            if line.text.startswith(("#", "del ")) or line.stacked is not None or line.view is not None:
                continue
            target = line.defines or written(line)
            if target is None or target in outputs or target in excluded or (target in whole):
                continue
            if line.defines is None and target not in same:
                continue  # a write into an array made per step
            if all(u in same for u in line.uses if u != line.defines):
                found.append(line)
                same.add(target)
        defined = {line.defines for line in found if line.defines}
        bad = {written(line) for line in lines if line not in found} & defined
        bad |= {line.defines for line in lines if line not in found and line.defines in defined}
        if not bad - excluded:
            return found
        excluded |= bad


def _check_member(main: Generator, member: str, real: dict[str, int], indices) -> None:
    if main.itemsize:
        check_allocation(tuple(real.get(i, 1) for i in indices), main.itemsize, f"the recurrence {member!r}")


def _tuple(parts: list[str]) -> str:
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _local(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _zeros_template(backend: str) -> str:
    if backend == "torch":
        return "xp.zeros({shape}, dtype=_dt, device=_like.device)"
    return "xp.zeros({shape}, dtype=_dt)"


def _at(offset: int) -> str:
    return "_tau" if offset == 0 else f"_tau {'+' if offset > 0 else '-'} {abs(offset)}"


def _slice(array: str, axis: int, at: str) -> str:
    return f"{array}[{':, ' * axis}{at}]"


def _python_loop(out, plan, gen, sources, in_range, steps_code, shapes, carried, depth, body, zeros, backend,
                 arrays: dict[str, str], rows: dict[str, str], direct: set[str], full: dict[str, str]) -> list[str]:
    """numpy, CuPy, torch, dask: ``for τ in range(T)`` with the step's code inlined; returns the
    members' code.  ``rows``: each member's row of its array made before the loop (none: a
    list per member, stacked after it); ``direct``: the members the step computes into their
    rows (the others are copied there)."""
    rec = plan.recurrence
    members = set(rec.members)
    device = ", device=_like.device" if backend == "torch" else ""
    if plan.indicators:
        one = f"xp.tensor(1.0, dtype=_dt{device})" if backend == "torch" else "xp.asarray(1.0, dtype=_dt)"
        out(f"    _one, _zero = {one}, {one.replace('1.0', '0.0')}")
    # Reads outside an array give zeros (of the array's dtype), made once; the bounds:
    # τ + c >= 0 for a read of an earlier step, τ + c < the array's length for a later one
    # or where that length may not be the number of steps.
    tests: dict[StepRead, list[str]] = {}
    zero_of: dict[str, str] = {}
    length_of: dict[str, str] = {}
    for r in plan.reads:
        if r.tensor in members:
            continue
        src, at = sources[r.tensor], _at(r.offset)
        test = [f"_tau >= {-r.offset}"] if r.offset < 0 else []
        if not in_range(r.tensor, r.axis):
            key = f"{src}.shape[{r.axis}]"
            if key not in length_of:
                length_of[key] = f"_n{len(length_of)}"
                out(f"    {length_of[key]} = {key}")
            test.append(f"{at} < {length_of[key]}")
        elif r.offset > 0:
            test.append(f"{at} < {steps_code}")
        if test:
            key = f"{src}:{r.axis}"
            if key not in zero_of:
                zero_of[key] = f"_z{len(zero_of)}"
                shape = f"{src}.shape[:{r.axis}] + {src}.shape[{r.axis + 1}:]"
                dev = f", device={src}.device" if backend == "torch" else ""
                out(f"    {zero_of[key]} = xp.zeros({shape}, dtype={src}.dtype{dev})")
            tests[r] = test
    for m, d in depth.items():
        names = [carried[(m, k)] for k in range(1, d + 1)]
        out(f"    {' = '.join(names)} = {zeros.format(shape=shapes[m])}")
    for m in rec.members:
        if rows:
            out(f"    {arrays[m]} = xp.empty({full[m]}, dtype=_dt{device})")
        else:
            out(f"    {arrays[m]} = []")
    order = f"range({steps_code})" if rec.direction > 0 else f"range({steps_code} - 1, -1, -1)"
    out(f"    for _tau in {order}:")
    for r in plan.reads:
        if r.tensor in members:
            continue
        src = sources[r.tensor]
        code = _slice(src, r.axis, _at(r.offset))
        if r in tests:
            code = f"{code} if {' and '.join(tests[r])} else {zero_of[f'{src}:{r.axis}']}"
        out(f"        {gen.var(r.name)} = {code}")
    for n, c in plan.indicators:
        out(f"        {gen.var(n)} = _one if _tau == {c} else _zero")
    for text in body:
        out("        " + text)
    for m in rec.members:
        if not rows:
            out(f"        {arrays[m]}.append({gen.var(m)})")
        elif m not in direct:
            out(f"        {rows[m]} = {gen.var(m)}")
    for m, d in depth.items():
        names = [carried[(m, k)] for k in range(1, d + 1)]
        out(f"        {', '.join(names[::-1])} = {', '.join(names[:-1][::-1] + [gen.var(m)])}")
    if rows:
        return [arrays[m] for m in rec.members]
    results = []
    dim = "dim" if backend == "torch" else "axis"
    for m in rec.members:
        if rec.direction < 0:
            out(f"    {arrays[m]}.reverse()")
        a, empty = rec.axis_of(m), zeros.format(shape=full[m])
        results.append(f"xp.stack({arrays[m]}, {dim}={a}) if {arrays[m]} else {empty}")
    return results


def _jax_loop(out, plan, gen, sources, in_range, steps_code, shapes, carried, depth, body, zeros) -> None:
    """JAX: ``lax.scan`` over the steps; xs the slices, shifted beforehand with zero padding."""
    rec = plan.recurrence
    members = set(rec.members)
    xs: list[tuple[str, str]] = []  # (step input, its array over the steps)
    for r in plan.reads:
        if r.tensor in members:
            continue
        src = sources[r.tensor]
        if r.offset == 0 and in_range(r.tensor, r.axis):
            whole = src if r.axis == 0 else f"xp.moveaxis({src}, {r.axis}, 0)"
        else:
            whole = f"_shifted({src}, {r.axis}, {r.offset}, {steps_code})"
        xs.append((gen.var(r.name), whole))
    for n, c in plan.indicators:
        xs.append((gen.var(n), f"(xp.arange({steps_code}) == {c}).astype(_dt)"))
    carry = [(m, k) for m, d in depth.items() for k in range(1, d + 1)]
    out("    _init = (" + ", ".join(zeros.format(shape=shapes[m]) for m, _ in carry) + ",)")
    out("    _xs = (" + "".join(f"{code}, " for _, code in xs) + ")")
    out("    def _body(_carry, _xs):")
    out("        " + "".join(f"{carried[c]}, " for c in carry) + "= _carry")
    if xs:
        out("        " + "".join(f"{name}, " for name, _ in xs) + "= _xs")
    for text in body:
        out("        " + text)
    new = []
    for m, k in carry:
        new.append(f"{gen.var(m)}.astype(_dt)" if k == 1 else carried[(m, k - 1)])
    ys = ", ".join(f"{gen.var(m)}.astype(_dt)" for m in rec.members)
    out(f"        return ({', '.join(new)},), ({ys},)")
    reverse = ", reverse=True" if rec.direction < 0 else ""
    out(f"    _carry, _ys = _jax.lax.scan(_body, _init, _xs, length={steps_code}{reverse})")

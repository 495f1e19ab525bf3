"""Recurrences over an index (LANGUAGE.md §12): detection, and the step form that runs them.

A statement that reads its own target at a constant shift of one index, or a group of
statements that read each other's targets at such shifts, is a *recurrence*::

    s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)

``s[t-1, n, k]`` is ``Σ_j s[j, n, k] δ[j, t-1]`` (§11): the read's axis is a summed index
tied to the statement's free index ``t`` by a unit shift.  A group is a strongly connected
set of statements of the dependency graph; every read inside it of a member is at the
member's recurrence axis, either at the same step (a member assigned earlier: the LSTM's
``h[t]`` reads ``c[t]``) or at a constant shift, all shifts of one sign (the direction).

The *step form* of a group is what evaluation and compilation run: the parts of each
statement that read no member are computed for every step at once before the loop
(``x[t] W + b`` is one matrix product, as hand-written backprop through time does it);
the rest is a program over one step, whose inputs are slices of arrays at the step
(or at a constant shift of it: zero outside the array) and whose targets are the
members at that step.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import expr as E
from .errors import ProgramError, Span
from .expr import Expr, Shift, Tensor, position_text

__all__ = ["Recurrence", "StepRead", "StepPlan", "find_recurrences", "step_plan"]


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A group of statements that read each other's targets at constant shifts of one index.

    ``members`` in program order; ``axis[m]`` the position of the recurrence index among the
    target's indices (its name in that statement is ``m``'s ``indices[axis[m]]``);
    ``direction`` +1 when the shifts read earlier steps (``s[t-1]``: the loop runs forward),
    -1 when they read later ones (an adjoint ``dLds[t+1]``); ``depth`` the largest shift.
    """

    members: tuple[str, ...]
    axis: tuple[tuple[str, int], ...]
    direction: int
    depth: int

    def axis_of(self, member: str) -> int:
        return dict(self.axis)[member]


def _tie(shift: Shift, binds: tuple[str, ...]) -> tuple[str, str, int] | None:
    """``(j, t, c)`` where the shift says ``j = t + c`` with ``j`` bound here and ``t`` not."""
    if len(shift.terms) != 1 or shift.terms[0][0] != 1:
        return None
    (_, name), = shift.terms
    if shift.index in binds and name not in binds:
        return shift.index, name, shift.offset
    if name in binds and shift.index not in binds:  # δ[t, j + c]: j = t - c
        return name, shift.index, -shift.offset
    return None


def _ties_of(e: Expr) -> dict[str, tuple[str, int, Shift]]:
    """The bound indices a sum ties to an outer index by a unit shift among its factors."""
    if not isinstance(e, E.Sum):
        return {}
    factors = e.body.factors if isinstance(e.body, E.Mul) else (e.body,)
    out = {}
    for f in factors:
        if isinstance(f, E.Delta) and len(f.indices) == 2 and len(set(f.indices)) == 2:
            a, b = f.indices  # δ_jt: j = t
            if (a in e.binds) != (b in e.binds):
                j, t = (a, b) if a in e.binds else (b, a)
                out.setdefault(j, (t, 0, f))
            continue
        if isinstance(f, Shift):
            tie = _tie(f, e.binds)
            if tie is not None and tie[0] not in out:
                out[tie[0]] = (tie[1], tie[2], f)
            elif tie is None and f.index in e.binds:  # s[2t], s[t+k]: kept for the error
                out.setdefault(f.index, (None, None, f))
    return out


@dataclass(frozen=True, slots=True)
class _Read:
    ref: Tensor
    ties: dict  # bound index -> (outer index, offset, shift)
    in_matfn: bool


def _reads(e: Expr, names: set[str], ties: dict | None = None, in_matfn: bool = False, out=None) -> list[_Read]:
    """Every reference to a tensor in ``names``, with the shift ties around it."""
    out = [] if out is None else out
    ties = {} if ties is None else ties
    if isinstance(e, Tensor):
        if e.name in names:
            out.append(_Read(e, ties, in_matfn))
        return out
    if not (E.mentions(e) & names):
        return out
    own = _ties_of(e)
    if own:
        ties = {**ties, **own}
    for child in e.children:
        _reads(child, names, ties, in_matfn or isinstance(e, E.MatFn), out)
    return out


def find_recurrences(statements, source: str | None = None) -> list[Recurrence]:
    """The recurrence groups of a list of statements, checked (positioned errors otherwise)."""
    # (Program skips this search where every read follows its assignment, the common case.)
    order = {s.target: k for k, s in enumerate(statements)}
    targets = set(order)
    reads = {s.target: _reads(s.expr, targets) for s in statements}
    groups = _components(statements, reads, order)
    out = []
    for group in groups:
        out.append(_check_group(group, statements, order, reads, source))
    return out


def _components(statements, reads, order) -> list[list[str]]:
    """Strongly connected sets of targets that hold a read at or after the reader (Tarjan)."""
    edges = {s.target: sorted({r.ref.name for r in reads[s.target]}, key=order.get) for s in statements}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in order:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, k = work.pop()
            if k == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on.add(node)
            succ = edges[node]
            if k < len(succ):
                work.append((node, k + 1))
                nxt = succ[k]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or node in edges[node]:
                    found.append(sorted(comp, key=order.get))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(found, key=lambda g: order[g[0]])


def _error(message: str, source, spans, hint: str) -> ProgramError:
    return ProgramError(message, source=source, spans=[s for s in spans if s is not None] or None, hint=hint)


_SUPPORTED = ("a recurrence reads its targets at a constant shift of one index, "
              "as s[t-1, n, k] (LANGUAGE.md §12)")


def _check_group(group, statements, order, reads, source) -> Recurrence:
    by_target = {s.target: s for s in statements}
    members = set(group)
    if not any(r.ties for m in group for r in reads[m] if r.ref.name in members):
        # No shift at all: not a recurrence, a read before the assignment.
        m, r = next((m, r) for m in group for r in reads[m] if r.ref.name in members and order[r.ref.name] >= order[m])
        raise _error(f"{r.ref.name!r} is used before it is assigned", source,
                     [r.ref.span, by_target[r.ref.name].target_span],
                     hint="statements run in order: move this statement before its first use")
    axis: dict[str, int] = {}
    rec_index: dict[str, str] = {}
    # Shifted reads name the recurrence axis of what they read and the reader's index.
    for m in group:
        stmt = by_target[m]
        for r in reads[m]:
            if r.ref.name not in members:
                continue
            for i in r.ref.indices:
                if i in r.ties and r.ties[i][0] is None:
                    shift = r.ties[i][2]
                    raise _error(f"{r.ref.name!r} is read at {position_text(shift.terms, shift.offset)}, "
                                 "not at a constant shift of one index", source, [r.ref.span, shift.span],
                                 hint=_SUPPORTED)
            shifted = [(q, r.ties[i]) for q, i in enumerate(r.ref.indices) if i in r.ties and r.ties[i][1]]
            if len(shifted) > 1:
                raise _error(f"{r.ref.name!r} is read at shifts of two indices", source, [r.ref.span],
                             hint=_SUPPORTED + ": one recurrence index per group")
            if not shifted:
                continue
            (q, (t, c, shift)), = shifted
            if t not in stmt.indices:
                raise _error(f"the shift {t}{c:+d} of {r.ref.name!r} is not along an index of {m!r}",
                             source, [r.ref.span], hint=_SUPPORTED)
            if rec_index.setdefault(m, t) != t:
                raise _error(f"{m!r} reads its group at shifts of two indices, {rec_index[m]!r} and {t!r}",
                             source, [r.ref.span, stmt.target_span], hint=_SUPPORTED + ": one recurrence index")
            if axis.setdefault(r.ref.name, q) != q:
                raise _error(f"{r.ref.name!r} is read at shifts along two of its axes", source, [r.ref.span],
                             hint=_SUPPORTED + ": one recurrence index per group")
    for m, t in rec_index.items():
        q = by_target[m].indices.index(t)
        if axis.setdefault(m, q) != q:
            stmt = by_target[m]
            raise _error(f"{m!r} recurs along {t!r} but is read shifted along another of its axes",
                         source, [stmt.target_span], hint=_SUPPORTED + ": one recurrence index per group")
    # Reads at the same step fix the axes of members that are never read shifted.
    changed = True
    while changed:
        changed = False
        for m in group:
            stmt = by_target[m]
            if m not in axis:
                continue
            t = stmt.indices[axis[m]]
            rec_index.setdefault(m, t)
            for r in reads[m]:
                if r.ref.name in members and r.ref.name not in axis and t in r.ref.indices:
                    axis[r.ref.name] = r.ref.indices.index(t)
                    changed = True
    for m in group:
        if m not in axis:
            stmt = by_target[m]
            refs = [r.ref for r in reads[m] if r.ref.name in members]
            raise _error(f"{m!r} reads {refs[0].name!r} in a cycle with no shift of an index",
                         source, [refs[0].span, stmt.target_span],
                         hint=_SUPPORTED + "; a target read at its own step must be assigned earlier")
    offsets: list[tuple[int, Span | None]] = []
    for m in group:
        stmt = by_target[m]
        t = stmt.indices[axis[m]]
        for r in reads[m]:
            if r.ref.name not in members:
                continue
            q = axis[r.ref.name]
            index = r.ref.indices[q]
            if r.in_matfn:
                raise _error(f"{m!r} reads {r.ref.name!r} inside inv/det/logdet", source, [r.ref.span],
                             hint="a recurrence through a matrix function of its own target is not supported")
            if index == t:
                c = 0
            elif index in r.ties and r.ties[index][0] == t:
                c = r.ties[index][1]
            elif index in r.ties:
                raise _error(f"{r.ref.name!r} is read at a shift of {r.ties[index][0]!r}, but {m!r} "
                             f"recurs along {t!r}", source, [r.ref.span],
                             hint=_SUPPORTED + ": one recurrence index per group")
            else:
                raise _error(f"{r.ref.name!r} is read in a recurrence at a position that is not a "
                             f"constant shift of {t!r}", source, [r.ref.span],
                             hint=_SUPPORTED + f"; write {r.ref.name}[{t}-1, ...]")
            if t in (set(r.ref.indices) - {index}):
                raise _error(f"{r.ref.name!r} is read with the recurrence index {t!r} on two axes",
                             source, [r.ref.span], hint=_SUPPORTED)
            if c == 0 and order[r.ref.name] >= order[m]:
                what = "itself" if r.ref.name == m else f"{r.ref.name!r}, assigned later,"
                raise _error(f"{m!r} reads {what} at the same step {t!r}: a cycle with no shift",
                             source, [r.ref.span, stmt.target_span],
                             hint=_SUPPORTED + f"; read an earlier step, e.g. {r.ref.name}[{t}-1, ...]")
            if c:
                offsets.append((c, r.ref.span))
    signs = {c > 0 for c, _ in offsets}
    if len(signs) > 1:
        back = next(s for c, s in offsets if c < 0)
        ahead = next(s for c, s in offsets if c > 0)
        raise _error("the recurrence reads both earlier and later steps", source, [back, ahead],
                     hint=_SUPPORTED + ", all in one direction (t-1 runs forward, t+1 backward)")
    direction = -1 if signs == {True} else 1
    depth = max(abs(c) for c, _ in offsets)
    return Recurrence(tuple(group), tuple((m, axis[m]) for m in group), direction, depth)


# ---------------------------------------------------------------- the step form


@dataclass(frozen=True, slots=True)
class StepRead:
    """An input of the step program: ``tensor`` at step ``τ + offset`` along ``axis`` (0 outside)."""

    name: str
    tensor: str
    axis: int
    offset: int


@dataclass(frozen=True, slots=True)
class StepPlan:
    """How a recurrence runs: ``hoisted`` statements over every step before the loop, then per
    step ``τ`` (in ``recurrence.direction``) the ``step`` program on the ``reads`` at ``τ`` and
    the ``indicators`` (``name`` is 1 at step ``c``, else 0: an initial state's ``δ[t, c]``).

    The step program's targets are the members (named as in the program, without their
    recurrence axis); its other inputs are arrays the loop does not slice.
    """

    recurrence: Recurrence
    hoisted: tuple
    reads: tuple[StepRead, ...]
    indicators: tuple[tuple[str, int], ...]
    step: object  # Program
    length_of: tuple[str, int]  # (member, axis) whose length is the number of steps


def step_plan(program, rec: Recurrence):
    """The step form of the recurrence ``rec`` of ``program`` (computed once per program)."""
    cache = _PLANS.setdefault(id(program), (program, {}))[1]
    if rec.members in cache:
        return cache[rec.members]
    plan = _step_plan(program, rec)
    if len(_PLANS) > 256:
        _PLANS.clear()
    _PLANS.setdefault(id(program), (program, {}))[1][rec.members] = plan
    return plan


_PLANS: dict[int, tuple[object, dict]] = {}


def _step_plan(program, rec: Recurrence) -> StepPlan:
    from .program import Program, Statement

    members = set(rec.members)
    taken = set(program.targets) | set(program.inputs)

    def fresh(base: str) -> str:
        name, k = base, 2
        while name in taken:
            name, k = f"{base}{k}", k + 1
        taken.add(name)
        return name

    hoisted: list = []
    reads: dict[tuple[str, int, int], StepRead] = {}
    indicators: dict[int, str] = {}
    step_statements = []
    for m in rec.members:
        stmt = program.statement(m)
        t = stmt.indices[rec.axis_of(m)]
        expr = _hoist(stmt.expr, members, m, hoisted, fresh)
        ctx = _StepContext(rec, members, reads, indicators, fresh, program, stmt)
        body = ctx.transform(expr, {t: 0})
        if t in E.all_indices(body):  # pragma: no cover - every use of t is handled above
            raise _error(f"{m!r} uses its recurrence index {t!r} in a way a recurrence cannot run",
                         program.source, [stmt.span], hint=_SUPPORTED)
        indices = tuple(i for i in stmt.indices if i != t)
        step_statements.append(Statement(m, indices, body, span=stmt.span, target_span=stmt.target_span))
    step = Program(tuple(step_statements), program.source)
    first = rec.members[0]
    return StepPlan(rec, tuple(hoisted), tuple(reads.values()), tuple((n, c) for c, n in indicators.items()),
                    step, (first, rec.axis_of(first)))


def _ordered_free(e: Expr) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for node in E.walk(e):
        for i in getattr(node, "indices", ()) if isinstance(node, (Tensor, E.Delta, Shift)) else ():
            if i in e.free:
                out.setdefault(i)
    for i in sorted(e.free):
        out.setdefault(i)
    return tuple(out)


def _carried(e: Expr) -> set[str]:
    return {i for node in E.walk(e) if isinstance(node, Tensor) for i in node.indices}


def _hoist(e: Expr, members: set[str], target: str, hoisted: list, fresh) -> Expr:
    """``e`` with each largest part that reads no member (and is worth computing) replaced by
    a new tensor, computed before the loop over every step."""
    from .program import Statement

    if not (E.mentions(e) & members):
        if _worth_hoisting(e):
            name = fresh(f"{target}Pre")
            indices = _ordered_free(e)
            hoisted.append(Statement(name, indices, e))
            return Tensor(name, indices)
        return e
    if not e.children:
        return e
    if isinstance(e, E.Pick):
        return e
    if isinstance(e, E.Add):
        # the terms that read no member go before the loop together: x W + b is one array
        reads = [bool(E.mentions(t) & members) for t in e.terms]
        rest = E.add(*(t for t, r in zip(e.terms, reads, strict=True) if not r))
        if reads.count(False) > 1 and _worth_hoisting(rest):
            reading = [_hoist(t, members, target, hoisted, fresh) for t, r in zip(e.terms, reads, strict=True) if r]
            return E.add(_hoist(rest, members, target, hoisted, fresh), *reading)
    children = tuple(_hoist(c, members, target, hoisted, fresh) for c in e.children)
    if all(a is b for a, b in zip(children, e.children, strict=True)):
        return e
    return e.with_children(children)


def _worth_hoisting(e: Expr) -> bool:
    """A part that computes something from tensors and whose every free index a tensor in it
    sizes; a lone tensor or a shifted read of one is read per step as it is."""
    if isinstance(e, (Tensor, E.Const, E.Size, E.Delta, Shift, E.Pick)):
        return False
    if not any(isinstance(n, Tensor) for n in E.walk(e)):
        return False
    carried = _carried(e)
    if not e.free <= carried:
        return False
    if any(isinstance(n, E.Size) and n.index not in carried for n in E.walk(e)):
        return False
    if isinstance(e, E.Sum) and isinstance(e.body, E.Mul) and all(
            isinstance(f, (Tensor, Shift)) for f in e.body.factors) and sum(
            isinstance(f, Tensor) for f in e.body.factors) == 1:
        return False  # x[t-1, n, d]: a slice, not a computation
    return True


class _StepContext:
    """Rewrites one member's statement to one step: the recurrence index is gone."""

    def __init__(self, rec, members, reads, indicators, fresh, program, stmt) -> None:
        self.rec, self.members, self.reads, self.indicators = rec, members, reads, indicators
        self.fresh, self.program, self.stmt = fresh, program, stmt

    def fail(self, what: str, span) -> ProgramError:
        t = self.stmt.indices[self.rec.axis_of(self.stmt.target)]
        return _error(f"{what} in the recurrence along {t!r}", self.program.source, [span, self.stmt.target_span],
                      hint=_SUPPORTED + "; compute it in a statement of its own, outside the recurrence")

    def read(self, ref: Tensor, offsets: dict[str, int]) -> Tensor:
        at = [q for q, i in enumerate(ref.indices) if i in offsets]
        if not at:
            if ref.name in self.members:  # pragma: no cover - checked by find_recurrences
                raise self.fail(f"{ref.name!r} is read without its recurrence index", ref.span)
            return ref
        if len(at) > 1:
            raise self.fail(f"{ref.name!r} is read with the recurrence index on two axes", ref.span)
        q = at[0]
        c = offsets[ref.indices[q]]
        rest = tuple(i for k, i in enumerate(ref.indices) if k != q)
        if ref.name in self.members and c == 0:
            return Tensor(ref.name, rest, ref.span)
        if ref.name in self.members and q != self.rec.axis_of(ref.name):  # pragma: no cover
            raise self.fail(f"{ref.name!r} is read shifted along an axis that is not its recurrence's", ref.span)
        key = (ref.name, q, c)
        if key not in self.reads:
            word = "At" if c == 0 else ("Prev" if c < 0 else "Next")
            name = self.fresh(f"{ref.name}{word}{abs(c) if c else ''}")
            self.reads[key] = StepRead(name, ref.name, q, c)
        return Tensor(self.reads[key].name, rest, ref.span)

    def transform(self, e: Expr, offsets: dict[str, int]) -> Expr:
        if isinstance(e, Tensor):
            return self.read(e, offsets)
        if not (E.index_names(e) & offsets.keys()):
            return e
        if isinstance(e, Shift):
            if e.index in offsets and not e.terms:  # δ[t, c]: 1 at one step
                c = e.offset - offsets[e.index]
                if c not in self.indicators:
                    self.indicators[c] = self.fresh(f"first{c}" if c else "first")
                return Tensor(self.indicators[c], ())
            raise self.fail(f"the index arithmetic δ[{e.index}, {position_text(e.terms, e.offset)}]", e.span)
        if isinstance(e, E.Pick):
            if e.index in offsets:
                raise self.fail(f"the recurrence index picked by {e.table.name!r}", e.span)
            return E.Pick(e.index, self.read(e.table, offsets), e.span)
        if isinstance(e, (E.Delta, E.Size)):
            raise self.fail("a delta or size of the recurrence index", getattr(e, "span", None))
        if isinstance(e, E.Sum):
            found = _ties_of(e)
            ties: dict = {}
            inner = dict(offsets)
            drop = set()
            while True:  # a tie may fix an index through another (m = o-2, o = t+2)
                more = {j: tie for j, tie in found.items() if j not in ties and tie[0] in inner}
                if not more:
                    break
                for j, (t, c, shift) in more.items():
                    ties[j] = (t, c, shift)
                    inner[j] = inner[t] + c
                    drop.add(id(shift))
            if ties:
                factors = e.body.factors if isinstance(e.body, E.Mul) else (e.body,)
                kept = [f for f in factors if id(f) not in drop]
                for j in ties:  # the delta's 0 outside the array is a factor's 0 there
                    if not any(isinstance(f, Tensor) and j in f.indices for f in kept):
                        raise self.fail(f"a shifted read of {j!r} with no tensor factor of its own",
                                        ties[j][2].span)
                binds = tuple(i for i in e.binds if i not in ties)
                body = self.transform(E.mul(*kept), inner)
                return E.sum_(binds, body) if binds else body
        children = tuple(self.transform(c, offsets) for c in e.children)
        return e.with_children(children)

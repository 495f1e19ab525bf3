"""Statements and programs: targets, inputs, and the checks across statements."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import expr as E
from .errors import ProgramError, Span
from .expr import Expr, Tensor, tensor_refs
from .names import is_valid_tensor_name

__all__ = ["Statement", "Program", "ProgramBuilder"]


@dataclass(frozen=True, slots=True)
class Statement:
    """``target_{indices} = expr``, with the spans it came from (not compared)."""

    target: str
    indices: tuple[str, ...]
    expr: Expr
    span: Span | None = field(default=None, compare=False)
    target_span: Span | None = field(default=None, compare=False)
    # A tensor whose shape the target has, for targets whose right-hand side fixes no
    # size (a gradient dLdx_n = 1 has x's shape).
    like: str | None = field(default=None, compare=False)
    # For sizes |i| of indices no tensor in the statement carries (a gradient
    # dLdc = |n| of a broadcast term): (index, tensor, axis) whose length it is.
    sizes_from: tuple[tuple[str, str, int], ...] = field(default=(), compare=False)

    @property
    def lhs(self) -> Tensor:
        return Tensor(self.target, self.indices, self.target_span)

    def __str__(self) -> str:
        from .printing.text import format_statement

        return format_statement(self)

    def latex(self) -> str:
        from .printing.latex import latex_statement

        return latex_statement(self)

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"


@dataclass(frozen=True, slots=True)
class Program:
    """A list of statements run in order; names never assigned are inputs.

    Equality is structural (same statements, same index names).  Use
    :meth:`equivalent` to compare up to renaming of indices and reordering of
    commutative operands.
    """

    statements: tuple[Statement, ...]
    source: str | None = field(default=None, compare=False, repr=False)
    # Names the program takes without reading them: a gradient program's upstream
    # gradient when no gradient asked for depends on it (all are zero).
    unread: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    _index: _NameIndex = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", _check_statements(self.statements, self.source))
        from .expr import Pick, Tensor, walk

        names = self.index_inputs
        if not names:
            return
        for stmt in self.statements:  # an index reads an input of integers (LANGUAGE.md §10)
            for node in walk(stmt.expr):
                if isinstance(node, Pick):
                    continue
                if isinstance(node, Tensor) and node.name in names and not any(
                        isinstance(p, Pick) and p.table is node for p in walk(stmt.expr)):
                    raise ProgramError(
                        f"{node.name!r} is used as an index (an array of integers) and also as a value",
                        source=self.source,
                        spans=node.span,
                        hint=f"pass the values as another input (e.g. a float copy of {node.name!r})",
                    )
            for node in walk(stmt.expr):
                if isinstance(node, Pick) and node.table.name in self._index.by_target:
                    raise ProgramError(
                        f"{node.table.name!r} is used as an index, but it is computed by a statement: "
                        "an index reads an input of integers",
                        source=self.source,
                        spans=node.table.span,
                        hint=f"pass {node.table.name!r} as an integer input",
                    )

    @property
    def index_inputs(self) -> frozenset[str]:
        """Inputs read as indices (``y`` of ``Z[n, y[n]]``): integer arrays, never differentiated."""
        from .expr import integer_tensors

        if not self._index.has_picks:
            return frozenset()
        return frozenset().union(*(integer_tensors(s.expr) for s in self.statements))

    # ---- names
    @property
    def recurrences(self) -> tuple:
        """The recurrence groups (:class:`eingrad.recurrence.Recurrence`), in program order."""
        return self._index.recurrences

    def recurrence_of(self, target: str):
        """The recurrence group ``target`` belongs to, or None."""
        for rec in self._index.recurrences:
            if target in rec.members:
                return rec
        return None

    @property
    def targets(self) -> list[str]:
        return list(self._index.by_target)

    @property
    def output(self) -> str:
        """The last target: what ``diff``/``grad`` differentiate by default."""
        if not self.statements:
            raise ProgramError("the program has no statements")
        return self.statements[-1].target

    @property
    def inputs(self) -> list[str]:
        """Names used but never assigned, in order of first use."""
        return [name for name in self._index.first_use if name not in self._index.by_target]

    def rank(self, name: str) -> int:
        """Number of indices of the tensor ``name`` (input or target)."""
        return self._index.ranks[name][0]

    def is_target(self, name: str) -> bool:
        return name in self._index.by_target

    def first_use(self, name: str) -> Tensor:
        """The first reference to ``name`` on a right-hand side (for error positions)."""
        return self._index.first_use[name]

    def statement(self, target: str) -> Statement:
        return self._index.by_target[target]

    def __iter__(self) -> Iterator[Statement]:
        return iter(self.statements)

    def __len__(self) -> int:
        return len(self.statements)

    # ---- display
    def __str__(self) -> str:
        from .printing.text import format_program

        return format_program(self)

    def latex(self) -> str:
        from .printing.latex import latex_program

        return latex_program(self)

    def _repr_latex_(self) -> str:
        return "$\\begin{aligned}" + self.latex().replace("\n", "") + "\\end{aligned}$"

    def __repr__(self) -> str:
        return f"Program({str(self)!r})"

    # ---- comparison
    def equivalent(self, other: Program) -> bool:
        """Equal up to renaming of indices and reordering of commutative operands."""
        from .canonical import canonical_statement

        if len(self) != len(other):
            return False
        return all(
            canonical_statement(a) == canonical_statement(b)
            for a, b in zip(self.statements, other.statements, strict=True)
        )

    @classmethod
    def from_statements(cls, statements: Iterable[Statement], source: str | None = None) -> Program:
        return cls(tuple(statements), source)

    def needed_for(self, outputs: Iterable[str]) -> Program:
        """Only the statements that ``outputs`` depend on (the guide's lazy forward pass)."""
        wanted = set(outputs)
        unknown = wanted - set(self._index.by_target)
        if unknown:
            name = sorted(unknown)[0]
            raise ProgramError(
                f"{name!r} is not a target of the program (its targets are {', '.join(self.targets)})",
                hint="ask for targets the program assigns",
            )
        while True:  # once, unless a recurrence group reads targets assigned before it
            before = len(wanted)
            for stmt in reversed(self.statements):
                if stmt.target in wanted:
                    wanted.update(ref.name for ref in tensor_refs(stmt.expr))
                    rec = self.recurrence_of(stmt.target)
                    if rec is not None:  # a group runs whole: its members read each other
                        wanted.update(rec.members)
            if len(wanted) == before or not self._index.recurrences:
                break
        kept = tuple(s for s in self.statements if s.target in wanted)
        if len(kept) == len(self.statements):
            return self  # every statement is needed: the same (immutable) program, not checked again
        return Program(kept, self.source, self.unread)

    def to_dot(self, parameters: Iterable[str] = ()) -> str:
        """The computation graph in Graphviz DOT: inputs, statements, and an edge per read.

        Inputs are boxes, targets ellipses; ``parameters`` (inputs shared by many
        statements, like an RNN's U, W, b) are filled, as in the guide's figure.
        """
        from .printing.text import format_expr, index_suffix

        params = set(parameters)

        def quote(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = ["digraph program {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
        for name in self.inputs:
            ref = self._index.first_use[name]
            label = name + index_suffix(ref.indices)
            style = ', style=filled, fillcolor="#ffd27f"' if name in params else ""
            lines.append(f"  {quote(name)} [shape=box, label={quote(label)}{style}];")
        for stmt in self.statements:
            label = f"{stmt.target}{index_suffix(stmt.indices)} = {format_expr(stmt.expr, stmt.indices)}"
            if len(label) > 60:
                label = stmt.target + index_suffix(stmt.indices)
            lines.append(f"  {quote(stmt.target)} [shape=ellipse, label={quote(label)}];")
        for stmt in self.statements:
            for name in dict.fromkeys(ref.name for ref in tensor_refs(stmt.expr)):
                lines.append(f"  {quote(name)} -> {quote(stmt.target)};")
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _NameIndex:
    """Lookups computed once per program: statements by target, ranks, first uses."""

    by_target: dict[str, Statement]
    ranks: dict[str, tuple[int, Span | None]]
    first_use: dict[str, Tensor]
    recurrences: tuple = ()
    # Whether a statement reads an index from a tensor (a pick, y of Z[n, y[n]]): without
    # one there are no index inputs to look for (found by the walk that finds the reads).
    has_picks: bool = True


def _check_statements(statements: tuple[Statement, ...], source: str | None) -> _NameIndex:
    """Targets are assigned once and before use (or read at a shift in a recurrence,
    LANGUAGE.md §12); each tensor keeps one rank."""
    assigned: dict[str, Statement] = {}
    ranks: dict[str, tuple[int, Span | None]] = {}
    first_use: dict[str, Tensor] = {}

    def check_rank(name: str, rank: int, span: Span | None) -> None:
        if name in ranks and ranks[name][0] != rank:
            first_rank, first_span = ranks[name]
            raise ProgramError(
                f"{name!r} is used with {first_rank} ind{'ex' if first_rank == 1 else 'ices'} "
                f"and with {rank} ind{'ex' if rank == 1 else 'ices'}",
                source=source,
                spans=[first_span, span],
                hint=f"a tensor has one number of axes; give the {rank}-index one another name",
            )
        ranks.setdefault(name, (rank, span))

    refs = []
    has_picks = False
    for stmt in statements:
        own = []
        for node in E.walk(stmt.expr):
            if isinstance(node, Tensor):
                own.append(node)
            elif isinstance(node, E.Pick):
                has_picks = True
        refs.append(own)
        for ref in own:
            check_rank(ref.name, len(ref.indices), ref.span)
            first_use.setdefault(ref.name, ref)
        if stmt.target in assigned:
            raise ProgramError(
                f"{stmt.target!r} is assigned twice",
                source=source,
                spans=[assigned[stmt.target].target_span, stmt.target_span],
                hint="each target is assigned once; give the second one a new name "
                f"(for example {stmt.target}2)",
            )
        check_rank(stmt.target, len(stmt.indices), stmt.target_span)
        assigned[stmt.target] = stmt
    order = {stmt.target: k for k, stmt in enumerate(statements)}
    if not any(order.get(ref.name, -1) >= k for k, own in enumerate(refs) for ref in own):
        return _NameIndex(assigned, ranks, first_use, (), has_picks)  # every read after its assignment
    from .recurrence import find_recurrences

    recurrences = tuple(find_recurrences(statements, source))
    group_of = {m: k for k, rec in enumerate(recurrences) for m in rec.members}
    done: set[str] = set()
    used_as_input: dict[str, Span | None] = {}
    for stmt, own in zip(statements, refs, strict=True):
        group = group_of.get(stmt.target)
        for ref in own:
            if ref.name not in done and not (group is not None and group_of.get(ref.name) == group):
                used_as_input.setdefault(ref.name, ref.span)
        if stmt.target in used_as_input:
            raise ProgramError(
                f"{stmt.target!r} is used before it is assigned",
                source=source,
                spans=[used_as_input[stmt.target], stmt.target_span],
                hint="statements run in order: move this statement before its first use",
            )
        done.add(stmt.target)
    return _NameIndex(assigned, ranks, first_use, recurrences, has_picks)


class ProgramBuilder:
    """Build a program statement by statement, e.g. an RNN unrolled in a loop::

        b = ProgramBuilder()
        b.add("s0_bh = tanh(x0_bd W_dh + b_h)")
        for t in range(1, tau):
            b.add(f"s{t}_bh = tanh(x{t}_bd W_dh + s{t-1}_bk U_kh + b_h)")
        program = b.build()

    Each ``add`` checks its text at once (so an error points at the line just
    added); ``build`` checks the program as a whole.  ``build`` reuses each
    chunk's statements as ``add`` parsed them, their positions moved to where the
    chunk starts in the program's text: the program parsed from that text, without
    parsing it again (one statement per step of a long loop, parsed twice, was half
    the time of building it).  A chunk that differs from one added before only in the
    digits of its numbered tensor names (``s7``, ``x7``, ``s6``: a loop's next step, its
    step numbers as long) is not parsed at all: that chunk's statements are renamed.
    """

    def __init__(self) -> None:
        self._chunks: list[str] = []
        # Per chunk: its statements as parsed by add, how many leading newlines strip("\n")
        # took from the text they were parsed from, and whether they are placed already
        # (their positions those of the program's text); None to parse it again.
        self._parsed: list[tuple[tuple[Statement, ...], int, bool] | None] = []
        self._length = 0  # where the next chunk starts in the program's text

    def add(self, text: str) -> ProgramBuilder:
        """Append one or more statements (text in the language); returns self."""
        from .syntax import parse_program, parser

        warned = parser.warnings_issued
        shape = _chunk_shape(text)
        lead = len(text) - len(text.lstrip("\n"))
        placed = _renamed_chunk(shape, self._length - lead) if shape is not None else None
        if placed is not None:
            # A chunk parsed before, up to its numbered tensor names: renamed, and placed
            # where it starts in the program's text.  It passed parsing and the program's
            # checks, which see names only as equal or not (assigned twice, one rank per
            # tensor, read before assigned), and its shape fixes which names are equal.
            entry: tuple | None = (placed, 0, True)
        else:
            # The collector paused as in build: a long chunk (a loss summed over 1000 steps)
            # keeps its tokens and trees alive while it is parsed, and its passes over the
            # heap, which holds the chunks added so far, cost a fifth of parsing it.
            with without_cyclic_gc():
                program = parse_program(text)  # syntax and index rules of the new text alone
            if shape is not None and parser.warnings_issued == warned:
                _remember_chunk(shape, program.statements)
            # A chunk that warned is parsed again (its warnings then show the whole program's
            # positions); a byte-order mark is only skipped at the start of a text.
            reuse = parser.warnings_issued == warned and "\ufeff" not in text
            entry = (program.statements, lead, False) if reuse else None
        chunk = text.strip("\n")
        self._chunks.append(chunk)
        self._parsed.append(entry)
        self._length += len(chunk) + 1
        return self

    def build(self) -> Program:
        from .syntax import parse_program

        text = "\n".join(self._chunks)
        statements: list[Statement] = []
        start = 0
        with without_cyclic_gc():
            for chunk, parsed in zip(self._chunks, self._parsed, strict=True):
                if parsed is None:
                    moved = None
                else:
                    moved = list(parsed[0]) if parsed[2] else _moved_statements(parsed[0], start - parsed[1])
                if moved is None:
                    break
                statements.extend(moved)
                start += len(chunk) + 1
            else:
                if statements:
                    return Program(tuple(statements), text)
        return parse_program(text)

    def __len__(self) -> int:
        return len(self._chunks)


#: A tensor name that ends in ASCII digits where a word starts (``s10``, ``x7``; not an
#: index ``i1`` after ``_``): what changes from one step of a loop's chunk to the next.
_NUMBERED_NAME = re.compile(r"(?<!\w)([^\W\d_]+)([0-9]+)(?![^\W_])")


class _ChunkShapes(dict):
    """A dict with ``cache_clear``, as functools caches have it (benchmarks clear them all)."""

    def cache_clear(self) -> None:
        self.clear()


#: Chunks ProgramBuilder.add parsed, by shape (see _chunk_shape): their statements, their
#: numbered names in order, and every index name they use; None where a numbered name is
#: not a tensor name.  Emptied when full.
_CHUNK_SHAPES: dict[tuple, tuple[tuple[Statement, ...], tuple[str, ...], frozenset[str]] | None] = _ChunkShapes()


@dataclass(frozen=True)
class _ChunkShape:
    key: tuple  # the text with each numbered name's digits as '#', and which names are equal
    names: tuple[str, ...]  # the numbered names, distinct, in order of first appearance


def _chunk_shape(text: str) -> _ChunkShape | None:
    """The shape of a chunk: its text with the digits of each numbered name hidden (each
    digit a '#', so every position stays where it is) and which of those names are one.

    A loop's chunks (``s7_bh = tanh(x7_bd W_dh + s6_bk U_kh + b_h)``) share a shape while
    their step numbers have as many digits; parsing one of them parses all, up to the
    names (ProgramBuilder.add then renames instead of parsing: half the time of
    building an unrolled RNN went into parsing its 1000 statements one by one)."""
    if "\ufeff" in text:  # a byte-order mark is skipped only at the start of a text
        return None
    matches = list(_NUMBERED_NAME.finditer(text))
    if not matches:
        return None
    order: dict[str, int] = {}
    pattern = tuple(order.setdefault(m.group(), len(order)) for m in matches)
    template = _NUMBERED_NAME.sub(lambda m: m.group(1) + "#" * len(m.group(2)), text)
    return _ChunkShape((template, pattern), tuple(order))


def _remember_chunk(shape: _ChunkShape, statements: tuple[Statement, ...]) -> None:
    """Keep a parsed chunk for the chunks of its shape, if its numbered names are all
    tensor names (a target, a tensor read) and none is also an index name."""
    tensors = {stmt.target for stmt in statements}
    indices: set[str] = set()
    for stmt in statements:
        indices.update(stmt.indices)
        indices |= E.all_indices(stmt.expr)
        tensors |= E.mentions(stmt.expr)
    ok = set(shape.names) <= tensors and indices.isdisjoint(shape.names)
    if len(_CHUNK_SHAPES) >= 4096:
        _CHUNK_SHAPES.clear()
    _CHUNK_SHAPES[shape.key] = (statements, shape.names, frozenset(indices)) if ok else None


def _renamed_chunk(shape: _ChunkShape, by: int) -> list[Statement] | None:
    """The statements of a chunk of a known shape: those parsed from the first chunk of
    that shape, its numbered tensor names replaced by this chunk's, every position moved
    ``by`` characters.  The two texts differ only in those names' digits, at the same
    positions: the parser builds the same tree (it reads a name's identity, never its
    spelling, once it is not a reserved word), so every node and position is the same
    but for the names.  None if not known."""
    entry = _CHUNK_SHAPES.get(shape.key)
    if entry is None:
        return None
    statements, names, indices = entry
    if not indices.isdisjoint(shape.names) or not all(is_valid_tensor_name(n) for n in shape.names):
        return None
    mapping = {old: new for old, new in zip(names, shape.names, strict=True) if old != new}
    return _moved_statements(statements, by, mapping)


@contextmanager
def without_cyclic_gc():
    """Pause Python's cyclic garbage collector while a program is put together.

    Expression trees are immutable and acyclic, so reference counting frees what
    is dropped; a full pass of the collector over a heap that grows with the
    program (a long loop's statements) cost more than building it.  Its state is
    restored afterwards (as :func:`eingrad.reverse.gradient_program` does)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _moved_statements(statements: tuple[Statement, ...], by: int,
                      names: dict[str, str] | None = None) -> list[Statement] | None:
    """``statements`` with every position (of the statement, its target and each node
    that has one) moved ``by`` characters, and tensors renamed by ``names``; None if a
    node is of a kind not known here."""
    out = []
    memo: dict[int, Expr] = {}
    names = names or {}
    for stmt in statements:
        expr = _moved(stmt.expr, by, memo, names)
        if expr is None:
            return None
        out.append(Statement(names.get(stmt.target, stmt.target), stmt.indices, expr, _moved_span(stmt.span, by),
                             _moved_span(stmt.target_span, by), stmt.like, stmt.sizes_from))
    return out


def _moved_span(span: Span | None, by: int) -> Span | None:
    return None if span is None else Span(span.start + by, span.end + by)


def _moved(e: Expr, by: int, memo: dict[int, Expr], names: dict[str, str]) -> Expr | None:
    """``e`` with its positions moved ``by`` characters and tensors renamed by ``names``,
    the same tree built as it is (not through the smart constructors); None for a kind of
    node not known here."""
    hit = memo.get(id(e))
    if hit is not None:
        return hit
    kind = type(e)
    out: Expr | None
    if kind is Tensor:
        out = Tensor(names.get(e.name, e.name), e.indices, _moved_span(e.span, by))  # type: ignore[attr-defined]
    elif kind is E.Const or kind is E.Size:
        out = e
    elif kind is E.Delta:
        out = E.Delta(e.indices, _moved_span(e.span, by))  # type: ignore[attr-defined]
    elif kind is E.Shift:
        out = E.Shift(e.index, e.terms, e.offset, _moved_span(e.span, by))  # type: ignore[attr-defined]
    else:
        children = []
        for child in e.children:
            moved = _moved(child, by, memo, names)
            if moved is None:
                return None
            children.append(moved)
        build = _REBUILD.get(kind)
        out = None if build is None else build(e, tuple(children), by)
        if out is None:
            return None
    memo[id(e)] = out
    return out


#: How each kind of node with children is built again over moved children, as it was.
_REBUILD = {
    E.Add: lambda e, c, by: E.Add(c),
    E.Mul: lambda e, c, by: E.Mul(c),
    E.Pow: lambda e, c, by: E.Pow(c[0], e.exponent),
    E.Call: lambda e, c, by: E.Call(e.fn, c[0]),
    E.Sum: lambda e, c, by: E.Sum(e.indices, c[0]),
    E.LogSumExp: lambda e, c, by: E.LogSumExp(e.indices, c[0]),
    E.Reduce: lambda e, c, by: E.Reduce(e.op, e.indices, c[0]),
    E.Choose: lambda e, c, by: E.Choose(e.op, c),
    E.Compare: lambda e, c, by: E.Compare(e.op, c[0], c[1]),
    E.MatFn: lambda e, c, by: E.MatFn(e.op, e.axes, c[0], _moved_span(e.span, by)),
    E.Pick: lambda e, c, by: E.Pick(e.index, c[0], _moved_span(e.span, by)) if type(c[0]) is Tensor else None,
}

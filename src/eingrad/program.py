"""Statements and programs: targets, inputs, and the checks across statements."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import ProgramError, Span
from .expr import Expr, Tensor, tensor_refs

__all__ = ["Statement", "Program"]


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

    @property
    def lhs(self) -> Tensor:
        return Tensor(self.target, self.indices, self.target_span)

    def __str__(self) -> str:
        from .printing.text import format_statement

        return format_statement(self)

    def latex(self) -> str:
        from .printing.latex import latex_statement

        return latex_statement(self)


@dataclass(frozen=True, slots=True)
class Program:
    """A list of statements run in order; names never assigned are inputs.

    Equality is structural (same statements, same index names).  Use
    :meth:`equivalent` to compare up to renaming of indices and reordering of
    commutative operands.
    """

    statements: tuple[Statement, ...]
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_statements(self.statements, self.source)

    # ---- names
    @property
    def targets(self) -> list[str]:
        return [s.target for s in self.statements]

    @property
    def output(self) -> str:
        """The last target: what ``diff``/``grad`` differentiate by default."""
        if not self.statements:
            raise ProgramError("the program has no statements")
        return self.statements[-1].target

    @property
    def inputs(self) -> list[str]:
        """Names used but never assigned, in order of first use."""
        targets = set(self.targets)
        seen: dict[str, None] = {}
        for stmt in self.statements:
            for ref in tensor_refs(stmt.expr):
                if ref.name not in targets:
                    seen.setdefault(ref.name, None)
        return list(seen)

    def rank(self, name: str) -> int:
        """Number of indices of the tensor ``name`` (input or target)."""
        for stmt in self.statements:
            if stmt.target == name:
                return len(stmt.indices)
            for ref in tensor_refs(stmt.expr):
                if ref.name == name:
                    return len(ref.indices)
        raise KeyError(name)

    def first_use(self, name: str) -> Tensor:
        """The first reference to ``name`` on a right-hand side (for error positions)."""
        for stmt in self.statements:
            for ref in tensor_refs(stmt.expr):
                if ref.name == name:
                    return ref
        raise KeyError(name)

    def statement(self, target: str) -> Statement:
        for stmt in self.statements:
            if stmt.target == target:
                return stmt
        raise KeyError(target)

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


def _check_statements(statements: tuple[Statement, ...], source: str | None) -> None:
    """Targets are assigned once and before use; each tensor keeps one rank."""
    assigned: dict[str, Statement] = {}
    ranks: dict[str, tuple[int, Span | None]] = {}
    used_as_input: dict[str, Span | None] = {}

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

    for stmt in statements:
        for ref in tensor_refs(stmt.expr):
            check_rank(ref.name, len(ref.indices), ref.span)
            if ref.name not in assigned:
                used_as_input.setdefault(ref.name, ref.span)
        if stmt.target in assigned:
            raise ProgramError(
                f"{stmt.target!r} is assigned twice",
                source=source,
                spans=[assigned[stmt.target].target_span, stmt.target_span],
                hint="each target is assigned once; give the second one a new name "
                f"(for example {stmt.target}2)",
            )
        if stmt.target in used_as_input:
            raise ProgramError(
                f"{stmt.target!r} is used before it is assigned",
                source=source,
                spans=[used_as_input[stmt.target], stmt.target_span],
                hint="statements run in order: move this statement before its first use",
            )
        check_rank(stmt.target, len(stmt.indices), stmt.target_span)
        assigned[stmt.target] = stmt

"""Immutable expression nodes in explicit index notation.

After parsing, every sum is explicit: a product never sums by itself; a
repeated index in a :class:`Mul` means an elementwise product, and only
:class:`Sum` (and :class:`LogSumExp`) bind indices.  Nodes are frozen, slotted
and hashable; the hash and the free-index set are computed once.

Class constructors build exactly what they are given.  The lower-case smart
constructors (:func:`add`, :func:`mul`, :func:`power`, :func:`sum_`, ...)
apply only the cheap laws that are always valid and never drop an index:
flattening, dropping zero terms and unit factors, folding constants.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from .errors import Span

__all__ = [
    "Expr",
    "Tensor",
    "Delta",
    "Const",
    "Add",
    "Mul",
    "Pow",
    "Call",
    "Sum",
    "LogSumExp",
    "Reduce",
    "Choose",
    "Compare",
    "Size",
    "Pick",
    "Shift",
    "BINDER_TYPES",
    "MatFn",
    "MATFN_OPS",
    "matfn",
    "tensor",
    "delta",
    "const",
    "add",
    "mul",
    "factors_of",
    "neg",
    "power",
    "call",
    "sum_",
    "logsumexp",
    "reduce_",
    "choose",
    "compare",
    "ZERO",
    "ONE",
    "walk",
    "all_indices",
    "mentions",
    "index_names",
    "rename_tensors",
    "rebuild",
    "tensor_refs",
    "integer_tensors",
    "LEAVES",
    "rename_indices",
    "merges_matrix_axes",
]


#: One frozenset per distinct set of names, shared by the nodes (free indices) and cached
#: results (index_names, mentions) that have it: a set per node was an object more for the
#: cyclic garbage collector to traverse (a quarter of what a long gradient leaves).
#: Emptied when many programs' fresh names fill it.
_FREE_SETS: dict[frozenset, frozenset] = {}


def _shared(names: frozenset) -> frozenset:
    """The one frozenset equal to ``names`` (see _FREE_SETS)."""
    shared = _FREE_SETS.get(names)
    if shared is None:
        if len(_FREE_SETS) >= 1 << 16:
            _FREE_SETS.clear()
        shared = _FREE_SETS[names] = names
    return shared


def _finish(node: Expr, free: Iterable[str], key: tuple) -> None:
    object.__setattr__(node, "_free", _shared(frozenset(free)))
    object.__setattr__(node, "_hash", hash((type(node).__name__,) + key))


def _same_fraction(a: Fraction, b: Fraction) -> bool:
    """``a == b`` for two Fractions (kept in lowest terms), without Fraction.__eq__'s type checks."""
    return a.numerator == b.numerator and a.denominator == b.denominator


class Expr:
    """Base class of all nodes."""

    __slots__ = ()

    @property
    def free(self) -> frozenset[str]:
        """Indices this expression leaves free (not bound by a sum)."""
        return self._free  # type: ignore[attr-defined]

    @property
    def children(self) -> tuple[Expr, ...]:
        return ()

    @property
    def binds(self) -> tuple[str, ...]:
        """The indices this node binds (a sum, a log-sum-exp, a max); () for every other node."""
        return ()

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        """The same node over new children (rebuilt with the smart constructor)."""
        return self

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def __str__(self) -> str:
        from .printing.text import format_expr

        return format_expr(self)

    def latex(self) -> str:
        from .printing.latex import latex_expr

        return latex_expr(self)

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Tensor(Expr):
    """``name_{indices}``: an input or an earlier target; ``A_ii`` reads a diagonal."""

    name: str
    indices: tuple[str, ...] = ()
    span: Span | None = field(default=None, compare=False)
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.indices, (self.name, self.indices))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tensor)
            and self._hash == other._hash
            and self.name == other.name
            and self.indices == other.indices
        )

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.indices!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Delta(Expr):
    """Kronecker delta: 1 where all its indices are equal, else 0."""

    indices: tuple[str, ...]
    span: Span | None = field(default=None, compare=False)
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.indices, (self.indices,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Delta) and self.indices == other.indices

    def __repr__(self) -> str:
        return f"Delta({self.indices!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Const(Expr):
    """An exact rational constant."""

    value: Fraction
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.value, Fraction):
            object.__setattr__(self, "value", Fraction(self.value))
        _finish(self, (), (self.value,))

    def __eq__(self, other: object) -> bool:
        # Equal values hash alike: the hashes rule most pairs out; then both values are
        # Fractions in lowest terms, equal when their parts are (Fraction.__eq__ is slower).
        return isinstance(other, Const) and self._hash == other._hash and _same_fraction(self.value, other.value)

    def __repr__(self) -> str:
        return f"Const(Fraction({self.value.numerator}, {self.value.denominator}))"

    def as_float(self) -> float:
        """The nearest float64; ±inf beyond its range (a derivative's constant can be
        larger than any literal: the second derivative of x^1e300 has 1e300·(1e300 - 1))."""
        try:
            return float(self.value)
        except OverflowError:
            return math.inf if self.value > 0 else -math.inf


class _Nary(Expr):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self._hash == other._hash  # type: ignore[attr-defined]
            and self.children == other.children  # type: ignore[attr-defined]
        )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Add(_Nary):
    """Sum of terms; a term lacking a free index is broadcast along it."""

    terms: tuple[Expr, ...]
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, frozenset().union(*(t.free for t in self.terms)), self.terms)

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.terms

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return add(*children)

    def __repr__(self) -> str:
        return f"Add({self.terms!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Mul(_Nary):
    """Elementwise product of factors (shared indices are *not* summed)."""

    factors: tuple[Expr, ...]
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, frozenset().union(*(f.free for f in self.factors)), self.factors)

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.factors

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return mul(*children)

    def __repr__(self) -> str:
        return f"Mul({self.factors!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Pow(Expr):
    """``base ^ exponent`` with a constant exponent (``x^-1`` is division)."""

    base: Expr
    exponent: Fraction
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.exponent, Fraction):
            object.__setattr__(self, "exponent", Fraction(self.exponent))
        _finish(self, self.base.free, (self.base, self.exponent))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.base,)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return power(children[0], self.exponent)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Pow) and self._hash == other._hash
                and _same_fraction(self.exponent, other.exponent) and self.base == other.base)

    def __repr__(self) -> str:
        e = self.exponent
        return f"Pow({self.base!r}, Fraction({e.numerator}, {e.denominator}))"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Call(Expr):
    """An elementwise function applied to every element of its argument."""

    fn: str
    arg: Expr
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.arg.free, (self.fn, self.arg))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return call(self.fn, children[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and self._hash == other._hash and self.fn == other.fn and self.arg == other.arg

    def __repr__(self) -> str:
        return f"Call({self.fn!r}, {self.arg!r})"


class _Binder(Expr):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self._hash == other._hash  # type: ignore[attr-defined]
            and self.indices == other.indices  # type: ignore[attr-defined]
            and self.body == other.body  # type: ignore[attr-defined]
        )

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.body,)  # type: ignore[attr-defined]

    @property
    def binds(self) -> tuple[str, ...]:
        return self.indices  # type: ignore[attr-defined]

    def rebind(self, indices: tuple[str, ...], body: Expr) -> Expr:
        """The same binder (kind, operation) over new bound names and body, built as given."""
        return type(self)(indices, body)  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Sum(_Binder):
    """``Σ_{indices} body``: binds ``indices``."""

    indices: tuple[str, ...]
    body: Expr
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.body.free - set(self.indices), (self.indices, self.body))

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return sum_(self.indices, children[0])

    def __repr__(self) -> str:
        return f"Sum({self.indices!r}, {self.body!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class LogSumExp(_Binder):
    """``log Σ_{indices} exp(body)``: binds ``indices``; evaluated stably."""

    indices: tuple[str, ...]
    body: Expr
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.body.free - set(self.indices), (self.indices, self.body))

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return logsumexp(self.indices, children[0])

    def __repr__(self) -> str:
        return f"LogSumExp({self.indices!r}, {self.body!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Reduce(_Binder):
    """``max_{indices}(body)`` or ``min_{indices}(body)``: binds ``indices`` (LANGUAGE.md §8)."""

    op: str  # "max" or "min"
    indices: tuple[str, ...]
    body: Expr
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.body.free - set(self.indices), (self.op, self.indices, self.body))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Reduce)
            and self.op == other.op
            and self.indices == other.indices
            and self.body == other.body
        )

    def rebind(self, indices: tuple[str, ...], body: Expr) -> Expr:
        return Reduce(self.op, indices, body)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return reduce_(self.op, self.indices, children[0])

    def __repr__(self) -> str:
        return f"Reduce({self.op!r}, {self.indices!r}, {self.body!r})"


#: The elementwise selections of LANGUAGE.md §13 and their numbers of arguments.
CHOICES = {"max": 2, "min": 2, "where": 3, "clip": 3}
#: The comparisons of LANGUAGE.md §13 (1 where true, else 0).
COMPARISONS = (">", ">=", "<", "<=")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Choose(_Nary):
    """An elementwise selection: ``max(a, b)``, ``min(a, b)``, ``where(c, a, b)``, ``clip(x, lo, hi)``.

    Arguments broadcast against each other as the terms of a sum do.
    """

    op: str
    args: tuple[Expr, ...]
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, frozenset().union(*(a.free for a in self.args)), (self.op, self.args))

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.args

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return choose(self.op, *children)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choose) and self.op == other.op and self.args == other.args

    def __repr__(self) -> str:
        return f"Choose({self.op!r}, {self.args!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Compare(Expr):
    """``a > b`` (``>=``, ``<``, ``<=``): 1 where it holds, else 0; a constant for derivatives."""

    op: str
    left: Expr
    right: Expr
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, self.left.free | self.right.free, (self.op, self.left, self.right))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return compare(self.op, children[0], children[1])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Compare)
            and self.op == other.op
            and self.left == other.left
            and self.right == other.right
        )

    def __repr__(self) -> str:
        return f"Compare({self.op!r}, {self.left!r}, {self.right!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Size(Expr):
    """The number of values index ``index`` takes (``Σ_i δ_ii`` simplifies to it).

    It has no free indices: it is a number whose value the index sizes fix.
    """

    index: str
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, (), (self.index,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and self.index == other.index

    def __repr__(self) -> str:
        return f"Size({self.index!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Pick(Expr):
    """``δ[index, table]``: 1 where ``index`` equals the integer ``table`` holds, else 0.

    ``table`` is a reference to an integer input (``y[n]``), its child; the index of the
    picked axis is ``index``.  ``Z[n, y[n]]`` is ``Σ_c Z[n,c] δ[c, y[n]]`` (LANGUAGE.md §10):
    a gather, and the same delta with ``index`` free is its derivative, a scatter.  It is
    never built as a dense one-hot array by the compiler.
    """

    index: str
    table: Tensor
    span: Span | None = field(default=None, compare=False)
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, (self.index, *self.table.indices), (self.index, self.table))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.table,)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        (table,) = children
        return Pick(self.index, table, self.span) if isinstance(table, Tensor) else self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pick) and self.index == other.index and self.table == other.table

    def __repr__(self) -> str:
        return f"Pick({self.index!r}, {self.table!r})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Shift(Expr):
    """``δ[index, a·i + b·k + c]``: 1 where ``index`` equals the affine position, else 0.

    ``terms`` are ``(coefficient, name)`` pairs (integers, names distinct, sorted by name),
    ``offset`` the constant.  ``X[n, i+k]`` is ``Σ_j X[n,j] δ[j, i+k]`` (LANGUAGE.md §11):
    ``j`` ranges over X's axis only, so a position outside the array reads 0.  A constant:
    its derivative is 0, and ``d/dX`` is the same delta with ``index`` free (the transposed
    convolution).
    """

    index: str
    terms: tuple[tuple[int, str], ...]
    offset: int = 0
    span: Span | None = field(default=None, compare=False)
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _finish(self, (self.index, *(n for _, n in self.terms)), (self.index, self.terms, self.offset))

    @property
    def indices(self) -> tuple[str, ...]:
        """The delta's index and the names of its position."""
        return (self.index, *(n for _, n in self.terms))

    def renamed(self, mapping: dict[str, str]) -> Shift:
        coef: dict[str, int] = {}
        for a, n in self.terms:  # two names renamed to one add their coefficients
            coef[mapping.get(n, n)] = coef.get(mapping.get(n, n), 0) + a
        terms = tuple(sorted(((a, n) for n, a in coef.items() if a), key=lambda t: t[1]))
        return Shift(mapping.get(self.index, self.index), terms, self.offset, self.span)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Shift) and self.index == other.index and self.terms == other.terms
                and self.offset == other.offset)

    def __repr__(self) -> str:
        return f"Shift({self.index!r}, {self.terms!r}, {self.offset!r})"


def position_text(terms: tuple[tuple[int, str], ...], offset: int) -> str:
    """``2i+k-1``: an affine position as the language writes it; a lone index keeps its
    ``+0`` (``t+0``), which the parser reads as this position, where ``t`` alone would be
    the index itself (``x[t]``, ``δ[j, t]``: no index arithmetic)."""
    out = ""
    for a, n in terms:
        sign = "-" if a < 0 else ("+" if out else "")
        out += sign + ("" if abs(a) == 1 else str(abs(a))) + n
    if offset or not out or terms == ((1, terms[0][1]),):
        out += ("-" if offset < 0 else ("+" if out else "")) + str(abs(offset))
    return out


def integer_tensors(e: Expr) -> frozenset[str]:
    """The names of the tensors ``e`` reads as indices (the tables of its picks); cached
    for every node with operands (a leaf reads none: a pick's table is its operand)."""
    return _NO_NAMES if isinstance(e, LEAVES) else _integer_tensors(e)


@lru_cache(maxsize=65536)
def _integer_tensors(e: Expr) -> frozenset[str]:
    if isinstance(e, Pick):
        return frozenset((e.table.name,))
    out: frozenset[str] = _NO_NAMES
    for child in e.children:
        out |= integer_tensors(child)
    return out or _NO_NAMES  # one empty set for the many nodes without picks


#: The empty set of names, shared (a set per cached node is work for the garbage collector).
_NO_NAMES: frozenset[str] = frozenset()


#: The kinds of node without operands (a test as cheap as isinstance, not a property call).
LEAVES = (Tensor, Const, Delta, Size, Shift)
#: The leaves that read no tensor.
_NO_TENSOR_LEAVES = frozenset({Const, Delta, Size, Shift})


#: Linear-algebra functions of a matrix (LANGUAGE.md §9): ``inv`` keeps its axes, the others bind them.
MATFN_OPS = ("inv", "det", "logdet")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MatFn(Expr):
    """``inv_ij(e)``, ``det_ij(e)``, ``logdet_ij(e)`` (= log|det|) of the matrix with rows ``axes[0]``
    and columns ``axes[1]``; every other free index of ``body`` is a batch index.

    ``inv`` is a transform: its axes stay free (with the body's names).  ``det`` and ``logdet``
    are reductions: they bind their axes, which :attr:`indices` lists, as a sum's.
    """

    op: str
    axes: tuple[str, str]
    body: Expr
    span: Span | None = field(default=None, compare=False)
    _free: frozenset = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        free = self.body.free if self.op == "inv" else self.body.free - set(self.axes)
        _finish(self, free, (self.op, self.axes, self.body))

    @property
    def indices(self) -> tuple[str, ...]:
        """The indices this node binds (det, logdet: its axes; inv: none)."""
        return () if self.op == "inv" else self.axes

    @property
    def binds(self) -> tuple[str, ...]:
        return self.indices

    def rebind(self, indices: tuple[str, ...], body: Expr) -> Expr:
        """det/logdet over new axis names (its bound ones); inv keeps its (free) axes."""
        axes = self.axes if self.op == "inv" else tuple(indices)
        return MatFn(self.op, axes, body, self.span)  # type: ignore[arg-type]

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.body,)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return MatFn(self.op, self.axes, children[0], self.span)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MatFn)
            and self._hash == other._hash
            and self.op == other.op
            and self.axes == other.axes
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return f"MatFn({self.op!r}, {self.axes!r}, {self.body!r})"


def matfn(op: str, axes: Iterable[str], body: Expr) -> MatFn:
    return MatFn(op, tuple(axes), body)  # type: ignore[arg-type]


# Defining __eq__ resets __hash__ to None; every node hashes by its cached value.
for _cls in (Tensor, Delta, Const, Size, Add, Mul, Pow, Call, Sum, LogSumExp, Reduce, Choose, Compare, MatFn, Pick, Shift):
    _cls.__hash__ = Expr.__hash__  # type: ignore[method-assign]

#: Node types that bind indices (their ``binds``; a MatFn binds its axes for det and logdet).
BINDER_TYPES = (Sum, LogSumExp, Reduce)

# ---------------------------------------------------------------- smart constructors

ZERO = Const(Fraction(0))
ONE = Const(Fraction(1))


def const(value: int | float | Fraction | str) -> Const:
    return Const(Fraction(value))


def tensor(name: str, indices: Iterable[str] = ()) -> Tensor:
    return Tensor(name, tuple(indices))


def delta(indices: Iterable[str]) -> Delta:
    return Delta(tuple(indices))


def add(*terms: Expr) -> Expr:
    """Flatten nested sums of terms, fold constants (kept where the first one stood), drop zeros."""
    flat: list[Expr] = []
    total = Fraction(0)
    const_at = None
    for term in terms:
        parts = term.terms if isinstance(term, Add) else (term,)
        for part in parts:
            if isinstance(part, Const):
                total += part.value
                const_at = len(flat) if const_at is None else const_at
            else:
                flat.append(part)
    if total != 0:
        flat.insert(const_at, Const(total))
    if not flat:
        return ZERO
    if len(flat) == 1:
        return flat[0]
    return Add(tuple(flat))


def factors_of(e: Expr) -> tuple[Expr, ...]:
    """The factors of a product; anything else is a product of one factor."""
    return e.factors if isinstance(e, Mul) else (e,)


def mul(*factors: Expr) -> Expr:
    """Flatten nested products, fold constant factors into one leading constant, drop 1s."""
    flat: list[Expr] = []
    coefficient = Fraction(1)
    for factor in factors:
        parts = factor.factors if isinstance(factor, Mul) else (factor,)
        for part in parts:
            if isinstance(part, Const):
                coefficient *= part.value
            else:
                flat.append(part)
    if not flat:
        return Const(coefficient)
    if coefficient != 1:
        flat.insert(0, Const(coefficient))
    if len(flat) == 1:
        return flat[0]
    return Mul(tuple(flat))


def neg(e: Expr) -> Expr:
    return mul(Const(Fraction(-1)), e)


def power(base: Expr, exponent: int | Fraction) -> Expr:
    """``base^exponent``; folds ``x^1``, constant bases and integer powers of powers."""
    exponent = Fraction(exponent)
    if exponent == 1:
        return base
    if exponent == 0 and not base.free:
        return ONE
    if isinstance(base, Const) and exponent.denominator == 1:
        if base.value != 0 or exponent > 0:
            return Const(base.value ** int(exponent))
    if isinstance(base, Pow) and exponent.denominator == 1 and (
        base.exponent.denominator == 1 or (base.exponent * exponent).denominator != 1
    ):
        # (x^a)^n = x^(an) for integers a, n, and wherever both need x >= 0
        # ((x^½)^-1 = x^-½); but (x^½)^2 is not x where x < 0.
        return power(base.base, base.exponent * exponent)
    return Pow(base, exponent)


def call(fn: str, arg: Expr) -> Expr:
    return Call(fn, arg)


def sum_(indices: Iterable[str], body: Expr) -> Expr:
    """``Σ_{indices} body``; merges directly nested sums, sorts the bound indices."""
    bound = list(dict.fromkeys(indices))
    if not bound:
        return body
    if isinstance(body, Sum):
        bound += [i for i in body.indices if i not in bound]
        body = body.body
    return Sum(tuple(sorted(bound)), body)


def logsumexp(indices: Iterable[str], body: Expr) -> Expr:
    bound = tuple(sorted(dict.fromkeys(indices)))
    if not bound:
        return body
    return LogSumExp(bound, body)


def reduce_(op: str, indices: Iterable[str], body: Expr) -> Expr:
    """``max_{indices}(body)`` / ``min_{indices}(body)``; sorts the bound indices.

    Bound indices the body does not mention are dropped: the largest of |k| copies
    of a value is that value (an empty axis aside, see docs/language.md).
    """
    bound = tuple(sorted(i for i in dict.fromkeys(indices) if i in body.free))
    if not bound:
        return body
    return Reduce(op, bound, body)


def choose(op: str, *args: Expr) -> Expr:
    """A selection; folds it when every argument is a constant."""
    if all(isinstance(a, Const) for a in args):
        v = [a.value for a in args]
        if op == "max":
            return Const(max(v))
        if op == "min":
            return Const(min(v))
        if op == "where":
            return Const(v[1] if v[0] != 0 else v[2])
        if op == "clip":
            return Const(min(max(v[0], v[1]), v[2]))
    return Choose(op, tuple(args))


def compare(op: str, left: Expr, right: Expr) -> Expr:
    """A comparison; folds it when both sides are constants."""
    if isinstance(left, Const) and isinstance(right, Const):
        a, b = left.value, right.value
        holds = {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
        return ONE if holds else ZERO
    return Compare(op, left, right)


# ---------------------------------------------------------------- traversal helpers


def index_names(e: Expr) -> frozenset[str]:
    """Every index name in ``e`` (free, bound, of sizes); cached for nodes with operands
    (nodes are immutable).  A leaf's are read off it: caching them only gave the cyclic
    garbage collector an entry more per leaf to traverse."""
    if not isinstance(e, LEAVES):
        return _index_names(e)
    if isinstance(e, (Tensor, Delta, Shift)):
        return e.free  # their indices, as a set
    if isinstance(e, Size):
        return frozenset((e.index,))
    return _NO_NAMES


@lru_cache(maxsize=65536)
def _index_names(e: Expr) -> frozenset[str]:
    if isinstance(e, (Tensor, Delta)):
        return frozenset(e.indices)
    if isinstance(e, Size):
        return frozenset((e.index,))
    if isinstance(e, Pick):
        return frozenset((e.index, *e.table.indices))
    if isinstance(e, Shift):
        return frozenset(e.indices)
    out = frozenset(e.binds)
    if isinstance(e, MatFn):
        out = frozenset(e.axes)
    for child in e.children:
        out |= index_names(child)
    return _shared(out)


def mentions(e: Expr) -> frozenset[str]:
    """The tensor names ``e`` reads (cached for nodes with operands: nodes are immutable)."""
    if not isinstance(e, LEAVES):
        return _mentions(e)
    return frozenset((e.name,)) if isinstance(e, Tensor) else _NO_NAMES


@lru_cache(maxsize=65536)
def _mentions(e: Expr) -> frozenset[str]:
    if isinstance(e, Tensor):
        return frozenset((e.name,))
    out: frozenset[str] = frozenset()
    for child in e.children:
        out |= mentions(child)
    return _shared(out)


def rename_tensors(e: Expr, mapping: dict[str, str]) -> Expr:
    """Rename tensors by ``mapping`` (indices untouched)."""
    if not mapping:
        return e
    return _rename_tensors(e, mapping)


def _rename_tensors(e: Expr, mapping: dict[str, str]) -> Expr:
    # Leaves are told apart by their type first: a tensor is looked up directly, other
    # leaves read no tensor (a loop's gradient renames thousands of small trees, where
    # asking each leaf for the set of names it mentions cost more than the renaming).
    kind = type(e)
    if kind is Tensor:
        return Tensor(mapping[e.name], e.indices, e.span) if e.name in mapping else e  # type: ignore[attr-defined]
    if kind in _NO_TENSOR_LEAVES or mapping.keys().isdisjoint(_mentions(e)):
        return e
    children = tuple([_rename_tensors(c, mapping) for c in e.children])
    if isinstance(e, Add):
        return Add(children)
    if isinstance(e, Mul):
        return Mul(children)
    if isinstance(e, Pow):
        return Pow(children[0], e.exponent)
    if isinstance(e, Call):
        return Call(e.fn, children[0])
    if isinstance(e, BINDER_TYPES):
        return e.rebind(e.indices, children[0])
    if isinstance(e, Choose):
        return Choose(e.op, children)
    if isinstance(e, Compare):
        return Compare(e.op, children[0], children[1])
    if isinstance(e, MatFn):
        return MatFn(e.op, e.axes, children[0], e.span)
    if isinstance(e, Pick):
        return Pick(e.index, children[0], e.span)  # type: ignore[arg-type]
    return e


def merges_matrix_axes(e: Expr, mapping: dict[str, str]) -> bool:
    """Would renaming ``e`` by ``mapping`` give a matrix function two equal axes (inv_ii)?"""
    for node in walk(e):
        if isinstance(node, MatFn):
            a, b = (mapping.get(i, i) for i in node.axes)
            if a == b:
                return True
    return False


def all_indices(e: Expr) -> set[str]:
    """Every index name in ``e``: free, bound, and those of sizes."""
    out: set[str] = set()
    for node in walk(e):
        if isinstance(node, (Tensor, Delta, Shift)):
            out.update(node.indices)
        elif node.binds:
            out.update(node.binds)
        elif isinstance(node, (Size, Pick)):
            out.add(node.index)
        elif isinstance(node, MatFn):
            out.update(node.axes)
    return out


def rebuild(e: Expr, children: tuple[Expr, ...]) -> Expr:
    """``e`` over new children, through the smart constructors."""
    if children == e.children:
        return e
    return e.with_children(children)


def walk(e: Expr) -> Iterator[Expr]:
    """Every node of ``e``, parents before children."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        children = node.children
        if children:  # leaves (most nodes) add nothing
            stack.extend(children[::-1])


def tensor_refs(e: Expr) -> Iterator[Tensor]:
    for node in walk(e):
        if isinstance(node, Tensor):
            yield node


def _unshadowed(e: Expr, mapping: dict[str, str]) -> dict[str, str]:
    """The mapping for the body of binder ``e``: a bound name that ``mapping`` would turn
    into a name free in the renamed body (``exp(z_j - logsumexp_j(z_j))`` with j -> i,
    where z also reads i) gets a new name instead, so that nothing is captured."""
    bound = set(e.binds)
    outside = {mapping.get(i, i) for i in e.body.free - bound}  # type: ignore[attr-defined]
    clash = [b for b in e.binds if mapping.get(b, b) in outside]
    if not clash:
        return mapping
    inner = dict(mapping)
    taken = set(index_names(e)) | outside | set(mapping.values())
    for b in clash:
        k = 2
        while f"{b}{k}" in taken:
            k += 1
        inner[b] = f"{b}{k}"
        taken.add(inner[b])
    return inner


def rename_indices(e: Expr, mapping: dict[str, str]) -> Expr:
    """Rename indices (free or bound) by ``mapping``; keeps the tree's shape.

    The caller guarantees that no renamed index is captured by a binder, except
    where a binder rebinds a name that is free around it (softmax_j(z_j) is
    ``exp(z_j - logsumexp_j(z_j))``): a bound name that would become a free one
    takes a new name.
    """
    if not mapping or mapping.keys().isdisjoint(index_names(e)):
        return e  # nothing to rename below: keep the node (and its cached hash)
    if e.binds:
        mapping = _unshadowed(e, mapping)
    if isinstance(e, Tensor):
        return Tensor(e.name, tuple(mapping.get(i, i) for i in e.indices), e.span)
    if isinstance(e, Mul):  # the commonest nodes first
        return Mul(tuple(rename_indices(f, mapping) for f in e.factors))
    if isinstance(e, Sum):
        return Sum(tuple(mapping.get(i, i) for i in e.indices), rename_indices(e.body, mapping))
    if isinstance(e, Delta):
        return Delta(tuple(mapping.get(i, i) for i in e.indices), e.span)
    if isinstance(e, Const):
        return e
    if isinstance(e, Size):
        return Size(mapping.get(e.index, e.index))
    if isinstance(e, Pick):
        return Pick(mapping.get(e.index, e.index), rename_indices(e.table, mapping), e.span)  # type: ignore[arg-type]
    if isinstance(e, Shift):
        return e.renamed(mapping)
    if isinstance(e, Sum):
        return Sum(tuple(mapping.get(i, i) for i in e.indices), rename_indices(e.body, mapping))
    if isinstance(e, (LogSumExp, Reduce)):
        return e.rebind(tuple(mapping.get(i, i) for i in e.indices), rename_indices(e.body, mapping))
    if isinstance(e, Choose):
        return Choose(e.op, tuple(rename_indices(a, mapping) for a in e.args))
    if isinstance(e, Compare):
        return Compare(e.op, rename_indices(e.left, mapping), rename_indices(e.right, mapping))
    if isinstance(e, Add):
        return Add(tuple(rename_indices(t, mapping) for t in e.terms))
    if isinstance(e, Mul):
        return Mul(tuple(rename_indices(f, mapping) for f in e.factors))
    if isinstance(e, Pow):
        return Pow(rename_indices(e.base, mapping), e.exponent)
    if isinstance(e, Call):
        return Call(e.fn, rename_indices(e.arg, mapping))
    if isinstance(e, MatFn):
        axes = tuple(mapping.get(i, i) for i in e.axes)
        if axes[0] == axes[1] and e.op == "inv":
            # The inverse's diagonal (as A_ii is A's): Σ_k δ_ik (A⁻¹)_ik, k a new name.
            from .names import fresh_index

            k = fresh_index(index_names(e) | set(mapping) | set(mapping.values()), axes[0][0])
            inner = MatFn(e.op, (axes[0], k), rename_indices(e.body, {**mapping, e.axes[1]: k}), e.span)
            return Sum((k,), Mul((Delta((axes[0], k)), inner)))
        if axes[0] == axes[1]:  # pragma: no cover - det and logdet bind their axes (unique names)
            raise ValueError(f"renaming {mapping} merges the axes of {e!r}")
        return MatFn(e.op, axes, rename_indices(e.body, mapping), e.span)  # type: ignore[arg-type]
    raise TypeError(f"unknown node {type(e).__name__}")

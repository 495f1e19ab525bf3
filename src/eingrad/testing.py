"""Helpers for testing code built on eingrad (and for eingrad's own tests).

:func:`random_program` builds a random *valid* program: every statement
parses, every target index occurs on the right, sizes agree, and every value
stays finite on inputs drawn from ``[-1, 1]``.  The program is kept as a small
tree of what is *written* (the nodes below), and its text is generated from
that tree.  Each node also records where the parser will put the implicit sums
(``summed``), so the tree states the program's meaning on its own: a second
emitter can walk the same tree.  :meth:`RandomProgram.autograd_function` is one:
it writes the program as an ``autograd.numpy`` function, an independent oracle
for derivatives (tests/test_oracle.py).

Meaning of the nodes, each evaluated to an array over its free indices:

- ``Ref(name, indices, summed)``: the tensor, with repeated indices read on the
  diagonal, then summed over ``summed`` (indices that occur only here).
- ``Num(value)``: a constant.  ``Kron(indices)``: the Kronecker delta.
- ``Times(factors, divisors, summed)``: the elementwise product of the factors
  divided by the divisors, summed over ``summed`` (each summed index occurs in
  at least two of the factors and divisors, and nowhere else).
- ``Plus(terms)``: the sum of the terms, broadcast over missing indices.
- ``Neg(operand)``, ``Power(base, exponent)``, ``Apply(fn, arg)``: elementwise.
- ``Bind("sum" | "logsumexp" | "mean" | "max" | "min", indices, body)``: an explicit
  reduction (max/min: ties share the derivative equally, as autograd's ``np.max``).
- ``Soft(indices, body)``: ``softmax_k(body)``, ``k`` kept.
- ``Select(op, args)``: ``max(a, b)``, ``min(a, b)``, ``where(c, a, b)`` (``c`` nonzero),
  ``clip(x, lo, hi)`` with constant bounds; arguments broadcast as terms do.
- ``Cmp(op, left, right)``: ``left > right`` etc., 1 or 0.
- ``Mat("inv" | "det" | "logdet", axes, body)``: the inverse (axes kept), determinant or
  log|det| (axes bound) of the body's matrix on ``axes``, one per value of its other
  indices; the body is written ``δ + 0.1 R`` with ``|R| ≤ 2``, so every matrix is
  invertible (‖0.1 R‖ ≤ 0.8 for n ≤ 4).

No test framework is imported here; the tests import what they need.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .errors import SurprisingSumWarning
from .functions import FUNCTIONS
from .gradcheck import check_grad, random_arrays
from .program import Program

__all__ = [
    "random_program",
    "RandomProgram",
    "RandomStatement",
    "Interval",
    "Ref",
    "Gather",
    "Num",
    "Kron",
    "Times",
    "Plus",
    "Neg",
    "Power",
    "Apply",
    "Bind",
    "Soft",
    "Select",
    "Cmp",
    "Mat",
    "check_grad",
    "random_arrays",
]

# ---------------------------------------------------------------- value ranges


@dataclass(frozen=True, slots=True)
class Interval:
    """Bounds ``lo <= value <= hi`` that hold for every element, on inputs in [-1, 1]."""

    lo: float
    hi: float

    @property
    def magnitude(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def __mul__(self, other: Interval) -> Interval:
        products = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Interval(min(products), max(products))

    def __neg__(self) -> Interval:
        return Interval(-self.hi, -self.lo)

    def summed(self, count: int) -> Interval:
        """Bounds of a sum of ``count`` such values."""
        return Interval(min(self.lo, count * self.lo), max(self.hi, count * self.hi))

    def power(self, exponent: Fraction) -> Interval:
        if exponent.denominator == 1 and exponent > 0:
            k = int(exponent)
            ends = [self.lo**k, self.hi**k]
            lo = 0.0 if k % 2 == 0 and self.lo < 0 < self.hi else min(ends)
            return Interval(lo, max(ends))
        assert self.lo > 0, "the generator makes bases of such powers positive"
        ends = [self.lo ** float(exponent), self.hi ** float(exponent)]
        return Interval(min(ends), max(ends))


def _increasing(f: Callable[[float], float]) -> Callable[[Interval], Interval]:
    return lambda r: Interval(f(r.lo), f(r.hi))


def _abs_range(r: Interval) -> Interval:
    if r.lo >= 0:
        return r
    if r.hi <= 0:
        return -r
    return Interval(0.0, r.magnitude)


def _sigmoid(x: float) -> float:
    return 0.5 * (1 + math.tanh(0.5 * x))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


#: The range of each elementwise function the generator knows (functions
#: registered later are not used until they get an entry here).
FUNCTION_RANGES: dict[str, Callable[[Interval], Interval]] = {
    "exp": _increasing(math.exp),
    "log": _increasing(math.log),
    "sqrt": _increasing(math.sqrt),
    "tanh": _increasing(math.tanh),
    "sigmoid": _increasing(_sigmoid),
    "relu": _increasing(lambda x: max(x, 0.0)),
    "softplus": _increasing(_softplus),
    "abs": _abs_range,
    "sin": lambda r: Interval(-1.0, 1.0),
    "cos": lambda r: Interval(-1.0, 1.0),
}
#: Functions whose argument must be positive.
POSITIVE_DOMAIN = frozenset({"log", "sqrt"})

# ---------------------------------------------------------------- the written program

CMP, ADD, MUL, UNARY, POW, ATOM = 0, 1, 2, 3, 4, 5


def _wrap(node: Node, min_prec: int) -> str:
    text, prec = node.render()
    return text if prec >= min_prec else f"({text})"


def index_text(indices: tuple[str, ...], style: str) -> str:
    """``_ij`` (bare), ``_{ij}`` (braces), ``_{i,j}`` (commas) or ``[i, j]`` (brackets)."""
    if not indices:
        return ""
    if style == "bare":
        return "_" + "".join(indices)
    if style == "braces":
        return "_{" + "".join(indices) + "}"
    if style == "commas":
        return "_{" + ",".join(indices) + "}"
    return "[" + ", ".join(indices) + "]"


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    indices: tuple[str, ...]
    summed: tuple[str, ...]
    style: str
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return frozenset(self.indices) - frozenset(self.summed)

    def render(self) -> tuple[str, int]:
        return self.name + index_text(self.indices, self.style), ATOM


@dataclass(frozen=True, slots=True)
class Num:
    value: Fraction
    text: str  # as written: "0.5", "(1/3)", "1e-1"
    bounds: Interval

    free = frozenset()

    def render(self) -> tuple[str, int]:
        return self.text, ATOM


@dataclass(frozen=True, slots=True)
class Kron:
    indices: tuple[str, ...]
    head: str  # "δ" or "delta"
    style: str
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return frozenset(self.indices)

    def render(self) -> tuple[str, int]:
        return self.head + index_text(self.indices, self.style), ATOM


@dataclass(frozen=True, slots=True)
class Times:
    factors: tuple[Node, ...]
    divisors: tuple[Node, ...]
    summed: tuple[str, ...]
    joiner: str  # " " (juxtaposition) or " * "
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        inner = frozenset().union(*(f.free for f in self.factors + self.divisors))
        return inner - frozenset(self.summed)

    def render(self) -> tuple[str, int]:
        # Later factors must not start with a sign: "a -b" would be a subtraction.
        parts = [_wrap(self.factors[0], UNARY)] + [_wrap(f, POW) for f in self.factors[1:]]
        text = self.joiner.join(parts)
        for divisor in self.divisors:
            text += " / " + _wrap(divisor, POW)
        return text, MUL


@dataclass(frozen=True, slots=True)
class Plus:
    terms: tuple[Node, ...]
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return frozenset().union(*(t.free for t in self.terms))

    def render(self) -> tuple[str, int]:
        text = _wrap(self.terms[0], ADD)
        for term in self.terms[1:]:
            if isinstance(term, Neg):
                text += " - " + _wrap(term.operand, MUL)
            else:
                text += " + " + _wrap(term, MUL)
        return text, ADD


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.operand.free

    def render(self) -> tuple[str, int]:
        return "-" + _wrap(self.operand, POW), UNARY


@dataclass(frozen=True, slots=True)
class Power:
    base: Node
    exponent: Fraction
    text: str  # the exponent as written: "2", "-1", "0.5", "(1/3)"
    op: str  # "^" or "**"
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.base.free

    def render(self) -> tuple[str, int]:
        return _wrap(self.base, ATOM) + self.op + self.text, POW


@dataclass(frozen=True, slots=True)
class Apply:
    fn: str
    arg: Node
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.arg.free

    def render(self) -> tuple[str, int]:
        return f"{self.fn}({self.arg.render()[0]})", ATOM


@dataclass(frozen=True, slots=True)
class Bind:
    kind: str  # "sum" or "logsumexp"
    indices: tuple[str, ...]
    body: Node
    head: str  # "sum", "Σ" or "logsumexp"
    style: str
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.body.free - frozenset(self.indices)

    def render(self) -> tuple[str, int]:
        return f"{self.head}{index_text(self.indices, self.style)}({self.body.render()[0]})", ATOM


@dataclass(frozen=True, slots=True)
class Mat:
    op: str  # "inv", "det" or "logdet"
    axes: tuple[str, str]
    body: Node
    style: str
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.body.free if self.op == "inv" else self.body.free - frozenset(self.axes)

    def render(self) -> tuple[str, int]:
        return f"{self.op}{index_text(self.axes, self.style)}({self.body.render()[0]})", ATOM


@dataclass(frozen=True, slots=True)
class Soft:
    indices: tuple[str, ...]
    body: Node
    style: str
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.body.free

    def render(self) -> tuple[str, int]:
        return f"softmax{index_text(self.indices, self.style)}({self.body.render()[0]})", ATOM


@dataclass(frozen=True, slots=True)
class Select:
    op: str  # "max", "min", "where", "clip"
    args: tuple[Node, ...]
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return frozenset().union(*(a.free for a in self.args))

    def render(self) -> tuple[str, int]:
        return f"{self.op}({', '.join(a.render()[0] for a in self.args)})", ATOM


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str  # ">", ">=", "<", "<="
    left: Node
    right: Node
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return self.left.free | self.right.free

    def render(self) -> tuple[str, int]:
        return f"{_wrap(self.left, ADD)} {self.op} {_wrap(self.right, ADD)}", CMP


@dataclass(frozen=True, slots=True)
class Gather:
    """``name[..., table[t...], ...]``: input ``name`` read at the integers of input ``table``
    on axis ``axis`` (LANGUAGE.md §10); every index is free."""

    name: str
    indices: tuple[str, ...]  # the other axes of ``name``, in order (``axis`` is the lookup)
    axis: int
    table: str
    table_indices: tuple[str, ...]
    bounds: Interval

    @property
    def free(self) -> frozenset[str]:
        return frozenset(self.indices) | frozenset(self.table_indices)

    def render(self) -> tuple[str, int]:
        parts = list(self.indices)
        parts.insert(self.axis, f"{self.table}[{', '.join(self.table_indices)}]")
        return f"{self.name}[{', '.join(parts)}]", ATOM


Node = Ref | Num | Kron | Times | Plus | Neg | Power | Apply | Bind | Mat | Soft | Select | Cmp | Gather

_GRID = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])


def _selects(node) -> bool:
    """Whether ``node`` holds a max, min, clip or comparison (where ties matter)."""
    if isinstance(node, (Select, Cmp)) or (isinstance(node, Bind) and node.kind in ("max", "min")):
        return True
    children = {
        Times: lambda n: n.factors + n.divisors, Plus: lambda n: n.terms, Neg: lambda n: (n.operand,),
        Power: lambda n: (n.base,), Apply: lambda n: (n.arg,), Bind: lambda n: (n.body,),
        Soft: lambda n: (n.body,), Mat: lambda n: (n.body,),
    }.get(type(node))
    return children is not None and any(_selects(c) for c in children(node))


@dataclass(frozen=True, slots=True)
class RandomStatement:
    target: str
    indices: tuple[str, ...]
    rhs: Node
    style: str

    @property
    def text(self) -> str:
        return f"{self.target}{index_text(self.indices, self.style)} = {self.rhs.render()[0]}"


@dataclass(frozen=True)
class RandomProgram:
    """A generated program: its written form, the shapes of its inputs, its index sizes.

    Index names have one size across the whole program, so ``index_sizes``
    also gives the shape of every target.
    """

    statements: tuple[RandomStatement, ...]
    input_shapes: dict[str, tuple[int, ...]]
    index_sizes: dict[str, int]
    separator: str = "\n"
    # Inputs read as indices, with the size of the axis each picks (their values lie below it).
    integer_ranges: dict[str, int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.separator.join(s.text for s in self.statements)

    def __str__(self) -> str:
        return self.text

    def parse(self) -> Program:
        """The parsed program (the warning for a sum hidden inside a function is expected here)."""
        from .api import parse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SurprisingSumWarning)
            return parse(self.text)

    @property
    def has_ties(self) -> bool:
        """Whether the program selects (max, min, clip, comparisons): its inputs may tie."""
        return any(_selects(s.rhs) for s in self.statements)

    def random_inputs(self, rng: np.random.Generator, grid: bool | None = None) -> dict[str, np.ndarray]:
        """Arrays (0-d for scalars) with elements drawn uniformly from [-1, 1].

        With ``grid`` (by default: half the time for a program that selects) the
        elements are drawn from {-1, -1/2, 0, 1/2, 1} instead, so that max, min, clip
        and comparisons meet ties and bounds exactly.
        """
        if grid is None:
            grid = self.has_ties and bool(rng.random() < 0.5)
        if self.integer_ranges:
            return {
                name: rng.integers(0, self.integer_ranges[name], size=shape) if name in self.integer_ranges
                else rng.choice(_GRID, size=shape) if grid else rng.uniform(-1.0, 1.0, size=shape)
                for name, shape in self.input_shapes.items()
            }
        if grid:
            return {name: rng.choice(_GRID, size=shape) for name, shape in self.input_shapes.items()}
        return {name: rng.uniform(-1.0, 1.0, size=shape) for name, shape in self.input_shapes.items()}

    def autograd_function(
        self,
        wrt: str,
        output: str | None = None,
        *,
        inputs: Mapping[str, np.ndarray] | None = None,
    ) -> Callable[..., np.ndarray]:
        """The program as an ``autograd.numpy`` function ``f(x, **others)`` of input ``wrt``.

        ``f`` returns the target ``output`` (the last one by default) with its
        axes in the order of the statement's indices; the other inputs are
        keywords, defaulting to ``inputs``.  The function is written from the
        structured tree (never from the text, never through eingrad's parser or
        evaluator), one ``np.einsum`` with explicit subscripts per product or
        sum, so it is an independent oracle: ``autograd.jacobian(f)(x)`` is
        ``∂output/∂wrt``.  Needs the ``autograd`` package (imported here).
        """
        targets = [s.target for s in self.statements]
        output = targets[-1] if output is None else output
        if output not in targets:
            raise ValueError(f"{output!r} is not a target (the targets are {', '.join(targets)})")
        if wrt not in self.input_shapes:
            raise ValueError(f"{wrt!r} is not an input (the inputs are {', '.join(self.input_shapes)})")
        fixed = dict(inputs or {})
        statements = self.statements[: targets.index(output) + 1]
        emitter = _AutogradEmitter(self.index_sizes)

        def f(x, **others):
            env = {**fixed, **others, wrt: x}
            for stmt in statements:
                env[stmt.target] = emitter.statement(stmt, env)
            return env[output]

        return f


# ---------------------------------------------------------------- the autograd oracle

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _AutogradEmitter:
    """Evaluates the written tree with ``autograd.numpy``, independently of eingrad.

    Every node gives ``(array, indices)``: its value with one axis per free
    index, in the order of ``indices`` (distinct names).  Products and sums go
    through one ``einsum`` with explicit subscripts; an index repeated on one
    tensor (a diagonal) becomes a constant delta operand, so no operand has a
    repeated subscript.
    """

    def __init__(self, sizes: dict[str, int]) -> None:
        import autograd.numpy as anp
        from autograd.tracer import getval

        self.np = anp
        self.getval = getval
        self.sizes = sizes
        self.functions: dict[str, Callable] = {
            "exp": anp.exp,
            "log": anp.log,
            "sqrt": anp.sqrt,
            "tanh": anp.tanh,
            # 1/(1 + e^-x) = exp(-log(1 + e^-x)): finite for every x.
            "sigmoid": lambda x: anp.exp(-anp.logaddexp(0.0, -x)),
            # The derivative x > 0 (a constant mask) is 0 at 0, as eingrad's step.
            "relu": lambda x: anp.where(x > 0, x, 0.0),
            "softplus": lambda x: anp.logaddexp(0.0, x),
            "abs": anp.abs,
            "sin": anp.sin,
            "cos": anp.cos,
        }

    def statement(self, stmt: RandomStatement, env: dict):
        value, indices = self.node(stmt.rhs, env)
        return self.contract([(value, indices)], stmt.indices)

    def delta(self, count: int, size: int) -> np.ndarray:
        out = np.zeros((size,) * count)
        out[(np.arange(size),) * count] = 1.0
        return out

    def contract(self, operands, out: tuple[str, ...]):
        """``einsum`` of ``(array, indices)`` pairs, summing every index not in ``out``."""
        letters: dict[str, str] = {}
        subscripts: list[str] = []
        arrays: list = []
        extra: list[tuple[np.ndarray, str]] = []  # deltas for repeated indices
        scalars = []
        for value, indices in operands:
            if not indices:
                scalars.append(value)
                continue
            sub = ""
            for name in indices:
                if name not in letters:
                    letters[name] = _LETTERS[len(letters) + len(extra)]
                    sub += letters[name]
                elif letters[name] in sub:  # a diagonal: a new axis tied by a delta
                    new = _LETTERS[len(letters) + len(extra)]
                    extra.append((self.delta(2, self.sizes[name]), letters[name] + new))
                    sub += new
                else:
                    sub += letters[name]
            subscripts.append(sub)
            arrays.append(value)
        scalar = 1.0
        for value in scalars:
            scalar = scalar * value
        if not arrays:
            return scalar
        for name in out:
            assert name in letters, f"index {name} of the result occurs in no operand"
        for value, sub in extra:
            subscripts.append(sub)
            arrays.append(value)
        spec = ",".join(subscripts) + "->" + "".join(letters[name] for name in out)
        result = self.np.einsum(spec, *arrays)
        return scalar * result if scalars else result

    def node(self, node: Node, env: dict):
        anp = self.np
        if isinstance(node, Ref):
            free = tuple(sorted(node.free))
            return self.contract([(env[node.name], node.indices)], free), free
        if isinstance(node, Num):
            return float(node.value), ()
        if isinstance(node, Kron):
            return self.delta(len(node.indices), self.sizes[node.indices[0]]), node.indices
        if isinstance(node, Times):
            operands = [self.node(f, env) for f in node.factors]
            for divisor in node.divisors:
                value, indices = self.node(divisor, env)
                operands.append((1.0 / value, indices))
            free = tuple(sorted(node.free))
            return self.contract(operands, free), free
        if isinstance(node, Plus):
            free = tuple(sorted(node.free))
            total = anp.zeros(tuple(self.sizes[i] for i in free))
            for term in node.terms:
                value, indices = self.node(term, env)
                present = tuple(i for i in free if i in indices)
                value = self.contract([(value, indices)], present)  # reorder
                shape = tuple(self.sizes[i] if i in indices else 1 for i in free)
                total = total + anp.reshape(value, shape)
            return total, free
        if isinstance(node, Neg):
            value, indices = self.node(node.operand, env)
            return -value, indices
        if isinstance(node, Power):
            value, indices = self.node(node.base, env)
            e = node.exponent
            return value ** (int(e) if e.denominator == 1 else float(e)), indices
        if isinstance(node, Apply):
            value, indices = self.node(node.arg, env)
            if node.fn not in self.functions:
                raise NotImplementedError(f"the autograd oracle has no {node.fn!r}")
            return self.functions[node.fn](value), indices
        if isinstance(node, Bind):
            value, indices = self.node(node.body, env)
            free = tuple(sorted(node.free))
            if node.kind == "sum":
                return self.contract([(value, indices)], free), free
            if node.kind in ("mean", "max", "min"):
                value = self.contract([(value, indices)], free + node.indices)
                axes = tuple(range(len(free), len(free) + len(node.indices)))
                reduce = {"mean": anp.mean, "max": anp.max, "min": anp.min}[node.kind]
                return reduce(value, axis=axes), free
            assert node.kind == "logsumexp", node.kind
            # Bound axes last, then log Σ exp(x - m) + m with m a constant (the
            # function is the same for any m, so are all its derivatives).
            value = self.contract([(value, indices)], free + node.indices)
            axes = tuple(range(len(free), len(free) + len(node.indices)))
            m = np.max(self.getval(value), axis=axes, keepdims=True)
            total = anp.sum(anp.exp(value - m), axis=axes)
            return anp.log(total) + np.reshape(m, np.shape(total)), free
        if isinstance(node, Soft):
            value, indices = self.node(node.body, env)
            rest = tuple(i for i in sorted(node.free) if i not in node.indices)
            order = rest + node.indices
            value = self.contract([(value, indices)], order)
            axes = tuple(range(len(rest), len(order)))
            m = np.max(self.getval(value), axis=axes, keepdims=True)
            e = anp.exp(value - m)
            return e / anp.sum(e, axis=axes, keepdims=True), order
        if isinstance(node, (Select, Cmp)):
            free = tuple(sorted(node.free))
            args = [self.broadcast(self.node(a, env), free) for a in (
                node.args if isinstance(node, Select) else (node.left, node.right))]
            if isinstance(node, Cmp):
                a, b = (self.getval(x) for x in args)
                test = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[node.op]
                return anp.broadcast_to(test(a, b).astype(float), tuple(self.sizes[i] for i in free)), free
            if node.op == "max":
                out = anp.maximum(args[0], args[1])
            elif node.op == "min":
                out = anp.minimum(args[0], args[1])
            elif node.op == "where":
                out = anp.where(self.getval(args[0]) != 0, args[1], args[2])
            else:  # constant bounds: autograd's clip gives 0 at a bound, as eingrad
                lo, hi = float(node.args[1].value), float(node.args[2].value)
                out = anp.clip(args[0], lo, hi)
            return out, free
        if isinstance(node, Gather):
            # numpy fancy indexing (autograd's own rule differentiates it: a scatter-add),
            # every axis indexed by an arange or the table, broadcast over the free indices
            free = tuple(sorted(node.free))

            def grid(array, labels):
                order = [labels.index(i) for i in free if i in labels]
                array = np.transpose(np.asarray(array), order) if order else np.asarray(array)
                return np.reshape(array, tuple(self.sizes[i] if i in labels else 1 for i in free))

            index = [grid(np.arange(self.sizes[i]), (i,)) for i in node.indices]
            table = np.asarray(env[node.table])
            if len(set(node.table_indices)) < len(node.table_indices):  # y[n, n]: its diagonal
                unique = tuple(dict.fromkeys(node.table_indices))
                spec = "".join(_LETTERS[unique.index(i)] for i in node.table_indices)
                table = np.einsum(f"{spec}->{''.join(_LETTERS[:len(unique)])}", table)
                labels = unique
            else:
                labels = node.table_indices
            index.insert(node.axis, grid(table, labels))
            value = env[node.name][tuple(index)]
            return anp.broadcast_to(value, tuple(self.sizes[i] for i in free)), free
        if isinstance(node, Mat):
            value, indices = self.node(node.body, env)
            batch = tuple(sorted(node.body.free - frozenset(node.axes)))
            matrices = self.contract([(value, indices)], batch + node.axes)
            if node.op == "inv":
                return anp.linalg.inv(matrices), batch + node.axes
            if node.op == "det":
                return anp.linalg.det(matrices), batch
            return anp.linalg.slogdet(matrices)[1], batch
        raise TypeError(f"unknown node {type(node).__name__}")

    def broadcast(self, part, free: tuple[str, ...]):
        """``(value, indices)`` reordered to ``free``'s order, size-1 axes where it lacks one."""
        value, indices = part
        present = tuple(i for i in free if i in indices)
        value = self.contract([(value, indices)], present) if indices else value
        shape = tuple(self.sizes[i] if i in indices else 1 for i in free)
        if not free:
            return value
        # broadcast in full by an addition, whose derivative sums back over the copies
        # (autograd's np.where passes its gradient on unsummed, in the broadcast shape)
        return self.np.reshape(value, shape) + np.zeros(tuple(self.sizes[i] for i in free))


# ---------------------------------------------------------------- the generator

_INPUT_NAMES = ("A", "B", "C", "W", "X", "x", "y", "b", "u", "v", "W1", "s0", "σ", "θ", "lam")
_TARGET_NAMES = ("Y", "Z", "H", "L", "f", "g", "h1", "out", "dLdY")
_INDEX_NAMES = tuple("ijklmnpqrstuvabcdeg") + ("α", "β", "γ", "batch", "hid", "k2")
_CONSTANTS = (
    ("2", 2),
    ("3", 3),
    ("0.5", Fraction(1, 2)),
    (".25", Fraction(1, 4)),
    ("1.5", Fraction(3, 2)),
    ("(1/3)", Fraction(1, 3)),
    ("1e-1", Fraction(1, 10)),
)
_EXPONENTS = (
    ("2", 2),
    ("3", 3),
    ("-1", -1),
    ("-2", -2),
    ("0.5", Fraction(1, 2)),
    ("-0.5", Fraction(-1, 2)),
    ("(1/3)", Fraction(1, 3)),
    ("(-2/3)", Fraction(-2, 3)),
    ("1.5", Fraction(3, 2)),
)
_LIMIT = 100.0  # larger values get squashed by tanh/sin/sigmoid
_EPS = 0.05  # the least value of anything passed to log, sqrt, a division or a fractional power
_INPUT_RANGE = Interval(-1.0, 1.0)


class _Builder:
    """Builds one program; ``used`` holds the index names taken in the current scope."""

    def __init__(
        self, rng: np.random.Generator, max_depth: int, linalg: bool = True, selections: bool = True,
        gather: bool = False,
    ) -> None:
        self.rng = rng
        self.linalg = linalg
        self.selections = selections
        self.gather = gather
        self.integer: dict[str, int] = {}  # inputs read as indices -> the size of the axis picked
        self.max_depth = max_depth
        order = [_INDEX_NAMES[k] for k in rng.permutation(len(_INDEX_NAMES))]
        cycle = itertools.cycle(int(s) for s in rng.permutation([1, 2, 3, 4]))
        self.size = {name: next(cycle) for name in order}
        self.names = [_INPUT_NAMES[k] for k in rng.permutation(len(_INPUT_NAMES))]
        self.shapes: dict[str, tuple[int, ...]] = {}  # inputs and targets
        self.ranges: dict[str, Interval] = {}
        self.inputs: dict[str, tuple[int, ...]] = {}
        self.used: set[str] = set()

    # ---- small random choices
    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def fresh(self, size: int | None = None) -> str | None:
        """An index name not used in this scope (of the given size), marked used; None if none left."""
        for name in self.size:
            if name not in self.used and (size is None or self.size[name] == size):
                self.used.add(name)
                return name
        return None

    def count(self, indices) -> int:
        return math.prod(self.size[i] for i in indices)

    def index_style(self, indices: tuple[str, ...]) -> str:
        if all(len(i) == 1 for i in indices):
            return self.pick(("bare", "bare", "bare", "braces", "commas", "brackets"))
        # After a bare "_" or inside braces without commas every letter is an index.
        return "commas" if len(indices) > 1 and self.chance(0.5) else "brackets"

    # ---- programs and statements
    def program(self, n_statements: int) -> RandomProgram:
        targets = [_TARGET_NAMES[k] for k in self.rng.permutation(len(_TARGET_NAMES))]
        statements = tuple(self.statement(targets[k]) for k in range(n_statements))
        return RandomProgram(statements, dict(self.inputs), dict(self.size), self.pick(("\n", "; ")),
                             dict(self.integer))

    def statement(self, target: str) -> RandomStatement:
        self.used = set()
        indices = tuple(self.fresh() for _ in range(int(self.rng.integers(0, 4))))
        rhs = self.expr(frozenset(indices), int(self.rng.integers(0, self.max_depth + 1)))
        assert rhs.free == frozenset(indices)
        self.shapes[target] = tuple(self.size[i] for i in indices)
        self.ranges[target] = rhs.bounds
        return RandomStatement(target, indices, rhs, self.index_style(indices))  # type: ignore[arg-type]

    # ---- expressions: each returns a node whose free indices are exactly ``free``
    def expr(self, free: frozenset[str], depth: int) -> Node:
        kinds: list[tuple[str, float]] = [("product", 3.0), ("ref", 2.0)]
        if not free:
            kinds.append(("constant", 0.5))
        if depth > 0:
            kinds += [
                ("plus", 2.0),
                ("call", 2.0),
                ("binder", 1.0),
                ("logsumexp", 0.5),
                ("power", 1.0),
                ("neg", 0.5),
            ]
            if self.linalg:
                kinds.append(("matfn", 1.0))
            if self.selections:
                kinds += [("reduce", 0.6), ("select", 0.6), ("compare", 0.2)]
            if self.selections and free:
                kinds.append(("softmax", 0.4))
        if self.gather and free:
            kinds.append(("gather", 1.5))
        names, weights = zip(*kinds, strict=True)
        probabilities = np.array(weights) / sum(weights)
        kind = names[int(self.rng.choice(len(names), p=probabilities))]
        node = getattr(self, "make_" + kind)(free, depth)
        return self.tame(node, _LIMIT)

    def make_constant(self, free: frozenset[str], depth: int) -> Node:
        text, value = self.pick(_CONSTANTS)
        return Num(Fraction(value), text, Interval(float(value), float(value)))

    def make_ref(self, free: frozenset[str], depth: int) -> Node:
        return self.ref(free) or self.make_product(free, depth)

    def make_product(self, free: frozenset[str], depth: int) -> Node:
        rng = self.rng
        n = int(rng.integers(1, 4))
        summed = [k for k in (self.fresh() for _ in range(int(rng.integers(0, 3)) if n > 1 else 0)) if k]
        kron = self.kronecker(free, summed) if self.chance(0.15) else None
        # Where each index goes: free ones to one factor (two: an elementwise product),
        # summed ones to two factors (one, when the delta holds the other occurrence).
        slots = len(free) + 2 * len(summed)
        n = max(n, math.ceil(slots / 3))
        homes: list[set[str]] = [set() for _ in range(n)]
        for index in sorted(free) + summed:
            if index in free:
                copies = 2 if n > 1 and self.chance(0.25) else 1
            else:
                copies = 1 if kron is not None and index in kron.indices else 2
            least = sorted(range(n), key=lambda k: (len(homes[k]), rng.random()))
            for k in least[:copies]:
                homes[k].add(index)
        factors: list[Node] = []
        for home in homes:
            if depth > 0 and self.chance(0.3):
                factors.append(self.expr(frozenset(home), depth - 1))
            else:
                factors.append(self.ref(frozenset(home)) or self.make_product(frozenset(home), 0))
        if kron is not None:
            factors.insert(int(rng.integers(len(factors) + 1)), kron)
        if self.chance(0.2):
            factors.insert(0, self.make_constant(frozenset(), 0))
        divisors: tuple[Node, ...] = ()
        if depth > 0 and self.chance(0.15):
            part = frozenset(i for i in sorted(free) if self.chance(0.5))
            divisors = (self.positive(self.expr(part, depth - 1)),)
        if len(factors) == 1 and not divisors:
            assert not summed
            return factors[0]
        bounds = Interval(1.0, 1.0)
        for f in factors:
            bounds = bounds * f.bounds
        for d in divisors:
            bounds = bounds * Interval(1 / d.bounds.hi, 1 / d.bounds.lo)
        joiner = " * " if self.chance(0.2) else " "
        return Times(tuple(factors), divisors, tuple(summed), joiner, bounds.summed(self.count(summed)))

    def kronecker(self, free: frozenset[str], summed: list[str]) -> Kron | None:
        """δ linking an index of the product to a new summed one (which joins ``summed``)."""
        anchors = sorted(free) + summed
        anchor = self.pick(anchors) if anchors else self.fresh()
        if anchor is None:
            return None
        others = [self.fresh(self.size[anchor]) for _ in range(2 if self.chance(0.2) else 1)]
        if None in others:
            return None  # the names taken stay unused: harmless
        summed += ([] if anchors else [anchor]) + others  # type: ignore[operator]
        indices = [anchor] + others
        order = self.rng.permutation(len(indices))
        indices = tuple(indices[k] for k in order)  # type: ignore[misc]
        return Kron(indices, self.pick(("δ", "delta")), self.index_style(indices), Interval(0.0, 1.0))

    def ref(self, free: frozenset[str]) -> Ref | None:
        """A tensor reference with exactly ``free`` free: an earlier tensor, or a new input."""
        existing = [name for name in self.shapes if len(free) <= len(self.shapes[name]) <= len(free) + 2
                    and name not in self.integer]
        existing = [existing[k] for k in self.rng.permutation(len(existing))]
        # None stands for a new input: sometimes tried first, always tried last.
        for name in ([None] if self.chance(0.4) else []) + existing + [None]:
            ref = self.new_input(free) if name is None else self.fit(name, free)
            if ref is not None:
                return ref
        return None

    def new_input(self, free: frozenset[str]) -> Ref | None:
        if len(free) > 3:
            return None
        extra = int(self.rng.integers(0, 4 - len(free))) if self.chance(0.3) else 0
        sizes = [self.size[i] for i in sorted(free)] + [int(self.rng.integers(1, 5)) for _ in range(extra)]
        name = next((n for n in self.names if n not in self.shapes), f"T{len(self.shapes)}")
        order = self.rng.permutation(len(sizes))
        self.shapes[name] = tuple(sizes[k] for k in order)
        self.ranges[name] = _INPUT_RANGE
        ref = self.fit(name, free)
        if ref is None:  # no index left for the extra axes
            del self.shapes[name]
            return None
        self.inputs[name] = self.shapes[name]
        return ref

    def fit(self, name: str, free: frozenset[str]) -> Ref | None:
        """Index ``name`` so that exactly ``free`` stays free; other axes repeat a free index
        (a diagonal) or get an index that occurs only here (summed right away)."""
        shape = self.shapes[name]
        letters = sorted(free)
        for perm in itertools.permutations(range(len(shape))):
            if any(shape[axis] != self.size[i] for axis, i in zip(perm, letters, strict=False)):
                continue
            indices: list[str | None] = [None] * len(shape)
            for axis, i in zip(perm, letters, strict=False):
                indices[axis] = i
            taken = set(self.used)
            for axis in perm[len(letters) :]:
                same_size = [i for i in letters if self.size[i] == shape[axis]]
                if same_size and self.chance(0.5):
                    indices[axis] = self.pick(same_size)
                else:
                    indices[axis] = self.fresh(shape[axis])
                    if indices[axis] is None:
                        break
            else:
                done = tuple(indices)  # type: ignore[arg-type]
                summed = tuple(dict.fromkeys(i for i in done if i not in free))
                bounds = self.ranges[name].summed(self.count(summed))
                return Ref(name, done, summed, self.index_style(done), bounds)
            self.used = taken
        return None

    def make_gather(self, free: frozenset[str], depth: int) -> Node:
        """``X[..., y[...], ...]``: a new input read at a new integer input (LANGUAGE.md §10);
        the table takes one or two of ``free`` (or one twice: a diagonal), ``X`` the others and
        maybe some of the table's too (``Z[n, y[n]]``)."""
        letters = sorted(free)
        k = 1 if len(letters) == 1 or self.chance(0.6) else 2
        chosen = [letters[int(j)] for j in self.rng.permutation(len(letters))[:k]]
        table_indices = tuple(chosen) if not (k == 1 and self.chance(0.1)) else (chosen[0], chosen[0])
        others = [i for i in letters if i not in chosen] + [i for i in chosen if self.chance(0.4)]
        others = [others[int(j)] for j in self.rng.permutation(len(others))]
        if len(others) > 3:
            return self.make_ref(free, depth)
        picked = int(self.rng.integers(1, 5))
        axis = int(self.rng.integers(len(others) + 1))
        name = next((n for n in self.names if n not in self.shapes), f"T{len(self.shapes)}")
        shape = [self.size[i] for i in others]
        shape.insert(axis, picked)
        self.shapes[name] = self.inputs[name] = tuple(shape)
        self.ranges[name] = _INPUT_RANGE
        table = next((n for n in self.names if n not in self.shapes), f"T{len(self.shapes)}")
        self.shapes[table] = self.inputs[table] = tuple(self.size[i] for i in table_indices)
        self.ranges[table] = _INPUT_RANGE
        self.integer[table] = picked
        return Gather(name, tuple(others), axis, table, table_indices, _INPUT_RANGE)

    def make_plus(self, free: frozenset[str], depth: int) -> Node:
        """Terms over subsets of ``free`` (broadcast); each term has its own summed indices."""
        n = int(self.rng.integers(2, 4))
        subsets: list[set[str]] = [set() for _ in range(n)]
        for index in sorted(free):  # sorted: the same program in every process
            for k in range(n):
                if self.chance(0.6):
                    subsets[k].add(index)
            subsets[int(self.rng.integers(n))].add(index)
        outer = set(self.used)
        after = set(outer)
        terms: list[Node] = []
        for k, subset in enumerate(subsets):
            # Einstein convention: a summed index may be reused in another term.
            self.used = set(outer)
            term = self.expr(frozenset(subset), depth - 1)
            if k > 0 and self.chance(0.3):
                term = Neg(term, -term.bounds)
            terms.append(term)
            after |= self.used
        self.used = after
        bounds = terms[0].bounds
        for term in terms[1:]:
            bounds = bounds + term.bounds
        return Plus(tuple(terms), bounds)

    def make_neg(self, free: frozenset[str], depth: int) -> Node:
        operand = self.expr(free, depth - 1)
        return Neg(operand, -operand.bounds)

    def make_call(self, free: frozenset[str], depth: int) -> Node:
        fn = self.pick(sorted(set(FUNCTION_RANGES) & set(FUNCTIONS)))
        arg = self.expr(free, depth - 1)
        if fn in POSITIVE_DOMAIN:
            arg = self.positive(arg)
        elif fn == "exp":
            arg = self.tame(arg, 4.0)
        return Apply(fn, arg, FUNCTION_RANGES[fn](arg.bounds))

    def make_power(self, free: frozenset[str], depth: int) -> Node:
        text, exponent = self.pick(_EXPONENTS)
        exponent = Fraction(exponent)
        base = self.expr(free, depth - 1)
        if exponent < 0 or exponent.denominator != 1:
            base = self.positive(base)
        else:
            base = self.tame(base, 3.0)
        return Power(base, exponent, text, "**" if self.chance(0.2) else "^", base.bounds.power(exponent))

    def make_binder(self, free: frozenset[str], depth: int, kind: str = "sum") -> Node:
        bound = tuple(k for k in (self.fresh() for _ in range(2 if self.chance(0.2) else 1)) if k)
        if not bound:
            return self.make_product(free, depth)
        body = self.expr(free | frozenset(bound), depth - 1)
        n = self.count(bound)
        if kind == "sum":
            head, bounds = self.pick(("sum", "Σ")), body.bounds.summed(n)
        else:
            head = "logsumexp"
            bounds = Interval(body.bounds.lo + math.log(n), body.bounds.hi + math.log(n))
        return Bind(kind, bound, body, head, self.index_style(bound), bounds)

    def make_logsumexp(self, free: frozenset[str], depth: int) -> Node:
        return self.make_binder(free, depth, "logsumexp")

    def make_matfn(self, free: frozenset[str], depth: int) -> Node:
        """inv over two free indices of one size (the others batch), or det/logdet over two
        new ones; the matrix is δ + 0.1 R with |R| ≤ 2, invertible and well conditioned."""
        op = self.pick(("inv", "det", "logdet"))
        if op == "inv":
            pairs = [(a, b) for a in sorted(free) for b in sorted(free) if a != b and self.size[a] == self.size[b]]
            if not pairs:
                return self.make_product(free, depth)
            axes = self.pick(pairs)
        else:
            a = self.fresh()
            b = self.fresh(self.size[a]) if a is not None else None
            if b is None:
                return self.make_product(free, depth)
            axes = (a, b)
        inner = free | frozenset(axes)
        r = self.tame(self.expr(inner, depth - 1), 2.0)
        tenth = Num(Fraction(1, 10), "0.1", Interval(0.1, 0.1))
        scaled = Times((tenth, r), (), (), " ", r.bounds * tenth.bounds)
        kron = Kron(axes, self.pick(("δ", "delta")), self.index_style(axes), Interval(0.0, 1.0))
        body = Plus((kron, scaled), kron.bounds + scaled.bounds)
        n = self.size[axes[0]]
        if op == "inv":
            bounds = Interval(-5.0, 5.0)  # ‖(I + E)⁻¹‖ ≤ 1 / (1 - ‖E‖) ≤ 5
        elif op == "det":
            bounds = Interval(0.2**n, 1.8**n)
        else:
            bounds = Interval(n * math.log(0.2), n * math.log(1.8))
        return Mat(op, axes, body, self.index_style(axes), bounds)  # type: ignore[arg-type]

    def make_reduce(self, free: frozenset[str], depth: int) -> Node:
        """mean_k, max_k or min_k (LANGUAGE.md §8)."""
        kind = self.pick(("mean", "max", "min"))
        bound = tuple(k for k in (self.fresh() for _ in range(2 if self.chance(0.2) else 1)) if k)
        if not bound:
            return self.make_product(free, depth)
        body = self.expr(free | frozenset(bound), depth - 1)
        return Bind(kind, bound, body, kind, self.index_style(bound), body.bounds)

    def make_softmax(self, free: frozenset[str], depth: int) -> Node:
        """softmax_k(e) over one or two of the free indices (they stay free)."""
        over = sorted(free)
        over = [over[k] for k in self.rng.permutation(len(over))][: 2 if self.chance(0.2) else 1]
        body = self.tame(self.expr(free, depth - 1), 20.0)
        indices = tuple(over)
        return Soft(indices, body, self.index_style(indices), Interval(0.0, 1.0))

    def split(self, free: frozenset[str], n: int) -> list[frozenset[str]]:
        """``n`` subsets of ``free`` that together cover it (broadcast operands)."""
        subsets: list[set[str]] = [set() for _ in range(n)]
        for index in sorted(free):
            for k in range(n):
                if self.chance(0.6):
                    subsets[k].add(index)
            subsets[int(self.rng.integers(n))].add(index)
        return [frozenset(s) for s in subsets]

    def operands(self, subsets: list[frozenset[str]], depth: int) -> list[Node]:
        """One expression per subset.  Unlike the terms of a sum, operands never share a
        summed index name: the parser sums an index found in two operands around the whole
        selection."""
        return [self.expr(subset, depth - 1) for subset in subsets]

    def make_select(self, free: frozenset[str], depth: int) -> Node:
        """max(a, b), min(a, b), where(c, a, b) or clip(x, lo, hi) with constant bounds."""
        op = self.pick(("max", "min", "where", "clip"))
        if op == "clip":
            (x,) = self.operands([free], depth)
            lo, hi = sorted(self.rng.choice([-1, -0.5, 0, 0.5, 1], size=2, replace=False))
            bounds = (Num(Fraction(lo), repr(float(lo)), Interval(lo, lo)),
                      Num(Fraction(hi), repr(float(hi)), Interval(hi, hi)))
            return Select(op, (x, *bounds), Interval(lo, hi))
        if op == "where":
            condition = self.make_compare(frozenset(i for i in sorted(free) if self.chance(0.5)), depth)
            a, b = self.operands(self.split(free, 2), depth)
            return Select(op, (condition, a, b), Interval(min(a.bounds.lo, b.bounds.lo), max(a.bounds.hi, b.bounds.hi)))
        a, b = self.operands(self.split(free, 2), depth)
        pick = max if op == "max" else min
        return Select(op, (a, b), Interval(pick(a.bounds.lo, b.bounds.lo), pick(a.bounds.hi, b.bounds.hi)))

    def make_compare(self, free: frozenset[str], depth: int) -> Node:
        op = self.pick((">", ">=", "<", "<="))
        left, right = self.operands(self.split(free, 2), max(depth, 1))
        return Cmp(op, left, right, Interval(0.0, 1.0))

    # ---- keeping values in range
    def tame(self, node: Node, limit: float) -> Node:
        """``node``, or a bounded function of it when its values could exceed ``limit``."""
        if node.bounds.magnitude <= limit:
            return node
        fn = self.pick(("tanh", "sin", "sigmoid"))
        return Apply(fn, node, FUNCTION_RANGES[fn](node.bounds))

    def positive(self, node: Node) -> Node:
        """``node`` made at least ``_EPS``: fit for log, sqrt, division and fractional powers."""
        if node.bounds.lo >= _EPS and node.bounds.hi <= _LIMIT and self.chance(0.7):
            return node
        way = self.pick(("exp", "square", "softplus", "abs"))
        if way in ("exp", "softplus"):
            arg = self.tame(node, 2.0)
            return Apply(way, arg, FUNCTION_RANGES[way](arg.bounds))
        base = self.tame(node, 3.0)
        if way == "square":
            inner: Node = Power(base, Fraction(2), "2", "^", base.bounds.power(Fraction(2)))
        else:
            inner = Apply("abs", base, _abs_range(base.bounds))
        one = self.make_constant(frozenset(), 0)
        return Plus((inner, one), inner.bounds + one.bounds)


def random_program(
    rng: np.random.Generator,
    *,
    max_statements: int = 4,
    max_depth: int = 3,
    linalg: bool = True,
    selections: bool = True,
    gather: bool = False,
) -> RandomProgram:
    """A random valid program of 1 to ``max_statements`` statements.

    Right-hand sides mix products of tensor references (of rank 0 to 3, with
    diagonals and implicit sums), broadcasting sums of terms, elementwise
    functions (arguments kept inside their domains), powers with constant
    exponents, constants, Kronecker deltas, ``sum_k(...)`` and
    ``logsumexp_k(...)``, (``linalg``) ``inv``, ``det`` and ``logdet`` of
    invertible matrices, and (``selections``, LANGUAGE.md §8 and §13)
    ``mean_k``, ``max_k``, ``min_k``, ``softmax_k``, ``max(a, b)``, ``min(a, b)``,
    ``where``, ``clip`` and comparisons; without them a seed gives the program it
    gave before those existed.  With ``gather`` (off by default, so that every seed
    keeps its program), also integer indexing (LANGUAGE.md §10): ``X[a, y[b], c]`` reads
    a new input at the integers of a new index input (in ``integer_ranges``, drawn in
    range by :meth:`RandomProgram.random_inputs`).  Later statements read earlier targets.  Values stay
    finite on the inputs that :meth:`RandomProgram.random_inputs` draws.

    >>> import numpy as np
    >>> rp = random_program(np.random.default_rng(0))
    >>> out = rp.parse()  # a valid program
    """
    builder = _Builder(rng, max_depth, linalg, selections, gather)
    return builder.program(int(rng.integers(1, max_statements + 1)))


# ---------------------------------------------------------------- random recurrences (LANGUAGE.md §12)


@dataclass(frozen=True, slots=True)
class _TimeRef:
    """A reference as the recurrence writes it: ``X[τ, i, j]`` or ``Y[τ-1, i, j]``."""

    ref: Ref
    name: str
    position: str

    @property
    def free(self) -> frozenset[str]:
        return self.ref.free

    @property
    def bounds(self) -> Interval:
        return self.ref.bounds

    def render(self) -> tuple[str, int]:
        return f"{self.name}[{', '.join((self.position, *self.ref.indices))}]", ATOM


def _map_refs(node, fn):
    """The written tree with every ``Ref`` replaced by ``fn(ref)`` (other nodes rebuilt)."""
    import dataclasses

    if isinstance(node, Ref):
        return fn(node)
    if not dataclasses.is_dataclass(node):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = _map_refs(value, fn)
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            changes[f.name] = tuple(_map_refs(v, fn) for v in value)
    return dataclasses.replace(node, **changes) if changes else node


@dataclass(frozen=True)
class RandomRecurrence:
    """A random recurrence along the index ``τ`` and a loss ``loss`` that reads it.

    The recurrence is a random statement (``random_program``) whose previous state is
    an input ``state`` of the target's shape: ``Y[τ, I] = rhs`` with ``state`` read as
    ``Y[τ-c, ...]`` (``τ+c`` for one running backwards), some inputs read per step
    (``X[τ, ...]``), and sometimes an initial state ``δ[τ, first] Y0[I]``.  The
    oracle (``autograd_loss``) runs the written tree step by step with ``autograd.numpy``.
    """

    step: RandomProgram
    state: str
    offset: int  # the shift of the read: -1, -2 (forward) or +1 (backward)
    per_step: tuple[str, ...]  # inputs read at each step (a leading time axis)
    steps: int
    initial: bool
    text: str
    decay: bool = False  # a term 1/2 Y[τ-c, I] added to the statement

    @property
    def target(self) -> str:
        return self.step.statements[0].target

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for name, shape in self.step.input_shapes.items():
            if name == self.state:
                continue
            shapes[name] = ((self.steps,) + shape) if name in self.per_step else shape
        target_shape = self._target_shape
        if self.initial:
            shapes["Y0"] = target_shape
        shapes["G"] = (self.steps,) + target_shape
        return shapes

    @property
    def _target_shape(self) -> tuple[int, ...]:
        stmt = self.step.statements[0]
        return tuple(self.step.index_sizes[i] for i in stmt.indices)

    def random_inputs(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {name: rng.uniform(-1.0, 1.0, size=shape) for name, shape in self.input_shapes.items()}

    def autograd_loss(self, wrt: str, inputs: Mapping[str, np.ndarray]) -> Callable:
        """``loss`` as a function of ``wrt``: the steps run in a Python loop with ``autograd.numpy``."""
        import autograd.numpy as anp

        stmt = self.step.statements[0]
        emitter = _AutogradEmitter(self.step.index_sizes)
        shape = self._target_shape
        order = range(self.steps) if self.offset < 0 else range(self.steps - 1, -1, -1)
        first = 0 if self.offset < 0 else self.steps - 1

        def f(x):
            env = {**inputs, wrt: x}
            values: dict[int, object] = {}
            for tau in order:
                local = {k: (env[k][tau] if k in self.per_step else env[k]) for k in self.step.input_shapes
                         if k != self.state}
                prev = tau + self.offset
                local[self.state] = values[prev] if prev in values else anp.zeros(shape)
                value = emitter.statement(stmt, local)
                if self.decay:
                    value = value + 0.5 * local[self.state]
                if self.initial and tau == first:
                    value = value + env["Y0"]
                values[tau] = value
            ys = anp.stack([values[k] for k in range(self.steps)])
            return anp.sum(env["G"] * ys)

        return f


def random_recurrence(rng: np.random.Generator, *, max_depth: int = 2) -> RandomRecurrence | None:
    """A random recurrence (see :class:`RandomRecurrence`), or None when the random statement
    has no input of its target's shape to be the previous state."""
    step = random_program(rng, max_statements=1, max_depth=max_depth, linalg=False, selections=True)
    stmt = step.statements[0]
    target_shape = tuple(step.index_sizes[i] for i in stmt.indices)
    states = [name for name, shape in step.input_shapes.items() if shape == target_shape]
    # The previous state: an input of the target's shape, and/or a term 1/2 Y[τ-c, I] added.
    state = states[int(rng.integers(len(states)))] if states else "state"
    decay = not states or bool(rng.random() < 0.3)
    offset = int(rng.choice([-1, -1, -2, 1]))
    others = [name for name in step.input_shapes if name != state]
    if not others:
        return None  # nothing but the previous state: no array gives the number of steps
    per_step = tuple(name for name in others if rng.random() < 0.5) or (others[int(rng.integers(len(others)))],)
    steps = int(rng.integers(1, 5))
    initial = bool(rng.random() < 0.4)
    shift = f"τ{offset:+d}"

    def written(ref: Ref):
        if ref.name == state:
            return _TimeRef(ref, stmt.target, shift)
        if ref.name in per_step:
            return _TimeRef(ref, ref.name, "τ")
        return ref

    rhs = _map_refs(stmt.rhs, written)
    lhs = f"{stmt.target}[{', '.join(('τ', *stmt.indices))}]"
    rest = ", ".join(stmt.indices)
    first = 0 if offset < 0 else steps - 1
    body = rhs.render()[0]
    if decay:
        body = f"({body}) + 0.5 {stmt.target}[{', '.join((shift, *stmt.indices))}]"
    if initial:
        body = f"({body}) + δ[τ, {first}] Y0[{rest}]" if rest else f"({body}) + δ[τ, {first}] Y0"
    ys = f"{stmt.target}[{', '.join(('τ', *stmt.indices))}]"
    gs = f"G[{', '.join(('τ', *stmt.indices))}]"
    loss = f"loss = sum_{{{','.join(('τ', *stmt.indices))}}}({gs} {ys})"
    text = f"{lhs} = {body}\n{loss}"
    return RandomRecurrence(step, state, offset, per_step, steps, initial, text, decay)

"""Matrix notation for results with at most two free indices.

``matrix_form(d)`` writes an index expression the way a matrix-calculus text
does (``∂L/∂W_ij = Σ_n X_ni G_nj`` is ``Xᵀ G``), or says why there is none.
The result carries its own matrix tree, which :meth:`MatrixForm.evaluate`
computes with plain numpy (``@``, ``.T``, ``np.diag``), so that it can be
checked against the index form numerically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MissingInputError, SizeError
from ..evaluate import as_input_array, evaluate_program
from ..expr import Expr, Tensor, mentions, walk
from ..printing.latex import latex_symbol
from ..program import Program, Statement
from ..simplify import simplify
from ..sizes import infer_shapes, statement_sizes
from .nodes import Node
from .numeric import MatrixFormError, evaluate_node
from .render import LATEX, TEXT, render
from .translate import NoForm, to_matrix

__all__ = ["MatrixForm", "NoMatrixForm", "MatrixFormError", "matrix_form"]


@dataclass(frozen=True)
class MatrixForm:
    """An index expression in matrix notation.

    ``text`` is Unicode (``Xᵀ G``), :meth:`latex` LaTeX; ``indices`` are the
    free indices, rows first (one index: a column vector); ``name`` is what it
    is the value of (``∂L/∂W``, a target), if known.  A ``MatrixForm`` is true
    and a :class:`NoMatrixForm` false, so ``if form:`` asks whether one exists.
    """

    node: Node
    indices: tuple[str, ...]
    name: str | None = None
    name_latex: str | None = field(default=None, repr=False)
    _context: Any = field(default=None, repr=False, compare=False)

    exists = True

    @property
    def text(self) -> str:
        return render(self.node, TEXT)

    def latex(self) -> str:
        return render(self.node, LATEX)

    @property
    def equation(self) -> str:
        """``name = text`` (``∂L/∂W = Xᵀ G``), or the text alone when nothing is named."""
        return f"{self.name} = {self.text}" if self.name else self.text

    def equation_latex(self) -> str:
        """``equation`` in LaTeX: the derivative's or target's name, then the form."""
        return f"{self.name_latex} = {self.latex()}" if self.name_latex else self.latex()

    @property
    def shape(self) -> str:
        """What the value is: a scalar, a column vector along an index, or a matrix."""
        return describe_shape(self.indices)

    def evaluate(
        self, arrays: Mapping[str, Any] | None = None, /, *, sizes: Mapping[str, int] | None = None, **named: Any
    ) -> np.ndarray:
        """The matrix form computed with numpy; its axes are ``indices`` (as ``eg.evaluate`` lays them out).

        Arrays are the inputs of the program (or of the expression); targets an
        expression reads are computed first.  ``sizes`` declares index sizes no
        array fixes.
        """
        merged = dict(arrays or {})
        merged.update(named)
        env, index_sizes = self._context.environment(merged, sizes)
        value = evaluate_node(self.node, env, index_sizes)
        if len(self.indices) == 2:
            return value
        if len(self.indices) == 1:
            return value[:, 0]
        return np.asarray(value[0, 0])

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<MatrixForm {self.equation}>"

    def _repr_latex_(self) -> str:
        return f"${self.equation_latex()}$"


@dataclass(frozen=True)
class NoMatrixForm:
    """The answer when an expression has no matrix form; ``reason`` says why.  It is false."""

    reason: str
    indices: tuple[str, ...]
    name: str | None = None

    exists = False
    text = "no matrix form"

    def latex(self) -> str:
        return "\\text{no matrix form}"

    @property
    def equation(self) -> str:
        return f"{self.name}: {self}" if self.name else str(self)

    @property
    def shape(self) -> str:
        return describe_shape(self.indices)

    def evaluate(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise MatrixFormError(
            f"{self.name or 'the expression'} has no matrix form: {self.reason}",
            hint="evaluate the index form instead (eg.evaluate)",
        )

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"no matrix form ({self.reason})"

    def __repr__(self) -> str:
        return f"<NoMatrixForm {self.equation}>"


def describe_shape(indices: tuple[str, ...]) -> str:
    if not indices:
        return "scalar"
    if len(indices) == 1:
        return f"column vector along {indices[0]}"
    if len(indices) == 2:
        return f"matrix: rows {indices[0]}, columns {indices[1]}"
    return f"{len(indices)}-index tensor ({', '.join(indices)})"


def matrix_form(obj: Any, free: Any = None, /, *, target: str | None = None) -> MatrixForm | NoMatrixForm:
    """The matrix form of a derivative, a program statement, or an expression.

    ``obj`` is a :class:`~eingrad.Derivative` (its indices: the output's, then
    wrt's), a :class:`~eingrad.Program` (the statement assigning ``target``,
    the last by default), a :class:`~eingrad.Statement`, or an expression with
    its free indices in ``free`` (rows first), also given as a pair
    ``(expr, free)``.  Returns a :class:`MatrixForm`, or a :class:`NoMatrixForm`
    (false) that says why there is none.
    """
    from ..diff import Derivative

    if isinstance(obj, tuple) and len(obj) == 2 and free is None:
        obj, free = obj
    if isinstance(obj, Derivative):
        return _build(obj.expr, obj.indices, _DerivativeContext(obj), *_derivative_names(obj))
    if isinstance(obj, Program):
        name = obj.output if target is None else target
        stmt = obj.statement(name) if obj.is_target(name) else None
        if stmt is None:
            raise MatrixFormError(
                f"{name!r} is not a target of the program (its targets are {', '.join(obj.targets)})",
                hint="name a target the program assigns",
            )
        return _statement_form(stmt, lambda e: _ProgramContext(obj, name, e))
    if isinstance(obj, Statement):
        return _statement_form(obj, lambda e: _ExpressionContext(e, obj.indices))
    if isinstance(obj, Expr):
        indices = _free_indices(obj, free)
        return _build(obj, indices, _ExpressionContext(obj, indices), None, None)
    raise TypeError(
        "matrix_form takes a Derivative, a Program, a Statement, or an expression with its free indices, "
        f"not {type(obj).__name__}"
    )


def _statement_form(stmt: Statement, context_for) -> MatrixForm | NoMatrixForm:
    """The statement as written, else simplified (``δ_ijk A_jk`` is ``A_ii``: ``diag(A)``)."""
    name, name_latex = stmt.target, latex_symbol(stmt.target)
    form = _build(stmt.expr, stmt.indices, context_for(stmt.expr), name, name_latex)
    if not form:
        simpler = simplify(stmt.expr)
        if simpler != stmt.expr:
            second = _build(simpler, stmt.indices, context_for(simpler), name, name_latex)
            form = second or form
    return form


def _build(expr: Expr, indices: tuple[str, ...], context, name, name_latex) -> MatrixForm | NoMatrixForm:
    try:
        node = to_matrix(expr, tuple(indices))
    except NoForm as why:
        return NoMatrixForm(why.reason, tuple(indices), name)
    form = MatrixForm(node, tuple(indices), name, name_latex, context)
    spread = _spread_deltas(expr)
    if spread != expr:  # p_i (δ_ij − p_j) as p_i δ_ij − p_i p_j: diag(p) − p pᵀ, not diag(p) (I − 𝟏 pᵀ)
        try:
            other = MatrixForm(to_matrix(spread, tuple(indices)), tuple(indices), name, name_latex, context)
        except NoForm:
            return form
        if len(str(other)) < len(str(form)):
            return other
    return form


def _spread_deltas(e: Expr) -> Expr:
    """``a (δ_ij + b)`` as ``a δ_ij + a b`` (a product over a sum that holds a delta)."""
    from ..expr import Add, Delta, Mul, add, factors_of, mul

    if isinstance(e, Add):
        return add(*(_spread_deltas(t) for t in e.terms))
    if not isinstance(e, Mul):
        return e
    for k, f in enumerate(e.factors):
        if isinstance(f, Add) and any(isinstance(g, Delta) for t in f.terms for g in factors_of(t)):
            rest = e.factors[:k] + e.factors[k + 1:]
            return add(*(_spread_deltas(mul(*rest, t)) for t in f.terms))
    return e


def _free_indices(e: Expr, free: Any) -> tuple[str, ...]:
    """``free`` as a tuple of index names, checked to hold every free index of ``e``."""
    if free is None:
        if len(e.free) > 1:
            raise MatrixFormError(
                f"say which of the free indices {', '.join(sorted(e.free))} is the row",
                hint=f"matrix_form(expr, {tuple(sorted(e.free))!r})",
            )
        return tuple(e.free)
    if isinstance(free, str):
        free = free.replace(",", " ").split()
    if not all(isinstance(i, str) for i in free):
        raise MatrixFormError("free indices must be index names (strings)", hint="matrix_form(expr, ('i', 'j'))")
    free = tuple(free)
    missing = sorted(e.free - set(free))
    if missing:
        raise MatrixFormError(
            f"the index {missing[0]!r} is free in the expression but not among the free indices {free}",
            hint="list every free index of the expression, rows first",
        )
    return free


_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _derivative_names(d) -> tuple[str, str]:
    """``∂L/∂W`` (``∂²L/∂w²``) in text and LaTeX."""
    if d.order == 1:
        return f"∂{d.output}/∂{d.wrt}", f"\\frac{{\\partial {latex_symbol(d.output)}}}{{\\partial {latex_symbol(d.wrt)}}}"
    power = str(d.order).translate(_SUPERSCRIPTS)
    latex = (
        f"\\frac{{\\partial^{{{d.order}}} {latex_symbol(d.output)}}}"
        f"{{\\partial {latex_symbol(d.wrt)}^{{{d.order}}}}}"
    )
    return f"∂{power}{d.output}/∂{d.wrt}{power}", latex


# ---------------------------------------------------------------- evaluation contexts
# Each gives the arrays a matrix form reads (inputs and the targets computed from them)
# and the size of every index.


@dataclass(frozen=True)
class _DerivativeContext:
    derivative: Any

    def environment(self, arrays: dict, declared):
        d = self.derivative
        program = d.program
        forward = evaluate_program(program, arrays, declared)
        env = dict(forward)
        for name in program.inputs:
            env[name] = as_input_array(name, arrays[name])
        shapes = {name: np.shape(value) for name, value in env.items()}
        info = infer_shapes(program, {name: shapes[name] for name in program.inputs}, declared)
        own = info.sizes[program.targets.index(d.output)]
        return env, d.index_sizes(shapes, own, declared)


@dataclass(frozen=True)
class _ProgramContext:
    """A statement of a program; ``expr`` is its right-hand side as translated (maybe simplified)."""

    program: Program
    target: str
    expr: Expr

    def environment(self, arrays: dict, declared):
        program = self.program
        env = dict(evaluate_program(program, arrays, declared))
        env.update((name, as_input_array(name, value)) for name, value in arrays.items())
        info = infer_shapes(program, {name: np.shape(env[name]) for name in program.inputs}, declared)
        own = info.sizes[program.targets.index(self.target)]
        stmt = program.statement(self.target)
        shapes = {name: np.shape(value) for name, value in env.items()}
        sizes = statement_sizes(Statement(stmt.target, stmt.indices, self.expr), shapes, {**(declared or {}), **own})
        return env, {**own, **sizes}


@dataclass(frozen=True)
class _ExpressionContext:
    expr: Expr
    indices: tuple[str, ...]

    def environment(self, arrays: dict, declared):
        env = {}
        for name in sorted(mentions(self.expr)):
            if name not in arrays:
                raise MissingInputError(f"no array for {name!r}", hint=f"pass {name}=...")
            env[name] = as_input_array(name, arrays[name])
        shapes = {name: value.shape for name, value in env.items()}
        for ref in walk(self.expr):
            if isinstance(ref, Tensor) and len(ref.indices) != len(shapes[ref.name]):
                raise MatrixFormError(
                    f"{ref.name!r} has {len(ref.indices)} indices but the array passed has shape "
                    f"{shapes[ref.name]}",
                    hint="pass one axis per index",
                )
        sizes = statement_sizes(Statement("_", self.indices, self.expr), shapes, declared)
        for i in self.indices:
            if i not in sizes and declared and i in declared:
                sizes[i] = int(declared[i])  # an index the result broadcasts along
            if i not in sizes:
                raise SizeError(f"the size of index {i!r} cannot be determined", hint=f"declare it: sizes={{{i!r}: n}}")
        return env, sizes

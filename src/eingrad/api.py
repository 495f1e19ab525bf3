"""The public functions.  Errors get the program text attached here, at the boundary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .canonical import canonical
from .canonical import equivalent as _equivalent_expr
from .codegen import CompiledFunction, compile_program
from .diff import Derivative, differentiate
from .errors import EingradError
from .evaluate import evaluate_program
from .explain import Explanation, explain_derivative
from .expr import Expr
from .matrix import MatrixForm, NoMatrixForm
from .matrix import matrix_form as _matrix_form
from .program import Program, Statement
from .reverse import gradient_program
from .simplify import simplify as _simplify_expr
from .syntax import parse_program

__all__ = [
    "parse", "evaluate", "equivalent", "canonical", "diff", "hessian", "simplify", "explain", "grad", "compile",
    "matrix_form",
]


def parse(text: str) -> Program:
    """Parse a program written in index notation.

    >>> import eingrad as eg
    >>> p = eg.parse("Y_nh = X_nd W_dh + b_h")
    >>> p.inputs
    ['X', 'W', 'b']
    >>> print(p)
    Y_nh = X_nd W_dh + b_h
    """
    return parse_program(text)


def as_program(obj: Program | str) -> Program:
    if isinstance(obj, Program):
        return obj
    if isinstance(obj, str):
        return parse_program(obj)
    raise TypeError(f"expected a Program or program text, got {type(obj).__name__}")


def evaluate(
    obj: Program | str,
    arrays: Mapping[str, Any] | None = None,
    /,
    *,
    sizes: Mapping[str, int] | None = None,
    outputs: list[str] | tuple[str, ...] | None = None,
    **named_arrays: Any,
) -> dict[str, np.ndarray]:
    """Evaluate a program on numpy arrays; returns ``{target: array}`` for every target.

    Arrays can be passed as keywords or as one mapping (needed for an input
    named ``sizes``).  ``sizes`` declares index sizes that no array fixes,
    such as the indices of a delta: ``sizes={"i": 3}``.  ``outputs`` evaluates
    only the statements those targets need (inputs nothing needs may be left out).

    >>> import numpy as np, eingrad as eg
    >>> out = eg.evaluate("y_i = A_ij x_j", A=np.eye(2), x=np.array([1.0, 2.0]))
    >>> out["y"]
    array([1., 2.])
    """
    merged = dict(arrays or {})
    merged.update(named_arrays)
    if isinstance(obj, Derivative):
        with _user_errors(obj.program):
            return obj.evaluate(merged, sizes)
    program = as_program(obj)
    with _user_errors(program):
        if outputs is not None:
            if isinstance(outputs, str):
                outputs = [outputs]
            program = program.needed_for(outputs)
            # Arrays of the whole program the needed statements do not read still give
            # their shapes (dLdb_h has b's shape).
            context = {k: np.shape(v) for k, v in merged.items() if k not in program.inputs}
            merged = {k: v for k, v in merged.items() if k in program.inputs or k not in as_program(obj).inputs}
            return evaluate_program(program, merged, sizes, context)
        return evaluate_program(program, merged, sizes)


class _user_errors:
    """Attach the program text to errors and drop eingrad's internal frames."""

    def __init__(self, program: Program) -> None:
        self.program = program

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> bool:
        if isinstance(err, EingradError):
            if self.program.source is not None:
                err.with_source(self.program.source)
            raise err.with_traceback(None) from None
        return False


def diff(
    obj: Program | str,
    wrt: str,
    order: int = 1,
    output: str | None = None,
) -> Derivative:
    """The exact derivative ``∂^order output / ∂wrt^order``, simplified.

    The result's indices are the output's, then one fresh index per axis of
    ``wrt`` for each order; evaluated, its shape is
    ``shape(output) + shape(wrt) * order``.

    >>> import eingrad as eg
    >>> print(eg.diff("f_i = W_ij v_j", "W"))
    ∂f_i/∂W_kl = δ_ik v_l
    """
    program = as_program(obj)
    with _user_errors(program):
        return differentiate(program, wrt, order, output)


def explain(obj: Program | str, wrt: str, output: str | None = None) -> Explanation:
    """The derivation of ``∂output/∂wrt`` step by step, as text (``str``) and LaTeX (``.latex()``).

    >>> import eingrad as eg
    >>> steps = eg.explain("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", "b")
    >>> print(steps.derivative)
    ∂L/∂b_i = Σ_n G_ni
    """
    program = as_program(obj)
    with _user_errors(program):
        return explain_derivative(program, wrt, output)


def grad(
    obj: Program | str,
    wrt: list[str] | tuple[str, ...],
    output: str | None = None,
    seed: str | None = None,
    prefix: str | None = None,
) -> Program:
    """Reverse mode: a program with the forward statements, then one gradient statement
    per adjoint and per input in ``wrt``, in index notation.

    The output must be a scalar, or ``seed`` names the upstream gradient (an
    input with the output's shape), as the guide's ``∇_Y L`` given to a layer.
    Gradient targets are named ``dLdW`` for output ``L`` and input ``W``
    (``prefix`` overrides ``dLd``).

    >>> import eingrad as eg
    >>> print(eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], seed="dLdY"))
    Y_nh = X_nd W_dh + b_h
    dLdW_dh = X_nd dLdY_nh
    dLdb_h = Σ_n dLdY_nh
    """
    program = as_program(obj)
    with _user_errors(program):
        return gradient_program(program, wrt, output, seed, prefix)


def hessian(obj: Program | str, wrt: str, output: str | None = None) -> Derivative:
    """The second derivative: ``diff(obj, wrt, order=2)``."""
    return diff(obj, wrt, 2, output)


def simplify(obj: Program | Expr | str):
    """Simplify an expression, or every statement of a program (deltas eat indices, ...).

    >>> import eingrad as eg
    >>> print(eg.simplify("v_i = A_ij δ_jk B_ik"))
    v_i = A_ik B_ik
    """
    if isinstance(obj, Expr):
        return _simplify_expr(obj)
    program = as_program(obj)
    statements = [
        Statement(s.target, s.indices, _simplify_expr(s.expr), s.span, s.target_span)
        for s in program.statements
    ]
    return Program(tuple(statements), None)


def equivalent(a: Program | Expr | str, b: Program | Expr | str) -> bool:
    """True when two programs (or expressions) differ only in index names and operand order."""
    if isinstance(a, Expr) and isinstance(b, Expr):
        return _equivalent_expr(a, b)
    return as_program(a).equivalent(as_program(b))


def compile(  # noqa: A001
    obj: Program | Derivative | str, backend: str = "numpy", outputs: list[str] | None = None,
    debug: bool | None = None,
) -> CompiledFunction:
    """Compile a program or a derivative to fast array code for a backend.

    The result is called like :func:`evaluate` and gives the same values;
    ``.source`` is the generated Python.  Code is generated per shape
    signature (index sizes drive the contraction plan) and cached.  For a
    program, ``outputs`` limits the result (and the work) to those targets.
    ``debug=True`` checks, before every in-place write of the generated code, that
    no live value shares the buffer written (``EINGRAD_COMPILE_DEBUG=1`` turns it on
    for every compiled function).

    >>> import numpy as np, eingrad as eg
    >>> fn = eg.compile(eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], seed="dLdY"))
    >>> out = fn(X=np.ones((4, 3)), W=np.ones((3, 2)), b=np.zeros(2), dLdY=np.ones((4, 2)))
    >>> out["dLdb"]
    array([4., 4.])
    """
    if isinstance(obj, str):
        obj = as_program(obj)
    return compile_program(obj, backend, outputs, debug)


def matrix_form(
    obj: Derivative | Program | Statement | Expr | str, free: Any = None, /, *, target: str | None = None
) -> MatrixForm | NoMatrixForm:
    """The result in matrix notation when it has at most two free indices, as matrixcalculus.org writes it.

    ``obj`` is a derivative, a program (or its text; the statement assigning
    ``target``, the last one by default), a statement, or an expression with its
    free indices ``free`` (rows first).  Returns a :class:`~eingrad.matrix.MatrixForm`
    (``.text``, ``.latex()``, ``.shape``, ``.evaluate(arrays)``), or a
    :class:`~eingrad.matrix.NoMatrixForm`, which is false and says why.

    >>> import eingrad as eg
    >>> print(eg.matrix_form(eg.diff("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", "W")))
    Xᵀ G
    >>> print(eg.matrix_form("Y_nh = X_nd W_dh + b_h"))
    X W + 𝟏 bᵀ
    >>> print(eg.matrix_form(eg.diff("f_i = W_ij v_j", "W")))
    no matrix form (the result has 3 free indices (i, k, l); a matrix has at most 2)
    """
    if isinstance(obj, str):
        obj = as_program(obj)
    if isinstance(obj, Program):
        with _user_errors(obj):
            return _matrix_form(obj, free, target=target)
    return _matrix_form(obj, free, target=target)

"""The public functions.  Errors get the program text attached here, at the boundary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .canonical import canonical, equivalent as _equivalent_expr
from .errors import EingradError
from .evaluate import evaluate_program
from .expr import Expr
from .program import Program
from .syntax import parse_program

__all__ = ["parse", "evaluate", "equivalent", "canonical"]


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
    **named_arrays: Any,
) -> dict[str, np.ndarray]:
    """Evaluate a program on numpy arrays; returns ``{target: array}`` for every target.

    Arrays can be passed as keywords or as one mapping (needed for an input
    named ``sizes``).  ``sizes`` declares index sizes that no array fixes,
    such as the indices of a delta: ``sizes={"i": 3}``.

    >>> import numpy as np, eingrad as eg
    >>> out = eg.evaluate("y_i = A_ij x_j", A=np.eye(2), x=np.array([1.0, 2.0]))
    >>> out["y"]
    array([1., 2.])
    """
    program = as_program(obj)
    merged = dict(arrays or {})
    merged.update(named_arrays)
    try:
        return evaluate_program(program, merged, sizes)
    except EingradError as err:
        if program.source is not None:
            err.with_source(program.source)
        raise err.with_traceback(None) from None


def equivalent(a: Program | Expr | str, b: Program | Expr | str) -> bool:
    """True when two programs (or expressions) differ only in index names and operand order."""
    if isinstance(a, Expr) and isinstance(b, Expr):
        return _equivalent_expr(a, b)
    return as_program(a).equivalent(as_program(b))

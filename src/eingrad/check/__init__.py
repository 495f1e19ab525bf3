"""Check a user's own backward code: the guide's sanity checks, made a tool.

``check_backward(program, wrt, backward)`` runs the user's numpy function on
random inputs and compares what it returns with eingrad's gradient, in the
guide's words: a gradient must have its input's shape ("dLdb must have b's
shape (h,), got (n, h): did you forget to sum over the batch index n?"),
entries that differ are located and measured, a constant factor (a wrong
sign, a missing 2, a mean where the loss sums) is named, and the correct index
expression and numpy code are shown.

``taylor_check(program, wrt)`` is the first-order Taylor test of the guide's
Eq. 2-3: ``f(x + εΔ) - f(x) - ε ∂f/∂x·Δ`` shrinks like ε² when the derivative
is right and only like ε when it is wrong.

Index sizes default to small numbers that differ per index (n=5, d=3, h=4),
so that an axis in the wrong place is visible from its length alone.
"""

from .backward import BackwardCheckFailed, BackwardReport, GradientCheck, check_backward
from .inputs import CheckError
from .taylor import TaylorReport, TaylorTest, taylor_check

__all__ = [
    "CheckError",
    "BackwardCheckFailed",
    "GradientCheck",
    "BackwardReport",
    "TaylorTest",
    "TaylorReport",
    "check_backward",
    "taylor_check",
]

"""eingrad: tensor calculus in index notation.

Write tensor programs the way the CS189 gradients guide writes them
(``Y_nh = X_nd W_dh + b_h``), evaluate them, and print them as index
notation or LaTeX.  See LANGUAGE.md for the language.
"""

from __future__ import annotations

from . import expr
from .api import (
    canonical,
    compile,
    diff,
    equivalent,
    evaluate,
    explain,
    grad,
    hessian,
    matrix_form,
    parse,
    simplify,
)
from .check import BackwardCheckFailed, BackwardReport, CheckError, TaylorReport, check_backward, taylor_check
from .codegen.compile import CompiledCallError, UnsafeWriteError
from .diff import Derivative, DiffError
from .errors import (
    EingradError,
    IndexRuleError,
    InputError,
    InputTypeError,
    MatrixNotationWarning,
    MissingInputError,
    ParseError,
    PrecisionWarning,
    ProgramError,
    RankError,
    ReservedNameError,
    SizeError,
    SurprisingSumWarning,
    TooLargeError,
    UnknownFunctionError,
    UnknownInputError,
    ZeroDerivativeWarning,
)
from .functions import FUNCTIONS
from .program import Program, ProgramBuilder, Statement
from .reverse import GradError

__version__ = "0.1.0"

__all__ = [
    "parse",
    "diff",
    "hessian",
    "simplify",
    "explain",
    "grad",
    "GradError",
    "compile",
    "CompiledCallError",
    "UnsafeWriteError",
    "matrix_form",
    "Derivative",
    "DiffError",
    "ZeroDerivativeWarning",
    "evaluate",
    "equivalent",
    "canonical",
    "check_backward",
    "taylor_check",
    "BackwardReport",
    "TaylorReport",
    "CheckError",
    "BackwardCheckFailed",
    "Program",
    "Statement",
    "ProgramBuilder",
    "expr",
    "FUNCTIONS",
    "EingradError",
    "ParseError",
    "UnknownFunctionError",
    "ReservedNameError",
    "IndexRuleError",
    "ProgramError",
    "SizeError",
    "TooLargeError",
    "PrecisionWarning",
    "InputError",
    "MissingInputError",
    "UnknownInputError",
    "RankError",
    "InputTypeError",
    "SurprisingSumWarning",
    "MatrixNotationWarning",
]

"""Index notation as Unicode text (round-trips through the parser) and as LaTeX."""

from .latex import latex_expr, latex_program, latex_statement
from .text import format_expr, format_program, format_statement

__all__ = [
    "format_expr",
    "format_statement",
    "format_program",
    "latex_expr",
    "latex_statement",
    "latex_program",
]

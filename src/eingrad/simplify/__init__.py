"""Simplification: a rule engine and a catalog of rules (deltas eat indices, ...)."""

from .engine import SimplifyError, Step, rename_bound_apart, simplify
from .rules import RULES

__all__ = ["simplify", "Step", "SimplifyError", "RULES", "rename_bound_apart"]

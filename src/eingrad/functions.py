"""One entry per elementwise function: how it evaluates and how it prints.

Each entry keeps a function's facts together.  Evaluation is numerically
stable where the naive formula overflows (``sigmoid``, ``softplus``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    latex: str  # a LaTeX macro name (``\\exp``) or an operator name
    doc: str


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 (1 + tanh(x/2)) equals 1/(1+exp(-x)) and never overflows.
    return 0.5 * (1 + np.tanh(0.5 * x))


def _softplus(x: np.ndarray) -> np.ndarray:
    # log(1 + exp(x)), computed as logaddexp(0, x): stable for |x| large.
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.zeros((), dtype=x.dtype))


def _step(x: np.ndarray) -> np.ndarray:
    # Heaviside step with step(0) = 0, so that relu'(0) = 0 (LANGUAGE.md §4).
    return (x > 0).astype(x.dtype)


FUNCTIONS: dict[str, Function] = {}


def register(name: str, numpy_impl: Callable, latex: str, doc: str) -> None:
    """Add an elementwise function; refuses to replace an existing one."""
    if name in FUNCTIONS:
        raise ValueError(f"function {name!r} is already registered")
    FUNCTIONS[name] = Function(name, numpy_impl, latex, doc)


register("exp", np.exp, r"\exp", "e^x")
register("log", np.log, r"\log", "natural logarithm")
register("sqrt", np.sqrt, r"\sqrt", "square root")
register("tanh", np.tanh, r"\tanh", "hyperbolic tangent")
register("sigmoid", _sigmoid, r"\sigma", "1 / (1 + e^-x)")
register("relu", _relu, r"\operatorname{relu}", "max(x, 0)")
register("softplus", _softplus, r"\operatorname{softplus}", "log(1 + e^x)")
register("abs", np.abs, r"\operatorname{abs}", "|x|")
register("sin", np.sin, r"\sin", "sine")
register("cos", np.cos, r"\cos", "cosine")
register("step", _step, r"\operatorname{step}", "1 where x > 0, else 0 (the derivative of relu)")
register("sign", np.sign, r"\operatorname{sign}", "-1, 0 or 1 (the derivative of abs)")


def get_function(name: str) -> Function:
    return FUNCTIONS[name]

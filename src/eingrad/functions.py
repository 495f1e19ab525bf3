"""One entry per elementwise function: how it evaluates and how it prints.

Each entry keeps a function's facts together.  Evaluation is numerically
stable where the naive formula overflows (``sigmoid``, ``softplus``), and
``COMPOSITIONS`` evaluates a function of a function in one stable step where
the two steps lose the value (``log(sigmoid(-1000))`` is -1000, not log 0).
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
    # 1 / (1 + exp(-x)), as the compiled numpy code computes it: accurate to the last bits
    # everywhere (far below 0, exp(-x) overflows to inf and the result is 0, where the
    # true value underflows).  0.5 (1 + tanh(x/2)) cancels: it is 0 at x = -40 (4.2e-18).
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    # log(1 + exp(x)), computed as logaddexp(0, x): stable for |x| large.
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


# Below this, log(softplus(x)) = log(log1p(e^x)) = x - e^x/2 + O(e^2x) to double precision.
LOG_SOFTPLUS_SWITCH = -20.0


def _log_softplus(x: np.ndarray) -> np.ndarray:
    # log(softplus(x)): softplus(-1000) underflows to 0, but its log is -1000.
    low = np.minimum(x, LOG_SOFTPLUS_SWITCH)
    high = np.maximum(x, LOG_SOFTPLUS_SWITCH)
    return np.where(x < LOG_SOFTPLUS_SWITCH, low - 0.5 * np.exp(low), np.log(_softplus(high)))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    # log(σ(x)) = -softplus(-x): finite for every finite x.
    return -_softplus(-x)


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


#: (outer, inner) -> outer(inner(x)) computed in one step, where computing inner(x) first
#: rounds it to 0 (or inf) and loses the value.  The simplifier rewrites the first two
#: (log(exp(x)) = x, log(σ(x)) = -softplus(-x)); log(softplus(x)) has no closed form in
#: the language, so evaluation and compiled code compute it with this step.
COMPOSITIONS: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("log", "exp"): lambda x: x,
    ("log", "sigmoid"): _log_sigmoid,
    ("log", "softplus"): _log_softplus,
}


def get_function(name: str) -> Function:
    return FUNCTIONS[name]

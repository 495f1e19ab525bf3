"""Evaluate a matrix form with plain numpy: ``@``, ``.T``, ``np.diag``, ``*``, ``+``.

Every value is a 2-D array (a scalar is 1×1, a vector a column n×1) and must
have exactly the shape its node's labels give: nothing broadcasts, so a
misplaced transpose shows up as a wrong shape rather than a wrong number.
This is deliberately independent of eingrad's index interpreter, so that
comparing the two checks the translation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import EingradError
from ..functions import FUNCTIONS
from .nodes import (
    Det,
    Diag,
    DiagOf,
    Func,
    Hadamard,
    Identity,
    Inverse,
    LogSumExpOf,
    MatMul,
    Node,
    Num,
    Ones,
    Plus,
    Power,
    Scale,
    SizeOf,
    Trace,
    Transpose,
    Var,
    Zeros,
)

__all__ = ["MatrixFormError", "evaluate_node"]


class MatrixFormError(EingradError, ValueError):
    """A matrix form that does not exist was evaluated, or its input does not fit."""


def evaluate_node(n: Node, env: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
    """``n`` as a 2-D array, given the tensors ``env`` and the index sizes ``sizes``."""
    value = _value(n, env, sizes)
    want = _shape(n, sizes)
    if value.shape != want:  # pragma: no cover - a bug in the translation, not the user's input
        raise AssertionError(f"{type(n).__name__} evaluated to shape {value.shape}, expected {want}")
    return value


def _shape(n: Node, sizes: Mapping[str, int]) -> tuple[int, int]:
    return tuple(1 if i is None else _size(i, sizes) for i in (n.rows, n.cols))  # type: ignore[return-value]


def _size(index: str, sizes: Mapping[str, int]) -> int:
    if index not in sizes:
        raise MatrixFormError(
            f"the size of index {index!r} is unknown",
            hint=f"declare it: sizes={{{index!r}: n}}",
        )
    return int(sizes[index])


def _value(n: Node, env: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
    ev = lambda child: evaluate_node(child, env, sizes)  # noqa: E731
    if isinstance(n, Var):
        return _variable(n, env)
    if isinstance(n, Num):
        return np.full((1, 1), _float(n.value))
    if isinstance(n, SizeOf):
        return np.full((1, 1), float(_size(n.index, sizes)))
    if isinstance(n, Ones):
        return np.ones(_shape(n, sizes))
    if isinstance(n, Zeros):
        return np.zeros(_shape(n, sizes))
    if isinstance(n, Identity):
        return np.eye(_size(n.rows, sizes))
    if isinstance(n, Transpose):
        return ev(n.arg).T
    if isinstance(n, MatMul):
        out = ev(n.factors[0])
        for f in n.factors[1:]:
            out = out @ ev(f)
        return out
    if isinstance(n, Hadamard):
        out = ev(n.factors[0])
        for f in n.factors[1:]:
            out = out * _same(ev(f), out)
        return out
    if isinstance(n, Plus):
        out = ev(n.terms[0])
        for t in n.terms[1:]:
            out = out + _same(ev(t), out)
        return out
    if isinstance(n, Scale):
        out = ev(n.factors[-1]) * float(n.coef)
        for f in n.factors[:-1]:
            out = out * ev(f)[0, 0]
        return out
    if isinstance(n, Func) and n.fn == "softmax":  # along the columns (each row), or a vector's entries
        x = ev(n.arg)
        axis = 1 if n.arg.cols is not None else 0
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)
    if isinstance(n, Func):
        return FUNCTIONS[n.fn].numpy(ev(n.arg))
    if isinstance(n, Power):
        return _power(ev(n.arg), n.exponent)
    if isinstance(n, Diag):
        return np.diag(ev(n.arg)[:, 0])
    if isinstance(n, DiagOf):
        return np.diag(ev(n.arg)).copy()[:, None]
    if isinstance(n, Trace):
        return np.full((1, 1), np.trace(ev(n.arg)))
    if isinstance(n, LogSumExpOf):
        return _logsumexp(ev(n.arg), n.left, n.right)
    if isinstance(n, Inverse):
        return np.linalg.inv(ev(n.arg))
    if isinstance(n, Det):
        sign, logabs = np.linalg.slogdet(ev(n.arg))
        return np.full((1, 1), logabs if n.log else sign * np.exp(logabs))
    raise TypeError(f"cannot evaluate {type(n).__name__}")


def _variable(n: Var, env: Mapping[str, np.ndarray]) -> np.ndarray:
    if n.name not in env:
        raise MatrixFormError(f"no array for {n.name!r}", hint=f"pass {n.name}=...")
    value = np.asarray(env[n.name], dtype=float)
    if value.ndim != n.rank:
        raise MatrixFormError(
            f"{n.name!r} must have {n.rank} ax{'is' if n.rank == 1 else 'es'}, got shape {value.shape}",
            hint="pass the array the index expression reads",
        )
    return value.reshape((1, 1) if n.rank == 0 else (-1, 1) if n.rank == 1 else value.shape)


def _same(value: np.ndarray, like: np.ndarray) -> np.ndarray:
    if value.shape != like.shape:  # pragma: no cover - a bug in the translation
        raise AssertionError(f"elementwise operands of shapes {like.shape} and {value.shape}")
    return value


def _power(base: np.ndarray, exponent) -> np.ndarray:
    if exponent.denominator == 1:
        return base ** int(exponent)
    return base ** float(exponent)


def _logsumexp(a: np.ndarray, left: bool, right: bool) -> np.ndarray:
    """``log(1ᵀ exp(a) 1)`` over the chosen axes, shifted by the maximum so nothing overflows."""
    axes = tuple(axis for axis, chosen in ((0, left), (1, right)) if chosen)
    top = np.max(a, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(a - top), axis=axes, keepdims=True)) + top


def _float(value) -> float:
    """The nearest float64; ±inf beyond its range."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")

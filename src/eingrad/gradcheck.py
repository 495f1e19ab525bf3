"""Numerical checks of symbolic derivatives: central finite differences along random directions.

For order k, the derivative ``D_k`` contracted with a direction ``v`` over its
last ``wrt`` axes must match ``(D_{k-1}(x + εv) - D_{k-1}(x - εv)) / 2ε``,
with ``D_0`` the output itself (autograd's ``check_grads`` does the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .api import as_program, diff, evaluate
from .expr import Pick, walk
from .program import Program

__all__ = ["check_grad", "random_arrays"]


def random_arrays(
    program: Program, sizes: Mapping[str, int] | None = None, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """Standard-normal inputs for ``program``; index sizes from ``sizes`` (default 3)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    sizes = dict(sizes or {})
    out = {}
    for name in program.inputs:
        ref = program.first_use(name)
        shape = tuple(sizes.get(i, 3) for i in ref.indices)
        picked = [sizes.get(p.index, 3) for s in program.statements for p in walk(s.expr)
                  if isinstance(p, Pick) and p.table.name == name]
        # an index input: random integers in range of the axis it picks
        out[name] = rng.integers(0, min(picked), shape) if picked else rng.standard_normal(shape)
    return out


def check_grad(
    program: Program | str,
    wrt: str,
    arrays: Mapping[str, Any] | None = None,
    *,
    order: int = 2,
    output: str | None = None,
    sizes: Mapping[str, int] | None = None,
    rng: np.random.Generator | None = None,
    directions: int = 2,
    eps: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> float:
    """Check ``diff(program, wrt, k)`` for k = 1..order against central differences.

    Returns the largest relative error seen; raises ``AssertionError`` naming the
    order, the worst entry and both values when a check fails.
    """
    program = as_program(program)
    rng = rng if rng is not None else np.random.default_rng(0)
    if arrays is None:
        arrays = random_arrays(program, sizes, rng)
    integer = program.index_inputs  # index inputs pass through as integers
    arrays = {k: np.asarray(v) if k in integer else np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    output = output or program.output
    derivatives = [None] + [diff(program, wrt, k, output) for k in range(1, order + 1)]
    x = arrays[wrt]

    def value(k: int, point: np.ndarray) -> np.ndarray:
        env = dict(arrays)
        env[wrt] = point
        if k == 0:
            return np.asarray(evaluate(program, env, sizes=sizes)[output])
        return np.asarray(evaluate(derivatives[k], env, sizes=sizes))

    worst = 0.0
    for k in range(1, order + 1):
        exact = value(k, x)
        for _ in range(directions):
            v = rng.standard_normal(x.shape)
            predicted = np.tensordot(exact, v, axes=x.ndim) if x.ndim else exact * v
            numeric = (value(k - 1, x + eps * v) - value(k - 1, x - eps * v)) / (2 * eps)
            error = np.abs(predicted - numeric)
            scale = np.maximum(np.abs(predicted), np.abs(numeric))
            bad = error > atol + rtol * scale
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(scale > 0, error / np.maximum(scale, atol), error)
            worst = max(worst, float(np.max(rel, initial=0.0)))
            if np.any(bad):
                where = np.unravel_index(int(np.argmax(error - rtol * scale)), error.shape)
                raise AssertionError(
                    f"order-{k} derivative of {output!r} with respect to {wrt!r} disagrees with "
                    f"finite differences at {tuple(int(i) for i in where)}: "
                    f"symbolic {np.ravel(predicted)[np.ravel_multi_index(where, error.shape) if error.shape else 0]!r}, "
                    f"numeric {np.ravel(numeric)[np.ravel_multi_index(where, error.shape) if error.shape else 0]!r}\n"
                    f"  derivative: {derivatives[k]}"
                )
    return worst

"""The reference interpreter: evaluates programs on numpy arrays.

Correct first, reasonably fast second: it is the oracle every compiled backend
is checked against.  Contractions (a sum over a product) go to
``opt_einsum.contract``, which picks a contraction order for the actual sizes,
so a chain of three matrices never becomes a 4-index intermediate.  Deltas are
materialised here (the compiler never does that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import opt_einsum

from .errors import InputTypeError
from .expr import (
    Add,
    Call,
    Choose,
    Compare,
    Const,
    Delta,
    Expr,
    LogSumExp,
    Mul,
    Pow,
    Reduce,
    Size,
    Sum,
    Tensor,
    factors_of,
)
from .functions import FUNCTIONS
from .program import Program
from .sizes import infer_shapes

__all__ = ["evaluate_program", "as_input_array"]

Labelled = tuple[np.ndarray, tuple[str, ...]]


def as_input_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a numeric numpy array; integers and booleans become float64."""
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - any conversion failure is the user's input
        array = None
    if array is None or array.dtype.kind not in "biufc":
        kind = type(value).__name__ if array is None else f"an array of dtype {array.dtype}"
        raise InputTypeError(
            f"input {name!r} must be numeric, got {kind}",
            hint="pass a numpy array of floats (or a Python number for a scalar)",
        )
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    return array


class _Interpreter:
    def __init__(self, env: dict[str, np.ndarray], sizes: dict[str, int], dtype: np.dtype) -> None:
        self.env = env
        self.sizes = sizes
        self.dtype = dtype

    def eval(self, e: Expr) -> Labelled:
        method = getattr(self, "eval_" + type(e).__name__)
        return method(e)

    def eval_Tensor(self, e: Tensor) -> Labelled:
        array = self.env[e.name]
        labels = tuple(dict.fromkeys(e.indices))
        if len(labels) != len(e.indices):  # A_ii: read the diagonal
            array = _einsum(e.indices, [array], labels)
        return array, labels

    def eval_Delta(self, e: Delta) -> Labelled:
        labels = tuple(dict.fromkeys(e.indices))
        n = self.sizes[labels[0]]
        array = np.zeros((n,) * len(labels), dtype=self.dtype)
        diagonal = np.arange(n)
        array[(diagonal,) * len(labels)] = 1
        return array, labels

    def eval_Const(self, e: Const) -> Labelled:
        return np.asarray(float(e.value), dtype=self.dtype), ()

    def eval_Size(self, e: Size) -> Labelled:
        return np.asarray(self.sizes[e.index], dtype=self.dtype), ()

    def eval_Add(self, e: Add) -> Labelled:
        parts = [self.eval(t) for t in e.terms]
        labels = tuple(dict.fromkeys(label for _, ls in parts for label in ls))
        total = None
        for array, ls in parts:
            aligned = _align(array, ls, labels)
            total = aligned if total is None else total + aligned
        assert total is not None
        return np.broadcast_to(total, tuple(self.sizes[i] for i in labels)), labels

    def eval_Mul(self, e: Mul) -> Labelled:
        return self.contract(e.factors, tuple(sorted(e.free, key=_first_seen(e))))

    def eval_Sum(self, e: Sum) -> Labelled:
        out = tuple(sorted(e.free, key=_first_seen(e)))
        factors = factors_of(e.body)
        array, labels = self.contract(factors, out)
        for index in e.indices:  # Σ_i x with x independent of i is |i| x
            if index not in e.body.free:
                array = array * np.asarray(self.sizes[index], dtype=self.dtype)
        return array, labels

    def contract(self, factors: tuple[Expr, ...], out: tuple[str, ...]) -> Labelled:
        parts = [self.eval(f) for f in factors]
        arrays = [a for a, _ in parts]
        labels = [ls for _, ls in parts]
        return _einsum_many(labels, arrays, out), out

    def eval_Pow(self, e: Pow) -> Labelled:
        base, labels = self.eval(e.base)
        exponent = e.exponent
        with np.errstate(all="ignore"):
            if exponent.denominator == 1:
                k = int(exponent)
                if k < 0:
                    result = np.reciprocal(base ** (-k) if k != -1 else base)
                else:
                    result = base**k
            else:
                result = np.power(base, float(exponent))
        return np.asarray(result, dtype=np.result_type(base, self.dtype)), labels

    def eval_Call(self, e: Call) -> Labelled:
        arg, labels = self.eval(e.arg)
        with np.errstate(all="ignore"):
            return np.asarray(FUNCTIONS[e.fn].numpy(arg)), labels

    def eval_LogSumExp(self, e: LogSumExp) -> Labelled:
        body, labels = self.eval(e.body)
        axes = tuple(k for k, label in enumerate(labels) if label in e.indices)
        kept = tuple(label for label in labels if label not in e.indices)
        with np.errstate(all="ignore"):
            shift = np.max(body, axis=axes, keepdims=True)
            shift = np.where(np.isfinite(shift), shift, 0)
            total = np.sum(np.exp(body - shift), axis=axes, keepdims=True)
            result = np.log(total) + shift
        return np.squeeze(result, axis=axes), kept

    def eval_Reduce(self, e: Reduce) -> Labelled:
        """max_k / min_k; over an empty axis the identity, -inf / +inf (as logsumexp gives -inf)."""
        body, labels = self.eval(e.body)
        axes = tuple(k for k, label in enumerate(labels) if label in e.indices)
        kept = tuple(label for label in labels if label not in e.indices)
        reduce = np.max if e.op == "max" else np.min
        initial = -np.inf if e.op == "max" else np.inf
        return np.asarray(reduce(body, axis=axes, initial=initial)), kept

    def aligned_args(self, args: tuple[Expr, ...]) -> tuple[list[np.ndarray], tuple[str, ...]]:
        """The arguments broadcast against each other, as the terms of a sum are."""
        parts = [self.eval(a) for a in args]
        labels = tuple(dict.fromkeys(label for _, ls in parts for label in ls))
        return [_align(np.asarray(a), ls, labels) for a, ls in parts], labels

    def eval_Choose(self, e: Choose) -> Labelled:
        args, labels = self.aligned_args(e.args)
        with np.errstate(all="ignore"):
            if e.op == "max":
                out = np.maximum(args[0], args[1])
            elif e.op == "min":
                out = np.minimum(args[0], args[1])
            elif e.op == "where":
                out = np.where(args[0] != 0, args[1], args[2])
            else:  # clip(x, lo, hi) = min(max(x, lo), hi)
                out = np.minimum(np.maximum(args[0], args[1]), args[2])
        out = np.asarray(out, dtype=np.result_type(out, self.dtype))
        return np.broadcast_to(out, tuple(self.sizes[i] for i in labels)), labels

    def eval_Compare(self, e: Compare) -> Labelled:
        (a, b), labels = self.aligned_args((e.left, e.right))
        with np.errstate(all="ignore"):
            out = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[e.op](a, b)
        return np.broadcast_to(out.astype(self.dtype), tuple(self.sizes[i] for i in labels)), labels


def _first_seen(e: Expr):
    order: dict[str, int] = {}
    from .expr import walk

    for node in walk(e):
        if isinstance(node, (Tensor, Delta)):
            for i in node.indices:
                order.setdefault(i, len(order))
    return lambda i: order.get(i, len(order))


def _align(array: np.ndarray, labels: tuple[str, ...], target: tuple[str, ...]) -> np.ndarray:
    """Transpose ``array`` to ``target``'s order, with size-1 axes for missing labels."""
    order = [labels.index(t) for t in target if t in labels]
    array = np.transpose(array, order) if order != list(range(len(order))) else array
    shape = []
    it = iter(array.shape)
    for t in target:
        shape.append(next(it) if t in labels else 1)
    return array.reshape(shape)


def _symbols(labels_list) -> dict[str, str]:
    table: dict[str, str] = {}
    for labels in labels_list:
        for label in labels:
            if label not in table:
                table[label] = opt_einsum.get_symbol(len(table))
    return table


def _einsum(spec: tuple[str, ...], arrays: list[np.ndarray], out: tuple[str, ...]) -> np.ndarray:
    table = _symbols([spec, out])
    subscripts = "".join(table[s] for s in spec) + "->" + "".join(table[s] for s in out)
    return np.einsum(subscripts, *arrays)


def _einsum_many(labels: list[tuple[str, ...]], arrays: list[np.ndarray], out: tuple[str, ...]) -> np.ndarray:
    if len(arrays) == 1 and labels[0] == out:
        return arrays[0]
    table = _symbols(labels + [out])
    subscripts = ",".join("".join(table[s] for s in ls) for ls in labels)
    subscripts += "->" + "".join(table[s] for s in out)
    return np.asarray(opt_einsum.contract(subscripts, *arrays, optimize="auto"))


def _is_python_number(value: Any) -> bool:
    return isinstance(value, (int, float, complex)) and not isinstance(value, np.generic)


def evaluate_expression(
    expr: Expr,
    env: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    out_indices: tuple[str, ...],
    dtype: np.dtype,
) -> np.ndarray:
    """Evaluate one expression with known index sizes, laid out along ``out_indices``."""
    array, labels = _Interpreter(dict(env), dict(sizes), dtype).eval(expr)
    value = _align(np.asarray(array), labels, out_indices)
    value = np.broadcast_to(value, tuple(sizes[i] for i in out_indices))
    return np.array(value, dtype=np.result_type(value.dtype, dtype), copy=True)


def evaluate_program(
    program: Program,
    arrays: Mapping[str, Any],
    declared: Mapping[str, int] | None = None,
    context: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``program`` on ``arrays``; returns every target's value, in program order.
    ``context``: shapes only (see :func:`eingrad.sizes.infer_shapes`)."""
    inputs = {}
    for name, value in arrays.items():
        try:
            inputs[name] = as_input_array(name, value)
        except InputTypeError as err:
            if name in program.inputs:
                err.spans = [program.first_use(name).span]
            raise
    info = infer_shapes(program, {k: v.shape for k, v in inputs.items()}, declared, context)
    # Python numbers are weak (as in numpy's NEP 50): they take the arrays' dtype, so
    # lam=0.1 next to float32 arrays keeps the computation in float32.
    weak = [name for name, value in arrays.items() if _is_python_number(value)]
    strong = [a.dtype for name, a in inputs.items() if name not in weak]
    if strong:
        dtype = np.result_type(*strong, *(arrays[name] for name in weak))
        inputs.update((name, inputs[name].astype(dtype)) for name in weak)
    else:
        dtype = np.result_type(np.float64, *(a.dtype for a in inputs.values()))
    env: dict[str, np.ndarray] = dict(inputs)
    results: dict[str, np.ndarray] = {}
    for stmt, sizes in zip(program.statements, info.sizes, strict=True):
        array, labels = _Interpreter(env, sizes, dtype).eval(stmt.expr)
        value = _align(np.asarray(array), labels, stmt.indices)
        value = np.broadcast_to(value, tuple(sizes[i] for i in stmt.indices))
        value = np.array(value, dtype=np.result_type(value.dtype, dtype), copy=True)
        env[stmt.target] = value
        results[stmt.target] = value
    return results

"""The reference interpreter: evaluates programs on numpy arrays.

Correct first, reasonably fast second: it is the oracle every compiled backend
is checked against.  Every sum over a product is planned as the compiler plans
it: a delta ties indices together instead of becoming an array (a delta is an
array only where it is in the result, on a diagonal), a sum of terms is summed
term by term, and opt_einsum orders the pairwise products for the actual
sizes, so a chain of three matrices never becomes a 4-index intermediate.
Every array whose size is known beforehand (intermediates, sums, results) is
checked to fit before it is allocated (:func:`eingrad.errors.check_allocation`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import opt_einsum

from .errors import InputError, InputTypeError, check_allocation, max_array_bytes
from .expr import (
    Add,
    Call,
    Choose,
    Compare,
    Const,
    Delta,
    Expr,
    LogSumExp,
    MatFn,
    Mul,
    Pick,
    Pow,
    Reduce,
    Shift,
    Size,
    Sum,
    Tensor,
    factors_of,
)
from .functions import COMPOSITIONS, FUNCTIONS
from .program import Program
from .sizes import infer_shapes, step_shapes

__all__ = ["evaluate_program", "as_input_array"]

Labelled = tuple[np.ndarray, tuple[str, ...]]


def as_index_array(name: str, value: Any, span=None) -> np.ndarray:
    """``value``, an input read as an index (``y`` of ``Z[n, y[n]]``), as an integer array."""
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - any conversion failure is the user's input
        array = None
    if array is None or array.dtype.kind not in "iu":
        kind = type(value).__name__ if array is None else f"an array of dtype {array.dtype}"
        raise InputTypeError(
            f"input {name!r} is used as an index, so it must hold integers, got {kind}",
            spans=span,
            hint=f"pass {name} as an integer array (e.g. numpy.int64 labels); an index is never a float",
        )
    return array


def check_index_range(name: str, array: np.ndarray, size: int, span=None, position: str = "") -> None:
    """Every value of the index array ``name`` lies in ``0 … size-1`` (numpy would wrap -1)."""
    if array.size == 0:
        return
    bad = (array < 0) | (array >= size)
    if bad.any():
        where = tuple(int(k) for k in np.argwhere(bad)[0])
        value = int(array[where])
        raise InputError(
            f"index {name}{list(where)} = {value} is out of range for {position or 'its axis'} "
            f"of size {size}",
            spans=span,
            hint=f"the values of {name!r} must lie in 0 … {size - 1}",
        )


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
    """Evaluates one statement's expression.  Every value is an array with one label per
    axis (distinct labels); a free index of the node that is not among the labels means
    the value is constant along it (broadcast only when a result needs the axis)."""

    def __init__(self, env: dict[str, np.ndarray], sizes: dict[str, int], dtype: np.dtype) -> None:
        self.env = env
        self.sizes = sizes
        self.dtype = dtype

    def run(self, e: Expr) -> Labelled:
        """``e``'s value, with numpy's floating-point warnings silenced (NaN propagates)."""
        with np.errstate(all="ignore"):
            return self.eval(e)

    def eval(self, e: Expr) -> Labelled:
        method = getattr(self, "eval_" + type(e).__name__)
        return method(e)

    def check(self, labels, what: str, dtype=None) -> None:
        """Refuse, before allocating it, an array over ``labels`` that cannot fit."""
        itemsize = np.dtype(dtype if dtype is not None else self.dtype).itemsize
        check_allocation(tuple(self.sizes[i] for i in labels), itemsize, what)

    def eval_Tensor(self, e: Tensor) -> Labelled:
        array = self.env[e.name]
        labels = tuple(dict.fromkeys(e.indices))
        if len(labels) != len(e.indices):  # A_ii: read the diagonal
            array = _einsum(e.indices, [array], labels)
        return array, labels

    def eval_Delta(self, e: Delta) -> Labelled:
        return self.contract((e,), tuple(dict.fromkeys(e.indices)))

    def eval_Pick(self, e: Pick) -> Labelled:
        """δ[c, y[n]] as a dense 0/1 array (the oracle; compiled code never builds it)."""
        table, labels = self.eval_Tensor(e.table)
        size = self.sizes[e.index]
        check_index_range(e.table.name, table, size, e.table.span, "the axis it picks")
        if e.index in labels:  # δ[n, y[n]]: 1 where y_n = n
            out = labels
            onehot = (table == _align(np.arange(size), (e.index,), labels))
        else:
            out = (e.index,) + labels
            self.check(out, "the delta " + str(e))
            onehot = np.arange(size).reshape((size,) + (1,) * len(labels)) == table
        return onehot.astype(self.dtype), out

    def eval_Shift(self, e: Shift) -> Labelled:
        """δ[j, a·i + b·k + c] as a dense 0/1 array over its distinct indices (the oracle):
        broadcast aranges compared, checked to fit first."""
        labels = tuple(dict.fromkeys(e.indices))
        self.check(labels, "the shifted delta " + str(e))
        ndim = len(labels)

        def axis(name: str) -> np.ndarray:
            shape = [1] * ndim
            shape[labels.index(name)] = self.sizes[name]
            return np.arange(self.sizes[name], dtype=np.int64).reshape(shape)

        position: np.ndarray | int = e.offset
        for a, name in e.terms:
            position = position + a * axis(name)
        return np.equal(axis(e.index), position).astype(self.dtype), labels

    def eval_Const(self, e: Const) -> Labelled:
        return np.asarray(e.as_float(), dtype=self.dtype), ()

    def eval_Size(self, e: Size) -> Labelled:
        return np.asarray(self.sizes[e.index], dtype=self.dtype), ()

    def eval_Add(self, e: Add) -> Labelled:
        return self.add([self.eval(t) for t in e.terms])

    def add(self, parts: list[Labelled]) -> Labelled:
        """The sum of labelled arrays, over the union of their labels."""
        labels = tuple(dict.fromkeys(label for _, ls in parts for label in ls))
        self.check(labels, "a sum of terms", np.result_type(*(a for a, _ in parts)))
        total = None
        for array, ls in parts:
            aligned = _align(array, ls, labels)
            total = aligned if total is None else total + aligned
        assert total is not None
        return total, labels

    def eval_Mul(self, e: Mul) -> Labelled:
        return self.contract(e.factors, tuple(sorted(e.free, key=_first_seen(e))))

    def eval_Sum(self, e: Sum) -> Labelled:
        out = tuple(sorted(e.free, key=_first_seen(e)))
        if isinstance(e.body, Add):
            # Σ_i (a + b) = Σ_i a + Σ_i b: each term is contracted on its own, so the
            # terms' union of indices is never materialised.
            return self.add([self.contract(factors_of(t), out, e.indices) for t in e.body.terms])
        return self.contract(factors_of(e.body), out, e.indices)

    def contract(self, factors: tuple[Expr, ...], out: tuple[str, ...], summed: tuple[str, ...] = ()) -> Labelled:
        """Σ_summed Π factors, planned: deltas merge the indices they tie instead of
        becoming arrays, opt_einsum orders the pairwise products for the actual sizes,
        and every array on the way is checked to fit before it is allocated."""
        deltas = [f for f in factors if isinstance(f, Delta)]
        parts = [self.eval(f) for f in factors if not isinstance(f, Delta)]
        # Indices a delta ties together are one index (the first of the group in ``out``).
        rep = _tied(deltas, out)
        coefficient = None
        arrays, labels_list = [], []
        for array, labels in parts:
            if not labels:
                coefficient = array if coefficient is None else coefficient * array
                continue
            labels = tuple(rep.get(i, i) for i in labels)
            distinct = tuple(dict.fromkeys(labels))
            if distinct != labels:  # a delta between two axes of one factor: its diagonal
                array = _einsum(labels, [array], distinct)
            arrays.append(array)
            labels_list.append(distinct)
        dtype = np.result_type(self.dtype, *arrays, *([coefficient] if coefficient is not None else []))
        present = {i for ls in labels_list for i in ls}
        # An index summed over that no factor reads contributes its size (Σ_i 1 = |i|,
        # Σ_ij δ_ij = |i|): once per group of tied indices.
        multiplier = 1
        for i in dict.fromkeys(rep.get(i, i) for i in summed):
            if i not in present and not any(rep.get(o, o) == i for o in out):
                multiplier *= self.sizes[i]
        reduced = tuple(dict.fromkeys(rep.get(i, i) for i in out if rep.get(i, i) in present))
        result = self.einsum(labels_list, arrays, reduced, dtype) if arrays else None
        scale = multiplier if coefficient is None else coefficient * multiplier
        if result is None:
            result = np.asarray(scale if not isinstance(scale, int) else float(scale), dtype=dtype)
        elif coefficient is not None or multiplier != 1:
            result = result * np.asarray(scale, dtype=dtype)
        # An output index tied to another output index lives on a diagonal: the only
        # place a delta becomes an array, and then it is the result.
        groups = {}
        for i in out:
            groups.setdefault(rep.get(i, i), []).append(i)
        if all(len(g) == 1 for g in groups.values()):
            return result, reduced
        labels = tuple(i for i in out if rep.get(i, i) in present or len(groups[rep.get(i, i)]) > 1)
        self.check(labels, "a result on a diagonal", dtype)
        full = np.zeros(tuple(self.sizes[i] for i in labels), dtype=dtype)
        view_labels = tuple(dict.fromkeys(rep.get(i, i) for i in labels))
        view = _einsum(tuple(rep.get(i, i) for i in labels), [full], view_labels)
        view[...] = _align(result, reduced, view_labels)
        return full, labels

    def einsum(self, labels_list: list[tuple[str, ...]], arrays: list[np.ndarray], out: tuple[str, ...],
               dtype) -> np.ndarray:
        if len(arrays) == 1 and labels_list[0] == out:
            return arrays[0]
        table = _symbols(labels_list + [out])
        subscripts = ",".join("".join(table[s] for s in ls) for ls in labels_list)
        subscripts += "->" + "".join(table[s] for s in out)
        sizes = {table[i]: self.sizes[i] for ls in labels_list for i in ls}
        itemsize = np.dtype(dtype).itemsize
        path, info = _plan(subscripts, [a.shape for a in arrays], itemsize)
        for step in info.contraction_list:
            result = step[2].split("->")[1]
            check_allocation(tuple(sizes[c] for c in result), itemsize, "an intermediate product")
        return np.asarray(opt_einsum.contract(subscripts, *arrays, optimize=path))

    def eval_Pow(self, e: Pow) -> Labelled:
        base, labels = self.eval(e.base)
        self.check(labels, "a power", np.result_type(base, self.dtype))
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
        # log(exp(x)), log(σ(x)), log(softplus(x)): one stable step (finite where the value is).
        inner = e.arg
        stable = COMPOSITIONS.get((e.fn, inner.fn)) if isinstance(inner, Call) else None
        arg, labels = self.eval(inner.arg if stable is not None else inner)
        self.check(labels, f"the value of {e.fn}(...)", np.result_type(arg))
        with np.errstate(all="ignore"):
            return np.asarray((stable or FUNCTIONS[e.fn].numpy)(arg)), labels

    def eval_LogSumExp(self, e: LogSumExp) -> Labelled:
        body, labels = self.eval(e.body)
        axes = tuple(k for k, label in enumerate(labels) if label in e.indices)
        kept = tuple(label for label in labels if label not in e.indices)
        # An index the body is constant along adds log of its size.
        absent = math.prod(self.sizes[i] for i in e.indices if i not in labels)
        self.check(labels, "the body of a logsumexp", np.result_type(body))
        with np.errstate(all="ignore"):
            shift = np.max(body, axis=axes, keepdims=True)
            shift = np.where(np.isfinite(shift), shift, 0)
            total = np.sum(np.exp(body - shift), axis=axes, keepdims=True)
            result = np.log(total) + shift
            if absent != 1:
                result = result + np.asarray(math.log(absent), dtype=result.dtype)
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
        self.check(labels, "a selection or comparison")
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
    def eval_MatFn(self, e: MatFn) -> Labelled:
        """inv, det, log|det| of the matrix on ``e.axes``, one per value of the batch indices."""
        body, labels = self.eval(e.body)
        i, j = e.axes
        batch = tuple(label for label in labels if label not in e.axes)
        matrices = _align(np.asarray(body), labels, batch + (i, j))
        with np.errstate(all="ignore"):
            if e.op == "inv":
                return _inverse(matrices), batch + (i, j)
            sign, logabs = np.linalg.slogdet(matrices)
            if e.op == "logdet":
                return logabs, batch
            return sign * np.exp(logabs), batch


def _inverse(matrices: np.ndarray) -> np.ndarray:
    """The inverse of each matrix; a singular one gives infinities and nans, as 1/0 does."""
    try:
        return np.linalg.inv(matrices)
    except np.linalg.LinAlgError:
        out = np.empty_like(matrices)
        for k in np.ndindex(matrices.shape[:-2]):
            try:
                out[k] = np.linalg.inv(matrices[k])
            except np.linalg.LinAlgError:
                out[k] = np.nan
        return out


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


def _plan(subscripts: str, shapes: list[tuple[int, ...]], itemsize: int):
    """A contraction order for these sizes (opt_einsum's greedy and dynamic-programming
    paths, the cheaper one, as the compiler picks; one whose intermediates all fit first)."""
    limit = max_array_bytes()
    best = None
    for method in ("greedy", "dp") if len(shapes) <= _DP_MAX_OPERANDS else ("greedy",):
        path, info = opt_einsum.contract_path(subscripts, *shapes, shapes=True, optimize=method)
        key = (int(info.largest_intermediate) * itemsize > limit, info.opt_cost)
        if best is None or key < best[0]:
            best = (key, path, info)
    return best[1], best[2]


# The dynamic-programming path search is exponential in the number of operands.
_DP_MAX_OPERANDS = 12


def _tied(deltas: list[Delta], out: tuple[str, ...]) -> dict[str, str]:
    """index -> the index standing for its group, for indices that deltas tie together:
    the group's first index in ``out``, else its first index."""
    parent: dict[str, str] = {}

    def find(i: str) -> str:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    for d in deltas:
        first = find(d.indices[0])
        for i in d.indices[1:]:
            root = find(i)
            if root != first:
                parent[root] = first
    groups: dict[str, list[str]] = {}
    for d in deltas:
        for i in d.indices:
            members = groups.setdefault(find(i), [])
            if i not in members:
                members.append(i)
    rep: dict[str, str] = {}
    for members in groups.values():
        chosen = next((o for o in out if o in members), members[0])
        rep.update((m, chosen) for m in members)
    return rep


def _is_python_number(value: Any) -> bool:
    return isinstance(value, (int, float, complex)) and not isinstance(value, np.generic)


def _result(array, labels, indices, sizes, dtype, what: str) -> np.ndarray:
    """A value as a fresh array along ``indices`` (broadcast where it is constant), checked to fit."""
    array = np.asarray(array)
    dtype = np.result_type(array.dtype, dtype)
    shape = tuple(sizes[i] for i in indices)
    check_allocation(shape, dtype.itemsize, what)
    value = np.broadcast_to(_align(array, labels, indices), shape)
    return np.array(value, dtype=dtype, copy=True)


def evaluate_expression(
    expr: Expr,
    env: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    out_indices: tuple[str, ...],
    dtype: np.dtype,
) -> np.ndarray:
    """Evaluate one expression with known index sizes, laid out along ``out_indices``."""
    array, labels = _Interpreter(dict(env), dict(sizes), dtype).run(expr)
    return _result(array, labels, out_indices, sizes, dtype, "the result")


def evaluate_program(
    program: Program,
    arrays: Mapping[str, Any],
    declared: Mapping[str, int] | None = None,
    context: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``program`` on ``arrays``; returns every target's value, in program order.
    ``context``: shapes only (see :func:`eingrad.sizes.infer_shapes`)."""
    inputs = {}
    indexing = program.index_inputs
    for name, value in arrays.items():
        try:
            if name in indexing:
                inputs[name] = as_index_array(name, value, program.first_use(name).span)
                continue
            inputs[name] = as_input_array(name, value)
        except InputTypeError as err:
            if name in program.inputs:
                err.spans = [program.first_use(name).span]
            raise
    info = infer_shapes(program, {k: v.shape for k, v in inputs.items()}, declared, context)
    # Python numbers are weak (as in numpy's NEP 50): they take the arrays' dtype, so
    # lam=0.1 next to float32 arrays keeps the computation in float32.
    weak = [name for name, value in arrays.items() if _is_python_number(value) and name not in indexing]
    strong = [a.dtype for name, a in inputs.items() if name not in weak and name not in indexing]
    if strong:
        dtype = np.result_type(*strong, *(arrays[name] for name in weak))
        inputs.update((name, inputs[name].astype(dtype)) for name in weak)
    else:
        dtype = np.result_type(np.float64, *(a.dtype for n, a in inputs.items() if n not in indexing))
    env: dict[str, np.ndarray] = dict(inputs)
    results: dict[str, np.ndarray] = {}
    firsts = {rec.members[0]: rec for rec in program.recurrences}
    for stmt, sizes in zip(program.statements, info.sizes, strict=True):
        if stmt.target in firsts:
            for name, value in _run_recurrence(program, firsts[stmt.target], env, info, dtype, declared).items():
                env[name] = results[name] = value
        if stmt.target in results:  # a recurrence's member, computed with its group
            continue
        array, labels = _Interpreter(env, sizes, dtype).run(stmt.expr)
        value = _result(array, labels, stmt.indices, sizes, dtype, f"the value of {stmt.target}")
        env[stmt.target] = value
        results[stmt.target] = value
    return results


def _run_recurrence(program: Program, rec, env: dict, info, dtype, declared) -> dict[str, np.ndarray]:
    """A recurrence (LANGUAGE.md §12) run step by step along its index, as written: the
    reference for the compiled loop.  Parts that read no member are computed over every
    step first (see :mod:`eingrad.recurrence`)."""
    from .recurrence import step_plan

    plan = step_plan(program, rec)
    local = dict(env)
    shapes = {k: v.shape for k, v in local.items()}
    shapes.update(info.shapes)
    hoisted, step_info = step_shapes(plan, shapes, declared)
    for stmt, sizes in zip(plan.hoisted, hoisted.sizes if hoisted else (), strict=True):
        array, labels = _Interpreter(local, sizes, dtype).run(stmt.expr)
        local[stmt.target] = _result(array, labels, stmt.indices, sizes, dtype, f"part of {stmt.target}")
    for m in rec.members:  # refused before any is allocated
        check_allocation(info.shapes[m], np.dtype(dtype).itemsize, f"the recurrence {m!r}")
    out = {m: np.zeros(info.shapes[m], dtype=dtype) for m in rec.members}
    first, axis = plan.length_of
    steps = info.shapes[first][axis]
    step = plan.step
    source = {**local, **out}
    order = range(steps) if rec.direction > 0 else range(steps - 1, -1, -1)
    for tau in order:
        values = dict(local)
        for r in plan.reads:
            array = source[r.tensor]
            k = tau + r.offset
            if 0 <= k < array.shape[r.axis]:
                values[r.name] = np.take(array, k, axis=r.axis)
            else:
                values[r.name] = np.zeros(array.shape[:r.axis] + array.shape[r.axis + 1:], dtype=array.dtype)
        for name, c in plan.indicators:
            values[name] = np.asarray(1.0 if tau == c else 0.0, dtype=dtype)
        for stmt, sizes in zip(step.statements, step_info.sizes, strict=True):
            array, labels = _Interpreter(values, sizes, dtype).run(stmt.expr)
            value = _result(array, labels, stmt.indices, sizes, dtype, f"the value of {stmt.target}")
            values[stmt.target] = value
            index = [slice(None)] * out[stmt.target].ndim
            index[rec.axis_of(stmt.target)] = tau
            out[stmt.target][tuple(index)] = value
    return out

"""``taylor_check``: the first-order Taylor test of the guide's Eq. 2-3.

For a random direction Δ and decreasing ε, ``‖f(x + εΔ) - f(x) - ε J·Δ‖`` shrinks
like ε² when J is the derivative and only like ε when it is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import api
from ..program import Program
from .diagnose import md, shape_text
from .inputs import POSITIVE_NOTE, CheckError, Sizes, check_sizes, draw_inputs, make_rng, wrt_list
from .user import arguments, as_gradient, call_user, unpack

__all__ = ["TaylorTest", "TaylorReport", "taylor_check"]

# A Taylor residual below this fraction of |f| is taken as rounding error in f, not the remainder.
_ROUNDING = 1e-13


@dataclass
class TaylorTest:
    """The Taylor test for one input: a row per step size ε.

    ``change[k]`` is ``‖f(x + ε_k Δ) - f(x)‖`` (shrinks like ε), ``residual[k]`` is
    ``‖f(x + ε_k Δ) - f(x) - ε_k J·Δ‖`` (like ε² when J is right), ``orders[k]`` the
    slope of log residual against log ε between rows k and k+1 (None where the
    residual is at rounding level), ``order`` the last of them.
    """

    wrt: str
    epsilons: list[float]
    change: list[float]
    residual: list[float]
    orders: list[float | None]
    order: float | None
    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def text(self) -> str:
        lines = [f"{'✓' if self.ok else '✗'} {self.wrt}: {self.message}"]
        if self.epsilons:
            lines.append(f"    {'ε':>8}  {'‖f(x+εΔ)−f(x)‖':>15}  {'‖f(x+εΔ)−f(x)−εJ·Δ‖':>20}  order")
            for eps, ch, r, o in zip(
                self.epsilons, self.change, self.residual, self.orders + [None], strict=True
            ):
                lines.append(f"    {eps:8.0e}  {ch:15.3e}  {r:20.3e}  {'' if o is None else f'{o:.2f}'}")
        return "\n".join(lines)


@dataclass
class TaylorReport:
    """What ``taylor_check`` found: one :class:`TaylorTest` per input; ``bool`` is whether
    every residual shrinks like ε² (or is exact to rounding)."""

    tests: list[TaylorTest]
    source: str
    notes: list[str]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tests)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def order(self) -> float | None:
        """The smallest observed order over the inputs (None when every test was exact)."""
        orders = [t.order for t in self.tests if t.order is not None]
        return min(orders) if orders else None

    def __getitem__(self, wrt: str) -> TaylorTest:
        for t in self.tests:
            if t.wrt == wrt:
                return t
        raise KeyError(wrt)

    def summary(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        return f"taylor_check of {self.source}: {verdict}"

    def __str__(self) -> str:
        return "\n".join(
            [self.summary()] + [t.text() for t in self.tests] + [f"note: {n}" for n in self.notes]
        )

    def __repr__(self) -> str:
        return f"<TaylorReport: {self.summary()}>"

    def _repr_markdown_(self) -> str:
        out = [f"**{md(self.summary())}**", ""] + [f"note: {md(n)}\n" for n in self.notes]
        for t in self.tests:
            out += [f"{'✓' if t.ok else '✗'} `{t.wrt}`: {md(t.message)}", ""]
            if t.epsilons:
                out += ["| ε | ‖f(x+εΔ)−f(x)‖ | ‖f(x+εΔ)−f(x)−εJ·Δ‖ | order |", "|---|---|---|---|"]
                for eps, ch, r, o in zip(t.epsilons, t.change, t.residual, t.orders + [None], strict=True):
                    out.append(f"| {eps:.0e} | {ch:.3e} | {r:.3e} | {'' if o is None else f'{o:.2f}'} |")
                out.append("")
        return "\n".join(out)


def _norm(a: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(a))))


def _taylor_rows(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    delta: np.ndarray,
    j_delta: np.ndarray,
    epsilons: list[float],
    wrt: str,
) -> TaylorTest:
    """The table for one input, and the order read from its smallest step sizes."""
    f0 = f(x)
    change, residual, floor = [], [], []
    for eps in epsilons:
        f1 = f(x + eps * delta)
        change.append(_norm(f1 - f0))
        residual.append(_norm(f1 - f0 - eps * j_delta))
        # Below this the residual is rounding error in f, not the Taylor remainder.
        floor.append(_ROUNDING * (_norm(f0) + _norm(f1)) + 1e-300)
    above = [r > fl for r, fl in zip(residual, floor, strict=True)]
    orders: list[float | None] = []
    for k in range(len(epsilons) - 1):
        if above[k] and above[k + 1]:
            orders.append(math.log(residual[k] / residual[k + 1]) / math.log(epsilons[k] / epsilons[k + 1]))
        else:
            orders.append(None)
    seen = [o for o in orders if o is not None]
    if not above[-1]:
        # At the smallest steps f(x+εΔ) - f(x) is εJ·Δ to rounding: J is right there (a wrong
        # J leaves ε‖(J' - J)·Δ‖); at larger ones f may be curved, or cross a kink of relu/abs.
        return TaylorTest(
            wrt,
            epsilons,
            change,
            residual,
            orders,
            seen[-1] if seen else None,
            True,
            f"the first-order approximation is exact to rounding at the smallest steps "
            f"(f is linear in {wrt} near x along Δ)",
        )
    order = orders[-1]
    if order is None:
        return TaylorTest(
            wrt,
            epsilons,
            change,
            residual,
            orders,
            None,
            False,
            "the residual does not shrink with ε: the derivative is wrong",
        )
    if order >= 1.5:
        message = (
            f"the residual shrinks like ε^{order:.2f}: the derivative is right "
            f"(Eq. 2: f(x+εΔ) = f(x) + ε ∂f/∂x·Δ + o(ε))"
        )
        return TaylorTest(wrt, epsilons, change, residual, orders, order, True, message)
    message = (
        f"the residual shrinks only like ε^{order:.2f}, as fast as f itself changes: the derivative "
        f"is wrong (a right one leaves a residual that shrinks like ε²)"
    )
    return TaylorTest(wrt, epsilons, change, residual, orders, order, False, message)


def _check_epsilons(epsilons: object) -> list[float]:
    try:
        values = [float(e) for e in epsilons]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise CheckError(f"epsilons must be a list of step sizes, got {epsilons!r}") from None
    if (
        len(values) < 2
        or any(not (0 < e < math.inf) for e in values)
        or sorted(values, reverse=True) != values
        or len(set(values)) != len(values)
    ):
        raise CheckError(
            f"epsilons must be at least two decreasing positive step sizes, got {epsilons!r}",
            hint="write epsilons=(1e-1, 1e-2, 1e-3, 1e-4)",
        )
    return values


def taylor_check(
    program: Program | str,
    wrt: str | Sequence[str],
    jacobian_fn: Callable[..., Any] | None = None,
    *,
    output: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    sizes: Mapping[str, int] | None = None,
    rng: np.random.Generator | int | None = None,
    epsilons: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4),
) -> TaylorReport:
    """The first-order Taylor test of the guide's Eq. 2-3, for each input in ``wrt``.

    For a random direction Δ and decreasing ε, ``‖f(x+εΔ) - f(x) - ε J·Δ‖``
    must shrink like ε² when J is the derivative (slope 2 on a log-log plot)
    and shrinks like ε when it is not.  ``J·Δ`` sums over every entry of x:
    ``Σ_ij (∂f/∂A_ij) Δ_ij``, the guide's ``trace(∂f/∂A Δ)``.

    J is eingrad's derivative, or what ``jacobian_fn`` returns (called like
    ``check_backward``'s function, with the arrays its parameters name): for a
    scalar output, the gradient (x's shape); otherwise the output's axes then
    x's (``eg.diff``'s layout).  For several ``wrt``, a dict or a tuple.

    >>> import eingrad as eg
    >>> eg.taylor_check("L = sum_i(exp(x_i))", "x").order > 1.9
    True
    """
    program = api.as_program(program)
    wrt = wrt_list(program, wrt)
    steps = _check_epsilons(epsilons)
    output = output or program.output
    if not program.is_target(output):
        raise CheckError(
            f"{output!r} is not a target of the program", hint=f"its targets are {', '.join(program.targets)}"
        )
    if jacobian_fn is not None and not callable(jacobian_fn):
        raise CheckError(f"jacobian_fn must be a function, got {type(jacobian_fn).__name__}")
    generator = make_rng(rng)
    needed = program.needed_for([output])
    arrays, plan, notes = _draw(program, needed, output, inputs, check_sizes(program, sizes), generator)
    declared = plan.declared or None
    jacobians, problem = _jacobians(program, wrt, jacobian_fn, arrays, output, declared)
    tests = []
    for w in wrt:
        j = jacobians.get(w)
        if problem is not None or j is None or j.shape != plan.shapes[output] + plan.shapes[w]:
            why = problem or (f"no Jacobian for {w}" if j is None else _jacobian_shape(j, w, output, plan))
            tests.append(_no_table(w, False, why))
        elif w not in needed.inputs:
            depends = f"{output} does not depend on {w}"
            tests.append(
                _no_table(w, not np.any(j), depends + (", but the Jacobian is not zero" if np.any(j) else ""))
            )
        else:
            delta = generator.standard_normal(plan.shapes[w])
            j_delta = np.tensordot(j, delta, axes=delta.ndim) if delta.ndim else j * delta
            base = {k: v for k, v in arrays.items() if k in needed.inputs}

            def f(x: np.ndarray, w: str = w, base: dict = base) -> np.ndarray:
                value = api.evaluate(needed, {**base, w: x}, sizes=declared)[output]
                return np.asarray(value, dtype=np.float64)

            tests.append(_taylor_rows(f, arrays[w], delta, j_delta, steps, w))
    source = (
        "eingrad's derivative" if jacobian_fn is None else getattr(jacobian_fn, "__name__", "jacobian_fn")
    )
    return TaylorReport(tests, source, notes)


def _no_table(wrt: str, ok: bool, message: str) -> TaylorTest:
    """A test that could not be run (or needed no run): no rows, only a verdict."""
    return TaylorTest(wrt, [], [], [], [], None, ok, message)


def _draw(program: Program, needed: Program, output: str, given, sizes, rng):
    """Inputs where ``output`` is finite: standard normal, else from [0.5, 1.5] (with a note)."""

    def finite(arrays: dict, plan) -> bool:
        base = {k: v for k, v in arrays.items() if k in needed.inputs}
        return bool(np.all(np.isfinite(api.evaluate(needed, base, sizes=plan.declared or None)[output])))

    arrays, plan = draw_inputs(program, given, [], sizes, rng)
    if finite(arrays, plan):
        return arrays, plan, []
    if not (given and all(k in given for k in program.inputs)):
        arrays, plan = draw_inputs(program, given, [], sizes, rng, positive=True)
        if finite(arrays, plan):
            return arrays, plan, [POSITIVE_NOTE]
    raise CheckError(
        f"{output} is not finite at the inputs used (a log or sqrt of a negative number, or an overflow?)",
        hint="pass inputs={...} with values where the program is defined",
    )


def _jacobian_shape(j: np.ndarray, w: str, output: str, plan: Sizes) -> str:
    wanted = shape_text(plan.shapes[w], plan, plan.labels[w])
    if not plan.shapes[output]:
        return f"its gradient for {w} has shape {shape_text(j.shape, plan)}, expected {w}'s shape {wanted}"
    return (
        f"its Jacobian for {w} has shape {shape_text(j.shape, plan)}, expected the output's axes "
        f"{shape_text(plan.shapes[output], plan, plan.labels[output])}, then {w}'s {wanted}"
    )


def _jacobians(
    program, wrt, jacobian_fn, arrays, output, declared
) -> tuple[dict[str, np.ndarray], str | None]:
    """J for each input: eingrad's, or the user's function's (read like check_backward's)."""
    if jacobian_fn is None:
        out = {}
        for w in wrt:
            d = api.diff(program, w, 1, output)
            env = {k: v for k, v in arrays.items() if k in d.program.inputs or k == w}
            out[w] = np.asarray(api.evaluate(d, env, sizes=declared), dtype=np.float64)
        return out, None
    forward = api.evaluate(program, {k: v for k, v in arrays.items() if k in program.inputs}, sizes=declared)
    first = list(program.inputs)
    available = {k: np.array(arrays[k]) for k in first}
    available.update({k: np.array(v) for k, v in forward.items() if k not in available})
    args, kwargs, _, problem = arguments(jacobian_fn, available, first, None)
    if problem is None:
        result, problem = call_user(jacobian_fn, args, kwargs)
    if problem is not None:
        return {}, problem
    values, _, problem = unpack(result, wrt, wrt)
    if problem is not None:
        return {}, problem
    out = {}
    for w, v in values.items():
        array, why = as_gradient(v)
        if array is None:
            return {}, f"its Jacobian for {w} {why}"
        out[w] = array
    return out, None

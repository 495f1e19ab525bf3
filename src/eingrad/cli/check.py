"""``eingrad check``: eingrad's derivatives against central finite differences.

Two checks per input, on random data:

- ``diff``: the exact derivative ``eg.diff`` (orders 1..k), contracted with a
  random direction, against central differences of the order below
  (:func:`eingrad.gradcheck.check_grad`);
- ``grad``: the reverse-mode gradient program ``eg.grad``, evaluated, against
  the directional derivative of ``<u, output>`` for a random upstream ``u``
  (the output itself when it is a scalar).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import evaluate, grad
from ..errors import EingradError
from ..gradcheck import check_grad
from ..program import Program
from .commands import emit, emit_json
from .inputs import (
    DEFAULT_SIZE,
    check_inputs,
    check_result_sizes,
    check_sizes,
    example_arrays,
    load_program,
    parse_sizes,
    seed_name,
    split_names,
)
from .style import Style

__all__ = ["CheckResult", "check_diff", "check_reverse", "cmd_check", "format_table"]

DIRECTIONS = 2
ATOL = 1e-7


@dataclass(frozen=True)
class CheckResult:
    """One row of the table: a derivative of ``output`` with respect to ``wrt``."""

    wrt: str
    shape: tuple[int, ...]
    mode: str  # "diff" (the exact derivative) or "grad" (reverse mode)
    order: int  # the highest order checked
    error: float  # the largest relative error seen
    passed: bool
    message: str | None = None  # why it failed

    @property
    def what(self) -> str:
        if self.mode == "grad":
            return "grad (reverse mode)"
        return "diff, order 1" if self.order == 1 else f"diff, orders 1-{self.order}"

    def as_json(self) -> dict[str, Any]:
        return {
            "wrt": self.wrt, "shape": list(self.shape), "mode": self.mode, "order": self.order,
            "error": self.error, "pass": self.passed, "message": self.message,
        }


def check_diff(
    program: Program, wrt: str, arrays: dict[str, np.ndarray], *, output: str, sizes, order: int = 1,
    seed: int = 0, eps: float = 1e-5, rtol: float = 1e-5,
) -> CheckResult:
    """``eg.diff`` for orders 1..order against central differences (``check_grad``)."""
    options = dict(order=order, output=output, sizes=sizes or None, eps=eps, atol=ATOL, directions=DIRECTIONS)
    shape = np.shape(arrays[wrt])
    try:
        error = check_grad(program, wrt, arrays, rng=np.random.default_rng(seed), rtol=rtol, **options)
    except AssertionError as failure:
        # The same directions again, never failing, for the size of the disagreement.
        error = check_grad(program, wrt, arrays, rng=np.random.default_rng(seed), rtol=1e100, **options)
        return CheckResult(wrt, shape, "diff", order, error, False, str(failure))
    return CheckResult(wrt, shape, "diff", order, error, True)


def check_reverse(
    program: Program, wrt: list[str], arrays: dict[str, np.ndarray], *, output: str, sizes,
    seed: int = 0, eps: float = 1e-5, rtol: float = 1e-5,
) -> list[CheckResult]:
    """The gradient program of ``eg.grad``, evaluated, against directional differences.

    For a non-scalar output the checked function is ``φ(x) = Σ u ⊙ output(x)``
    with a random upstream ``u``, passed to ``grad`` as its seed.
    """
    rng = np.random.default_rng(seed)
    declared = sizes or None

    def output_at(env: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(evaluate(program, env, sizes=declared, outputs=[output])[output])

    upstream_name = seed_name(program, output, None)
    upstream = rng.standard_normal(output_at(arrays).shape) if upstream_name else np.float64(1.0)
    g = grad(program, wrt=wrt, output=output, seed=upstream_name)
    env = {k: v for k, v in arrays.items() if k in g.inputs}
    if upstream_name:
        env[upstream_name] = upstream
    # The whole program: with outputs=, a gradient statement sized like an input
    # that nothing else reads lost that input (a KeyError inside evaluate).
    values = evaluate(g, env, sizes=declared)

    results = []
    for name, target in zip(wrt, g.targets[-len(wrt):], strict=True):
        x, gradient = arrays[name], np.asarray(values[target])

        def phi(point: np.ndarray, name: str = name) -> float:
            return float(np.sum(upstream * output_at({**arrays, name: point})))

        worst, message = 0.0, None
        if gradient.shape != x.shape:
            message = f"the gradient {target} has shape {gradient.shape}, but {name} has shape {x.shape}"
            results.append(CheckResult(name, x.shape, "grad", 1, float("inf"), False, message))
            continue
        for _ in range(DIRECTIONS):
            v = rng.standard_normal(x.shape)
            predicted = float(np.sum(gradient * v))
            numeric = (phi(x + eps * v) - phi(x - eps * v)) / (2 * eps)
            error, scale = abs(predicted - numeric), max(abs(predicted), abs(numeric))
            worst = max(worst, error / max(scale, ATOL))
            if error > ATOL + rtol * scale and message is None:
                upstream_text = " (with a random upstream gradient)" if upstream_name else ""
                message = (
                    f"reverse-mode gradient {target} of {output!r}{upstream_text} disagrees with "
                    "finite differences: "
                    f"along a random direction, gradient {predicted!r}, numeric {numeric!r}"
                )
        results.append(CheckResult(name, x.shape, "grad", 1, worst, message is None, message))
    return results


def format_table(results: list[CheckResult], style: Style, indent: str = "") -> str:
    """The results as an aligned text table with PASS/FAIL."""
    rows = [("wrt", "shape", "derivative", "max rel. error", "result")]
    rows += [(r.wrt, str(r.shape), r.what, f"{r.error:.1e}", "PASS" if r.passed else "FAIL") for r in results]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)]
        verdict = row[4] if n == 0 else (style.ok(row[4]) if row[4] == "PASS" else style.error(row[4]))
        line = "  ".join([*cells, verdict])
        lines.append(indent + (style.bold(line) if n == 0 else line))
    return "\n".join(lines)


def _require_finite(program: Program, arrays: dict[str, np.ndarray], sizes) -> None:
    """Finite differences of NaN agree with anything: refuse a program that is not finite here."""
    values = evaluate(program, arrays, sizes=sizes or None)
    for name, value in values.items():
        if not np.all(np.isfinite(value)):
            raise EingradError(
                f"{name} is not finite at the random inputs, so finite differences cannot check it",
                hint="use --positive for programs with log or sqrt (inputs drawn from [0.5, 1.5]), "
                "or other --seed/--size",
            )


def cmd_check(args: argparse.Namespace) -> int:
    program = load_program(args)
    sizes = parse_sizes(args.size)
    check_sizes(program, sizes)
    check_result_sizes(program, sizes)
    output = args.output or program.output
    if output not in program.targets:
        raise EingradError(
            f"{output!r} is not a target of the program (its targets are {', '.join(program.targets)})",
            hint="--output names the statement to check; it defaults to the last one",
        )
    for option, value in (("--order", args.order), ("--eps", args.eps), ("--rtol", args.rtol)):
        if not value > 0:
            raise EingradError(f"{option} must be positive, got {value}")
    wrt = split_names(args.wrt) or [n for n in program.needed_for([output]).inputs if n not in program.index_inputs]
    check_inputs(program, wrt)
    arrays = example_arrays(program, sizes, np.random.default_rng(args.seed), positive=args.positive)
    _require_finite(program, arrays, sizes)
    options = dict(output=output, sizes=sizes, seed=args.seed, eps=args.eps, rtol=args.rtol)
    results = []
    reverse = {r.wrt: r for r in check_reverse(program, wrt, arrays, **options)}
    for name in wrt:
        results.append(check_diff(program, name, arrays, order=args.order, **options))
        results.append(reverse[name])
    failed = [r for r in results if not r.passed]
    if args.format == "json":
        emit_json({
            "program": str(program), "output": output, "order": args.order, "seed": args.seed,
            "sizes": sizes, "shapes": {k: list(v.shape) for k, v in arrays.items()},
            "eps": args.eps, "rtol": args.rtol,
            "checks": [r.as_json() for r in results], "pass": not failed,
        })
        return 1 if failed else 0
    style = Style(sys.stdout)
    given = " ".join(f"{i}={n}" for i, n in sizes.items())
    inputs = "uniform on [0.5, 1.5]" if args.positive else "standard normal"
    emit(
        f"{output}: derivatives against central differences along {DIRECTIONS} random directions "
        f"(eps {args.eps:g}, rtol {args.rtol:g})\n"
        f"inputs: {inputs}, seed {args.seed}; every axis {DEFAULT_SIZE}"
        + (f" unless sized: {given}" if given else "") + "\n"
    )
    emit(format_table(results, style))
    for r in failed:
        emit(f"\n{style.error('FAIL')} {r.wrt} ({r.what}): {r.message}")
    summary = f"{len(failed)} of {len(results)} checks FAIL" if failed else f"all {len(results)} checks pass"
    emit("\n" + (style.error(summary) if failed else style.ok(summary)))
    return 1 if failed else 0


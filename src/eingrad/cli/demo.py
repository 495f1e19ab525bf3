"""``eingrad demo``: the guide's affine layer and its RNN, derived, explained, compiled and checked."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..api import compile as compile_
from ..api import diff, evaluate, explain, grad, hessian, parse
from ..errors import EingradError
from ..gradcheck import check_grad
from ..program import Program, ProgramBuilder
from .check import check_diff, check_reverse, format_table
from .inputs import example_arrays
from .style import Style

__all__ = ["cmd_demo", "rnn_program"]

AFFINE = "Y_nh = X_nd W_dh + b_h"
RNN_STEPS = 3
RNN_SIZES = {"n": 2, "d": 3, "h": 4}


def cmd_demo(args: argparse.Namespace) -> int:
    style = Style(sys.stdout)
    _affine(style)
    _more_of_the_guide(style)
    _bias_gradient(style)
    _derivative_table(style)
    _rnn(style)
    return 0


def _heading(style: Style, text: str) -> None:
    print(style.bold(text))


def _affine(style: Style) -> None:
    """Parse, check sizes, evaluate, and the guide's incompatible shapes."""
    _heading(style, "The guide's affine layer, a batch of n rows of d features times d×h weights plus a bias:")
    print(f"  {AFFINE}\n")
    program = parse(AFFINE)
    print(f"parsed:   {program}")
    print(f"explicit: {program.statements[0].expr!r}")
    print(f"LaTeX:    {program.latex()}")
    print(f"inputs:   {', '.join(program.inputs)}   target: {program.output}\n")
    rng = np.random.default_rng(0)
    n, d, h = 4, 3, 2
    X, W, b = rng.standard_normal((n, d)), rng.standard_normal((d, h)), rng.standard_normal(h)
    Y = evaluate(program, X=X, W=W, b=b)["Y"]
    print(f"sizes: n={n} d={d} h={h}; Y has shape {Y.shape}")
    with np.printoptions(precision=4, suppress=True):
        print(f"Y =\n{Y}")
    print(f"matches numpy X @ W + b: {np.allclose(Y, X @ W + b)}\n")
    _heading(style, "The guide's \"incompatible shapes\": W passed transposed (h×d instead of d×h):")
    try:
        evaluate(program, X=X, W=W.T, b=b)
    except EingradError as err:
        print(f"{type(err).__name__}: {err}\n")


def _more_of_the_guide(style: Style) -> None:
    more = [
        "C_ik = A_ij B_jk W_ik   # W_ik Σ_j A_ij B_jk",
        "v_i = A_ij δ_jk B_ik",
        "A_ij = U_ik σ_k V_kj    # the SVD without the diagonal S",
        "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
    ]
    _heading(style, "More of the guide, parsed (the sums the rule inserts are explicit in the tree):")
    for line in more:
        p = parse(line)
        print(f"  {str(p):52s} -> {p.statements[0].expr.__class__.__name__} at the root")


def _bias_gradient(style: Style) -> None:
    _heading(style, "\nThe gradient of the bias, derived the way the guide does it (G is the upstream ∇_Y L):")
    print(explain(f"{AFFINE}; L = G_nh Y_nh", "b"))


def _derivative_table(style: Style) -> None:
    _heading(style, "\nDerivatives from the guide, exact and simplified:")
    rows = [
        ("f_i = W_ij v_j", "W", 1),
        ("Y_ik = X_ij W_jk", "X", 1),
        ("Y_ik = X_ij W_jk", "W", 1),
        ("A_ij = U_ik σ_k V_kj", "σ", 1),
        ("s = x_i A_ij x_j", "x", 1),
        ("s = x_i A_ij x_j", "x", 2),
        ("L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j", "w", 1),
        ("L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j", "w", 2),
    ]
    for text, wrt, order in rows:
        d = diff(text, wrt) if order == 1 else hessian(text, wrt)
        error = check_grad(text, wrt, order=order, rng=np.random.default_rng(1))
        print(f"  {text:52s} {str(d):60s} finite differences agree to {error:.0e}")


def rnn_program(steps: int = RNN_STEPS) -> Program:
    """The guide's RNN, s_t = tanh(x_t W + s_{t-1} U + b), unrolled, with a squared-error loss."""
    builder = ProgramBuilder()
    for t in range(1, steps + 1):
        builder.add(f"s{t}_nh = tanh(x{t}_nd W_dh + s{t - 1}_nk U_kh + b_h)")
    builder.add(f"L = sum_{{n,h}}(0.5 (s{steps}_nh - y_nh)^2)")
    return builder.build()


def _rnn(style: Style) -> None:
    """Reverse mode over the unrolled RNN, its numpy code, and a finite-difference check."""
    program = rnn_program()
    _heading(style, f"\nThe guide's RNN, unrolled over τ = {RNN_STEPS} steps (W, U, b shared by every step):")
    for line in str(program).splitlines():
        print(f"  {line}")
    params = ["W", "U", "b"]
    g = grad(program, wrt=params)
    _heading(style, "\nReverse mode (eingrad grad): one adjoint per step, walked backwards; the")
    _heading(style, "parameters' gradients add up the paths through every step, as in the guide:")
    for stmt in g.statements[len(program) :]:
        print(f"  {stmt}")

    arrays = example_arrays(program, RNN_SIZES, np.random.default_rng(0))
    names = g.targets[-len(params) :]  # dLdW, dLdU, dLdb
    fn = compile_(g, outputs=names)
    got = fn(arrays)
    source = fn.source
    sizes = " ".join(f"{k}={v}" for k, v in RNN_SIZES.items())
    _heading(style, f"\nCompiled to numpy (eingrad compile), for sizes {sizes}; the code for dLdU:")
    for line in _excerpt(source, "# dLdU"):
        print(f"  {line}")
    reference = evaluate(g, arrays)
    agree = all(np.allclose(got[name], reference[name]) for name in names)
    print(f"compiled gradients match the reference interpreter: {agree}")

    _heading(style, "\nChecked against central finite differences (eingrad check):")
    options = dict(output="L", sizes=RNN_SIZES, seed=0)
    reverse = {r.wrt: r for r in check_reverse(program, params, arrays, **options)}
    results = []
    for name in params:
        results += [check_diff(program, name, arrays, **options), reverse[name]]
    print(format_table(results, style, indent="  "))
    print("\nMore: eingrad --help lists the commands (diff, grad, explain, compile, check, graph, serve);")
    print("each one's --help has examples.")


def _excerpt(source: str, start: str, fallback: int = 8) -> list[str]:
    """The generated lines from the comment that starts with ``start`` up to the next
    comment, or the first ``fallback`` lines of the function if there is no such comment."""
    lines = [line.strip() for line in source.splitlines()]
    begin = next((k for k, line in enumerate(lines) if line.startswith(start)), None)
    if begin is None:
        begin = next((k for k, line in enumerate(lines) if line.startswith("def compiled")), 0)
        return lines[begin : begin + fallback]
    end = next((k for k in range(begin + 1, len(lines)) if lines[k].startswith(("#", "return"))), len(lines))
    return lines[begin:end]

"""The ``eingrad`` command line.

Exit codes: 0 success, 1 a user error (message, no traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from .api import evaluate, parse
from .errors import EingradError, SurprisingSumWarning

EPILOG = """examples:
  eingrad demo
  eingrad parse "C_ik = A_ij B_jk W_ik"
  eingrad parse --latex "L = sum_i(softplus(-y_i X_ij w_j))"
  eingrad eval "Y_nh = X_nd W_dh + b_h" --size n=4 d=3 h=2
  echo "t = A_ii" | eingrad parse -
"""


def _read_program(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as handle:
                return handle.read()
        except OSError as err:
            raise EingradError(f"cannot read program file {text[1:]!r}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise EingradError(f"cannot read program file {text[1:]!r}: it is not UTF-8 text") from None
    return text


def _parse_sizes(items: Sequence[str]) -> dict[str, int]:
    sizes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise EingradError(
                f"--size {item!r} is not of the form index=positive integer",
                hint="write sizes as index=positive integer, e.g. --size i=3 j=4",
            )
        sizes[name] = int(value)
    return sizes


def _random_inputs(program, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Random standard-normal inputs, index sizes from ``sizes`` (default 3)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in program.inputs:
        ref = program.first_use(name)
        arrays[name] = rng.standard_normal(tuple(sizes.get(i, 3) for i in ref.indices))
    return arrays


def cmd_parse(args: argparse.Namespace) -> int:
    program = parse(_read_program(args.program))
    print(program.latex() if args.latex else str(program))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    program = parse(_read_program(args.program))
    sizes = _parse_sizes(args.size)
    arrays = _random_inputs(program, sizes, args.seed)
    # Declared too, so that an index that occurs only in deltas (y_ij = delta_ij) has a size.
    results = evaluate(program, arrays, sizes=sizes)
    with np.printoptions(precision=4, suppress=True):
        for name, value in arrays.items():
            print(f"{name} {value.shape} =\n{value}")
        for name, value in results.items():
            print(f"{name} {value.shape} =\n{value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The guide's affine layer: parse, check sizes, evaluate, print."""
    text = "Y_nh = X_nd W_dh + b_h"
    print("The guide's affine layer, a batch of n rows of d features times d×h weights plus a bias:")
    print(f"  {text}\n")
    program = parse(text)
    stmt = program.statements[0]
    print(f"parsed:   {program}")
    print(f"explicit: {stmt.expr!r}")
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
    print("The guide's \"incompatible shapes\": W passed transposed (h×d instead of d×h):")
    try:
        evaluate(program, X=X, W=W.T, b=b)
    except EingradError as err:
        print(f"{type(err).__name__}: {err}\n")
    more = [
        "C_ik = A_ij B_jk W_ik   # W_ik Σ_j A_ij B_jk",
        "v_i = A_ij δ_jk B_ik",
        "A_ij = U_ik σ_k V_kj    # the SVD without the diagonal S",
        "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
    ]
    print("More of the guide, parsed (the sums the rule inserts are explicit in the tree):")
    for line in more:
        p = parse(line)
        print(f"  {str(p):52s} -> {p.statements[0].expr.__class__.__name__} at the root")
    _demo_derivatives()
    return 0


def _demo_derivatives() -> None:
    """The guide's derivatives: the bias gradient step by step, then the table of results."""
    from .api import diff, explain, hessian
    from .gradcheck import check_grad

    print("\nThe gradient of the bias, derived the way the guide does it (G is the upstream ∇_Y L):")
    bias = "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh"
    print(explain(bias, "b"))
    print("\nDerivatives from the guide, exact and simplified:")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eingrad",
        description="Tensor calculus in index notation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the guide's affine layer: parse, check sizes, evaluate")
    demo.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "parse",
        help="parse a program and print it back in index notation",
        epilog='example: eingrad parse "C_ik = A_ij B_jk W_ik"',
    )
    p.add_argument("program", help="program text, @file, or - for stdin")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of Unicode text")
    p.set_defaults(func=cmd_parse)

    e = sub.add_parser(
        "eval",
        help="evaluate a program on random inputs",
        epilog='example: eingrad eval "Y_nh = X_nd W_dh + b_h" --size n=4 d=3 h=2',
    )
    e.add_argument("program", help="program text, @file, or - for stdin")
    e.add_argument("--size", nargs="*", default=[], metavar="INDEX=N", help="index sizes (default 3)")
    e.add_argument("--seed", type=int, default=0, help="random seed for the inputs")
    e.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SurprisingSumWarning)
            try:
                return args.func(args)
            finally:
                # Shown as "SurprisingSumWarning: ...", not with a file and line inside eingrad.
                for w in caught:
                    print(f"{w.category.__name__}: {w.message}", file=sys.stderr)
    except EingradError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

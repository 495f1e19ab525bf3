"""The argument parser: one subcommand per job, each with examples in its ``--help``."""

from __future__ import annotations

import argparse

__all__ = ["build_parser", "short_help"]

EPILOG = """examples:
  eingrad demo
  eingrad parse "C_ik = A_ij B_jk W_ik"
  eingrad parse --latex "L = sum_i(softplus(-y_i X_ij w_j))"
  eingrad eval "Y_nh = X_nd W_dh + b_h" --size n=4 d=3 h=2
  eingrad diff "f_i = W_ij v_j" --wrt W
  eingrad diff "s = x_i A_ij x_j" --wrt x --order 2
  eingrad grad "Y_nh = X_nd W_dh + b_h" --wrt W b
  eingrad explain "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh" --wrt b
  eingrad compile -f rnn.eg --wrt W U b --size n=8 d=4 h=16
  eingrad check "L = sum_i(softplus(-y_i X_ij w_j))" --order 2
  eingrad graph -f rnn.eg --svg -o rnn.svg
  echo "t = A_ii" | eingrad parse -

A program is given as text, as -f FILE (or @FILE, or a file name), or as - for stdin.
Exit codes: 0 ok, 1 an error in the program or its inputs (a message, no traceback),
2 bad usage.  See docs/cli.md.
"""

# name -> (one-line help, examples)
COMMANDS = {
    "demo": (
        "the guide's affine layer and RNN: parsed, derived, explained, compiled, checked",
        ["eingrad demo", "eingrad demo | less -R"],
    ),
    "parse": (
        "parse a program and print it back in index notation",
        ['eingrad parse "C_ik = A_ij B_jk W_ik"', 'eingrad parse --latex "Y_nh = X_nd W_dh + b_h"',
         "eingrad parse --json -f model.eg", 'echo "t = A_ii" | eingrad parse -'],
    ),
    "eval": (
        "evaluate a program on random inputs",
        ['eingrad eval "Y_nh = X_nd W_dh + b_h" --size n=4 d=3 h=2',
         'eingrad eval "y_ij = delta_ij" --size i=3', 'eingrad eval "s = x_i x_i" --seed 7 --json'],
    ),
    "diff": (
        "the exact derivative of the output (the last target) with respect to one input",
        ['eingrad diff "f_i = W_ij v_j" --wrt W', 'eingrad diff "s = x_i A_ij x_j" --wrt x --order 2 --matrix',
         'eingrad diff "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh" --wrt b --latex',
         'eingrad diff -f mlp.eg --wrt W1 --output H --json'],
    ),
    "grad": (
        "reverse mode: the gradient program, one statement per adjoint and per input",
        ['eingrad grad "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j" --wrt w',
         'eingrad grad "Y_nh = X_nd W_dh + b_h" --wrt W b          # upstream dLdY',
         'eingrad grad "Y_nh = X_nd W_dh + b_h" --wrt W,b --seed-name G --prefix grad',
         "eingrad grad -f rnn.eg --wrt W U b --latex"],
    ),
    "explain": (
        "the derivation of a derivative, step by step",
        ['eingrad explain "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh" --wrt b',
         'eingrad explain "s = x_i A_ij x_j" --wrt x --latex'],
    ),
    "compile": (
        "print the generated array code (of the gradient with --wrt, else of the program)",
        ['eingrad compile "Y_nh = X_nd W_dh + b_h" --size n=64 d=32 h=16',
         'eingrad compile "Y_nh = X_nd W_dh + b_h" --wrt W b --backend torch',
         "eingrad compile -f rnn.eg --wrt W U b -o rnn_grad.py"],
    ),
    "check": (
        "check derivatives (exact and reverse mode) against finite differences on random data",
        ['eingrad check "Y_nh = X_nd W_dh + b_h"', 'eingrad check "s = x_i A_ij x_j" --wrt x --order 2',
         'eingrad check "L = sum_i(log(p_i) q_i)" --positive',
         "eingrad check -f rnn.eg --wrt W U b --size n=2 d=3 h=4 --json"],
    ),
    "graph": (
        "the computation graph as Graphviz DOT (SVG when Graphviz is installed)",
        ['eingrad graph "Y_nh = X_nd W_dh + b_h" > affine.dot', "eingrad graph -f rnn.eg --svg -o rnn.svg",
         "eingrad graph -f rnn.eg --parameters W U b", 'eingrad graph "Y_nh = X_nd W_dh + b_h" --wrt W b'],
    ),
}


def _subparser(sub, name: str) -> argparse.ArgumentParser:
    help_text, examples = COMMANDS[name]
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.set_defaults(command_parser=p)
    return p


def _program_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", nargs="?", help="program text, @FILE, a file name, or - for stdin")
    p.add_argument("-f", "--file", metavar="PATH", help="read the program from PATH (- for stdin)")


def _format_arguments(p: argparse.ArgumentParser, *formats: str) -> None:
    """``--latex`` / ``--json``: one output format (Unicode text by default)."""
    # A further format (a matrix notation) is one more add_argument here.
    group = p.add_mutually_exclusive_group()
    helps = {"latex": "print LaTeX instead of Unicode text", "json": "print JSON, for tools"}
    for fmt in formats:
        group.add_argument(f"--{fmt}", dest="format", action="store_const", const=fmt, help=helps[fmt])
    p.set_defaults(format="text")


def _matrix_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", action="store_true",
                   help="also the matrix notation (Xᵀ G, A + Aᵀ) where the result has one, as matrixcalculus.org "
                        "writes it; said plainly where it has none (always in --json)")


def _output_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", metavar="NAME", help="the target to differentiate (default: the last one)")


def _seed(text: str) -> int:
    """``--seed``: a non-negative integer (numpy's generators refuse negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; a seed is an integer 0 or more")
    return value


def _size_arguments(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument(
        "--size", nargs="+", action="extend", default=[], metavar="INDEX=N",
        help="index sizes, e.g. --size n=4 d=3 (default 3 for every index of an input)",
    )
    if seed:
        p.add_argument("--seed", type=_seed, default=0, help="random seed for the inputs, 0 or more (default 0)")


def _grad_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--wrt", nargs="+", action="extend", required=required, metavar="INPUT",
        help="the inputs to differentiate with respect to (W b, or W,b)",
    )
    _output_argument(p)
    p.add_argument(
        "--seed-name", metavar="NAME",
        help="name of the upstream gradient input for a non-scalar output (default dLd<output>)",
    )
    p.add_argument("--prefix", metavar="TEXT", help="gradient names start with TEXT (default dLd)")


def _file_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output-file", metavar="FILE", help="write to FILE instead of stdout")


def short_help(parser: argparse.ArgumentParser) -> str:
    """What a bare ``eingrad`` prints: the usage line and one line per command."""
    width = max(len(name) for name in COMMANDS)
    lines = [parser.format_usage().rstrip(), "", "commands:"]
    lines += [f"  {name:{width}s}  {help_text}" for name, (help_text, _) in COMMANDS.items()]
    lines += ["", "eingrad --help shows examples; eingrad COMMAND --help, each command's options."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from .check import cmd_check
    from .commands import cmd_compile, cmd_diff, cmd_eval, cmd_explain, cmd_grad, cmd_graph, cmd_parse
    from .demo import cmd_demo
    from .serve import add_serve_command

    parser = argparse.ArgumentParser(
        prog="eingrad",
        description="Tensor calculus in index notation: parse, evaluate, differentiate, explain, "
        "compile and check tensor programs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"eingrad {__version__}")
    # Not required: a bare ``eingrad`` prints the short help (see cli.main), not an argparse error.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _subparser(sub, "demo")
    demo.set_defaults(func=cmd_demo, needs_program=False)

    p = _subparser(sub, "parse")
    _program_arguments(p)
    _format_arguments(p, "latex", "json")
    p.set_defaults(func=cmd_parse)

    e = _subparser(sub, "eval")
    _program_arguments(e)
    _size_arguments(e)
    _format_arguments(e, "json")
    e.set_defaults(func=cmd_eval)

    d = _subparser(sub, "diff")
    _program_arguments(d)
    d.add_argument("--wrt", required=True, metavar="INPUT", help="the input to differentiate with respect to")
    d.add_argument("--order", type=int, default=1, help="1 for the Jacobian/gradient (default), 2 for the Hessian")
    _output_argument(d)
    d.add_argument("--size", nargs="+", action="extend", default=[], metavar="INDEX=N",
                   help="index sizes, for the shape in --json")
    _format_arguments(d, "latex", "json")
    _matrix_argument(d)
    d.set_defaults(func=cmd_diff)

    g = _subparser(sub, "grad")
    _program_arguments(g)
    _grad_arguments(g, required=True)
    _format_arguments(g, "latex", "json")
    _matrix_argument(g)
    g.set_defaults(func=cmd_grad)

    x = _subparser(sub, "explain")
    _program_arguments(x)
    x.add_argument("--wrt", required=True, metavar="INPUT", help="the input to differentiate with respect to")
    _output_argument(x)
    _format_arguments(x, "latex", "json")
    x.set_defaults(func=cmd_explain)

    c = _subparser(sub, "compile")
    _program_arguments(c)
    _grad_arguments(c, required=False)
    c.add_argument("--backend", default="numpy", help="numpy (default), torch, jax, cupy or dask")
    _size_arguments(c)
    _file_argument(c)
    _format_arguments(c, "json")
    c.set_defaults(func=cmd_compile)

    k = _subparser(sub, "check")
    _program_arguments(k)
    k.add_argument("--wrt", nargs="+", action="extend", metavar="INPUT",
                   help="the inputs to check (default: every input the output reads)")
    _output_argument(k)
    k.add_argument("--order", type=int, default=1, help="check derivatives up to this order (default 1)")
    _size_arguments(k)
    k.add_argument("--positive", action="store_true", help="draw inputs from [0.5, 1.5] (for log, sqrt)")
    k.add_argument("--eps", type=float, default=1e-5, help="finite-difference step (default 1e-5)")
    k.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (default 1e-5)")
    _format_arguments(k, "json")
    k.set_defaults(func=cmd_check)

    r = _subparser(sub, "graph")
    _program_arguments(r)
    r.add_argument("--parameters", nargs="+", action="extend", metavar="INPUT",
                   help="inputs to fill, as the guide colours parameters (default: inputs read by several statements)")
    r.add_argument("--wrt", nargs="+", action="extend", metavar="INPUT",
                   help="draw the gradient program for these inputs instead")
    r.add_argument("--output", metavar="NAME", help="with --wrt: the target to differentiate")
    r.add_argument("--seed-name", metavar="NAME", help="with --wrt: the upstream gradient's name")
    r.add_argument("--prefix", metavar="TEXT", help="with --wrt: gradient names start with TEXT")
    r.add_argument("--format", dest="graph_format", choices=["dot", "svg"], default="dot",
                   help="dot (default) or svg (runs Graphviz's dot)")
    r.add_argument("--svg", action="store_true", help="same as --format svg")
    _file_argument(r)
    r.set_defaults(func=cmd_graph)

    add_serve_command(sub)
    return parser

"""The commands that print a program, a derivative, a gradient, code or a graph."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from typing import Any

import numpy as np

from ..api import compile as compile_
from ..api import diff, evaluate, explain, grad, matrix_form
from ..backends import get_backend
from ..diff import Derivative
from ..errors import EingradError
from ..expr import tensor_refs
from ..printing.latex import latex_expr
from ..printing.text import format_expr, index_suffix
from ..program import Program
from .inputs import (
    check_result_sizes,
    check_sizes,
    example_arrays,
    load_program,
    output_shape,
    parse_sizes,
    seed_name,
    split_names,
    tensor_shapes,
)

__all__ = [
    "cmd_compile", "cmd_diff", "cmd_eval", "cmd_explain", "cmd_grad", "cmd_graph", "cmd_parse", "emit", "emit_json",
]


# ---------------------------------------------------------------- writing results


def emit(text: str, path: str | None = None) -> None:
    """Print ``text``, or write it to ``path`` (``-o FILE``)."""
    if path is None or path == "-":
        print(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
    except OSError as err:
        raise EingradError(f"cannot write {path!r}: {err.strerror}") from None


def emit_json(data: Any, path: str | None = None) -> None:
    emit(json.dumps(data, ensure_ascii=False, indent=2), path)


def _program_json(program: Program) -> dict[str, Any]:
    return {
        "text": str(program),
        "latex": program.latex(),
        "inputs": {name: list(program.first_use(name).indices) for name in program.inputs},
        "targets": {s.target: list(s.indices) for s in program},
        "statements": [str(s) for s in program],
    }


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


# ---------------------------------------------------------------- parse, eval


def cmd_parse(args: argparse.Namespace) -> int:
    program = load_program(args)
    if args.format == "json":
        emit_json({"program": _program_json(program)})
    else:
        emit(program.latex() if args.format == "latex" else str(program))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    program = load_program(args)
    sizes = parse_sizes(args.size)
    check_sizes(program, sizes)
    check_result_sizes(program, sizes)
    arrays = example_arrays(program, sizes, np.random.default_rng(args.seed))
    # Declared too, so that an index that occurs only in deltas (y_ij = delta_ij) has a size.
    results = evaluate(program, arrays, sizes=sizes)
    if args.format == "json":
        emit_json({
            "program": str(program),
            "sizes": sizes,
            "seed": args.seed,
            "inputs": {k: {"shape": list(v.shape), "value": v.tolist()} for k, v in arrays.items()},
            "outputs": {k: {"shape": list(v.shape), "value": v.tolist()} for k, v in results.items()},
        })
        return 0
    with np.printoptions(precision=4, suppress=True):
        for name, value in [*arrays.items(), *results.items()]:
            print(f"{name} {value.shape} =\n{value}")
    return 0


# ---------------------------------------------------------------- diff, explain, grad


def _axes(program: Program, d: Derivative) -> list[str]:
    """For each axis of the derivative, the program's index whose size it has."""
    wrt_axes = list(program.first_use(d.wrt).indices)
    return list(program.statement(d.output).indices) + wrt_axes * d.order


def _shape(program: Program, d: Derivative, sizes: dict[str, int]) -> list[int | None]:
    """The derivative's shape, output's then wrt's (order times), None where unknown."""
    shapes = tensor_shapes(program, sizes, default=None)
    return [*shapes[d.output], *shapes[d.wrt] * d.order]


def cmd_diff(args: argparse.Namespace) -> int:
    program = load_program(args)
    sizes = parse_sizes(args.size)
    check_sizes(program, sizes)
    d = diff(program, args.wrt, order=args.order, output=args.output)
    if args.format == "latex":
        emit(d.latex())
    elif args.format == "json":
        axes = _axes(program, d)
        emit_json({
            "program": str(program),
            "output": d.output,
            "wrt": d.wrt,
            "order": d.order,
            "result": str(d),
            "latex": d.latex(),
            "expression": format_expr(d.expr, d.indices),
            "indices": list(d.indices),
            "output_indices": list(d.output_indices),
            "wrt_indices": [list(group) for group in d.wrt_indices],
            "axes": axes,  # the program's index each axis takes its size from
            # Known where --size reaches the axis (through the program's index names).
            "shape": _shape(program, d, sizes) if sizes else None,
            "zero": d.is_zero,
            "matrix": _matrix_json(matrix_form(d)),
        })
    else:
        emit(str(d))
        if args.matrix:
            emit(_matrix_line(matrix_form(d), latex=False))
    if args.format == "latex" and args.matrix:
        emit(_matrix_line(matrix_form(d), latex=True))
    return 0


def _matrix_line(form: Any, latex: bool) -> str:
    """``matrix form: ∂L/∂W = Xᵀ G``, or why there is none."""
    if not form:
        return f"% {form}" if latex else str(form)
    return form.equation_latex() if latex else f"matrix form: {form.equation}"


def _matrix_json(form: Any) -> dict[str, Any]:
    if not form:
        return {"text": None, "latex": None, "reason": form.reason}
    return {"text": form.text, "equation": form.equation, "latex": form.equation_latex(), "reason": None}


def cmd_explain(args: argparse.Namespace) -> int:
    program = load_program(args)
    steps = explain(program, args.wrt, output=args.output)
    if args.format == "latex":
        emit(steps.latex())
    elif args.format == "json":
        emit_json({
            "program": str(program),
            "output": steps.derivative.output,
            "wrt": args.wrt,
            "steps": [
                {
                    "reason": step.reason,
                    "lhs": step.lhs if step.rhs is not None else None,
                    "rhs": format_expr(step.rhs, explicit_sums=True) if step.rhs is not None else None,
                    "latex": step.latex(),
                }
                for step in steps.steps
            ],
            "result": str(steps.derivative),
            "result_latex": steps.derivative.latex(),
            "rhs_latex": latex_expr(steps.derivative.expr, steps.derivative.indices),
        })
    else:
        emit(str(steps))
    return 0


def gradient(program: Program, args: argparse.Namespace) -> tuple[Program, str | None]:
    """``grad`` for ``--wrt``, with an upstream gradient input when the output is not a scalar."""
    wrt = split_names(args.wrt)
    seed = seed_name(program, args.output, args.seed_name)
    if seed is not None and args.seed_name is None:
        out = program.statement(args.output or program.output)
        _note(
            f"{out.target}{index_suffix(out.indices)} is not a scalar: its upstream gradient "
            f"is the input {seed}{index_suffix(out.indices)} (name it with --seed-name)"
        )
    return grad(program, wrt=wrt, output=args.output, seed=seed, prefix=args.prefix), seed


def cmd_grad(args: argparse.Namespace) -> int:
    program = load_program(args)
    g, seed = gradient(program, args)
    wrt = split_names(args.wrt)
    if args.format == "latex":
        emit(g.latex())
    elif args.format == "json":
        emit_json({
            "program": str(program),
            "output": args.output or program.output,
            "wrt": wrt,
            "seed": seed,
            "gradients": dict(zip(wrt, g.targets[-len(wrt):], strict=True)),
            "result": _program_json(g),
            "matrix": {s.target: _matrix_json(matrix_form(s)) for s in _gradient_statements(program, g)},
        })
    else:
        emit(str(g))
    if args.matrix and args.format != "json":
        if args.format == "text":
            emit("")
        for stmt in _gradient_statements(program, g):
            emit(_matrix_line(matrix_form(stmt), latex=args.format == "latex"))
    return 0


def _gradient_statements(program: Program, g: Program) -> list:
    """The statements ``grad`` added (adjoints and gradients), not the forward ones."""
    return [s for s in g.statements if not program.is_target(s.target)]


# ---------------------------------------------------------------- compile


def cmd_compile(args: argparse.Namespace) -> int:
    program = load_program(args)
    get_backend(args.backend).load()  # an unknown or missing backend is reported before any work
    sizes = parse_sizes(args.size)
    check_sizes(program, sizes)
    check_result_sizes(program, sizes)
    rng = np.random.default_rng(args.seed)
    arrays = example_arrays(program, sizes, rng)
    if args.wrt:
        target, seed = gradient(program, args)
        what = f"the gradient of {args.output or program.output} with respect to {', '.join(split_names(args.wrt))}"
        if seed is not None:
            arrays[seed] = rng.standard_normal(output_shape(program, arrays, args.output or program.output, sizes))
        fn = compile_(target, backend=args.backend)
    else:
        what = "the program" if args.output is None else f"{args.output} and what it needs"
        fn = compile_(program, backend=args.backend, outputs=[args.output] if args.output else None)
    xp = fn.backend.load()
    backend_arrays = arrays if fn.backend.name == "numpy" else {k: xp.asarray(v) for k, v in arrays.items()}
    fn(backend_arrays, sizes=sizes or None)  # code is generated for these shapes
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    used = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
    header = (
        f"# {what}, compiled by eingrad for the {fn.backend.name} backend\n"
        f"# for inputs of shapes {used}\n"
        f"# compiled(arrays) reads arrays[name] for {', '.join(fn.inputs)}; returns {{target: array}}\n"
        f"import {fn.backend.module} as xp\n\n"
    )
    if args.format == "json":
        emit_json({
            "program": str(program),
            "compiled": what,
            "backend": fn.backend.name,
            "module": fn.backend.module,
            "sizes": sizes,
            "inputs": {k: list(s) for k, s in shapes.items()},
            "outputs": list(fn.outputs),
            "source": header + fn.source,
        }, args.output_file)
    else:
        emit(header + fn.source.rstrip("\n"), args.output_file)
    return 0


# ---------------------------------------------------------------- graph


def _shared_inputs(program: Program) -> list[str]:
    """Inputs read by more than one statement: the parameters of an unrolled model."""
    readers: dict[str, int] = {}
    for stmt in program:
        for name in {ref.name for ref in tensor_refs(stmt.expr)}:
            readers[name] = readers.get(name, 0) + 1
    return [name for name in program.inputs if readers.get(name, 0) > 1]


def render_svg(dot: str) -> str:
    """Graphviz's ``dot -Tsvg``; a clear error when Graphviz is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        raise EingradError(
            "SVG output needs Graphviz's 'dot' program, which is not on the PATH",
            hint="install Graphviz (apt install graphviz, brew install graphviz), "
            "or print DOT and render it elsewhere: eingrad graph PROGRAM > graph.dot",
        )
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EingradError(f"Graphviz's dot could not run: {err}") from None
    if done.returncode != 0:
        raise EingradError(f"Graphviz's dot failed: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return done.stdout


def cmd_graph(args: argparse.Namespace) -> int:
    program = load_program(args)
    if args.wrt:
        program, _ = gradient(program, args)
    if args.parameters is None:
        parameters = _shared_inputs(program)
    else:
        parameters = split_names(args.parameters)
        for name in parameters:
            if name not in program.inputs:
                raise EingradError(
                    f"--parameters names {name!r}, which is not an input of the program "
                    f"(its inputs are {', '.join(program.inputs)})",
                    hint="parameters are inputs shared by many statements, such as an RNN's W, U and b",
                )
    dot = program.to_dot(parameters=parameters)
    fmt = "svg" if args.svg else args.graph_format
    emit(render_svg(dot).rstrip("\n") if fmt == "svg" else dot, args.output_file)
    return 0

"""What the playground computes for one request, as JSON-ready dicts.

No web framework here: these functions run in the worker processes
(:mod:`eingrad.web.workers`) and are called directly by the tests.  They use
only eingrad's public API.  A request is validated field by field first; a
bad request is a :class:`RequestError`, a bad program the ``EingradError``
eingrad raises, both turned into ``{"error": {...}}`` by :func:`error_json`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from typing import Any

import numpy as np

import eingrad as eg
from eingrad.errors import EingradError
from eingrad.testing import check_grad, random_arrays

__all__ = [
    "BACKENDS",
    "MAX_ORDER",
    "MAX_PROGRAM_CHARS",
    "MAX_WRT",
    "RequestError",
    "derive",
    "error_json",
    "parse_info",
    "validate",
]

MODES = ("diff", "grad", "hessian")
BACKENDS = ("numpy", "torch", "jax", "cupy", "dask")
MAX_ORDER = 4  # higher orders are refused up front; slow lower ones meet the time limit
MAX_PROGRAM_CHARS = 20_000
MAX_WRT = 16
CHECK_SIZE = 3  # every index has this size in the finite-difference check
CHECK_MAX_BYTES = 64 << 20  # no array of the check may be larger (EINGRAD_MAX_BYTES in the workers)
EPS = 1e-5
RTOL = 1e-5
ATOL = 1e-7


class RequestError(EingradError, ValueError):
    """A request the API cannot take: a missing or mistyped field, an order out of range."""


def validate(request: Any) -> dict[str, Any]:
    """The request's fields with their defaults, checked; a :class:`RequestError` otherwise."""
    if not isinstance(request, dict):
        raise RequestError("the request body must be a JSON object", hint='{"program": "f_i = W_ij v_j", "wrt": ["W"]}')
    known = {"program", "wrt", "order", "mode", "backend", "positive"}
    unknown = sorted(set(request) - known)
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}", hint=f"the fields are {', '.join(sorted(known))}")
    program = request.get("program")
    if not isinstance(program, str):
        raise RequestError("'program' must be a string (the program's text)")
    if len(program) > MAX_PROGRAM_CHARS:
        raise RequestError(f"the program has {len(program)} characters; the playground takes at most {MAX_PROGRAM_CHARS}")
    wrt = request.get("wrt", [])
    if isinstance(wrt, str):
        wrt = wrt.replace(",", " ").split()
    if not isinstance(wrt, list) or not all(isinstance(w, str) for w in wrt):
        raise RequestError("'wrt' must be a list of input names", hint='"wrt": ["W", "b"]')
    wrt = list(dict.fromkeys(w.strip() for w in wrt if w.strip()))
    if len(wrt) > MAX_WRT:
        raise RequestError(f"'wrt' names {len(wrt)} inputs; the playground takes at most {MAX_WRT}")
    mode = request.get("mode", "diff")
    if mode not in MODES:
        raise RequestError(f"'mode' must be one of {', '.join(MODES)}, not {mode!r}")
    order = request.get("order", 2 if mode == "hessian" else 1)
    if isinstance(order, bool) or not isinstance(order, int):
        raise RequestError("'order' must be an integer", hint='"order": 1 for the gradient, 2 for the Hessian')
    if mode == "hessian" and order != 2:
        raise RequestError(f"mode 'hessian' is order 2, not {order}", hint="use mode 'diff' for other orders")
    if mode == "grad" and order != 1:
        raise RequestError(f"mode 'grad' (reverse mode) is order 1, not {order}",
                           hint="use mode 'diff' with an order for higher derivatives")
    if not 1 <= order <= MAX_ORDER:
        raise RequestError(f"'order' must be between 1 and {MAX_ORDER}, not {order}",
                           hint="1 for the gradient or Jacobian, 2 for the Hessian")
    backend = request.get("backend", "numpy")
    if backend not in BACKENDS:
        raise RequestError(f"'backend' must be one of {', '.join(BACKENDS)}, not {backend!r}")
    positive = request.get("positive", None)
    if positive is not None and not isinstance(positive, bool):
        raise RequestError("'positive' must be true, false or null")
    return {"program": program, "wrt": wrt, "order": order, "mode": mode, "backend": backend, "positive": positive}


def error_json(err: BaseException) -> dict[str, Any]:
    """``{"type", "message", "line", "column", "end_line", "end_column", "hint"}`` of an error.

    ``line``/``column`` are 1-based, of the first place the error points at;
    ``end_line``/``end_column`` where that place ends (exclusive), for the editor's underline.
    """
    if not isinstance(err, EingradError):
        return {"type": type(err).__name__, "message": str(err), "line": None, "column": None,
                "end_line": None, "end_column": None, "hint": None}
    end_line = end_column = None
    spans = getattr(err, "spans", None)
    if err.line is not None and spans and err.source is not None:
        end = max(spans[0].end, spans[0].start + 1)
        end_line = err.source.count("\n", 0, end) + 1
        end_column = end - (err.source.rfind("\n", 0, end) + 1) + 1
    return {"type": type(err).__name__, "message": err.message, "line": err.line, "column": err.column,
            "end_line": end_line, "end_column": end_column, "hint": err.hint}


def _warnings_json(caught: list[warnings.WarningMessage]) -> list[dict[str, str]]:
    seen = dict.fromkeys((w.category.__name__, str(w.message)) for w in caught)
    return [{"type": kind, "message": message} for kind, message in seen]


def _program_json(program: eg.Program) -> dict[str, Any]:
    return {
        "text": str(program),
        "latex": "\\begin{aligned}\n" + program.latex() + "\n\\end{aligned}",
        "inputs": {name: list(program.first_use(name).indices) for name in program.inputs},
        "targets": {s.target: list(s.indices) for s in program},
        "output": program.output,
    }


def parse_info(text: Any) -> dict[str, Any]:
    """The program's inputs and targets (what the page fills ``wrt`` with)."""
    if not isinstance(text, str):
        raise RequestError("'program' must be a string (the program's text)")
    if len(text) > MAX_PROGRAM_CHARS:
        raise RequestError(f"the program has {len(text)} characters; the playground takes at most {MAX_PROGRAM_CHARS}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = eg.parse(text)
    return {"program": _program_json(program), "warnings": _warnings_json(caught)}


# ---------------------------------------------------------------- derive


def derive(request: Any) -> dict[str, Any]:
    """Everything the page shows for one request (see docs/web.md for the fields)."""
    req = validate(request)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = eg.parse(req["program"])
        wrt = req["wrt"] or [n for n in program.inputs if n not in program.index_inputs]
        if not wrt:
            raise RequestError("the program has no inputs to differentiate with respect to",
                               hint="a program reads inputs, as X_nd and W_dh in Y_nh = X_nd W_dh + b_h")
        order = req["order"]
        if req["mode"] == "grad":
            result, target = _gradient(program, wrt)
        else:
            result, target = _derivatives(program, wrt, order)
        result["steps"] = [_steps(program, w) for w in wrt]
        result["code"] = _code(target, req["backend"])
        positive = req["positive"] if req["positive"] is not None else _wants_positive(req["program"])
        result["check"] = _check(program, wrt, order, req["mode"], result.get("seed"), positive)
        result["graph"] = _graph(program, target if req["mode"] == "grad" else None)
    result.update(
        program=_program_json(program), wrt=wrt, order=order, mode=req["mode"], backend=req["backend"],
        warnings=_warnings_json(caught),
    )
    return result


def _derivatives(program: eg.Program, wrt: list[str], order: int) -> tuple[dict[str, Any], Any]:
    """``diff`` (mode ``diff``/``hessian``) for each input in ``wrt``."""
    derivatives = [eg.diff(program, w, order=order) for w in wrt]
    results = [{"wrt": w, "text": str(d), "latex": d.latex(), "zero": d.is_zero,
                "matrix": _matrix_json(eg.matrix_form(d), w)} for w, d in zip(wrt, derivatives, strict=True)]
    text = "\n".join(r["text"] for r in results)
    latex = "\\begin{aligned}\n" + " \\\\\n".join(_align(r["latex"]) for r in results) + "\n\\end{aligned}"
    # The code is of the first derivative asked for (the page says which).
    return {"text": text, "latex": latex, "results": results, "matrix": [r["matrix"] for r in results],
            "seed": None}, derivatives[0]


def _align(latex: str) -> str:
    """``lhs = rhs`` as ``lhs &= rhs`` for an aligned block."""
    return latex.replace(" = ", " &= ", 1) if " = " in latex else latex


def _seed_name(program: eg.Program) -> str | None:
    """The upstream gradient's name when the output is not a scalar: dLd<output>, made unique."""
    out = program.statement(program.output)
    if not out.indices:
        return None
    taken = set(program.inputs) | set(program.targets)
    name = f"dLd{out.target}"
    while name in taken:
        name += "_"
    return name


def _gradient(program: eg.Program, wrt: list[str]) -> tuple[dict[str, Any], Any]:
    """Reverse mode: the gradient program, and a matrix form of each statement it adds."""
    seed = _seed_name(program)
    g = eg.grad(program, wrt=wrt, seed=seed)
    names = dict(zip(wrt, g.targets[-len(wrt):], strict=True))
    added = [s for s in g.statements if not program.is_target(s.target)]
    matrix = [_matrix_json(eg.matrix_form(s), s.target) for s in added]
    return {"text": str(g), "latex": "\\begin{aligned}\n" + g.latex() + "\n\\end{aligned}",
            "gradients": names, "seed": seed, "matrix": matrix, "results": []}, g


def _matrix_json(form: Any, name: str) -> dict[str, Any]:
    if not form:
        return {"name": name, "text": None, "latex": None, "reason": str(form)}
    return {"name": name, "text": form.equation, "latex": form.equation_latex(), "reason": None}


def _steps(program: eg.Program, w: str) -> dict[str, Any]:
    """``explain``: the first derivative of the output with respect to ``w``, step by step."""
    explanation = eg.explain(program, w)
    steps = [{"reason": s.reason, "text": s.text(), "latex": _equation(s.latex()) if s.rhs is not None else None}
             for s in explanation.steps]
    return {"wrt": w, "steps": steps, "result": str(explanation.derivative),
            "result_latex": explanation.derivative.latex()}


def _equation(latex: str) -> str:
    """A step's ``lhs &= rhs && \\text{reason}`` as the equation ``lhs = rhs`` alone."""
    return latex.split(" && ", 1)[0].replace(" &= ", " = ", 1)


def _code(target: Any, backend: str) -> dict[str, Any]:
    """The generated code; an error in it (a backend not installed) is shown in its place."""
    try:
        fn = eg.compile(target, backend=backend)
        source = fn.generic_source()  # right at every size: sizes are read from the arrays
        module = fn.backend.module
    except EingradError as err:
        return {"backend": backend, "source": None, "error": error_json(err)}
    header = (
        f"# compiled by eingrad for the {backend} backend; sizes are read from the arrays\n"
        f"# (and checked to agree), so the code is right at every size\n"
        f"import {module} as xp\n\n"
    )
    return {"backend": backend, "source": header + _used_helpers(source), "error": None}


def _used_helpers(source: str) -> str:
    """The generated code less the backend's helper functions (``def _softplus``...) it never calls."""
    blocks = re.split(r"\n(?=def )", source)
    names = [m.group(1) if (m := re.match(r"def (_\w+)\(", block)) else None for block in blocks]
    keep = [name is None for name in names]
    changed = True
    while changed:
        changed = False
        text = "\n".join(b for b, k in zip(blocks, keep, strict=True) if k)
        for k, name in enumerate(names):
            if not keep[k] and re.search(rf"\b{name}\b", text):
                keep[k] = changed = True
    return "\n".join(b for b, k in zip(blocks, keep, strict=True) if k).lstrip("\n")


# ---------------------------------------------------------------- finite differences


def _wants_positive(text: str) -> bool:
    """Inputs drawn from [0.5, 1.5] when the program takes a log, a root or a power."""
    return bool(re.search(r"\b(log|sqrt)\s*\(|\^|/", text))


def _inputs(program: eg.Program, rng: np.random.Generator, positive: bool) -> dict[str, np.ndarray]:
    sizes = {i: CHECK_SIZE for name in program.inputs for i in program.first_use(name).indices}
    arrays = random_arrays(program, sizes, rng)
    if positive:
        arrays = {k: v if k in program.index_inputs else rng.uniform(0.5, 1.5, v.shape) for k, v in arrays.items()}
    return arrays


def _row(wrt: str, what: str, shape: tuple[int, ...], run) -> dict[str, Any]:
    try:
        with np.errstate(all="ignore"):
            error = float(run())
        ok = bool(np.isfinite(error))
        return {"wrt": wrt, "what": what, "shape": list(shape), "error": error if ok else None, "pass": ok,
                "message": None if ok else "not finite (try positive inputs)"}
    except AssertionError as failure:
        return {"wrt": wrt, "what": what, "shape": list(shape), "error": None, "pass": False,
                "message": str(failure).splitlines()[0]}
    except EingradError as err:
        return {"wrt": wrt, "what": what, "shape": list(shape), "error": None, "pass": False,
                "message": f"{type(err).__name__}: {err.message}"}


def _check(program, wrt, order, mode, seed, positive) -> dict[str, Any]:
    """The exact derivatives (orders 1..order) and, for mode grad, the gradient program,
    against central finite differences on random inputs, every index of size 3."""
    rng = np.random.default_rng(0)
    arrays = _inputs(program, rng, positive)
    output = program.output
    rows = []
    # Through a recurrence only the gradient (reverse mode) exists: diff refuses (§12).
    for w in ([] if mode == "grad" and program.recurrences else wrt):
        shape = np.shape(arrays[w])
        what = "diff, order 1" if order == 1 else f"diff, orders 1-{order}"
        rows.append(_row(w, what, shape, lambda w=w: check_grad(
            program, w, arrays, order=order, output=output, rng=np.random.default_rng(1),
            eps=EPS, rtol=RTOL, atol=ATOL)))
    if mode == "grad":
        rows += _check_reverse(program, wrt, arrays, seed, rng)
    return {"size": CHECK_SIZE, "positive": positive, "eps": EPS, "rtol": RTOL, "rows": rows,
            "pass": all(r["pass"] for r in rows)}


def _check_reverse(program, wrt, arrays, seed, rng) -> list[dict[str, Any]]:
    """``grad``'s gradients g against (f(x + εv) - f(x - εv)) / 2ε = <g, v>, with
    f = <u, output> for the upstream gradient u (the output itself when it is a scalar)."""
    output = program.output
    arrays = dict(arrays)
    g = eg.grad(program, wrt=wrt, seed=seed)
    if seed is not None:
        shape = np.shape(eg.evaluate(program, arrays)[output])
        arrays[seed] = rng.standard_normal(shape)

    def f(env) -> float:
        value = np.asarray(eg.evaluate(program, {k: v for k, v in env.items() if k != seed})[output])
        return float(np.sum(value * env[seed])) if seed is not None else float(value)

    names = dict(zip(wrt, g.targets[-len(wrt):], strict=True))
    rows = []
    for w in wrt:
        def run(w=w) -> float:
            gradient = np.asarray(eg.evaluate(g, arrays)[names[w]])
            v = rng.standard_normal(np.shape(arrays[w]))
            predicted = float(np.sum(gradient * v))
            numeric = (f({**arrays, w: arrays[w] + EPS * v}) - f({**arrays, w: arrays[w] - EPS * v})) / (2 * EPS)
            error = abs(predicted - numeric) / max(abs(predicted), abs(numeric), ATOL)
            if abs(predicted - numeric) > ATOL + RTOL * max(abs(predicted), abs(numeric)):
                raise AssertionError(f"gradient of {output!r} with respect to {w!r} disagrees with finite "
                                     f"differences: {predicted!r} vs {numeric!r}")
            return error

        rows.append(_row(w, "grad (reverse mode)", np.shape(arrays[w]), run))
    return rows


# ---------------------------------------------------------------- the graph

_NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" \[shape=(\w+), label="((?:[^"\\]|\\.)*)"(, style=filled)?')
_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)";')


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _graph(program: eg.Program, gradient: eg.Program | None) -> dict[str, Any]:
    """The computation graph (of the gradient program in mode grad): DOT, its nodes and edges
    for the page to lay out, and Graphviz's SVG when ``dot`` is installed."""
    shown = gradient if gradient is not None else program
    readers: dict[str, int] = {}
    for line in program.to_dot().splitlines():
        m = _EDGE.match(line)
        if m:
            readers[_unquote(m.group(1))] = readers.get(_unquote(m.group(1)), 0) + 1
    parameters = [name for name in program.inputs if readers.get(name, 0) > 1]
    dot = shown.to_dot(parameters=parameters)
    nodes, edges = [], []
    for line in dot.splitlines():
        if m := _NODE.match(line):
            nodes.append({"id": _unquote(m.group(1)), "kind": "input" if m.group(2) == "box" else "target",
                          "label": _unquote(m.group(3)), "parameter": bool(m.group(4))})
        elif m := _EDGE.match(line):
            edges.append([_unquote(m.group(1)), _unquote(m.group(2))])
    return {"dot": dot, "nodes": nodes, "edges": edges, "svg": _svg(dot)}


def _svg(dot: str) -> str | None:
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    svg = done.stdout
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else None

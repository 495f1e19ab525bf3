"""What is wrong with a gradient, in the guide's words, and the correct formula and code."""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import api
from .. import expr as E
from ..errors import EingradError
from ..program import Program, Statement
from .inputs import Sizes

__all__ = [
    "shape_text",
    "close",
    "matches",
    "shape_finding",
    "value_finding",
    "term_finding",
    "index_statements",
    "numpy_code",
    "md",
]


def shape_text(shape: tuple[int, ...], plan: Sizes, labels: tuple[str, ...] | None = None) -> str:
    """``(n, h) = (5, 4)``, or just the numbers when a size belongs to no single index."""
    numbers = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    if not shape:
        return "() (a scalar)"
    if labels is None:
        found = [plan.label_of_size(n) for n in shape]
        if any(lab is None for lab in found):
            return numbers
        labels = tuple(found)
    return "(" + ", ".join(labels) + ("," if len(labels) == 1 else "") + f") = {numbers}"


def close(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Entries within ``rtol`` of the correct value, or ``atol`` of the largest correct entry."""
    scale = float(np.max(np.abs(want), initial=0.0)) or 1.0
    with np.errstate(invalid="ignore"):
        return np.abs(got - want) <= atol * scale + rtol * np.abs(want)


def matches(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> bool:
    return got.shape == want.shape and bool(np.all(close(got, want, rtol, atol)))


def _index_kind(label: str, plan: Sizes, output: str) -> str:
    return "the batch index" if label in plan.labels.get(output, ()) else "the index"


def shape_finding(
    name: str, wrt: str, got: np.ndarray, want: np.ndarray, plan: Sizes, output: str, rtol: float, atol: float
) -> str:
    """Why ``got`` has the wrong shape, in the guide's words, and what would fix it."""
    labels = plan.labels[wrt]
    head = f"{name} must have {wrt}'s shape {shape_text(want.shape, plan, labels)}, got {shape_text(got.shape, plan)}"
    g, w = list(got.shape), list(want.shape)
    # Match each axis of the expected shape to an unused axis of yours of that length.
    used: list[int] = []
    for n in w:
        axis = next((k for k, m in enumerate(g) if m == n and k not in used), None)
        if axis is None:
            break
        used.append(axis)
    if len(used) == len(w) and len(g) > len(w):
        return f"{head}: {_extra_axes(got, want, used, wrt, plan, output, rtol, atol)}"
    if len(used) == len(w) and len(g) == len(w):
        cause = "did you transpose? Its axes are those of the input in another order"
        if matches(np.transpose(got, used), want, rtol, atol):
            cause += ". Transposed back, yours has the right values: " + (
                "return its .T" if len(g) == 2 else f"np.transpose(yours, {tuple(used)}) is right"
            )
        return f"{head}: {cause}"
    if len(g) < len(w) and all(n in w for n in g):
        missing = [labels[k] for k, n in enumerate(w) if n not in g]
        which = " and ".join(missing)
        return (
            f"{head}: the ax{'is' if len(missing) == 1 else 'es'} of index {which} "
            f"{'is' if len(missing) == 1 else 'are'} missing: did you sum over {which}? "
            f"A gradient keeps every index of its input"
        )
    if got.size == want.size:
        return f"{head}: the same number of entries in another arrangement: did you reshape or flatten it?"
    return f"{head}: the gradient of a scalar with respect to {wrt} has one entry per entry of {wrt}"


def _extra_axes(
    got: np.ndarray,
    want: np.ndarray,
    used: list[int],
    wrt: str,
    plan: Sizes,
    output: str,
    rtol: float,
    atol: float,
) -> str:
    """The cause of axes beyond the input's (``used`` are yours that match the input's, in its order)."""
    g = got.shape
    extra = tuple(k for k in range(len(g)) if k not in used)
    axis = extra[0] if len(extra) == 1 else extra
    if all(g[k] == 1 for k in extra):
        fix, call = np.squeeze(got, axis=extra), f"np.squeeze(yours, axis={axis})"
        cause = (
            f"it has an extra axis of length 1: did you keep a summed axis (keepdims=True, or a (1, ...) "
            f"row vector)? {wrt} has {len(want.shape)} ax{'is' if len(want.shape) == 1 else 'es'}"
        )
    else:
        fix, call = np.sum(got, axis=extra), f"np.sum(yours, axis={axis})"
        named = [plan.label_of_size(g[k]) for k in extra]
        if all(named):
            which = " and ".join(f"{_index_kind(lab, plan, output)} {lab}" for lab in named)
            cause = f"did you forget to sum over {which}?"
        else:
            cause = f"it has {len(extra)} ax{'is' if len(extra) == 1 else 'es'} too many"
    if used != sorted(used):
        cause += " Its other axes are also in another order than the input's"
        fix = np.transpose(fix, np.argsort(np.argsort(used)))
        call = f"np.transpose({call}, {tuple(int(k) for k in np.argsort(np.argsort(used)))})"
    if matches(fix, want, rtol, atol):
        cause += f" ({call} has the right values)"
    return cause


def term_finding(
    gradients: Program,
    name: str,
    arrays: dict[str, np.ndarray],
    declared,
    got: np.ndarray,
    rtol: float,
    atol: float,
) -> str | None:
    """When the correct gradient is a sum of terms and yours is some of them (or some with the
    wrong sign), say which: ``A x`` for ``(A + Aᵀ) x`` lacks the term ``x_l A_li``."""
    stmt = gradients.statement(name)
    terms = stmt.expr.terms if isinstance(stmt.expr, E.Add) else ()
    if not 2 <= len(terms) <= 4 or any(t.free != frozenset(stmt.indices) for t in terms):
        return None
    taken = set(gradients.targets) | set(gradients.inputs)
    targets = [
        next(f"{name}term{k}{j or ''}" for j in itertools.count() if f"{name}term{k}{j or ''}" not in taken)
        for k in range(len(terms))
    ]
    extra = tuple(Statement(t, stmt.indices, term) for t, term in zip(targets, terms, strict=True))
    try:
        program = Program(gradients.statements + extra, None)
        env = {key: v for key, v in arrays.items() if key in program.inputs}
        result = api.evaluate(program, env, sizes=declared)
    except EingradError:
        return None
    values = [np.asarray(result[t]) for t in targets]
    for coefficients in itertools.product((1, 0, -1), repeat=len(terms)):
        if all(c == 1 for c in coefficients) or not any(coefficients):
            continue
        if matches(got, sum(c * v for c, v in zip(coefficients, values, strict=True)), rtol, atol):
            missing = [str(t) for c, t in zip(coefficients, terms, strict=True) if c == 0]
            flipped = [str(t) for c, t in zip(coefficients, terms, strict=True) if c == -1]
            parts = []
            if missing:
                parts.append(
                    f"lacks the term{'s' if len(missing) > 1 else ''} {' and '.join(missing)} "
                    "(every place the input occurs contributes a term: the product rule)"
                )
            if flipped:
                parts.append(f"has the sign of {' and '.join(flipped)} flipped")
            return f"Yours {' and '.join(parts)}"
    return None


def _location(name: str, where: tuple[int, ...], labels: tuple[str, ...]) -> str:
    if not where:
        return name
    return f"{name}[" + ", ".join(f"{lab}={k}" for lab, k in zip(labels, where, strict=True)) + "]"


def _describe_factor(c: float, plan: Sizes) -> str:
    """What a constant ratio yours / correct suggests."""

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-6 * max(abs(a), abs(b))

    sign = "minus " if c < 0 else ""
    for label, n in plan.index_sizes().items():
        if n > 1 and near(abs(c), n):
            return (
                f"yours is {sign}|{label}| = {n} times the correct one: did you sum over {label} where the "
                f"program averages, or forget to divide by the number of {label}?"
            )
        if n > 1 and near(abs(c), 1 / n):
            return (
                f"yours is {sign}the correct one divided by |{label}| = {n}: did you take a mean over {label} "
                f"where the program sums over it?"
            )
    if near(c, -1):
        return "wrong sign: yours is exactly minus the correct gradient (a dropped or extra minus sign?)"
    for k in range(2, 11):
        if near(abs(c), k):
            return f"off by a factor of {sign}{k}: yours is {sign}{k} times the correct one" + (
                " (a square's derivative has a factor 2: x² gives 2x)" if k == 2 and c > 0 else ""
            )
        if near(abs(c), 1 / k):
            return f"off by a factor of {sign}1/{k}: yours is {sign}the correct one divided by {k}" + (
                " (a square's derivative has a factor 2: x² gives 2x)" if k == 2 and c > 0 else ""
            )
    return f"off by a constant factor: yours is {c:.6g} times the correct one"


def value_finding(
    name: str,
    got: np.ndarray,
    want: np.ndarray,
    labels: tuple[str, ...],
    plan: Sizes,
    rtol: float,
    atol: float,
) -> tuple[str, dict]:
    """Where and by how much ``got`` differs from ``want`` (same shape), and a likely cause."""
    finite = np.isfinite(got)
    bad = ~finite | ~close(got, want, rtol, atol)
    error = np.where(finite, np.abs(got - want), np.inf)
    where = tuple(int(k) for k in np.unravel_index(int(np.argmax(error)), got.shape)) if got.shape else ()
    yours, right = float(got[where]), float(want[where])
    abs_err = float(error[where])
    rel_err = abs_err / abs(right) if right else math.inf
    stats = {
        "where": where,
        "abs_error": abs_err,
        "rel_error": rel_err,
        "wrong": int(bad.sum()),
        "factor": None,
    }
    text = (
        f"{name} is wrong in {stats['wrong']} of {got.size} entr{'y' if got.size == 1 else 'ies'}. "
        f"The largest difference is at {_location(name, where, labels)}: yours {yours:.6g}, correct {right:.6g}"
    )
    if not finite.all():
        return text + f" ({int((~finite).sum())} of yours are NaN or infinite)", stats
    size = f"{100 * rel_err:.3g}% of the correct value" if rel_err < 10 else f"{rel_err:.3g} times its size"
    text += f" (off by {abs_err:.3g}" + (f", {size})" if right else ")")
    if not np.any(got):
        return text + ". Yours is all zeros", stats
    norm = float(np.sum(want * want))
    c = float(np.sum(got * want)) / norm if norm else 0.0
    if c and abs(c - 1) > 1e-6 and matches(got, c * want, max(rtol, 1e-6), atol):
        stats["factor"] = c
        cause = _describe_factor(c, plan)
        return text + ". " + cause[0].upper() + cause[1:], stats
    for perm in itertools.permutations(range(got.ndim)) if got.ndim <= 4 else ():
        if (
            perm != tuple(range(got.ndim))
            and got.transpose(perm).shape == want.shape
            and matches(got.transpose(perm), want, rtol, atol)
        ):
            return text + ". Transposed, yours is right: did you transpose? " + (
                "return its .T" if got.ndim == 2 else f"np.transpose(..., {perm}) is right"
            ), stats
    return text, stats


# ---------------------------------------------------------------- the correct answer


def index_statements(gradients: Program, target: str, forward: Program) -> list[str]:
    """The adjoint and gradient statements ``target`` needs, in index notation."""
    needed = gradients.needed_for([target])
    return [str(s) for s in needed.statements if not forward.is_target(s.target)]


def numpy_code(gradients: Program, target: str, arrays: dict[str, np.ndarray]) -> str | None:
    """Numpy code for ``target``: the body of eingrad's compiled function, ``xp`` read as ``np``."""
    source = None
    for outputs in ([target], None):  # only what the target needs; else the whole gradient program
        try:
            fn = api.compile(gradients, outputs=outputs, debug=False)  # the code shown: no debug checks
            given = {k: np.array(v) for k, v in arrays.items() if k in fn.inputs}  # copies: the report keeps its own
            fn(given)
            # Code right at every size (sizes read from the arrays), not only at the check's.
            source = fn.generic_source({k: v.shape for k, v in given.items()})
            break
        except Exception:  # noqa: BLE001 - the code shown is a courtesy: a failure leaves it out
            continue
    if source is None:
        return None
    lines = source.split("\n")
    start = next((k for k, line in enumerate(lines) if line.startswith("def compiled(")), None)
    if start is None:
        return source.replace("xp.", "np.")
    body = []
    for line in lines[start + 1 :]:
        text = line[4:] if line.startswith("    ") else line
        if not line.strip() or text.startswith(("return ", "del ")) or "= arrays[" in text:
            if text.startswith("return "):
                break
            continue
        body.append(text)
    # The size checks guard the compiled function; the code shown reads without them.
    body = [line for line in body if not (line.startswith("if ") and "_sizes_disagree(" in line)]
    body = [line for k, line in enumerate(body) if not (
        line.startswith("size_") and " = " in line
        and not any(line.split(" = ")[0] in later for later in body[k + 1:]))]
    helpers = _helpers(lines[:start], "\n".join(body))
    return "\n".join(helpers + body).replace("xp.", "np.")


def _helpers(header: list[str], body: str) -> list[str]:
    """The helper functions of the generated module that ``body`` calls."""
    out: list[str] = []
    for k, line in enumerate(header):
        if line.startswith("def _") and line[4 : line.index("(")] + "(" in body:
            block = [line]
            for follow in header[k + 1 :]:
                if follow and not follow.startswith(" "):
                    break
                block.append(follow)
            while block and not block[-1].strip():
                block.pop()
            out += block
    return out


def md(text: str) -> str:
    """``text`` for Markdown: emphasis marks escaped, and ``<`` ``>`` as entities (a
    function called ``<lambda>`` is not an HTML tag that the notebook drops)."""
    return text.replace("*", "\\*").replace("_", "\\_").replace("<", "&lt;").replace(">", "&gt;")

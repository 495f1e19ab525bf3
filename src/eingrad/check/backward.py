"""``check_backward``: run the user's backward pass and compare each gradient with eingrad's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import api
from ..program import Program
from .diagnose import (
    close,
    index_statements,
    md,
    numpy_code,
    shape_finding,
    shape_text,
    term_finding,
    value_finding,
)
from .inputs import POSITIVE_NOTE, CheckError, check_sizes, draw_inputs, make_rng, wrt_list
from .mistakes import classic_mistake
from .user import arguments, as_gradient, call_user, unpack

__all__ = ["BackwardCheckFailed", "GradientCheck", "BackwardReport", "check_backward"]


class BackwardCheckFailed(AssertionError):
    """Raised by :meth:`BackwardReport.raise_if_failed`; its text is the report."""


@dataclass
class GradientCheck:
    """The finding for one gradient: ``ok``, ``problem`` (None, 'missing', 'type', 'shape',
    'values'), the ``message`` in words, both arrays, and the correct formula and code."""

    wrt: str
    name: str
    ok: bool
    problem: str | None
    message: str
    expected: np.ndarray
    got: np.ndarray | None
    statements: list[str]
    code: str | None
    where: tuple[int, ...] | None = None
    abs_error: float | None = None
    rel_error: float | None = None
    wrong: int | None = None
    factor: float | None = None

    def __bool__(self) -> bool:
        return self.ok

    def text(self, shown: set[str] | None = None) -> str:
        """The finding; code lines in ``shown`` (an earlier gradient's) are not repeated."""
        if self.ok:
            return f"✓ {self.name}: {self.message}"
        lines = [f"✗ {self.message}", "    The correct gradient, in index notation:"]
        lines += [f"        {s}" for s in self.statements if shown is None or s not in shown]
        if shown is not None:
            shown.update(self.statements)
        if self.code:
            code = _new_lines(self.code, shown)
            lines.append("    In numpy" + (" (after the code above):" if code != self.code.split("\n") else ":"))
            lines += [f"        {line}" for line in code]
        return "\n".join(lines)


def _new_lines(code: str, shown: set[str] | None) -> list[str]:
    """The lines of ``code`` not in ``shown`` (which then holds them too)."""
    lines = code.split("\n")
    if shown is None:
        return lines
    out = [line for line in lines if line not in shown]
    shown.update(lines)
    return out


@dataclass
class BackwardReport:
    """What ``check_backward`` found; ``bool(report)`` is whether every gradient is right.

    ``checks`` has one :class:`GradientCheck` per wrt (empty when the function
    could not be run or its result not read: see ``error``); ``inputs`` are the
    arrays the function was given, ``sizes`` the index sizes.
    """

    program: Program
    checks: list[GradientCheck]
    error: str | None
    notes: list[str]
    inputs: dict[str, np.ndarray]
    sizes: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def __getitem__(self, name: str) -> GradientCheck:
        for c in self.checks:
            if name in (c.wrt, c.name):
                return c
        raise KeyError(name)

    def summary(self) -> str:
        if self.error is not None:
            return f"check_backward: {self.error}"
        wrong = [c.name for c in self.checks if not c.ok]
        if not wrong:
            return "check_backward: " + (
                "the gradient is right"
                if len(self.checks) == 1
                else f"all {len(self.checks)} gradients are right"
            )
        return f"check_backward: {len(wrong)} of {len(self.checks)} wrong ({', '.join(wrong)})"

    def __str__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        lines = [self.summary() + (f"  [sizes {sizes}]" if sizes else "")]
        shown: set[str] = set()  # the code is shown once: a second wrong gradient adds its own lines
        lines += [c.text(shown) for c in self.checks]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<BackwardReport: {self.summary()}>"

    def _repr_markdown_(self) -> str:
        out = [f"**{md(self.summary())}**", ""]
        shown: set[str] = set()
        for c in self.checks:
            out.append(f"- {'✓' if c.ok else '✗'} `{c.name}`: {md(c.message)}")
            if not c.ok:
                out.append("  correct: " + "; ".join(f"`{s}`" for s in c.statements))
                code = _new_lines(c.code, shown) if c.code else []
                if code:
                    out += ["", "  ```python", *[f"  {line}" for line in code], "  ```"]
        out += [f"- note: {md(n)}" for n in self.notes]
        return "\n".join(out) + "\n"

    def raise_if_failed(self) -> BackwardReport:
        """Raise :class:`BackwardCheckFailed` (an AssertionError) with the report unless it passed."""
        if not self.ok:
            raise BackwardCheckFailed(str(self))
        return self


def check_backward(
    program: Program | str,
    wrt: str | Sequence[str],
    user_fn: Callable[..., Any],
    *,
    output: str | None = None,
    seed: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    sizes: Mapping[str, int] | None = None,
    rng: np.random.Generator | int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> BackwardReport:
    """Run ``user_fn`` on random inputs and compare its gradients with eingrad's.

    ``user_fn`` is called with the arrays its parameters name: the program's
    inputs, the upstream gradient when the output is not a scalar (named
    ``seed``, by default ``dLdY`` for output ``Y``, as in ``eg.grad``), and any
    forward value (a target of the program) it asks for.  It returns the
    gradient (one ``wrt``), or a dict keyed by input (``'W'``) or gradient name
    (``'dLdW'``), or a tuple in the order of ``wrt``.

    Inputs are standard normal; index sizes default to small distinct numbers
    (``sizes`` overrides them, ``inputs`` gives some arrays); ``rng`` is a
    Generator or an integer seed (default 0: the same inputs every time).  An
    entry is wrong when it differs from the correct one by more than
    ``rtol`` times it plus ``atol`` times the largest correct entry.

    >>> import numpy as np, eingrad as eg
    >>> report = eg.check_backward("Y_nh = X_nd W_dh + b_h", "b", lambda dLdY: dLdY)
    >>> bool(report)
    False
    >>> print(report.summary())
    check_backward: 1 of 1 wrong (dLdb)
    >>> report["b"].message.startswith("dLdb must have b's shape (h,) = (4,), got (n, h) = (5, 4)")
    True
    """
    program = api.as_program(program)
    wrt = wrt_list(program, wrt)
    if not callable(user_fn):
        raise CheckError(
            f"user_fn must be a function, got {type(user_fn).__name__}",
            hint="pass your backward function itself, not its result",
        )
    output = output or program.output
    if not program.is_target(output):
        raise CheckError(
            f"{output!r} is not a target of the program", hint=f"its targets are {', '.join(program.targets)}"
        )
    upstream = _upstream_name(program, output, seed)
    gradients = api.grad(program, wrt, output=output, seed=upstream)
    names = [s.target for s in gradients.statements[-len(wrt) :]]
    report = BackwardReport(program, [], None, [], {}, {})
    draw = _Draw(
        program, gradients, names, output, upstream, inputs, check_sizes(program, sizes), make_rng(rng)
    )
    report.inputs, report.notes = draw.arrays, draw.notes
    report.sizes = draw.plan.index_sizes()
    values, report.error = _run(user_fn, draw, wrt, names, report.notes)
    if report.error is None:
        for w, name in zip(wrt, names, strict=True):
            report.checks.append(_check_one(w, name, values, draw, rtol, atol))
        # Intermediates the function returned too (dLdZ): checked like the gradients, first.
        report.checks[:0] = [_check_one(like, name, {like: value}, draw, rtol, atol)
                             for name, (like, value) in values.pop(_INTERMEDIATES, {}).items()]
    return report


_INTERMEDIATES = "\0intermediates"


def _intermediates(result, draw: _Draw, names: list[str], notes: list[str]) -> dict:
    """The entries of a returned dict named like an intermediate gradient (``dLdZ``): name ->
    (the tensor whose shape it has, the value); the note that ignored them is dropped."""
    if not isinstance(result, Mapping):
        return {}
    first = len(draw.program.statements)
    known = {s.target: s for s in draw.gradients.statements[first:] if s.target not in names}
    found = {}
    for key in result:
        stmt = known.get(key) if isinstance(key, str) else None
        like = stmt.like if stmt is not None else None
        if like is not None and like in draw.plan.labels:
            found[key] = (like, result[key])
    if found:
        for k, note in enumerate(notes):
            if note.startswith("ignored the entries"):
                head = note[: note.index(" of the returned")]
                rest = [key for key in result if key not in found and repr(key) in head]
                if rest:
                    notes[k] = f"ignored the entries {', '.join(map(repr, rest))}" + note[note.index(" of the returned"):]
                else:
                    del notes[k]
                break
    return found


def _upstream_name(program: Program, output: str, seed: str | None) -> str | None:
    """The name the upstream gradient is passed under: ``seed``, else ``dLdY`` for a non-scalar ``Y``."""
    if seed is not None or not program.statement(output).indices:
        return seed
    upstream = f"dLd{output}"
    if upstream in program.inputs or program.is_target(upstream):
        raise CheckError(
            f"the upstream gradient's usual name {upstream!r} is taken by the program",
            hint="name it: seed='G'",
        )
    return upstream


class _Draw:
    """Random inputs (and upstream gradient), and eingrad's gradients and forward values there.

    Standard-normal inputs first; where the gradient is not finite there (a log or sqrt
    of a negative number), inputs from [0.5, 1.5], with a note.
    """

    def __init__(self, program, gradients, names, output, upstream, given, sizes, rng) -> None:
        self.program, self.gradients, self.output, self.notes = program, gradients, output, []
        extra = [upstream] if upstream else []
        for positive in (False, True):
            self.arrays, self.plan = draw_inputs(program, given, extra, sizes, rng, positive)
            if upstream is not None and upstream not in self.arrays:
                self.arrays[upstream] = rng.standard_normal(self.plan.shapes[output])
            self.truth = self._evaluate(gradients)
            if all(np.all(np.isfinite(self.truth[name])) for name in names):
                break
            if positive or (given and all(k in given for k in program.inputs)):
                raise CheckError(
                    "eingrad's gradient is not finite at the inputs used (a log or sqrt of a negative "
                    "number, or an overflow?)",
                    hint="pass inputs={...} with values where the program is defined",
                )
            self.notes.append(POSITIVE_NOTE)
        self.forward = self._evaluate(program)
        self.first = list(program.inputs) + extra  # what a function taking **kwargs gets
        self.upstream = upstream

    def _evaluate(self, program: Program) -> dict[str, np.ndarray]:
        env = {k: v for k, v in self.arrays.items() if k in program.inputs}
        return api.evaluate(program, env, sizes=self.plan.declared or None)

    def available(self) -> dict[str, np.ndarray]:
        """Copies of everything the user's function may ask for by name (it may write into them)."""
        out = {k: np.array(self.arrays[k]) for k in self.first}
        out.update({k: np.array(v) for k, v in self.forward.items() if k not in out})
        return out


def _run(user_fn, draw: _Draw, wrt: list[str], names: list[str], notes: list[str]):
    """Call the user's function and split its result per gradient: (values, problem)."""
    args, kwargs, note, problem = arguments(user_fn, draw.available(), draw.first, draw.upstream)
    notes += [note] if note else []
    if problem is not None:
        return {}, problem
    result, problem = call_user(user_fn, args, kwargs)
    if problem is not None:
        return {}, problem
    values, more, problem = unpack(result, wrt, names)
    notes += more
    if problem is None:
        values[_INTERMEDIATES] = _intermediates(result, draw, names, notes)
    return values, problem


def _check_one(w: str, name: str, values: dict, draw: _Draw, rtol: float, atol: float) -> GradientCheck:
    """The finding for one gradient; the correct formula and code come with a wrong one."""
    found = GradientCheck(
        w, name, False, None, "", np.asarray(draw.truth[name], dtype=np.float64), None, [], None
    )
    found.message = _diagnose(found, values, draw, rtol, atol)
    if not found.ok:
        found.statements = index_statements(draw.gradients, name, draw.program)
        found.code = numpy_code(draw.gradients, name, draw.arrays)
    return found


def _diagnose(found: GradientCheck, values: dict, draw: _Draw, rtol: float, atol: float) -> str:
    """Fill in ``found`` (problem, got, statistics) and say what is wrong, or that it is right."""
    w, name, want, plan = found.wrt, found.name, found.expected, draw.plan
    if w not in values:
        found.problem = "missing"
        return f"your function returned no gradient for {w} (as {w!r} or {name!r})"
    got, why = as_gradient(values[w])
    if got is None:
        found.problem = "type"
        return f"{name} {why}"
    found.got = got
    if got.shape != want.shape:
        found.problem = "shape"
        return shape_finding(name, w, got, want, plan, draw.output, rtol, atol)
    if np.all(close(got, want, rtol, atol)) and np.all(np.isfinite(got)):
        found.ok = True
        err = float(np.max(np.abs(got - want), initial=0.0))
        return f"right (shape {shape_text(want.shape, plan, plan.labels[w])}, largest difference {err:.2g})"
    found.problem = "values"
    message, stats = value_finding(name, got, want, plan.labels[w], plan, rtol, atol)
    found.where, found.abs_error, found.rel_error = stats["where"], stats["abs_error"], stats["rel_error"]
    found.wrong, found.factor = stats["wrong"], stats["factor"]
    if found.factor is None:
        terms = term_finding(draw.gradients, name, draw.arrays, plan.declared or None, got, rtol, atol)
        if not terms:  # a classic mistake: a mask dropped, a weight transposed, a diagonal Jacobian
            terms = classic_mistake(draw.gradients, draw.program, name, draw.arrays, plan.declared or None,
                                    got, rtol, atol)
        message += f". {terms}" if terms else ""
    return message

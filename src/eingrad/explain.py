"""Derivations step by step, the way the guide derives the gradient of a bias.

For ``Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh`` with respect to ``b``::

    1. chain rule through Y, summing over Y's indices:
       ∂L/∂b_k = Σ_{a,c}(∂L/∂Y_ac ∂Y_ac/∂b_k)
    2. ∂L/∂Y_ac = G_ac
    3. ∂Y_ac/∂b_k = δ_ck
    4. substitute: ∂L/∂b_k = Σ_{a,c}(G_ac δ_ck)
    5. a delta eats a summed index (Σ_j A_ij δ_jk = A_ik): ∂L/∂b_k = Σ_a(G_ak)

A statement that reads ``wrt`` directly is differentiated node by node, each
reference to ``wrt`` becoming a product of deltas, and then simplified.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import expr as E
from .diff import Derivative, _Context, diff_expr, differentiate
from .expr import Expr, Tensor, add, mul, rename_indices, sum_
from .names import fresh_index
from .program import Program
from .simplify import Step, simplify

__all__ = ["Explanation", "ExplainStep", "GradientResult", "explain_derivative", "explain_recurrence"]


@dataclass(frozen=True)
class ExplainStep:
    """One line of a derivation: what was done, and the equation it gives."""

    reason: str
    lhs: str  # text of the left-hand side
    lhs_latex: str
    rhs: Expr | None

    def text(self) -> str:
        from .printing.text import format_expr

        if self.rhs is None:
            return self.reason
        return f"{self.reason}:\n   {self.lhs} = {format_expr(self.rhs, explicit_sums=True)}"

    def latex(self) -> str:
        from .printing.latex import latex_expr

        if self.rhs is None:
            return f"\\text{{{_latex_text(self.reason)}}}"
        rhs = latex_expr(self.rhs, explicit_sums=True)
        return f"{self.lhs_latex} &= {rhs} && \\text{{{_latex_text(self.reason)}}}"


_TEXT_MATH = {"∂": "\\partial", "·": "\\cdot", "^": "^\\wedge", "\\": "\\backslash", "~": "\\sim"}


def _latex_text(text: str) -> str:
    """``text`` for inside ``\\text{}``: TeX's special characters escaped, and ^, ∂ and Greek
    letters as inline math (a bare ^ or Unicode symbol in text mode does not render)."""
    import re

    from .printing.latex import latex_symbol

    # An indexed name (A_ij, Σ_j, δ_jk, ∂x_ab) as inline math, A_{ij}: \_ in text mode
    # shows its backslash in some renderers, and reads worse than a subscript anyway.
    parts = re.split(r"(∂?[^\W_\d][^\W_]*_[^\W_]+)", text)
    if len(parts) > 1:
        out = []
        for k, part in enumerate(parts):
            if k % 2:
                name, _, sub = part.rpartition("_")
                lead = "\\partial " if name.startswith("∂") else ""
                out.append(f"${lead}{latex_symbol(name.removeprefix('∂')).strip()}_{{{sub}}}$")
            else:
                out.append(_latex_text(part) if part else "")
        return "".join(out)
    out = []
    for ch in text:
        if ch in "_{}#%&$":
            out.append("\\" + ch)
        elif ch in _TEXT_MATH:
            out.append(f"${_TEXT_MATH[ch]}$")
        elif not ch.isascii() and latex_symbol(ch).startswith("\\"):
            out.append(f"${latex_symbol(ch).strip()}$")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Explanation:
    """The steps from the program to its derivative, as text (``str``) or LaTeX."""

    derivative: Derivative
    steps: tuple[ExplainStep, ...]

    def __str__(self) -> str:
        lines = [f"{self.derivative.output} is computed by:"]
        lines += [f"   {line}" for line in str(self.derivative.program).splitlines()]
        for k, step in enumerate(self.steps, 1):
            lines.append(f"{k}. {step.text()}")
        lines.append(f"result: {self.derivative}")
        return "\n".join(lines)

    def latex(self) -> str:
        body = " \\\\\n".join(step.latex() for step in self.steps if step.rhs is not None)
        return "\\begin{aligned}\n" + body + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def __repr__(self) -> str:
        return f"<Explanation of {self.derivative}>"


def _placeholder(output: str, out_indices: tuple[str, ...], wrt: str, indices: tuple[str, ...]) -> Tensor:
    """A tensor that prints as ∂output_I/∂wrt_K, for the chain-rule line (display only)."""
    from .printing.text import index_suffix

    return Tensor(f"∂{output}{index_suffix(out_indices)}/∂{wrt}", indices)


def _lhs(output: str, out_indices, wrt: str, wrt_indices) -> tuple[str, str]:
    from .printing.latex import latex_indices, latex_symbol
    from .printing.text import index_suffix

    text = f"∂{output}{index_suffix(tuple(out_indices))}/∂{wrt}{index_suffix(tuple(wrt_indices))}"
    latex = (
        f"\\frac{{\\partial {latex_symbol(output)}{latex_indices(tuple(out_indices))}}}"
        f"{{\\partial {latex_symbol(wrt)}{latex_indices(tuple(wrt_indices))}}}"
    )
    return text, latex


def _simplification_steps(trace: list[Step], lhs: str, lhs_latex: str) -> list[ExplainStep]:
    return [ExplainStep(step.identity, lhs, lhs_latex, step.whole) for step in trace]


@dataclass(frozen=True)
class GradientResult:
    """The result of an explanation through a recurrence: the gradient statement of ``wrt``
    (a recurrence's derivative is a recurrence, so it is a statement of a gradient program)."""

    program: Program
    output: str
    wrt: str
    statement: object  # Statement

    def __str__(self) -> str:
        return str(self.statement)

    def latex(self) -> str:
        return self.statement.latex()


def explain_recurrence(program: Program, wrt: str, output: str | None = None) -> Explanation:
    """The gradient through a recurrence (LANGUAGE.md §12), in the guide's words: unrolled, the
    recurrence is a chain of statements, one per step; reverse mode visits them last to first,
    so each step's adjoint takes what the next step passes back: a recurrence running the other
    way, the same statement at every step, derived once."""
    from .printing.text import index_suffix
    from .reverse import gradient_program

    output = output or program.output
    grads = gradient_program(program, [wrt], output)
    steps: list[ExplainStep] = []
    for rec in program.recurrences:
        stmt0 = program.statement(rec.members[0])
        t = stmt0.indices[rec.axis_of(rec.members[0])]
        members = ", ".join(rec.members)
        back = "earlier" if rec.direction > 0 else "later"
        last = "last" if rec.direction > 0 else "first"
        steps.append(ExplainStep(
            f"{members} read{'s' if len(rec.members) == 1 else ''} {back} steps of {t}: unrolled along {t}, "
            f"this is one statement per step, the same at every step (the guide's RNN); reverse mode "
            f"visits the steps in reverse topological order, from the {last} step", "", "", None))
        for m in reversed(rec.members):
            stmt = program.statement(m)
            adjoint = next((s for s in grads.statements if s.like == m and s.target not in program.targets), None)
            if adjoint is None:
                continue
            lhs = adjoint.target + index_suffix(adjoint.indices)
            steps.append(ExplainStep(
                f"the adjoint of {m}{index_suffix(stmt.indices)} collects what later statements read of it "
                f"and what the next step passes back through its shifted read "
                f"(∂{m}[{t}{'+' if rec.direction > 0 else '-'}1]/∂{m}[{t}]): "
                f"a recurrence running the other way, zero past the end",
                lhs, adjoint.latex().split(" = ", 1)[0], adjoint.expr))
    result = grads.statements[-1]
    steps.append(ExplainStep(
        f"{wrt} is read at every step: its gradient sums each step's contribution over the steps",
        result.target + index_suffix(result.indices), result.latex().split(" = ", 1)[0], result.expr))
    return Explanation(GradientResult(program, output, wrt, result), tuple(steps))


def explain_derivative(program: Program, wrt: str, output: str | None = None) -> Explanation:
    """The derivation of ``∂output/∂wrt`` in steps (first order); through a recurrence, the
    gradient's (:func:`explain_recurrence`)."""
    from .diff import ThroughRecurrenceError

    try:
        result = differentiate(program, wrt, 1, output)
    except ThroughRecurrenceError:
        return explain_recurrence(program, wrt, output)
    output = result.output
    out_stmt = program.statement(output)
    wrt_indices = result.wrt_indices[0]
    lhs, lhs_latex = _lhs(output, out_stmt.indices, wrt, wrt_indices)
    taken = set(E.all_indices(result.expr)) | set(result.indices)
    for stmt in program.statements:
        taken |= E.all_indices(stmt.expr) | set(stmt.indices)

    # Which targets read by the output statement depend on wrt?
    read = list(dict.fromkeys(r.name for r in E.tensor_refs(out_stmt.expr)))
    through = []
    for name in read:
        if name in program.targets:
            inner = differentiate_quietly(program, wrt, name)
            if not inner.is_zero:
                through.append((name, inner))
    steps: list[ExplainStep] = []

    if not through:
        ctx = _Context(wrt, wrt_indices, {}, wrt_indices, set(taken))
        raw = diff_expr(out_stmt.expr, ctx)
        steps.append(
            ExplainStep(
                f"differentiate {_describe(out_stmt, wrt)}; each {wrt} gives deltas "
                f"(∂{wrt}_ab/∂{wrt}_kl = δ_ak δ_bl){_identities(out_stmt.expr)}",
                lhs,
                lhs_latex,
                raw,
            )
        )
        trace: list[Step] = []
        simplify(raw, trace=trace)
        steps += _simplification_steps(trace, lhs, lhs_latex)
        return Explanation(result, tuple(steps))

    # Chain rule through each intermediate target, with its indices summed.
    chain_terms = []
    substituted_terms = []
    factor_steps = []
    only_output = Program((out_stmt,), None)
    for name, inner in through:
        # Sum over the intermediate's own index names where free (as the guide does), else fresh.
        avoid = set(out_stmt.indices) | set(wrt_indices) | set(result.expr.free)
        mids = []
        for own in program.statement(name).indices:
            if own in avoid or own in mids:
                own = fresh_index(taken | avoid | set(mids), "a")
            mids.append(own)
        taken.update(mids)
        mids_t = tuple(mids)
        chain_terms.append(
            sum_(
                mids_t,
                mul(
                    _placeholder(output, out_stmt.indices, name, mids_t),
                    _placeholder(name, mids_t, wrt, wrt_indices),
                ),
            )
        )
        outer = differentiate_quietly(only_output, name, output)
        outer_expr = rename_indices(outer.expr, dict(zip(outer.wrt_indices[0], mids_t, strict=True)))
        inner_map = dict(zip(inner.output_indices, mids_t, strict=True))
        inner_map.update(zip(inner.wrt_indices[0], wrt_indices, strict=True))
        inner_expr = rename_indices(inner.expr, _apart(inner.expr, inner_map, taken))
        o_lhs, o_latex = _lhs(output, out_stmt.indices, name, mids_t)
        i_lhs, i_latex = _lhs(name, mids_t, wrt, wrt_indices)
        factor_steps.append(ExplainStep(f"differentiate {output} with respect to {name}"
                                        f"{_identities(out_stmt.expr)}", o_lhs, o_latex, outer_expr))
        deeper = _through_steps(program, wrt, name)
        factor_steps += deeper
        factor_steps.append(ExplainStep(
            (f"so, in these indices, ∂{name}/∂{wrt} is" if deeper else f"differentiate {name} with respect to {wrt}")
            + f"{_identities(program.statement(name).expr)}", i_lhs, i_latex, inner_expr))
        substituted_terms.append(sum_(mids_t, mul(outer_expr, inner_expr)))
    direct = [r for r in E.tensor_refs(out_stmt.expr) if r.name == wrt]
    if direct:
        ctx = _Context(wrt, wrt_indices, {}, wrt_indices, set(taken))
        direct_expr = diff_expr(out_stmt.expr, ctx)
        chain_terms.append(_placeholder(output, out_stmt.indices, wrt, wrt_indices))
        substituted_terms.append(direct_expr)
    names = ", ".join(name for name, _ in through)
    steps.append(
        ExplainStep(
            f"chain rule through {names}, summing over {'its' if len(through) == 1 else 'their'} indices",
            lhs,
            lhs_latex,
            add(*chain_terms),
        )
    )
    steps += factor_steps
    substituted = add(*substituted_terms)
    steps.append(ExplainStep("substitute", lhs, lhs_latex, substituted))
    trace = []
    simplify(substituted, trace=trace)
    steps += _simplification_steps(trace, lhs, lhs_latex)
    return Explanation(result, tuple(steps))


def _through_steps(program: Program, wrt: str, name: str) -> list[ExplainStep]:
    """The chain-rule steps of ``∂name/∂wrt`` when ``name`` itself reads intermediates that
    depend on ``wrt`` (the MLP's ∂Z/∂W1 through H, then A): each intermediate stepped
    through, its own simplification left to its result."""
    stmt = program.statement(name)
    if not any(r.name in program.targets and not differentiate_quietly(program, wrt, r.name).is_zero
               for r in E.tensor_refs(stmt.expr)):
        return []
    inner = explain_derivative(program, wrt, name)
    return [step for step in inner.steps if step.reason.startswith(("chain rule", "differentiate", "so, in"))]


def differentiate_quietly(program: Program, wrt: str, output: str) -> Derivative:
    import warnings

    from .errors import ZeroDerivativeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroDerivativeWarning)
        return differentiate(program, wrt, 1, output)


def _apart(e: Expr, mapping: dict[str, str], taken: set[str]) -> dict[str, str]:
    """Extend ``mapping`` so that e's other indices get names not in ``taken``."""
    out = dict(mapping)
    for i in sorted(E.all_indices(e)):
        if i not in out:
            if i in taken:
                new = fresh_index(taken, i[0])
                taken.add(new)
                out[i] = new
            else:
                taken.add(i)
    return out


def _identities(e: Expr) -> str:
    """The matrix identities (Matrix Cookbook) a derivative of ``e`` uses, as a clause."""
    from .diff import MATRIX_IDENTITIES

    ops = dict.fromkeys(node.op for node in E.walk(e) if isinstance(node, E.MatFn))
    if not ops:
        return ""
    return "; by " + ", ".join(MATRIX_IDENTITIES[op] for op in ops)


def _describe(stmt, wrt: str) -> str:
    from .printing.text import index_suffix

    return f"{stmt.target}{index_suffix(stmt.indices)} term by term"


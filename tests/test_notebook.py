"""Jupyter display: programs, statements, derivatives, explanations and gradient programs
render as LaTeX (``_repr_latex_``); check reports and compiled functions as Markdown.

Without a TeX engine in the test environment, the LaTeX is checked structurally: the
delimiters Jupyter expects, balanced braces, matched ``\\begin``/``\\end`` and
``\\left``/``\\right``, only known macros, no Unicode (MathJax and KaTeX in strict mode
reject it), and nothing in ``\\text{}`` that text mode cannot hold (``^``, ``_``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import eingrad as eg

KNOWN_MACROS = {
    "frac",
    "partial",
    "sum",
    "delta",
    "exp",
    "log",
    "sqrt",
    "tanh",
    "sin",
    "cos",
    "sigma",
    "left",
    "right",
    "operatorname",
    "mathit",
    "mathrm",
    "begin",
    "end",
    "text",
    "lvert",
    "rvert",
    "cdot",
    "wedge",
    "backslash",
    "sim",
    "quad",
    "qquad",
    "top",
    "mid",
    "alpha",
    "beta",
    "gamma",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "pi",
    "rho",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Pi",
    "Sigma",
    "Upsilon",
    "Phi",
    "Psi",
    "Omega",
}
ESCAPES = {"\\\\", "\\_", "\\{", "\\}", "\\,", "\\;", "\\!", "\\ ", "\\#", "\\%", "\\&", "\\$"}


def text_segments(body: str) -> list[str]:
    """The contents of every ``\\text{...}``, without the inline math ($...$) inside."""
    out = []
    for match in re.finditer(r"\\text\{", body):
        depth, k = 1, match.end()
        while depth:
            if body[k] == "\\":
                k += 2
                continue
            depth += {"{": 1, "}": -1}.get(body[k], 0)
            k += 1
        out.append(re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", body[match.end() : k - 1]))
    return out


def assert_valid_latex(shown: str) -> None:
    """``shown`` is what Jupyter renders: ``$...$`` or ``$$...$$`` around valid LaTeX math."""
    assert isinstance(shown, str)
    display = shown.startswith("$$")
    body = shown[2:-2] if display else shown[1:-1]
    assert shown.endswith("$$" if display else "$") and body.strip(), shown
    assert shown.isascii(), f"non-ASCII characters in {shown!r}"
    outside_text = re.sub(r"\\text\{(?:[^{}]|\{[^{}]*\})*\}", "", body)
    assert not re.search(r"(?<!\\)\$", outside_text), f"a $ would end the math early: {shown!r}"
    depth = 0
    k = 0
    while k < len(body):
        if body[k] == "\\":
            k += 2
            continue
        depth += {"{": 1, "}": -1}.get(body[k], 0)
        assert depth >= 0, f"unbalanced braces in {shown!r}"
        k += 1
    assert depth == 0, f"unbalanced braces in {shown!r}"
    assert re.findall(r"\\begin\{(\w+)\}", body) == re.findall(r"\\end\{(\w+)\}", body)
    assert len(re.findall(r"\\left\b", body)) == len(re.findall(r"\\right\b", body))
    for token in re.findall(
        r"\\(?:[A-Za-z]+|.)", body
    ):  # left to right: a line break \\\\ before L is no macro \\L
        if token[1].isalpha():
            assert token[1:] in KNOWN_MACROS, f"unknown macro {token} in {shown!r}"
        else:
            assert token in ESCAPES, f"unexpected {token!r} in {shown!r}"
    for text in text_segments(body):
        assert not re.search(r"(?<!\\)[_^]", text), f"a bare _ or ^ in text mode: {text!r}"
    if "aligned" in body:
        assert "&" in body


PROGRAMS = [
    "Y_nh = X_nd W_dh + b_h",
    "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh",
    "p_k = exp(z_k - logsumexp_j(z_j)); L = -y_k log(p_k)",
    "L = sum_n(softplus(-y_n X_nd w_d)) + 0.5 lam w_d w_d",
    "σ_k = sigmoid(x_k); L = σ_k σ_k",
    "y_α = W_αβ x_β; L = y_α y_α",
    "A[batch, hid] = B[batch, hid] + |batch|",
    "f = x_i A_ij x_j",
    "s = sqrt(abs(x_i x_i)) + relu(c)^2",
]


@pytest.mark.parametrize("text", PROGRAMS)
def test_programs_and_statements_render(text):
    program = eg.parse(text)
    assert_valid_latex(program._repr_latex_())
    for statement in program.statements:
        assert_valid_latex(statement._repr_latex_())
        assert_valid_latex(statement.expr._repr_latex_())


@pytest.mark.parametrize("text", PROGRAMS)
def test_derivatives_explanations_and_gradients_render(text):
    program = eg.parse(text)
    scalar = not program.statement(program.output).indices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for wrt in program.inputs:
            assert_valid_latex(eg.diff(program, wrt)._repr_latex_())
            assert_valid_latex(eg.hessian(program, wrt)._repr_latex_())
            assert_valid_latex(eg.explain(program, wrt)._repr_latex_())
        gradients = eg.grad(program, program.inputs, seed=None if scalar else "dLdOut")
        assert_valid_latex(gradients._repr_latex_())


def test_explanation_reasons_keep_their_math_in_text_mode():
    # The simplification steps are named by identities such as "x^a x^b = x^(a+b)" and
    # "Σ_j A_ij δ_jk = A_ik": in LaTeX the symbols become inline math inside \text.
    shown = eg.explain("p_k = exp(z_k - logsumexp_j(z_j)); L = -y_k log(p_k)", "z")._repr_latex_()
    assert "x$^\\wedge$a" in shown
    assert "$\\Sigma_{j}$ $A_{ij}$ $\\delta_{jk}$ = $A_{ik}$" in shown  # subscripts, no \\_
    assert "($\\partial W_{ab}$" in eg.explain("f_i = W_ij v_j", "W")._repr_latex_()


def test_the_validator_rejects_broken_latex():
    for broken in [
        "$\\frac{a}{b$",
        "$\\text{x^a}$",
        "$Σ_i x_i$",
        "$\\partia x$",
        "\\frac{a}{b}",
        "$\\begin{aligned}a\\end{array}$",
        "$\\left( x$",
    ]:
        with pytest.raises(AssertionError):
            assert_valid_latex(broken)


def test_reports_render_as_markdown():
    backward = eg.check_backward("Y_nh = X_nd W_dh + b_h", ["W", "b"], lambda X, dLdY: (X.T @ dLdY, dLdY))
    markdown = backward._repr_markdown_()
    assert markdown.startswith("**check\\_backward: 1 of 2 wrong (dLdb)**")
    assert "- ✓ `dLdW`" in markdown and "- ✗ `dLdb`" in markdown
    assert markdown.count("```") == 2  # the numpy code of the failing gradient, fenced
    taylor = eg.taylor_check("L = sum_i(exp(x_i))", "x")._repr_markdown_()
    assert "| ε | ‖f(x+εΔ)−f(x)‖ | ‖f(x+εΔ)−f(x)−εJ·Δ‖ | order |" in taylor


def test_compiled_functions_show_their_source():
    fn = eg.compile(eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], seed="dLdY"))
    fn(X=np.ones((4, 3)), W=np.ones((3, 2)), b=np.zeros(2), dLdY=np.ones((4, 2)))
    shown = fn._repr_markdown_() if hasattr(fn, "_repr_markdown_") else fn._repr_html_()
    assert fn.source.strip().splitlines()[-1].strip() in shown


def test_ipython_picks_the_latex_and_markdown():
    formatters = pytest.importorskip("IPython.core.formatters")
    display = formatters.DisplayFormatter()
    program = eg.parse("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh")
    for obj in [program, eg.diff(program, "W"), eg.explain(program, "b"), eg.grad(program, ["W"])]:
        data, _ = display.format(obj)
        assert_valid_latex(data["text/latex"])
    data, _ = display.format(eg.check_backward(program, "b", lambda G: G.sum(0)))
    assert "text/markdown" in data

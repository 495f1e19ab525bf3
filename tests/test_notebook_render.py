"""A notebook of eingrad's results, converted to HTML by nbconvert, its math rendered by KaTeX.

What a student sees in Jupyter is each object's rich display (``_repr_latex_``,
``_repr_markdown_``).  This test puts those displays into a notebook exactly as Jupyter
stores them (no kernel is needed: the outputs are the objects' own), converts it with
nbconvert's ``basic`` template (no CDN script: the page must work offline), and renders
every formula of the HTML with the KaTeX vendored in ``eingrad/web/static`` (by ``node``,
``throwOnError``): a formula KaTeX cannot typeset, an escaped underscore in math, or a
script fetched from the network fails it.  Skipped, with the reason, where nbconvert or
node is missing (CI installs both: the test extra and Debian's node).
"""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

import eingrad as eg
from katex_check import katex_failures

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat: pip install 'eingrad[test]'")
nbconvert = pytest.importorskip("nbconvert", reason="the notebook test needs nbconvert: pip install 'eingrad[test]'")

MLP = """H_nh = relu(X_nd W1_dh + b1_h)
P_nc = softmax_c(H_nh W2_hc + b2_c)
L = -sum_{n,c}(Y_nc log(P_nc)) / |n| + 0.5 lam (W1_dh W1_dh + W2_hc W2_hc)"""
BATCH_NORM = """mu_h = mean_n(X_nh)
v_h = mean_n((X_nh - mu_h)^2)
Y_nh = (X_nh - mu_h) / sqrt(v_h + eps)"""


def _displays():
    """(what the cell computes, the object Jupyter displays) for the tutorial's results."""
    program = eg.parse("Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(G_nh Y_nh)")

    def my_backward(X, W, b, dLdY):  # the classic bug: the bias gradient not summed over n
        return {"W": X.T @ dLdY, "b": dLdY}

    return [
        ("eg.parse(affine)", program),
        ("eg.diff(affine, 'b')", eg.diff(program, "b")),
        ("eg.explain(affine, 'W')", eg.explain(program, "W")),
        ("eg.grad(MLP)", eg.grad(MLP, wrt=["W1", "b1", "W2", "b2"])),
        ("eg.diff(softmax, 'z').matrix()", eg.diff("p_i = softmax_i(z_i)", "z").matrix()),
        ("eg.diff(batch norm, 'X')", eg.diff(BATCH_NORM, "X")),
        ("eg.hessian(logistic, 'w')", eg.hessian("L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j", "w")),
        ("eg.diff(logdet, 'X')", eg.diff("L = logdet_ij(X_ij)", "X")),
        ("eg.compile(grad)", eg.compile(eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], seed="dLdY"))),
        ("eg.check_backward(affine, my_backward)",
         eg.check_backward("Y_nh = X_nd W_dh + b_h", ["W", "b"], my_backward)),
    ]


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# eingrad in a notebook\nThe guide's $Y_{nh} = X_{nd} W_{dh} + b_h$."))
    for k, (code, obj) in enumerate(_displays(), start=1):
        data = {"text/plain": repr(obj)}
        for mime, method in (("text/latex", "_repr_latex_"), ("text/markdown", "_repr_markdown_")):
            shown = getattr(obj, method, None)
            if shown is not None and shown() is not None:
                data[mime] = shown()
        assert len(data) > 1, f"{code} has no rich display"
        cell = nbformat.v4.new_code_cell(code, execution_count=k)
        cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\$\\])\$(?!\$)(.+?)(?<![\$\\])\$(?!\$)", re.S)


def _math(page: str) -> list[str]:
    """Every formula of the HTML page, as KaTeX will read it (entities decoded)."""
    text = re.sub(r"<pre[^>]*>.*?</pre>", " ", page, flags=re.S)  # code blocks hold no math
    text = re.sub(r"<style[^>]*>.*?</style>", " ", text, flags=re.S)
    formulas = [html.unescape(m) for m in _DISPLAY.findall(text)]
    formulas += [html.unescape(m) for m in _INLINE.findall(_DISPLAY.sub(" ", text))]
    return [f.strip() for f in formulas if f.strip()]


def test_a_notebook_of_results_converts_to_html_and_its_math_renders_with_katex():
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter(template_name="basic").from_notebook_node(_notebook())
    assert not re.search(r"<script[^>]+src=[\"']https?:", page), "the page fetches a script from the network"
    formulas = _math(page)
    # Every displayed result reached the page as math: the program, each derivative,
    # the explanation's steps, the gradient program, the matrix forms.
    assert len(formulas) >= 8, formulas
    assert any("\\frac{\\partial L}{\\partial b" in f for f in formulas), formulas
    assert any("\\operatorname{diag}" in f or "diag" in f for f in formulas), formulas
    assert not [f for f in formulas if "\\_" in f], "an escaped underscore in math"
    assert katex_failures(formulas) == []
    # The compiled code and the check report are shown as code and text, not lost.
    shown = html.unescape(re.sub(r"<[^>]+>", "", page))  # the page's text, highlighting removed
    assert "def compiled" in shown and "dLdb" in shown
    assert "forget to sum over the batch index n" in shown, "the check report's diagnosis is missing"


def test_a_formula_katex_cannot_typeset_is_caught():
    # The check itself can fail: KaTeX rejects an unknown command and an unbalanced brace.
    bad = katex_failures(["\\frac{a}{b} + \\notacommand x", "x_{i"])
    assert len(bad) == 2


def test_the_numbers_behind_the_displays_are_right():
    # The notebook shows what the API computes: the bias gradient it displays is Σ_n G_nh.
    program = eg.parse("Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(G_nh Y_nh)")
    rng = np.random.default_rng(0)
    arrays = {"X": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 2)), "b": rng.normal(size=2),
              "G": rng.normal(size=(4, 2))}
    np.testing.assert_allclose(eg.evaluate(eg.diff(program, "b"), arrays), arrays["G"].sum(axis=0))

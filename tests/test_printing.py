r"""Exact Unicode text and LaTeX for a table of programs, and round trips of corpus-like programs.

Each row: what the user writes, what ``str(program)`` prints (it must parse
back to an equal program), and what ``statement.latex()`` prints.
"""

from __future__ import annotations

import warnings

import pytest

import eingrad as eg
from corpus import CORPUS

# (written, printed, latex)
TABLE = [
    # the guide's examples
    ("z_i = X_ij w_j", "z_i = X_ij w_j", r"z_{i} = X_{ij} w_{j}"),
    ("Y_nh = X_nd W_dh + b_h", "Y_nh = X_nd W_dh + b_h", r"Y_{nh} = X_{nd} W_{dh} + b_{h}"),
    ("f_ijk = v_k δ_ij", "f_ijk = v_k δ_ij", r"f_{ijk} = v_{k} \delta_{ij}"),
    ("v_i = A_ij delta_jk B_ik", "v_i = A_ij δ_jk B_ik", r"v_{i} = A_{ij} \delta_{jk} B_{ik}"),
    ("A_ij = U_ik σ_k V_kj", "A_ij = U_ik σ_k V_kj", r"A_{ij} = U_{ik} \sigma_{k} V_{kj}"),
    ("C_ik = A_ij B_jk W_ik", "C_ik = A_ij B_jk W_ik", r"C_{ik} = A_{ij} B_{jk} W_{ik}"),
    # explicit sums that must stay explicit
    ("L = log(sum_i(p_i))", "L = log(Σ_i p_i)", r"L = \log\left(\sum_{i} p_{i}\right)"),
    ("L = log(p_i)", "L = log(Σ_i p_i)", r"L = \log\left(\sum_{i} p_{i}\right)"),
    ("L = sum_i(log(p_i))", "L = Σ_i log(p_i)", r"L = \sum_{i} \log\left(p_{i}\right)"),
    ("s = sum_i(x_i + c)", "s = Σ_i(x_i + c)", r"s = \sum_{i} \left(x_{i} + c\right)"),
    (
        "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
        "L = Σ_i softplus(-y_i X_ij w_j) + 0.5 lam w_j w_j",
        r"L = \sum_{i} \operatorname{softplus}\left(-y_{i} X_{ij} w_{j}\right)"
        r" + 0.5 \lambda w_{j} w_{j}",
    ),
    (
        "L = -sum_n(log(sigmoid(t_n z_n)))",
        "L = -Σ_n log(sigmoid(t_n z_n))",
        r"L = -\sum_{n} \log\left(\sigma\left(t_{n} z_{n}\right)\right)",
    ),
    # a plain reduction (the index occurs once) is written out, as Σ_n dLdY_nh
    ("s = x_i + c", "s = Σ_i x_i + c", r"s = \sum_{i} x_{i} + c"),  # each term sums its own i
    ("y = -2 sum_i(x_i)", "y = -2 Σ_i x_i", r"y = -2 \sum_{i} x_{i}"),
    ("y_i = A_ij sum_k(B_jk)", "y_i = A_ij Σ_k B_jk", r"y_{i} = A_{ij} \sum_{k} B_{jk}"),
    # ... and contractions print implicitly
    ("s = sum_i(sum_j(A_ij B_ij))", "s = A_ij B_ij", r"s = A_{ij} B_{ij}"),
    ("y = x - sum_i(a_i b_i)", "y = x - a_i b_i", r"y = x - a_{i} b_{i}"),
    ("y = A_ii", "y = A_ii", r"y = A_{ii}"),
    ("d_i = A_ii", "d_i = A_ii", r"d_{i} = A_{ii}"),
    # nested binders
    (
        "s = sum_i(exp(sum_j(A_ij)))",
        "s = Σ_i exp(Σ_j A_ij)",
        r"s = \sum_{i} \exp\left(\sum_{j} A_{ij}\right)",
    ),
    ("y_i = sum_k(A_ik) sum_k(B_ik)", "y_i = (Σ_k A_ik) Σ_k B_ik", r"y_{i} = \left(\sum_{k} A_{ik}\right) \sum_{k} B_{ik}"),
    (
        "y_i = logsumexp_j(A_ij + b_j)",
        "y_i = logsumexp_j(A_ij + b_j)",
        r"y_{i} = \operatorname{logsumexp}_{j}\left(A_{ij} + b_{j}\right)",
    ),
    (
        "L = logsumexp_{i,j}(A_ij)",
        "L = logsumexp_ij(A_ij)",
        r"L = \operatorname{logsumexp}_{i,j}\left(A_{ij}\right)",
    ),
    # negative terms
    ("y_i = a_i - 2 b_i", "y_i = a_i - 2 b_i", r"y_{i} = a_{i} - 2 b_{i}"),
    ("y_i = -a_i - b_i", "y_i = -a_i - b_i", r"y_{i} = -a_{i} - b_{i}"),
    ("y = x - (a + b)", "y = x - (a + b)", r"y = x - \left(a + b\right)"),
    ("y = -(a + b)", "y = -(a + b)", r"y = -\left(a + b\right)"),
    ("y_i = -A_ij x_j", "y_i = -A_ij x_j", r"y_{i} = -A_{ij} x_{j}"),
    ("y_i = a_i (-b_j c_j)", "y_i = -a_i b_j c_j", r"y_{i} = -a_{i} b_{j} c_{j}"),
    ("y = a − b·c", "y = a - b c", r"y = a - b c"),
    # constants
    ("y = x / 3", "y = 1/3 x", r"y = \frac{1}{3} x"),
    ("y_i = 2 x_i / 3", "y_i = 2/3 x_i", r"y_{i} = \frac{2}{3} x_{i}"),
    ("y = -1/3 x", "y = -1/3 x", r"y = -\frac{1}{3} x"),
    ("y = 0.001 x", "y = 0.001 x", r"y = 0.001 x"),
    ("y = 2.5e3 x", "y = 2500 x", r"y = 2500 x"),
    # negative and fractional exponents
    ("y = x^-1", "y = 1 / x", r"y = \frac{1}{x}"),
    ("y_i = x_i^-2", "y_i = 1 / x_i^2", r"y_{i} = \frac{1}{{x_{i}}^{2}}"),
    ("y = x^(1/3)", "y = x^(1/3)", r"y = x^{\frac{1}{3}}"),
    ("y = x^0.5", "y = x^0.5", r"y = \sqrt{x}"),
    ("y = x^(-1/2)", "y = 1 / x^0.5", r"y = \frac{1}{\sqrt{x}}"),
    ("y = x**1.5", "y = x^1.5", r"y = x^{1.5}"),
    ("y_i = (A_ij x_j)^2", "y_i = (A_ij x_j)^2", r"y_{i} = \left(A_{ij} x_{j}\right)^{2}"),
    # multi-letter and Greek indices
    (
        "H[batch, hid] = tanh(X[batch, d] W[d, hid] + b[hid])",
        "H[batch, hid] = tanh(X[batch, d] W[d, hid] + b[hid])",
        r"H_{\mathit{batch},\mathit{hid}} = \tanh\left(X_{\mathit{batch},d} W_{d,\mathit{hid}}"
        r" + b_{\mathit{hid}}\right)",
    ),
    (
        "H_{batch,hid} = relu(X_{batch,d} W_{d,hid})",
        "H[batch, hid] = relu(X[batch, d] W[d, hid])",
        r"H_{\mathit{batch},\mathit{hid}} = \operatorname{relu}\left(X_{\mathit{batch},d} W_{d,\mathit{hid}}\right)",
    ),
    ("y_αi = A_αi", "y_αi = A_αi", r"y_{\alpha i} = A_{\alpha i}"),
    ("y_iα = θ_iα", "y_iα = θ_iα", r"y_{i\alpha} = \theta_{i\alpha}"),
    # division by a product or a sum
    ("y_i = x_i / (a_i b_i)", "y_i = x_i / (a_i b_i)", r"y_{i} = \frac{x_{i}}{a_{i} b_{i}}"),
    ("y_i = x_i / (a_i + b_i)", "y_i = x_i / (a_i + b_i)", r"y_{i} = \frac{x_{i}}{a_{i} + b_{i}}"),
    ("y = 1 / (a + b)", "y = 1 / (a + b)", r"y = \frac{1}{a + b}"),
    ("y_i = 1 / (a_i b_i)", "y_i = 1 / (a_i b_i)", r"y_{i} = \frac{1}{a_{i} b_{i}}"),
    ("y_i = A_ij x_j / (b_k b_k)", "y_i = A_ij x_j / (b_k b_k)", r"y_{i} = \frac{A_{ij} x_{j}}{b_{k} b_{k}}"),
    # functions
    ("y = sigmoid(x)", "y = sigmoid(x)", r"y = \sigma\left(x\right)"),
    ("y_i = exp(x_i)", "y_i = exp(x_i)", r"y_{i} = \exp\left(x_{i}\right)"),
    ("y_i = sqrt(x_i^2 + 1)", "y_i = sqrt(x_i^2 + 1)", r"y_{i} = \sqrt{{x_{i}}^{2} + 1}"),
    (
        "h = tanh(x) + abs(x) + cos(x) sin(x)",
        "h = tanh(x) + abs(x) + cos(x) sin(x)",
        r"h = \tanh\left(x\right) + \operatorname{abs}\left(x\right) + \cos\left(x\right) \sin\left(x\right)",
    ),
]


def parse_quietly(text: str) -> eg.Program:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        return eg.parse(text)


@pytest.mark.parametrize(("written", "printed", "latex"), TABLE, ids=[row[0] for row in TABLE])
def test_printing_table(written, printed, latex):
    program = parse_quietly(written)
    assert str(program) == printed
    assert program.statements[0].latex() == latex
    assert eg.parse(printed) == program


def test_program_latex_aligns_statements():
    program = eg.parse("h_i = W_ij x_j; L = sum_i(h_i h_i) / 2")
    assert str(program) == "h_i = W_ij x_j\nL = 0.5 h_i h_i"
    assert program.latex() == "h_{i} &= W_{ij} x_{j} \\\\\nL &= 0.5 h_{i} h_{i}"


def test_expressions_print_with_their_free_indices():
    expr = eg.parse("y_i = A_ij x_j").statements[0].expr
    assert str(expr) == "A_ij x_j"
    assert expr.latex() == "A_{ij} x_{j}"


# Programs in the style of the guide, beyond the shared corpus (tests/corpus.py).
MORE_PROGRAMS = [
    "z_i = X_ij w_j\nL = sum_i(log(1 + exp(-y_i z_i))) + 0.5 lam w_j w_j",
    "Y_nh = X_nd W_dh + b_h\nL = G_nh Y_nh",
    "p = v_i u_i",
    "A_ij = u_i v_j",
    "w_j = A_ij v_i",
    "p_i = v_i u_i",
    "C_ik = A_ij B_jk",
    "C_ik = A_ij B_jk W_ik",
    "C_k = B_ijk A_ij",
    "C_jkl = B_ijk A_il",
    "C_ij = u_i v_j + A_ij",
    "f = w_i v_i",
    "f_i = W_ij v_j",
    "v_i = A_ij δ_jk B_ik",
    "A_ij = U_ik σ_k δ_kl V_lj",
    "A_ij = U_ik σ_k V_kj",
    "S_kl = σ_k δ_kl",
    "# an MLP\nH_nh = relu(X_nd W1_dh + b1_h)\nZ_nc = H_nh W2_hc + b2_c\n"
    "L = sum_n(logsumexp_c(Z_nc) - Z_nc T_nc)",
    "H[batch, hid] = tanh(X[batch, d] W[d, hid] + b[hid]); L = 0.5 H[batch, hid] H[batch, hid]",
    "m_i = sum_j(X_ij) / 4\nD_ij = X_ij - m_i\nV_i = D_ij D_ij / 4\nN_ij = D_ij / sqrt(V_i + 1e-5)",
    "s_i = exp(z_i - logsumexp_j(z_j))",
    "E = sum_{i,j}(A_ij^2)^(1/2)",
    "y_i = sigmoid(W_ij x_j) tanh(U_ij h_j) + (1 - sigmoid(W_ij x_j)) h_i",
    "L = -sum_n(t_n log(p_n) + (1 - t_n) log(1 - p_n))",
    "T = A_ii\nd_i = A_ii\nQ = x_i A_ij x_j",
    "K_ij = exp(-0.5 (x_ik - x_jk)^2)",
    "y_i = x_i / sqrt(x_j x_j)",
]


@pytest.mark.parametrize("entry", CORPUS, ids=lambda entry: entry.name)
def test_shared_corpus_round_trips(entry):
    program = parse_quietly(entry.text)
    printed = str(program)
    with warnings.catch_warnings():
        warnings.simplefilter("error", eg.SurprisingSumWarning)  # printed text never surprises
        again = eg.parse(printed)
    assert again == program
    assert str(again) == printed
    assert program.latex().count("&=") == len(program)


@pytest.mark.parametrize("text", MORE_PROGRAMS)
def test_more_programs_round_trip(text):
    program = parse_quietly(text)
    printed = str(program)
    again = eg.parse(printed)
    assert again == program
    assert str(again) == printed
    assert again.equivalent(program)
    latex = program.latex()
    assert latex.count("&=") == len(program)

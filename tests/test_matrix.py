"""Matrix notation (eingrad.matrix): the forms an expert writes, and a numerical round trip.

Every matrix form is evaluated from its own tree with plain numpy (``@``,
``.T``, ``np.diag``; nothing broadcasts) and compared with ``eg.evaluate`` of
the index form.  Index sizes are all different, so that a misplaced transpose
shows as a wrong shape.  Random programs (``eingrad.testing.random_program``),
their derivatives and their reverse-mode gradients go through the same check.
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pytest

import eingrad as eg
from eingrad.matrix import MatrixForm, MatrixFormError, NoMatrixForm, matrix_form
from eingrad.matrix.nodes import transpose
from eingrad.testing import random_program

# Every index its own size (a=2, b=3, ..., z=27): a transposed result has the wrong shape.
SIZES = {c: 2 + k for k, c in enumerate("abcdefghijklmnopqrstuvwxyz")}

AFFINE = "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh"
QUADRATIC = "f = x_i A_ij x_j"
LOGISTIC = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"
LOGISTIC_S = "s_i = sigmoid(X_ij w_j); L = -sum_i(y_i log(s_i) + (1 - y_i) log(1 - s_i)) + 0.5 lam w_j w_j"
MLP = "H_nh = relu(X_nd W_dh + b_h); Y_no = H_nh V_ho; L = G_no Y_no"
SOFTMAX = "L = sum_n(logsumexp_k(Z_nk) - Y_nk Z_nk)"


def arrays_for(program: eg.Program, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for ``program``, each axis as long as its index's size."""
    sizes = {**SIZES, **(sizes or {})}
    rng = np.random.default_rng(seed)
    return {
        name: rng.uniform(-1.0, 1.0, size=tuple(sizes[i] for i in program.first_use(name).indices))
        for name in program.inputs
    }


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        return fn(*args, **kwargs)


def assert_balanced(latex: str) -> None:
    depth = 0
    for ch in latex.replace("\\{", "").replace("\\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, latex
    assert depth == 0, latex
    assert latex.count("\\left(") == latex.count("\\right)"), latex


def assert_round_trip(form, expected: np.ndarray, arrays: dict, context: str = "") -> None:
    """The matrix form, computed with numpy, equals the index form's value."""
    got = form.evaluate(arrays)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{form.equation}: shape {got.shape}, expected {expected.shape}\n{context}"
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=f"{form.equation}\n{context}")
    assert_balanced(form.latex())


# ---------------------------------------------------------------- the table

# (program, what, expected text, sizes); what: ("diff", wrt[, order]) or ("stmt", target).
TABLE = [
    ("f_i = W_ij v_j", ("diff", "v"), "W", None),
    (AFFINE, ("diff", "W"), "Xᵀ G", None),
    (AFFINE, ("diff", "b"), "Gᵀ 𝟏", None),
    (AFFINE, ("diff", "X"), "G Wᵀ", None),
    (AFFINE, ("stmt", "Y"), "X W + 𝟏 bᵀ", None),
    (QUADRATIC, ("diff", "x"), "A x + Aᵀ x", {"j": 10}),
    (QUADRATIC, ("diff", "x", 2), "A + Aᵀ", {"j": 10}),
    (QUADRATIC, ("stmt", "f"), "xᵀ A x", {"j": 10}),
    (LOGISTIC, ("diff", "w"), "-Xᵀ (σ(-y ⊙ (X w)) ⊙ y) + lam w", None),
    (LOGISTIC, ("diff", "w", 2), "Xᵀ diag(σ(-y ⊙ (X w)) ⊙ (𝟏 - σ(-y ⊙ (X w))) ⊙ y^⊙2) X + lam I", None),
    (LOGISTIC_S, ("diff", "w"), "-Xᵀ (y ⊙ (𝟏 - s) - (𝟏 - y) ⊙ s) + lam w", None),
    (LOGISTIC_S, ("diff", "w", 2), "Xᵀ diag(s ⊙ (𝟏 - s)) X + lam I", None),
    ("L = 0.5 lam w_j w_j", ("diff", "w", 2), "lam I", None),
    ("t = A_ii", ("stmt", "t"), "tr(A)", None),
    ("t = A_ii", ("diff", "A"), "I", None),
    ("t = A_ij B_ji", ("stmt", "t"), "tr(A B)", None),
    ("t = A_ij B_ji", ("diff", "A"), "Bᵀ", None),
    ("t = A_ij B_jk C_ki", ("stmt", "t"), "tr(A B C)", None),
    ("t = A_ij B_ij", ("stmt", "t"), "tr(Aᵀ B)", None),
    ("C_ij = u_i v_j", ("stmt", "C"), "u vᵀ", None),
    ("C_ji = u_i v_j", ("stmt", "C"), "v uᵀ", None),
    ("C_ij = A_ij B_ij", ("stmt", "C"), "A ⊙ B", None),
    ("C_ij = A_ij B_ji D_ij", ("stmt", "C"), "A ⊙ Bᵀ ⊙ D", None),
    ("Y_ij = 2 A_ij - A_ji", ("stmt", "Y"), "2 A - Aᵀ", {"j": 10}),
    ("Z_nh = exp(X_nd W_dh)", ("stmt", "Z"), "exp(X W)", None),
    ("y_i = sigmoid(x_i)", ("stmt", "y"), "σ(x)", None),
    ("H_nh = relu(X_nd W_dh + b_h)", ("stmt", "H"), "relu(X W + 𝟏 bᵀ)", None),
    ("Y_ij = s_i X_ij", ("stmt", "Y"), "diag(s) X", None),
    ("Y_ij = X_ij s_j", ("stmt", "Y"), "X diag(s)", None),
    ("H_kl = X_nk s_n X_nl", ("stmt", "H"), "Xᵀ diag(s) X", None),
    ("t = x_i", ("stmt", "t"), "𝟏ᵀ x", None),
    ("t = A_ij", ("stmt", "t"), "𝟏ᵀ A 𝟏", None),
    ("b_h = G_nh", ("stmt", "b"), "Gᵀ 𝟏", None),
    ("y_i = x_i + c; L = y_i", ("diff", "c"), "|i|", None),
    ("Y_nh = X_nd W_dh + c; L = G_nh Y_nh", ("diff", "c"), "𝟏ᵀ G 𝟏", None),
    ("y_i = delta_ijk A_jk", ("stmt", "y"), "diag(A)", {"j": 10, "k": 10}),
    (MLP, ("diff", "W"), "Xᵀ ((G Vᵀ) ⊙ step(H))", None),
    (MLP, ("diff", "V"), "Hᵀ G", None),
    (SOFTMAX, ("diff", "Z"), "softmax(Z) - Y", None),
    ("y_n = logsumexp_k(Z_nk)", ("stmt", "y"), "log(exp(Z) 𝟏)", None),
    ("y = logsumexp_i(x_i)", ("stmt", "y"), "log(𝟏ᵀ exp(x))", None),
    ("M_ij = A_ij; L = c", ("diff", "c", 1, "M"), "0", None),
]


def case(program_text: str, what: tuple):
    """(the matrix form, the index form's value, the arrays) of one table row."""
    program = eg.parse(program_text)
    if what[0] == "stmt":
        return matrix_form(program, target=what[1]), program, None
    order = what[2] if len(what) > 2 else 1
    output = what[3] if len(what) > 3 else None
    d = quiet(eg.diff, program, what[1], order, output)
    return matrix_form(d), program, d


@pytest.mark.parametrize("program_text, what, text, sizes", TABLE, ids=[f"{r[0][:24]}:{r[1]}" for r in TABLE])
def test_the_expert_form_and_its_round_trip(program_text, what, text, sizes):
    form, program, d = case(program_text, what)
    assert isinstance(form, MatrixForm), form
    assert form.text == text
    arrays = arrays_for(program, sizes)
    expected = eg.evaluate(d, arrays) if d is not None else eg.evaluate(program, arrays)[what[1]]
    assert_round_trip(form, expected, arrays)


def test_the_round_trip_catches_a_transpose():
    form, program, d = case(AFFINE, ("diff", "W"))
    arrays = arrays_for(program)
    wrong = dataclasses.replace(form, node=transpose(form.node))
    assert wrong.text == "Gᵀ X"
    assert wrong.evaluate(arrays).shape != eg.evaluate(d, arrays).shape


@pytest.mark.parametrize(
    "target, text",
    [("Y", "X W + 𝟏 bᵀ"), ("dLdW", "Xᵀ dLdY"), ("dLdb", "dLdYᵀ 𝟏"), ("dLdX", "dLdY Wᵀ")],
)
def test_affine_layer_gradient_statements(target, text):
    g = eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["W", "b", "X"], seed="dLdY")
    form = matrix_form(g, target=target)
    assert form.text == text
    arrays = arrays_for(g)
    assert_round_trip(form, eg.evaluate(g, arrays)[target], arrays)


def test_mlp_gradient_statements():
    g = eg.grad("H_nh = relu(X_nd W_dh + b_h); Y_no = H_nh V_ho", wrt=["W", "b", "V"], seed="dLdY")
    texts = {t: matrix_form(g, target=t).text for t in g.targets}
    assert texts["dLdH"] == "dLdY Vᵀ"
    assert texts["dLdW"] == "Xᵀ (step(H) ⊙ dLdH)"
    assert texts["dLdb"] == "(step(H) ⊙ dLdH)ᵀ 𝟏"
    assert texts["dLdV"] == "Hᵀ dLdY"
    arrays = arrays_for(g)
    values = eg.evaluate(g, arrays)
    for t in g.targets:
        assert_round_trip(matrix_form(g, target=t), values[t], arrays)


def test_latex():
    form, _, _ = case(LOGISTIC_S, ("diff", "w", 2))
    assert form.latex() == (
        "X^{\\top} \\operatorname{diag}\\left(s \\odot \\left(\\mathbf{1} - s\\right)\\right) X + \\lambda I"
    )
    assert form._repr_latex_() == f"${form.equation_latex()}$"
    assert form.equation_latex().endswith(" = " + form.latex()) and form.equation_latex().startswith("\\frac{")
    assert matrix_form(eg.parse("y_i = x_i^2")).latex() == "x^{\\odot 2}"
    assert matrix_form(quiet(eg.parse, "y = x_i^2")).latex() == "\\left(\\mathbf{1}^{\\top} x\\right)^{2}"  # (Σ_i x_i)²
    assert matrix_form(eg.parse("y_i = sigmoid(x_i)")).latex() == "\\sigma\\left(x\\right)"


def test_a_tensor_named_like_a_symbol_keeps_its_name():
    form = eg.matrix_form("Y_ij = sigmoid(σ_ij) + I_ij δ_ij")
    assert form.text == "sigmoid(σ) + I ⊙ 𝕀"
    assert form.latex() == "\\operatorname{sigmoid}\\left(\\sigma\\right) + I \\odot \\mathbb{I}"
    assert eg.matrix_form("Y_ij = sigmoid(A_ij) + δ_ij B_ij").text == "σ(A) + I ⊙ B"


# ---------------------------------------------------------------- no matrix form


@pytest.mark.parametrize(
    "program_text, what, reason",
    [
        ("f_i = W_ij v_j", ("diff", "W"), "the result has 3 free indices (i, k, l)"),
        ("Y_nh = X_nd W_dh", ("diff", "W", 2), "the result has 6 free indices"),
        ("y_i = T_ijk A_jk", ("stmt", "y"), "T_ijk has 3 free indices"),
        ("y_i = T_ijk; L = y_i", ("diff", "T"), "the result has 3 free indices"),
    ],
)
def test_no_matrix_form_says_why(program_text, what, reason):
    form, program, _ = case(program_text, what)
    assert isinstance(form, NoMatrixForm)
    assert not form and not form.exists
    assert form.text == "no matrix form"
    assert str(form).startswith("no matrix form (") and reason in str(form)
    assert reason in form.equation and form.latex() == "\\text{no matrix form}"
    with pytest.raises(MatrixFormError, match="has no matrix form") as info:
        form.evaluate(arrays_for(program))
    assert isinstance(info.value, eg.EingradError) and info.value.hint


# ---------------------------------------------------------------- the API


def test_the_result_describes_itself():
    d = eg.diff(AFFINE, "W")
    form = eg.matrix_form(d)
    assert form and form.exists
    assert str(form) == form.text == d.matrix().text == "Xᵀ G"
    assert form.indices == d.indices and form.shape == f"matrix: rows {d.indices[0]}, columns {d.indices[1]}"
    assert form.equation == "∂L/∂W = Xᵀ G" and "∂L/∂W = Xᵀ G" in repr(form)
    assert eg.matrix_form(eg.diff(AFFINE, "b")).shape == f"column vector along {eg.diff(AFFINE, 'b').indices[0]}"
    assert eg.matrix_form(AFFINE).shape == "scalar"
    assert eg.matrix_form(AFFINE).text == "tr(Gᵀ Y)"
    assert eg.matrix_form(eg.hessian(QUADRATIC, "x")).equation == "∂²f/∂x² = A + Aᵀ"
    assert eg.matrix_form(AFFINE, target="Y").equation == "Y = X W + 𝟏 bᵀ"


def test_an_expression_with_its_free_indices():
    program = eg.parse("V_dh = X_nd G_nh")
    e = program.statement("V").expr
    arrays = arrays_for(program)
    value = eg.evaluate(program, arrays)["V"]
    assert matrix_form(e, ("d", "h")).text == "Xᵀ G"
    transposed = matrix_form((e, "h d"))  # a pair, free indices as a string
    assert transposed.text == "Gᵀ X"
    assert_round_trip(transposed, value.T, arrays)
    assert matrix_form(program.statement("V")).text == "Xᵀ G"
    assert_round_trip(matrix_form(program.statement("V")), value, arrays)


def test_an_index_only_broadcast_needs_its_size():
    e = eg.parse("y_i = x_i").statement("y").expr
    form = matrix_form(e, ("i", "j"))
    assert form.text == "x 𝟏ᵀ"
    x = np.arange(3.0)
    np.testing.assert_array_equal(form.evaluate(x=x, sizes={"j": 2}), np.outer(x, np.ones(2)))
    with pytest.raises(eg.SizeError, match="'j'"):
        form.evaluate(x=x)


def test_bad_requests_are_clear_errors():
    e = eg.parse("V_dh = X_nd G_nh").statement("V").expr
    with pytest.raises(MatrixFormError, match="which of the free indices d, h is the row") as info:
        matrix_form(e)
    assert info.value.hint
    with pytest.raises(MatrixFormError, match="'h' is free in the expression"):
        matrix_form(e, ("d",))
    with pytest.raises(MatrixFormError, match="not a target"):
        eg.matrix_form(AFFINE, target="Q")
    with pytest.raises(TypeError, match="matrix_form takes"):
        matrix_form(42)
    with pytest.raises(eg.ParseError):
        eg.matrix_form("Y_nh = X_nd W_dh +")
    form = eg.matrix_form(eg.diff(AFFINE, "W"))
    with pytest.raises(eg.MissingInputError):
        form.evaluate(X=np.ones((2, 3)))
    with pytest.raises(eg.EingradError):
        matrix_form(e, ("d", "h")).evaluate(X=np.ones((4, 3)), G=np.ones((5, 2)))


# ---------------------------------------------------------------- random programs

CHUNKS = 8
PER_CHUNK = 15


def check_random_program(seed: int) -> int:
    """Round-trip every matrix form of a random program: statements, derivatives, gradients."""
    rp = random_program(np.random.default_rng(seed))
    program = rp.parse()
    arrays = rp.random_inputs(np.random.default_rng([seed, 1]))
    context = f"seed {seed}; the program:\n{rp.text}"
    checked = 0
    values = eg.evaluate(program, arrays)
    candidates = [(matrix_form(program, target=t), values[t], arrays) for t in program.targets]
    for wrt in program.inputs:
        d = quiet(eg.diff, program, wrt)
        if len(d.indices) <= 2:
            candidates.append((matrix_form(d), eg.evaluate(d, arrays), arrays))
    if program.inputs:  # reverse mode: the gradient statements
        out_indices = program.statement(program.output).indices
        seed_name = next(n for n in ("dSeed", "dSeed2") if n not in program.inputs + program.targets)
        g = quiet(eg.grad, program, wrt=program.inputs, seed=seed_name if out_indices else None)
        given = {name: value for name, value in arrays.items() if name in g.inputs}
        if seed_name in g.inputs:
            given[seed_name] = np.random.default_rng([seed, 2]).uniform(-1, 1, values[program.output].shape)
        grad_values = eg.evaluate(g, given)
        candidates += [(matrix_form(g, target=t), grad_values[t], given) for t in g.targets[len(program.targets) :]]
    for form, expected, inputs in candidates:
        if form:
            assert_round_trip(form, expected, inputs, context)
            checked += 1
        else:
            assert form.reason and str(form).startswith("no matrix form")
    return checked


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_programs_round_trip(chunk):
    np.seterr(all="ignore")
    checked = sum(check_random_program(seed) for seed in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK))
    assert checked >= 10  # the check is not vacuous


def test_texts_never_mention_an_index():
    # A matrix form names matrices only: no index suffix survives the translation.
    for program_text, what, _, _ in TABLE:
        form, _, _ = case(program_text, what)
        assert not re.search(r"_[a-z]", form.text), form.text

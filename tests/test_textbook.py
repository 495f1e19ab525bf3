"""Results as a textbook writes them (issue 16): forward values, softmax, centred sums, sizes."""

import numpy as np
import pytest

import eingrad as eg
from eingrad.gradcheck import check_grad
from katex_check import katex_failures

BN = "mu_h = mean_n(X_nh); v_h = mean_n((X_nh - mu_h)^2); Y_nh = (X_nh - mu_h) / sqrt(v_h + eps)"
MLP = ("A_nh = X_nd W1_dh; H_nh = relu(A_nh); Z_nc = H_nh W2_hc; P_nc = softmax_c(Z_nc); "
       "L = -sum_{n,c}(Y_nc log(P_nc)) / |n|")


def _numeric_grad(program, arrays, name, output="L", eps=1e-6):
    x = arrays[name]
    g = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        plus, minus = dict(arrays), dict(arrays)
        plus[name], minus[name] = x.copy(), x.copy()
        plus[name][k] += eps
        minus[name][k] -= eps
        g[k] = (eg.evaluate(program, **plus)[output] - eg.evaluate(program, **minus)[output]) / (2 * eps)
    return g


def _check_gradients(text, arrays, wrt):
    g = eg.grad(text, wrt=wrt)
    got = eg.evaluate(str(g), **arrays)  # the printed text evaluates to the gradient
    for name in wrt:
        np.testing.assert_allclose(got["dLd" + name], _numeric_grad(text, arrays, name), rtol=1e-5, atol=1e-7)
    return g


def test_softmax_jacobian_is_diag_p_minus_p_p_transpose():
    d = eg.diff("p_i = softmax_i(z_i)", "z")
    assert str(d) == "∂p_i/∂z_j = p_i (δ_ij - p_j)"
    assert str(d.matrix()) == "diag(p) - p pᵀ"
    assert d.matrix().latex() == r"\operatorname{diag}\left(p\right) - p p^{\top}"
    check_grad("p_i = softmax_i(z_i)", "z", order=1, sizes={"i": 4})


def test_softmax_regression_uses_p_in_every_term():
    rng = np.random.default_rng(0)
    text = "Z_nc = X_nd W_dc; P_nc = softmax_c(Z_nc); L = -sum_{n,c}(Y_nc log(P_nc)) / |n|"
    arrays = {"X": rng.standard_normal((3, 2)), "W": rng.standard_normal((2, 4)),
              "Y": np.eye(4)[[0, 2, 1]]}
    g = _check_gradients(text, arrays, ["W"])
    assert str(g.statement("dLdZ")) == "dLdZ_nc = P_nc dLdP_nc - P_nc P_ni dLdP_ni"
    assert "softmax" not in str(g).split("dLdP")[1]
    # without P in the program: softmax, never exp(... - logsumexp), the minus taken inside
    g = _check_gradients("Z_nc = X_nd W_dc; L = -sum_n(Y_nc log(softmax_c(Z_nc)))", arrays, ["W"])
    assert str(g.statement("dLdZ")) == "dLdZ_nc = softmax_c(Z_nc) Σ_j Y_nj - Y_nc"  # P − Y when Σ_j Y_nj = 1
    g = eg.grad("L = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc)", wrt=["Z"])
    assert str(g.statements[-1]) == "dLdZ_nc = softmax_c(Z_nc) - Y_nc"


def test_mlp_gradient_reads_with_its_intermediates():
    rng = np.random.default_rng(1)
    arrays = {"X": rng.standard_normal((3, 2)), "W1": rng.standard_normal((2, 4)),
              "W2": rng.standard_normal((4, 3)), "Y": np.eye(3)[[0, 2, 1]]}
    g = _check_gradients(MLP, arrays, ["W1", "W2"])
    lines = str(g).splitlines()[5:]
    assert lines == [
        "dLdP_nc = -Y_nc / P_nc / |n|",
        "dLdZ_nc = P_nc dLdP_nc - P_nc P_ni dLdP_ni",
        "dLdH_nh = W2_hc dLdZ_nc",
        "dLdA_nh = step(H_nh) dLdH_nh",
        "dLdW1_dh = X_nd dLdA_nh",
        "dLdW2_hc = H_nh dLdZ_nc",
    ], "\n".join(lines)


def test_batch_norm_derivative_as_the_paper_writes_it():
    d = eg.diff(BN, "X")
    assert str(d) == (
        "∂Y_nh/∂X_ij = (δ_ni δ_hj - 1 / |n| δ_hj) / sqrt(v_h + eps)"
        " - (X_nh - mu_h) / sqrt(v_h + eps)^3 / |n| (X_ih - mu_h) δ_hj"
    )
    assert "|i|" not in str(d) and "Σ" not in str(d)
    check_grad(BN, "X", {"X": np.random.default_rng(2).standard_normal((4, 3)), "eps": 0.1}, order=1)


def test_batch_norm_gradient_drops_the_centred_sum():
    rng = np.random.default_rng(3)
    text = BN + "; L = sum_{n,h}(G_nh Y_nh)"
    arrays = {"X": rng.standard_normal((4, 3)), "G": rng.standard_normal((4, 3)), "eps": 0.1}
    g = _check_gradients(text, arrays, ["X"])
    assert str(g.statement("dLdmu")) == "dLdmu_h = -1 / sqrt(v_h + eps) Σ_n dLdY_nh"
    assert str(g.statement("dLdX")) == (
        "dLdX_nh = 1 / sqrt(v_h + eps) dLdY_nh + 2 / |n| (X_nh - mu_h) dLdv_h + 1 / |n| dLdmu_h")


@pytest.mark.parametrize("text, zero", [
    ("mu_h = mean_n(X_nh); s_h = sum_p(X_ph - mu_h)", True),
    ("mu_h = mean_n(X_nh); s_h = sum_p(X_hp - mu_h)", False),  # the other axis: not centred
    ("mu_h = mean_n(X_nh); s_h = sum_p(X_ph + mu_h)", False),
    ("mu = mean_{n,h}(X_nh); s = sum_{p,q}(X_pq - mu)", True),
])
def test_centred_sums_are_zero_only_when_centred(text, zero):
    from eingrad.simplify.forward import drop_centred_sums

    p = eg.parse(text)
    out = drop_centred_sums(p.statements[1].expr, p.statements)
    assert (out == eg.parse("z = 0").statements[0].expr) == zero, str(out)
    if zero:  # and numerically so
        rng = np.random.default_rng(4)
        shape = (5, 3) if "h" in p.statements[1].indices or "h" in str(p.statements[1]) else (5, 3)
        assert np.allclose(eg.evaluate(p, X=rng.standard_normal(shape))["s"], 0)


# --- clean output -------------------------------------------------------------------------

def test_generated_source_holds_only_the_helpers_it_calls():
    fn = eg.compile("A_nh = X_nd W1_dh; H_nh = relu(A_nh); L = sum_{n,h}(H_nh)")
    assert "def _relu" in fn.source
    for unused in ("def _sigmoid", "def _softmax", "def _logsumexp", "def _det"):
        assert unused not in fn.source
    rng = np.random.default_rng(5)
    X, W1 = rng.standard_normal((3, 2)), rng.standard_normal((2, 4))
    namespace = {"xp": np}
    exec(fn.source, namespace)  # the shown source runs on its own
    out = namespace["compiled"]({"X": X, "W1": W1})
    assert np.isclose(out["L"] if isinstance(out, dict) else out, np.maximum(X @ W1, 0).sum())


@pytest.mark.parametrize("name, latex", [
    ("lam", r"\lambda"), ("lambda", r"\lambda"), ("eps", r"\epsilon"), ("epsilon", r"\epsilon"),
    ("alpha", r"\alpha"), ("omega", r"\omega"), ("sigma", r"\sigma"), ("gamma", r"\gamma"),
    ("Sigma", r"\Sigma"), ("lr", r"\mathit{lr}"), ("mu", r"\mu"),
])
def test_greek_words_render_as_greek_letters(name, latex):
    from eingrad.printing.latex import latex_symbol

    assert latex_symbol(name) == latex
    assert eg.parse(f"Y_ij = {name} I_ij").latex() == f"Y_{{ij}} &= {latex} I_{{ij}}"


def test_explanations_write_indexed_names_as_math_not_escaped_underscores():
    text = eg.explain("y_i = A_ij x_j", "x").latex()
    assert "\\_" not in text
    assert r"$\Sigma_{j}$ $A_{ij}$ $\delta_{jk}$ = $A_{ik}$" in text


def test_a_lambda_keeps_its_name_in_markdown():
    from eingrad.check.diagnose import md

    assert md("taylor_check of <lambda>: FAILED") == "taylor\\_check of &lt;lambda&gt;: FAILED"


def test_the_new_forms_render_with_katex():
    formulas = [
        eg.diff("p_i = softmax_i(z_i)", "z").matrix().latex(),
        eg.diff(BN, "X").latex(),
        eg.grad(MLP, wrt=["W1", "W2"]).latex(),
        eg.parse("Y_ij = lam I_ij + eps A_ij + sigma_i gamma B_ij").latex(),
    ]
    formulas = [f"\\begin{{aligned}}{f}\\end{{aligned}}" if "&" in f else f for f in formulas]
    for text in (eg.explain("y_i = A_ij x_j", "x").latex(), eg.explain(MLP, "W1").latex()):
        formulas.append(text)
    assert katex_failures(formulas) == []


def test_explain_steps_through_every_intermediate_of_the_mlp():
    text = str(eg.explain(MLP, "W1"))
    for name in ("P", "Z", "H", "A"):
        assert f"chain rule through {name}" in text or f"differentiate {name} with respect to W1" in text, text
    assert text.index("chain rule through Z") < text.index("chain rule through H") < text.index(
        "chain rule through A")
    assert "∂H_nh/∂A_ak = step(H_ah) δ_na δ_hk" in text


# --- check_backward names the classic value bugs -----------------------------------------------

MLP_CE = "A_nh = X_nd W1_dh; H_nh = relu(A_nh); Z_nc = H_nh W2_hc; L = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc)"


def _softmax_rows(Z):
    P = np.exp(Z - Z.max(1, keepdims=True))
    return P / P.sum(1, keepdims=True)


def test_check_backward_names_a_dropped_relu_mask():
    def backward(X, W1, W2, Y):
        A = X @ W1
        H = np.maximum(A, 0)
        dZ = _softmax_rows(H @ W2) - Y
        dA = dZ @ W2.T  # the mask (A > 0) forgotten
        return {"W1": X.T @ dA, "W2": H.T @ dZ}

    report = eg.check_backward(MLP_CE, ["W1", "W2"], backward)
    assert report["W2"].ok and not report["W1"].ok
    assert "equals the correct dLdW1 without the relu mask step(H_nh) in dLdA: multiply dLdH by (H_nh > 0)" in (
        report["W1"].message)
    assert len(str(report).splitlines()) <= 40


def test_check_backward_names_a_transposed_weight():
    text = "A_nh = X_nd W_dh; H_nh = tanh(A_nh); Z_nk = H_nh U_hk; L = sum_{n,k}(G_nk Z_nk)"

    def backward(X, W, U, G):
        H = np.tanh(X @ W)
        dH = G @ U  # should be G @ U.T
        return X.T @ (dH * (1 - H**2))

    report = eg.check_backward(text, "W", backward, sizes={"h": 4, "k": 4})
    assert "equals the correct dLdW with U transposed in dLdH" in report["W"].message


def test_check_backward_names_an_elementwise_softmax_derivative():
    text = "Z_nc = X_nd W_dc; P_nc = softmax_c(Z_nc); L = -sum_{n,c}(Y_nc log(P_nc))"

    def backward(X, W, Y):
        P = _softmax_rows(X @ W)
        dP = -Y / P
        return X.T @ (dP * P * (1 - P))  # the diagonal of the softmax's Jacobian only

    report = eg.check_backward(text, "W", backward)
    assert "the softmax's Jacobian replaced by its diagonal" in report["W"].message
    assert len(str(report).splitlines()) <= 40, str(report)


def test_check_backward_names_a_missing_path_and_a_flipped_sign():
    text = "A_nh = X_nd W_dh; B_nh = tanh(A_nh); C_nh = B_nh + A_nh; L = sum_{n,h}(G_nh C_nh)"

    def one_path(X, W, G):
        B = np.tanh(X @ W)
        return X.T @ (G * (1 - B**2))  # the path C = ... + A forgotten

    def flipped(X, W, G):
        B = np.tanh(X @ W)
        return X.T @ (G * (1 - B**2) - G)

    report = eg.check_backward(text, "W", one_path)
    assert "without the term" in report["W"].message and "dLdA" in report["W"].message, report["W"].message
    report = eg.check_backward(text, "W", flipped)
    assert "with the sign of the term" in report["W"].message, report["W"].message


def test_check_backward_checks_returned_intermediates():
    def backward(X, W1, W2, Y):
        A = X @ W1
        H = np.maximum(A, 0)
        dZ = _softmax_rows(H @ W2) - Y
        dA = (dZ @ W2.T) * (A > 0)
        return {"W1": X.T @ dA, "W2": H.T @ dZ, "dLdZ": dZ, "dLdA": -dA, "other": 0}

    report = eg.check_backward(MLP_CE, ["W1", "W2"], backward)
    assert [(c.name, c.ok) for c in report.checks] == [
        ("dLdZ", True), ("dLdA", False), ("dLdW1", True), ("dLdW2", True)]
    assert "Wrong sign" in report["dLdA"].message
    assert any("'other'" in note and "dLdZ" not in note.split(" of the")[0] for note in report.notes)


def test_cross_entropy_over_the_batch_is_p_minus_y_over_n():
    """The loss written for one-hot labels, averaged as the tutorial does: (P − Y)/|n|."""
    from eingrad.matrix import matrix_form

    text = "Z_nc = X_nd W_dc; L = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc) / |n|"
    rng = np.random.default_rng(6)
    arrays = {"X": rng.standard_normal((3, 2)), "W": rng.standard_normal((2, 4)), "Y": np.eye(4)[[0, 2, 1]]}
    g = _check_gradients(text, arrays, ["W"])
    assert str(g.statement("dLdZ")) == "dLdZ_nc = (softmax_c(Z_nc) - Y_nc) / |n|"
    assert str(matrix_form(g, target="dLdZ")) == "|n|^(-1) (softmax(Z) - Y)"
    # A P the loss does not read is not in the gradient program: the gradient cannot say P.
    g = _check_gradients("Z_nc = X_nd W_dc; P_nc = softmax_c(Z_nc); " + text.split("; ")[1], arrays, ["W"])
    assert "P_nc" not in str(g.statement("dLdZ"))


@pytest.mark.parametrize("text, form", [
    ("P_nc = softmax_c(Z_nc)", "softmax(Z)"),          # each row of Z normalised
    ("P_cn = softmax_c(Z_nc)", "softmax(Z)ᵀ"),
    ("P_nc = softmax_n(Z_nc)", "softmax(Zᵀ)ᵀ"),        # each column: never an elementwise transpose
    ("p_i = softmax_i(z_i)", "softmax(z)"),
    ("P_nc = softmax_c(X_nd W_dc)", "softmax(X W)"),
])
def test_softmax_matrix_form_normalises_rows(text, form):
    from eingrad.matrix import matrix_form

    assert str(matrix_form(eg.parse(text))) == form

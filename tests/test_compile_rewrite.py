"""Sums rewritten before lowering (``codegen/rewrite.py``): a sum over a sum of products is
never computed as a broadcast array wider than its factors."""

from __future__ import annotations

import numpy as np
import pytest

import eingrad as eg
import test_compile as tc

SOFTMAX_REGRESSION = "L = sum_n(logsumexp_c(X_nd W_dc) - X_nd W_dc Y_nc)"


def three_axes(code: str) -> bool:
    """Some array is broadcast to three axes (``X[:, :, None] * P[:, None, :]``)."""
    return "[:, :, None]" in code or "[:, None, :]" in code or "[None, :, :]" in code


def softmax_regression_arrays(rng, n=40, d=7, c=3):
    return {"X": rng.standard_normal((n, d)), "W": rng.standard_normal((d, c)) / 3,
            "Y": np.eye(c)[rng.integers(0, c, n)]}


def test_softmax_regression_gradient_is_one_product():
    """dLdW = Σ_n (softmax(XW)_nc X_nd - X_nd Y_nc) is Xᵀ (P - Y): the shared factor X_nd
    is taken out of the terms, not an n×d×c array of products summed over n."""
    grads = eg.grad(SOFTMAX_REGRESSION, wrt=["W"])
    arrays = softmax_regression_arrays(np.random.default_rng(1))
    fn = eg.compile(grads, outputs=["dLdW"])
    out = fn(arrays)["dLdW"]
    X, W, Y = arrays["X"], arrays["W"], arrays["Y"]
    Z = X @ W
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    tc.close(out, X.T @ (P - Y))
    code = tc.body(fn.source)
    assert "dLdW = X.T @ _t" in code, fn.source
    assert not three_axes(code), fn.source


@pytest.mark.parametrize("text", [
    "G_dc = sum_n(A_nd B_nc + C_nd D_nc)",         # nothing shared: one product per term
    "G_dc = sum_n(A_nd B_nc - 2 A_nd D_nc)",       # A shared, a coefficient left in a term
    "G_dc = sum_n(A_nd B_nc + E_dc)",              # a term without n: |n| E
    "G_dc = sum_{n,m}(A_nd B_mc + C_nd D_nc)",     # two summed indices, one term lacks one
    "G_dc = sum_n(A_nd A_nd B_nc + A_nd D_nc C_nd)",  # A_nd shared once, the rest kept
])
def test_sums_of_products_are_contractions(text):
    program = eg.parse(text)
    rng = np.random.default_rng(2)
    shapes = {"A": (5, 4), "B": (5, 3), "C": (5, 4), "D": (5, 3), "E": (4, 3)}
    arrays = {k: rng.standard_normal(v) for k, v in shapes.items() if k in program.inputs}
    fn = eg.compile(program)
    tc.close(fn(arrays)["G"], eg.evaluate(program, arrays)["G"], text)
    assert not three_axes(tc.body(fn.source)), fn.source


def test_a_sum_of_elementwise_terms_is_left_as_it_is():
    """Σ_n (a_n + b_n) builds nothing wider than its factors: one sum of one array."""
    program = eg.parse("s = sum_n(a_n + b_n)")
    fn = eg.compile(program)
    a, b = np.arange(4.0), np.ones(4)
    tc.close(fn(a=a, b=b)["s"], 10.0)
    assert tc.body(fn.source).count("xp.sum(") == 1, fn.source


def test_a_delta_inside_a_product_is_written_into_the_diagonal():
    """Softmax regression's Hessian, Σ_n P_nj (X_nq δ_jr - P_nr X_nq) X_ni: the delta is
    taken out of the product and the sum, δ_jr Σ_n P_nj X_nq X_ni, and written into the
    diagonal j = r; it is never an array, and nothing n×d×c×c is built."""
    h = eg.hessian(SOFTMAX_REGRESSION, "W")
    arrays = softmax_regression_arrays(np.random.default_rng(3), n=30, d=4, c=3)
    fn = eg.compile(h)
    tc.close(fn(arrays), eg.evaluate(h, arrays))
    code = tc.body(fn.source)
    assert "_kronecker(" not in code and "_diagonal(d2LdW2" in code, fn.source
    X, W = arrays["X"], arrays["W"]
    Z = X @ W
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    expected = np.einsum("nj,ni,nq->ijq", P, X, X)[:, :, :, None] * np.eye(3)[None, :, None, :]
    expected -= np.einsum("nj,nr,ni,nq->ijqr", P, P, X, X)
    tc.close(fn(arrays), expected)


@pytest.mark.parametrize("text, wrt", [
    ("y_i = W_ij x_j", "W"),
    ("y_i = exp(W_ij x_j) (x_i + W_ik x_k)", "x"),
    ("L = sum_n(relu(X_nd w_d)) + 0.5 lam w_d w_d", "w"),
])
def test_deltas_taken_out_keep_the_value(text, wrt):
    rng = np.random.default_rng(4)
    program = eg.parse(text)
    shapes = {"W": (3, 3), "x": (3,), "X": (6, 3), "w": (3,), "lam": ()}
    arrays = {k: rng.standard_normal(shapes[k]) for k in program.inputs}
    for d in (eg.diff(program, wrt), eg.hessian(program, wrt) if program.rank(program.targets[-1]) == 0 else None):
        if d is not None:
            tc.close(eg.compile(d)(arrays), eg.evaluate(d, arrays), str(d))


def test_a_shared_factor_is_taken_out_even_when_nothing_widens():
    """Poisson regression: Σ_n (exp(X_ni w_i) X_nd - y_n X_nd) is one product Xᵀ(e - y),
    not two n×d broadcast products, a difference and a sum (40× slower at n=2000, d=256)."""
    grads = eg.grad("L = sum_n(exp(X_nd w_d) - y_n X_nd w_d)", wrt=["w"])
    rng = np.random.default_rng(5)
    X, w, y = rng.standard_normal((20, 4)) / 2, rng.standard_normal(4) / 2, rng.poisson(1.0, 20).astype(float)
    fn = eg.compile(grads, outputs=["dLdw"])
    tc.close(fn(X=X, w=w, y=y)["dLdw"], X.T @ (np.exp(X @ w) - y))
    code = tc.body(fn.source)
    assert "xp.sum(" not in code and "[:, None]" not in code, fn.source


ATTENTION = """S_ij = Q_ie K_je
P_ij = exp(S_ij - logsumexp_k(S_ik))
O_ie = P_ij V_je
L = sum_{i,e}((O_ie - T_ie)^2)"""


def test_exp_of_z_minus_its_logsumexp_is_a_softmax_in_one_buffer():
    """exp(S_ij - logsumexp_k(S_ik)) is computed as the softmax of S over j, in S's buffer
    (one exp, no log-sum-exp array), in the program and in its gradient."""
    rng = np.random.default_rng(6)
    arrays = {k: rng.standard_normal((5, 3)) for k in "QKVT"}
    program = eg.parse(ATTENTION)
    fn = eg.compile(program)
    out = fn(arrays)
    S = arrays["Q"] @ arrays["K"].T
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    tc.close(out["P"], P)
    assert "_softmax(S, (1,))" in tc.body(fn.source), fn.source  # S is returned: not overwritten
    grads = eg.grad(ATTENTION, wrt=["Q", "K", "V"])
    fn = eg.compile(grads, outputs=["dLdQ", "dLdK", "dLdV"])
    expected = eg.evaluate(grads, arrays)
    for name, value in fn(arrays).items():
        tc.close(value, expected[name], name)
    code = tc.body(fn.source)
    assert "P = _softmax(S, (1,), out=S)" in code and "_logsumexp" not in code.split("def compiled")[-1], fn.source


@pytest.mark.parametrize("text", [
    "P_ij = exp(S_ij - logsumexp_k(S_ik))",           # over the second axis
    "P_ij = exp(S_ij - logsumexp_k(S_kj))",           # over the first
    "P_ijk = exp(A_ijk - logsumexp_{m,n}(A_imn))",    # over two axes
    "P_ij = exp(S_ij - logsumexp_k(S_ik) + 1)",       # not a softmax: three terms
    "P_ij = exp(S_ij - logsumexp_k(S_jk))",           # not a softmax: the other axis' lse
    "P_ij = exp(2 S_ij - logsumexp_k(S_ik))",         # not a softmax: scaled
])
def test_softmax_patterns_against_evaluate(text):
    program = eg.parse(text)
    rng = np.random.default_rng(7)
    arrays = {name: 3 * rng.standard_normal((4,) * program.rank(name)) for name in program.inputs}
    for dtype in (np.float64, np.float32):
        given = {k: v.astype(dtype) for k, v in arrays.items()}
        out = eg.compile(program)(given)["P"]
        assert out.dtype == dtype
        tc.close(out, eg.evaluate(program, arrays)["P"], text, rtol=1e-12 if dtype == np.float64 else 1e-5)


def test_softmax_of_a_row_of_minus_infinity_is_nan_as_evaluate_gives():
    program = eg.parse("P_ij = exp(S_ij - logsumexp_k(S_ik))")
    S = np.array([[0.0, 1.0], [-np.inf, -np.inf]])
    with np.errstate(invalid="ignore"):  # evaluate's -inf - -inf
        expected = eg.evaluate(program, S=S)["P"]
    out = eg.compile(program)(S=S)["P"]
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    tc.close(out[0], expected[0])


def test_relu_derivative_in_a_product_is_a_bool_mask():
    """step(H) ⊙ dLdH multiplies by the bool array H > 0 (as the closed form writes
    `dA *= H > 0`), a quarter of a float32 array's memory; the result keeps the dtype."""
    grads = eg.grad(tc.MLP, wrt=["W1", "b1"])
    rng = np.random.default_rng(8)
    arrays = {"X": rng.standard_normal((8, 5)), "W1": rng.standard_normal((5, 6)), "b1": rng.standard_normal(6),
              "W2": rng.standard_normal((6, 4)), "b2": rng.standard_normal(4), "Y": np.eye(4)[rng.integers(0, 4, 8)]}
    expected = eg.evaluate(grads, arrays)
    fn = eg.compile(grads, outputs=["dLdW1", "dLdb1"])
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        out = fn({k: v.astype(dtype) for k, v in arrays.items()})
        for name, value in out.items():
            assert value.dtype == dtype
            tc.close(value, expected[name], name, rtol=rtol)
    assert " > 0\n" in tc.body(fn.source) and "_step(" not in tc.body(fn.source).split("def compiled")[1], fn.source


@pytest.mark.parametrize("text", [
    "z_i = step(a_i) step(b_i)",        # two steps: floats
    "z_i = 2 step(a_i)",                # nothing else carries i: a float
    "s = sum_i(step(a_i) b_i)",         # a mask, then a sum of floats
    "z_j = step(a_i) W_ij",             # a mask in a matrix product
    "z_i = step(a_i) + step(a_i) b_i",  # the same step as a float and as a mask
])
def test_steps_against_evaluate(text):
    program = eg.parse(text)
    rng = np.random.default_rng(9)
    shapes = {"a": (5,), "b": (5,), "W": (5, 3)}
    arrays = {k: rng.standard_normal(shapes[k]) for k in program.inputs}
    for dtype in (np.float64, np.float32):
        out = eg.compile(program)({k: v.astype(dtype) for k, v in arrays.items()})
        for name, value in out.items():
            assert np.asarray(value).dtype == dtype, (text, name)
            tc.close(value, eg.evaluate(program, arrays)[name], text, rtol=1e-6)


def test_two_products_with_a_common_factor_are_one():
    """The gradient of ‖X Xᵀ‖²: dLdG X + dLdGᵀ X is (dLdG + dLdGᵀ) X, one matrix product."""
    grads = eg.grad("G_ij = X_in X_jn\nL = sum_{i,j}(G_ij^2)", wrt=["X"])
    X = np.random.default_rng(10).standard_normal((6, 20))
    fn = eg.compile(grads, outputs=["dLdX"])
    tc.close(fn(X=X)["dLdX"], 4 * (X @ X.T) @ X)
    code = tc.body(fn.source).split("# dLdX_in")[1]
    assert code.count(" @ ") == 1, fn.source


def test_a_matrix_vector_product_is_not_merged():
    """xᵀAx: A x + Aᵀ x stays two products (adding A + Aᵀ would cost what it saves)."""
    grads = eg.grad("s = x_i A_ij x_j", wrt=["x"])
    fn = eg.compile(grads, outputs=["dsdx"])
    rng = np.random.default_rng(11)
    x, A = rng.standard_normal(5), rng.standard_normal((5, 5))
    tc.close(fn(x=x, A=A)["dsdx"], (A + A.T) @ x)
    assert "xp.transpose" not in tc.body(fn.source) and tc.body(fn.source).count(" @ ") == 2, fn.source


@pytest.mark.parametrize("text", [
    "Y_in = A_ij X_jn + B_mi X_mn",
    "Y_in = A_ij X_jn - B_mi X_mn",
    "Y_in = A_ij X_jn + B_ij X_jn + C_ik X_kn",
    "Y_in = A_ij X_jn + A_ji X_jn",
])
def test_merged_products_against_evaluate(text):
    program = eg.parse(text)
    rng = np.random.default_rng(12)
    arrays = {k: rng.standard_normal((4, 4) if k != "X" else (4, 30)) for k in program.inputs}
    tc.close(eg.compile(program)(arrays)["Y"], eg.evaluate(program, arrays)["Y"], text)


def test_a_buffer_read_transposed_is_not_written_in_place_on_torch():
    """A_t + A_tᵀ of a dying temporary: numpy copies on overlap, torch refuses the write."""
    torch = pytest.importorskip("torch", reason="the torch backend needs torch: pip install 'eingrad[torch]'")
    program = eg.parse("T_ij = 2 A_ij\nY_ij = T_ij + T_ji")
    A = np.random.default_rng(13).standard_normal((4, 4))
    out = eg.compile(program, backend="torch", outputs=["Y"])(A=torch.from_numpy(A))["Y"]
    tc.close(out.numpy(), 2 * (A + A.T))

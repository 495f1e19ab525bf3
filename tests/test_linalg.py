"""Linear algebra in index notation (LANGUAGE.md §9): inv, det, logdet.

Every derivative is checked against HIPS autograd (which differentiates
np.linalg.inv, det, slogdet and solve) and against finite differences, on
random well-conditioned matrices (I + 0.3 R).
"""

from __future__ import annotations

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import eingrad as eg
from eingrad.errors import IndexRuleError, ParseError, ReservedNameError, SizeError
from eingrad.gradcheck import check_grad


def _well(rng, *shape):
    n = shape[-1]
    return np.eye(n) + 0.3 * rng.standard_normal(shape)


def _spd(rng, n):
    r = rng.standard_normal((n, n))
    return r @ r.T / n + np.eye(n)


def _logabsdet(m):
    return anp.linalg.slogdet(m)[1]


rng0 = np.random.default_rng(7)
N = 4

# (program, wrt, inputs, autograd function of the wrt array given the other inputs)
CASES = [
    (
        "L = logdet_ij(X_ij)",
        "X",
        lambda r: {"X": _well(r, N, N)},
        lambda X, **_: _logabsdet(X),
    ),
    (
        "L = det_ij(X_ij)",
        "X",
        lambda r: {"X": _well(r, N, N)},
        lambda X, **_: anp.linalg.det(X),
    ),
    (
        "T_ij = inv_ij(X_ij)",
        "X",
        lambda r: {"X": _well(r, N, N)},
        lambda X, **_: anp.linalg.inv(X),
    ),
    (
        "L = a_i inv_ij(X_ij) b_j",
        "X",
        lambda r: {"X": _well(r, N, N), "a": r.standard_normal(N), "b": r.standard_normal(N)},
        lambda X, a, b: a @ anp.linalg.solve(X, b),
    ),
    (
        "x_i = inv_ij(A_ij) b_j",
        "b",
        lambda r: {"A": _well(r, N, N), "b": r.standard_normal(N)},
        lambda b, A: anp.linalg.solve(A, b),
    ),
    (
        "L = logdet_ij(A_ik X_kl B_lj)",
        "X",
        lambda r: {"A": _well(r, N, N), "X": _well(r, N, N), "B": _well(r, N, N)},
        lambda X, A, B: _logabsdet(A @ X @ B),
    ),
    (
        "L = det_ij(A_ik X_kl B_lj)",
        "X",
        lambda r: {"A": _well(r, N, N), "X": _well(r, N, N), "B": _well(r, N, N)},
        lambda X, A, B: anp.linalg.det(A @ X @ B),
    ),
    (  # a tall X: log det(XᵀX)
        "L = logdet_ij(X_ki X_kj)",
        "X",
        lambda r: {"X": r.standard_normal((7, 3))},
        lambda X, **_: _logabsdet(X.T @ X),
    ),
    (  # a batch index: one matrix per b
        "L = sum_b(logdet_ij(X_bij) + y_bi inv_ij(X_bij) y_bj)",
        "X",
        lambda r: {"X": _well(r, 2, 3, 3), "y": r.standard_normal((2, 3))},
        lambda X, y: anp.sum(anp.linalg.slogdet(X)[1])
        + anp.sum(y * anp.linalg.solve(X, y[:, :, None])[:, :, 0]),
    ),
    (  # batch index last, a transposed read
        "T_jib = inv_ij(X_jib)",
        "X",
        lambda r: {"X": np.transpose(_well(r, 2, 3, 3), (2, 1, 0))},
        lambda X, **_: anp.transpose(anp.linalg.inv(anp.transpose(X, (2, 1, 0))), (2, 1, 0)),
    ),
    (  # Gaussian negative log-likelihood in Σ
        "r_i = x_i - m_i\nL = 0.5 logdet_ij(S_ij) + 0.5 r_i inv_ij(S_ij) r_j",
        "S",
        lambda r: {"S": _spd(r, N), "x": r.standard_normal(N), "m": r.standard_normal(N)},
        lambda S, x, m: 0.5 * _logabsdet(S) + 0.5 * (x - m) @ anp.linalg.solve(S, x - m),
    ),
    (  # ridge regression's solution, in λ
        "w_i = inv_ij(X_ki X_kj + lam δ_ij) X_lj y_l",
        "lam",
        lambda r: {"X": r.standard_normal((6, 3)), "y": r.standard_normal(6), "lam": 0.7},
        lambda lam, X, y: anp.linalg.solve(X.T @ X + lam * anp.eye(3), X.T @ y),
    ),
    (  # an inverse of an inverse, and a trace of the inverse
        "t = inv_ij(X_ij) δ_ij\nT_ij = inv_ij(inv_ij(X_ij)) + inv_ij(X_ij) t",
        "X",
        lambda r: {"X": _well(r, N, N)},
        None,
    ),
]


def _arrays(make):
    return make(np.random.default_rng(3))


def _reference(fn, wrt, arrays):
    others = {k: v for k, v in arrays.items() if k != wrt}
    return lambda x: fn(x, **others)


@pytest.mark.parametrize("text, wrt, make, fn", CASES, ids=[c[0].splitlines()[-1] for c in CASES])
def test_first_and_second_derivatives_match_autograd(text, wrt, make, fn):
    program = eg.parse(text)
    assert eg.parse(str(program)) == program
    arrays = _arrays(make)
    forward = eg.evaluate(program, **arrays)[program.output]
    if fn is None:
        check_grad(program, wrt, arrays, order=2)
        return
    f = _reference(fn, wrt, arrays)
    np.testing.assert_allclose(forward, f(np.asarray(arrays[wrt], float)), rtol=1e-9, atol=1e-12)
    x = np.asarray(arrays[wrt], dtype=float)
    d1 = eg.evaluate(eg.diff(program, wrt), **arrays)
    np.testing.assert_allclose(d1, autograd.jacobian(f)(x), rtol=1e-8, atol=1e-10)
    d2 = eg.evaluate(eg.hessian(program, wrt), **arrays)
    np.testing.assert_allclose(d2, autograd.jacobian(autograd.jacobian(f))(x), rtol=1e-7, atol=1e-9)
    check_grad(program, wrt, arrays, order=2)


@pytest.mark.parametrize("text, wrt, make, fn", [c for c in CASES if not eg.parse(c[0]).statement(
    eg.parse(c[0]).output).indices], ids=lambda c: c if isinstance(c, str) else "")
def test_reverse_mode_gradient_matches_autograd(text, wrt, make, fn):
    program = eg.parse(text)
    arrays = _arrays(make)
    g = eg.grad(program, wrt=[wrt])
    assert eg.parse(str(g)) == g
    value = eg.evaluate(g, **arrays)["dLd" + wrt]
    if fn is None:
        expected = eg.evaluate(eg.diff(program, wrt), **arrays)
    else:
        expected = autograd.grad(_reference(fn, wrt, arrays))(np.asarray(arrays[wrt], float))
    np.testing.assert_allclose(value, expected, rtol=1e-8, atol=1e-10)


def test_cookbook_identities_print_in_index_notation():
    assert str(eg.diff("L = logdet_ij(X_ij)", "X")) == "∂L/∂X_kl = inv_lk(X_lk)"
    assert str(eg.diff("L = det_ij(X_ij)", "X")) == "∂L/∂X_kl = det_ij(X_ij) inv_lk(X_lk)"
    assert str(eg.diff("T_ij = inv_ij(X_ij)", "X")) == "∂T_ij/∂X_kl = -inv_ik(X_ik) inv_lj(X_lj)"


def test_parse_print_latex():
    p = eg.parse("x_i = inv_ij(A_ij) b_j\nL = logdet_ij(K_ij) + det_{i,j}(K_ij) + x_i x_i")
    assert eg.parse(str(p)) == p
    latex = p.latex()
    assert "A^{-1}_{ij}" in latex
    assert "\\det_{ij}" in latex
    assert "\\log\\left\\lvert\\det_{ij}" in latex
    e = p.statements[0].expr
    assert e.free == frozenset("i")
    d = eg.parse("d_b = det_ij(A_bik B_kj)").statements[0].expr
    assert d.free == frozenset("b")


def test_errors_are_positioned():
    with pytest.raises(SizeError, match="square") as info:
        eg.evaluate("x_i = inv_ij(A_ij) b_j", A=np.ones((3, 4)), b=np.ones(4))
    assert info.value.spans
    with pytest.raises(IndexRuleError, match="does not occur inside"):
        eg.parse("L = det_ij(A_ik x_k)")
    with pytest.raises(ParseError, match="two indices"):
        eg.parse("L = det_ijk(A_ijk)")
    with pytest.raises(ReservedNameError):
        eg.parse("inv_ij = A_ij")
    with pytest.raises(IndexRuleError, match="target index"):
        eg.parse("L_i = det_ij(A_ij)")


def test_singular_matrix_evaluates_like_a_division_by_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = eg.evaluate("L = logdet_ij(A_ij)", A=np.zeros((3, 3)))["L"]
    assert out == -np.inf


def test_inverse_of_a_product_with_its_matrix_is_a_delta():
    assert str(eg.simplify(eg.parse("T_ik = A_ij inv_jk(A_jk)"))) == "T_ik = δ_ik"
    assert str(eg.simplify(eg.parse("T_ik = inv_ij(A_ij) A_jk"))) == "T_ik = δ_ik"
    assert str(eg.simplify(eg.parse("T_ij = inv_ij(δ_ij)"))) == "T_ij = δ_ij"


def test_explain_names_the_identity():
    text = str(eg.explain("L = logdet_ij(X_ij)", "X"))
    assert "log|det A|" in text


# ---------------------------------------------------------------- matrix notation


@pytest.mark.parametrize("text, wrt, expected", [
    ("L = logdet_ij(X_ij)", "X", "X⁻ᵀ"),
    ("L = det_ij(X_ij)", "X", "det(X) X⁻ᵀ"),
    ("L = a_i inv_ij(X_ij) b_j", "X", "-X⁻ᵀ a bᵀ X⁻ᵀ"),
    ("L = logdet_ij(X_ki X_kj)", "X", "2 X (Xᵀ X)⁻¹"),
    ("w_i = inv_ij(X_ki X_kj + lam δ_ij) X_lj y_l", "y", "(Xᵀ X + lam I)⁻¹ Xᵀ"),
])
def test_matrix_form(text, wrt, expected):
    d = eg.diff(text, wrt)
    form = eg.matrix_form(d)
    assert str(form) == expected
    arrays = _arrays(lambda r: {name: (_well(r, *shape) if len(shape) == 2 and shape[0] == shape[1] else
                                       r.standard_normal(shape))
                                for name, shape in {"X": (4, 4) if "X_ki" not in text and "X_lj" not in text
                                                    else (6, 4), "a": (4,), "b": (4,), "y": (6,),
                                                    "lam": ()}.items() if name in d.program.inputs})
    np.testing.assert_allclose(form.evaluate(arrays), eg.evaluate(d, **arrays), rtol=1e-9, atol=1e-12)


def test_matrix_form_of_programs():
    assert str(eg.matrix_form(eg.parse("w_i = inv_ij(X_ki X_kj + lam δ_ij) X_lj y_l"))) == "(Xᵀ X + lam I)⁻¹ Xᵀ y"
    assert "log|det(K)|" in str(eg.matrix_form(eg.parse("L = logdet_ij(K_ij) + y_i inv_ij(K_ij) y_j")))
    assert not eg.matrix_form(eg.parse("d_b = det_ij(A_bij)"))  # a batch of matrices


# ---------------------------------------------------------------- the compiler

BACKENDS = ["numpy", "torch", "jax"]


def _to_numpy(x):
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _run(fn, backend, arrays):
    if backend == "torch":
        import torch

        arrays = {k: torch.as_tensor(v) for k, v in arrays.items()}
    return fn(**arrays)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, wrt, make, fn", CASES, ids=[c[0].splitlines()[-1] for c in CASES])
def test_compiled_matches_evaluate(backend, text, wrt, make, fn):
    pytest.importorskip(backend)
    program = eg.parse(text)
    arrays = _arrays(make)
    if backend == "jax":
        import jax

        was = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            _compiled_matches(backend, program, wrt, arrays)
        finally:
            jax.config.update("jax_enable_x64", was)
        return
    _compiled_matches(backend, program, wrt, arrays)


def _compiled_matches(backend, program, wrt, arrays):
    expected = eg.evaluate(program, **arrays)
    got = _run(eg.compile(program, backend=backend), backend, arrays)
    for name, value in expected.items():
        np.testing.assert_allclose(_to_numpy(got[name]), value, rtol=1e-8, atol=1e-10)
    d = eg.diff(program, wrt)
    np.testing.assert_allclose(_to_numpy(_run(eg.compile(d, backend=backend), backend, arrays)),
                               eg.evaluate(d, **arrays), rtol=1e-8, atol=1e-10)
    if not program.statement(program.output).indices:
        g = eg.grad(program, wrt=[wrt])
        got = _run(eg.compile(g, backend=backend), backend, arrays)
        np.testing.assert_allclose(_to_numpy(got["dLd" + wrt]), eg.evaluate(g, **arrays)["dLd" + wrt],
                                   rtol=1e-8, atol=1e-10)


def test_an_inverse_times_a_vector_is_a_solve():
    for text in ("x_i = inv_ij(A_ij) b_j", "x_j = b_i inv_ij(A_ij)", "x_bi = inv_ij(A_bij) c_bj",
                 "L = a_i inv_ij(A_ij) b_j"):
        source = eg.compile(text).source
        assert "solve(" in source and "inv(" not in source, source
    rng = np.random.default_rng(0)
    A, b = _well(rng, 5, 5), rng.standard_normal(5)
    np.testing.assert_allclose(eg.compile("x_j = b_i inv_ij(A_ij)")(A=A, b=b)["x"], np.linalg.solve(A.T, b))
    Ab, c = _well(rng, 3, 5, 5), rng.standard_normal((3, 5))
    np.testing.assert_allclose(eg.compile("x_bi = inv_ij(A_bij) c_bj")(A=Ab, c=c)["x"],
                               np.linalg.solve(Ab, c[:, :, None])[:, :, 0])


def test_an_inverse_formed_for_the_gradient_serves_the_forward_products():
    g = eg.grad("L = 0.5 logdet_ij(S_ij) + 0.5 r_i inv_ij(S_ij) r_j", wrt=["S"])
    source = eg.compile(g).source
    assert source.count("inv(") == 1 and "solve(" not in source, source


def test_logdet_does_not_overflow_at_n_1000():
    A = 3.0 * np.eye(1000)
    expected = 1000 * np.log(3.0)
    assert np.isclose(eg.evaluate("L = logdet_ij(A_ij)", A=A)["L"], expected)
    fn = eg.compile("L = logdet_ij(A_ij)")
    assert np.isclose(fn(A=A)["L"], expected)
    assert "slogdet" in fn.source


def test_dask_has_no_determinant():
    pytest.importorskip("dask")
    import dask.array as da

    rng = np.random.default_rng(0)
    A, b = _well(rng, 4, 4), rng.standard_normal(4)
    fn = eg.compile("x_i = inv_ij(A_ij) b_j", backend="dask")
    out = fn(A=da.from_array(A), b=da.from_array(b))["x"]
    np.testing.assert_allclose(np.asarray(out), np.linalg.solve(A, b))
    with pytest.raises(eg.EingradError, match="dask backend has no slogdet"):
        eg.compile("L = logdet_ij(A_ij)", backend="dask")(A=da.from_array(A))
    with pytest.raises(eg.EingradError, match="dask backend has no batched linear algebra"):
        eg.compile("T_bij = inv_ij(A_bij)", backend="dask")(A=da.from_array(np.stack([A, A])))
    T = eg.compile("T_ij = inv_ij(A_ij)", backend="dask")(A=da.from_array(A))["T"]
    np.testing.assert_allclose(np.asarray(T), np.linalg.inv(A))


def test_ridge_solves_with_the_right_hand_side_an_expert_writes():
    fn = eg.compile("w_i = inv_ij(X_ki X_kj + lam δ_ij) X_lj y_l")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20, 5)), rng.standard_normal(20)
    np.testing.assert_allclose(fn(X=X, y=y, lam=0.3)["w"], np.linalg.solve(X.T @ X + 0.3 * np.eye(5), X.T @ y))
    source = fn.source[fn.source.index("def compiled"):]
    assert "_kronecker" not in source and "inv(" not in source  # λ added to the diagonal; a solve
    assert "(size_i, 1))" in source  # one right-hand side, Xᵀ y (not the matrix Xᵀ)


def test_simplification_leaves_a_batch_of_matrices_and_other_matrices_alone():
    from eingrad.simplify.rules import RULES_BY_NAME

    rule = RULES_BY_NAME["inverse_cancels_its_matrix"]
    assert rule(eg.parse("T_ik = B_ij inv_jk(A_jk)").statements[0].expr) is None
    assert rule(eg.parse("T_bik = A_bij inv_jk(A_bjk)").statements[0].expr) is None
    assert rule(eg.parse("T_ik = A_ji inv_jk(A_jk)").statements[0].expr) is None  # Aᵀ A⁻¹
    sym = RULES_BY_NAME["symmetric_inverse_sorts_axes"]
    assert sym(eg.parse("T_ij = inv_ji(A_ji)").statements[0].expr) is None  # A not symmetric


def test_the_diagonal_of_an_inverse_read_through_a_target():
    # T's derivative holds inv_ij(X_ij); reading T_ii renames j to i: the inverse's diagonal.
    program = "T_ij = s inv_ij(X_ij)\nt = T_ii"
    rng = np.random.default_rng(0)
    arrays = {"X": _well(rng, 3, 3), "s": np.asarray(1.3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        for wrt in ("s", "X"):
            check_grad(program, wrt, arrays, order=2)
            g = eg.grad(program, wrt=[wrt])
            np.testing.assert_allclose(eg.compile(g)(**arrays)["dtd" + wrt],
                                       eg.evaluate(eg.diff(program, wrt), **arrays), rtol=1e-10)
    assert str(eg.diff(program, "s")) == "∂t/∂s = δ_ij inv_ij(X_ij)"  # the user's own names


def test_the_solve_takes_the_narrower_side():
    fn = eg.compile("z_k = x_i inv_ij(A_ij) B_jk")
    rng = np.random.default_rng(2)
    A, x, B = _well(rng, 6, 6), rng.standard_normal(6), rng.standard_normal((6, 9))
    np.testing.assert_allclose(fn(A=A, x=x, B=B)["z"], x @ np.linalg.solve(A, B))
    assert "(size_i, 1))" in fn.source and "size_k" not in fn.source.split("solve")[1]  # solve(Aᵀ, x), one column, not solve(A, B) with nine


def test_latex_of_derivatives_and_matrix_forms():
    d = eg.diff("L = logdet_ij(X_ij)", "X")
    assert d.latex().endswith("= X^{-1}_{lk}")
    assert eg.matrix_form(d).latex() == "X^{-\\top}"
    assert "\\det\\left(X\\right)" in eg.matrix_form(eg.diff("L = det_ij(X_ij)", "X")).latex()
    assert "\\log\\left\\lvert" in eg.matrix_form(eg.parse("L = logdet_ij(K_ij)")).latex()
    assert "log|det A|" in eg.explain("L = logdet_ij(X_ij)", "X").latex()

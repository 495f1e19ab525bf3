"""LANGUAGE.md §8 (mean_k, max_k, min_k, softmax_k) and §13 (max, min, where, clip, comparisons).

Each construct parses, prints back, renders in LaTeX, evaluates, differentiates at
orders 1 and 2 (against autograd and finite differences), gives gradients in reverse
mode, and compiles on numpy, torch, jax and dask to what ``evaluate`` gives.  Ties
(inputs on the grid {-1, -1/2, 0, 1/2, 1}) share a max's derivative equally, as
autograd does; clip's derivative is 0 at a bound.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import eingrad as eg
from eingrad.expr import Choose, Compare, Reduce, walk

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Output seems independent of input"),
    pytest.mark.filterwarnings("ignore::eingrad.ZeroDerivativeWarning"),  # Hessians of max, clip: 0
]

GRID = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])


def _softmax(z, axis):
    m = np.max(autograd.tracer.getval(z), axis=axis, keepdims=True)
    e = anp.exp(z - m)
    return e / anp.sum(e, axis=axis, keepdims=True)


# program, wrt, autograd function of (the wrt array, the other arrays), input shapes
CASES = {
    "max_k": ("y_n = max_k(X_nk)", "X", lambda X, a: anp.max(X, axis=1), {"X": (3, 4)}),
    "min_k": ("y_n = min_k(X_nk^2 + X_nk)", "X", lambda X, a: anp.min(X**2 + X, axis=1), {"X": (3, 4)}),
    "max_kl": ("y = max_{k,l}(X_kl u_l)", "X", lambda X, a: anp.max(X * a["u"][None, :]),
               {"X": (3, 4), "u": (4,)}),
    "mean_k": ("y_n = mean_k(X_nk^2)", "X", lambda X, a: anp.mean(X**2, axis=1), {"X": (3, 4)}),
    "softmax_c": ("P_nc = softmax_c(Z_nc)", "Z", lambda Z, a: _softmax(Z, 1), {"Z": (2, 3)}),
    "softmax_affine": ("P_nc = softmax_c(X_nd W_dc + b_c)", "W",
                       lambda W, a: _softmax(a["X"] @ W + a["b"], 1), {"X": (2, 3), "W": (3, 4), "b": (4,)}),
    "maximum": ("y_i = max(x_i, u_i x_i)", "x", lambda x, a: anp.maximum(x, a["u"] * x), {"x": (4,), "u": (4,)}),
    "minimum": ("y_i = min(x_i^2, 0.25)", "x", lambda x, a: anp.minimum(x**2, 0.25), {"x": (5,)}),
    "where": ("y_i = where(x_i > 0, x_i^2, 0.1 x_i)", "x",
              lambda x, a: anp.where(x > 0, x**2, 0.1 * x), {"x": (5,)}),
    "clip": ("y_i = clip(2 x_i, -0.5, 0.5)", "x", lambda x, a: anp.clip(2 * x, -0.5, 0.5), {"x": (6,)}),
    "hinge": ("z_i = X_id w_d; L = sum_i(max(0, 1 - y_i z_i))", "w",
              lambda w, a: anp.sum(anp.maximum(0.0, 1 - a["y"] * (a["X"] @ w))), {"X": (5, 3), "w": (3,), "y": (5,)}),
    "cross_entropy": ("L = -sum_n(Y_nc log(softmax_c(X_nd W_dc)))", "W",
                      lambda W, a: -anp.sum(a["Y"] * anp.log(_softmax(a["X"] @ W, 1))),
                      {"X": (4, 3), "W": (3, 5), "Y": (4, 5)}),
    "max_pool": ("y_nc = max_k(X_nck); L = sum_{n,c}(y_nc^2)", "X",
                 lambda X, a: anp.sum(anp.max(X, axis=2) ** 2), {"X": (2, 3, 4)}),
    "ppo": ("r_n = exp(p_n - q_n); L = -sum_n(min(r_n A_n, clip(r_n, 0.8, 1.2) A_n))", "p",
            lambda p, a: -anp.sum(anp.minimum(anp.exp(p - a["q"]) * a["A"],
                                              anp.clip(anp.exp(p - a["q"]), 0.8, 1.2) * a["A"])),
            {"p": (6,), "q": (6,), "A": (6,)}),
}


def arrays_for(shapes, rng, grid=False):
    if grid:
        return {name: rng.choice(GRID, size=shape) for name, shape in shapes.items()}
    return {name: rng.uniform(-1, 1, size=shape) for name, shape in shapes.items()}


def close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=1e-8, atol=1e-10,
                               err_msg=what)


def autograd_hessian(f, x):
    shape = np.shape(f(x))
    out = np.zeros(shape + x.shape * 2)
    for o in np.ndindex(shape):
        out[o] = autograd.hessian(lambda x, o=o: f(x)[o])(x)
    return out


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("grid", [False, True], ids=["uniform", "grid"])
def test_orders_1_and_2_agree_with_autograd(name, grid):
    text, wrt, fn, shapes = CASES[name]
    rng = np.random.default_rng(len(name))
    arrays = arrays_for(shapes, rng, grid)
    if name == "ppo":  # ratios on both sides of the clip's bounds and at them
        arrays["q"] = np.zeros(6)
        arrays["p"] = np.log(np.array([0.5, 0.8, 1.0, 1.2, 1.5, 0.9]))
        arrays["A"] = np.array([1.0, -1.0, 0.5, 1.0, -0.5, 1.0])
    program = eg.parse(text)
    f = lambda x: fn(x, arrays)  # noqa: E731
    x = arrays[wrt]
    close(eg.evaluate(program, **arrays)[program.output], f(x), f"{name}: forward")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        jacobian = eg.evaluate(eg.diff(program, wrt), **arrays)
        hessian = eg.evaluate(eg.hessian(program, wrt), **arrays)
    close(jacobian, autograd.jacobian(f)(x), f"{name}: order 1")
    close(hessian, autograd_hessian(f, x), f"{name}: order 2")
    if not program.statement(program.output).indices:
        g = eg.grad(program, wrt=[wrt])
        assert eg.parse(str(g)) == g, str(g)
        close(eg.evaluate(g, **arrays)[g.targets[-1]], jacobian, f"{name}: reverse mode")


@pytest.mark.parametrize("name", list(CASES))
def test_orders_1_and_2_agree_with_finite_differences(name):
    """Away from ties and bounds (uniform inputs), central differences of the value give
    the Jacobian, and central differences of the Jacobian give the Hessian."""
    text, wrt, _, shapes = CASES[name]
    rng = np.random.default_rng(100 + len(name))
    arrays = arrays_for(shapes, rng)
    program = eg.parse(text)
    d1, d2 = eg.diff(program, wrt), eg.hessian(program, wrt)
    h = 1e-6
    v = rng.standard_normal(np.shape(arrays[wrt]))
    axes = list(range(-v.ndim, 0)) if v.ndim else []

    def along(obj, t):
        return eg.evaluate(obj, **{**arrays, wrt: arrays[wrt] + t * v})

    value = lambda t: along(program, t)[program.output]  # noqa: E731
    jac = lambda t: along(d1, t)  # noqa: E731
    fd1 = (value(h) - value(-h)) / (2 * h)
    np.testing.assert_allclose(np.tensordot(jac(0), v, axes=(axes, list(range(v.ndim)))) if v.ndim
                               else jac(0) * v, fd1, rtol=1e-5, atol=1e-6, err_msg=f"{name}: order 1")
    fd2 = (jac(h) - jac(-h)) / (2 * h)
    hess = eg.evaluate(d2, **arrays)
    contracted = np.tensordot(hess, v, axes=(axes, list(range(v.ndim)))) if v.ndim else hess * v
    np.testing.assert_allclose(contracted, fd2, rtol=1e-5, atol=1e-6, err_msg=f"{name}: order 2")


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_matches_evaluate_on_every_backend(name):
    text, wrt, _, shapes = CASES[name]
    program = eg.parse(text)
    arrays = arrays_for(shapes, np.random.default_rng(7), grid=True)
    objects = [program]
    if not program.statement(program.output).indices:
        objects.append(eg.grad(program, wrt=[wrt]))
    for obj in objects:
        expected = eg.evaluate(obj, **arrays)
        for backend in ("numpy", "torch", "jax", "dask"):
            try:
                fn = eg.compile(obj, backend=backend)
            except eg.EingradError as err:  # the backend is not installed
                pytest.skip(str(err))
            given = arrays
            if backend == "torch":
                import torch

                given = {k: torch.as_tensor(v) for k, v in arrays.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = fn(**given)
            for key, value in expected.items():
                out = got[key]
                out = out.compute() if hasattr(out, "compute") else out
                out = out.numpy() if backend == "torch" else np.asarray(out)
                tol = 1e-4 if backend == "jax" else 1e-10  # jax computes in float32 (x64 off)
                np.testing.assert_allclose(out, value, rtol=tol, atol=tol, err_msg=f"{name}, {backend}: {key}")


# ---------------------------------------------------------------- ties and bounds


def test_max_k_shares_ties_equally():
    X = np.array([[1.0, 0.5, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    g = eg.evaluate(eg.grad("L = sum_n(max_k(X_nk))", wrt=["X"]), X=X)["dLdX"]
    np.testing.assert_array_equal(g, [[0.5, 0, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(g, autograd.grad(lambda X: anp.sum(anp.max(X, axis=1)))(X))
    g = eg.evaluate(eg.grad("L = sum_n(min_k(X_nk))", wrt=["X"]), X=X)["dLdX"]
    np.testing.assert_array_equal(g, [[0, 0, 0, 1], [0.25, 0.25, 0.25, 0.25]])


def test_elementwise_max_shares_a_tie_and_clip_is_flat_at_its_bounds():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    g = eg.evaluate(eg.grad("L = sum_i(max(x_i, 0))", wrt=["x"]), x=x)["dLdx"]
    np.testing.assert_array_equal(g, [0, 0, 0.5, 1, 1])
    np.testing.assert_array_equal(g, autograd.grad(lambda x: anp.sum(anp.maximum(x, 0.0)))(x))
    g = eg.evaluate(eg.grad("L = sum_i(clip(x_i, -0.5, 0.5))", wrt=["x"]), x=x)["dLdx"]
    np.testing.assert_array_equal(g, [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(g, autograd.grad(lambda x: anp.sum(anp.clip(x, -0.5, 0.5)))(x))


def test_clip_bounds_get_their_derivatives():
    """clip(x, lo, hi) = min(max(x, lo), hi): the value picked is the one differentiated."""
    x = np.array([-2.0, 0.0, 2.0, 0.2])
    for bound, expected in (("lo", [1, 0, 0, 0]), ("hi", [0, 0, 1, 0]), ("x", [0, 1, 0, 1])):
        g = eg.evaluate(eg.diff("y_i = clip(x_i, lo, hi)", bound), x=x, lo=-1.0, hi=1.0)
        got = np.diagonal(g) if bound == "x" else g
        np.testing.assert_array_equal(got, expected, err_msg=bound)
    # lo > hi: the value is hi everywhere
    g = eg.evaluate(eg.diff("y_i = clip(x_i, lo, hi)", "hi"), x=x, lo=1.0, hi=-1.0)
    np.testing.assert_array_equal(g, [1, 1, 1, 1])


def test_hinge_loss_at_the_margin():
    """max(0, 1 - y z) at a margin of exactly 1 shares the tie: half the gradient."""
    program = eg.parse("z_i = X_id w_d; L = sum_i(max(0, 1 - y_i z_i))")
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    w = np.array([1.0, -0.5])
    y = np.array([1.0, 1.0, -1.0])  # margins y z = 1, -0.5, -0.25
    g = eg.evaluate(eg.grad(program, wrt=["w"]), X=X, w=w, y=y)["dLdw"]
    want = autograd.grad(lambda w: anp.sum(anp.maximum(0.0, 1 - y * (X @ w))))(w)
    np.testing.assert_allclose(g, want)
    np.testing.assert_allclose(g, -0.5 * y[0] * X[0] - y[1] * X[1] - y[2] * X[2])


def test_comparisons_are_constants():
    with pytest.warns(eg.ZeroDerivativeWarning):
        d = eg.diff("y_i = x_i > 0", "x")
    assert d.is_zero
    d = eg.diff("y_i = (x_i > 0) x_i^2", "x")
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(eg.evaluate(d, x=x), np.diag([0.0, 0.0, 4.0]))


# ---------------------------------------------------------------- the language


ROUND_TRIP = [
    ("P_nc = softmax_c(Z_nc)", "softmax_c(Z_nc)", r"\operatorname{softmax}_{c}\left(Z_{nc}\right)"),
    ("P_nc = softmax_c(X_nd W_dc + b_c)", "softmax_c(X_nd W_dc + b_c)", r"\operatorname{softmax}_{c}"),
    ("m_n = mean_k(X_nk)", "mean_k(X_nk)", r"\operatorname{mean}_{k}\left(X_{nk}\right)"),
    ("m = mean_{n,k}(2 X_nk Y_nk)", "mean_kn(2 X_nk Y_nk)", r"\operatorname{mean}_{k,n}"),
    ("L = sum_n(mean_c(Z_nc))", "L = Σ_n mean_c(Z_nc)", r"\sum_{n} \operatorname{mean}_{c}"),
    ("y_n = max_k(X_nk)", "max_k(X_nk)", r"\max_{k}\left(X_{nk}\right)"),
    ("y_n = min_{k,l}(X_nkl) + 1", "min_kl(X_nkl) + 1", r"\min_{k,l}"),
    ("L = sum_i(max(0, 1 - y_i z_i))", "Σ_i max(0, 1 - y_i z_i)", r"\max\left(0, 1 - y_{i} z_{i}\right)"),
    ("r_i = clip(x_i, 0.8, 1.2)", "clip(x_i, 0.8, 1.2)", r"\operatorname{clip}\left(x_{i}, 0.8, 1.2\right)"),
    ("w_i = where(x_i > 0, x_i, 0.1 x_i)", "where(x_i > 0, x_i, 0.1 x_i)", r"\operatorname{where}"),
    ("c_i = x_i + 1 > y_i", "c_i = x_i + 1 > y_i", r"x_{i} + 1 > y_{i}"),
    ("c_i = (x_i >= 1) (y_i <= 2) + (x_i < y_i)", "(x_i >= 1) (y_i <= 2) + (x_i < y_i)", r"\geq"),
    ("c_i = x_i ≥ y_i", "x_i >= y_i", r"x_{i} \geq y_{i}"),
]


@pytest.mark.parametrize("text, printed, latex", ROUND_TRIP)
def test_prints_as_written_and_parses_back(text, printed, latex):
    program = eg.parse(text)
    assert printed in str(program)
    assert eg.parse(str(program)) == program
    assert latex in program.latex()


def test_nodes_and_precedence():
    (stmt,) = eg.parse("c_i = x_i + 1 > y_i - 2").statements
    assert isinstance(stmt.expr, Compare) and stmt.expr.op == ">"
    (stmt,) = eg.parse("y_n = max_k(X_nk)").statements
    assert isinstance(stmt.expr, Reduce) and stmt.expr.op == "max" and stmt.expr.binds == ("k",)
    (stmt,) = eg.parse("y_i = max(x_i, 0)").statements
    assert isinstance(stmt.expr, Choose) and stmt.expr.op == "max"
    # an index summed in two operands is summed around the selection (as around a product)
    (stmt,) = eg.parse("s = max(x_i, y_i)").statements
    assert isinstance(stmt.expr, eg.expr.Sum) and isinstance(stmt.expr.body, Choose)


@pytest.mark.parametrize(
    "text, message",
    [
        ("y = a < b < c", "chained comparisons"),
        ("y_i = max(x_i)", "takes 2 arguments"),
        ("y_i = where(x_i, y_i)", "takes 3 arguments"),
        ("y_i = clip(x_i, 0, 1, 2)", "takes 3 arguments"),
        ("y_i = softmax_k(x_i)", "does not occur inside"),
        ("y_k = max_k(x_k)", "also a target index"),
        ("y = max_k(x_i)", "does not occur inside"),
        ("y_i = max x_i", "needs the index it binds"),
        ("max_i = x_i", "reserved word"),
        ("y = where + 1", "selection"),
        ("y_i = x_i >", "needs a right-hand side"),
    ],
)
def test_errors(text, message):
    with pytest.raises(eg.EingradError, match=message):
        eg.parse(text)


def test_softmax_derivative_reads_as_the_guide_writes_it():
    """∂P_nc/∂Z_mk = P_nc δ_nm δ_ck − P_nc P_mk δ_nm, P the softmax, written with P itself."""
    d = eg.diff("P_nc = softmax_c(Z_nc)", "Z")
    assert str(d) == "∂P_nc/∂Z_ij = P_nc (δ_ni δ_cj - P_ij δ_ni)"
    d = eg.diff("y_n = sum_c(softmax_c(Z_nc) V_c)", "Z")
    assert "softmax" in str(d) and "logsumexp" not in str(d)
    g = eg.grad("L = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc)", wrt=["Z"])
    assert str(g.statements[-1]) == "dLdZ_nc = softmax_c(Z_nc) - Y_nc"
    g = eg.grad("L = -sum_n(Y_nc log(softmax_c(X_nd W_dc)))", wrt=["W"])
    assert "softmax_c(" in str(g.statements[-1]), str(g)
    assert "\\operatorname{softmax}" in g.latex()


def test_max_derivative_flows_to_the_max():
    d = eg.diff("y_n = max_k(X_nk)", "X")
    assert str(d) == "∂y_n/∂X_ij = (X_ij >= y_i) / Σ_k(X_ik >= y_i) δ_ni"  # y, the max itself
    d = eg.diff("y_n = 2 max_k(X_nk)", "X")
    assert ">=" in str(d) and "max_" in str(d)
    assert eg.parse(str(eg.grad("L = sum_n(max_k(X_nk))", wrt=["X"]))) is not None


def test_mean_derivative_is_one_over_the_size():
    d = eg.diff("m_n = mean_k(X_nk)", "X")
    assert str(d).endswith("= 1 / |k| δ_ni")
    np.testing.assert_allclose(eg.evaluate(d, X=np.ones((2, 4))), np.einsum("ni,j->nij", np.eye(2), np.full(4, 0.25)))


def test_max_over_an_empty_axis_is_minus_infinity():
    out = eg.evaluate("y_n = max_k(X_nk); z_n = min_k(X_nk)", X=np.zeros((2, 0)))
    np.testing.assert_array_equal(out["y"], [-np.inf, -np.inf])
    np.testing.assert_array_equal(out["z"], [np.inf, np.inf])


def test_explain_names_the_rules():
    text = str(eg.explain("L = sum_i(max(0, 1 - y_i z_i))", "z"))
    assert "a delta eats a summed index" in text
    assert "max(0, 1 - y_i z_i)" in text


def test_matrix_form_where_one_exists():
    assert "𝟏" in str(eg.matrix_form(eg.parse("m_n = mean_k(X_nk)")))
    assert not eg.matrix_form(eg.parse("y_n = max_k(X_nk)"))  # no matrix form: said, not guessed


def test_check_backward_with_a_user_gradient():
    def user(X, dLdY):
        mask = X == X.max(axis=1, keepdims=True)
        return dLdY[:, None] * mask / mask.sum(axis=1, keepdims=True)

    assert eg.check_backward("Y_n = max_k(X_nk)", "X", user)


def test_every_construct_is_in_the_random_programs():
    from eingrad.testing import Bind, Cmp, Select, Soft, random_program

    seen: set[str] = set()

    def visit(node):
        if isinstance(node, Bind):
            seen.add(node.kind)
        elif isinstance(node, Soft):
            seen.add("softmax")
        elif isinstance(node, Select):
            seen.add(node.op + "()")
        elif isinstance(node, Cmp):
            seen.add("compare")
        for name in ("factors", "divisors", "terms", "args"):
            for child in getattr(node, name, ()):
                visit(child)
        for name in ("operand", "base", "arg", "body", "left", "right"):
            if hasattr(node, name):
                visit(getattr(node, name))

    for seed in range(300):
        for stmt in random_program(np.random.default_rng(seed)).statements:
            visit(stmt.rhs)
    assert {"mean", "max", "min", "softmax", "max()", "min()", "where()", "clip()", "compare"} <= seen
    programs = [random_program(np.random.default_rng(seed)) for seed in range(50)]
    assert any(p.has_ties for p in programs)
    grid = next(p for p in programs if p.has_ties).random_inputs(np.random.default_rng(0), grid=True)
    assert all(set(np.ravel(v)) <= set(GRID) for v in grid.values())


def test_a_reduce_node_walks_and_renames():
    (stmt,) = eg.parse("y_n = max_k(X_nk)").statements
    renamed = eg.expr.rename_indices(stmt.expr, {"k": "j", "n": "m"})
    assert str(renamed) == "max_j(X_mj)"
    assert [type(n).__name__ for n in walk(stmt.expr)] == ["Reduce", "Tensor"]


def test_a_softmax_read_on_its_diagonal():
    """softmax_c(Z_nc) is exp(Z_nc - logsumexp_c(Z_nc)), the log-sum-exp binding c again:
    reading P_nn renames c to n outside, never inside (the bound c takes a new name)."""
    (stmt,) = eg.parse("P_ij = softmax_j(Z_ij)").statements
    renamed = eg.expr.rename_indices(stmt.expr, {"j": "i"})
    Z = np.random.default_rng(0).standard_normal((3, 3))
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    diagonal = eg.evaluate(eg.Program((eg.Statement("d", ("i",), renamed),)), Z=Z)["d"]
    np.testing.assert_allclose(diagonal, np.diagonal(P))
    text = "P_nc = softmax_c(Z_nc); y = P_nn"

    def f(Z):
        e = anp.exp(Z - anp.max(Z, 1, keepdims=True))
        return anp.sum(e / anp.sum(e, 1, keepdims=True) * np.eye(3))

    g = eg.grad(text, wrt=["Z"])
    close(eg.evaluate(g, Z=Z)["dydZ"], autograd.grad(f)(Z), "grad")
    close(eg.evaluate(eg.hessian(text, "Z"), Z=Z), autograd.hessian(f)(Z), "hessian")


def test_the_command_line(capsys):
    from eingrad.cli import main

    text = "P_nc = softmax_c(Z_nc); L = -sum_n(max_c(P_nc)) + mean_{n,c}(clip(Z_nc, -0.5, 0.5))"
    assert main(["grad", text, "--wrt", "Z"]) == 0
    out = capsys.readouterr().out
    assert "softmax_c(Z_nc)" in out and "max_" in out and "(-0.5 < Z_nc)" in out
    assert main(["check", text, "--wrt", "Z"]) == 0
    assert "all 2 checks pass" in capsys.readouterr().out
    assert main(["parse", "y_i = max(x_i, 0"]) != 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err and "never closed" in captured.err


def test_random_programs_without_selections_are_those_of_part_one():
    from eingrad.testing import random_program

    for seed in range(40):
        text = random_program(np.random.default_rng(seed), selections=False).text
        assert not any(word in text for word in ("max", "min", "mean", "softmax", "where", "clip", "<", ">"))

"""Hardening of the reference interpreter and of the numerics it shares with compiled code.

- ``evaluate`` plans every product-and-sum (deltas tie indices, sums of terms are summed
  term by term, opt_einsum orders the products), so its peak memory is the result's, not
  the naive product's;
- every array it allocates whose size is known beforehand is refused with a
  ``TooLargeError`` (a ``MemoryError``) before it is allocated;
- one stable sigmoid everywhere, and log(σ(x)), log(exp(x)), log(softplus(x)) finite where
  their value is, in ``evaluate``, in compiled code on every backend, and in derivatives;
- at the singular points (log 0, sqrt'(0), 1/0, relu'(0), abs'(0)) evaluate and compiled
  code give the same values.
"""

from __future__ import annotations

import math
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import eingrad as eg
from eingrad.errors import TooLargeError
from eingrad.functions import COMPOSITIONS, FUNCTIONS
from eingrad.testing import random_program

BACKENDS = ["numpy", "torch", "jax", "dask"]


def _backend_array(backend: str, x: np.ndarray):
    if backend == "torch":
        torch = pytest.importorskip("torch")
        return torch.tensor(x)
    if backend == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray(x)
    if backend == "dask":
        da = pytest.importorskip("dask.array")
        return da.from_array(x)
    return x


def _computed(backend: str, value) -> np.ndarray:
    if backend == "dask":
        # dask computes when asked, under the caller's floating-point settings (the
        # generated code runs with numpy's warnings off; dask's tasks run later)
        import dask

        with dask.config.set(scheduler="sync"), np.errstate(all="ignore"):
            return np.asarray(value)
    return np.asarray(value)


def compiled_value(obj, backend: str, **arrays) -> dict | np.ndarray:
    fn = eg.compile(obj, backend=backend)
    out = fn(**{k: _backend_array(backend, np.asarray(v)) for k, v in arrays.items()})
    if isinstance(out, dict):
        return {k: _computed(backend, v) for k, v in out.items()}
    return _computed(backend, out)


def peak_bytes(f):
    """(f(), the peak of memory traced while f ran); numpy reports its arrays to tracemalloc."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = f()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- planned contractions


def test_a_derivative_whose_naive_product_is_12_gib_evaluates_in_kilobytes():
    # ∂L/∂s = 2 s Σ_ijkl (A_ij + B_kl): the sum of terms over 200^4 entries is 11.9 GiB
    # (the interpreter used to build it); summed term by term it is two matrix sums.
    d = eg.diff("L = s^2 sum_ijkl(A_ij + B_kl)", "s")
    n = 200
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    assert n**4 * 8 > 1 << 30
    value, peak = peak_bytes(lambda: eg.evaluate(d, A=A, B=B, s=1.5))
    assert peak < 1 << 20, f"peak {peak} bytes"
    assert value == pytest.approx(2 * 1.5 * n * n * (A.sum() + B.sum()), rel=1e-10)


def test_deltas_in_products_are_never_arrays():
    # y_i = Σ_j δ_ij x_j with |i| = 10^6: the delta alone would be 7 TiB.
    n = 10**6
    x = np.arange(n, dtype=float)
    value, peak = peak_bytes(lambda: eg.evaluate("y_i = sum_j(δ_ij x_j)", x=x)["y"])
    np.testing.assert_array_equal(value, x)
    assert peak < 4 * x.nbytes
    # Σ_ij δ_ij = |i|, Σ_j δ_ij = 1 along i, δ_ii = 1: none of them an array either
    out = eg.evaluate("a = sum_ij(δ_ij); b_i = sum_j(δ_ij); c = sum_i(δ_ii)", sizes={"i": n, "j": n})
    assert out["a"] == n and out["c"] == n
    assert out["b"].shape == (n,) and np.all(out["b"] == 1)


def test_a_delta_in_the_result_is_written_on_its_diagonal():
    x = np.array([1.0, 2.0, 3.0])
    out = eg.evaluate("J_ij = δ_ij x_j; K_ijk = δ_ijk; M_ij = δ_ij", x=x, sizes={"i": 3, "j": 3, "k": 3})
    np.testing.assert_array_equal(out["J"], np.diag(x))
    K = np.zeros((3, 3, 3))
    K[[0, 1, 2], [0, 1, 2], [0, 1, 2]] = 1
    np.testing.assert_array_equal(out["K"], K)
    np.testing.assert_array_equal(out["M"], np.eye(3))
    # a delta on the target's indices next to a summed delta: Σ_k δ_ik δ_kj x_k = δ_ij x_i
    out = eg.evaluate("P_ij = sum_k(δ_ik δ_kj x_k)", x=x)
    np.testing.assert_array_equal(out["P"], np.diag(x))


def test_sums_of_terms_with_deltas_and_absent_indices_agree_with_compiled_code():
    x = np.arange(4.0)
    for text, expected in [
        ("L = sum_i(x_i + c)", 14.0),  # Σ_i c = |i| c
        ("L_j = sum_ik(δ_ij x_k + δ_jk)", [10.0] * 4),  # Σ_i δ_ij = 1, Σ_k δ_jk = 1
        ("L_j = sum_ik(δ_ij δ_jk x_k)", x),
    ]:
        arrays = {"x": x, "c": 2.0} if "c" in text else {"x": x}
        np.testing.assert_array_equal(eg.evaluate(text, **arrays)["L"], expected)
        np.testing.assert_array_equal(eg.compile(text)(**arrays)["L"], expected)


def test_a_logsumexp_over_an_index_its_body_does_not_read_adds_the_log_of_its_size():
    from eingrad.evaluate import evaluate_expression
    from eingrad.expr import LogSumExp, tensor

    e = LogSumExp(("k",), tensor("x", ()))  # the parser refuses it; a rewrite could build it
    value = evaluate_expression(e, {"x": np.array(1.0)}, {"k": 3}, (), np.dtype(np.float64))
    assert value == pytest.approx(1 + math.log(3))


def test_the_hessian_of_a_random_program_evaluates_as_planned_and_agrees_with_compiled_code():
    # A random 4-statement program (eingrad.testing) and its Hessian w.r.t. the 7-vector θ
    # (index sizes grown by 3): Σ over 12 indices of a sum of two products, 7×7 in the
    # end.  Its terms broadcast together are a 5.7 GiB array (the interpreter used to
    # build it and fail); summed term by term it takes kilobytes.
    from eingrad.expr import Tensor, walk

    rp = random_program(np.random.default_rng(1669), max_statements=4, linalg=False, selections=False)
    program = rp.parse()
    assert len(program.statements) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = eg.hessian(program, "θ")
    sizes = {i: n + 3 for i, n in rp.index_sizes.items()}
    rng = np.random.default_rng(0)
    arrays = {}
    for stmt in program.statements:
        for node in walk(stmt.expr):
            if isinstance(node, Tensor) and node.name in program.inputs and node.name not in arrays:
                arrays[node.name] = rng.uniform(-1, 1, tuple(sizes[i] for i in node.indices))
    assert arrays["θ"].shape == (7,)
    value, peak = peak_bytes(lambda: eg.evaluate(h, **arrays))
    assert value.shape == (7, 7)
    assert peak < 16 << 20, f"peak {peak} bytes"
    np.testing.assert_allclose(value, compiled_value(h, "numpy", **arrays), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- refusals before allocating


def test_a_4_index_hessian_of_a_300x300_input_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(1 << 30))
    h = eg.hessian("L = X_ij X_ij", "X")
    X = np.ones((300, 300))
    start = time.perf_counter()
    with pytest.raises(TooLargeError) as err:
        eg.evaluate(h, X=X)
    assert time.perf_counter() - start < 2
    assert isinstance(err.value, MemoryError)
    message = str(err.value)
    assert "(300, 300, 300, 300)" in message and "60.3 GiB" in message


def test_a_delta_with_a_million_values_per_index_is_refused():
    start = time.perf_counter()
    with pytest.raises(TooLargeError, match=r"\(1000000, 1000000\).*7\.3 TiB"):
        eg.evaluate("D_ij = δ_ij", sizes={"i": 10**6, "j": 10**6})
    assert time.perf_counter() - start < 2


def test_an_elementwise_intermediate_too_large_is_refused_though_the_result_is_a_number(monkeypatch):
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(1 << 20))
    a = np.ones(1000)
    with pytest.raises(TooLargeError, match=r"\(1000, 1000\)"):
        eg.evaluate("L = sum_ij(sin(a_i b_j))", a=a, b=a)
    # under the limit it evaluates
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(64 << 20))
    assert eg.evaluate("L = sum_ij(sin(a_i b_j))", a=a, b=a)["L"] == pytest.approx(1e6 * math.sin(1))


def test_a_contraction_intermediate_too_large_is_refused(monkeypatch):
    # Σ_ijk A_ij B_jk C_ki needs an n×n intermediate whatever the order
    n = 64
    rng = np.random.default_rng(1)
    arrays = {name: rng.standard_normal((n, n)) for name in "ABC"}
    expected = np.trace(arrays["A"] @ arrays["B"] @ arrays["C"])
    assert eg.evaluate("L = A_ij B_jk C_ki", **arrays)["L"] == pytest.approx(expected)
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(n * n * 8 - 1))
    with pytest.raises(TooLargeError, match=r"intermediate product of shape \(64, 64\)"):
        eg.evaluate("L = A_ij B_jk C_ki", **arrays)


def test_a_sum_of_terms_a_diagonal_and_a_result_too_large_are_refused(monkeypatch):
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(100 * 100 * 8 - 1))
    a = np.ones(100)
    with pytest.raises(TooLargeError, match=r"sum of terms of shape \(100, 100\)"):
        eg.evaluate("M_ij = a_i + a_j", a=a)
    with pytest.raises(TooLargeError, match=r"result on a diagonal of shape \(100, 100\)"):
        eg.evaluate("M_ij = δ_ij", sizes={"i": 100, "j": 100})
    # ∂L/∂A = 1 everywhere: computed as one number, refused where it is broadcast
    with pytest.raises(TooLargeError, match=r"result of shape \(100, 100\)"):
        eg.evaluate(eg.diff("L = A_ij", "A"), A=np.ones((100, 100)))


# ---------------------------------------------------------------- numerics


def test_sigmoid_is_accurate_far_below_zero():
    x = np.array([-745.0, -100.0, -40.0, -1.0, 0.0, 1.0, 40.0, 1000.0, -1000.0])
    got = FUNCTIONS["sigmoid"].numpy(x)
    expected = [1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in x]
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    assert got[2] == pytest.approx(4.248354255291589e-18, rel=1e-14)  # was 0 as 0.5 (1 + tanh(x/2))
    assert FUNCTIONS["sigmoid"].numpy(np.float32(-40.0)).dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_and_softplus_agree_with_compiled_code(backend):
    x = np.array([-1000.0, -100.0, -40.0, -20.5, -1.0, 0.0, 1.0, 20.5, 40.0, 1000.0])
    program = eg.parse("s_i = sigmoid(x_i); p_i = softplus(x_i)")
    expected = eg.evaluate(program, x=x)
    got = compiled_value(program, backend, x=x)
    assert got["s"][2] == pytest.approx(4.248354255291589e-18, rel=1e-12)
    np.testing.assert_allclose(got["s"], expected["s"], rtol=1e-14, atol=0)
    np.testing.assert_allclose(got["p"], expected["p"], rtol=1e-15, atol=0)


def _log_softplus_reference(v: float) -> float:
    # log(log1p(e^v)) = log(v + log1p(e^-v)); below -700 e^v underflows, and the value is v - e^v/2 = v
    if v > 30:
        return math.log(v + math.log1p(math.exp(-v)))
    return math.log(math.log1p(math.exp(v))) if v > -700 else v


LOSSES = {
    # log σ(v) = -log(1 + e^-v) = v - log(1 + e^v)
    "L_i = log(sigmoid(x_i))": lambda v: -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v)),
    "L_i = log(softplus(x_i))": _log_softplus_reference,
    "L_i = log(exp(x_i))": lambda v: v,
}


@pytest.mark.parametrize("text", list(LOSSES))
@pytest.mark.parametrize("backend", ["evaluate"] + BACKENDS)
def test_logs_of_sigmoid_softplus_and_exp_are_finite_where_their_value_is(text, backend):
    x = np.array([-1000.0, -745.0, -40.0, -20.5, -20.0, -19.5, -1.0, 0.0, 1.0, 19.5, 40.0, 1000.0])
    if "exp" in text:
        x = np.append(x, 1e300)
    program = eg.parse(text)
    if backend == "evaluate":
        got = eg.evaluate(program, x=x)["L"]
    else:
        got = compiled_value(program, backend, x=x)["L"]
    expected = np.array([LOSSES[text](v) for v in x])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-300)
    low = np.array([-1000.0, -100.0, -1.0], dtype=np.float32)
    got32 = eg.evaluate(program, x=low)["L"]
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, [LOSSES[text](float(v)) for v in low], rtol=1e-6)


def test_the_example_of_the_issue():
    assert eg.evaluate(eg.parse("L = log(sigmoid(x))"), x=-1000.0)["L"] == -1000.0
    assert eg.compile(eg.parse("L = log(sigmoid(x))"))(x=-1000.0)["L"] == -1000.0
    assert eg.evaluate("L = log(softplus(x))", x=-1000.0)["L"] == -1000.0
    assert eg.evaluate("L = log(exp(x))", x=-1000.0)["L"] == -1000.0
    assert eg.compile("L = log(exp(x))")(x=-1000.0)["L"] == -1000.0
    assert eg.compile("L = log(softplus(x))")(x=-1000.0)["L"] == -1000.0


def test_log_softplus_is_accurate_on_both_sides_of_its_switch():
    log_softplus = COMPOSITIONS[("log", "softplus")]
    for v in np.linspace(-60.0, 30.0, 901):
        assert log_softplus(np.array(v)) == pytest.approx(_log_softplus_reference(v), rel=2e-15, abs=0)


@pytest.mark.parametrize("backend", ["evaluate"] + BACKENDS)
def test_a_naive_cross_entropy_stays_finite(backend):
    # softmax is exp(z - logsumexp(z)), so the log of a written softmax is z - logsumexp(z)
    text = "L = -sum_i(y_i log(exp(z_i - logsumexp_k(z_k))))"
    z = np.array([-1000.0, 1000.0, 0.0])
    y = np.array([1.0, 0.0, 0.0])
    if backend == "evaluate":
        got = eg.evaluate(text, z=z, y=y)["L"]
    else:
        got = compiled_value(eg.parse(text), backend, z=z, y=y)["L"]
    assert got == pytest.approx(2000.0)
    grad = eg.grad(text, wrt=["z"])
    dz = eg.evaluate(grad, z=z, y=y)["dLdz"]
    np.testing.assert_allclose(dz, [-1.0, 1.0, 0.0], atol=1e-12)


def test_the_simplifier_rewrites_to_the_stable_forms():
    assert str(eg.simplify("L = log(sigmoid(x))")) == "L = -softplus(-x)"
    assert str(eg.simplify("L_i = log(exp(x_i))")) == "L_i = x_i"
    assert str(eg.simplify("L_i = log(exp(z_i - logsumexp_k(z_k)))")) == "L_i = z_i - logsumexp_k(z_k)"
    # log(softplus(x)) has no closed form in the language: it stays, evaluated stably
    assert str(eg.simplify("L = log(softplus(x))")) == "L = log(softplus(x))"


def test_a_gradient_program_keeps_its_forward_log_sigmoid_finite():
    text = "L = log(sigmoid(a x))"
    arrays = {"a": 1.0, "x": -1000.0}
    g = eg.grad(text, wrt=["a"])
    for out in (eg.evaluate(g, **arrays), eg.compile(g)(**arrays)):
        assert out["L"] == -1000.0
        assert out["dLda"] == -1000.0  # x (1 - σ(a x))
    assert eg.evaluate(eg.diff(text, "a"), **arrays) == -1000.0


# ---------------------------------------------------------------- singular points


SINGULAR = [
    # (program, wrt or None, the value at x = [0, 1])
    ("y_i = log(x_i)", None, [-np.inf, 0.0]),
    ("y_i = 1 / x_i", None, [np.inf, 1.0]),
    ("y_i = x_i / x_i", None, [np.nan, 1.0]),
    ("y_i = sqrt(x_i)", "x", [[np.inf, 0.0], [0.0, 0.5]]),
    ("L = sum_i(sqrt(x_i))", "x", [np.inf, 0.5]),
    ("L = sum_i(relu(x_i))", "x", [0.0, 1.0]),
    ("L = sum_i(abs(x_i))", "x", [0.0, 1.0]),
    ("L = sum_i(log(x_i))", "x", [np.inf, 1.0]),
]


@pytest.mark.parametrize("text,wrt,expected", SINGULAR, ids=[s[0] + (" d" if s[1] else "") for s in SINGULAR])
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_and_compiled_code_agree_at_singular_points(text, wrt, expected, backend):
    x = np.array([0.0, 1.0])
    if wrt is None:
        program = eg.parse(text)
        ours = eg.evaluate(program, x=x)["y"]
        theirs = compiled_value(program, backend, x=x)["y"]
    else:
        d = eg.diff(text, wrt)
        ours = eg.evaluate(d, x=x)
        theirs = compiled_value(d, backend, x=x)
        if backend == "numpy" and text.startswith("L"):  # reverse mode gives the same
            g = eg.grad(text, wrt=[wrt])
            np.testing.assert_array_equal(eg.evaluate(g, x=x)["dLdx"], expected)
            np.testing.assert_array_equal(compiled_value(g, "numpy", x=x)["dLdx"], expected)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(theirs, expected)


def test_a_derivative_constant_beyond_float_range_is_infinite_not_an_overflow_error():
    # The second derivative of x^1e300 has the constant 1e300·(1e300 - 1), beyond float64:
    # it evaluates (and compiles) to inf, as 1e300 * 1e300 does, never a bare OverflowError.
    d = eg.diff("y = x^1e300", "x", order=2)
    assert eg.evaluate(d, x=1.0) == np.inf
    assert eg.compile(d)(x=1.0) == np.inf

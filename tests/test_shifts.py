"""Index arithmetic (LANGUAGE.md §11): ``X[n, i+k]``, ``X[n, 2i+k]``, ``X[n, c, i+k, j+l]``.

``X[n, i+k]`` is ``Σ_j X[n,j] δ[j, i+k]`` (``expr.Shift``): values are checked against
numpy slicing (and a brute-force loop for the "valid" size rule), derivatives against HIPS
autograd (whose slicing emitter is np.pad's) and finite differences, compiled code against
``evaluate`` on numpy, torch and jax.
"""

from __future__ import annotations

import itertools

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import eingrad as eg
from eingrad import expr as E
from eingrad.errors import EingradError, SizeError

CONV1 = "Y[n,i] = X[n, i+k] K[k]"
STRIDED = "Y[n,i] = X[n, 2i+k-1] K[k]"
CONV2 = "Y[n,o,i,j] = X[n, c, i+k, j+l] K[o, c, k, l]"
POOL = "P[n,i] = max_k(X[n, 2i+k])"
LOSS = "Y[n,i] = tanh(X[n, 2i+k] K[k])\nL = sum_n(sum_i(Y[n,i]^2))"


def _rng(seed=0):
    return np.random.default_rng(seed)


def _conv1(X, K, a=1, c=0):
    """Σ_k X[n, a·i + k + c] K[k] over the valid i (slicing; rows past the end never read)."""
    size = (X.shape[1] - 1 - c - (K.shape[0] - 1)) // a + 1
    return sum(X[:, k + c: k + c + a * (size - 1) + 1: a] * K[k] for k in range(K.shape[0]))


def _conv2(X, K):
    _, _, H, W = X.shape
    _, _, kh, kw = K.shape
    oh, ow = H - kh + 1, W - kw + 1
    out = 0
    for k in range(kh):
        for l in range(kw):  # noqa: E741
            out = out + anp.einsum("nchw,oc->nohw", X[:, :, k:k + oh, l:l + ow], K[:, :, k, l])
    return out


# ---------------------------------------------------------------- syntax


def test_a_position_is_a_shifted_delta():
    e = eg.parse(CONV1).statements[0].expr
    (shift,) = [n for n in E.walk(e) if isinstance(n, E.Shift)]
    assert shift.terms == ((1, "i"), (1, "k")) and shift.offset == 0
    assert shift.index in {i for n in E.walk(e) if isinstance(n, E.Tensor) and n.name == "X" for i in n.indices}
    strided = [n for n in E.walk(eg.parse(STRIDED).statements[0].expr) if isinstance(n, E.Shift)]
    assert strided[0].terms == ((2, "i"), (1, "k")) and strided[0].offset == -1
    # the written delta is the same node
    assert eg.parse("Y[n,i] = sum_j(X[n,j] δ[j, i+k]) K[k]") == eg.parse(CONV1)


@pytest.mark.parametrize("src", [CONV1, STRIDED, CONV2, POOL, LOSS, "y[i] = x[i+1]", "y[i] = x[i-k] w[k]",
                                 "Y_{n,i} = X_{n,i+k} K_k",
                                 # a lone index with no offset is a position too: it prints as t+0
                                 "y[t] = x[1t]", "y[t] = x[t-0]"])
def test_print_and_parse_back(src):
    p = eg.parse(src)
    assert eg.parse(str(p)) == p
    assert "δ[" not in str(p) and "]" in str(p)  # printed as written: X[n, i+k]


def test_a_delta_at_a_lone_index_prints_its_zero_offset():
    p = eg.parse("y[j, t] = δ[j, t+0]")  # a shifted delta, not δ_jt (which ties two sizes)
    assert str(p) == "y_jt = δ[j, t+0]" and eg.parse(str(p)) == p


def test_latex_writes_the_position():
    assert "X_{n, 2i+k-1}" in eg.parse(STRIDED).latex()
    assert "\\delta_{j, 2i+k-1}" in eg.parse("Y[j,i,k] = δ[j, 2i+k-1]").latex()


@pytest.mark.parametrize("src, message", [
    ("Y[i,j] = X[i*j]", "not affine"),
    ("Y[i] = X[0.5i]", "not an integer"),
    ("Y[i] = X[2.0i]", "not an integer"),
    ("Y[i+1] = X[i]", "not a name"),
    ("Y[n] = sum_{i+k}(X[n,i])", "index"),
])
def test_bad_positions_are_positioned_errors(src, message):
    with pytest.raises(EingradError, match=message) as info:
        eg.parse(src)
    assert info.value.spans


# ---------------------------------------------------------------- sizes and values


def test_valid_sizes_of_the_language_examples():
    X = _rng().standard_normal((2, 100))
    K = _rng().standard_normal(5)
    assert eg.evaluate(CONV1, X=X, K=K)["Y"].shape == (2, 96)
    assert eg.evaluate("Y[n,i] = X[n, 2i+k] K[k]", X=X, K=K)["Y"].shape == (2, 48)


@pytest.mark.parametrize("a, c, nx, nk", list(itertools.product([1, 2, 3], [-1, 0, 2], [7, 10], [1, 3])))
def test_valid_size_is_the_largest_with_no_read_past_the_end(a, c, nx, nk):
    x = _rng(a + nx).standard_normal(nx)
    w = _rng(c + 5).standard_normal(nk)
    sign = "+" if c >= 0 else "-"
    src = f"y[i] = x[{a}i+k{sign}{abs(c)}] w[k]"
    y = eg.evaluate(src, x=x, w=w)["y"]
    brute = 0
    while all(a * brute + k + c <= nx - 1 for k in range(nk)):
        brute += 1
    assert y.shape == (brute,)
    expected = [sum(x[a * i + k + c] * w[k] for k in range(nk) if 0 <= a * i + k + c < nx) for i in range(brute)]
    np.testing.assert_allclose(y, expected, atol=1e-12)


def test_conv_values_match_slicing():
    X = _rng().standard_normal((3, 20))
    K = _rng(1).standard_normal(4)
    np.testing.assert_allclose(eg.evaluate(CONV1, X=X, K=K)["Y"], _conv1(X, K), atol=1e-12)
    # 2i+k-1 reads X[-1] (zero) at i = 0, k = 0: the valid size counts only the end
    strided = eg.evaluate(STRIDED, X=X, K=K)["Y"]
    padded = np.concatenate([np.zeros((3, 1)), X], axis=1)
    np.testing.assert_allclose(strided, _conv1(padded, K, 2)[:, :strided.shape[1]], atol=1e-12)
    assert strided.shape == (3, (20 - 1 + 1 - 3) // 2 + 1)
    X4 = _rng(2).standard_normal((2, 3, 7, 6))
    K4 = _rng(3).standard_normal((4, 3, 3, 2))
    np.testing.assert_allclose(eg.evaluate(CONV2, X=X4, K=K4)["Y"], _conv2(X4, K4), atol=1e-12)


def test_reads_past_either_end_are_zero():
    x = np.arange(1.0, 5.0)
    assert eg.evaluate("y[i] = x[i+1]", x=x, sizes={"i": 4})["y"].tolist() == [2, 3, 4, 0]
    assert eg.evaluate("y[i] = x[i-1]", x=x, sizes={"i": 4})["y"].tolist() == [0, 1, 2, 3]


def test_max_pool_needs_its_window_declared():
    X = _rng().standard_normal((2, 9))
    P = eg.evaluate(POOL, X=X, sizes={"k": 2})["P"]
    np.testing.assert_array_equal(P, np.maximum(X[:, 0:8:2], X[:, 1:9:2]))
    with pytest.raises(SizeError, match="'i' and 'k'") as info:
        eg.evaluate(POOL, X=X)
    assert info.value.spans and "sizes=" in info.value.hint


def test_an_index_only_a_shift_sizes_must_be_declared_when_its_coefficient_is_negative():
    with pytest.raises(SizeError, match="'k'"):
        eg.evaluate("y[i] = x[i-k]", x=np.ones(4))


# ---------------------------------------------------------------- derivatives


def test_derivative_wrt_x_is_the_transposed_convolution():
    d = eg.diff(CONV1, "X")
    assert any(isinstance(n, E.Shift) for n in E.walk(d.expr))
    text = str(d)
    assert "δ[" in text


def _loss(X, K):
    size = (X.shape[1] - K.shape[0]) // 2 + 1
    Y = anp.tanh(sum(X[:, k: k + 2 * (size - 1) + 1: 2] * K[k] for k in range(K.shape[0])))
    return anp.sum(Y ** 2)


def test_gradients_match_autograd_and_finite_differences():
    X = _rng().standard_normal((2, 11))
    K = _rng(1).standard_normal(3)
    g = eg.grad(eg.parse(LOSS), wrt=["X", "K"])
    out = eg.evaluate(g, X=X, K=K)
    np.testing.assert_allclose(out["dLdX"], autograd.grad(_loss, 0)(X, K), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["dLdK"], autograd.grad(_loss, 1)(X, K), rtol=1e-10, atol=1e-12)
    # finite differences of evaluate itself
    h = 1e-6
    for idx in [(0, 0), (1, 5), (0, 10)]:
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += h
        Xm[idx] -= h
        fd = (eg.evaluate(LOSS, X=Xp, K=K)["L"] - eg.evaluate(LOSS, X=Xm, K=K)["L"]) / (2 * h)
        assert abs(fd - out["dLdX"][idx]) < 1e-6


@pytest.mark.parametrize("wrt", ["X", "K"])
def test_first_and_second_derivatives_match_autograd(wrt):
    X = _rng(4).standard_normal((2, 9))
    K = _rng(5).standard_normal(3)
    arg = 0 if wrt == "X" else 1
    src = "L = sum_n(sum_i(tanh(X[n, 2i+k] K[k])^2))"
    v1 = eg.evaluate(eg.diff(src, wrt), X=X, K=K)
    v2 = eg.evaluate(eg.hessian(src, wrt), X=X, K=K)
    np.testing.assert_allclose(v1, autograd.grad(_loss, arg)(X, K), rtol=1e-9, atol=1e-12)
    hess = autograd.hessian(_loss, arg)(X, K)
    np.testing.assert_allclose(np.asarray(v2).reshape(hess.shape), hess, rtol=1e-8, atol=1e-10)


def test_conv2_gradient_matches_autograd():
    X = _rng(6).standard_normal((2, 2, 5, 4))
    K = _rng(7).standard_normal((3, 2, 2, 2))
    src = CONV2 + "\nL = sum_n(sum_o(sum_i(sum_j(Y[n,o,i,j]^2))))"
    out = eg.evaluate(eg.grad(eg.parse(src), wrt=["X", "K"]), X=X, K=K)

    def loss(X_, K_):
        return anp.sum(_conv2(X_, K_) ** 2)

    np.testing.assert_allclose(out["dLdX"], autograd.grad(loss, 0)(X, K), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out["dLdK"], autograd.grad(loss, 1)(X, K), rtol=1e-10, atol=1e-10)


def test_check_backward_passes():
    def user(X, K):
        return autograd.grad(_loss, 0)(X, K), autograd.grad(_loss, 1)(X, K)

    inputs = {"X": _rng().standard_normal((2, 11)), "K": _rng(1).standard_normal(3)}
    assert eg.check_backward(LOSS, ["X", "K"], user, inputs=inputs)

    def wrong(X, K):  # the convolution's gradient without the flip: caught
        return autograd.grad(_loss, 0)(X, K)[:, ::-1], autograd.grad(_loss, 1)(X, K)

    assert not eg.check_backward(LOSS, ["X", "K"], wrong, inputs=inputs)
    # drawn inputs: the index only the arithmetic sizes gets its valid size, X is drawn long enough
    report = eg.check_backward(LOSS, ["X", "K"], user)
    assert report and "i=6" in str(report) and "j=14" in str(report)
    assert eg.check_backward(LOSS, ["X", "K"], user, sizes={"k": 2})


# ---------------------------------------------------------------- compiled


def _args(backend, arrays):
    if backend == "torch":
        import torch

        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    return arrays


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("src, shapes, sizes", [
    (CONV1, {"X": (3, 20), "K": (4,)}, None),
    (STRIDED, {"X": (3, 21), "K": (3,)}, None),
    (CONV2, {"X": (2, 3, 7, 6), "K": (4, 3, 3, 2)}, None),
    (POOL, {"X": (2, 9)}, {"k": 2}),
    ("y[i] = x[i+1]", {"x": (6,)}, {"i": 6}),
])
def test_compiled_matches_evaluate(backend, src, shapes, sizes):
    pytest.importorskip(backend)
    arrays = {k: _rng(len(v)).standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    expected = eg.evaluate(src, sizes=sizes, **arrays)
    fn = eg.compile(src, backend=backend)
    out = fn(sizes=sizes, **_args(backend, arrays)) if sizes else fn(**_args(backend, arrays))
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(out[name]), value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_compiled_gradients_match_autograd(backend):
    pytest.importorskip(backend)
    X = _rng().standard_normal((2, 11)).astype(np.float32)
    K = _rng(1).standard_normal(3).astype(np.float32)
    fn = eg.compile(eg.grad(eg.parse(LOSS), wrt=["X", "K"]), backend=backend)
    out = fn(**_args(backend, {"X": X, "K": K}))
    X64, K64 = X.astype(np.float64), K.astype(np.float64)
    np.testing.assert_allclose(np.asarray(out["dLdX"]), autograd.grad(_loss, 0)(X64, K64), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out["dLdK"]), autograd.grad(_loss, 1)(X64, K64), rtol=1e-3, atol=1e-4)


def test_compiled_code_is_shape_generic():
    fn = eg.compile(STRIDED)
    source = fn.source
    assert "size_i = max(0, " in source and "96" not in source
    for n in (9, 21, 40):
        X = _rng(n).standard_normal((2, n))
        K = _rng(1).standard_normal(3)
        np.testing.assert_allclose(fn(X=X, K=K)["Y"], eg.evaluate(STRIDED, X=X, K=K)["Y"], atol=1e-12)


def test_compiled_derivative_wrt_x():
    X = _rng().standard_normal((2, 12))
    K = _rng(1).standard_normal(4)
    d = eg.diff(CONV1, "X")
    np.testing.assert_allclose(np.asarray(eg.compile(d)(X=X, K=K)), eg.evaluate(d, X=X, K=K), atol=1e-12)


def test_a_constant_position_reads_one_element():
    x = np.arange(1.0, 5.0)
    assert eg.evaluate("y = x[0]", x=x)["y"] == 1
    assert eg.evaluate("y = x[-1] + x[4]", x=x)["y"] == 0  # outside the array on both sides
    assert eg.parse(str(eg.parse("y = x[2]"))) == eg.parse("y = x[2]")
    assert eg.compile("y = x[2]")(x=x)["y"] == 3
    np.testing.assert_array_equal(eg.evaluate(eg.diff("y = x[2]", "x"), x=x), [0, 0, 1, 0])


@pytest.mark.parametrize("text", ["y_i = x[i+k] K_k + z[i+k] K_k", "y_i = z[i+k] K_k + x[i+k] K_k"])
def test_two_shifts_sizing_one_index_take_the_smaller_valid_size(text):
    # LANGUAGE.md §11: the largest size for which no read passes the end of ITS array: with
    # |x| = 10 and |z| = 7 (kernel 3), |i| = 5 whichever read comes first, in evaluate and in
    # the generated code alike (which computes min(...) of both rules at run time).
    rng = np.random.default_rng(0)
    x, z, K = rng.normal(size=10), rng.normal(size=7), rng.normal(size=3)
    expected = np.array([x[i:i + 3] @ K + z[i:i + 3] @ K for i in range(5)])
    program = eg.parse(text)
    np.testing.assert_allclose(eg.evaluate(program, x=x, z=z, K=K)["y"], expected, rtol=1e-12)
    fn = eg.compile(program)
    np.testing.assert_allclose(fn(x=x, z=z, K=K)["y"], expected, rtol=1e-12)
    # the same function at other lengths: the smaller array still decides
    x2, z2 = rng.normal(size=6), rng.normal(size=12)
    expected2 = np.array([x2[i:i + 3] @ K + z2[i:i + 3] @ K for i in range(4)])
    np.testing.assert_allclose(fn(x=x2, z=z2, K=K)["y"], expected2, rtol=1e-12)


CONV_WITH_LOSS = "Y[n,i] = X[n, i+k] K[k]\nL = sum_{n,i}(G[n,i] Y[n,i])"
STRIDED_WITH_LOSS = "Y[n,i] = X[n, 2i+k] K[k]\nL = sum_{n,i}(G[n,i] Y[n,i])"


@pytest.mark.parametrize("src", [CONV_WITH_LOSS, STRIDED_WITH_LOSS])
def test_random_inputs_fit_a_position_that_another_statement_sizes(src):
    """i is sized by the arithmetic in Y's statement and by G in L's: the drawn X is exactly as
    long as the valid size rule needs (check_backward and the CLI)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from eingrad.cli import main

    stride = 2 if "2i" in src else 1

    def user(X, K, G):
        windows = sliding_window_view(X, K.shape[0], axis=1)[:, ::stride][:, :G.shape[1]]
        return np.einsum("nik,ni->k", windows, G)

    assert eg.check_backward(src, "K", user).ok
    assert main(["check", src, "--wrt", "K", "X"]) == 0
    assert main(["compile", src, "--wrt", "K"]) == 0

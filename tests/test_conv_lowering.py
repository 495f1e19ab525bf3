"""Compiled index arithmetic (LANGUAGE.md §11) without dense shift arrays (codegen/conv.py).

A product with a shifted delta is lowered to a zero-padded strided window of the array it
reads (``_window``) or, for the derivative with respect to that array, to a scatter of
strided slices (``_unwindow``); the dense 0/1 mask (``_shift``) is kept only where neither
applies.  Each program's gradient is compiled on numpy, torch and jax and compared with
``evaluate`` (itself checked against autograd in test_shifts.py), and its generated code is
checked to build no mask.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import eingrad as eg

CASES = {
    "conv1": ("Y[n,i] = X[n, i+k] K[k]\nL = sum_n(sum_i(tanh(Y[n,i])^2))",
              ["X", "K"], {"X": (3, 13), "K": (4,)}, None),
    "conv1_channels": ("Y[n,o,i] = X[n, c, i+k] K[o, c, k]\nL = sum_n(sum_o(sum_i(tanh(Y[n,o,i])^2)))",
                       ["X", "K"], {"X": (2, 3, 11), "K": (5, 3, 3)}, None),
    "stride2": ("Y[n,i] = X[n, 2i+k-1] K[k]\nL = sum_n(sum_i(tanh(Y[n,i])^2))",
                ["X", "K"], {"X": (3, 16), "K": (3,)}, None),
    "dilated": ("Y[n,i] = X[n, i+2k] K[k]\nL = sum_n(sum_i(Y[n,i]^2))", ["X", "K"], {"X": (2, 14), "K": (3,)}, None),
    "conv2": ("Y[n,o,i,j] = X[n, c, i+k, j+l] K[o, c, k, l]\nL = sum_n(sum_o(sum_i(sum_j(tanh(Y[n,o,i,j])^2))))",
              ["X", "K"], {"X": (2, 3, 7, 6), "K": (4, 3, 3, 2)}, None),
    "conv2_stride2": ("Y[n,o,i,j] = X[n, c, 2i+k, 2j+l] K[o, c, k, l]\nL = sum_n(sum_o(sum_i(sum_j(Y[n,o,i,j]^2))))",
                      ["X", "K"], {"X": (2, 2, 9, 8), "K": (3, 2, 3, 3)}, None),
    "max_pool": ("P[n,i] = max_k(X[n, 2i+k])\nL = sum_n(sum_i(P[n,i]^2))", ["X"], {"X": (3, 11)}, {"k": 2}),
    "max_pool2": ("P[n,i,j] = max_a(max_b(X[n, 2i+a, 2j+b]))\nL = sum_n(sum_i(sum_j(P[n,i,j]^3)))",
                  ["X"], {"X": (2, 6, 7)}, {"a": 2, "b": 2}),
    "mean_pool": ("P[n,i] = mean_a(X[n, 2i+a])\nL = sum_n(sum_i(P[n,i]^2))", ["X"], {"X": (2, 9)}, {"a": 3}),
    "flipped": ("y[i] = x[i-k+3] w[k]\nL = sum_i(y[i]^2)", ["x", "w"], {"x": (12,), "w": (4,)}, {"i": 9}),
    "unit_shift": ("h[t,n,m] = tanh(s[t-1, n, k] U[k,m] + x[t,n,m])\nL = sum_t(sum_n(sum_m(h[t,n,m]^2)))",
                   ["s", "U"], {"s": (6, 3, 4), "U": (4, 5), "x": (6, 3, 5)}, None),
    "unit_shift_ahead": ("y[t,n] = s[t+1, n] - s[t, n]\nL = sum_t(sum_n(y[t,n]^2))",
                         ["s"], {"s": (7, 3)}, {"t": 7}),
    "padded_both_ends": ("Y[n,i] = X[n, i+k-1] K[k]\nL = sum_n(sum_i(Y[n,i]^2))",
                         ["X", "K"], {"X": (2, 9), "K": (3,)}, {"i": 9}),
}


def _arrays(shapes, dtype=np.float64):
    rng = np.random.default_rng(sum(map(sum, shapes.values())))
    return {k: rng.standard_normal(v).astype(dtype) for k, v in shapes.items()}


def _to(backend, arrays):
    if backend == "torch":
        import torch

        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    return arrays


def _tol(backend):  # jax computes in float32 unless its 64-bit mode is on
    return {"rtol": 2e-4, "atol": 2e-4} if backend == "jax" else {"rtol": 1e-9, "atol": 1e-10}


def _body(fn) -> str:
    return fn.source.split("def compiled")[1]


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_lowered_gradient_matches_evaluate_and_builds_no_mask(backend, case):
    pytest.importorskip(backend)
    src, wrt, shapes, sizes = CASES[case]
    program = eg.grad(eg.parse(src), wrt=wrt)
    arrays = _arrays(shapes)
    expected = eg.evaluate(program, sizes=sizes, **arrays)
    fn = eg.compile(program, backend=backend)
    body = _body(fn)
    assert "_shift(" not in body, body
    assert "_window(" in body
    # the derivative wrt the shifted array is a scatter, or for one unit term (turned
    # around by the simplifier, δ[t, j+1]) a window of the upstream gradient
    assert "_unwindow(" in body or case.startswith("unit_shift")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.PrecisionWarning)
        out = fn(sizes=sizes, **_to(backend, arrays))
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(out[name]), value, err_msg=name, **_tol(backend))


def test_window_is_a_view_on_numpy_and_never_an_output():
    # a valid convolution reads no zeros: the window is a strided view of X, no copy ...
    fn = eg.compile("Y[n,i] = X[n, i+k] K[k]")
    assert "_window(X, 1, (1, 1), 0, (size_i, size_k))" in fn.source
    # ... and a window that is itself the result is copied into an array of its own
    fn = eg.compile("W[n,i,k] = X[n, i+k]", )
    X = np.arange(12.0).reshape(2, 6)
    W = fn(X=X, sizes={"k": 3})["W"]
    assert W.flags.writeable and W.flags.owndata or W.base is not X
    W[...] = -1
    np.testing.assert_array_equal(X, np.arange(12.0).reshape(2, 6))


def test_recurrence_weight_gradient_is_one_matrix_product_on_a_shifted_slice():
    # LANGUAGE.md §12's s[t-1, n, k]: the weight gradient is one tensordot over (t, n) of the
    # state shifted one step (a row of zeros in front), its transpose one shifted slice.
    src, wrt, _, _ = CASES["unit_shift"]
    gradient = eg.grad(eg.parse(src), wrt=wrt)
    assert "dLdh[j+1, n, m]" in str(gradient)  # dLds reads the upstream gradient one step ahead
    body = _body(eg.compile(gradient))
    assert "_window(s, 0, (1,), -1, (size_t,))" in body
    assert ", 0, (1,), 1, (size_j,))" in body  # its transpose: a window one step ahead
    (line,) = [ln for ln in body.splitlines() if ln.strip().startswith("dLdU =")]
    assert "tensordot" in line and "axes=((0, 1), (0, 1))" in line


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_a_written_unit_shift_by_a_summed_index_is_one_shifted_slice(backend):
    # δ[j, t-1] as written (not simplified): the scatter of one unit term, a single slice
    pytest.importorskip(backend)
    program = eg.parse("y[j, n] = sum_t(g[t, n] δ[j, t-1])")
    fn = eg.compile(program, backend=backend)
    body = _body(fn)
    assert "_unwindow(g, 0, (1,), -1, size_j)" in body and "_shift(" not in body
    g = _arrays({"g": (6, 3)})["g"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.PrecisionWarning)
        for j in (6, 4, 9):
            got = np.asarray(fn(sizes={"j": j}, **_to(backend, {"g": g}))["y"])
            expected = np.zeros((j, 3))
            expected[:min(j, 5)] = g[1:1 + min(j, 5)]
            np.testing.assert_allclose(got, expected, **_tol(backend))


@pytest.mark.parametrize("text, shapes, sizes", [
    ("y[i] = x[i+5]", {"x": (4,)}, {"i": 3}),             # every read past the end
    ("y[i] = x[i-9]", {"x": (4,)}, {"i": 3}),             # every read before the start
    ("y = x[2] + x[-1] + x[7]", {"x": (4,)}, None),      # one element, inside and outside
    ("y[i] = x[3i+k] w[k]", {"x": (10,), "w": (2,)}, None),
])
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_reads_outside_the_array_are_zero(backend, text, shapes, sizes):
    pytest.importorskip(backend)
    arrays = _arrays(shapes)
    program = eg.parse(text)
    fn = eg.compile(program, backend=backend)
    assert "_shift(" not in _body(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.PrecisionWarning)
        out = fn(sizes=sizes, **_to(backend, arrays))
    for name, value in eg.evaluate(program, sizes=sizes, **arrays).items():
        np.testing.assert_allclose(np.asarray(out[name]), value, **_tol(backend))


def test_float32_stays_float32():
    src, wrt, shapes, sizes = CASES["conv1_channels"]
    arrays = _arrays(shapes, np.float32)
    out = eg.compile(eg.grad(eg.parse(src), wrt=wrt))(**arrays)
    assert all(v.dtype == np.float32 for v in out.values() if hasattr(v, "dtype"))


def test_dask_keeps_the_dense_mask_and_is_right():
    pytest.importorskip("dask")
    src, wrt, shapes, sizes = CASES["conv1"]
    program = eg.grad(eg.parse(src), wrt=wrt)
    arrays = _arrays(shapes)
    fn = eg.compile(program, backend="dask")
    assert "_shift(" in _body(fn)
    out = fn(**arrays)
    for name, value in eg.evaluate(program, **arrays).items():
        np.testing.assert_allclose(np.asarray(out[name]), value, rtol=1e-9, atol=1e-10)


def test_what_is_not_lowered_keeps_the_mask():
    # the window's own derivative: δ[j, i+k] with j and i both kept (a dense result anyway)
    d = eg.diff("Y[i] = X[i+k] K[k]", "X")
    fn = eg.compile(d)
    X, K = _arrays({"X": (8,), "K": (3,)}).values()
    np.testing.assert_allclose(np.asarray(fn(X=X, K=K)), eg.evaluate(d, X=X, K=K), atol=1e-12)


def test_a_valid_size_tied_to_a_later_array_compiles():
    # the pooled map's size (the valid size rule) is the next layer's weight axis: the code
    # is planned at the sizes given for what index arithmetic reads (not at sizes moved
    # apart to avoid coincidences, which would contradict the rule)
    program = eg.grad(eg.parse("P[n,r] = max_p(X[n, 2r+p])\nZ[n,v] = P[n,r] W[r,v]\nL = sum_n(sum_v(Z[n,v]^2))"),
                      wrt=["W", "X"])
    arrays = _arrays({"X": (2, 8), "W": (4, 3)})
    out = eg.compile(program)(sizes={"p": 2}, **arrays)
    for name, value in eg.evaluate(program, sizes={"p": 2}, **arrays).items():
        np.testing.assert_allclose(out[name], value, rtol=1e-12, atol=1e-12)


def test_cupy_helpers_are_numpys_without_writeable():
    # CuPy's as_strided takes no ``writeable``: its helpers, run with numpy standing in for
    # cupy (the same API), give numpy's windows and scatters
    from eingrad.codegen.conv import HELPERS

    assert "writeable" not in HELPERS["cupy"] and "writeable" in HELPERS["numpy"]
    spaces = {}
    for name in ("numpy", "cupy"):
        spaces[name] = {"xp": np}
        exec(HELPERS[name], spaces[name])  # noqa: S102 - the library's own helper source
    v = np.arange(24.0).reshape(2, 12)
    for coefs, offset, sizes in [((1, 1), 0, (8, 5)), ((2, 1), -1, (5, 3)), ((1, -1), 2, (10, 3)), ((1,), -1, (12,))]:
        w = spaces["cupy"]["_window"](v, 1, coefs, offset, sizes)
        np.testing.assert_array_equal(w, spaces["numpy"]["_window"](v, 1, coefs, offset, sizes))
        g = np.ones(w.shape)
        np.testing.assert_array_equal(spaces["cupy"]["_unwindow"](g, 1, coefs, offset, 12),
                                      spaces["numpy"]["_unwindow"](g, 1, coefs, offset, 12))
        # the adjoint: <window(v), g> = <v, unwindow(g)>
        g = np.random.default_rng(0).standard_normal(w.shape)
        np.testing.assert_allclose(np.sum(w * g), np.sum(v * spaces["numpy"]["_unwindow"](g, 1, coefs, offset, 12)))


_HELPER_CASES = [((1, 1), 0, (8, 5)), ((2, 1), -1, (5, 3)), ((1, -1), 2, (10, 3)), ((1,), -1, (12,)),
                 ((1,), 1, (12,)), ((-2, 3), 4, (4, 2)), ((3, 1, 1), -2, (3, 2, 2)), ((), 5, ()), ((), 20, ()),
                 ((1, 1), 30, (4, 2)), ((1, 1), 0, (0, 3))]


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_window_and_unwindow_helpers_against_a_loop(backend):
    xp = pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax.numpy"}[backend])
    from eingrad.codegen.conv import HELPERS

    space = {"xp": xp}
    exec(HELPERS[backend], space)  # noqa: S102 - the library's own helper source
    rng = np.random.default_rng(3)
    v = rng.standard_normal((2, 12, 3))
    as_array = (lambda a: xp.from_numpy(a)) if backend == "torch" else xp.asarray
    for coefs, offset, sizes in _HELPER_CASES:
        expected = np.zeros((2, *sizes, 3))
        for t in np.ndindex(*sizes):
            p = offset + sum(a * i for a, i in zip(coefs, t, strict=True))
            if 0 <= p < 12:
                expected[(slice(None), *t)] = v[:, p]
        got = np.asarray(space["_window"](as_array(v), 1, coefs, offset, sizes))
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=str((coefs, offset, sizes)))
        g = rng.standard_normal(expected.shape)
        back = np.asarray(space["_unwindow"](as_array(g), 1, coefs, offset, 12))
        assert back.shape == v.shape
        np.testing.assert_allclose(np.sum(v * back), np.sum(expected * g), rtol=1e-5, atol=1e-9,
                                   err_msg=str((coefs, offset, sizes)))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("src", ["y = x[2]", "y = x[-1]", "y = x[2]^2 + x[0] x[3]"])
def test_derivative_of_a_constant_position_compiles(backend, src):
    # δ[i, 2] alone (a mask: the derivative's value is that array) was written as a number
    # to fill an array with, which torch refuses
    pytest.importorskip(backend)
    x = np.arange(1.0, 5.0)
    d = eg.diff(src, "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.PrecisionWarning)
        got = eg.compile(d, backend=backend)(**_to(backend, {"x": x}))
    np.testing.assert_allclose(np.asarray(got), eg.evaluate(d, x=x), **_tol(backend))


def test_a_unit_shift_by_a_summed_index_turns_around():
    # the derivative wrt s[t-1] reads the upstream gradient one step ahead: δ[t, j+1]
    program = eg.parse("y[t,n] = s[t-1, n] w[n]\nL = sum_t(sum_n(y[t,n]^2))")
    gradient = eg.grad(program, wrt=["s"])
    assert "dLds_jn = s_jn^0 w_n dLdy[j+1, n]" in str(gradient)  # one step ahead, as a read
    steps = str(eg.explain(program, "s", "L"))
    assert "a unit shift by a summed index reads the other way" in steps and "y[i+1, k]" in steps
    # a convolution's delta (two terms) keeps its form
    assert "δ[j, i+k]" in str(eg.grad(eg.parse(CASES["conv1"][0]), wrt=["X"]))
    rng = np.random.default_rng(4)
    s, w = rng.standard_normal((5, 2)), rng.standard_normal(2)
    y = np.zeros((5, 2))
    y[1:] = s[:-1] * w
    expected = np.zeros((5, 2))
    expected[:-1] = 2 * y[1:] * w
    for got in (eg.evaluate(gradient, s=s, w=w, sizes={"t": 5})["dLds"],
                eg.compile(gradient)(s=s, w=w, sizes={"t": 5})["dLds"]):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_the_generic_source_of_a_convolution_beside_an_array_of_its_valid_size():
    # i is sized by index arithmetic in Y's statement and by G in L's: the source written
    # before any call (sizes picked apart) makes X exactly as long as the rule needs
    src = "Y[n,o,i] = X[n, c, i+k] K[o, c, k]\nL = sum_n(sum_o(sum_i(Y[n,o,i] G[n,o,i])))"
    fn = eg.compile(eg.grad(eg.parse(src), wrt=["X", "K"]), outputs=["dLdX", "dLdK"])
    source = fn.source
    assert "_window(X, 2, (1, 1), 0, (size_i, size_k))" in source and "_shift(" not in source
    namespace = {"xp": np}
    exec(source, namespace)  # noqa: S102 - generated from validated names
    arrays = _arrays({"X": (2, 3, 10), "K": (4, 3, 3), "G": (2, 4, 8)})
    out = namespace["compiled"](arrays)
    expected = eg.evaluate(eg.grad(eg.parse(src), wrt=["X", "K"]), **arrays)
    for name in ("dLdX", "dLdK"):
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-12, atol=1e-12)

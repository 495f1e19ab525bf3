"""eg.evaluate against independent numpy oracles, over the whole corpus.

Also: dtypes (float32 stays float32, integers become float64), numerical
stability at |x| = 1000, NaN propagation, and a contraction order that never
builds a large intermediate.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import opt_einsum
import pytest

import eingrad as eg
from corpus import CORPUS, random_inputs

ENTRIES = pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])


def run(entry, inputs):
    """Evaluate ``entry``; returns (outputs, SurprisingSumWarnings). Any other warning fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = eg.evaluate(entry.text, sizes=entry.sizes, **inputs)
    surprising = [w for w in caught if issubclass(w.category, eg.SurprisingSumWarning)]
    others = [f"{w.category.__name__}: {w.message}" for w in caught if w not in surprising]
    assert not others, f"unexpected warnings: {others}"
    return out, surprising


def as_float64(inputs):
    return {k: np.asarray(v, dtype=np.float64) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def assert_matches(out, expected, rtol, atol_scale):
    assert set(out) == set(expected), f"targets {sorted(out)} != {sorted(expected)}"
    for name, want in expected.items():
        want = np.asarray(want, dtype=np.float64)
        got = out[name]
        assert isinstance(got, np.ndarray), f"{name}: got {type(got).__name__}, not an array"
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_scale * scale, err_msg=name)


# ---------------------------------------------------------------- the corpus


LANGUAGE_FUNCTIONS = "exp log sqrt tanh sigmoid relu softplus abs sin cos".split()  # LANGUAGE.md §4


def test_corpus_is_large_and_uses_every_function():
    assert len(CORPUS) >= 45
    for fn in LANGUAGE_FUNCTIONS:
        assert any(fn + "(" in e.text for e in CORPUS), f"no corpus program uses {fn}"


@ENTRIES
def test_matches_oracle_float64(entry):
    inputs = random_inputs(entry, np.random.default_rng(0))
    out, surprising = run(entry, inputs)
    assert bool(surprising) == entry.warns, [str(w.message) for w in surprising]
    for name, array in out.items():
        assert array.dtype == np.float64, f"{name}: {array.dtype}"
    assert_matches(out, entry.oracle(**inputs), rtol=1e-10, atol_scale=1e-12)


@ENTRIES
def test_float32_stays_float32(entry):
    inputs = random_inputs(entry, np.random.default_rng(1), dtype=np.float32)
    if not any(isinstance(v, np.ndarray) for v in inputs.values()):
        pytest.skip("no array inputs: Python scalars alone evaluate in float64")
    out, _ = run(entry, inputs)
    for name, array in out.items():
        assert array.dtype == np.float32, f"{name}: {array.dtype}"
    assert_matches(out, entry.oracle(**as_float64(inputs)), rtol=2e-4, atol_scale=1e-4)


@ENTRIES
def test_integer_inputs_become_float64(entry):
    inputs = random_inputs(entry, np.random.default_rng(2), dtype=np.int64)
    out, _ = run(entry, inputs)
    for name, array in out.items():
        assert array.dtype == np.float64, f"{name}: {array.dtype}"
    assert_matches(out, entry.oracle(**as_float64(inputs)), rtol=1e-10, atol_scale=1e-12)


@ENTRIES
def test_nan_propagates_without_warnings(entry):
    inputs = random_inputs(entry, np.random.default_rng(3))
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            value.flat[0] = np.nan
        else:
            inputs[name] = float("nan")
    out, _ = run(entry, inputs)  # no RuntimeWarning, no exception
    last = list(out)[-1]
    assert np.isnan(out[last]).any(), f"{last} has no NaN"


def test_scalars_as_python_numbers_or_0d_arrays():
    x = np.arange(3.0)
    for a in (2, 2.0, np.float64(2.0), np.array(2.0)):
        np.testing.assert_array_equal(eg.evaluate("y_i = a x_i", a=a, x=x)["y"], 2 * x)
    y = eg.evaluate("y_i = a x_i", a=0.5, x=x.astype(np.float32))["y"]
    assert y.dtype == np.float32  # a Python number does not widen float32 arrays


def test_integer_and_boolean_arrays_are_accepted():
    A = np.array([[1, 2], [3, 4]])
    out = eg.evaluate("C_ik = A_ij B_jk", A=A, B=np.array([[True, False], [False, True]]))
    assert out["C"].dtype == np.float64
    np.testing.assert_array_equal(out["C"], A)


# ---------------------------------------------------------------- numerical stability

BIG = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_softplus_logsumexp_stable_at_1000(dtype):
    text = "s_i = sigmoid(x_i); p_i = softplus(x_i); l = logsumexp_i(x_i); m = logsumexp_i(-x_i)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail here
        out = eg.evaluate(text, x=BIG.astype(dtype))
        rows = eg.evaluate(
            "r_i = logsumexp_k(A_ik)", A=np.array([[1000.0, 1000.0], [-1000.0, -1000.0]], dtype=dtype)
        )
    e = np.exp(-1.0)
    sigmoid = [0.0, e / (1 + e), 0.5, 1 / (1 + e), 1.0]
    softplus = [0.0, np.log1p(e), np.log(2.0), 1 + np.log1p(e), 1000.0]
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for name in ("s", "p", "l", "m"):
        assert out[name].dtype == dtype and np.all(np.isfinite(out[name])), name
    np.testing.assert_allclose(out["s"], sigmoid, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(out["p"], softplus, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(out["l"], 1000.0, rtol=rtol)
    np.testing.assert_allclose(out["m"], 1000.0, rtol=rtol)
    np.testing.assert_allclose(rows["r"], [1000 + np.log(2.0), -1000 + np.log(2.0)], rtol=rtol)


def test_loss_programs_stable_at_1000():
    """Logistic and softmax cross-entropy losses stay finite for huge margins."""
    X = np.array([[1000.0], [-1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = eg.evaluate(
            "L = sum_i(softplus(-y_i X_ij w_j)) + sum_n(logsumexp_c(Z_nc) - Z_nc Y_nc)",
            X=X,
            y=np.array([-1.0, 1.0]),
            w=np.array([1.0]),
            Z=np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]),
            Y=np.array([[0.0, 1.0], [1.0, 0.0]]),
        )
    # each logistic term is softplus(1000) = 1000; each cross-entropy term is 2000
    np.testing.assert_allclose(out["L"], 2 * 1000.0 + 2 * 2000.0, rtol=1e-12)


# ---------------------------------------------------------------- contraction order


def test_chain_never_builds_a_four_index_intermediate(monkeypatch):
    n = 7
    calls = []
    real_contract = opt_einsum.contract

    def spy(subscripts, *operands, **kwargs):
        calls.append((subscripts, [np.shape(o) for o in operands], kwargs))
        return real_contract(subscripts, *operands, **kwargs)

    monkeypatch.setattr(opt_einsum, "contract", spy)
    rng = np.random.default_rng(4)
    A, B, C = (rng.normal(size=(n, n)) for _ in range(3))
    out = eg.evaluate("D_il = A_ij B_jk C_kl", A=A, B=B, C=C)
    np.testing.assert_allclose(out["D"], A @ B @ C, rtol=1e-10)

    assert calls, "the interpreter no longer calls opt_einsum.contract: update this test"
    for subscripts, shapes, kwargs in calls:
        assert all(np.prod(s) <= n * n for s in shapes), f"{subscripts}: operand shapes {shapes}"
        path_options = {k: v for k, v in kwargs.items() if k in ("optimize", "memory_limit")}
        _, info = opt_einsum.contract_path(subscripts, *shapes, shapes=True, **path_options)
        assert info.largest_intermediate <= n * n, f"{subscripts}: {info}"


@pytest.mark.parametrize(
    "text, count",
    [("D_il = A_ij B_jk C_kl", 3), ("E_im = A_ij B_jk C_kl D_lm", 4)],
    ids=["three_matrices", "four_matrices"],
)
def test_chain_with_n_300_is_fast(text, count):
    n = 300
    rng = np.random.default_rng(5)
    mats = [rng.normal(size=(n, n)) for _ in range(count)]
    names = "ABCD"[:count]
    start = time.perf_counter()
    out = eg.evaluate(text, **dict(zip(names, mats, strict=True)))
    elapsed = time.perf_counter() - start
    expected = mats[0]
    for m in mats[1:]:
        expected = expected @ m
    (result,) = out.values()
    np.testing.assert_allclose(result, expected, rtol=1e-8, atol=1e-8 * np.abs(expected).max())
    assert elapsed < 2.0, f"took {elapsed:.2f}s: a 4-index intermediate would have n^4 = 8.1e9 entries"

"""``eg.compile``: generated code against the reference interpreter (``eg.evaluate``).

1. Every corpus program (tests/corpus.py), compiled for numpy, gives what
   ``evaluate`` and the corpus oracle give (1e-10, float64); float32 inputs give
   float32; the source has one comment line per statement; code is generated
   once per shape signature (and again for new shapes or dtypes).
2. Derivatives: every corpus program's Jacobian with respect to every input,
   and its second derivative, compiled, equal ``evaluate`` of the derivative;
   a delta left in a result (the logistic-regression Hessian's ``lam δ_kn``, the
   Jacobian ``δ_ik v_l``) is written into the output's diagonal, never built
   as an identity.
3. Gradient programs (``eg.grad``): affine layer, MLP with logsumexp softmax
   cross-entropy, an RNN unrolled 5 steps.
4. Random programs (``eingrad.testing.random_program``): the program and its
   first derivative with respect to one input, ``EINGRAD_COMPILE_PROGRAMS``
   seeds (240 by default).
5. Bad input: unknown backend, missing package, names that would inject code,
   wrong shapes, missing inputs.
6. The torch, jax and dask backends, where their packages are installed
   (skipped otherwise, naming the package): the same comparisons on a selection;
   jax under ``jax.jit``; dask on chunked arrays with a ``dask.distributed``
   client.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import traceback
import warnings

import numpy as np
import pytest

import eingrad as eg
import eingrad.expr
from corpus import BY_NAME, CORPUS, Entry, random_inputs
from eingrad.backends import BACKENDS, Backend, BackendError
from eingrad.codegen import compile as compile_module
from eingrad.expr import Add, Call, Tensor
from eingrad.program import Program, Statement
from eingrad.testing import random_program

ENTRIES = pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
PROGRAMS = int(os.environ.get("EINGRAD_COMPILE_PROGRAMS", "240"))


# ---------------------------------------------------------------- helpers


def parse(entry: Entry) -> eg.Program:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        return eg.parse(entry.text)


def quiet_diff(program, wrt, order=1, output=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        return eg.diff(program, wrt, order, output)


def close(actual, expected, what: str = "", rtol: float = 1e-10) -> None:
    """Same shape, and equal to ``rtol`` (absolute: ``rtol`` times the largest magnitude)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    finite = expected[np.isfinite(expected)]
    scale = float(np.max(np.abs(finite), initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=what)


def body(source: str) -> str:
    """The generated function, without the backend's helper definitions."""
    return source[source.index("def compiled(") :]


def comment_lines(source: str) -> list[str]:
    return [line.strip()[2:] for line in body(source).splitlines() if line.strip().startswith("#")]


def rnn_program(steps: int) -> eg.Program:
    b = eg.ProgramBuilder()
    b.add("s1_nh = tanh(x1_nd W_dh + s0_nk U_kh + b_h)")
    for t in range(2, steps + 1):
        b.add(f"s{t}_nh = tanh(x{t}_nd W_dh + s{t - 1}_nk U_kh + b_h)")
    b.add(f"L = sum_n(s{steps}_nh v_h)")
    return b.build()


def rnn_arrays(rng, steps: int, n=3, d=4, h=5) -> dict[str, np.ndarray]:
    arrays = {
        "W": 0.5 * rng.standard_normal((d, h)),
        "U": 0.5 * rng.standard_normal((h, h)),
        "b": 0.5 * rng.standard_normal(h),
        "v": rng.standard_normal(h),
        "s0": rng.standard_normal((n, h)),
    }
    for t in range(1, steps + 1):
        arrays[f"x{t}"] = rng.standard_normal((n, d))
    return arrays


AFFINE = "Y_nh = X_nd W_dh + b_h"
MLP = BY_NAME["mlp_softmax_cross_entropy"].text


def gradient_cases():
    """(name, gradient program, arrays) for the three models of the compiler issue."""
    rng = np.random.default_rng(7)
    affine = eg.grad(AFFINE, wrt=["W", "b", "X"], seed="dLdY")
    affine_arrays = {
        "X": rng.standard_normal((6, 4)),
        "W": rng.standard_normal((4, 3)),
        "b": rng.standard_normal(3),
        "dLdY": rng.standard_normal((6, 3)),
    }
    mlp = eg.grad(MLP, wrt=["W1", "b1", "W2", "b2", "X"])
    mlp_arrays = {
        "X": rng.standard_normal((8, 5)),
        "W1": rng.standard_normal((5, 6)),
        "b1": rng.standard_normal(6),
        "W2": rng.standard_normal((6, 4)),
        "b2": rng.standard_normal(4),
        "Y": np.eye(4)[rng.integers(0, 4, size=8)],
    }
    rnn = eg.grad(rnn_program(5), wrt=["W", "U", "b", "v", "s0", "x1", "x5"])
    return [("affine", affine, affine_arrays), ("mlp", mlp, mlp_arrays), ("rnn5", rnn, rnn_arrays(rng, 5))]


GRADIENTS = gradient_cases()


# ---------------------------------------------------------------- 1. programs


@ENTRIES
def test_program_matches_evaluate_and_oracle(entry):
    program = parse(entry)
    arrays = random_inputs(entry, np.random.default_rng(0))
    fn = eg.compile(program)
    out = fn(arrays, sizes=entry.sizes)
    expected = eg.evaluate(program, arrays, sizes=entry.sizes)
    oracle = entry.oracle(**arrays)
    assert list(out) == list(expected) == program.targets
    for name in expected:
        assert np.asarray(out[name]).dtype == np.float64, name
        close(out[name], expected[name], f"{name} against evaluate")
        if name in oracle:
            close(out[name], oracle[name], f"{name} against the oracle")


@ENTRIES
def test_float32_stays_float32(entry):
    inputs = random_inputs(entry, np.random.default_rng(1), dtype=np.float32)
    if not any(isinstance(v, np.ndarray) for v in inputs.values()):
        pytest.skip("no array inputs: Python scalars alone compute in float64")
    program = parse(entry)
    out = eg.compile(program)(inputs, sizes=entry.sizes)
    expected = eg.evaluate(program, inputs, sizes=entry.sizes)
    for name in expected:
        assert np.asarray(out[name]).dtype == np.float32, f"{name}: {np.asarray(out[name]).dtype}"
        close(out[name], expected[name], name, rtol=1e-5)


@ENTRIES
def test_source_has_one_comment_line_per_statement(entry):
    program = parse(entry)
    fn = eg.compile(program)
    fn(random_inputs(entry, np.random.default_rng(0)), sizes=entry.sizes)
    comments = comment_lines(fn.source)
    assert len(comments) == len(program), fn.source
    for comment, stmt in zip(comments, program.statements, strict=True):
        assert comment.startswith(stmt.target), (comment, stmt.target)
    # Before any call, .source shows the code for nominal sizes.
    assert len(comment_lines(eg.compile(program).source)) == len(program)


def test_generated_source_is_readable_straight_line_code():
    fn = eg.compile(BY_NAME["affine_broadcast_bias"].text)
    fn(X=np.ones((5, 3)), W=np.ones((3, 2)), b=np.ones(2))
    code = body(fn.source)
    assert "# Y_nh = X_nd W_dh + b_h" in code
    assert "X = arrays['X']" in code and "return {'Y': Y}" in code
    assert "_t1 = X @ W" in code  # BLAS, not einsum
    assert "Y = xp.add(_t1, b, out=_t1)" in code  # the bias added into the product's buffer
    assert "einsum" not in code


class CountingGenerator(compile_module.Generator):
    built = 0

    def function(self, *args, **kwargs):
        CountingGenerator.built += 1
        return super().function(*args, **kwargs)


@pytest.fixture
def count_builds(monkeypatch):
    CountingGenerator.built = 0
    monkeypatch.setattr(compile_module, "Generator", CountingGenerator)
    return CountingGenerator


def test_code_is_generated_once_per_shape_signature(count_builds):
    fn = eg.compile("C_ik = A_ij B_jk")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    first = fn(A=a, B=b)["C"]
    source = fn.source
    again = fn(A=2 * a, B=b)["C"]  # same shapes and dtypes: the cached code
    assert count_builds.built == 1 and len(fn._cache) == 1
    close(again, 2 * first)
    assert fn.source == source
    fn(A=rng.standard_normal((5, 3)), B=b)  # new shapes: new code
    assert count_builds.built == 2 and len(fn._cache) == 2
    fn(A=a.astype(np.float32), B=b.astype(np.float32))  # new dtypes: new code
    assert count_builds.built == 3 and len(fn._cache) == 3
    fn(A=a, B=b)
    fn(A=rng.standard_normal((5, 3)), B=b)
    assert count_builds.built == 3 and len(fn._cache) == 3


def test_sizes_only_deltas_fix_are_part_of_the_signature(count_builds):
    fn = eg.compile(BY_NAME["dfdW_as_program"].text)  # D_ijk = v_k δ_ij
    v = np.arange(4.0)
    assert fn(v=v, sizes={"i": 2})["D"].shape == (2, 2, 4)
    assert fn(v=v, sizes={"i": 3})["D"].shape == (3, 3, 4)
    assert fn(v=v, sizes={"i": 2})["D"].shape == (2, 2, 4)
    assert count_builds.built == 2
    close(fn(v=v, sizes={"i": 3})["D"], np.einsum("ij,k->ijk", np.eye(3), v))


def test_each_compiled_function_has_its_own_cache(count_builds):
    a, b = np.ones((2, 3)), np.ones((3, 4))
    eg.compile("C_ik = A_ij B_jk")(A=a, B=b)
    eg.compile("C_ik = A_ij B_jk")(A=a, B=b)
    assert count_builds.built == 2


def test_python_numbers_are_weak_and_integers_become_float64():
    x = np.arange(3, dtype=np.float32)
    out = eg.compile("y_i = a x_i + sin(0.5) x_i")(a=0.5, x=x)["y"]
    assert out.dtype == np.float32
    close(out, (0.5 + np.sin(0.5)) * x.astype(np.float64), rtol=1e-6)
    ints = eg.compile("y_i = A_ij x_j")(A=np.eye(2, dtype=np.int64), x=np.array([1, 2]))["y"]
    assert ints.dtype == np.float64 and list(ints) == [1.0, 2.0]


def test_nan_propagates_without_runtime_warnings():
    # pyproject turns RuntimeWarning into an error; evaluate is silent here, so compiled code is.
    program = eg.parse(BY_NAME["logistic_regression"].text)
    arrays = random_inputs(BY_NAME["logistic_regression"], np.random.default_rng(0))
    arrays["X"][0, 0] = np.nan
    out = eg.compile(program)(arrays)["L"]
    assert np.isnan(out)
    assert np.isnan(eg.compile(eg.hessian(program, "w"))(arrays)).any()


def test_constant_targets_are_arrays():
    out = eg.compile("a = 0.5; y_i = a x_i")(x=np.ones(3, dtype=np.float32))
    assert isinstance(out["a"], np.ndarray) and out["a"].dtype == np.float32 and out["a"].shape == ()
    only = eg.compile("L = 0.5")()
    assert isinstance(only["L"], np.ndarray) and only["L"].dtype == np.float64


# ---------------------------------------------------------------- 2. derivatives


@ENTRIES
def test_first_derivative_with_respect_to_every_input(entry):
    program = parse(entry)
    arrays = random_inputs(entry, np.random.default_rng(2))
    for wrt in program.inputs:
        d = quiet_diff(program, wrt)
        fn = eg.compile(d)
        close(fn(arrays, sizes=entry.sizes), eg.evaluate(d, arrays, sizes=entry.sizes), str(d))
        # one comment per emitted statement: the forward values the formula reads, and itself
        read = [n for n in eingrad.expr.mentions(d.expr) if d.program.is_target(n)]
        emitted = len(d.program.needed_for(read)) if read else 0
        assert len(comment_lines(fn.source)) == emitted + 1


@ENTRIES
def test_second_derivative_with_respect_to_every_input(entry):
    program = parse(entry)
    arrays = random_inputs(entry, np.random.default_rng(3))
    for wrt in program.inputs:
        d = quiet_diff(program, wrt, 2)
        close(eg.compile(d)(arrays, sizes=entry.sizes), eg.evaluate(d, arrays, sizes=entry.sizes), str(d))


HESSIANS = {
    "logistic_regression": (BY_NAME["logistic_regression"].text, BY_NAME["logistic_regression"].shapes, "w"),
    "mlp": (MLP, BY_NAME["mlp_softmax_cross_entropy"].shapes, "b2"),
    "rnn": (BY_NAME["rnn_three_steps"].text, BY_NAME["rnn_three_steps"].shapes, "U"),
    "quadratic_form": ("f = x_i A_ij x_j", {"x": (4,), "A": (4, 4)}, "x"),
    "matrix_factorisation": ("L = sum_{i,j}((X_ij - U_ik V_jk)^2)", {"X": (5, 4), "U": (5, 2), "V": (4, 2)}, "U"),
}


@pytest.mark.parametrize("name", list(HESSIANS))
def test_hessians_of_models(name):
    text, shapes, wrt = HESSIANS[name]
    rng = np.random.default_rng(4)
    arrays = {k: rng.standard_normal(shape) if shape else 0.3 for k, shape in shapes.items()}
    h = eg.hessian(text, wrt)
    out = eg.compile(h)(arrays)
    n = int(np.prod(np.shape(arrays[wrt])))
    flat = out.reshape(n, n)
    close(flat, flat.T, "symmetric")
    close(out, eg.evaluate(h, arrays), str(h))


def test_logistic_regression_hessian_writes_lam_into_the_diagonal():
    entry = BY_NAME["logistic_regression"]
    h = eg.hessian(entry.text, "w")
    rng = np.random.default_rng(5)
    X, y, w, lam = rng.standard_normal((40, 6)), rng.choice([-1.0, 1.0], 40), rng.standard_normal(6), 0.3
    fn = eg.compile(h)
    out = fn(X=X, y=y, w=w, lam=lam)
    s = 1.0 / (1.0 + np.exp(y * (X @ w)))
    close(out, X.T @ ((s * (1 - s))[:, None] * X) + lam * np.eye(6), "closed form")
    close(out, eg.evaluate(h, X=X, y=y, w=w, lam=lam), "evaluate")
    code = body(fn.source).lower()
    for word in ("eye", "identity", "_kronecker(", "einsum"):
        assert word not in code, f"{word!r} in the generated code:\n{fn.source}"
    assert "_diagonal(" in code and "+= lam" in code
    assert "x.t @ " in code  # Xᵀ (X·s): one BLAS call


@pytest.mark.parametrize(
    ("text", "wrt", "expected"),
    [
        ("f_i = W_ij v_j", "W", lambda a: np.einsum("ik,l->ikl", np.eye(3), a["v"])),
        ("Y_nh = X_nd W_dh + b_h", "W", lambda a: np.einsum("nd,hk->nhdk", a["X"], np.eye(2))),
        ("Y_nh = X_nd W_dh + b_h", "b", lambda a: np.broadcast_to(np.eye(2), (5, 2, 2))),
        ("y_i = a x_i", "x", lambda a: a["a"] * np.eye(3)),
    ],
)
def test_jacobians_with_deltas(text, wrt, expected):
    rng = np.random.default_rng(6)
    shapes = {"W": (3, 4), "v": (4,), "X": (5, 4), "b": (2,), "x": (3,)}
    if "X_nd" in text:
        shapes["W"] = (4, 2)
    program = eg.parse(text)
    arrays = {k: rng.standard_normal(shapes[k]) if k != "a" else 0.7 for k in program.inputs}
    d = eg.diff(program, wrt)
    fn = eg.compile(d)
    out = fn(arrays)
    close(out, expected(arrays), str(d))
    close(out, eg.evaluate(d, arrays), str(d))
    code = body(fn.source)
    assert "_kronecker(" not in code and "eye" not in code
    assert "_diagonal(" in code, fn.source


def test_jacobian_of_w_v_writes_v_into_the_diagonal():
    d = eg.diff("f_i = W_ij v_j", "W")
    fn = eg.compile(d)
    out = fn(W=np.ones((3, 4)), v=np.arange(4.0))
    # assigned into the fresh zeros (+= would read the zeroed pages first)
    assert "_diagonal(dfdW, 'aab->ab')[...] = v" in fn.source
    close(out, np.einsum("ik,l->ikl", np.eye(3), np.arange(4.0)))


def test_two_deltas_on_one_diagonal_both_count():
    """The first diagonal term is assigned into fresh zeros, later ones are added: the
    Hessian of x_i x_j x_k-like forms with two delta terms on overlapping diagonals."""
    d = eg.diff("f_ij = x_i x_j", "x")  # δ_ik x_j + x_i δ_jk: overlap where i = j = k
    x = np.array([1.0, 2.0, 3.0])
    out = eg.compile(d)(x=x)
    expected = np.einsum("ik,j->ijk", np.eye(3), x) + np.einsum("i,jk->ijk", x, np.eye(3))
    close(out, expected)
    close(out, eg.evaluate(d, x=x))


def test_derivative_takes_the_arrays_its_program_takes():
    program = eg.parse("y_i = A_ij x_j; z = c y_i; M = B_ij")
    rng = np.random.default_rng(8)
    arrays = {"A": rng.standard_normal((3, 4)), "x": rng.standard_normal(4), "c": 0.5,
              "B": rng.standard_normal((2, 2))}
    d = eg.diff(program, "x", output="z")
    close(eg.compile(d)(arrays), eg.evaluate(d, arrays))
    # A zero derivative: wrt's shape and dtype, without running what the output does not need.
    zero = quiet_diff(program, "B", output="z")
    arrays32 = {k: v.astype(np.float32) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    out = eg.compile(zero)(arrays32)
    assert out.shape == (2, 2) and out.dtype == np.float32 and not out.any()
    with pytest.raises(eg.MissingInputError, match="'B'"):
        eg.compile(zero)({k: v for k, v in arrays.items() if k != "B"})


def test_derivative_with_declared_sizes():
    entry = BY_NAME["delta4_declared"]
    arrays = random_inputs(entry, np.random.default_rng(9))
    d = eg.diff(entry.text, "x")
    close(eg.compile(d)(arrays, sizes=entry.sizes), eg.evaluate(d, arrays, sizes=entry.sizes))
    with pytest.raises(eg.SizeError):
        eg.compile(d)(arrays)


# ---------------------------------------------------------------- 3. gradient programs


@pytest.mark.parametrize(("name", "program", "arrays"), GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_gradient_programs(name, program, arrays):
    fn = eg.compile(program)
    out = fn(arrays)
    expected = eg.evaluate(program, arrays)
    assert list(out) == list(expected)
    for target in expected:
        close(out[target], expected[target], f"{name}: {target}")
    assert len(comment_lines(fn.source)) == len(program)
    f32 = fn({k: v.astype(np.float32) for k, v in arrays.items()})
    for target in expected:
        assert f32[target].dtype == np.float32, target
        close(f32[target], expected[target], f"{name}: {target} (float32)", rtol=2e-4)


def test_affine_gradient_is_the_closed_form():
    _, program, arrays = GRADIENTS[0]
    fn = eg.compile(program)
    out = fn(arrays)
    close(out["dLdW"], arrays["X"].T @ arrays["dLdY"])
    close(out["dLdb"], arrays["dLdY"].sum(axis=0))
    close(out["dLdX"], arrays["dLdY"] @ arrays["W"].T)
    assert body(fn.source).count(" @ ") == 3, fn.source  # Y, dLdW, dLdX: one BLAS call each


def test_mlp_gradient_against_finite_differences_of_the_compiled_loss():
    _, program, arrays = GRADIENTS[1]
    forward = eg.compile(MLP)
    grads = eg.compile(program)(arrays)
    rng = np.random.default_rng(10)
    direction = rng.standard_normal(arrays["W2"].shape)
    eps = 1e-6
    plus = forward({**arrays, "W2": arrays["W2"] + eps * direction})["L"]
    minus = forward({**arrays, "W2": arrays["W2"] - eps * direction})["L"]
    close((plus - minus) / (2 * eps), np.sum(grads["dLdW2"] * direction), rtol=1e-6)


# ---------------------------------------------------------------- 4. random programs


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_random_program_and_its_derivative(seed):
    rp = random_program(np.random.default_rng(seed))
    program = rp.parse()
    rng = np.random.default_rng([seed, 1])
    arrays = rp.random_inputs(rng)
    context = f"seed {seed}; the program:\n{rp.text}"
    before = {k: np.copy(v) for k, v in arrays.items()}
    out = eg.compile(program)(arrays)
    expected = eg.evaluate(program, arrays)
    for name in expected:
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-9, atol=1e-12, equal_nan=True,
                                   err_msg=f"{name}; {context}")
    # Only the last target asked for: intermediates are released and their buffers reused.
    last = program.targets[-1]
    np.testing.assert_allclose(eg.compile(program, outputs=[last])(arrays)[last], expected[last], rtol=1e-9,
                               atol=1e-12, equal_nan=True, err_msg=f"{last} alone; {context}")
    if program.inputs:
        wrt = program.inputs[int(rng.integers(len(program.inputs)))]
        d = quiet_diff(program, wrt)
        np.testing.assert_allclose(eg.compile(d)(arrays), eg.evaluate(d, arrays), rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=f"{d}; {context}")
    for k, v in before.items():  # writing into dying buffers never touches an input
        np.testing.assert_array_equal(arrays[k], v, err_msg=f"input {k} was changed; {context}")


# ---------------------------------------------------------------- 4b. buffers and shared work


def test_inputs_and_earlier_results_are_never_written():
    """Steps write into dying temporaries only: inputs, and arrays returned by an earlier
    call, are left as they were (every corpus program, its Jacobians, the gradients)."""
    cases = [(parse(e), random_inputs(e, np.random.default_rng(3)), e.sizes) for e in CORPUS]
    cases += [(quiet_diff(program, wrt), arrays, sizes) for program, arrays, sizes in list(cases)
              for wrt in program.inputs[:2]]
    cases += [(program, arrays, None) for _, program, arrays in GRADIENTS]
    for obj, arrays, sizes in cases:
        before = {k: np.copy(v) for k, v in arrays.items()}
        fn = eg.compile(obj)
        first = fn(arrays, sizes=sizes)
        kept = {k: np.copy(v) for k, v in first.items()} if isinstance(first, dict) else np.copy(first)
        fn(arrays, sizes=sizes)
        for k, v in before.items():
            np.testing.assert_array_equal(arrays[k], v, err_msg=f"{obj}: input {k} was changed")
        if isinstance(first, dict):
            for k, v in kept.items():
                np.testing.assert_array_equal(first[k], v, err_msg=f"{obj}: result {k} was changed")
        else:
            np.testing.assert_array_equal(first, kept, err_msg=f"{obj}: result was changed")


def test_dying_temporaries_hold_the_next_step():
    fn = eg.compile(eg.grad("L = sum_{i,j}((X_ij - U_ik V_jk)^2)", wrt=["U", "V"]), outputs=["dLdU", "dLdV"])
    rng = np.random.default_rng(4)
    X, U, V = rng.standard_normal((5, 4)), rng.standard_normal((5, 2)), rng.standard_normal((4, 2))
    out = fn(X=X, U=U, V=V)
    R = X - U @ V.T
    close(out["dLdU"], -2 * R @ V)
    close(out["dLdV"], -2 * R.T @ U)
    code = body(fn.source)
    assert "_t2 = xp.subtract(X, _t1, out=_t1)" in code, fn.source  # the residual in UVᵀ's buffer
    assert "_t2.T @ U" in code, fn.source  # Rᵀ U read through a transposed view, not copied


def test_numpy_strings_name_outputs():
    """Target names taken from numpy arrays are written into the code as plain strings."""
    program = eg.parse(MLP)
    fn = eg.compile(program, outputs=np.array(["Z"]))
    assert "return {'Z': Z}" in fn.source
    rng = np.random.default_rng(9)
    arrays = {"X": rng.standard_normal((4, 3)), "W1": rng.standard_normal((3, 5)), "b1": rng.standard_normal(5),
              "W2": rng.standard_normal((5, 2)), "b2": rng.standard_normal(2)}
    close(fn(arrays)["Z"], eg.evaluate(program, arrays, outputs=["Z"])["Z"])


def test_outputs_need_only_the_inputs_they_read():
    """As evaluate(outputs=): Z alone does not need the labels Y the loss reads; passing
    them anyway is accepted, an input of no statement is not."""
    program = eg.parse(MLP)
    rng = np.random.default_rng(9)
    arrays = {"X": rng.standard_normal((4, 3)), "W1": rng.standard_normal((3, 5)), "b1": rng.standard_normal(5),
              "W2": rng.standard_normal((5, 2)), "b2": rng.standard_normal(2)}
    fn = eg.compile(program, outputs=["Z"])
    expected = eg.evaluate(program, arrays, outputs=["Z"])["Z"]
    close(fn(arrays)["Z"], expected)
    close(fn(dict(arrays, Y=np.eye(2)[[0, 1, 1, 0]]))["Z"], expected)
    with pytest.raises(eg.UnknownInputError, match="'Q' is not an input"):
        fn(dict(arrays, Q=np.ones(2)))


def test_mixed_dtypes_are_not_written_in_place():
    """float32 X and float64 w give float64, as evaluate does: no float64 step may be
    written into a float32 buffer."""
    program = eg.parse("z_n = tanh(X_nd w_d) + X_nd X_nd")
    X = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32)
    w = np.random.default_rng(6).standard_normal(3)
    fn = eg.compile(program)
    out = fn(X=X, w=w)["z"]
    assert out.dtype == np.float64
    close(out, eg.evaluate(program, X=X, w=w)["z"])
    assert "out=" not in body(fn.source)
    fn(X=X, w=w.astype(np.float32))
    assert "out=" in body(fn.source)  # one float dtype: the buffers are reused


def test_a_value_repeated_under_other_index_names_is_computed_once():
    """(1 - s_t²) ⊙ dLds_t feeds dLds_{t-1}, dLdW, dLdU and dLdb under different index
    names: one step per time step, not four."""
    steps = 4
    fn = eg.compile(eg.grad(rnn_program(steps), wrt=["W", "U", "b"]), outputs=["dLdW", "dLdU", "dLdb"])
    arrays = rnn_arrays(np.random.default_rng(8), steps)
    expected = eg.evaluate(eg.grad(rnn_program(steps), wrt=["W", "U", "b"]), arrays)
    out = fn(arrays)
    for name in out:
        close(out[name], expected[name], name)
    code = body(fn.source)
    assert code.count("xp.subtract(1.0, ") == steps, fn.source


# ---------------------------------------------------------------- 5. bad input


def test_unknown_backend_lists_the_backends():
    with pytest.raises(BackendError) as info:
        eg.compile("y = x", backend="numpyy")
    assert isinstance(info.value, eg.EingradError)
    for name in BACKENDS:
        assert name in str(info.value)
    assert "did you mean 'numpy'" in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_missing_cupy_names_the_extra():
    with pytest.raises(BackendError, match=r"pip install 'eingrad\[cupy\]'") as info:
        eg.compile("y_i = A_ij x_j", backend="cupy")
    assert "'cupy'" in str(info.value) and isinstance(info.value, eg.EingradError)


def test_missing_package_names_the_extra(monkeypatch):
    fake = Backend("fake", "eingrad_no_such_array_package", "fakeextra", functions=dict(BACKENDS["numpy"].functions))
    monkeypatch.setitem(BACKENDS, "fake", fake)
    with pytest.raises(BackendError, match=r"pip install 'eingrad\[fakeextra\]'"):
        eg.compile("y_i = A_ij x_j", backend="fake")


PWNED = "_eingrad_test_pwned"


def payload(marker: str = PWNED) -> str:
    return f"__import__('builtins').__setattr__({marker!r}, 1)"


BAD_TENSOR_NAMES = [
    "os.system('x')",
    "__import__",
    "__builtins__",
    "x; " + payload(),
    "x\n" + payload(),
    payload(),
    "_t1",
    "a b",
    "",
]


def assert_nothing_ran():
    assert not hasattr(builtins, PWNED), "injected code ran"


@pytest.mark.parametrize("name", BAD_TENSOR_NAMES, ids=repr)
@pytest.mark.parametrize("where", ["input", "target", "function"])
def test_a_tensor_name_cannot_inject_code(name, where):
    if where == "input":
        stmt = Statement("y", ("i",), Tensor(name, ("i",)))
    elif where == "target":
        stmt = Statement(name, ("i",), Tensor("x", ("i",)))
    else:
        stmt = Statement("y", ("i",), Call(name, Tensor("x", ("i",))))
    program = Program((stmt,))
    with pytest.raises(eg.EingradError):
        fn = eg.compile(program)
        fn({"x": np.ones(2), name: np.ones(2)} if where == "input" else {"x": np.ones(2)})
    assert_nothing_ran()


# An index name that ends the comment line the statement is written in: before the
# compiler validated index names, this one ran its payload when the code was built.
BAD_INDEX_NAMES = [
    "i\n" + payload() + "\ndef h(a):\n    '''\n#",
    "i\r" + payload(),
    "i)\n" + payload(),
    "i j",
    "1",
]


@pytest.mark.parametrize("index", BAD_INDEX_NAMES, ids=repr)
def test_an_index_name_cannot_inject_code(index):
    program = Program((Statement("y", (index,), Tensor("x", (index,))),))
    with pytest.raises(eg.EingradError):
        eg.compile(program)(x=np.ones(2))
    assert_nothing_ran()


def test_a_derivative_of_a_program_with_a_bad_name_cannot_inject_code():
    bad = "w\n" + payload()
    program = Program((Statement("L", (), Add((Tensor("x", ()), Tensor(bad, ())))),))
    d = quiet_diff(program, bad)
    with pytest.raises(eg.EingradError):
        eg.compile(d)({"x": 1.0, bad: 2.0})
    assert_nothing_ran()


def test_names_that_are_python_names_compile_correctly():
    # Names of builtins, of the generated code's own variables, and names that Python reads
    # as others (NFKC: 𝐱 is x, 𝐱𝐩 is xp) do not clash.
    text = "y_i = xp_i + arrays_i + len_i + print_i + compiled_i + 𝐱_i + 2 x_i + 3 𝐱𝐩_i"
    program = eg.parse(text)
    rng = np.random.default_rng(11)
    arrays = {name: rng.standard_normal(3) for name in program.inputs}
    close(eg.compile(program)(arrays)["y"], eg.evaluate(program, arrays)["y"])
    close(eg.compile(program)(arrays)["y"], sum(arrays.values()) + arrays["x"] + 2 * arrays["𝐱𝐩"])


def _no_generated_frames(err: BaseException) -> None:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    assert "<eingrad" not in text, text


def test_wrong_sizes_raise_size_error():
    fn = eg.compile("C_ik = A_ij B_jk")
    fn(A=np.ones((2, 3)), B=np.ones((3, 4)))
    with pytest.raises(eg.SizeError, match="'j'") as info:
        fn(A=np.ones((2, 3)), B=np.ones((5, 4)))
    _no_generated_frames(info.value)
    with pytest.raises(eg.RankError) as info:
        fn(A=np.ones((2, 3, 1)), B=np.ones((3, 4)))
    _no_generated_frames(info.value)
    d = eg.compile(eg.diff("f_i = W_ij v_j", "W"))
    with pytest.raises(eg.SizeError):
        d(W=np.ones((3, 4)), v=np.ones(5))


def test_missing_unknown_and_non_numeric_inputs():
    fn = eg.compile("y_i = A_ij x_j")
    with pytest.raises(eg.MissingInputError, match="'x'") as info:
        fn(A=np.ones((2, 3)))
    _no_generated_frames(info.value)
    with pytest.raises(eg.UnknownInputError, match="'z'"):
        fn(A=np.ones((2, 3)), x=np.ones(3), z=np.ones(3))
    with pytest.raises(eg.InputTypeError):
        fn(A=np.ones((2, 3)), x=np.array(["a", "b", "c"]))
    with pytest.raises(eg.MissingInputError):
        eg.compile(eg.diff("y_i = A_ij x_j", "A"))(A=np.ones((2, 3)))
    with pytest.raises(eg.SizeError):
        eg.compile(BY_NAME["dfdW_as_program"].text)(v=np.ones(3), sizes={"i": 2.5})


# ---------------------------------------------------------------- 6. other backends

BACKEND_PROGRAMS = [
    "matmul", "logistic_regression", "mlp_softmax_cross_entropy", "rnn_three_steps",
    "dfdW_as_program", "delta_eats_index", "scalars_scale_shift", "softmax", "svd_delta",
    "later_statement_uses_earlier",
]
BACKEND_DERIVATIVES = [
    ("linear_vector", "W", 1), ("logistic_regression", "w", 2), ("mlp_softmax_cross_entropy", "W2", 1),
    ("mlp_softmax_cross_entropy", "b2", 2), ("rnn_three_steps", "U", 1), ("dYdW_as_program", "X", 1),
    ("scalars_only", "a", 2),
]


def backend_cases():
    for name in BACKEND_PROGRAMS:
        if name in BY_NAME:
            entry = BY_NAME[name]
            yield f"program:{name}", parse(entry), random_inputs(entry, np.random.default_rng(12)), entry.sizes
    for name, wrt, order in BACKEND_DERIVATIVES:
        if name in BY_NAME:
            entry = BY_NAME[name]
            d = quiet_diff(parse(entry), wrt, order)
            yield f"d{order}:{name}/{wrt}", d, random_inputs(entry, np.random.default_rng(13)), entry.sizes
    for name, program, arrays in GRADIENTS:
        yield f"grad:{name}", program, arrays, None


BACKEND_CASES = list(backend_cases())
CASE_IDS = [c[0] for c in BACKEND_CASES]


def compare_backend(backend, obj, arrays, sizes, convert, to_numpy, rtol=1e-10):
    expected = eg.evaluate(obj, arrays, sizes=sizes)
    given = {k: convert(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    out = eg.compile(obj, backend=backend)(given, sizes=sizes)
    if isinstance(expected, dict):
        assert list(out) == list(expected)
        for name in expected:
            close(to_numpy(out[name]), expected[name], f"{backend}: {name}", rtol=rtol)
    else:
        close(to_numpy(out), expected, f"{backend}: {obj}", rtol=rtol)
    return out


# ---- torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the torch backend needs torch: pip install 'eingrad[torch]'")


@pytest.mark.parametrize(("case", "obj", "arrays", "sizes"), BACKEND_CASES, ids=CASE_IDS)
def test_torch_backend(torch, case, obj, arrays, sizes):
    out = compare_backend("torch", obj, arrays, sizes, torch.from_numpy, lambda t: t.numpy())
    first = next(iter(out.values())) if isinstance(out, dict) else out
    assert isinstance(first, torch.Tensor) and first.dtype == torch.float64


@ENTRIES
def test_torch_backend_on_the_corpus_and_its_jacobians(torch, entry):
    program = parse(entry)
    arrays = random_inputs(entry, np.random.default_rng(14))
    compare_backend("torch", program, arrays, entry.sizes, torch.from_numpy, lambda t: t.numpy())
    for wrt in program.inputs:
        d = quiet_diff(program, wrt)
        compare_backend("torch", d, arrays, entry.sizes, torch.from_numpy, lambda t: t.numpy())


def test_torch_float32_stays_float32(torch):
    _, program, arrays = GRADIENTS[1]
    out = eg.compile(program, backend="torch")({k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()})
    expected = eg.evaluate(program, arrays)
    for name, value in out.items():
        assert value.dtype == torch.float32, name
        close(value.numpy(), expected[name], name, rtol=2e-4)


def test_torch_inputs_that_require_grad_get_code_autograd_can_follow(torch):
    """A step writes into a dying buffer (out=) only where autograd does not record:
    tensors that require grad get code without out=, and backward through it is right."""
    _, program, arrays = GRADIENTS[1]  # the MLP's gradient program
    fn = eg.compile(program, backend="torch", outputs=["dLdW1"])
    plain = {k: torch.from_numpy(v) for k, v in arrays.items()}
    fn(plain)
    assert "out=" in body(fn.source)
    tracked = dict(plain, W1=plain["W1"].clone().requires_grad_())
    out = fn(tracked)["dLdW1"]
    assert "out=" not in body(fn.source)
    close(out.detach().numpy(), eg.evaluate(program, arrays)["dLdW1"], "dLdW1")
    (direction,) = torch.autograd.grad((out * out).sum(), tracked["W1"])  # a Hessian-vector product
    eps = 1e-6
    bumped = dict(arrays, W1=arrays["W1"] + eps * direction.numpy())
    f = lambda a: float((eg.evaluate(program, a)["dLdW1"] ** 2).sum())  # noqa: E731
    assert abs((f(bumped) - f(arrays)) / eps - float((direction * direction).sum())) < 1e-3 * float(
        (direction * direction).sum()) + 1e-6


def test_powers_of_constants_are_arrays_of_the_inputs_dtype(torch):
    """0.25^-0.5 and 2^0.5 in generated code: torch's sqrt takes no Python float."""
    program = eg.parse("z_i = x_i + .25**-0.5 - 2**0.5 + 4**-1")
    x = np.arange(3.0)
    expected = eg.evaluate(program, x=x)["z"]
    close(eg.compile(program, backend="torch")(x=torch.from_numpy(x))["z"].numpy(), expected)
    out = eg.compile(program)(x=x.astype(np.float32))["z"]
    assert out.dtype == np.float32
    close(out, expected, rtol=1e-6)


def test_torch_writes_deltas_into_the_diagonal(torch):
    h = eg.hessian(BY_NAME["logistic_regression"].text, "w")
    fn = eg.compile(h, backend="torch")
    arrays = random_inputs(BY_NAME["logistic_regression"], np.random.default_rng(15))
    close(fn({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}).numpy(),
          eg.evaluate(h, arrays))
    assert "_diagonal(" in body(fn.source) and "_kronecker(" not in body(fn.source)


# ---- jax


@pytest.fixture(scope="module")
def jax():
    jax = pytest.importorskip("jax", reason="the jax backend needs jax: pip install 'eingrad[jax]'")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # compare in float64
    yield jax
    jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize(("case", "obj", "arrays", "sizes"), BACKEND_CASES, ids=CASE_IDS)
def test_jax_backend(jax, case, obj, arrays, sizes):
    import jax.numpy as jnp

    compare_backend("jax", obj, arrays, sizes, jnp.asarray, np.asarray)


@pytest.mark.parametrize(("case", "obj", "arrays", "sizes"), BACKEND_CASES, ids=CASE_IDS)
def test_jax_backend_under_jit(jax, case, obj, arrays, sizes):
    import jax.numpy as jnp

    fn = eg.compile(obj, backend="jax")
    given = {k: jnp.asarray(v) for k, v in arrays.items()}
    jitted = jax.jit(lambda a: fn(a, sizes=sizes))
    out = jitted(given)
    again = jitted(given)  # traced once, then run from XLA's cache
    expected = eg.evaluate(obj, arrays, sizes=sizes)
    if isinstance(expected, dict):
        for name in expected:
            close(np.asarray(out[name]), expected[name], name)
            close(np.asarray(again[name]), expected[name], name)
    else:
        close(np.asarray(out), expected, str(obj))
    # The generated function itself (not only the wrapper) is jit-able.
    (generated, _), = fn._cache.values()
    direct = jax.jit(generated)(given)
    assert set(direct) == set(fn.outputs)


def test_jax_hessian_with_a_delta_is_traced_without_in_place_writes(jax):
    import jax.numpy as jnp

    h = eg.hessian(BY_NAME["logistic_regression"].text, "w")
    fn = eg.compile(h, backend="jax")
    arrays = random_inputs(BY_NAME["logistic_regression"], np.random.default_rng(16))
    out = jax.jit(lambda a: fn(a))({k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()})
    close(np.asarray(out), eg.evaluate(h, arrays))
    assert "_diagonal_add(" in body(fn.source) and "+=" not in body(fn.source)


# ---- dask


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.array", reason="the dask backend needs dask: pip install 'eingrad[dask]'")
    distributed = pytest.importorskip(
        "dask.distributed", reason="the dask tests need dask.distributed: pip install 'eingrad[dask]'"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "port in use" and similar notices from the cluster
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def chunked(value: np.ndarray):
    import dask.array as da

    return da.from_array(value, chunks=tuple(max(1, (n + 1) // 2) for n in value.shape))


@pytest.mark.parametrize(("case", "obj", "arrays", "sizes"), BACKEND_CASES, ids=CASE_IDS)
def test_dask_backend_on_a_local_cluster(dask_client, case, obj, arrays, sizes):
    import dask
    import dask.array as da

    given = {k: chunked(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    out = eg.compile(obj, backend="dask")(given, sizes=sizes)
    values = out if isinstance(out, dict) else {"": out}
    assert all(isinstance(v, da.Array) for v in values.values())  # lazy: nothing computed yet
    (computed,) = dask.compute(values)  # on the client's cluster
    expected = eg.evaluate(obj, arrays, sizes=sizes)
    expected = expected if isinstance(expected, dict) else {"": expected}
    for name in expected:
        close(computed[name], expected[name], f"dask: {case} {name}")


def test_dask_logistic_regression_on_many_chunks(dask_client):
    import dask.array as da

    rng = np.random.default_rng(17)
    n, d = 4000, 30
    arrays = {"X": rng.standard_normal((n, d)), "y": rng.choice([-1.0, 1.0], n), "w": rng.standard_normal(d),
              "lam": 0.1}
    given = {"X": da.from_array(arrays["X"], chunks=(500, 15)), "y": da.from_array(arrays["y"], chunks=500),
             "w": da.from_array(arrays["w"], chunks=15), "lam": 0.1}
    text = BY_NAME["logistic_regression"].text
    g = eg.grad(text, wrt=["w"])
    grads = eg.compile(g, backend="dask")(given)
    assert grads["dLdw"].npartitions > 1
    close(dask_client.compute(grads["dLdw"]).result(), eg.evaluate(g, arrays)["dLdw"])
    h = eg.hessian(text, "w")
    hess = eg.compile(h, backend="dask")(given)
    assert hess.npartitions > 1
    close(dask_client.compute(hess).result(), eg.evaluate(h, arrays))


def test_a_tensor_passed_only_for_its_shape_may_be_left_out():
    """dLdv has v's shape but reads only B and dLdh1 (an index is also named v)."""
    g = eg.grad("h1[hid, s, v] = B_slv v[l, s, hid]", ["v"], seed="dLdh1")
    rng = np.random.default_rng(11)
    B, G = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 2, 4))
    fn = eg.compile(g, outputs=["dLdv"])
    expected = np.einsum("slv,hsv->lsh", B, G)
    close(fn(B=B, dLdh1=G)["dLdv"], expected)
    close(fn(B=B, dLdh1=G, v=np.ones((3, 2, 5)))["dLdv"], expected)
    close(eg.evaluate(g, B=B, dLdh1=G, outputs=["dLdv"])["dLdv"], expected)


def test_an_error_inside_generated_code_names_its_statement():
    """The array library's own error (here raised by a stand-in step) comes back as a
    CompiledCallError naming the statement whose code failed, and the step."""
    source = "def compiled(arrays):\n    X = arrays['X']\n    # Y_ij = X_ij^2\n    Y = X @ X\n    return {'Y': Y}\n"
    namespace: dict = {}
    exec(compile(source, "<eingrad numpy>", "exec"), namespace)  # noqa: S102 - a fixed test string
    with pytest.raises(eg.CompiledCallError) as info:
        compile_module._run((namespace["compiled"], source), {"X": np.ones((2, 3))}, "numpy")
    message = str(info.value)
    assert "failed in the code for Y_ij = X_ij^2" in message and "the step: Y = X @ X" in message
    assert "ValueError" in message and info.value.hint


def test_torch_arrays_of_two_dtypes_are_reported_with_the_statement(torch):
    fn = eg.compile("Y_nh = X_nd W_dh + b_h", backend="torch")
    with pytest.raises(eg.CompiledCallError, match="in the code for Y_nh = X_nd W_dh \\+ b_h"):
        fn(X=torch.ones(3, 2, dtype=torch.float32), W=torch.ones(2, 4, dtype=torch.float64), b=torch.ones(4))


@pytest.mark.parametrize(
    "text, merged",
    [
        ("b_h = sum_n(A_nh) + sum_i(B_ih) - sum_j(C_jh)", True),
        ("s = sum_{n,h}(A_nh) + sum_{i,k}(B_ik) + sum_{j,l}(C_lj)", True),  # B, C: h-by-n and n-by-h axes
        ("b_h = sum_n(A_nh D_nh) + sum_i(B_ih) + sum_j(C_jh D_jh)", True),
        ("W_dh = sum_n(X_nd A_nh) + sum_i(X_id B_ih) + sum_j(X_jd C_jh)", False),  # products stay contractions
    ],
)
def test_sums_of_reductions_are_one_reduction(text, merged):
    """Σ_n a_nh + Σ_i b_ih + Σ_j c_jh is computed as Σ_n (a + b + c)_nh where that widens
    no product; the value is the same either way."""
    program = eg.parse(text)
    rng = np.random.default_rng(12)
    size = {"n": 5, "i": 5, "j": 5, "h": 3, "k": 3, "l": 5, "d": 2}
    arrays = {name: rng.standard_normal(tuple(size[i] for i in program.first_use(name).indices))
              for name in program.inputs}
    if "C_lj" in text:  # C's axes: (l, j) with l of n's size and j of h's size
        arrays["C"] = rng.standard_normal((5, 3))
        arrays["B"] = rng.standard_normal((5, 3))
    fn = eg.compile(program)
    out = fn(arrays)
    expected = eg.evaluate(program, arrays)
    for name in expected:
        close(out[name], expected[name], name)
    sums = body(fn.source).count("xp.sum(")
    assert (sums == 1) == merged, fn.source


@pytest.mark.parametrize("steps", [4, 7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_an_unrolled_loops_input_products_are_one_stacked_product(steps, dtype):
    """X_t U for every step is one product of the stacked inputs, a row block per step (as
    the closed form writes an RNN), and the gradient is unchanged (U_dh and a transposed W_hd)."""
    b = eg.ProgramBuilder()
    b.add("H1_nh = tanh(X1_nd U_dh + V_hd Y1_nd)")
    for t in range(2, steps + 1):
        b.add(f"H{t}_nh = tanh(X{t}_nd U_dh + H{t - 1}_nk W_kh + V_hd Y{t}_nd)")
    b.add(f"L = sum_{{n,h}}(H{steps}_nh T_nh)")
    program = b.build()
    g = eg.grad(program, wrt=["U", "W", "V", "X1"])
    rng = np.random.default_rng(13)
    arrays = {"U": rng.standard_normal((4, 5)), "W": rng.standard_normal((5, 5)) / 3,
              "V": rng.standard_normal((5, 4)), "T": rng.standard_normal((3, 5))}
    for t in range(1, steps + 1):
        arrays[f"X{t}"] = rng.standard_normal((3, 4))
        arrays[f"Y{t}"] = rng.standard_normal((3, 4))
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    before = {k: v.copy() for k, v in arrays.items()}
    fn = eg.compile(g, outputs=["dLdU", "dLdW", "dLdV", "dLdX1"])
    out = fn(arrays)
    expected = eg.evaluate(g, arrays)
    for name in out:
        assert out[name].dtype == dtype
        close(out[name], expected[name], name, rtol=1e-10 if dtype == np.float64 else 2e-4)
    code = body(fn.source)
    members = ", ".join(f"X{t}" for t in range(1, steps + 1))
    assert f"xp.concatenate([{members}], axis=0) @ U" in code, fn.source
    assert "axis=0) @ V.T" in code, fn.source  # V_hd Y_nd: the shared matrix transposed
    for k, v in before.items():
        np.testing.assert_array_equal(arrays[k], v)


# ---- jax: jit-compiled by default, float64 without x64 said aloud


def test_jax_function_is_already_jitted_and_composes(jax):
    import jax.numpy as jnp

    g = eg.grad("z_n = X_nd w_d; L = sum_n(softplus(-y_n z_n)) + 0.5 lam w_d w_d", wrt=["w"])
    fn = eg.compile(g, backend="jax", outputs=["dLdw"])
    rng = np.random.default_rng(3)
    X, y, w = rng.normal(size=(20, 4)), np.sign(rng.normal(size=20)), rng.normal(size=4)
    out = fn(X=X, y=y, w=w, lam=0.1)["dLdw"]
    close(np.asarray(out), eg.evaluate(g, X=X, y=y, w=w, lam=0.1)["dLdw"])
    (generated, _), = fn._cache.values()
    assert hasattr(generated.jitted, "lower")  # a jax.jit-wrapped function
    stacked = jax.vmap(lambda v: fn(X=X, y=y, w=v, lam=0.1)["dLdw"])(jnp.stack([jnp.asarray(w)] * 3))
    assert stacked.shape == (3, 4)
    hvp = jax.grad(lambda v: fn(X=X, y=y, w=v, lam=0.1)["dLdw"].sum())(jnp.asarray(w))
    assert hvp.shape == (4,)


def test_jax_float64_inputs_without_x64_warn_once(jax):
    g = eg.parse("y_i = A_ij x_j")
    rng = np.random.default_rng(4)
    A, x = rng.normal(size=(3, 2)), rng.normal(size=2)
    jax.config.update("jax_enable_x64", False)
    try:
        fn = eg.compile(g, backend="jax")
        with pytest.warns(eg.PrecisionWarning, match=r"jax_enable_x64.*True"):
            out = fn(A=A, x=x)["y"]
        assert str(out.dtype) == "float32"
        np.testing.assert_allclose(np.asarray(out), A @ x, rtol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fn(A=A, x=x)  # said once per compiled function
            eg.compile(g, backend="jax")(A=A.astype(np.float32), x=x.astype(np.float32))  # float32: nothing to say
    finally:
        jax.config.update("jax_enable_x64", True)

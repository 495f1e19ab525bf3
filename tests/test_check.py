"""eg.check_backward and eg.taylor_check (check.py): the guide's sanity checks as a tool.

Each model's forward pass is written again in plain numpy here; the gradient the tool takes
as correct is compared with central finite differences of that numpy forward pass, so the
tool is never checked against eingrad alone.  The user functions under test are the
classic hand-written backward passes, right and with the classic bugs.
"""

from __future__ import annotations

import numpy as np
import pytest

import eingrad as eg
from eingrad.check import BackwardCheckFailed, CheckError

AFFINE = "Y_nh = X_nd W_dh + b_h"
MLP = "Z_nh = X_nd W_dh + b_h; H_nh = tanh(Z_nh); Y_nk = H_nh V_hk"
LOGISTIC = "L = sum_n(softplus(-y_n X_nd w_d)) + 0.5 lam w_d w_d"
QUADRATIC = "f = x_i A_ij x_j"


def numeric_gradient(loss, arrays: dict, name: str, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``loss(**arrays)`` in every entry of ``arrays[name]``."""
    x = np.array(arrays[name], dtype=np.float64)
    out = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        out[k] = (loss(**{**arrays, name: up}) - loss(**{**arrays, name: down})) / (2 * h)
    return out


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


# ---------------------------------------------------------------- right backward passes pass


def affine_backward(X, W, b, dLdY):
    return {"W": X.T @ dLdY, "b": dLdY.sum(axis=0), "X": dLdY @ W.T}


def test_affine_backward_passes_and_the_truth_is_finite_differences():
    report = eg.check_backward(AFFINE, ["W", "b", "X"], affine_backward)
    assert report.ok and bool(report) and report.error is None
    assert [c.name for c in report.checks] == ["dLdW", "dLdb", "dLdX"]
    assert report.sizes == {"n": 5, "d": 3, "h": 4}  # small and distinct per index
    arrays = report.inputs
    G = arrays["dLdY"]

    def loss(X, W, b, dLdY):  # L = Σ G ⊙ Y: its gradient is the backward pass given G
        return float(np.sum(G * (X @ W + b)))

    for c in report.checks:
        np.testing.assert_allclose(c.expected, numeric_gradient(loss, arrays, c.wrt), rtol=1e-7, atol=1e-8)
    assert "✓ dLdW: right (shape (d, h) = (3, 4)" in str(report)


def test_mlp_backward_passes_and_gets_forward_values_by_name():
    def backward(X, W, V, H, dLdY):  # H is a forward value: asked for by name
        dLdH = dLdY @ V.T
        dLdZ = dLdH * (1 - H**2)
        return {"dLdW": X.T @ dLdZ, "dLdb": dLdZ.sum(0), "dLdV": H.T @ dLdY, "dLdX": dLdZ @ W.T}

    report = eg.check_backward(MLP, ["W", "b", "V", "X"], backward)
    assert report.ok, str(report)
    G = report.inputs["dLdY"]

    def loss(X, W, b, V, dLdY):
        return float(np.sum(G * (np.tanh(X @ W + b) @ V)))

    for c in report.checks:
        np.testing.assert_allclose(
            c.expected, numeric_gradient(loss, report.inputs, c.wrt), rtol=1e-6, atol=1e-8
        )


def test_logistic_loss_backward_passes():
    def backward(X, y, w, lam):
        return -X.T @ (y * sigmoid(-y * (X @ w))) + lam * w

    report = eg.check_backward(LOGISTIC, "w", backward)
    assert report.ok, str(report)

    def loss(X, y, w, lam):
        return float(np.sum(np.logaddexp(0, -y * (X @ w))) + 0.5 * lam * w @ w)

    np.testing.assert_allclose(report["w"].expected, numeric_gradient(loss, report.inputs, "w"), rtol=1e-6)


def test_the_same_inputs_every_time_and_rng_changes_them():
    one = eg.check_backward(AFFINE, "W", lambda X, dLdY: X.T @ dLdY)
    two = eg.check_backward(AFFINE, "W", lambda X, dLdY: X.T @ dLdY)
    other = eg.check_backward(AFFINE, "W", lambda X, dLdY: X.T @ dLdY, rng=np.random.default_rng(7))
    assert np.array_equal(one.inputs["X"], two.inputs["X"])
    assert not np.array_equal(one.inputs["X"], other.inputs["X"])


def test_sizes_and_inputs_can_be_chosen():
    report = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY.sum(0), sizes={"n": 7, "h": 2})
    assert report.ok and report.inputs["dLdY"].shape == (7, 2) and report.sizes["d"] not in (7, 2)
    X = np.arange(6.0).reshape(2, 3)
    report = eg.check_backward(AFFINE, "W", lambda X, dLdY: X.T @ dLdY, inputs={"X": X})
    assert report.ok and np.array_equal(report.inputs["X"], X) and report.inputs["dLdY"].shape[0] == 2


def test_the_report_as_the_tool_reads_it():
    report = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY.sum(0))
    assert report.raise_if_failed() is report
    assert report["b"] is report["dLdb"] and report["b"].ok
    assert str(report).startswith("check_backward: the gradient is right")
    assert "right" in report._repr_markdown_()


# ---------------------------------------------------------------- the classic bugs, diagnosed


def run_code(code: str, arrays: dict, target: str) -> np.ndarray:
    """Run the numpy code a report shows (eingrad's own generated text, not user input)."""
    namespace = {"np": np, **arrays}
    exec(code, namespace)  # noqa: S102
    return namespace[target]


def test_forgot_to_sum_over_the_batch_index():
    report = eg.check_backward(AFFINE, ["W", "b"], lambda X, dLdY: (X.T @ dLdY, dLdY))
    assert not report and report["W"].ok
    found = report["b"]
    assert found.problem == "shape" and found.got.shape == (5, 4)
    assert found.message.startswith(
        "dLdb must have b's shape (h,) = (4,), got (n, h) = (5, 4): did you forget to sum over the batch index n?"
    )
    assert "np.sum(yours, axis=0) has the right values" in found.message
    assert found.statements == ["dLdb_h = Σ_n dLdY_nh"]
    np.testing.assert_allclose(run_code(found.code, report.inputs, "dLdb"), report.inputs["dLdY"].sum(0))
    text = str(report)
    assert "✗ dLdb must have b's shape" in text and "dLdb_h = Σ_n dLdY_nh" in text and "np.sum(dLdY" in text


def test_summed_over_every_index_or_kept_the_summed_axis():
    scalar = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY.sum())["b"]
    assert scalar.problem == "shape" and "got () (a scalar): the axis of index h is missing" in scalar.message
    kept = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY.sum(0, keepdims=True))["b"]
    assert (
        "got (1, 4): it has an extra axis of length 1: did you keep a summed axis (keepdims=True"
        in kept.message
    )
    assert "np.squeeze(yours, axis=0) has the right values" in kept.message
    outer = eg.check_backward(AFFINE, "W", lambda X, dLdY: np.einsum("nd,nh->ndh", X, dLdY))["W"]
    assert "got (n, d, h) = (5, 3, 4): did you forget to sum over the batch index n?" in outer.message
    flat = eg.check_backward(AFFINE, "W", lambda X, dLdY: (X.T @ dLdY).ravel())["W"]
    assert "got (12,): the same number of entries in another arrangement" in flat.message


def test_transposed_weight_gradient():
    found = eg.check_backward(AFFINE, "W", lambda X, dLdY: dLdY.T @ X)["W"]
    assert found.problem == "shape"
    assert found.message.startswith(
        "dLdW must have W's shape (d, h) = (3, 4), got (h, d) = (4, 3): did you transpose?"
    )
    assert "Transposed back, yours has the right values: return its .T" in found.message
    assert found.statements == ["dLdW_dh = X_nd dLdY_nh"]
    np.testing.assert_allclose(
        run_code(found.code, eg.check_backward(AFFINE, "W", affine_backward).inputs, "dLdW"), found.expected
    )


def test_quadratic_form_gradient_missing_the_transpose_term():
    report = eg.check_backward(QUADRATIC, "x", lambda A, x: A @ x)  # should be (A + Aᵀ) x
    found = report["x"]
    A, x = report.inputs["A"], report.inputs["x"]
    right = numeric_gradient(lambda A, x: float(x @ A @ x), report.inputs, "x")
    np.testing.assert_allclose(found.expected, right, rtol=1e-7)
    error = np.abs(A @ x - right)
    worst = int(np.argmax(error))
    assert found.problem == "values" and found.factor is None
    assert found.where == (worst,) and found.abs_error == pytest.approx(error[worst], rel=1e-6)
    assert found.wrong == int(np.sum(error > 1e-5 * np.abs(right) + 1e-8 * np.max(np.abs(right))))
    assert f"The largest difference is at dfdx[i={worst}]: yours {(A @ x)[worst]:.6g}" in found.message
    assert "Yours lacks the term x_j A_ji" in found.message
    assert found.statements == ["dfdx_i = A_ij x_j + x_j A_ji"]
    np.testing.assert_allclose(run_code(found.code, report.inputs, "dfdx"), (A + A.T) @ x)


@pytest.mark.parametrize(
    ("fn", "factor", "words"),
    [
        (lambda A, x: -(A + A.T) @ x, -1.0, "Wrong sign: yours is exactly minus the correct gradient"),
        (lambda A, x: 2 * (A + A.T) @ x, 2.0, "Off by a factor of 2: yours is 2 times the correct one"),
        (lambda A, x: (A + A.T) @ x / 3, 1 / 3, "Off by a factor of 1/3"),
    ],
)
def test_constant_factors_are_named(fn, factor, words):
    found = eg.check_backward(QUADRATIC, "x", fn)["x"]
    assert found.problem == "values" and found.factor == pytest.approx(factor)
    assert words in found.message


def test_mean_over_the_batch_where_the_loss_sums():
    found = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY.mean(axis=0))["b"]
    assert found.factor == pytest.approx(1 / 5)
    assert "divided by |n| = 5: did you take a mean over n where the program sums over it?" in found.message


def test_one_term_with_the_wrong_sign():
    found = eg.check_backward(QUADRATIC, "x", lambda A, x: (A - A.T) @ x)["x"]
    assert "Yours has the sign of x_j A_ji flipped" in found.message


def test_nan_in_the_users_gradient():
    found = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY.sum(0) * np.array([1, np.nan, 1, 1]))["b"]
    assert (
        found.problem == "values"
        and found.where == (1,)
        and "1 of yours are NaN or infinite" in found.message
    )


def test_raise_if_failed_carries_the_report():
    report = eg.check_backward(AFFINE, "b", lambda dLdY: dLdY)
    with pytest.raises(BackwardCheckFailed, match="did you forget to sum over the batch index n"):
        report.raise_if_failed()
    assert isinstance(BackwardCheckFailed("x"), AssertionError)
    markdown = report._repr_markdown_()
    assert "✗ `dLdb`" in markdown and "```python" in markdown and "np.sum(dLdY" in markdown


def test_logistic_code_shown_runs_with_its_helpers():
    report = eg.check_backward(LOGISTIC, "w", lambda X, y, w, lam: -X.T @ y)
    found = report["w"]
    assert found.problem == "values"
    np.testing.assert_allclose(run_code(found.code, report.inputs, "dLdw"), found.expected, rtol=1e-12)


# ---------------------------------------------------------------- the user's function misbehaving


def test_user_function_raising_is_reported_not_raised():
    def backward(X, W, b, dLdY):
        raise ValueError("boom")

    report = eg.check_backward(AFFINE, "W", backward)
    assert not report and report.checks == []
    assert report.error.startswith("your function raised ValueError: boom (line ")
    assert 'raise ValueError("boom")' in report.error
    assert str(report).startswith("check_backward: your function raised ValueError: boom")


def test_shape_errors_inside_the_users_function_are_reported():
    report = eg.check_backward(AFFINE, "W", lambda X, dLdY: X @ dLdY)
    assert report.error.startswith("your function raised ValueError: matmul")


@pytest.mark.parametrize(
    ("result", "problem", "words"),
    [
        (None, "type", "dLdW is None: did you forget to return it?"),
        ([[1.0, 2.0]], "type", "dLdW is a list, not an array: wrap it in np.array(...)"),
        ("abc", "type", "dLdW is a str, not a numpy array"),
        (np.ones((3, 4), dtype=complex), "type", "dLdW is an array of complex128, not of real numbers"),
        (np.array([["a"] * 4] * 3), "type", "not of real numbers"),
        ({"dW": 1.0}, "missing", "your function returned no gradient for W (as 'W' or 'dLdW')"),
    ],
)
def test_wrong_return_types_are_findings(result, problem, words):
    report = eg.check_backward(AFFINE, "W", lambda X: result)
    assert not report and report["W"].problem == problem and words in report["W"].message


def test_wrong_number_of_returned_gradients():
    three = eg.check_backward(AFFINE, ["W", "b"], lambda X, dLdY: (1, 2, 3))
    assert three.error.startswith("your function returned 3 values for 2 gradients (dLdW, dLdb)")
    one = eg.check_backward(AFFINE, ["W", "b"], lambda X, dLdY: X.T @ dLdY)
    assert one.error.startswith(
        "your function returned one array of shape (3, 4) for 2 gradients: return a dict {'W': ..., 'b': ...}"
    )
    extra = eg.check_backward(AFFINE, ["b"], lambda dLdY: {"b": dLdY.sum(0), "dX": 0})
    assert extra.ok and "ignored the entries 'dX'" in str(extra)


def test_how_the_users_parameters_are_filled():
    renamed = eg.check_backward(AFFINE, "b", lambda dout: dout.sum(0))
    assert renamed.ok and "your function's parameter 'dout' was given the upstream gradient dLdY" in str(
        renamed
    )
    seen = {}

    def everything(**arrays):
        seen.update(arrays)
        return arrays["dLdY"].sum(0)

    assert eg.check_backward(AFFINE, "b", everything).ok and sorted(seen) == ["W", "X", "b", "dLdY"]
    strange = eg.check_backward(AFFINE, "b", lambda foo, bar: 0)
    assert strange.error.startswith("your function takes 'foo', 'bar', which are not names it can be given")
    named = eg.check_backward(AFFINE, "b", lambda G: G.sum(0), seed="G")
    assert named.ok and named.inputs["G"].shape == (5, 4)


def test_programs_defined_only_for_positive_inputs_are_drawn_positive():
    report = eg.check_backward("L = sum_i(sqrt(x_i))", "x", lambda x: 0.5 / np.sqrt(x))
    assert report.ok and np.all(report.inputs["x"] > 0) and "drawn from [0.5, 1.5]" in str(report)


# ---------------------------------------------------------------- calling check_backward wrongly


def test_inputs_where_the_program_is_not_defined():
    with pytest.raises(CheckError, match="eingrad's gradient is not finite at the inputs used"):
        eg.check_backward("L = sum_i(log(x_i))", "x", lambda x: 1 / x, inputs={"x": [0.0, 2.0]})
    with pytest.raises(CheckError, match="L is not finite at the inputs used"):
        eg.taylor_check("L = sum_i(log(x_i))", "x", inputs={"x": [-1.0, 2.0]})


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"wrt": "V"}, "wrt names 'V', which is not an input of the program"),
        ({"wrt": "Y"}, "wrt names 'Y', which is computed by the program, not an input"),
        ({"wrt": []}, "wrt must name an input"),
        ({"wrt": ["W", "W"]}, "wrt names an input twice"),
        ({"user_fn": 3}, "user_fn must be a function, got int"),
        ({"sizes": {"q": 3}}, "sizes names the index 'q', which the program does not use"),
        ({"sizes": {"n": 0}}, "the size of index 'n' must be a positive integer"),
        ({"sizes": [1]}, "sizes must map index names to sizes"),
        ({"rng": "x"}, "rng must be a numpy Generator or an integer seed"),
        ({"inputs": {"Q": 1}}, "inputs has an array for 'Q'"),
        ({"inputs": {"X": np.ones(3)}}, "the array given for 'X' has 1 axes"),
        ({"output": "Q"}, "'Q' is not a target of the program"),
    ],
)
def test_bad_calls_raise_eingrad_errors_with_hints(kwargs, words):
    call = {"wrt": "W", "user_fn": lambda X, dLdY: X.T @ dLdY, **kwargs}
    with pytest.raises(CheckError) as info:
        eg.check_backward(AFFINE, call.pop("wrt"), call.pop("user_fn"), **call)
    assert words in str(info.value)
    assert isinstance(info.value, eg.EingradError)


def test_a_taken_upstream_name_asks_for_seed():
    with pytest.raises(CheckError, match="seed="):
        eg.check_backward("Y_i = dLdY_i x_i", "x", lambda dLdY: dLdY)


# ---------------------------------------------------------------- taylor_check


def test_taylor_order_two_for_eingrads_derivatives():
    report = eg.taylor_check("L = sum_i(exp(x_i))", "x")
    assert report.ok and report.order == pytest.approx(2, abs=0.05)
    layer = eg.taylor_check("Y_nh = tanh(X_nd W_dh + b_h)", ["W", "b"])
    assert layer.ok and all(o == pytest.approx(2, abs=0.1) for t in layer.tests for o in t.orders)
    # The change of f itself shrinks like ε (first order): the residual is what must go faster.
    change = layer["W"].change
    assert change[0] / change[-1] == pytest.approx(1e3, rel=0.1)


def test_taylor_user_gradient_right_and_wrong():
    right = eg.taylor_check(QUADRATIC, "x", lambda A, x: (A + A.T) @ x)
    assert right.ok and right.order == pytest.approx(2, abs=0.05)
    wrong = eg.taylor_check(QUADRATIC, "x", lambda A, x: A @ x)
    assert not wrong and wrong.order == pytest.approx(1, abs=0.05)
    assert "shrinks only like ε^1.00" in str(wrong) and "FAILED" in str(wrong)


def test_taylor_residuals_are_the_taylor_remainder():
    # f = x_i A_ij x_j is quadratic: with the right J the residual is ε² |Δᵀ A Δ| exactly.
    report = eg.taylor_check(QUADRATIC, "x", lambda A, x: (A + A.T) @ x)
    t = report["x"]
    eps = np.array(t.epsilons)
    np.testing.assert_allclose(np.array(t.residual) / eps**2, t.residual[0] / eps[0] ** 2, rtol=1e-6)
    assert t.epsilons == [1e-1, 1e-2, 1e-3, 1e-4]


def test_taylor_user_jacobian_of_a_layer():
    def jacobian(X, Y):  # ∂Y_nh/∂W_dk = (1 - Y_nh²) X_nd δ_hk
        return np.einsum("nh,nd,hk->nhdk", 1 - Y**2, X, np.eye(Y.shape[1]))

    assert eg.taylor_check("Y_nh = tanh(X_nd W_dh)", "W", jacobian).ok
    wrong = eg.taylor_check(
        "Y_nh = tanh(X_nd W_dh)", "W", lambda X, Y: np.einsum("nd,hk->nhdk", X, np.eye(Y.shape[1]))
    )
    assert not wrong and wrong.order == pytest.approx(1, abs=0.1)


def test_taylor_linear_programs_are_exact():
    report = eg.taylor_check(AFFINE, ["W", "b"])
    assert report.ok and report.order is None and "exact to rounding" in str(report)
    wrong = eg.taylor_check(AFFINE, "b", lambda X: np.zeros((5, 4, 4)))
    assert not wrong and wrong.order == pytest.approx(1, abs=0.01)


def test_taylor_bad_jacobians_are_findings():
    shape = eg.taylor_check(LOGISTIC, "w", lambda X: X)
    assert (
        not shape
        and "its gradient for w has shape (n, d) = (5, 3), expected w's shape (d,) = (3,)" in str(shape)
    )
    raised = eg.taylor_check(LOGISTIC, "w", lambda w: 1 / 0)
    assert not raised and "your function raised ZeroDivisionError" in str(raised)
    layer = eg.taylor_check(AFFINE, "W", lambda X: X)
    assert "expected the output's axes (n, h) = (5, 4), then W's (d, h) = (3, 4)" in str(layer)


def test_taylor_bad_calls():
    with pytest.raises(CheckError, match="decreasing"):
        eg.taylor_check(QUADRATIC, "x", epsilons=[1e-3, 1e-2])
    with pytest.raises(CheckError, match="not an input"):
        eg.taylor_check(QUADRATIC, "z")
    with pytest.raises(CheckError, match="jacobian_fn must be a function"):
        eg.taylor_check(QUADRATIC, "x", "A x")


def test_taylor_report_displays():
    report = eg.taylor_check("L = sum_i(exp(x_i))", "x")
    text = str(report)
    assert text.startswith("taylor_check of eingrad's derivative: passed") and "1e-04" in text
    markdown = report._repr_markdown_()
    assert "| ε |" in markdown and markdown.count("\n| 1e-0") == 4

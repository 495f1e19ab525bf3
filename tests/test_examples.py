"""The examples in examples/ train real models: each runs here at a small size.

Every number is checked against something outside eingrad: held-out accuracy,
scikit-learn's solution, central differences of the loss, numpy.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import eingrad as eg

pytest.importorskip("sklearn")

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str):
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"eingrad_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mlp():
    return load_example("mlp_classifier")


@pytest.fixture(scope="module")
def rnn():
    return load_example("rnn_sine")


@pytest.fixture(scope="module")
def newton():
    return load_example("newton_logistic")


# ---------------------------------------------------------------- MLP


def test_mlp_iris_reaches_96_percent_on_held_out_flowers(mlp):
    result = mlp.train("iris")  # full size: a fraction of a second
    assert result["test_size"] == 50
    assert result["test_accuracy"] >= 0.96
    assert result["losses"][-1] < 0.25 * result["losses"][0]


def test_mlp_digits_reaches_95_percent_in_a_few_epochs(mlp):
    result = mlp.train("digits", epochs=5)  # the script trains 30
    assert result["test_accuracy"] >= 0.95
    assert result["losses"][-1] < result["losses"][0]


def test_mlp_compiled_gradient_matches_central_differences(mlp):
    step, _ = mlp.build()
    rng = np.random.default_rng(1)
    params = mlp.init_params(4, 5, 3, rng)
    params["b1"] = 0.1 * rng.standard_normal(5)
    data = {"X": rng.standard_normal((7, 4)), "Y": np.eye(3)[rng.integers(0, 3, 7)], "lam": 0.01}
    out = step(**data, **params)
    eps = 1e-6
    for name in mlp.PARAMETERS:
        v = rng.standard_normal(params[name].shape)
        plus = step(**data, **{**params, name: params[name] + eps * v})["L"]
        minus = step(**data, **{**params, name: params[name] - eps * v})["L"]
        numeric = (plus - minus) / (2 * eps)
        assert np.sum(out[f"dLd{name}"] * v) == pytest.approx(numeric, rel=1e-6, abs=1e-9), name


def test_mlp_loss_is_the_mean_cross_entropy(mlp):
    step, logits = mlp.build()
    rng = np.random.default_rng(2)
    params = mlp.init_params(4, 6, 3, rng)
    X, labels = rng.standard_normal((9, 4)), rng.integers(0, 3, 9)
    out = step(X=X, Y=np.eye(3)[labels], lam=0.0, **params)
    Z = np.maximum(X @ params["W1"] + params["b1"], 0) @ params["W2"] + params["b2"]
    expected = np.mean(np.log(np.sum(np.exp(Z), axis=1)) - Z[np.arange(9), labels])
    assert float(out["L"]) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(logits(X=X, **params)["Z"], Z, rtol=1e-12)


def test_mlp_main_prints_the_gradient_program(mlp, capsys):
    [result] = mlp.main(["--dataset", "iris", "--epochs", "5"])
    text = capsys.readouterr().out
    assert "dLdb1_h = " in text and "dLdW2_hc = " in text
    assert "test accuracy" in text
    assert len(result["losses"]) == 5


# ---------------------------------------------------------------- RNN


def test_rnn_loss_falls_and_gradient_matches_finite_differences(rnn):
    result = rnn.train(lengths=(6, 9), hidden=8, epochs=150, sequences=32)
    assert result["grad_check_error"] < 1e-5
    assert result["losses"][-1] < result["losses"][0] / 5
    assert result["test_mse"] < result["zero_mse"] / 5
    assert result["test_mse"] < result["persistence_mse"]
    assert result["compiled_functions"] == 1  # one function for both lengths


def test_rnn_program_is_the_guides_recursion(rnn):
    program = rnn.rnn_program()
    assert program.recurrences and program.recurrences[0].members == ("s",)
    rng = np.random.default_rng(3)
    params = rnn.init_params(4, rng)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    s, errors = np.zeros((5, 4)), []
    for xt, yt in zip(x, y, strict=True):  # numpy, written independently
        s = np.tanh(np.outer(xt, params["W"]) + s @ params["U"] + params["b"])
        errors.append(s @ params["V"] + params["c"] - yt)
    expected = np.mean(np.square(errors))
    assert float(eg.evaluate(program, x=x, y=y, **params)["L"]) == pytest.approx(expected, rel=1e-12)


def test_rnn_recurrence_and_unrolled_gradients_agree(rnn):
    rng = np.random.default_rng(4)
    params = rnn.init_params(4, rng)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    recurrent = eg.compile(eg.grad(rnn.rnn_program(), wrt=rnn.PARAMETERS))(x=x, y=y, **params)
    unrolled = eg.evaluate(eg.grad(rnn.unrolled_program(3), wrt=rnn.PARAMETERS),
                           **{f"x{t + 1}": x[t] for t in range(3)}, **{f"y{t + 1}": y[t] for t in range(3)},
                           **params)
    for name in rnn.PARAMETERS:
        np.testing.assert_allclose(recurrent[f"dLd{name}"], unrolled[f"dLd{name}"], rtol=1e-10, atol=1e-13)


def test_rnn_main_prints_backprop_through_time(rnn, capsys):
    result = rnn.main(["--lengths", "4", "6", "--hidden", "6", "--epochs", "10"])
    text = capsys.readouterr().out
    assert re.search(r"dLds\[t\+1, n, \w+\]", text) and "dLdU_kh = " in text  # the reverse recurrence
    assert "gradient check" in text
    assert len(result["losses"]) == 10


@pytest.fixture(scope="module")
def lstm():
    return load_example("lstm")


def test_lstm_gradient_matches_finite_differences_and_it_learns(lstm):
    result = lstm.train(steps=8, hidden=6, epochs=120, sequences=16)
    assert result["grad_check_error"] < 1e-5
    assert result["losses"][-1] < result["losses"][0] / 3
    assert result["test_mse"] < result["zero_mse"]


def test_lstm_main_prints_the_cells_adjoints(lstm, capsys):
    lstm.main(["--steps", "5", "--hidden", "4", "--epochs", "3"])
    text = capsys.readouterr().out
    assert "dLdc_tnk = " in text and "dLdc[t+1, n, k]" in text


# ---------------------------------------------------------------- Newton


def test_newton_converges_in_ten_steps_to_sklearns_solution(newton):
    result = newton.fit(lam=1.0)  # breast cancer, 569 x 30: full size is cheap
    assert result["iterations"] <= 10
    assert result["grad_norms"][-1] < 1e-10
    assert result["max_abs_diff"] < 1e-6
    # quadratic convergence: the last steps square the gradient norm (roughly)
    assert result["grad_norms"][-1] < result["grad_norms"][-2] ** 1.5


def test_newton_hessian_matches_numpy(newton):
    _, _, loss_and_grad, hess = newton.build()
    rng = np.random.default_rng(4)
    X, y, w, lam = rng.standard_normal((12, 3)), np.sign(rng.standard_normal(12)), rng.standard_normal(3), 0.3
    m = y * (X @ w)
    p = 1 / (1 + np.exp(m))  # sigmoid(-m)
    out = loss_and_grad(X=X, y=y, w=w, lam=lam)
    assert float(out["L"]) == pytest.approx(np.sum(np.log1p(np.exp(-m))) + 0.5 * lam * w @ w, rel=1e-12)
    np.testing.assert_allclose(out["dLdw"], -X.T @ (p * y) + lam * w, rtol=1e-12)
    np.testing.assert_allclose(hess(X=X, y=y, w=w, lam=lam), X.T @ (X * (p * (1 - p))[:, None]) + lam * np.eye(3),
                               rtol=1e-12)


def test_newton_main_prints_gradient_and_hessian(newton, capsys):
    newton.main(["--lam", "2"])
    text = capsys.readouterr().out
    assert "dLdw_d = " in text and "δ_" in text
    assert "converged in" in text


# ---------------------------------------------------------------- the guide


def test_guide_walkthrough_checks_pass(capsys):
    checks = load_example("guide_walkthrough").main([])
    text = capsys.readouterr().out
    assert checks and all(checks.values()), checks
    for expected in ["v_i = A_ik B_ik", "dLdb_h = Σ_n dLdY_nh", "dLds1_nh = ", "U_il σ_l V_lj", "# C_ik = A_ij B_jk W_ik"]:
        assert expected in text


def test_guide_walkthrough_runs_as_a_script():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(EXAMPLES / "guide_walkthrough.py")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "FAIL" not in done.stdout and "ok   svd" in done.stdout


# ---------------------------------------------------------------- Gaussian process regression


@pytest.fixture(scope="module")
def gp():
    return load_example("gp_regression")


def test_gp_fits_the_noise_level_and_a_length_scale(gp):
    result = gp.fit(n=40, steps=150)
    assert result["losses"][-1] < result["losses"][0] - 40
    assert 0.005 < result["noise"] < 0.02  # the data's noise is 0.1² = 0.01
    assert 0.8 < result["length_scale"] < 3.0
    assert result["test_rmse"] < 0.1


def test_gp_compiled_gradient_matches_numpy_and_central_differences(gp):
    x, y = gp.data(30)
    _, loss_and_grad = gp.build()
    a, b = 0.1, -2.0
    out = loss_and_grad(x=x, y=y, a=a, b=b)
    loss, da, db = gp.numpy_loss_and_grad(x, y, a, b)
    assert np.isclose(out["L"], loss, rtol=1e-10)
    assert np.isclose(out["dLda"], da, rtol=1e-8)
    assert np.isclose(out["dLdb"], db, rtol=1e-8)
    h = 1e-6
    central = (gp.numpy_loss_and_grad(x, y, a + h, b)[0] - gp.numpy_loss_and_grad(x, y, a - h, b)[0]) / (2 * h)
    assert np.isclose(out["dLda"], central, rtol=1e-5)


def test_gp_main_prints_the_gradient_program(gp, capsys):
    gp.main(["--n", "20", "--steps", "5"])
    printed = capsys.readouterr().out
    assert "logdet_nm(K_nm)" in printed and "dLdb = " in printed


# ---------------------------------------------------------------- character language model (§10)


@pytest.fixture(scope="module")
def char_lm():
    return load_example("char_lm")


def test_char_lm_loss_falls_on_its_text(char_lm):
    result = char_lm.train(steps=120, hidden=32, batch=64)
    assert result["initial"] > 0.9 * result["uniform"]  # it starts knowing nothing
    assert result["final"] < result["initial"] - 1.0  # and learns: 3.4 -> about 1.7


def test_char_lm_embedding_gradient_is_a_scatter_and_matches_evaluate(char_lm):
    codes, alphabet = char_lm.load_text()
    data = {k: v[:50] for k, v in char_lm.windows(codes).items()}
    params = char_lm.init_params(len(alphabet), 4, 8, np.random.default_rng(1))
    gradient = eg.grad(eg.parse(char_lm.MODEL), wrt=char_lm.PARAMETERS)
    fn = eg.compile(gradient, outputs=["dLdE", "dLdU"])
    out = fn(**data, **params)
    expected = eg.evaluate(gradient, **data, **params)
    for name in ("dLdE", "dLdU"):
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-10, atol=1e-12)
    body = fn.source.split("def compiled")[1]
    assert body.count("_scatter_add(") >= 3 and "_gather(E, x1" in body


# ---------------------------------------------------------------- CNN (index arithmetic)


@pytest.fixture(scope="module")
def cnn():
    return load_example("cnn_digits")


def test_cnn_digits_learns_in_a_few_epochs(cnn):
    result = cnn.train(epochs=3)  # the script trains 30 (99% on the 450 held-out images)
    assert result["test_size"] == 450
    assert result["test_accuracy"] >= 0.93
    assert result["losses"][-1] < 0.3 * result["losses"][0]


def test_cnn_gradient_is_windows_and_scatters_and_matches_evaluate(cnn):
    rng = np.random.default_rng(2)
    params = cnn.init_params(3, rng)
    X, y = rng.random((4, 8, 8)), np.array([0, 3, 9, 3])
    gradient = eg.grad(eg.parse(cnn.MODEL), wrt=cnn.PARAMETERS)
    fn = eg.compile(gradient, outputs=["L", "dLdK", "dLdW"])
    out = fn(X=X, y=y, sizes=cnn.POOL, **params)
    expected = eg.evaluate(gradient, X=X, y=y, sizes=cnn.POOL, **params)
    for name in ("L", "dLdK", "dLdW"):
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-10, atol=1e-12)
    body = fn.source.split("def compiled")[1]
    assert "_shift(" not in body  # no dense shift array: strided windows and slice scatters
    assert body.count("_window(") >= 4 and body.count("_unwindow(") == 2

"""The public API in a few lines: parse, print, evaluate."""

import numpy as np

import eingrad as eg


def test_affine_layer_end_to_end():
    program = eg.parse("Y_nh = X_nd W_dh + b_h")
    assert program.inputs == ["X", "W", "b"]
    assert program.targets == ["Y"]
    assert str(program) == "Y_nh = X_nd W_dh + b_h"
    assert program.latex() == "Y_{nh} &= X_{nd} W_{dh} + b_{h}"
    rng = np.random.default_rng(0)
    X, W, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    out = eg.evaluate(program, X=X, W=W, b=b)
    np.testing.assert_allclose(out["Y"], X @ W + b)


def test_evaluate_accepts_text_and_a_mapping():
    out = eg.evaluate("s = x_i x_i", {"x": np.array([3.0, 4.0])})
    assert out["s"] == 25.0


def test_errors_are_eingrad_errors_and_builtin_kinds():
    try:
        eg.parse("y_i = A_ij +")
    except eg.ParseError as err:
        assert isinstance(err, eg.EingradError) and isinstance(err, ValueError)
    else:  # pragma: no cover
        raise AssertionError("no error")

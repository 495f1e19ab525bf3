"""Reverse mode (reverse.py): eg.grad against autograd and finite differences, its printed
form, lazy evaluation, ProgramBuilder, to_dot, and bad input.

Every model is written twice, independently: once in index notation for eingrad and once in
``autograd.numpy``.  Gradients are compared in float64 to 1e-8 relative (to the largest
entry of the expected array), and against a fourth-order central difference of the loss
along random directions (``<grad, v>`` against ``(L(x + h v) - L(x - h v)) / 2h`` with
Richardson extrapolation), also to 1e-8 relative.
"""

from __future__ import annotations

import re
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad as agrad
from autograd.scipy.special import logsumexp as alogsumexp

import eingrad as eg
import eingrad.expr
from eingrad.expr import ZERO, Call, Delta, walk

RTOL = 1e-8

# ---------------------------------------------------------------- helpers


def assert_close(got, want, what: str = "") -> None:
    """``got`` equals ``want`` to RTOL relative to the largest entry of ``want``."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= RTOL * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}\n{got}\n{want}"


def directional_fd(loss, arrays: dict, name: str, v: np.ndarray, h: float = 1e-4) -> float:
    """d/dε loss(arrays with name += ε v) at ε = 0: five-point stencil, error O(h^4).

    h = 1e-4 keeps both the truncation error (the 50-step RNN has large fifth
    derivatives: h = 1e-3 is off by 5e-7 there) and the rounding error near 1e-11.
    """

    def at(eps: float) -> float:
        env = dict(arrays)
        env[name] = arrays[name] + eps * v
        return float(loss(env))

    return (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)


def check_model(text_or_program, loss_fn, arrays: dict, wrt: list[str], *, seed_rng: int = 1, **kw):
    """eg.grad of the program agrees with autograd of ``loss_fn`` and with finite differences.

    ``loss_fn(env)`` is the autograd model: a scalar function of a dict of arrays.
    Returns the gradient program.
    """
    g = eg.grad(text_or_program, wrt=wrt, **kw)
    prefix = kw.get("prefix", "dLd")
    values = eg.evaluate(g, arrays)
    rng = np.random.default_rng(seed_rng)
    for name in wrt:
        got = values[prefix + name]
        want = agrad(lambda x, name=name: loss_fn({**arrays, name: x}))(arrays[name])
        assert_close(got, want, f"{prefix}{name} vs autograd")
        for _ in range(2):
            v = rng.standard_normal(np.shape(arrays[name]))
            numeric = directional_fd(loss_fn, arrays, name, v)
            predicted = float(np.sum(got * v))
            assert abs(predicted - numeric) <= RTOL * max(abs(numeric), abs(predicted)), (
                f"{prefix}{name} vs finite differences: {predicted!r} vs {numeric!r}"
            )
    return g


def gradient_statements(g: eg.Program, forward: eg.Program | str) -> list[eg.Statement]:
    """The statements grad added after the forward program's own."""
    forward_targets = set(eg.parse(forward).targets if isinstance(forward, str) else forward.targets)
    return [s for s in g.statements if s.target not in forward_targets]


def assert_well_formed(g: eg.Program, forward: eg.Program | str, *, parses_back: bool = True) -> None:
    """No delta anywhere, no statement equal to the constant 0, and it parses back."""
    for stmt in g.statements:
        assert not any(isinstance(n, Delta) for n in walk(stmt.expr)), f"delta left in: {stmt}"
        assert stmt.expr != ZERO, f"a symbolic zero became a statement: {stmt}"
    if parses_back:
        assert eg.parse(str(g)) == g, str(g)
    assert gradient_statements(g, forward), "no gradient statement emitted"


def calls(stmt: eg.Statement, name: str) -> list[Call]:
    return [n for n in walk(stmt.expr) if isinstance(n, Call) and n.fn == name]


def mentions(stmt: eg.Statement, name: str) -> bool:
    return any(ref.name == name for ref in eg.expr.tensor_refs(stmt.expr))


# ---------------------------------------------------------------- models

AFFINE = "Y_nh = X_nd W_dh + b_h"

MLP = """
H_nh = relu(X_nd W1_dh + b1_h)
Z_nc = H_nh W2_hc + b2_c
L = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc)
"""

LOGREG = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"

MF = "L = sum_{i,j}((X_ij - U_ik V_jk)^2)"

# h is read by three later statements (p, q, r) and the loss reads all three.
FAN_OUT = """
h_i = tanh(A_ij x_j)
p_i = h_i h_i
q = sum_i(exp(h_i))
r_k = B_ki h_i
L = sum_i(p_i) + q + sum_k(sigmoid(r_k))
"""


def affine_arrays(rng):
    return {
        "X": rng.standard_normal((5, 3)),
        "W": rng.standard_normal((3, 4)),
        "b": rng.standard_normal(4),
        "dLdY": rng.standard_normal((5, 4)),
    }


def mlp_arrays(rng, n=6, d=4, h=5, c=3):
    labels = rng.integers(0, c, size=n)
    return {
        "X": rng.standard_normal((n, d)),
        "W1": rng.standard_normal((d, h)),
        "b1": rng.standard_normal(h),
        "W2": rng.standard_normal((h, c)),
        "b2": rng.standard_normal(c),
        "Y": np.eye(c)[labels],
    }


def mlp_loss(env):
    H = anp.maximum(anp.dot(env["X"], env["W1"]) + env["b1"], 0.0)
    Z = anp.dot(H, env["W2"]) + env["b2"]
    log_softmax = Z - alogsumexp(Z, axis=1, keepdims=True)
    return -anp.sum(env["Y"] * log_softmax)


def rnn_program(steps: int, per_step_statements: bool) -> eg.Program:
    """s_t = tanh(x_t W + s_{t-1} U + b) with s_{-1} = 0, squared error at every step."""
    b = eg.ProgramBuilder()
    b.add("s0_bh = tanh(x0_bd W_dh + b_h)")
    for t in range(1, steps):
        b.add(f"s{t}_bh = tanh(x{t}_bd W_dh + s{t - 1}_bk U_kh + b_h)")
    if per_step_statements:
        for t in range(steps):
            b.add(f"l{t} = sum_{{b,h}}((s{t}_bh - y{t}_bh)^2)")
        b.add("L = " + " + ".join(f"l{t}" for t in range(steps)))
    else:
        b.add("L = " + " + ".join(f"sum_{{b,h}}((s{t}_bh - y{t}_bh)^2)" for t in range(steps)))
    return b.build()


def rnn_arrays(rng, steps: int, batch=2, d=3, h=4):
    arrays = {
        "W": 0.5 * rng.standard_normal((d, h)),
        "U": 0.5 * rng.standard_normal((h, h)),
        "b": 0.5 * rng.standard_normal(h),
    }
    for t in range(steps):
        arrays[f"x{t}"] = rng.standard_normal((batch, d))
        arrays[f"y{t}"] = rng.uniform(-1, 1, (batch, h))
    return arrays


def rnn_loss(steps: int):
    def loss(env):
        s = anp.zeros_like(env["y0"])
        total = 0.0
        for t in range(steps):
            s = anp.tanh(anp.dot(env[f"x{t}"], env["W"]) + anp.dot(s, env["U"]) + env["b"])
            total = total + anp.sum((s - env[f"y{t}"]) ** 2)
        return total

    return loss


# ---------------------------------------------------------------- 1. numbers


def test_affine_layer_with_seed():
    rng = np.random.default_rng(0)
    arrays = affine_arrays(rng)

    def loss(env):  # L = <dLdY, Y>: its gradient is the vector-Jacobian product
        return anp.sum(env["dLdY"] * (anp.dot(env["X"], env["W"]) + env["b"]))

    g = check_model(AFFINE, loss, arrays, ["W", "b", "X"], seed="dLdY")
    out = eg.evaluate(g, arrays)
    # The guide: dL/db is the column sum of dL/dY, dL/dW = X^T dL/dY.
    assert_close(out["dLdb"], arrays["dLdY"].sum(axis=0), "dLdb")
    assert_close(out["dLdW"], arrays["X"].T @ arrays["dLdY"], "dLdW")
    assert_close(out["dLdX"], arrays["dLdY"] @ arrays["W"].T, "dLdX")
    assert_close(out["Y"], arrays["X"] @ arrays["W"] + arrays["b"], "Y")
    assert_well_formed(g, AFFINE)


def test_mlp_relu_softmax_cross_entropy():
    rng = np.random.default_rng(4)
    arrays = mlp_arrays(rng)
    # Finite differences (steps of 2e-4) must not cross a ReLU kink: the pre-activations
    # stay clear of 0.
    pre = arrays["X"] @ arrays["W1"] + arrays["b1"]
    assert np.min(np.abs(pre)) > 0.1
    wrt = ["W1", "b1", "W2", "b2", "X"]
    g = check_model(MLP, mlp_loss, arrays, wrt)
    assert_close(eg.evaluate(g, arrays)["L"], mlp_loss(arrays), "L")
    assert_well_formed(g, MLP)


def test_logistic_regression_with_l2():
    rng = np.random.default_rng(2)
    n, d = 7, 4
    arrays = {
        "X": rng.standard_normal((n, d)),
        "y": rng.choice([-1.0, 1.0], size=n),
        "w": rng.standard_normal(d),
        "lam": np.array(0.3),
    }

    def loss(env):
        margins = -env["y"] * anp.dot(env["X"], env["w"])
        return anp.sum(anp.logaddexp(0.0, margins)) + 0.5 * env["lam"] * anp.dot(env["w"], env["w"])

    g = check_model(LOGREG, loss, arrays, ["w", "lam", "X"])
    assert_well_formed(g, LOGREG)
    # lam as a Python number (a weak scalar) gives the same gradient.
    out = eg.evaluate(g, {**arrays, "lam": 0.3})
    assert_close(out["dLdw"], agrad(lambda w: loss({**arrays, "w": w}))(arrays["w"]), "dLdw, lam=0.3")


def test_matrix_factorisation():
    rng = np.random.default_rng(3)
    arrays = {
        "X": rng.standard_normal((5, 4)),
        "U": rng.standard_normal((5, 2)),
        "V": rng.standard_normal((4, 2)),
    }

    def loss(env):
        return anp.sum((env["X"] - anp.dot(env["U"], env["V"].T)) ** 2)

    g = check_model(MF, loss, arrays, ["U", "V", "X"])
    assert_well_formed(g, MF)
    out = eg.evaluate(g, arrays)
    residual = arrays["X"] - arrays["U"] @ arrays["V"].T
    assert_close(out["dLdU"], -2 * residual @ arrays["V"], "dLdU closed form")
    assert_close(out["dLdV"], -2 * residual.T @ arrays["U"], "dLdV closed form")


@pytest.mark.parametrize("per_step_statements", [False, True], ids=["one-loss-statement", "loss-per-step"])
@pytest.mark.parametrize("steps", [3, 50])
def test_rnn_unrolled(steps, per_step_statements):
    rng = np.random.default_rng(steps)
    program = rnn_program(steps, per_step_statements)
    assert len(program) == steps + (steps + 1 if per_step_statements else 1)
    arrays = rnn_arrays(rng, steps)
    loss = rnn_loss(steps)
    assert_close(eg.evaluate(program, arrays)["L"], loss(arrays), "L")
    g = check_model(program, loss, arrays, ["U", "W", "b"])
    # (Printing a 50-term statement costs seconds: the parse-back is checked at 3 steps.)
    assert_well_formed(g, program, parses_back=steps <= 3)
    # One adjoint per hidden state, each emitted once; the loss terms' adjoints (1) are inlined.
    targets = [s.target for s in g.statements]
    assert len(targets) == len(set(targets))
    assert [t for t in targets if t.startswith("dLds")] == [f"dLds{t}" for t in reversed(range(steps))]
    assert not any(t.startswith("dLdl") for t in targets)
    # Reverse mode is linear in the graph: the gradient part has steps + 3 statements.
    assert len(gradient_statements(g, program)) == steps + 3


def test_rnn_gradient_of_inputs_and_targets_at_every_step():
    """The gradient with respect to every x_t and y_t (inputs read once) is right as well."""
    steps = 4
    rng = np.random.default_rng(11)
    program = rnn_program(steps, False)
    arrays = rnn_arrays(rng, steps)
    wrt = [f"x{t}" for t in range(steps)] + [f"y{t}" for t in range(steps)]
    g = check_model(program, rnn_loss(steps), arrays, wrt)
    assert_well_formed(g, program)


def test_intermediate_feeding_three_statements():
    rng = np.random.default_rng(4)
    arrays = {
        "A": rng.standard_normal((4, 3)),
        "x": rng.standard_normal(3),
        "B": rng.standard_normal((5, 4)),
    }

    def loss(env):
        h = anp.tanh(anp.dot(env["A"], env["x"]))
        p = h * h
        q = anp.sum(anp.exp(h))
        r = anp.dot(env["B"], h)
        return anp.sum(p) + q + anp.sum(1 / (1 + anp.exp(-r)))

    g = check_model(FAN_OUT, loss, arrays, ["A", "x", "B"])
    assert_well_formed(g, FAN_OUT)
    # The three paths meet in one adjoint of h, emitted once and read by both gradients.
    (dh,) = [s for s in g.statements if s.target == "dLdh"]
    assert mentions(dh, "dLdr") and mentions(dh, "h")
    assert len(dh.expr.terms) == 3
    assert mentions(g.statement("dLdA"), "dLdh") and mentions(g.statement("dLdx"), "dLdh")


def test_output_defaults_to_last_target_and_can_be_named():
    rng = np.random.default_rng(5)
    arrays = {"A": rng.standard_normal((4, 3)), "x": rng.standard_normal(3), "B": rng.standard_normal((5, 4))}
    text = FAN_OUT + "M = 3 L"
    g_last = eg.grad(text, wrt=["x"])
    assert "dMdx" in g_last.targets
    g_l = eg.grad(text, wrt=["x"], output="L")
    assert "M" not in g_l.targets and "dLdx" in g_l.targets
    out_m = eg.evaluate(g_last, arrays)["dMdx"]
    out_l = eg.evaluate(g_l, arrays)["dLdx"]
    assert_close(out_m, 3 * out_l, "dMdx = 3 dLdx")


def test_prefix_overrides_the_gradient_names():
    rng = np.random.default_rng(6)
    arrays = affine_arrays(rng)
    arrays["G"] = arrays.pop("dLdY")
    g = eg.grad(AFFINE, wrt=["W", "b"], seed="G", prefix="grad")
    assert g.targets == ["Y", "gradW", "gradb"]
    out = eg.evaluate(g, arrays)
    assert_close(out["gradb"], arrays["G"].sum(axis=0), "gradb")
    assert_close(out["gradW"], arrays["X"].T @ arrays["G"], "gradW")


def test_gradient_of_a_diagonal_read():
    """An input read on its diagonal (A_ii) gets its gradient on the diagonal only."""
    rng = np.random.default_rng(7)
    arrays = {"A": rng.standard_normal((3, 3)), "x": rng.standard_normal(3)}

    def loss(env):
        return anp.sum(anp.tanh(anp.diag(env["A"]) * env["x"]))

    check_model("L = sum_i(tanh(A_ii x_i))", loss, arrays, ["A", "x"])


def test_sum_loss_names_the_constant_adjoint():
    """L = Σ Y: dLdY_nh = 1 is a statement, so dLdb_h = Σ_n dLdY_nh gets n's size from it.

    (Inlined, the 1 summed over n would leave dLdb_h = |n|, a size no tensor of the
    statement fixes: evaluate could not run it.)
    """
    text = "Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(Y_nh)"
    rng = np.random.default_rng(12)
    arrays = {k: v for k, v in affine_arrays(rng).items() if k != "dLdY"}

    def loss(env):
        return anp.sum(anp.dot(env["X"], env["W"]) + env["b"])

    g = check_model(text, loss, arrays, ["W", "b", "X"])
    assert [str(s) for s in gradient_statements(g, text)] == [
        "dLdY_nh = Y_nh^0",  # a 1 for every Y_nh: the text sizes n and h on its own
        "dLdW_dh = X_nd dLdY_nh",
        "dLdb_h = Σ_n dLdY_nh",
        "dLdX_nd = W_dh dLdY_nh",
    ]
    # A constant adjoint whose sum leaves no size behind stays inlined (x^0: a 2 for every x_i).
    g = eg.grad("h_i = 2 x_i\nL = sum_i(h_i)", wrt=["x"])
    assert [str(s) for s in g.statements] == ["h_i = 2 x_i", "L = Σ_i h_i", "dLdx_i = 2 x_i^0"]
    np.testing.assert_array_equal(eg.evaluate(g, x=np.ones(3))["dLdx"], [2.0, 2.0, 2.0])


def test_gradient_that_is_a_count_of_a_bound_index():
    # dLdb = |i|: the size of the index summed in the forward statement, counted on the
    # tensor axis that has that length (x's axis 0), so that the text evaluates on its own.
    g = eg.grad("L = sum_i(x_i + b)", wrt=["b"])
    stmt = g.statement("dLdb")
    assert str(stmt) == "dLdb = Σ_i x_i^0"
    assert stmt.sizes_from == (("i", "x", 0),)
    out = eg.evaluate(g, x=np.ones(4), b=1.0)
    assert out["dLdb"] == 4.0


def test_gradient_that_is_a_count_evaluates_with_the_size_declared():
    g = eg.grad("L = sum_i(x_i + b)", wrt=["b"])
    assert eg.evaluate(g, x=np.ones(4), b=1.0, sizes={"i": 4})["dLdb"] == 4.0


def test_gradient_of_a_trace_is_the_identity():
    """dLdu_ij = δ_ij alone sizes nothing: it reads u^0 (a 1 for every u_ij), whose shape it has."""
    g = eg.grad("L = sum_i(u_ii)", wrt=["u"])
    assert str(g.statement("dLdu")) == "dLdu_ij = u_ij^0 δ_ij"
    np.testing.assert_array_equal(eg.evaluate(g, u=np.ones((3, 3)))["dLdu"], np.eye(3))
    rng = np.random.default_rng(13)
    check_model(
        "L = sum_{i,j}(delta_ij u_ij) + sum_{i,j}(u_ij u_ij)",
        lambda env: anp.trace(env["u"]) + anp.sum(env["u"] ** 2),
        {"u": rng.standard_normal((3, 3))},
        ["u"],
    )


def test_two_statements_with_one_index_name_of_two_sizes_read_one_input():
    """h_i (i of size 3) and g_i (i of size 5) both read x: dLdx sums two contractions whose
    summed indices must not share one name (an index has one size in a statement)."""
    text = "h_i = A_ij x_j\ng_i = B_ij x_j\nL = sum_i(h_i h_i) + sum_k(g_k g_k)"
    rng = np.random.default_rng(14)
    arrays = {"A": rng.standard_normal((3, 2)), "B": rng.standard_normal((5, 2)), "x": rng.standard_normal(2)}

    def loss(env):
        return anp.sum(anp.dot(env["A"], env["x"]) ** 2) + anp.sum(anp.dot(env["B"], env["x"]) ** 2)

    g = check_model(text, loss, arrays, ["x", "A", "B"])
    assert_well_formed(g, text)


# ---------------------------------------------------------------- 2. the printed form


def test_affine_layer_prints_as_the_guide_derives():
    g = eg.grad(AFFINE, wrt=["W", "b"], seed="dLdY")
    assert [str(s) for s in g.statements] == [
        "Y_nh = X_nd W_dh + b_h",
        "dLdW_dh = X_nd dLdY_nh",
        "dLdb_h = Σ_n dLdY_nh",
    ]
    assert str(g.statement("dLdW")) == "dLdW_dh = X_nd dLdY_nh"
    assert str(g.statement("dLdb")) == "dLdb_h = Σ_n dLdY_nh"
    assert eg.parse(str(g)) == g


def test_guide_table_affine_then_contraction():
    """LANGUAGE.md §6: the gradient of L = G_nh Y_nh with respect to b is Σ_n G_nh, no delta.

    Reverse mode names the adjoint of Y (it reads a tensor) and sums it.
    """
    g = eg.grad("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", wrt=["b"])
    assert [str(s) for s in g.statements[2:]] == ["dLdY_nh = G_nh", "dLdb_h = Σ_n dLdY_nh"]
    rng = np.random.default_rng(0)
    arrays = {
        "X": rng.standard_normal((5, 3)),
        "W": rng.standard_normal((3, 4)),
        "b": rng.standard_normal(4),
        "G": rng.standard_normal((5, 4)),
    }
    assert_close(eg.evaluate(g, arrays)["dLdb"], arrays["G"].sum(axis=0), "dLdb")


@pytest.mark.parametrize(
    "text, wrt",
    [
        (MLP, ["W1", "b1", "W2", "b2", "X"]),
        (LOGREG, ["w", "lam", "X"]),
        (MF, ["U", "V", "X"]),
        (FAN_OUT, ["A", "x", "B"]),
    ],
    ids=["mlp", "logreg", "mf", "fan-out"],
)
def test_gradient_programs_parse_back_without_deltas(text, wrt):
    g = eg.grad(text, wrt=wrt)
    assert_well_formed(g, text)
    assert str(eg.parse(str(g))) == str(g)


def test_rnn_reuses_forward_values():
    """The adjoint of s = tanh(u) reads s (1 - s^2), never a new tanh."""
    program = rnn_program(3, False)
    g = eg.grad(program, wrt=["U", "W", "b"])
    added = gradient_statements(g, program)
    for stmt in added:
        assert not calls(stmt, "tanh"), f"tanh recomputed in {stmt}"
    assert str(g.statement("dLds1")) == "dLds1_bh = 2 (s1_bh - y1_bh) + (1 - s2_bk^2) U_hk dLds2_bk"
    assert mentions(g.statement("dLdb"), "s0")
    assert mentions(g.statement("dLdU"), "s2")


def test_mlp_reuses_forward_values():
    """relu's derivative reads the stored H (step(H) = step of the pre-activation), not a new relu."""
    g = eg.grad(MLP, wrt=["W1", "b1"])
    for stmt in gradient_statements(g, MLP):
        assert not calls(stmt, "relu"), f"relu recomputed in {stmt}"
    assert mentions(g.statement("dLdW1"), "H")
    assert mentions(g.statement("dLdb1"), "H")


def test_statements_no_gradient_needs_are_not_emitted():
    g = eg.grad(MLP, wrt=["b2"])
    added = [s.target for s in gradient_statements(g, MLP)]
    assert added == ["dLdZ", "dLdb2"]
    assert str(g.statement("dLdb2")) == "dLdb2_c = Σ_n dLdZ_nc"

    g = eg.grad(AFFINE, wrt=["b"], seed="dLdY")
    assert g.targets == ["Y", "dLdb"]

    # Only the last step's parameters reach dLds2 from the loss: asking for x2 stops there.
    program = rnn_program(3, False)
    g = eg.grad(program, wrt=["x2"])
    assert [s.target for s in gradient_statements(g, program)] == ["dLds2", "dLdx2"]

    # Statements after the output (and those it does not read) are left out.
    g = eg.grad(FAN_OUT + "M = 3 L\nN = sum_i(x_i)", wrt=["x"], output="L")
    assert "M" not in g.targets and "N" not in g.targets


def test_no_statement_is_the_constant_zero():
    # p reads B only through a term that does not reach L: no dLdp = 0 statement.
    text = "h_i = A_ij x_j\np_i = B_ij x_j\nL = sum_i(h_i h_i)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = eg.grad(text, wrt=["x"])
    assert all(s.expr != ZERO for s in g.statements)
    assert "dLdp" not in g.targets


# ---------------------------------------------------------------- 3. lazy evaluation, builder, dot


def test_lazy_evaluation_with_outputs():
    rng = np.random.default_rng(8)
    arrays = mlp_arrays(rng)
    g = eg.grad(MLP, wrt=["W1", "b1", "W2", "b2"])
    full = eg.evaluate(g, arrays)
    lazy = eg.evaluate(g, arrays, outputs=["dLdb2"])
    assert "dLdW1" not in lazy and "dLdH" not in lazy and "dLdb1" not in lazy
    assert set(lazy) == {"H", "Z", "dLdZ", "dLdb2"}
    np.testing.assert_array_equal(lazy["dLdb2"], full["dLdb2"])
    # A single name works too, and inputs nothing needs may be left out.
    forward = eg.evaluate(MLP, {k: v for k, v in arrays.items() if k != "Y"}, outputs="Z")
    assert set(forward) == {"H", "Z"}
    np.testing.assert_array_equal(forward["Z"], full["Z"])
    # The RNN: s1 needs only x0, x1 and the parameters, not the later steps.
    program = rnn_program(5, False)
    arrays = rnn_arrays(rng, 5)
    wanted = {k: arrays[k] for k in ("x0", "x1", "W", "U", "b")}
    out = eg.evaluate(program, wanted, outputs=["s1"])
    assert set(out) == {"s0", "s1"}
    np.testing.assert_array_equal(out["s1"], eg.evaluate(program, arrays)["s1"])


def test_lazy_evaluation_of_an_unknown_output():
    with pytest.raises(eg.ProgramError, match=r"^'Q' is not a target of the program"):
        eg.evaluate(MLP, mlp_arrays(np.random.default_rng(0)), outputs=["Q"])


def test_needed_for_keeps_the_program_when_every_statement_is_needed():
    program = eg.parse("H_nh = relu(X_nd W_dh)\nZ_nc = H_nh V_hc\nQ = sum_{n,c}(Z_nc)")
    assert program.needed_for(["Q"]) is program  # immutable: the same program, not checked again
    fewer = program.needed_for(["H"])
    assert fewer.targets == ["H"] and fewer.source == program.source


def test_program_builder_builds_what_parse_builds():
    b = eg.ProgramBuilder()
    assert b.add("s0_bh = tanh(x0_bd W_dh + b_h)") is b
    b.add("s1_bh = tanh(x1_bd W_dh + s0_bk U_kh + b_h)\nL = sum_{b,h}(s1_bh)")
    assert len(b) == 2
    text = "s0_bh = tanh(x0_bd W_dh + b_h)\ns1_bh = tanh(x1_bd W_dh + s0_bk U_kh + b_h)\nL = sum_{b,h}(s1_bh)"
    assert b.build() == eg.parse(text)


def test_program_builder_add_errors_point_at_the_added_text():
    b = eg.ProgramBuilder()
    b.add("s0_bh = tanh(x0_bd W_dh + b_h)")
    with pytest.raises(eg.ParseError) as info:
        b.add("s1_bh = tanh(x1_bd W_dh + )")
    assert info.value.line == 1
    assert "s1_bh = tanh(x1_bd W_dh + )" in str(info.value)
    assert len(b) == 1  # the bad text is not kept
    with pytest.raises(eg.ParseError) as info:
        b.add("s1_bh = tanh(x1_bd W_dh + b_h)\ns2_bh = s1_bk U_kh + * b_h")
    assert info.value.line == 2
    assert "line 2: s2_bh = s1_bk U_kh + * b_h" in str(info.value)
    assert len(b) == 1
    # An error between two statements of the added text shows both lines.
    with pytest.raises(eg.ProgramError, match=r"^'b' is used with 1 index and with 2 indices") as info:
        b.add("s1_bh = tanh(x1_bd W_dh + b_h)\ns2_bh = s1_bk U_kh + b_hh")
    assert "line 1: s1_bh = tanh(x1_bd W_dh + b_h)" in str(info.value)
    assert "line 2: s2_bh = s1_bk U_kh + b_hh" in str(info.value)
    assert len(b) == 1
    b.add("s1_bh = tanh(x1_bd W_dh + s0_bk U_kh + b_h)")
    assert len(b.build()) == 2


def test_program_builder_build_errors_point_at_the_right_line():
    b = eg.ProgramBuilder()
    b.add("s0_bh = tanh(x0_bd W_dh + b_h)")
    for t in range(1, 5):
        b.add(f"s{t}_bh = tanh(x{t}_bd W_dh + s{t - 1}_bk U_kh + b_h)")
    b.add("s2_bh = tanh(x2_bd W_dh)")  # line 6 assigns s2 again (first on line 3)
    with pytest.raises(eg.ProgramError, match=r"^'s2' is assigned twice") as info:
        b.build()
    text = str(info.value)
    assert "line 3: s2_bh = tanh(x2_bd W_dh + s1_bk U_kh + b_h)" in text
    assert "line 6: s2_bh = tanh(x2_bd W_dh)" in text

    b = eg.ProgramBuilder()
    b.add("s0_bh = tanh(x0_bd W_dh + b_h)")
    b.add("s1_bh = tanh(x1_bd W_dh + s2_bk U_kh + b_h)")  # reads s2 before line 3 assigns it
    b.add("s2_bh = tanh(x2_bd W_dh + s1_bk U_kh + b_h)")
    with pytest.raises(eg.ProgramError, match=r"^'s2' is used before it is assigned") as info:
        b.build()
    assert info.value.line == 2
    assert "line 3: s2_bh" in str(info.value)


def _same_with_positions(built: eg.Program, parsed: eg.Program) -> None:
    """Equal programs whose statements, targets and nodes also have the same spans."""
    assert built == parsed and built.source == parsed.source
    for a, b in zip(built.statements, parsed.statements, strict=True):
        assert (a.span, a.target_span) == (b.span, b.target_span), a
        nodes_a, nodes_b = list(walk(a.expr)), list(walk(b.expr))
        assert len(nodes_a) == len(nodes_b)
        for x, y in zip(nodes_a, nodes_b, strict=True):
            assert type(x) is type(y) and x == y
            assert getattr(x, "span", None) == getattr(y, "span", None), (a, x)


@pytest.mark.parametrize("chunks", [
    ["s0_bh = tanh(x0_bd W_dh + b_h)", "\n\ns1_bh = tanh(x1_bd W_dh + s0_bk U_kh + b_h)\n",
     "L = sum_{b,h}((s0_bh - y0_bh)^2) + sum_{b,h}((s1_bh - y1_bh)^2)"],
    ["Z_nc = E[tok[n], d] V_dc  # a comment", "P_nc = softmax_c(Z_nc); L = -sum_n(log(P[n, y[n]]))"],
    ["y_i = X[n, i+k] w_k", "A_ij = inv_ij(B_ij) + det_kl(B_kl) δ_ij",
     "m = max(a, b) + where(c > 0, c, 0) + max_i(v_i)", "q = logsumexp_i(v_i) + |i| + sum_i(v_i^2)"],
    ["\n\nH_nh = relu(X_nd W_dh + b_h)\nZ_nc = H_nh V_hc\n\n", "L = sum_n(logsumexp_c(Z_nc) - Z_nc Y_nc)"],
])
def test_program_builder_reuses_each_chunk_as_parsing_the_whole_text_would(chunks):
    # build() takes each chunk's statements as add() parsed them, positions moved to the
    # chunk's place in the program: the same program, spans included, as parsing it all.
    b = eg.ProgramBuilder()
    for chunk in chunks:
        b.add(chunk)
    _same_with_positions(b.build(), eg.parse("\n".join(chunk.strip("\n") for chunk in chunks)))


@pytest.mark.parametrize("make", [
    lambda t: f"s{t}_bh = tanh(x{t}_bd W_dh + s{t - 1}_bk U_kh + b_h)",
    lambda t: f"h{t}_i = h{t - 1}_i + g{t}_i g{t}_i + x7_i",  # a name repeated, one numbered name fixed
    # A numbered name that is an index ({j1}) is not a tensor's: such chunks are parsed.
    lambda t: f"y{t}_i = sum_{{j{t}, k}}(A[i, j{t}] B[j{t}, k]) + y{t - 1}_i",
    lambda t: f"s{t}_bh = s{t - 1}_bh - β{t}_h",  # a Greek name
    lambda t: f"s{t}_bh = s{t - 1}_bh + E[tok{t}[b], h]",  # a lookup: its table renamed too
])
def test_program_builder_renames_a_chunk_of_a_shape_it_has_parsed(make):
    # A loop's chunks differ in their numbered names only; while those have as many digits,
    # add() renames the first such chunk's statements instead of parsing: the same program,
    # spans included, as parsing the whole text (steps 1-9, then 10-12 with two digits).
    from eingrad.program import _CHUNK_SHAPES

    _CHUNK_SHAPES.cache_clear()  # as benchmarks clear eingrad's caches: none known before
    b = eg.ProgramBuilder()
    chunks = ["s0_bh = x0_bh", "h0_i = c_i", "y0_i = c_i"] + [make(t) for t in range(1, 13)]
    for chunk in chunks:
        b.add(chunk)
    _same_with_positions(b.build(), eg.parse("\n".join(chunks)))


def test_program_builder_checks_a_renamed_chunk():
    # A chunk of a known shape gets the checks of a parsed one: s3 assigned twice in it.
    b = eg.ProgramBuilder()
    b.add("s1_i = x1_i\ns2_i = x2_i")
    with pytest.raises(eg.ProgramError, match=r"^'s3' is assigned twice"):
        b.add("s3_i = x1_i\ns3_i = x2_i")
    b.add("s4_i = x4_i\ns5_i = x5_i")
    _same_with_positions(b.build(), eg.parse("s1_i = x1_i\ns2_i = x2_i\ns4_i = x4_i\ns5_i = x5_i"))


def test_program_builder_build_parses_again_a_chunk_that_warned():
    # The build's warning shows the statement's line in the whole program (line 2).
    b = eg.ProgramBuilder()
    b.add("y_i = x_i")
    with pytest.warns(eg.SurprisingSumWarning, match=r"line 1: L = log\(y_i\)"):
        b.add("L = log(y_i)")
    with pytest.warns(eg.SurprisingSumWarning, match=r"line 2: L = log\(y_i\)"):
        program = b.build()
    _same_with_positions(program, eg.parse("y_i = x_i\nL = log(y_i)"))


def test_program_builder_build_restores_the_garbage_collector():
    # build pauses the cyclic collector while it puts the program together, and leaves it
    # as it found it, also when the program is refused.
    import gc

    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            b = eg.ProgramBuilder()
            b.add("y_i = x_i")
            assert gc.isenabled() == enabled  # add pauses it while it parses, too
            with pytest.raises(eg.ParseError):
                b.add("z_i = x_i +")
            assert gc.isenabled() == enabled
            assert len(b.build()) == 1 and gc.isenabled() == enabled
            b.add("y_i = 2 x_i")
            with pytest.raises(eg.ProgramError, match="assigned twice"):
                b.build()
            assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_nodes_share_their_sets_of_names_and_leaves_are_read_off():
    # One frozenset per distinct set of names (less for the cyclic collector to traverse);
    # a leaf's names are read off it rather than cached.
    from eingrad.expr import Const, Delta, Size, Tensor, index_names, integer_tensors, mentions

    x, y = Tensor("x", ("i", "j")), Tensor("y", ("j", "i"))
    assert x.free is y.free == frozenset("ij")
    assert index_names(x) == frozenset("ij") and index_names(Delta(("i", "k"))) == frozenset("ik")
    assert index_names(Size("n")) == frozenset("n") and index_names(Const(2)) == frozenset()
    assert mentions(x) == frozenset({"x"}) and mentions(Const(2)) == frozenset()
    assert integer_tensors(x) == frozenset()
    program = eg.parse("L = sum_n(Z[n, y[n]]) + sum_{n,c}(Z_nc)")
    assert program.index_inputs == frozenset({"y"})
    assert index_names(program.statements[0].expr) == {"c", "i", "n"}  # Σ_{n,i} Z_ni δ[i, y[n]] + Σ_cn Z_nc


def test_grad_indexes_the_forward_statements_once(monkeypatch):
    # Every emitted statement is folded against the forward definitions (tanh's s_t);
    # indexing them once per statement made an unrolled loop's gradient quadratic.
    from eingrad.simplify.forward import ForwardTable

    built = []
    init = ForwardTable.__init__
    monkeypatch.setattr(ForwardTable, "__init__", lambda self, statements: built.append(1) or init(self, statements))
    program = rnn_program(6, False)
    gradient = eg.grad(program, wrt=["W", "U", "b"])
    assert len(built) == 1
    assert len(gradient) == len(program) + 6 + 3


def test_to_dot_lists_inputs_statements_and_reads():
    program = rnn_program(3, False)
    dot = program.to_dot(parameters=["U", "W", "b"])
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    nodes = dict(re.findall(r'^\s*"([^"]+)" \[(.*)\];$', dot, flags=re.M))
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)";$', dot, flags=re.M)
    assert set(nodes) == set(program.inputs) | set(program.targets)
    for name in program.inputs:
        assert "shape=box" in nodes[name]
        assert ("style=filled" in nodes[name]) == (name in {"U", "W", "b"}), name
    for stmt in program.statements:
        assert "shape=ellipse" in nodes[stmt.target]
        assert "style=filled" not in nodes[stmt.target]
    want = {(ref.name, s.target) for s in program.statements for ref in eg.expr.tensor_refs(s.expr)}
    assert set(edges) == want
    assert len(edges) == len(want)  # one edge per tensor read, not per occurrence
    assert ("s1", "s2") in want and ("U", "s1") in want and ("s0", "L") in want
    # Short statements are labelled with their text.
    assert 'label="s0_bh = tanh(x0_bd W_dh + b_h)"' in dot


def test_to_dot_of_a_gradient_program_and_without_parameters():
    g = eg.grad(AFFINE, wrt=["W", "b"], seed="dLdY")
    dot = g.to_dot()
    assert "style=filled" not in dot
    for name in ["X", "W", "b", "dLdY", "Y", "dLdW", "dLdb"]:
        assert f'"{name}" [' in dot
    assert '"dLdY" -> "dLdW";' in dot and '"X" -> "dLdW";' in dot and '"dLdY" -> "dLdb";' in dot


def test_to_dot_quotes_labels():
    dot = eg.parse("σ_i = sigmoid(x_i)").to_dot()
    assert '"σ" [shape=ellipse, label="σ_i = sigmoid(x_i)"];' in dot


# ---------------------------------------------------------------- 4. bad input


def test_grad_error_classes():
    assert issubclass(eg.GradError, eg.DiffError)
    assert issubclass(eg.GradError, eg.EingradError)
    assert issubclass(eg.GradError, ValueError)


def test_non_scalar_output_without_seed():
    with pytest.raises(eg.GradError, match=r"^grad needs a scalar output, but Y_nh has indices n, h") as info:
        eg.grad(AFFINE, wrt=["W"])
    assert "seed=" in str(info.value)
    assert info.value.line == 1


def test_wrt_naming_a_target():
    text = "h_i = A_ij x_j\nL = sum_i(h_i h_i)"
    with pytest.raises(eg.GradError, match=r"^'h' is computed by the program, not an input") as info:
        eg.grad(text, wrt=["h"])
    assert info.value.line == 1
    with pytest.raises(eg.GradError, match=r"^'L' is computed by the program"):
        eg.grad(text, wrt=["x", "L"])


def test_wrt_naming_an_unknown_name():
    with pytest.raises(eg.GradError, match=r"^'Q' is not an input of the program \(its inputs are A, x\)"):
        eg.grad("h_i = A_ij x_j\nL = sum_i(h_i h_i)", wrt=["Q"])


def test_wrt_as_a_string():
    with pytest.raises(eg.GradError, match=r"^wrt must be a list of input names, got the string 'W'") as info:
        eg.grad("L = sum_i(W_ij x_j)", wrt="W")
    assert "wrt=['W']" in str(info.value)


def test_empty_wrt_unknown_output_and_bad_seed():
    with pytest.raises(eg.GradError, match=r"^wrt is empty"):
        eg.grad("L = sum_i(x_i)", wrt=[])
    with pytest.raises(eg.GradError, match=r"^'M' is not a target of the program"):
        eg.grad("L = sum_i(x_i)", wrt=["x"], output="M")
    with pytest.raises(eg.GradError, match=r"^seed 'X' is already a name in the program"):
        eg.grad(AFFINE, wrt=["W"], seed="X")
    with pytest.raises(eg.GradError, match=r"^seed must be a tensor name"):
        eg.grad(AFFINE, wrt=["W"], seed="dLd_Y")


def test_wrt_that_is_not_a_list_and_a_bad_prefix():
    with pytest.raises(eg.GradError, match=r"^wrt must be a list of input names, got None"):
        eg.grad("L = sum_i(x_i)", wrt=None)
    assert eg.grad("L = sum_i(x_i x_i)", wrt=("x",)).targets == ["L", "dLdx"]
    for prefix in ["d_", "", "2d", 3]:
        with pytest.raises(eg.GradError, match=r"^prefix must start a tensor name"):
            eg.grad("L = sum_i(x_i x_i)", wrt=["x"], prefix=prefix)


def test_target_assigned_twice():
    text = "Y_i = A_ij x_j\nY_i = B_ij x_j\nL = sum_i(Y_i)"
    with pytest.raises(eg.ProgramError, match=r"^'Y' is assigned twice") as info:
        eg.grad(text, wrt=["x"])
    assert "line 2: Y_i = B_ij x_j" in str(info.value)


def test_used_before_assigned_and_cycles():
    with pytest.raises(eg.ProgramError, match=r"^'h' is used before it is assigned") as info:
        eg.grad("L = sum_i(h_i)\nh_i = A_ij x_j", wrt=["x"])
    assert info.value.line == 1
    # A cycle needs a use before an assignment, so it is refused the same way.
    with pytest.raises(eg.ProgramError, match=r"^'b' is used before it is assigned"):
        eg.grad("a = b + x\nb = a + 1", wrt=["x"])
    with pytest.raises(eg.ProgramError, match=r"^'a' is used before it is assigned"):
        eg.grad("a = 2 a", wrt=["x"])


def test_output_that_does_not_depend_on_an_input_warns():
    rng = np.random.default_rng(9)
    text = "h_i = A_ij x_j\nL = sum_i(h_i h_i) + 0 c"
    with pytest.warns(eg.ZeroDerivativeWarning, match=r"^'L' does not depend on 'c'") as record:
        g = eg.grad(text, wrt=["x", "c"])
    assert record[0].filename == __file__
    assert str(g.statement("dLdc")) == "dLdc = 0 c"
    assert eg.parse(str(g)) == g
    arrays = {"A": rng.standard_normal((3, 2)), "x": rng.standard_normal(2), "c": np.array(1.5)}
    out = eg.evaluate(g, arrays)
    assert_close(out["dLdc"], 0.0, "dLdc")
    assert_close(out["dLdx"], 2 * arrays["A"].T @ arrays["A"] @ arrays["x"], "dLdx")


def test_input_read_only_by_statements_the_output_does_not_need():
    """c is an input of the program but not of the output's statements: its gradient is zero."""
    rng = np.random.default_rng(10)
    text = "L = sum_i(x_i x_i)\nM = sum_i(c_i x_i)"
    with pytest.warns(eg.ZeroDerivativeWarning, match=r"^'L' does not depend on 'c'"):
        g = eg.grad(text, wrt=["c", "x"], output="L")
    # The zero gradient reads c, so the program takes the arrays the forward program takes
    # (before, dLdc_i = 0 read nothing: evaluate raised KeyError without c, and refused c).
    assert "M" not in g.targets and g.inputs == ["x", "c"]
    assert str(g.statement("dLdc")) == "dLdc_i = 0 c_i"
    assert eg.parse(str(g)) == g
    arrays = {"x": rng.standard_normal(3), "c": rng.standard_normal(3)}
    out = eg.evaluate(g, arrays)
    assert_close(out["dLdc"], np.zeros(3), "dLdc")
    assert_close(out["dLdx"], 2 * arrays["x"], "dLdx")


@pytest.mark.parametrize(
    "text, wrt, line",
    [
        ("L = sum_n(x_n) / |n|", "x", "dLdx_n = x_n^0 / |n|"),
        ("Z_nc = X_nd W_dc\nL = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc) / |n|", "W",
         "dLdZ_nc = (softmax_c(Z_nc) - Y_nc) / |n|"),
        ("e_n = y_n - X_nd w_d; L = sum_n(e_n^2) / (3 |n|)", "w", "dLde_n = 2 e_n / (3 |n|)"),
    ],
)
def test_sizes_print_with_the_programs_index_names(text, wrt, line):
    """A mean's 1/|n| prints as |n| (the name the program gives that axis), not a fresh
    name, and the statement evaluates as written."""
    g = eg.grad(text, wrt=[wrt])
    assert line in str(g).splitlines(), str(g)
    rng = np.random.default_rng(0)
    program = eg.parse(text)
    size = {"n": 5, "d": 3, "c": 4}
    arrays = {name: rng.standard_normal(tuple(size[i] for i in program.first_use(name).indices))
              for name in program.inputs}
    loss = lambda x: eg.evaluate(program, {**arrays, wrt: x})["L"]  # noqa: E731
    got = eg.evaluate(g, arrays)[g.targets[-1]]
    x, eps = arrays[wrt], 1e-6
    numeric = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[k] = eps
        numeric[k] = (loss(x + step) - loss(x - step)) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


def test_one_gradient_asked_for_alone_takes_its_shape_from_its_tensor():
    """dLdb_h = Σ_n dLdY_nh reads no b, and dLdx_n = 1/|n| reads nothing: asked for alone
    (evaluate or compile with outputs=), each still has its tensor's shape."""
    rng = np.random.default_rng(1)
    g = eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["b"], seed="dLdY")
    arrays = {"X": rng.standard_normal((4, 3)), "W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2),
              "dLdY": rng.standard_normal((4, 2))}
    expected = arrays["dLdY"].sum(axis=0)
    np.testing.assert_allclose(eg.evaluate(g, arrays, outputs=["dLdb"])["dLdb"], expected)
    np.testing.assert_allclose(eg.compile(g, outputs=["dLdb"])(arrays)["dLdb"], expected)
    mean = eg.grad("L = sum_n(x_n) / |n|", wrt=["x"])
    fn = eg.compile(mean, outputs=["dLdx"])
    for n in (5, 3):
        x = rng.standard_normal(n)
        np.testing.assert_allclose(eg.evaluate(mean, x=x, outputs=["dLdx"])["dLdx"], np.full(n, 1 / n))
        np.testing.assert_allclose(fn(x=x)["dLdx"], np.full(n, 1 / n))


def test_a_zero_gradient_still_takes_its_seed():
    """No requested gradient depends on the upstream gradient: the program still takes it,
    so the same arrays can be passed whatever was asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        g = eg.grad("Y_i = X_ij c_j; Z_i = W_i", wrt=["W"], output="Y", seed="dLdY")
    arrays = {"X": np.ones((2, 3)), "c": np.ones(3), "W": np.ones(2), "dLdY": np.ones(2)}
    np.testing.assert_array_equal(eg.evaluate(g, arrays)["dLdW"], np.zeros(2))
    np.testing.assert_array_equal(eg.compile(g, outputs=["dLdW"])(arrays)["dLdW"], np.zeros(2))
    with pytest.raises(eg.UnknownInputError):
        eg.evaluate(g, dict(arrays, Q=np.ones(2)))


@pytest.mark.parametrize("text, avoid, siblings, kept", [
    ("sum_k(A_ik v_k) + sum_j(B_ij w_j)", set(), frozenset(), True),  # binders apart already
    ("sum_k(A_ik v_k) + sum_k(B_ik w_k)", set(), frozenset(), False),  # k bound twice
    ("sum_k(A_ik v_k) + sum_k(B_ik w_k)", set(), frozenset({"k"}), True),  # ... by siblings: kept
    ("sum_k(A_ik v_k) + B_ik", set(), frozenset({"k"}), False),  # k also free
    ("sum_k(A_ik v_k) + sum_j(B_ij w_j)", {"j"}, frozenset(), False),  # j to avoid
    ("sum_k(A_ik v_k) sum_k(w_k)", set(), frozenset({"k"}), False),  # k bound twice in a term
    ("sum_k(A_ik v_k sum_j(C_jj)) + sum_j(B_ij w_j)", set(), frozenset({"k"}), False),  # j in two terms
    ("sum_k(A_ik v_k sum_j(C_jj)) + sum_j(B_ij w_j)", set(), frozenset({"j"}), True),
])
def test_grad_sums_keep_binders_that_rename_bound_apart_would_keep(text, avoid, siblings, kept):
    # _total skips rename_bound_apart where it would rename nothing; where it says so, the
    # renaming indeed returns the sum itself, and where it does not, it renames something.
    from eingrad.reverse import _apart_already, _binders_of
    from eingrad.simplify import rename_bound_apart

    if text.endswith("+ B_ik"):  # a binder k beside a free k: built as is (no statement has it)
        from eingrad.expr import Sum, Tensor, add, mul

        total = add(Sum(("k",), mul(Tensor("A", ("i", "k")), Tensor("v", ("k",)))), Tensor("B", ("i", "k")))
    else:
        total = eg.parse(f"y_i = {text}").statements[0].expr
    terms = list(total.terms) if isinstance(total, eingrad.expr.Add) else [total]
    assert _apart_already(total, [_binders_of(t) for t in terms], avoid, siblings) is kept
    assert (rename_bound_apart(total, avoid=avoid, siblings=siblings) is total) is kept


def test_forward_values_skip_results_without_a_named_node():
    # use_forward_values looks for definitions only where a function, reduction or selection
    # is: a result without one is returned as it is; one with one is still folded.
    from eingrad.simplify.forward import ForwardTable, use_forward_values

    program = eg.parse("s_bh = tanh(x_bd W_dh)\nL = sum_{b,h}(s_bh)")
    table = ForwardTable(program.statements)
    plain = eg.parse("g_bh = 2 (s_bh - y_bh) + U_hk s_bk").statements[0].expr
    assert use_forward_values(plain, table) is plain
    named = eg.parse("g_bh = 1 - tanh(x_bd W_dh)^2").statements[0].expr
    assert str(use_forward_values(named, table)) == "1 - s_bh^2"

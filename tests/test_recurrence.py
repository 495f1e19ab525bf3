"""Recurrences over an index (LANGUAGE.md §12): detection, evaluation, gradients, printing.

Truth we did not write: a hand-written numpy RNN and BPTT, autograd (HIPS) on a Python
loop for the LSTM, and central finite differences.  Compiled recurrences are tested in
tests/test_recurrence_compile.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import eingrad as eg

RNN = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)
L = sum_{t,n,h}((s[t, n, h] - y[t, n, h])^2)"""

RNN_H0 = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + δ[t, 0] h0[n, k] U_kh + b_h)
L = sum_{t,n,h}((s[t, n, h] - y[t, n, h])^2)"""

LSTM = """f[t,n,h] = sigmoid(x[t,n,d] Wf_dh + h[t-1,n,k] Uf_kh + bf_h)
i[t,n,h] = sigmoid(x[t,n,d] Wi_dh + h[t-1,n,k] Ui_kh + bi_h)
g[t,n,h] = tanh(x[t,n,d] Wg_dh + h[t-1,n,k] Ug_kh + bg_h)
o[t,n,h] = sigmoid(x[t,n,d] Wo_dh + h[t-1,n,k] Uo_kh + bo_h)
c[t,n,h] = f[t,n,h] c[t-1,n,h] + i[t,n,h] g[t,n,h] + δ[t,0] c0[n,h]
h[t,n,h] = o[t,n,h] tanh(c[t,n,h])
L = sum_{t,n,h}(G[t,n,h] h[t,n,h])"""


def rnn_arrays(rng, T=5, N=3, D=4, H=6):
    return dict(
        x=rng.normal(size=(T, N, D)), W=rng.normal(size=(D, H)) * 0.5, U=rng.normal(size=(H, H)) * 0.5,
        b=rng.normal(size=H), y=rng.normal(size=(T, N, H)), h0=rng.normal(size=(N, H)),
    )


def numpy_rnn(a, h0=None):
    T, N, _ = a["x"].shape
    s = np.zeros((T, N, a["W"].shape[1]))
    prev = np.zeros((N, a["W"].shape[1])) if h0 is None else h0
    for t in range(T):
        prev = np.tanh(a["x"][t] @ a["W"] + prev @ a["U"] + a["b"])
        s[t] = prev
    return s


def numpy_bptt(a, h0=None):
    """The hand-written backprop through time of the guide's RNN (loss Σ (s - y)²)."""
    s = numpy_rnn(a, h0)
    T = s.shape[0]
    first = np.zeros_like(s[0]) if h0 is None else h0
    dW, dU, db = np.zeros_like(a["W"]), np.zeros_like(a["U"]), np.zeros_like(a["b"])
    dh0 = np.zeros_like(first)
    carry = np.zeros_like(s[0])
    for t in range(T - 1, -1, -1):
        ds = 2 * (s[t] - a["y"][t]) + carry
        dz = ds * (1 - s[t] ** 2)
        prev = s[t - 1] if t > 0 else first
        dW += a["x"][t].T @ dz
        dU += prev.T @ dz
        db += dz.sum(0)
        carry = dz @ a["U"].T
        if t == 0:
            dh0 = carry
    return dict(W=dW, U=dU, b=db, h0=dh0)


def test_the_rnn_is_one_recurrence_running_forward():
    p = eg.parse(RNN)
    (rec,) = p.recurrences
    assert rec.members == ("s",) and rec.direction == 1 and rec.depth == 1
    assert p.recurrence_of("s") is rec and p.recurrence_of("L") is None


def test_the_lstm_cell_is_one_group():
    p = eg.parse(LSTM)
    (rec,) = p.recurrences
    assert rec.members == ("f", "i", "g", "o", "c", "h")
    assert set(dict(rec.axis).values()) == {0}


def test_evaluation_runs_in_order_along_the_index():
    a = rnn_arrays(np.random.default_rng(0))
    values = eg.evaluate(RNN, **{k: v for k, v in a.items() if k != "h0"})
    np.testing.assert_allclose(values["s"], numpy_rnn(a), rtol=1e-12)
    values = eg.evaluate(RNN_H0, **a)
    np.testing.assert_allclose(values["s"], numpy_rnn(a, a["h0"]), rtol=1e-12)


@pytest.mark.parametrize("with_h0", [False, True])
def test_the_gradient_equals_hand_written_bptt(with_h0):
    a = rnn_arrays(np.random.default_rng(1))
    src = RNN_H0 if with_h0 else RNN
    wrt = ["W", "U", "b"] + (["h0"] if with_h0 else [])
    g = eg.grad(src, wrt=wrt)
    given = {k: v for k, v in a.items() if k in g.inputs}
    got = eg.evaluate(g, **given)
    expected = numpy_bptt(a, a["h0"] if with_h0 else None)
    for name in wrt:
        np.testing.assert_allclose(got["dLd" + name], expected[name], rtol=1e-10, atol=1e-12)


def test_the_gradient_is_a_reverse_recurrence_written_in_index_notation():
    g = eg.grad(RNN, wrt=["W", "U", "b"])
    text = str(g)
    assert "dLds_tnh = 2 (s_tnh - y_tnh) + (1 - s[t+1, n, j]^2) U_hj dLds[t+1, n, j]" in text
    assert "dLdU_kh = (1 - s_tnh^2) dLds_tnh s[t-1, n, k]" in text
    forward, backward = g.recurrences
    assert forward.members == ("s",) and forward.direction == 1
    assert backward.members == ("dLds",) and backward.direction == -1
    # derived once: no statement depends on |t|
    assert "|t|" not in text
    assert "s_{t+1, n, j}" in g.latex()


def test_the_printed_gradient_parses_back_and_evaluates_the_same():
    a = rnn_arrays(np.random.default_rng(2))
    g = eg.grad(RNN_H0, wrt=["W", "U", "b", "h0"])
    again = eg.parse(str(g))
    assert len(again.recurrences) == 2
    first = eg.evaluate(g, **a)
    second = eg.evaluate(again, **a)
    for name in ("dLdW", "dLdU", "dLdb", "dLdh0"):
        np.testing.assert_allclose(second[name], first[name], rtol=1e-12)


def test_lstm_gradient_equals_autograd_on_every_weight():
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    T, N, D, H = 4, 2, 3, 5
    rng = np.random.default_rng(3)
    a = {k: rng.normal(size=(D, H)) * 0.5 for k in ["Wf", "Wi", "Wg", "Wo"]}
    a.update({k: rng.normal(size=(H, H)) * 0.5 for k in ["Uf", "Ui", "Ug", "Uo"]})
    a.update({k: rng.normal(size=H) * 0.5 for k in ["bf", "bi", "bg", "bo"]})
    a.update(x=rng.normal(size=(T, N, D)), G=rng.normal(size=(T, N, H)), c0=rng.normal(size=(N, H)))
    names = sorted(k for k in a if k not in ("x", "G"))

    def loss(*values):
        d = dict(zip(names, values, strict=True))
        sig = lambda z: 1 / (1 + anp.exp(-z))  # noqa: E731
        h, c, total = anp.zeros((N, H)), anp.zeros((N, H)), 0.0
        for t in range(T):
            x = a["x"][t]
            f = sig(x @ d["Wf"] + h @ d["Uf"] + d["bf"])
            i = sig(x @ d["Wi"] + h @ d["Ui"] + d["bi"])
            g = anp.tanh(x @ d["Wg"] + h @ d["Ug"] + d["bg"])
            o = sig(x @ d["Wo"] + h @ d["Uo"] + d["bo"])
            c = f * c + i * g + (d["c0"] if t == 0 else 0.0)
            h = o * anp.tanh(c)
            total = total + anp.sum(a["G"][t] * h)
        return total

    gp = eg.grad(LSTM, wrt=names)
    got = eg.evaluate(gp, **a)
    assert np.isclose(got["L"], loss(*[a[n] for n in names]))
    for k, name in enumerate(names):
        expected = autograd.grad(loss, k)(*[a[n] for n in names])
        np.testing.assert_allclose(got["dLd" + name], expected, rtol=1e-10, atol=1e-12)


def central_differences(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        out[idx] = (f(up) - f(down)) / (2 * eps)
    return out


@pytest.mark.parametrize("src", [
    # runs backwards: reads the next step
    """s[t, n] = tanh(x[t, n] + 0.5 s[t+1, n] w_n)
L = sum_{t,n}(G[t, n] s[t, n])""",
    # a shift of two steps
    """s[t, n] = tanh(x[t, n] + 0.8 s[t-2, n] w_n) + 0.3 s[t-1, n]
L = sum_{t,n}(G[t, n] s[t, n])""",
    # a member read at its own step by a later one, and a group read before it is assigned
    """a[t, n] = tanh(x[t, n] + b[t-1, n] w_n)
b[t, n] = sigmoid(a[t, n] + 0.5 b[t-1, n])
L = sum_{t,n}(G[t, n] b[t, n])""",
    # a loss with a mean over the steps
    """s[t, n] = tanh(x[t, n] w_n + s[t-1, n] v_n)
L = mean_{t,n}(s[t, n]^2)""",
])
def test_recurrence_gradients_equal_finite_differences(src):
    p = eg.parse(src)
    assert p.recurrences
    rng = np.random.default_rng(4)
    T, N = 5, 3
    a = dict(x=rng.normal(size=(T, N)), w=rng.normal(size=N), v=rng.normal(size=N), G=rng.normal(size=(T, N)))
    a = {k: v for k, v in a.items() if k in p.inputs}
    wrt = [k for k in a if k != "G"]
    g = eg.evaluate(eg.grad(p, wrt=wrt), **a)
    for name in wrt:
        def f(value, name=name):
            return float(eg.evaluate(p, **{**a, name: value})["L"])
        np.testing.assert_allclose(g["dLd" + name], central_differences(f, a[name]), rtol=1e-6, atol=1e-8)


def test_grad_with_a_seed_of_the_recurrence_itself():
    src = "s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)"
    a = rnn_arrays(np.random.default_rng(5))
    seed = np.random.default_rng(6).normal(size=(5, 3, 6))
    g = eg.grad(src, wrt=["W"], seed="dLds")
    got = eg.evaluate(g, dLds=seed, **{k: v for k, v in a.items() if k in g.inputs})

    def f(W):
        return float(np.sum(seed * numpy_rnn({**a, "W": W})))

    np.testing.assert_allclose(got["dLdW"], central_differences(f, a["W"]), rtol=1e-6, atol=1e-8)


def test_diff_through_a_recurrence_refuses_and_points_at_grad():
    with pytest.raises(eg.DiffError, match="runs through the recurrence 's'") as info:
        eg.diff(RNN, "W")
    assert "eg.grad" in info.value.hint
    # not through the recurrence: a derivative of one expression
    d = eg.diff(RNN, "y")
    assert "(s_" in str(d)


def test_check_backward_on_a_users_bptt():
    """check_backward runs the recurrence (random inputs) and diagnoses a hand-written BPTT."""

    def bptt(x, W, U, b, y):
        g = numpy_bptt(dict(x=x, W=W, U=U, b=b, y=y))
        return {"W": g["W"], "U": g["U"], "b": g["b"]}

    report = eg.check_backward(RNN, ["W", "U", "b"], bptt, sizes={"t": 4, "n": 3, "d": 2, "h": 5, "k": 5})
    assert report.ok

    def forgets_the_carry(x, W, U, b, y):  # truncated: no gradient flows back through time
        s = numpy_rnn(dict(x=x, W=W, U=U, b=b))
        dz = 2 * (s - y) * (1 - s**2)
        return {"W": np.einsum("tnd,tnh->dh", x, dz), "U": U * 0, "b": dz.sum((0, 1))}

    report = eg.check_backward(RNN, ["W", "U", "b"], forgets_the_carry, sizes={"t": 4, "n": 3, "d": 2, "h": 5, "k": 5})
    assert not report.ok


@pytest.mark.parametrize("src, message", [
    ("s[t,n] = s[t,n] + x[t,n]", "used before it is assigned"),
    ("s[t,n] = s[t-1,n] + s[t,n] + x[t,n]", "reads itself at the same step"),
    ("s[t,n] = s[2t,n] + x[t,n]", "read at 2t, not at a constant shift"),
    ("s[t,n] = s[t+k,n] w[k] + x[t,n]", "not at a constant shift"),
    ("s[t,n] = s[t-1,n] + s[t+1,n] + x[t,n]", "both earlier and later steps"),
    ("s[t,n] = s[t-1,n-1] + x[t,n]", "shifts of two indices"),
    ("s[t,n] = s[t-1,n] + x[t,n]\nr[t,n] = r[t,n-1] + s[t,n]", None),  # two groups, two indices: fine
    ("s[t,i,j] = inv_ij(s[t-1,i,j] + x[t,i,j])", "inside inv/det/logdet"),
    ("s[t,n] = sum_u(s[u,n] x[t,u])", "used before it is assigned"),
    ("a[t,n] = b[t,n] + x[t,n]\nb[t,n] = a[t-1,n]", "at the same step"),
    ("a[t,n] = b[t-1,n] + x[t,n]\nb[t,n] = a[t,n-1] + x[t,n]", "read shifted along another of its axes"),
])
def test_bad_recurrences_are_positioned_errors(src, message):
    if message is None:
        assert len(eg.parse(src).recurrences) == 2
        return
    with pytest.raises(eg.ProgramError, match=message) as info:
        eg.parse(src)
    assert info.value.spans and info.value.hint


def test_a_size_only_the_recurrence_carries_is_asked_for():
    with pytest.raises(eg.SizeError, match="cannot be determined") as info:
        eg.evaluate("s[t] = 0.5 s[t-1] + δ[t, 0] a", a=1.0)
    assert "sizes=" in info.value.hint
    values = eg.evaluate("s[t] = 0.5 s[t-1] + δ[t, 0] a", a=1.0, sizes={"t": 4})
    np.testing.assert_allclose(values["s"], [1.0, 0.5, 0.25, 0.125])


def test_the_unrolled_program_gives_the_same_gradient():
    """The guide's way (one name per step) and the recurrence agree."""
    rng = np.random.default_rng(8)
    a = rnn_arrays(rng, T=4)
    b = eg.ProgramBuilder()
    b.add("s0_nh = tanh(x0_nd W_dh + b_h)")
    for t in range(1, 4):
        b.add(f"s{t}_nh = tanh(x{t}_nd W_dh + s{t - 1}_nk U_kh + b_h)")
    b.add("L = " + " + ".join(f"sum_{{n,h}}((s{t}_nh - y{t}_nh)^2)" for t in range(4)))
    unrolled = eg.evaluate(eg.grad(b.build(), wrt=["W", "U", "b"]),
                           **{f"x{t}": a["x"][t] for t in range(4)}, **{f"y{t}": a["y"][t] for t in range(4)},
                           W=a["W"], U=a["U"], b=a["b"])
    recurrent = eg.evaluate(eg.grad(RNN, wrt=["W", "U", "b"]), **{k: v for k, v in a.items() if k != "h0"})
    for name in ("dLdW", "dLdU", "dLdb"):
        np.testing.assert_allclose(recurrent[name], unrolled[name], rtol=1e-12)


def test_explain_through_a_recurrence_shows_the_unrolling_argument_once():
    e = eg.explain(RNN, "U")
    text = str(e)
    assert "unrolled along t" in text and "reverse topological order" in text
    assert "dLds[t+1, n, j]" in text
    assert str(e.derivative) == "dLdU_kh = (1 - s_tnh^2) dLds_tnh s[t-1, n, k]"
    assert "\\mathit{dLds}_{t+1, n, j}" in e.latex()


def test_the_cli_derives_and_explains_a_recurrence(capsys):
    from eingrad.cli import main

    assert main(["grad", RNN, "--wrt", "W", "U", "b"]) == 0
    out = capsys.readouterr().out
    assert "dLds[t+1, n, j]" in out
    assert main(["explain", RNN, "--wrt", "W"]) == 0
    assert "unrolled along t" in capsys.readouterr().out
    assert main(["diff", RNN, "--wrt", "W"]) == 1
    err = capsys.readouterr().err
    assert "recurrence" in err and "Traceback" not in err


@pytest.mark.parametrize("src", [
    # the recurrence axis second
    """s[n, t, h] = tanh(x[n, t, d] W_dh + s[n, t-1, k] U_kh)
L = sum_{n,t,h}(G[n,t,h] s[n,t,h])""",
    # a bidirectional RNN: two groups, one running each way
    """f[t, n, h] = tanh(x[t, n, d] W_dh + f[t-1, n, k] U_kh)
b[t, n, h] = tanh(x[t, n, d] V_dh + b[t+1, n, k] R_kh)
L = sum_{t,n,h}(G[t,n,h] f[t,n,h] b[t,n,h])""",
    # two stacked layers, the second reading the first at the same step
    """f[t, n, h] = tanh(x[t, n, d] W_dh + f[t-1, n, k] U_kh)
g[t, n, h] = tanh(f[t, n, d] V_dh + g[t-1, n, k] R_kh)
L = sum_{t,n,h}(G[t,n,h] g[t,n,h])""",
])
def test_layouts_and_several_recurrences_against_finite_differences(src):
    p = eg.parse(src)
    rng = np.random.default_rng(9)
    sizes = {"t": 4, "n": 2, "d": 3, "h": 3, "k": 3}
    a = {name: rng.normal(size=tuple(sizes[i] for i in p.first_use(name).indices)) * 0.7 for name in p.inputs}
    wrt = [name for name in p.inputs if name not in ("G", "x")]
    g = eg.evaluate(eg.grad(p, wrt=wrt), **a)
    for name in wrt:
        def f(value, name=name):
            return float(eg.evaluate(p, **{**a, name: value})["L"])
        np.testing.assert_allclose(g["dLd" + name], central_differences(f, a[name]), rtol=1e-6, atol=1e-8)

"""Compiled recurrences (LANGUAGE.md §12; docs/compiler.md "Recurrences"): a loop over the
steps (``jax.lax.scan`` on JAX), equal to ``eg.evaluate`` (the reference, step by step), one
generated code for every number of steps.  Debug mode is on (tests/conftest.py): every
in-place write of the generated code is checked against the live values."""

import numpy as np
import pytest

import eingrad as eg
import test_recurrence
from eingrad.codegen.compile import CompiledFunction

# The RNN and the LSTM of tests/test_recurrence.py (LSTM: an initial cell state c0), and an
# initial state written inside the product: (s[t-1] + δ[t, 0] h0) U is h0 U at the first step.
RNN = test_recurrence.RNN
LSTM = test_recurrence.LSTM
RNN_H0 = """s[t, n, h] = tanh(x[t, n, d] W_dh + (s[t-1, n, k] + δ[t, 0] h0[n, k]) U_kh + b_h)
L = sum_{t,n,h}((s[t,n,h] - y[t,n,h])^2)"""

# Parts the same at every step (h0 V, U + Uᵀ) that the step form keeps in the step.
RNN_INVARIANT = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] (U_kh + U_hk) + δ[t, 0] h0[n, k] V_kh)
L = sum_{t,n,h}((s[t,n,h] - y[t,n,h])^2)"""

# Two layers, the second reading the first; and a layer running backward over the same x.
STACKED = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh)
r[t, n, h] = tanh(s[t, n, k] V_kh + r[t-1, n, j] U_jh)
q[t, n, h] = tanh(x[t, n, d] W_dh + q[t+1, n, k] V_kh)
L = sum_{t,n,h}(y[t,n,h] r[t,n,h] + q[t,n,h]^2)"""

# Runs from the last step to the first: s[t] reads s[t+1].
BACKWARD = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t+1, n, k] U_kh)
L = sum_{t,n,h}(y[t,n,h] s[t,n,h])"""

# Depth 2: the step reads the two steps before it.
DEPTH2 = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + s[t-2, n, k] V_kh)
L = sum_{t,n,h}(y[t,n,h] s[t,n,h])"""

# Only the step two before: the one before is carried, unread.
SKIP1 = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-2, n, k] U_kh)
L = sum_{t,n,h}(y[t,n,h] s[t,n,h])"""

# Members with the recurrence index on different axes, and a member with no other index.
MIXED_AXES = """a[t, n] = tanh(x[t, n, d] w_d + b[n, t-1])
b[n, t] = a[t, n] * 0.5 + 0.3 b[n, t-1] + c[t-1]
c[t] = 0.5 c[t-1] + sum_n(a[t, n]) + δ[t, 0] c0
L = sum_{t,n}(y[t, n, h] a[t, n] b[n, t]) + sum_t(c[t]^2)"""

# A member read at its own step by a later member (a, then b reading a[t]), the
# recurrence along the second axis, and an input read at a shift of the step.
SAME_STEP = """a[n, t, h] = tanh(x[n, t, d] W_dh + b[n, t-1, k] U_kh)
b[n, t, h] = a[n, t, h] * sigmoid(x[n, t-1, d] V_dh) + 0.5 b[n, t-1, h]
L = sum_{t,n,h}(y[n,t,h] b[n,t,h])"""


def _rng_arrays(program, T, seed=0, N=3, D=4, H=5):
    """Arrays for every input of ``program`` at ``T`` steps (t-axes by the index names)."""
    rng = np.random.default_rng(seed)
    sizes = {"t": T, "n": N, "d": D, "h": H, "k": H}
    out = {}
    for name in program.inputs:
        stmt_shape = _shape_of(program, name, sizes)
        out[name] = np.asarray(rng.normal(size=stmt_shape) * (0.5 if len(stmt_shape) == 2 else 1.0))
    return out


def _shape_of(program, name, sizes):
    from eingrad import expr as E

    for stmt in program.statements:
        for node in E.walk(stmt.expr):
            if isinstance(node, E.Tensor) and node.name == name:
                return tuple(sizes.get(i, sizes["h"]) for i in node.indices)
    raise AssertionError(name)


def _program(source, wrt):
    p = eg.parse(source)
    return eg.grad(p, wrt=wrt) if wrt else p


CASES = {
    "rnn": (RNN, None),
    "rnn_grad": (RNN, ["W", "U", "b", "x"]),
    "rnn_h0_grad": (RNN_H0, ["W", "U", "b", "h0"]),
    "invariant_grad": (RNN_INVARIANT, ["W", "U", "h0", "V"]),
    "stacked_grad": (STACKED, ["W", "U", "V"]),
    "lstm_grad": (LSTM, ["Wf", "Uf", "bf", "Wo", "Uo", "Ug", "Ui", "c0"]),
    "backward_grad": (BACKWARD, ["W", "U"]),
    "depth2_grad": (DEPTH2, ["W", "U", "V"]),
    "skip1_grad": (SKIP1, ["W", "U"]),
    "mixed_axes_grad": (MIXED_AXES, ["w", "c0"]),
    "same_step_grad": (SAME_STEP, ["W", "U", "V"]),
}


def _close(got, want, what):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-10, err_msg=what)


def _check(fn, program, to, back, lengths=(7, 3, 1, 0)):
    for T in lengths:
        arrays = _rng_arrays(program, T, seed=T)
        want = eg.evaluate(program, **arrays)
        got = fn(**{k: to(v) for k, v in arrays.items()})
        assert set(got) == set(want)
        for name in want:
            _close(back(got[name]), want[name], f"{name} at |t| = {T}")
    # one generated code for every number of steps
    assert len(fn._cache) == 1, list(fn._cache)


@pytest.mark.parametrize("case", CASES)
def test_numpy(case):
    program = _program(*CASES[case])
    fn = eg.compile(program)
    _check(fn, program, lambda v: v, lambda v: v)
    assert "for _tau in range(" in fn.source


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the torch backend needs torch")


@pytest.mark.parametrize("case", CASES)
def test_torch(torch, case):
    program = _program(*CASES[case])
    fn = eg.compile(program, backend="torch")
    _check(fn, program, torch.from_numpy, lambda t: t.detach().numpy())


def test_torch_inputs_that_require_grad_are_recorded_by_autograd(torch):
    """No in-place write into what autograd records: torch's own gradient of the compiled
    loss equals the compiled gradient."""
    program = eg.parse(RNN)
    grad = eg.compile(eg.grad(program, wrt=["W", "U", "b"]), backend="torch", outputs=["dLdW", "dLdU", "dLdb"])
    loss = eg.compile(program, backend="torch", outputs=["L"])
    arrays = {k: torch.from_numpy(v) for k, v in _rng_arrays(program, 6).items()}
    params = {k: arrays[k].clone().requires_grad_(True) for k in ("W", "U", "b")}
    L = loss(**{**arrays, **params})["L"]
    L.backward()
    want = grad(**arrays)
    for k in params:
        _close(params[k].grad.numpy(), want["dLd" + k].numpy(), k)


@pytest.fixture(scope="module")
def jax():
    jax = pytest.importorskip("jax", reason="the jax backend needs jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize("case", CASES)
def test_jax_scan(jax, case):
    program = _program(*CASES[case])
    fn = eg.compile(program, backend="jax")
    _check(fn, program, jax.numpy.asarray, np.asarray)
    assert "_jax.lax.scan(" in fn.source and "for _tau" not in fn.source


@pytest.mark.parametrize("case", ["rnn_grad", "lstm_grad", "backward_grad", "depth2_grad"])
def test_jax_under_an_outer_jit(jax, case):
    program = _program(*CASES[case])
    fn = eg.compile(program, backend="jax")
    jitted = jax.jit(lambda a: fn(a))
    for T in (5, 2):
        arrays = _rng_arrays(program, T, seed=T)
        got = jitted({k: jax.numpy.asarray(v) for k, v in arrays.items()})
        want = eg.evaluate(program, **arrays)
        for name in want:
            _close(got[name], want[name], f"{name} at |t| = {T}")


def test_jax_grad_through_the_scan(jax):
    """jax.grad of the compiled loss (differentiating the scan) is the compiled gradient."""
    program = eg.parse(RNN)
    loss = eg.compile(program, backend="jax", outputs=["L"])
    grad = eg.compile(eg.grad(program, wrt=["W", "U"]), backend="jax", outputs=["dLdW", "dLdU"])
    arrays = {k: jax.numpy.asarray(v) for k, v in _rng_arrays(program, 6).items()}

    def L(W, U):
        return loss({**arrays, "W": W, "U": U})["L"]

    dW, dU = jax.grad(L, argnums=(0, 1))(arrays["W"], arrays["U"])
    want = grad(arrays)
    _close(dW, np.asarray(want["dLdW"]), "W")
    _close(dU, np.asarray(want["dLdU"]), "U")


@pytest.mark.parametrize("case", ["rnn_grad", "lstm_grad", "backward_grad", "same_step_grad"])
def test_dask(case):
    da = pytest.importorskip("dask.array", reason="the dask backend needs dask")
    program = _program(*CASES[case])
    fn = eg.compile(program, backend="dask")
    _check(fn, program, lambda v: da.from_array(v, chunks=2), lambda v: np.asarray(v), lengths=(4, 1, 0))


# ---- one code for every number of steps


def test_the_number_of_steps_generates_no_code(monkeypatch):
    """Compiled at |t| = 3, called at |t| = 400: the code is not generated again (the number
    of steps is in no cache key), and it reads |t| from the arrays."""
    program = eg.grad(eg.parse(RNN), wrt=["W", "U", "b"])
    fn = eg.compile(program, outputs=["dLdW", "dLdU", "dLdb"])
    builds = []
    original = CompiledFunction._build

    def counted(self, *args, **kwargs):
        builds.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CompiledFunction, "_build", counted)
    first = None
    for T in (3, 400, 1, 65):
        arrays = _rng_arrays(program, T, seed=T)
        got = fn(**arrays)
        want = eg.evaluate(program, **arrays)
        for name in fn.outputs:
            _close(got[name], want[name], f"{name} at |t| = {T}")
        first = first or fn.source
        assert fn.source == first  # the same code at every |t|
    assert len(builds) == 1
    # other sizes still have their plan buckets
    fn(**_rng_arrays(program, 3, N=40))
    assert len(builds) == 2


def test_the_code_is_planned_for_the_same_number_of_steps_whatever_the_first_call():
    program = eg.grad(eg.parse(RNN), wrt=["W", "U"])
    sources = set()
    for T in (2, 300):
        fn = eg.compile(program)
        fn(**_rng_arrays(program, T))
        sources.add(fn.source)
    assert len(sources) == 1


def test_the_loop_runs_the_step_and_hoists_what_reads_no_member():
    """``x W`` is one product over every step before the loop; the step is one matrix
    product per step, its sizes passed in (nothing read or checked per step)."""
    fn = eg.compile(eg.parse(RNN), outputs=["s"])
    fn(**_rng_arrays(eg.parse(RNN), 4))
    src = fn.source
    main = src[src.index("def compiled"):]
    loop = src[src.index("def _recurrence_0"):]
    assert "xp.tensordot(x, W" in main and "_recurrence_0(size_t, size_n, size_h" in main
    assert main.index("xp.tensordot(x, W") < main.index("_recurrence_0(")  # x W + b: before the loop
    body = loop[loop.index("for _tau"):]
    assert body.count("@") == 1 and ".shape" not in body and "_sizes_disagree" not in body


def test_a_recurrence_of_mismatched_lengths_is_a_size_error():
    program = eg.parse(RNN)
    fn = eg.compile(program)
    arrays = _rng_arrays(program, 4)
    arrays["y"] = arrays["y"][:3]
    with pytest.raises(eg.SizeError, match="'t'"):
        fn(**arrays)


def test_float32_stays_float32():
    program = eg.grad(eg.parse(RNN), wrt=["W", "U"])
    fn = eg.compile(program)
    arrays = {k: v.astype(np.float32) for k, v in _rng_arrays(program, 5).items()}
    got = fn(**arrays)
    want = eg.evaluate(program, **{k: v.astype(np.float64) for k, v in arrays.items()})
    for name in want:
        assert got[name].dtype == np.float32, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4)


def test_a_derivative_that_reads_a_recurrence():
    """∂L/∂y = -2 (s - y) reads the recurrence's s: the compiled derivative runs the loop."""
    program = eg.parse(RNN)
    d = eg.diff(program, "y")
    fn = eg.compile(d)
    for T in (4, 2):
        arrays = _rng_arrays(program, T, seed=T)
        s = eg.evaluate(program, **arrays)["s"]
        _close(fn(**arrays), -2 * (s - arrays["y"]), f"dL/dy at |t| = {T}")
    assert "_recurrence_0(" in fn.source


# ---- an integer-indexed input read per step, the code before any call, the layout


EMBEDDING = """s[t, n, h] = tanh(E[w[t, n], h] + s[t-1, n, k] U_kh)
L = sum_{t,n,h}(G[t,n,h] s[t, n, h])"""


def _embedding_arrays(T, seed=0, N=3, V=7, H=4):
    rng = np.random.default_rng(seed)
    return dict(w=rng.integers(0, V, size=(T, N)), E=rng.normal(size=(V, H)), U=0.5 * rng.normal(size=(H, H)),
                G=rng.normal(size=(T, N, H)))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_an_embedding_rnn_gathers_its_rows_per_step(backend, request):
    if backend != "numpy":
        request.getfixturevalue(backend)
    program = eg.grad(eg.parse(EMBEDDING), wrt=["E", "U"])
    fn = eg.compile(program, backend=backend)
    for T in (5, 2):
        arrays = _embedding_arrays(T, seed=T)
        want = eg.evaluate(program, **arrays)
        if backend == "torch":
            import torch

            got = {k: v.numpy() for k, v in fn(**{k: torch.from_numpy(v) for k, v in arrays.items()}).items()}
        else:
            got = fn(**arrays)
        for name in want:
            _close(got[name], want[name], f"{name} at |t| = {T}")
    assert len(fn._cache) == 1


def test_an_embedding_index_out_of_range_is_an_input_error():
    fn = eg.compile(eg.parse(EMBEDDING))
    arrays = _embedding_arrays(4)
    arrays["w"][2, 1] = 7
    with pytest.raises(eg.InputError, match=r"w\[2, 1\] = 7"):
        fn(**arrays)


def test_the_code_before_any_call_is_the_code_for_every_length():
    program = eg.grad(eg.parse(RNN_H0), wrt=["W", "U", "h0"])
    fn = eg.compile(program)
    generic = fn.generic_source()
    assert "def _recurrence_0(" in generic and "def _recurrence_1(" in generic
    namespace = {"xp": np}
    exec(compile(generic, "<generic>", "exec"), namespace)
    arrays = _rng_arrays(program, 6)
    got = namespace["compiled"](arrays)
    want = eg.evaluate(program, **arrays)
    for name in want:
        _close(got[name], want[name], name)


def test_hoisted_parts_take_the_members_layout():
    """``E[w[t, n], h]`` over every step is laid out [t, n, h] like s: a step reads one
    contiguous slice and transposes nothing."""
    fn = eg.compile(eg.parse(EMBEDDING), outputs=["s"])
    fn(**_embedding_arrays(3))
    loop = fn.source[fn.source.index("def _recurrence_0"):]
    assert "_a0[_tau]" in loop and "transpose" not in loop
    # the gradient's 1 - s_knj² read at k = t + 1 is laid out [k, n, j]
    grad = eg.compile(eg.grad(eg.parse(RNN), wrt=["U"]), outputs=["dLdU"])
    grad(**_rng_arrays(eg.parse(RNN), 3))
    backward = grad.source[grad.source.index("def _recurrence_1"):]
    assert "_a1[_tau + 1] if _tau + 1 < size_t" in backward and "transpose" not in backward


def test_a_number_of_steps_declared_at_the_call():
    """No array has the recurrence index: its size is declared (sizes={'t': T}), and is in
    no cache key either; initial values at two steps (δ[t, 0], δ[t, 2])."""
    program = eg.grad(eg.parse("""s[t, n] = 0.5 s[t-1, n] + δ[t, 0] h0[n] + δ[t, 2] h0[n]
L = sum_{t,n}(s[t, n]^2)"""), wrt=["h0"])
    fn = eg.compile(program)
    h0 = np.arange(3.0)
    for T in (5, 40, 1, 0):
        want = eg.evaluate(program, {"h0": h0}, sizes={"t": T})
        got = fn({"h0": h0}, sizes={"t": T})
        for name in want:
            _close(got[name], want[name], f"{name} at |t| = {T}")
    assert len(fn._cache) == 1


def test_what_is_the_same_at_every_step_is_computed_once():
    fn = eg.compile(eg.parse(RNN_INVARIANT), outputs=["s"])
    fn(**_rng_arrays(eg.parse(RNN_INVARIANT), 3))
    # the initial state's h0 V is part of the array made before the loop (x W + δ[t,0] h0 V)
    main = fn.source[fn.source.index("def compiled"):]
    loop = fn.source[fn.source.index("def _recurrence_0"):]
    _, _, inside = loop.partition("for _tau")
    assert "h0 @ V" in main and main.index("h0 @ V") < main.index("_recurrence_0(")
    assert "@ V" not in inside and inside.count("@") == 1


def test_a_step_that_cannot_run_is_the_same_positioned_error_as_in_evaluate():
    program = eg.parse("s[t, n] = 0.5 s[t-1, n] * δ[t, n] + x[t, n]")
    arrays = {"x": np.ones((3, 3))}
    with pytest.raises(eg.ProgramError) as want:
        eg.evaluate(program, **arrays)
    with pytest.raises(eg.ProgramError) as got:
        eg.compile(program)(**arrays)
    assert str(got.value) == str(want.value) and "line 1" in str(got.value)

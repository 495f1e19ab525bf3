"""Buffer reuse and release in compiled code: right for every value the code returns.

The generated code writes a step into a dying temporary's buffer (``out=``) and deletes
each name after its last read.  Both are decided from the generated lines (which value
may share which buffer; which line reads which name), and every test of the suite
compiles in debug mode (tests/conftest.py): before each in-place write the code checks
with ``np.shares_memory`` (torch: the storage ranges) that no other live value shares
the buffer written.

1. The two bugs of issue 15, exact programs and shapes, numpy and torch: a forward
   value read only by a diagonal update was deleted before it (``del L`` before
   ``_diagonal(dLdx, 'aa->a')[...] += L``); a buffer was written in place while a
   returned transpose of it (``S1``) was live.
2. The debug check itself fails when a write is unsafe, and is off by default.
3. Every corpus program's gradient program with respect to every input (seeded
   where the output is not a number), compiled whole, for the gradients alone and
   for each target alone, against ``eg.evaluate`` (numpy and torch).
4. Random programs (``eingrad.testing.random_program``, a fixed seed list): the
   gradient program with respect to every input, every Jacobian and Hessian, with
   and without ``outputs=``; derivatives that read the output's own forward value
   beside a delta term (softmax, exp, tanh...).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import eingrad as eg
from corpus import CORPUS, random_inputs
from eingrad.codegen import lines as lines_module
from eingrad.testing import random_program

# Random programs: a fixed list.  400, 521 and 1248 return a view of a buffer that a
# generator blind to views writes into (found by scanning seeds 0-1499 with it).
SEEDS = sorted({*range(0, 400, 7), 400, 521, 1248})


def close(actual, expected, what: str, rtol: float = 1e-9) -> None:
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    finite = expected[np.isfinite(expected)]
    scale = float(np.max(np.abs(finite), initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=what)


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        return fn(*args, **kw)


def check_compiled(obj, arrays, expected, what: str, sizes=None, outputs=None, backend="numpy") -> None:
    """``obj`` compiled (debug mode), called on ``arrays``, gives ``expected``
    (a dict of targets, or one array)."""
    fn = eg.compile(obj, backend=backend, outputs=outputs, debug=True)
    given = arrays
    if backend == "torch":
        import torch

        given = {k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    out = fn(given, sizes=sizes)
    if backend == "torch":
        out = {k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else out.numpy()
    if isinstance(expected, dict):
        wanted = list(expected) if outputs is None else list(outputs)
        assert list(out) == wanted, what
        for name in wanted:
            close(out[name], expected[name], f"{what}: {name} (outputs={outputs})\n{fn.source}")
    else:
        close(out, expected, f"{what}\n{fn.source}")


def check_program_outputs(program, arrays, what: str, sizes=None, singles=True, backend="numpy") -> None:
    """Every target compiled together, the gradients alone, and (``singles``) each target alone."""
    expected = eg.evaluate(program, arrays, sizes=sizes)
    check_compiled(program, arrays, expected, what, sizes, backend=backend)
    grads = [t for t in program.targets if t.startswith("dLd") or t.startswith("dSeed")]
    if grads and len(grads) < len(program.targets):
        check_compiled(program, arrays, expected, what, sizes, outputs=grads, backend=backend)
    if singles:
        for target in program.targets:
            check_compiled(program, arrays, expected, what, sizes, outputs=[target], backend=backend)


# ---------------------------------------------------------------- 1. the two bugs

BACKENDS = ["numpy", pytest.param("torch", marks=pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("torch") is None, reason="the torch backend needs torch"))]

SOFTMAX = "L_c = exp(x_c - logsumexp_k(x_k))"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_forward_value_read_by_a_diagonal_update_is_released_after_it(backend):
    x = np.random.default_rng(0).standard_normal(5)
    for d in (eg.diff(SOFTMAX, "x"), eg.hessian(SOFTMAX, "x")):
        check_compiled(d, {"x": x}, eg.evaluate(d, x=x), str(d), backend=backend)
    fn = eg.compile(eg.diff(SOFTMAX, "x"), debug=False)
    fn(x=x)
    body = fn.source[fn.source.index("def compiled("):].splitlines()
    diagonal = next(k for k, line in enumerate(body) if "_diagonal(" in line)
    released = next(k for k, line in enumerate(body) if re.match(r"\s*del .*\bL\b", line))
    assert "L" in body[diagonal] and released > diagonal, fn.source


VIEW_BUG = """S1_{c,i,w} = exp(2.3 (M2_wi v3_c c1))**0.5
S2_anp = S1_vng * (G5_rpl * T4_rgp) * T4_avl
L = sum_{k,j}(log(1 + ((T8_ger W9_jr) (0.1 * S2_gli * S2_gli) (c6 * M7_pk) S2_pei)^2))"""
VIEW_BUG_SHAPES = {"M2": (4, 5), "v3": (4,), "T4": (5, 4, 3), "G5": (5, 3, 3), "M7": (5, 4), "T8": (5, 5, 4),
                   "W9": (3, 4), "c1": (), "c6": ()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_buffer_a_returned_view_shares_is_not_written_in_place(backend):
    g = quiet(eg.grad, VIEW_BUG, wrt=["v3", "T4"])
    rng = np.random.default_rng(1)
    arrays = {k: rng.uniform(-1, 1, size=s) for k, s in VIEW_BUG_SHAPES.items()}
    expected = eg.evaluate(g, arrays)
    for outputs in (None, ["dLdT4"], ["dLdv3", "dLdT4"], ["S1", "dLdv3"], ["S1", "dLdT4"]):
        check_compiled(g, arrays, expected, "the view bug", outputs=outputs, backend=backend)


# ---------------------------------------------------------------- 2. the check itself


def test_debug_mode_refuses_an_unsafe_write(monkeypatch):
    """With the generator told that no two buffers overlap, the view bug comes back, and
    debug mode stops it before the write (an EingradError naming both values)."""
    g = quiet(eg.grad, VIEW_BUG, wrt=["v3", "T4"])
    rng = np.random.default_rng(1)
    arrays = {k: rng.uniform(-1, 1, size=s) for k, s in VIEW_BUG_SHAPES.items()}
    monkeypatch.setattr(lines_module, "_overlap", lambda a, b: False)
    wrong = eg.compile(g, debug=False)(arrays)
    assert not np.allclose(wrong["S1"], eg.evaluate(g, arrays)["S1"])  # what debug mode is for
    with pytest.raises(eg.CompiledCallError) as info:
        eg.compile(g, debug=True)(arrays)
    assert isinstance(info.value, eg.EingradError)
    message = str(info.value)
    assert "S1" in message and "shares its memory" in message and "the step:" in message, message


def test_debug_mode_is_off_by_default_and_on_with_the_environment_variable(monkeypatch):
    g = quiet(eg.grad, VIEW_BUG, wrt=["v3", "T4"])
    monkeypatch.delenv("EINGRAD_COMPILE_DEBUG", raising=False)
    assert "_check_write(" not in eg.compile(g).source
    assert "_check_write(" in eg.compile(g, debug=True).source
    monkeypatch.setenv("EINGRAD_COMPILE_DEBUG", "1")
    assert "_check_write(" in eg.compile(g).source
    assert "_check_write(" not in eg.compile(g, debug=False).source


def test_the_names_a_line_reads_include_those_only_its_text_shows():
    from eingrad.codegen.lines import Line, complete_uses

    lines = [Line("L = _softmax(x, (0,))", "L", ("x",), True),
             Line("T = xp.multiply(L, 2.0, out=L)", "T", ("L",), True),
             Line("_diagonal(dLdx, 'aa->a')[...] += L", None, ("dLdx",)),
             Line("_t5 = xp.sum(T.T, axis=(0,))", "_t5", ()),
             Line("x = xp.exp(out)", "x", ())]
    complete_uses(lines, ["x", "out", "aa"])
    assert lines[2].uses == ("dLdx", "L")  # the forward value read by the diagonal update
    assert lines[1].uses == ("L",)  # not 'out' (a keyword), not T (defined here)
    assert lines[3].uses == ("T",)  # not 'T' twice, not 'sum' or 'xp'; 'aa' is in a string
    assert lines[4].uses == ("out",)


def test_a_live_view_blocks_a_write_and_row_blocks_do_not_block_each_other():
    from eingrad.codegen.lines import Line, write_in_place

    def lines():
        return [Line("_t1 = xp.exp(X)", "_t1", ("X",), True),
                Line("S = xp.transpose(_t1, (1, 0))", "S", ("_t1",)),
                Line("_t2 = xp.tanh(_t1)", "_t2", ("_t1",), True, {"_t1": "xp.tanh(_t1, out=_t1)"}),
                Line("_t3 = _t2 + S.T", "_t3", ("_t2", "S"), True)]
    out = write_in_place(lines(), {"X"})
    assert out[2].shares is None  # S, a view of _t1, is read later
    kept = write_in_place(lines()[:3], {"X", "S"})
    assert kept[2].shares is None  # S is returned
    free = write_in_place(lines()[:3], {"X"})
    assert free[2].shares == "_t1"  # S is never read: _t1's buffer is free

    stacked = [Line("_t1 = xp.concatenate([A, B], axis=0) @ U", "_t1", ("A", "B", "U"), True)]
    for k in range(2):
        stacked.append(Line(f"_b{k} = _t1[{2 * k}:{2 * k + 2}]", f"_b{k}", ("_t1",), True))
        stacked[-1].view = ("_t1", 2 * k, 2 * k + 2)
    stacked.append(Line("_h0 = xp.tanh(_b0)", "_h0", ("_b0",), True, {"_b0": "xp.tanh(_b0, out=_b0)"}))
    stacked.append(Line("_h1 = xp.tanh(_b1 + _h0)", "_h1", ("_b1", "_h0"), True,
                        {"_b1": "xp.add(_b1, _h0, out=_b1)"}))
    out = write_in_place(stacked, {"A", "B", "U", "_h1"})
    assert out[3].shares == "_b0" and out[4].shares == "_b1"  # rows 0:2 and 2:4 never meet


# ---------------------------------------------------------------- 3. the corpus


def seeded_gradient(program, arrays, sizes, rng):
    """The gradient program of the last target for every input (seeded by ``dSeed``
    where the output is not a number), and its arrays."""
    output = program.targets[-1]
    value = np.asarray(eg.evaluate(program, arrays, sizes=sizes)[output])
    seed = None
    arrays = dict(arrays)
    if value.ndim:
        seed = "dSeed"
        arrays[seed] = rng.uniform(-1, 1, size=value.shape)
    g = quiet(eg.grad, program, wrt=list(program.inputs), output=output, seed=seed)
    return g, {k: v for k, v in arrays.items() if k in g.inputs}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_corpus_gradient_of_every_input(entry, backend):
    program = quiet(eg.parse, entry.text)
    rng = np.random.default_rng(5)
    arrays = random_inputs(entry, rng)
    if not program.inputs:
        return
    g, given = seeded_gradient(program, arrays, entry.sizes, rng)
    check_program_outputs(g, given, f"{entry.name}: {g}", entry.sizes, backend=backend)


# ---------------------------------------------------------------- 4. random programs


@pytest.mark.parametrize("seed", SEEDS)
def test_random_program_every_gradient_jacobian_and_hessian(seed):
    rp = random_program(np.random.default_rng(seed))
    program = rp.parse()
    rng = np.random.default_rng([seed, 2])
    arrays = rp.random_inputs(rng)
    context = f"seed {seed}; the program:\n{rp.text}"
    if not program.inputs:
        return
    g, given = seeded_gradient(program, arrays, None, rng)
    check_program_outputs(g, given, f"gradient; {context}", singles=len(g.targets) <= 8)
    for wrt in program.inputs:
        for order in (1, 2):
            d = quiet(eg.diff, program, wrt, order)
            check_compiled(d, arrays, eg.evaluate(d, arrays), f"{d}; {context}")


# An output's own forward value beside a delta term: the Jacobian reads the value
# (softmax: L_c (δ_ci - L_i)), written into its diagonal.
OWN_VALUE = [
    (SOFTMAX, "x", {"x": (5,)}),
    ("Y_nc = exp(X_nc - logsumexp_k(X_nk))", "X", {"X": (3, 4)}),
    ("y_i = exp(x_i)", "x", {"x": (4,)}),
    ("y_i = tanh(x_i)", "x", {"x": (4,)}),
    ("y_i = sigmoid(x_i) + x_i", "x", {"x": (4,)}),
    ("y_i = exp(x_i)\nz_i = y_i * y_i + y_i", "x", {"x": (4,)}),
    ("Y_ij = exp(A_ij) B_jk C_k", "A", {"A": (3, 4), "B": (4, 2), "C": (2,)}),
    ("s_i = exp(x_i - logsumexp_k(x_k))\nL = sum_i(s_i w_i)", "x", {"x": (4,), "w": (4,)}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("text", "wrt", "shapes"), OWN_VALUE, ids=[t for t, _, _ in OWN_VALUE])
def test_derivatives_that_read_the_outputs_own_value_beside_a_delta(text, wrt, shapes, backend):
    rng = np.random.default_rng(6)
    arrays = {k: rng.uniform(-1, 1, size=s) for k, s in shapes.items()}
    program = eg.parse(text)
    for output in program.targets:
        for order in (1, 2):
            d = quiet(eg.diff, program, wrt, order, output)
            check_compiled(d, arrays, eg.evaluate(d, arrays), str(d), backend=backend)
    g, given = seeded_gradient(program, arrays, None, rng)
    expected = eg.evaluate(g, given)
    check_compiled(g, given, expected, str(g), backend=backend)
    for target in g.targets:
        check_compiled(g, given, expected, str(g), outputs=[target], backend=backend)


# ---------------------------------------------------------------- 5. calls and allocations

LOGISTIC = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"


def test_python_numbers_take_the_fast_path(monkeypatch):
    """A Python number (lam=0.1) or a numpy float scalar is converted on the fast path,
    as a 0-d array of the dtype the slow path gave it (weak: the arrays' dtype)."""
    from eingrad.codegen import compile as compile_module

    fn = eg.compile(eg.grad(LOGISTIC, wrt=["w"]), outputs=["dLdw"])
    rng = np.random.default_rng(0)
    arrays = {"X": rng.standard_normal((5, 3)), "y": rng.choice([-1.0, 1.0], 5), "w": rng.standard_normal(3)}
    expected = fn(arrays, lam=np.array(0.1))["dLdw"]
    for lam in (0.1, np.float64(0.1)):
        close(fn(arrays, lam=lam)["dLdw"], expected, f"lam={lam!r}")
    close(fn(arrays, lam=1)["dLdw"], fn(arrays, lam=np.array(1.0))["dLdw"], "lam=1")
    slow = []
    monkeypatch.setattr(compile_module, "_numpy_inputs", lambda a: slow.append(1) or {})
    for lam in (0.1, 0.3, np.float64(0.2), 2):
        fn(arrays, lam=lam)
    assert not slow  # every call took the fast path
    monkeypatch.undo()
    f32 = {k: v.astype(np.float32) for k, v in arrays.items()}
    for _ in range(2):  # the slow path, then the fast path: a weak number keeps float32
        out = fn(f32, lam=0.1)["dLdw"]
        assert out.dtype == np.float32
        close(out, expected, "float32", rtol=1e-5)


def test_an_array_that_cannot_fit_is_refused_before_any_code_runs(monkeypatch):
    h = eg.hessian("L = sum_i(exp(A_ij x_j))", "A")
    fn = eg.compile(h)
    assert "def compiled" in fn.source  # the nominal-size source is not refused
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(10**6))
    A, x = np.zeros((20, 30)), np.zeros(30)
    with pytest.raises(eg.errors.TooLargeError) as info:
        fn(A=A, x=x)
    assert isinstance(info.value, MemoryError) and isinstance(info.value, eg.EingradError)
    message = str(info.value)
    assert "(20, 30, 20, 30)" in message and "2.7 MiB" in message, message
    # an intermediate array too: exp of a broadcast sum with three indices
    with pytest.raises(MemoryError, match=r"\(60, 60, 60\)"):
        eg.compile("L = sum_{i,j,k}(exp(A_ij + B_jk))")(A=np.ones((60, 60)), B=np.ones((60, 60)))
    monkeypatch.setenv("EINGRAD_MAX_BYTES", str(10**9))
    close(fn(A=A, x=x), eg.evaluate(h, A=A, x=x), "within the limit")


def test_a_memory_error_of_the_array_library_is_a_too_large_error():
    from eingrad.codegen.compile import _run

    def refuses(arrays):
        raise MemoryError("Unable to allocate 80.0 GiB for an array with shape (100000, 100000)")

    with pytest.raises(eg.errors.TooLargeError, match="80.0 GiB"):
        _run((refuses, "def compiled(arrays):\n    pass\n"), {}, "numpy")

"""Stacked products in generated code (``codegen/stacks.py``, ``codegen/buffers.py``).

An unrolled loop's per-step products with one shared matrix are one product of the
stacked inputs (the forward), and a gradient's sum over steps Σ_t A_tᵀ B_t is one product
of row-stacked operands: each step's dL/dA_t is written into a row block of one buffer,
the forward's values are read as a view of the stacked product they were computed in,
inputs are concatenated.  Every case is compared with the reference interpreter.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import eingrad as eg
import test_compile as tc
from eingrad.codegen.lines import row_offset


def check(fn, obj, arrays, rtol=1e-10):
    expected = eg.evaluate(obj, arrays)
    out = fn(arrays)
    for name, value in out.items():
        tc.close(value, expected[name], name, rtol=rtol)
    return out


@pytest.mark.parametrize("steps", [4, 7, 20])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rnn_weight_gradients_are_one_product_over_every_step(steps, dtype):
    """dLdW = Σ_t x_tᵀ dA_t, dLdU = Σ_t s_{t-1}ᵀ dA_t, dLdb = Σ_t 𝟏ᵀ dA_t: each step's dA_t
    is written into a row block of one buffer, and each gradient is one product."""
    grads = eg.grad(tc.rnn_program(steps), wrt=["W", "U", "b"])
    arrays = {k: v.astype(dtype) for k, v in tc.rnn_arrays(np.random.default_rng(steps), steps).items()}
    fn = eg.compile(grads, outputs=["dLdW", "dLdU", "dLdb"])
    out = check(fn, grads, arrays, rtol=1e-10 if dtype == np.float64 else 1e-4)
    assert all(v.dtype == dtype for v in out.values())
    code = tc.body(fn.source)
    # Sizes are read from the arrays (size_n = x1.shape[0]): the code is right at every size.
    buffer = re.search(rf"(_t\d+) = xp.empty\(\({steps} \* size_n, size_h\), dtype=", code)
    assert buffer, fn.source
    blocks = re.findall(rf"out={buffer.group(1)}\[([^:\]]+):([^\]]+)\]\)", code)
    assert len(blocks) == steps
    assert set(blocks) == {(row_offset(t, "size_n"), row_offset(t + 1, "size_n")) for t in range(steps)}
    # The inputs x_t are copied (concatenated) a quarter at a time.
    chunk = -(-steps // 4)
    first = ", ".join(f"x{t}" for t in range(1, chunk + 1))
    first = f"xp.concatenate([{first}], axis=0)" if chunk > 1 else first
    assert f"dLdW = {first}.T @ {buffer.group(1)}[0:{row_offset(chunk, 'size_n')}]\n" in code, fn.source
    assert code.count("dLdW += ") == -(-steps // chunk) - 1, fn.source
    assert f"dLdb = xp.ones({steps} * size_n, dtype=_t" in code and f") @ {buffer.group(1)}\n" in code, fn.source
    other = {k: np.concatenate([v, v]) if v.shape[:1] == arrays["s0"].shape[:1] else v for k, v in arrays.items()}
    check(fn, grads, other, rtol=1e-10 if dtype == np.float64 else 1e-4)  # twice the batch: the same code


def test_forward_values_are_read_where_they_were_computed():
    """Σ_t H_{t-1}ᵀ dA_t reads the H_t as one view of the forward's stacked product."""
    steps, n, d, h = 6, 3, 4, 5
    lines = ["H1_nh = tanh(X1_nd U_dh + b_h)"]
    lines += [f"H{t}_nh = tanh(X{t}_nd U_dh + H{t - 1}_nk W_kh + b_h)" for t in range(2, steps + 1)]
    lines.append(f"L = 0.5 sum_{{n,h}}((H{steps}_nh - T_nh)^2)")
    grads = eg.grad("\n".join(lines), wrt=["U", "W", "b"])
    rng = np.random.default_rng(2)
    arrays = {f"X{t}": rng.standard_normal((n, d)) for t in range(1, steps + 1)}
    arrays.update(U=rng.standard_normal((d, h)) / 2, W=rng.standard_normal((h, h)) / 2,
                  b=rng.standard_normal(h), T=rng.standard_normal((n, h)))
    fn = eg.compile(grads, outputs=["dLdU", "dLdW", "dLdb"])
    check(fn, grads, arrays)
    code = tc.body(fn.source)
    forward = re.search(r"(_t\d+) = xp.concatenate\(\[X1, .*\], axis=0\) @ U\n", code).group(1)
    assert f"dLdW = {forward}[0:{steps - 1} * size_n].T @ " in code, fn.source
    assert re.search(rf"dLdW = {forward}\[0:{steps - 1} \* size_n\]\.T @ _t\d+\[size_n:{steps} \* size_n\]\n",
                     code), fn.source


def test_sums_of_input_products_are_concatenated_a_quarter_at_a_time():
    """Operands that are inputs (arrays the caller owns) are concatenated, not written:
    a few at a time, so that the copy is never as large as all of them."""
    k = 5
    text = "G_ij = " + " + ".join(f"A{t}_ni B{t}_nj" for t in range(k))
    program = eg.parse(text)
    rng = np.random.default_rng(3)
    arrays = {f"A{t}": rng.standard_normal((4, 3)) for t in range(k)}
    arrays.update({f"B{t}": rng.standard_normal((4, 2)) for t in range(k)})
    fn = eg.compile(program)
    check(fn, program, arrays)
    code = tc.body(fn.source)
    assert "G = xp.concatenate([A0, A1], axis=0).T @ xp.concatenate([B0, B1], axis=0)" in code, fn.source
    assert code.count("G += ") == 2, fn.source
    k = 16
    program = eg.parse("G_ij = " + " + ".join(f"A{t}_ni B{t}_nj" for t in range(k)))
    arrays = {f"{m}{t}": rng.standard_normal((4, 3)) for t in range(k) for m in "AB"}
    fn = eg.compile(program)
    check(fn, program, arrays)
    code = tc.body(fn.source)
    assert "G = xp.concatenate([A0, A1, A2, A3], axis=0).T @ xp.concatenate([B0, B1, B2, B3], axis=0)" in code
    assert code.count("G += ") == 3, fn.source


def test_requested_values_are_not_moved_into_a_stacked_buffer():
    """A step result the caller asked for keeps its own array (it is concatenated)."""
    k = 4
    lines = [f"P{t}_nh = tanh(X{t}_nd W{t}_dh)" for t in range(k)]
    lines.append("G_dh = " + " + ".join(f"X{t}_nd P{t}_nh" for t in range(k)))
    program = eg.parse("\n".join(lines))
    rng = np.random.default_rng(4)
    arrays = {f"X{t}": rng.standard_normal((3, 2)) for t in range(k)}
    arrays.update({f"W{t}": rng.standard_normal((2, 5)) for t in range(k)})
    fn = eg.compile(program)
    out = check(fn, program, arrays)
    assert "xp.empty(" not in fn.source
    for t in range(k):
        assert out[f"P{t}"].base is None or out[f"P{t}"].flags.owndata, "an output is a view of a shared buffer"
    # Asked for G alone, the steps' results are its to place.
    fn = eg.compile(program, outputs=["G"])
    check(fn, program, arrays)
    assert "xp.empty((4 * size_n, size_h)" in fn.source


def test_small_and_large_sums_stay_term_by_term():
    """Three terms are left as they are; so is a sum whose terms are large products."""
    program = eg.parse("G_ij = A0_ni B0_nj + A1_ni B1_nj + A2_ni B2_nj")
    assert "concatenate" not in eg.compile(program).source
    rng = np.random.default_rng(5)
    k, n = 4, 200  # 200³ multiply-adds a term: beyond what stacking is for
    program = eg.parse("G_ij = " + " + ".join(f"A{t}_ni B{t}_nj" for t in range(k)))
    arrays = {f"{m}{t}": rng.standard_normal((n, n)) for t in range(k) for m in "AB"}
    fn = eg.compile(program)
    check(fn, program, arrays)
    assert "concatenate" not in fn.source


def test_a_member_read_under_two_names_or_with_a_coefficient_is_correct():
    """Terms with constants, repeated operands or a transposed operand fall back to one
    product per term; the result is the same."""
    rng = np.random.default_rng(6)
    arrays = {f"A{t}": rng.standard_normal((4, 3)) for t in range(4)}
    arrays["B"] = rng.standard_normal((4, 2))
    arrays["C"] = rng.standard_normal((2, 4))
    for text in [
        "G_ij = 2 A0_ni B_nj + A1_ni B_nj + A2_ni B_nj + A3_ni B_nj",
        "G_ij = A0_ni B_nj + A1_ni B_nj + A2_ni B_nj + A3_ni B_nj",
        "G_ij = A0_ni C_jn + A1_ni C_jn + A2_ni C_jn + A3_ni C_jn",
        "G_ij = A0_ni B_nj - A1_ni B_nj + A2_ni B_nj + A3_ni B_nj",
    ]:
        program = eg.parse(text)
        check(eg.compile(program), program, {k: arrays[k] for k in program.inputs})


def random_loop(rng) -> tuple[str, dict[str, np.ndarray], list[str]]:
    """An unrolled recurrent network of random length, cell, sizes and loss."""
    steps = int(rng.integers(4, 9))
    n, d, h = (int(x) for x in rng.integers(2, 6, size=3))
    fn = rng.choice(["tanh", "sigmoid", "relu", "softplus"])
    bias = bool(rng.integers(2))
    every_step = bool(rng.integers(2))
    b = " + b_h" if bias else ""
    lines = [f"H1_nh = {fn}(X1_nd U_dh{b})"]
    lines += [f"H{t}_nh = {fn}(X{t}_nd U_dh + H{t - 1}_nk W_kh{b})" for t in range(2, steps + 1)]
    last = range(1, steps + 1) if every_step else [steps]
    lines.append("L = " + " + ".join(f"0.5 sum_{{n,h}}((H{t}_nh - T_nh)^2)" for t in last))
    arrays = {f"X{t}": rng.standard_normal((n, d)) for t in range(1, steps + 1)}
    arrays.update(U=rng.standard_normal((d, h)) / 2, W=rng.standard_normal((h, h)) / 2,
                  T=rng.standard_normal((n, h)))
    wrt = ["U", "W"] + (["b"] if bias else [])
    if bias:
        arrays["b"] = rng.standard_normal(h)
    wrt += [f"X{t}" for t in rng.choice(np.arange(1, steps + 1), size=2, replace=False)]
    return "\n".join(lines), arrays, wrt


@pytest.mark.parametrize("seed", range(40))
def test_random_loops_against_evaluate(seed):
    """Random unrolled loops: every gradient, and random subsets of them asked for alone;
    inputs are never written; a second call gives the same arrays."""
    rng = np.random.default_rng(seed)
    text, arrays, wrt = random_loop(rng)
    grads = eg.grad(text, wrt=wrt)
    before = {k: v.copy() for k, v in arrays.items()}
    targets = [f"dLd{w}" for w in wrt]
    for outputs in (targets, list(rng.choice(targets, size=int(rng.integers(1, len(targets))), replace=False))):
        fn = eg.compile(grads, outputs=outputs)
        expected = eg.evaluate(grads, arrays, outputs=outputs)
        first = fn(arrays)
        kept = {k: v.copy() for k, v in first.items()}
        second = fn(arrays)
        for name in outputs:
            tc.close(first[name], expected[name], f"{text}\n{name}")
            np.testing.assert_array_equal(first[name], kept[name])
            np.testing.assert_array_equal(second[name], kept[name])
    for k, v in before.items():
        np.testing.assert_array_equal(arrays[k], v)


@pytest.mark.parametrize("seed", range(12))
def test_random_loops_on_the_torch_backend(seed):
    """The same stacked products in torch (out= into row blocks, views, torch.cat)."""
    torch = pytest.importorskip("torch", reason="the torch backend needs torch: pip install 'eingrad[torch]'")
    rng = np.random.default_rng(100 + seed)
    text, arrays, wrt = random_loop(rng)
    grads = eg.grad(text, wrt=wrt)
    fn = eg.compile(grads, backend="torch")
    expected = eg.evaluate(grads, arrays)
    out = fn({k: torch.from_numpy(v) for k, v in arrays.items()})
    for name, value in out.items():
        tc.close(value.numpy(), expected[name], f"{text}\n{name}")
    assert "out=" in tc.body(fn.source)

"""Generated code is right at every size (issue 15): sizes are read from the arrays when
it runs (``size_n = X.shape[0]``), checked to agree, and one function serves every size of
a plan bucket (docs/compiler.md, "Sizes").  Exported modules and ``check_backward``'s numpy
block are the same code, standing on their own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest

import eingrad as eg
import test_compile as tc
from corpus import CORPUS, random_inputs
from eingrad.cli import main as cli_main

LINREG = "e_n = X_nd w_d - y_n\nL = sum_n(e_n^2) / |n|"


def resized(entry, arrays, grow):
    """The inputs and declared sizes with every size n > 1 made grow(n) (the same n the
    same new size: sizes that must agree still do)."""
    rng = np.random.default_rng(7)
    out = {}
    for name, value in arrays.items():
        if isinstance(value, np.ndarray):
            shape = tuple(grow(n) if n > 1 else n for n in value.shape)
            new = rng.uniform(0.5, 2.0, size=shape) if name in entry.positive else rng.normal(size=shape)
            out[name] = new.astype(value.dtype)
        else:
            out[name] = value
    sizes = {k: grow(n) if n > 1 else n for k, n in entry.sizes.items()} if entry.sizes else None
    return out, sizes


def only_function(fn):
    (generated, _), = fn._cache.values()
    return generated


def run_generated(generated, arrays, sizes):
    """The generated function itself, given inputs as eg.compile's callable passes them."""
    with np.errstate(all="ignore"):
        return generated(tc.compile_module._numpy_inputs(arrays), sizes)


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_corpus_code_generated_at_one_size_is_right_at_others(entry):
    """Each corpus program and the derivative of its output with respect to each input,
    compiled at the corpus's sizes; the very function generated there is run at two other
    sizes (sizes + 1, 2 × sizes + 1) and compared with eg.evaluate."""
    program = tc.parse(entry)
    arrays = random_inputs(entry, np.random.default_rng(21))
    objects = [program]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects += [tc.quiet_diff(program, wrt) for wrt in program.inputs]
    for obj in objects:
        fn = eg.compile(obj)
        fn(arrays, sizes=entry.sizes)
        generated = only_function(fn)
        for grow in (lambda n: n + 1, lambda n: 2 * n + 1):
            other, sizes = resized(entry, arrays, grow)
            expected = eg.evaluate(obj, other, sizes=sizes)
            out = run_generated(generated, other, sizes)
            if isinstance(obj, eg.Program):
                for name in expected:
                    tc.close(out[name], expected[name], f"{entry.name}: {name}")
            else:
                (value,) = out.values()
                tc.close(value, expected, f"{entry.name}: {obj}")


def test_sizes_are_read_from_the_arrays_not_written_into_the_code():
    fn = eg.compile(eg.grad(LINREG, wrt=["w"]), outputs=["dLdw"])
    rng = np.random.default_rng(0)
    fn(X=rng.standard_normal((3, 2)), w=rng.standard_normal(2), y=rng.standard_normal(3))
    code = tc.body(fn.source)
    assert "size_n = X.shape[0]" in code and "xp.asarray(float(size_n)" in code, fn.source
    assert "3.0" not in code, fn.source


def test_one_function_serves_every_size_of_a_size_class(monkeypatch):
    monkeypatch.setattr(tc.compile_module, "Generator", tc.CountingGenerator)
    tc.CountingGenerator.built = 0
    g = eg.grad(tc.MLP, wrt=["W1", "b1", "W2", "b2"])
    fn = eg.compile(g, outputs=["dLdW1", "dLdb1", "dLdW2", "dLdb2"])
    rng = np.random.default_rng(1)
    d, h, c = 5, 6, 3
    params = {"W1": rng.standard_normal((d, h)), "b1": rng.standard_normal(h),
              "W2": rng.standard_normal((h, c)), "b2": rng.standard_normal(c)}
    for n in (17, 20, 64, 40):  # one size class (9-64): one function
        arrays = {"X": rng.standard_normal((n, d)), "Y": rng.standard_normal((n, c)), **params}
        out, expected = fn(arrays), eg.evaluate(g, arrays)
        for name in out:
            tc.close(out[name], expected[name], f"n={n}: {name}")
    assert tc.CountingGenerator.built == 1 and len(fn._cache) == 1
    n = 65  # another size class: its own plan
    arrays = {"X": rng.standard_normal((n, d)), "Y": rng.standard_normal((n, c)), **params}
    tc.close(fn(arrays)["dLdW1"], eg.evaluate(g, arrays)["dLdW1"])
    assert tc.CountingGenerator.built == 2


def test_sizes_that_disagree_are_refused_naming_the_index_and_the_arrays():
    fn = eg.compile(LINREG)
    rng = np.random.default_rng(2)
    fn(X=rng.standard_normal((5, 2)), w=rng.standard_normal(2), y=rng.standard_normal(5))
    with pytest.raises(eg.SizeError, match="'n'"):
        fn(X=rng.standard_normal((5, 2)), w=rng.standard_normal(2), y=rng.standard_normal(6))
    # The generated function itself checks too (in a module of its own it raises ValueError).
    generated = only_function(fn)
    with pytest.raises(eg.SizeError, match=r"index 'n' has size 5 in X \(axis 0\) but size 6 in y \(axis 0\)"):
        generated({"X": np.ones((5, 2)), "w": np.ones(2), "y": np.ones(6)})
    with pytest.raises(eg.SizeError, match=r"index 'd' has size 2 in X \(axis 1\) but size 3 in w \(axis 0\)"):
        generated({"X": np.ones((5, 2)), "w": np.ones(3), "y": np.ones(5)})


def test_exported_module_is_right_at_every_size(tmp_path):
    """``eingrad compile -o mod.py``: the module, imported on its own (eingrad cannot be
    imported where it runs), gives the right gradient at n = 5, 37 and 1000."""
    program = tmp_path / "linreg.eg"
    program.write_text(LINREG + "\n", encoding="utf-8")
    module = tmp_path / "mod.py"
    assert cli_main(["compile", "-f", str(program), "--wrt", "w", "--size", "n=3", "d=4", "-o", str(module)]) == 0
    source = module.read_text(encoding="utf-8")
    assert "eingrad" not in source.split("import numpy as xp")[1], source
    spec = importlib.util.spec_from_file_location("exported_linreg", module)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(3)
    for n in (5, 37, 1000):
        X, w, y = rng.standard_normal((n, 4)), rng.standard_normal(4), rng.standard_normal(n)
        got = mod.compiled({"X": X, "w": w, "y": y})
        np.testing.assert_allclose(got["dLdw"], 2 * X.T @ (X @ w - y) / n, rtol=1e-10)
        np.testing.assert_allclose(got["L"], np.sum((X @ w - y) ** 2) / n, rtol=1e-10)
    with pytest.raises(ValueError, match="index 'n' has size 5 in X"):
        mod.compiled({"X": np.ones((5, 4)), "w": np.ones(4), "y": np.ones(6)})
    # In a fresh interpreter where eingrad cannot be imported.
    script = (
        "import sys, importlib.util, numpy as np\n"
        "sys.modules['eingrad'] = None\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(module)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "X = np.arange(74.0).reshape(37, 2) / 37; w = np.array([0.5, -1.0]); y = np.ones(37)\n"
        "g = m.compiled({'X': X, 'w': w, 'y': y})['dLdw']\n"
        "assert np.allclose(g, 2 * X.T @ (X @ w - y) / 37), g\n"
        "print('ok')\n"
    )
    # d=2 at run time, although the module was written at d=4
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_exported_module_reads_sizes_only_deltas_fix_from_its_sizes_argument(tmp_path):
    module = tmp_path / "delta.py"
    assert cli_main(["compile", "D_ijk = v_k δ_ij", "--size", "i=2", "k=3", "-o", str(module)]) == 0
    spec = importlib.util.spec_from_file_location("exported_delta", module)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    v = np.arange(5.0)
    np.testing.assert_array_equal(mod.compiled({"v": v}, {"i": 4})["D"], np.einsum("ij,k->ijk", np.eye(4), v))
    with pytest.raises(ValueError, match="pass sizes="):
        mod.compiled({"v": v})


def test_check_backward_numpy_block_is_right_at_every_size():
    """The "In numpy" fix block that students copy reads sizes from the arrays."""
    report = eg.check_backward(LINREG, "w", lambda X, w, y: 2 * X.T @ (X @ w - y) / 3.0)
    code = report["w"].code
    assert code is not None and not report.ok
    assert "X.shape[0]" in code and "3.0" not in code, code
    rng = np.random.default_rng(4)
    for n in (7, 64):
        env = {"np": np, "X": rng.standard_normal((n, 2)), "w": rng.standard_normal(2), "y": rng.standard_normal(n)}
        exec(compile(code, "<fix>", "exec"), env)  # noqa: S102 - eingrad's own generated code
        np.testing.assert_allclose(env["dLdw"], 2 * env["X"].T @ (env["X"] @ env["w"] - env["y"]) / n, rtol=1e-10)


@pytest.mark.parametrize("seed", range(60))
def test_random_program_code_is_right_at_other_sizes(seed):
    """Random programs (deltas, sums, functions, sizes |i|) and a derivative: the function
    generated at one set of sizes, run at sizes + 1 and 2 × sizes + 1."""
    from eingrad.testing import random_program

    rp = random_program(np.random.default_rng(seed))
    program = rp.parse()
    rng = np.random.default_rng([seed, 2])
    arrays = rp.random_inputs(rng)
    objects = [program]
    if program.inputs:
        objects.append(tc.quiet_diff(program, program.inputs[int(rng.integers(len(program.inputs)))]))
    entry = type("E", (), {"positive": frozenset(), "sizes": None})()
    for obj in objects:
        fn = eg.compile(obj)
        fn(arrays)
        generated = only_function(fn)
        for grow in (lambda n: n + 1, lambda n: 2 * n + 1):
            other, _ = resized(entry, arrays, grow)  # (the generator keeps log and sqrt arguments positive)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = eg.evaluate(obj, other)
            out = run_generated(generated, other, None)
            if isinstance(obj, eg.Program):
                for name in expected:
                    np.testing.assert_allclose(out[name], expected[name], rtol=1e-9, atol=1e-12, equal_nan=True,
                                               err_msg=f"{name}; seed {seed}:\n{rp.text}")
            else:
                (value,) = out.values()
                np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12, equal_nan=True,
                                           err_msg=f"{obj}; seed {seed}:\n{rp.text}")


def test_sizes_equal_only_by_chance_are_not_merged():
    """Generated where n and i happen to be equal, the code is right where they differ:
    Σ_n A_nh + Σ_i B_ih stays two sums."""
    program = eg.parse("b_h = sum_n(A_nh) + sum_i(B_ih) - sum_j(C_jh)")
    rng = np.random.default_rng(5)
    fn = eg.compile(program)
    fn(A=rng.standard_normal((5, 3)), B=rng.standard_normal((5, 3)), C=rng.standard_normal((5, 3)))
    generated = only_function(fn)
    A, B, C = rng.standard_normal((5, 3)), rng.standard_normal((7, 3)), rng.standard_normal((6, 3))
    out = run_generated(generated, {"A": A, "B": B, "C": C}, None)
    tc.close(out["b"], A.sum(0) + B.sum(0) - C.sum(0))
    tc.close(fn(A=A, B=B, C=C)["b"], A.sum(0) + B.sum(0) - C.sum(0))

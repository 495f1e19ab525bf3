"""Integer indexing (LANGUAGE.md §10): ``Z[n, y[n]]``, ``E[tok[n], d]``, ``δ[c, y[n]]``.

Values are checked against numpy fancy indexing, gradients against HIPS autograd (whose
rule for fancy indexing is its own scatter-add), with repeated indices forced, on every
backend that supports it; the compiled code is checked to gather and scatter, never to
build a one-hot array.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as alogsumexp

import eingrad as eg
from eingrad import expr as E
from eingrad.errors import EingradError, InputError, InputTypeError, ProgramError, SizeError

LM = """H[n,d] = tanh(E[tok[n], d])
Z[n,c] = H[n,d] W[d,c]
L = sum_n(logsumexp_c(Z[n,c]) - Z[n, y[n]])"""

N, V, D, C = 7, 5, 3, 4


def _inputs(dtype=np.float64, itype=np.int64, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "E": rng.standard_normal((V, D)).astype(dtype),
        "W": rng.standard_normal((D, C)).astype(dtype),
        "tok": np.array([1, 1, 1, 0, 4, 1, 4], dtype=itype),  # repeats: the scatter must accumulate
        "y": np.array([3, 3, 0, 1, 2, 2, 3], dtype=itype),
    }


def _loss(E_, W_, tok, y):
    H = anp.tanh(E_[tok])
    Z = anp.dot(H, W_)
    return anp.sum(alogsumexp(Z, axis=1) - Z[np.arange(len(y)), y])


def _expected(a):
    return {
        "dLdE": autograd.grad(_loss, 0)(a["E"], a["W"], a["tok"], a["y"]),
        "dLdW": autograd.grad(_loss, 1)(a["E"], a["W"], a["tok"], a["y"]),
    }


# ---------------------------------------------------------------- syntax


def test_the_written_forms_are_one_node():
    forms = ["L_n = Z[n, y[n]]", "L_n = Z_{n,y_n}", "L_n = Z[n, y_n]", "L_n = sum_c(Z[n,c] δ[c, y[n]])"]
    exprs = [eg.parse(f).statements[0].expr for f in forms]
    assert all(e == exprs[0] for e in exprs)
    (pick,) = [n for n in E.walk(exprs[0]) if isinstance(n, E.Pick)]
    assert pick.table == E.Tensor("y", ("n",))


@pytest.mark.parametrize("src", [LM, "V[n,d] = E[tok[n], d]", "G[v,d] = sum_n(g[n,d] δ[v, tok[n]]) + E[v,d]",
                                 "P[n] = Z[y[n], y[n]]", "Q[b,t,d] = E[tok[b,t], d]"])
def test_print_and_parse_back(src):
    p = eg.parse(src)
    again = eg.parse(str(p))
    assert eg.equivalent(p, again) if hasattr(eg, "equivalent") else again == p
    assert [s.expr for s in again.statements] == [s.expr for s in p.statements]


def test_latex_writes_the_gather_and_the_scatter():
    assert eg.parse("L_n = Z[n, y[n]]").latex() == "L_{n} &= Z_{n, y_{n}}"
    assert "E_{\\mathit{tok}_{n}, d}" in eg.parse("H[n,d] = tanh(E[tok[n], d])").latex()
    assert "g_{nd} \\delta_{v, \\mathit{tok}_{n}}" in eg.parse("G[v,d] = sum_n(g[n,d] δ[v, tok[n]])").latex()
    # where the picked index occurs elsewhere too, the delta stays
    assert "\\delta_{c, y_{n}} x_{c}" in eg.parse("S[n] = sum_c(Z[n,c] δ[c, y[n]] x[c])").latex()


@pytest.mark.parametrize("src, message", [
    ("A[y[n]] = x[n]", "indexed by the integer tensor"),
    ("L_n = Z[n, y[k[n]]]", "reads another one"),
    ("L_n = sum_c(δ[y[n], k[n]] Z[n,c])", "exactly one index name"),
])
def test_bad_syntax_is_positioned(src, message):
    with pytest.raises(EingradError, match=message) as info:
        eg.parse(src)
    assert info.value.spans


def test_a_product_of_indices_is_not_an_index_position():  # index arithmetic: tests/test_shifts.py
    with pytest.raises(eg.ParseError, match="not affine") as info:
        eg.parse("Y[n,i] = X[n, i*k]")
    assert info.value.spans and "X[n, 2i+k]" in info.value.hint


def test_an_index_read_as_a_value_too_is_refused():
    with pytest.raises(ProgramError, match="used as an index .* and also as a value") as info:
        eg.parse("L_n = Z[n, y[n]] + y[n]")
    assert info.value.spans


def test_cli_check_and_eval_draw_integers_in_range(tmp_path, capsys):
    from eingrad.cli import main

    path = tmp_path / "lm.eg"
    path.write_text(LM)
    assert main(["check", str(path)]) == 0
    assert "all 4 checks pass" in capsys.readouterr().out
    assert main(["eval", str(path), "--size", "n=6"]) == 0
    assert main(["grad", str(path), "--wrt", "y"]) != 0
    assert "used as an index" in capsys.readouterr().err


def test_check_backward_passes_integer_inputs_through():
    def user(E, W, tok, y):
        a = {"E": E, "W": W, "tok": tok, "y": y}
        return tuple(_expected(a)[k] for k in ("dLdE", "dLdW"))

    assert eg.check_backward(LM, ["E", "W"], user)
    with pytest.raises(EingradError, match="used as an index"):
        eg.check_backward(LM, ["y"], user)


def test_an_index_computed_by_a_statement_is_refused():
    with pytest.raises(ProgramError, match="used as an index") as info:
        eg.parse("y_n = x_n\nL_n = Z[n, y[n]]")
    assert info.value.spans


# ---------------------------------------------------------------- values


def test_evaluate_matches_fancy_indexing():
    a = _inputs()
    p = eg.parse("V[n,d] = E[tok[n], d]\nP[n] = Q[n, y[n]]\nG[v,d] = sum_n(g[n,d] δ[v, tok[n]])")
    g = np.random.default_rng(1).standard_normal((N, D))
    Q = np.random.default_rng(2).standard_normal((N, C))
    out = eg.evaluate(p, E=a["E"], tok=a["tok"], y=a["y"], Q=Q, g=g, sizes={"v": V})
    np.testing.assert_allclose(out["V"], a["E"][a["tok"]])
    np.testing.assert_allclose(out["P"], Q[np.arange(N), a["y"]])
    expected = np.zeros((V, D))
    np.add.at(expected, a["tok"], g)
    np.testing.assert_allclose(out["G"], expected)


def test_gradient_text_is_a_scatter_with_the_delta():
    g = eg.grad(eg.parse(LM), wrt=["E", "W"])
    text = str(g.statement("dLdE"))
    assert "δ[c, tok[n]]" in text
    assert "δ[c, y[n]]" in str(g.statement("dLdZ"))


@pytest.mark.parametrize("itype", [np.int64, np.int32])
def test_grad_matches_autograd_with_repeated_indices(itype):
    a = _inputs(itype=itype)
    g = eg.grad(eg.parse(LM), wrt=["E", "W"])
    out = eg.evaluate(g, **a)
    for name, value in _expected(a).items():
        np.testing.assert_allclose(out[name], value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("itype", [np.int64, np.int32])
def test_compiled_grad_matches_autograd(backend, itype):
    pytest.importorskip(backend)
    a = _inputs(dtype=np.float32, itype=itype)
    expected = _expected({k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in a.items()})
    fn = eg.compile(eg.grad(eg.parse(LM), wrt=["E", "W"]), backend=backend)
    if backend == "torch":
        import torch

        args = {k: torch.from_numpy(v) for k, v in a.items()}
    else:
        args = a
    out = fn(**args)
    for name, value in expected.items():
        got = np.asarray(out[name])
        assert str(got.dtype) == "float32"  # the float inputs' dtype, never the index's
        np.testing.assert_allclose(got, value, rtol=1e-4, atol=1e-5)


def test_compiled_code_gathers_and_scatters_without_a_one_hot():
    fn = eg.compile(eg.grad(eg.parse(LM), wrt=["E", "W"]))
    fn(**_inputs())
    source = fn.source
    assert "_gather(E, tok" in source
    assert "dLdE = _scatter_add((size_c2, size_d)" in source or "_scatter_add((size_c2, size_d)" in source
    assert "_kronecker" not in source.split("def compiled")[1]
    assert "arange" not in source.split("def compiled")[1]


def test_scatter_is_the_size_of_the_gradient():
    # the embedding gradient: one scatter into an array of E's shape, no array of ones beside it
    p = eg.parse("L = sum_n(sum_d(E[tok[n], d] g[n,d]))")
    fn = eg.compile(eg.grad(p, wrt=["E"]))
    rng = np.random.default_rng(0)
    tok, g = rng.integers(0, 50, size=64), rng.standard_normal((64, 4))
    out = fn(E=rng.standard_normal((50, 4)), tok=tok, g=g)
    expected = np.zeros((50, 4))
    np.add.at(expected, tok, g)
    np.testing.assert_allclose(out["dLdE"], expected)
    body = fn.source.split("def compiled")[1]
    assert body.count("_scatter_add(") == 1 and "** 0" not in body


def test_dask_says_it_does_not_support_indexing():
    pytest.importorskip("dask")
    fn = eg.compile(eg.parse("V[n,d] = E[tok[n], d]"), backend="dask")
    with pytest.raises(EingradError, match="not supported by the dask backend"):
        fn(E=np.ones((3, 2)), tok=np.array([0, 2]))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("run", ["evaluate", "compile", "torch", "jax"])
@pytest.mark.parametrize("bad", [-1, C])
def test_out_of_range_labels_name_tensor_position_and_value(run, bad):
    # numpy and torch code finds it in its own helpers (then the call names it); jax is
    # checked before the call (it clamps inside jit).
    if run in ("torch", "jax"):
        pytest.importorskip(run)
    a = _inputs()
    a["y"] = a["y"].copy()
    a["y"][4] = bad
    p = eg.parse(LM)
    with pytest.raises(InputError) as info:
        if run == "evaluate":
            eg.evaluate(p, **a)
        else:
            eg.compile(p, backend="numpy" if run == "compile" else run)(**a)
    message = str(info.value)
    assert f"y[4] = {bad}" in message and f"size {C}" in message
    assert info.value.spans


@pytest.mark.parametrize("run", ["evaluate", "compile"])
def test_a_float_index_is_refused(run):
    a = _inputs()
    a["tok"] = a["tok"].astype(np.float64)
    p = eg.parse(LM)
    with pytest.raises(InputTypeError, match="used as an index, so it must hold integers") as info:
        if run == "evaluate":
            eg.evaluate(p, **a)
        else:
            eg.compile(p)(**a)
    assert info.value.spans and info.value.hint


@pytest.mark.parametrize("ask", [lambda p: eg.grad(p, wrt=["y"]), lambda p: eg.diff(p, "tok")])
def test_no_derivative_with_respect_to_an_integer_tensor(ask):
    with pytest.raises(EingradError, match="used as an index, so it holds integers") as info:
        ask(eg.parse(LM))
    assert info.value.spans and "never differentiated" in info.value.hint


def test_an_index_size_nothing_fixes_must_be_declared():
    with pytest.raises(SizeError, match="cannot be determined"):
        eg.evaluate(eg.parse("G[v,d] = sum_n(g[n,d] δ[v, tok[n]])"), g=np.ones((2, 2)), tok=np.array([0, 1]))


def test_matrix_form_and_explain():
    p = eg.parse(LM)
    assert "no matrix form" in str(eg.matrix_form(p))
    assert "δ[k, y[n]]" in str(eg.explain(p, "W"))


@pytest.mark.parametrize("mode", ["diff", "grad", "hessian"])
def test_playground_derives_and_checks_a_program_with_lookups(mode):
    from eingrad.web.work import derive

    result = derive({"program": LM, "wrt": [], "mode": mode, "positive": True})
    assert result["wrt"] == ["E", "W"]  # the integer inputs are not differentiated
    assert result["check"]["pass"]
    assert "_scatter_add" in result["code"]["source"] or mode != "grad"


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_a_delta_of_an_index_and_its_own_lookup_is_a_mask(backend):
    # δ[n, y[n]] is 1 where y_n = n: fixed points, never a scatter over a second n axis
    pytest.importorskip(backend)
    p = eg.parse("s = sum_n(δ[n, y[n]] x[n])\nS[n] = δ[n, y[n]] x[n]")
    y, x = np.array([0, 2, 2, 3, 1]), np.arange(1.0, 6.0)
    expected = np.where(y == np.arange(5), x, 0.0)
    values = eg.evaluate(p, y=y, x=x)
    np.testing.assert_allclose(values["S"], expected)
    args = {"y": y, "x": x}
    if backend == "torch":
        import torch

        args = {k: torch.from_numpy(v) for k, v in args.items()}
    out = eg.compile(p, backend=backend)(**args)
    np.testing.assert_allclose(np.asarray(out["S"]), expected, rtol=1e-6)
    np.testing.assert_allclose(float(out["s"]), expected.sum(), rtol=1e-6)


def test_evaluate_takes_the_float_inputs_dtype_never_the_index_dtype():
    a = _inputs(dtype=np.float32, itype=np.int64)
    out = eg.evaluate(eg.grad(eg.parse(LM), wrt=["E", "W"]), **a)
    assert out["dLdE"].dtype == np.float32 and out["L"].dtype == np.float32


def test_an_exported_module_refuses_an_index_outside_its_axis(tmp_path):
    # `eingrad compile -o` code runs without eingrad's wrapper: its own helpers check the
    # range, so -1 is an error there too, never numpy's silent read of the last row.
    import importlib.util

    from eingrad.cli import main as cli_main

    module = tmp_path / "embed.py"
    assert cli_main(["compile", "g_nd = E[tok[n], d]", "--size", "n=5", "c=7", "d=3", "-o", str(module)]) == 0
    spec = importlib.util.spec_from_file_location("exported_embed", module)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    E = np.arange(21.0).reshape(7, 3)
    np.testing.assert_array_equal(mod.compiled({"E": E, "tok": np.array([0, 6, 2])})["g"], E[[0, 6, 2]])
    for bad in (-1, 7):
        with pytest.raises(IndexError, match=f"holds {bad}, outside 0 ... 6"):
            mod.compiled({"E": E, "tok": np.array([0, bad, 2])})

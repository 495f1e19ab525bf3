"""Names in derived programs: the user's own index names, sizes the text can size,
and printed gradient programs that parse back and evaluate on their own."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import eingrad as eg
from corpus import CORPUS, Entry, random_inputs
from eingrad.cli.demo import rnn_program
from eingrad.expr import Size, Tensor, walk

BATCH_NORM = """mu_h = sum_n(X_nh) / |n|
var_h = sum_n((X_nh - mu_h)^2) / |n|
Z_nh = (X_nh - mu_h) / sqrt(var_h + eps)
Y_nh = gamma_h Z_nh + beta_h
L = sum_{n,h}(G_nh Y_nh)"""
BATCH_NORM_SHAPES = {"X": (5, 3), "eps": (), "gamma": (3,), "beta": (3,), "G": (5, 3)}


def _indices_of(program: eg.Program) -> set[str]:
    names: set[str] = set()
    for stmt in program:
        names.update(stmt.indices)
        for node in walk(stmt.expr):
            if isinstance(node, Tensor):
                names.update(node.indices)
    return names


def _arrays(program: eg.Program, shapes: dict, rng: np.random.Generator) -> dict:
    return {name: rng.uniform(0.5, 2.0, shapes[name]) for name in program.inputs}


def test_rnn_gradient_uses_only_the_users_index_names() -> None:
    program = rnn_program(steps=4)
    g = eg.grad(program, wrt=["W", "U", "b"])
    user = _indices_of(program)
    assert user == {"n", "d", "h", "k"}
    for stmt in g.statements[len(program):]:
        text = str(stmt)
        used = set(re.findall(r"_([a-z]+)", text)) | set(re.findall(r"Σ_([a-z]+)", text))
        assert {c for word in used for c in word} <= user, text
    # the batch index of every term is n, as the user wrote it
    assert str(g.statement("dLdW")) == (
        "dLdW_dh = (1 - s4_nh^2) x4_nd dLds4_nh + (1 - s3_nh^2) x3_nd dLds3_nh"
        " + (1 - s2_nh^2) x2_nd dLds2_nh + (1 - s1_nh^2) x1_nd dLds1_nh"
    )


def test_a_term_keeps_a_fresh_name_where_the_users_would_clash() -> None:
    # In dLds1_nh, the hidden index summed with U is not h (h is free there): it keeps k.
    g = eg.grad(rnn_program(steps=2), wrt=["U"])
    assert str(g.statement("dLds1")) == "dLds1_nh = (1 - s2_nk^2) U_hk dLds2_nk"


def test_batch_norm_sizes_are_the_batch_index() -> None:
    g = eg.grad(BATCH_NORM, wrt=["X", "gamma", "beta"])
    text = str(g)
    sizes = {node.index for stmt in g for node in walk(stmt.expr) if isinstance(node, Size)}
    assert sizes == {"n"}, text
    assert "/ |n| dLdvar_h Σ_n(X_nh - mu_h)" in text


def test_batch_norm_gradient_parses_back_and_evaluates_on_its_own() -> None:
    program = eg.parse(BATCH_NORM)
    g = eg.grad(program, wrt=["X", "gamma", "beta"])
    again = eg.parse(str(g))
    assert again == g
    arrays = _arrays(program, BATCH_NORM_SHAPES, np.random.default_rng(0))
    want, got = eg.evaluate(g, **arrays), eg.evaluate(again, **arrays)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12)
    # and the gradient is right: the mean over the batch of dLdX is zero
    np.testing.assert_allclose(want["dLdX"].sum(axis=0), 0, atol=1e-10)


def test_batch_norm_derivative_names_the_batch_size_n() -> None:
    d = eg.diff(BATCH_NORM, "X", output="var")
    sizes = {node.index for node in walk(d.expr) if isinstance(node, Size)}
    assert sizes == {"n"}, str(d)


@pytest.mark.parametrize(
    ("text", "wrt", "statement"),
    [
        # a gradient constant along an axis reads the tensor whose shape it has
        ("L = sum_i(x_i)", "x", "dLdx_i = x_i^0"),
        ("L = sum_n(x_n) / |n|", "x", "dLdx_n = x_n^0 / |n|"),
        # a size that no tensor of the statement carries is counted on the axis it is the length of
        ("L = sum_i(x_i + b)", "b", "dLdb = Σ_i x_i^0"),
        ("L = sum_{i,j}(X_ij + b)", "b", "dLdb = Σ_ij X_ij^0"),
        # a declared size stays as written: sizes= gives it
        ("L = |k| sum_i(x_i)", "x", "dLdx_i = x_i^0 |k|"),
    ],
)
def test_constant_gradients_carry_their_axes(text: str, wrt: str, statement: str) -> None:
    g = eg.grad(text, wrt=[wrt])
    assert str(g.statements[-1]) == statement
    assert eg.parse(str(g)) == g


def _seed_for(program: eg.Program) -> str | None:
    out = program.statement(program.output)
    if not out.indices:
        return None
    name, k = f"dLd{out.target}", 2
    while name in program.inputs or name in program.targets:
        name, k = f"dLd{out.target}{k}", k + 1
    return name


def _check_printed(entry: Entry, wrt: list[str]) -> None:
    program = eg.parse(entry.text) if not entry.warns else _parse_quietly(entry.text)
    seed = _seed_for(program)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        g = eg.grad(program, wrt=wrt, seed=seed)
    arrays = random_inputs(entry, np.random.default_rng(1))
    if seed is not None:
        shape = np.shape(eg.evaluate(program, arrays, sizes=entry.sizes)[program.output])
        arrays[seed] = np.random.default_rng(2).standard_normal(shape)
    arrays = {name: value for name, value in arrays.items() if name in g.inputs or name in g.unread}
    text = str(g)
    again = _parse_quietly(text)
    assert again == g, text
    want = eg.evaluate(g, arrays, sizes=entry.sizes)
    # An upstream gradient that no statement reads (every gradient is zero) is not in the text.
    got = eg.evaluate(again, {k: v for k, v in arrays.items() if k in again.inputs}, sizes=entry.sizes)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=f"{name} in\n{text}")


def _parse_quietly(text: str) -> eg.Program:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        return eg.parse(text)


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.name)
def test_every_corpus_gradient_prints_parses_and_evaluates(entry: Entry) -> None:
    program = _parse_quietly(entry.text)
    for name in program.inputs:
        _check_printed(entry, [name])
    _check_printed(entry, list(program.inputs))


def test_a_name_an_implicit_sum_beside_it_uses_is_not_taken() -> None:
    # Two sigmoids in one product each sum over the features: both named d, the printed
    # product would read as one sum over d, so the second keeps a name of its own.
    h = eg.hessian("L = sum_n(softplus(-y_n X_nd w_d)) + 0.5 lam w_d w_d", "w")
    assert str(h) == (
        "∂²L/∂w_i∂w_l = sigmoid(-y_n X_nd w_d) (1 - sigmoid(-y_n X_nm w_m)) y_n^2 X_nl X_ni + lam δ_il"
    )


def test_two_batch_indices_of_different_sizes_keep_different_names() -> None:
    # X and Z both have a batch index n, but nothing makes their lengths equal: in one
    # statement one name has one size, so the two terms of dLdW cannot both sum over n.
    text = "a_h = X_nd W_dh\nb_h = Z_nd W_dh\nL = sum_h(a_h^2 + b_h^2)"
    g = eg.grad(text, wrt=["W"])
    assert str(g.statement("dLdW")) == "dLdW_dh = dLdb_h Σ_n Z_nd + dLda_h Σ_i X_id"
    rng = np.random.default_rng(3)
    arrays = {"X": rng.standard_normal((5, 3)), "Z": rng.standard_normal((7, 3)), "W": rng.standard_normal((3, 2))}
    want = eg.evaluate(g, **arrays)["dLdW"]
    np.testing.assert_allclose(eg.evaluate(eg.parse(str(g)), **arrays)["dLdW"], want)
    X, Z, W = arrays["X"], arrays["Z"], arrays["W"]
    a, b = X.sum(0) @ W, Z.sum(0) @ W
    np.testing.assert_allclose(want, np.outer(X.sum(0), 2 * a) + np.outer(Z.sum(0), 2 * b))


def test_rnn_with_a_read_out_uses_only_the_users_index_names() -> None:
    # examples/rnn_sine.py's model: each step's adjoint has two terms, the read-out's and
    # the next step's; the hidden index summed with U takes the user's k (h is free there).
    builder = eg.ProgramBuilder()
    builder.add("s1_nh = tanh(x1_n W_h + b_h)")
    for t in range(2, 5):
        builder.add(f"s{t}_nh = tanh(x{t}_n W_h + s{t - 1}_nk U_kh + b_h)")
    for t in range(1, 5):
        builder.add(f"e{t}_n = s{t}_nh V_h + c - y{t}_n")
    builder.add("L = (" + " + ".join(f"sum_n(e{t}_n^2)" for t in range(1, 5)) + ") / (|n| * 4)")
    program = builder.build()
    g = eg.grad(program, wrt=["W", "U", "b", "V", "c"])
    assert str(g.statement("dLds3")) == "dLds3_nh = V_h dLde3_n + (1 - s4_nk^2) U_hk dLds4_nk"
    names = set()
    for stmt in g:
        names |= set(stmt.indices) | {i for node in walk(stmt.expr) if hasattr(node, "indices") for i in node.indices}
    assert names == {"n", "h", "k"}
    assert eg.parse(str(g)) == g


@pytest.mark.parametrize("seed", range(60))
def test_random_gradient_programs_print_parse_and_evaluate(seed: int) -> None:
    from eingrad.testing import random_program

    rp = random_program(np.random.default_rng(seed))
    program = rp.parse()
    if not program.inputs:
        pytest.skip("a program without inputs has no gradient")
    out = program.statement(program.output)
    seed_name = "dLdOut" if out.indices else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        g = eg.grad(program, wrt=list(program.inputs), seed=seed_name)
    again = _parse_quietly(str(g))
    assert again == g, str(g)
    arrays = rp.random_inputs(np.random.default_rng(seed + 1))
    if seed_name:
        arrays[seed_name] = np.random.default_rng(seed).uniform(-1, 1, [rp.index_sizes[i] for i in out.indices])
    want = eg.evaluate(g, {k: v for k, v in arrays.items() if k in g.inputs or k in g.unread})
    got = eg.evaluate(again, {k: v for k, v in arrays.items() if k in again.inputs})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=name)

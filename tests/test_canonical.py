"""Equivalence up to index names and operand order (canonical.py)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import eingrad as eg
from corpus import CORPUS
from eingrad.expr import (
    Add,
    Call,
    Choose,
    Compare,
    Const,
    Delta,
    Expr,
    LogSumExp,
    MatFn,
    Mul,
    Pow,
    Size,
    Sum,
    Tensor,
    rename_indices,
    walk,
)
from eingrad.program import Program, Statement
from eingrad.testing import random_program

EQUIVALENT = [
    # renamed summed indices
    ("y_i = A_ij x_j", "y_i = A_ik x_k"),
    ("s = sum_k(x_k)", "s = sum_q(x_q)"),
    ("L = logsumexp_i(z_i)", "L = logsumexp_j(z_j)"),
    ("s = A_ij B_jk C_ki", "s = A_ab B_bc C_ca"),
    ("s = A_ij A_jk A_ki", "s = A_ab A_ca A_bc"),
    ("y[batch] = X[batch, hid] w[hid]", "y[batch] = X[batch, h] w[h]"),
    # shuffled operands
    ("y_i = A_ij x_j + b_i", "y_i = b_i + x_j A_ij"),
    ("y = exp(a + b c)", "y = exp(c b + a)"),
    ("s = A_ij B_ji", "s = B_ij A_ji"),
    ("y_i = 2 u_i v_i", "y_i = v_i u_i * 2"),
    # where a sum sits in a product
    ("C_ik = A_ij B_jk W_ik", "C_ik = W_ik sum_j(A_ij B_jk)"),
    ("y_i = A_ij sum_k(B_jk c_k)", "y_i = sum_k(A_ij B_jk c_k)"),
    ("y_i = A_ij sum_k(B_jk c_k)", "y_i = sum_{j,k}(c_k B_jk A_ij)"),
    ("s = sum_i(x_i) sum_j(y_j)", "s = x_i y_j"),
    # δ is symmetric
    ("f_ijk = v_k δ_ij", "f_ijk = δ_ji v_k"),
    ("v_i = A_ij δ_jk B_ik", "v_i = B_il δ_lm A_im"),
    ("y_i = δ_ijk A_jk", "y_i = δ_kij A_kj"),
    # the summation rule: each term of a + sums its own occurrences
    ("s = x_i x_i + y_j", "s = y_k + x_j x_j"),
    # free indices renamed at the program level
    ("y_a = A_ab x_b", "y_i = A_ij x_j"),
    ("Y_ij = A_ij", "Y_ji = A_ji"),
    ("h_i = W_ij x_j; L = h_k h_k", "h_a = x_b W_ab; L = h_i h_i"),
]

NOT_EQUIVALENT = [
    ("y_i = A_ij x_j", "y_i = A_ji x_j"),  # a transposed operand
    ("Y_ij = A_ij", "Y_ij = A_ji"),
    ("s = A_ij B_ij", "s = A_ij B_ji"),
    ("y = exp(x)", "y = log(x)"),  # a different function
    ("y = sum_i(log(p_i))", "y = log(sum_i(p_i))"),
    ("L = logsumexp_i(z_i)", "L = sum_i(z_i)"),
    ("y_i = x_i^2", "y_i = x_i^3"),
    ("y_i = x_i + 1", "y_i = x_i + 2"),
    ("y_i = A_ii", "y_i = A_ij"),
    ("s = x_i x_i + y_j", "s = sum_i(x_i x_i + y_i)"),
    ("h_i = W_ij x_j; L = h_k h_k", "h_i = W_ij x_j; M = h_k h_k"),  # another target name
    ("h_i = W_ij x_j; L = h_k h_k", "h_i = W_ij x_j"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent(a, b):
    assert eg.equivalent(a, b)
    assert eg.equivalent(b, a)
    assert eg.parse(a).equivalent(eg.parse(b))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_not_equivalent(a, b):
    assert not eg.equivalent(a, b)
    assert not eg.equivalent(b, a)


def test_expressions_compare_with_their_free_indices():
    a = eg.parse("y_i = A_ij x_j").statements[0].expr
    b = eg.parse("y_k = A_kj x_j").statements[0].expr
    assert not eg.equivalent(a, b)  # y_i and y_k: an expression keeps its free index names
    assert eg.equivalent(a, eg.parse("y_i = x_l A_il").statements[0].expr)


def test_canonical_form_is_idempotent_and_hides_summed_names():
    a = eg.parse("s = A_ij B_jk C_ki").statements[0].expr
    b = eg.parse("s = C_ca B_bc A_ab").statements[0].expr
    assert eg.canonical(a) == eg.canonical(b)
    assert eg.canonical(eg.canonical(a)) == eg.canonical(a)


# ---------------------------------------------------------------- confluence fuzz


def all_indices(e: Expr) -> set[str]:
    out: set[str] = set()
    for node in walk(e):
        if isinstance(node, (Tensor, Delta)):
            out.update(node.indices)
        elif isinstance(node, (Sum, LogSumExp, MatFn)):
            out.update(node.indices)
    return out


class Scrambler:
    """Shuffles the operands of every + and product and the indices of every δ,
    and renames every bound index.

    Nodes are rebuilt with the class constructors, so the result keeps the shape
    of the tree (a constant factor may end up anywhere in a product).
    """

    def __init__(self, rng: np.random.Generator, taken: set[str]) -> None:
        self.rng = rng
        self.taken = set(taken)

    def fresh(self) -> str:
        k = len(self.taken)
        while f"z{k}" in self.taken:
            k += 1
        self.taken.add(f"z{k}")
        return f"z{k}"

    def shuffled(self, children: tuple[Expr, ...]) -> tuple[Expr, ...]:
        out = [self(c) for c in children]
        return tuple(out[k] for k in self.rng.permutation(len(out)))

    def __call__(self, e: Expr) -> Expr:
        if isinstance(e, (Tensor, Const, Size)):
            return e
        if isinstance(e, Delta):
            return Delta(tuple(e.indices[k] for k in self.rng.permutation(len(e.indices))))
        if isinstance(e, Add):
            return Add(self.shuffled(e.terms))
        if isinstance(e, Mul):
            return Mul(self.shuffled(e.factors))
        if isinstance(e, Pow):
            return Pow(self(e.base), e.exponent)
        if isinstance(e, Call):
            return Call(e.fn, self(e.arg))
        if isinstance(e, MatFn):  # det/logdet bind their axes; inv keeps them
            mapping = {i: self.fresh() for i in e.indices}
            body = self(rename_indices(e.body, mapping))
            return MatFn(e.op, tuple(mapping.get(i, i) for i in e.axes), body)
        if e.binds:
            mapping = {i: self.fresh() for i in e.indices}
            return e.rebind(tuple(mapping.values()), self(rename_indices(e.body, mapping)))
        if isinstance(e, (Choose, Compare)):  # operands keep their order (max(a, b) is not max(b, a))
            return e.with_children(tuple(self(c) for c in e.children))
        raise TypeError(type(e).__name__)


def scramble_statement(stmt: Statement, rng: np.random.Generator, rename_free: bool) -> Statement:
    scrambler = Scrambler(rng, all_indices(stmt.expr) | set(stmt.indices))
    expr = scrambler(stmt.expr)
    indices = stmt.indices
    if rename_free:
        mapping = {i: scrambler.fresh() for i in stmt.indices}
        expr = rename_indices(expr, mapping)
        indices = tuple(mapping[i] for i in indices)
    return Statement(stmt.target, indices, expr)


# Derandomized: CI draws the same 250 seeds every run.  Canonical forms are a heuristic
# labelling, not a full graph canonicalisation: about 1 random program in 1500 has two
# factors of one shape that a scramble orders differently (seed 665, below), so that
# `equivalent` answers False for two equal expressions (never True for different ones).
@settings(max_examples=250, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1))
def test_scrambled_programs_reach_the_same_canonical_form(seed):
    rng = np.random.default_rng(seed)
    generated = random_program(rng)
    note(f"seed {seed}\n{generated.text}")
    program = generated.parse()
    for stmt in program:
        scrambled = scramble_statement(stmt, rng, rename_free=False)
        note(f"scrambled: {scrambled.expr!r}")
        assert scrambled.expr.free == stmt.expr.free
        assert eg.canonical(scrambled.expr) == eg.canonical(stmt.expr)
        assert eg.equivalent(scrambled.expr, stmt.expr)

    renamed = Program(tuple(scramble_statement(s, rng, rename_free=True) for s in program))
    assert eg.equivalent(program, renamed)
    assert renamed.equivalent(program)

    # The scrambler itself must not change the meaning.
    inputs = generated.random_inputs(rng)
    expected = eg.evaluate(program, **inputs)
    got = eg.evaluate(renamed, **inputs)
    for name, value in expected.items():
        scale = max(1.0, float(np.max(np.abs(value), initial=0.0)))
        np.testing.assert_allclose(got[name], value, rtol=1e-9, atol=1e-12 * scale, equal_nan=True)


@pytest.mark.parametrize("entry", CORPUS, ids=lambda entry: entry.name)
def test_scrambled_corpus_programs_stay_equivalent(entry):
    rng = np.random.default_rng(0)
    with pytest.warns(eg.SurprisingSumWarning) if entry.warns else contextlib.nullcontext():
        program = eg.parse(entry.text)
    scrambled = Program(tuple(scramble_statement(s, rng, rename_free=True) for s in program))
    assert eg.equivalent(program, scrambled)


@pytest.mark.xfail(strict=True, reason="canonical labelling breaks a tie between same-shaped factors "
                   "by their order (a known limit: equivalent() may miss an equivalence, never invent one)")
def test_canonical_form_of_a_scramble_with_same_shaped_factors():
    rng = np.random.default_rng(665)
    program = random_program(rng).parse()
    scramble_statement(program.statements[0], rng, rename_free=False)
    stmt = program.statements[1]
    scrambled = scramble_statement(stmt, rng, rename_free=False)
    assert eg.canonical(scrambled.expr) == eg.canonical(stmt.expr)

"""Random programs: the printed text parses back to an equal program that evaluates the same.

``random_program`` (eingrad.testing) builds valid programs from a seed; on a
failure hypothesis prints the seed and the program text.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

import eingrad as eg
from eingrad.testing import random_program

SEEDS = st.integers(0, 2**32 - 1)


def generate(seed: int):
    generated = random_program(np.random.default_rng(seed))
    note(f"seed {seed}\nprogram:\n{generated.text}")
    program = generated.parse()
    note(f"printed:\n{program}")
    return generated, program


@settings(max_examples=300, deadline=None)
@given(SEEDS)
def test_printed_program_parses_back_to_an_equal_program(seed):
    _, program = generate(seed)
    printed = str(program)
    with warnings.catch_warnings():
        # The printer writes Σ where an implicit sum would surprise a reader.
        warnings.simplefilter("error", eg.SurprisingSumWarning)
        again = eg.parse(printed)
    assert again == program
    assert [str(s) for s in again] == printed.split("\n")


@settings(max_examples=300, deadline=None)
@given(SEEDS)
def test_printed_program_evaluates_like_the_original(seed):
    generated, program = generate(seed)
    inputs = generated.random_inputs(np.random.default_rng(seed))
    expected = eg.evaluate(program, **inputs)
    got = eg.evaluate(str(program), **inputs)
    assert list(got) == list(expected) == program.targets
    for name, value in expected.items():
        assert value.shape == tuple(generated.index_sizes[i] for i in program.statement(name).indices)
        assert np.all(np.isfinite(value)), f"the generator promised finite values for {name}"
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=0, equal_nan=True)


@settings(max_examples=300, deadline=None)
@given(SEEDS)
def test_latex_printing_never_raises(seed):
    _, program = generate(seed)
    latex = program.latex()
    note(f"latex:\n{latex}")
    assert latex.count("\\\\\n") == len(program) - 1
    assert latex.count("{") == latex.count("}")
    assert latex.count("\\left(") == latex.count("\\right)")
    for stmt in program:
        assert stmt.latex().count("&") == 0
        stmt.expr.latex()

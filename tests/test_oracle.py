"""Random programs against an independent oracle: autograd (HIPS) on the same program.

``random_program`` (eingrad.testing) keeps each generated program as a tree of
what is written; ``RandomProgram.autograd_function`` walks that tree to build
an ``autograd.numpy`` function (einsum with explicit subscripts, its own
logsumexp and sigmoid), never going through eingrad's parser or evaluator.
For every program, with a random input as ``wrt`` and the last target as the
output, in float64:

- the forward values agree (the two readings of the tree mean the same),
- ``eg.diff`` (the Jacobian) equals ``autograd.jacobian``,
- ``eg.hessian`` equals autograd's Hessian (reverse over reverse),
- ``eg.grad`` (reverse mode) equals ``eg.diff`` for every input: directly for
  a scalar output, contracted with a random seed array otherwise,

programs with max/min/mean_k, softmax_k, max/min/where/clip and comparisons
included; half of the programs that select draw their inputs on the grid
{-1, -1/2, 0, 1/2, 1}, so that ties and clip bounds are met exactly (autograd
shares ties equally for np.max and np.maximum and gives 0 at clip's bounds),

to 1e-8 relative (``rtol=1e-8``, ``atol=1e-8`` times the largest magnitude of
the expected array, or of 1e-4 if that is smaller).  300 programs per run (seeds 0..299);
``EINGRAD_ORACLE_PROGRAMS=N`` checks seeds 0..N-1 (nightly size), and
``EINGRAD_ORACLE_FIRST=K`` starts at seed K.  A failure names the seed, the
input and the program text.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import eingrad as eg
from eingrad.testing import (
    Apply,
    Bind,
    Cmp,
    Gather,
    Mat,
    Neg,
    Plus,
    Power,
    RandomProgram,
    Ref,
    Select,
    Soft,
    Times,
    random_program,
    random_recurrence,
)

autograd = pytest.importorskip("autograd")

FIRST = int(os.environ.get("EINGRAD_ORACLE_FIRST", "0"))
PROGRAMS = int(os.environ.get("EINGRAD_ORACLE_PROGRAMS", "300"))
RTOL = 1e-8
SCALE_FLOOR = 1e-4  # softmax of sums of cosines: Hessians of 1e-6 cancel from terms of 1e-2


def reads(node) -> set[str]:
    """The tensors a node of the written tree reads."""
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, Gather):
        return {node.name, node.table}
    if isinstance(node, Times):
        return set().union(*(reads(f) for f in node.factors + node.divisors))
    if isinstance(node, Plus):
        return set().union(*(reads(t) for t in node.terms))
    if isinstance(node, Neg):
        return reads(node.operand)
    if isinstance(node, Power):
        return reads(node.base)
    if isinstance(node, Apply):
        return reads(node.arg)
    if isinstance(node, (Bind, Mat, Soft)):
        return reads(node.body)
    if isinstance(node, Select):
        return set().union(*(reads(a) for a in node.args))
    if isinstance(node, Cmp):
        return reads(node.left) | reads(node.right)
    return set()  # Num, Kron


def inputs_read(rp: RandomProgram, target: str) -> list[str]:
    """The inputs ``target`` depends on, in the order of ``rp.input_shapes``."""
    rhs = {s.target: s.rhs for s in rp.statements}
    seen: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in rhs:
            todo.extend(reads(rhs[name]))
    return [name for name in rp.input_shapes if name in seen and name not in rp.integer_ranges]


def close(actual, expected, what: str, context: str) -> None:
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}\n{context}"
    # atol = 1e-8 x the largest expected entry, and at least 1e-8 x 1e-4: an array whose
    # entries are all below 1e-14 is rounding noise (autograd's Hessian of abs(x) is
    # ±3e-17 where the exact one, eingrad's, is 0).
    scale = max(float(np.max(np.abs(expected), initial=0.0)), SCALE_FLOOR)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=f"{what}\n{context}")


def autograd_hessian(f, x: np.ndarray) -> np.ndarray:
    """``∂²f_o/∂x∂x`` for every element ``o`` of the output: reverse over reverse per element."""
    shape = np.shape(f(x))
    out = np.zeros(shape + x.shape * 2)
    for o in np.ndindex(shape):
        out[o] = autograd.hessian(lambda x, o=o: f(x)[o])(x)
    return out


def check_program(seed: int, gather: bool = False) -> None:
    rp = random_program(np.random.default_rng(seed), gather=gather)
    program = rp.parse()
    rng = np.random.default_rng([seed, 1])
    arrays = rp.random_inputs(rng)
    output = rp.statements[-1].target
    assert program.targets[-1] == output
    candidates = inputs_read(rp, output)
    if not candidates:
        return  # a constant output: nothing to differentiate
    wrt = candidates[int(rng.integers(len(candidates)))]
    context = f"seed {seed}, wrt {wrt!r}, output {output!r}; the program:\n{rp.text}"
    try:
        check_derivatives(rp, program, arrays, wrt, output, context)
        check_reverse_mode(rp, program, arrays, output, rng, context)
    except AssertionError:
        raise
    except Exception as err:
        raise AssertionError(f"{type(err).__name__}: {err}\n{context}") from err


def check_derivatives(rp, program, arrays, wrt, output, context) -> None:
    f = rp.autograd_function(wrt, output, inputs=arrays)
    x = arrays[wrt]
    close(eg.evaluate(program, **arrays)[output], f(x), "the forward value", context)
    jacobian = eg.evaluate(eg.diff(program, wrt, 1, output), **arrays)
    close(jacobian, autograd.jacobian(f)(x), f"∂{output}/∂{wrt}", context)
    hessian = eg.evaluate(eg.hessian(program, wrt, output), **arrays)
    close(hessian, autograd_hessian(f, x), f"∂²{output}/∂{wrt}²", context)


def check_reverse_mode(rp, program, arrays, output, rng, context) -> None:
    inputs = [name for name in program.inputs if name not in program.index_inputs]
    if not inputs:
        return
    out_indices = program.statement(output).indices
    seed_name = seed_array = None
    if out_indices:
        seed_name = next(
            name for name in (f"dLd{output}", "dSeed", "dSeed2") if name not in inputs + program.targets
        )
        seed_array = rng.uniform(-1.0, 1.0, size=tuple(rp.index_sizes[i] for i in out_indices))
    gprog = eg.grad(program, wrt=inputs, output=output, seed=seed_name)
    given = {name: value for name, value in arrays.items() if name in gprog.inputs}
    if seed_name in gprog.inputs:  # not when every gradient is zero (u - u)
        given[seed_name] = seed_array
    values = eg.evaluate(gprog, **given)
    for name, target in zip(inputs, gprog.targets[-len(inputs) :], strict=True):
        jacobian = eg.evaluate(eg.diff(program, name, 1, output), **arrays)
        if seed_name is None:
            expected = jacobian
        else:
            rank = len(out_indices)
            expected = np.tensordot(seed_array, jacobian, axes=(list(range(rank)), list(range(rank))))
        close(values[target], expected, f"grad: {target} (reverse mode) against ∂{output}/∂{name}", context)


@pytest.mark.parametrize("seed", range(FIRST, FIRST + PROGRAMS))
def test_random_program_derivatives_agree_with_autograd(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
        check_program(seed)


@pytest.mark.parametrize("seed", range(FIRST, FIRST + PROGRAMS // 3))
def test_random_programs_with_gathers_agree_with_autograd(seed):
    """Integer indexing (LANGUAGE.md §10) against autograd's fancy indexing (its scatter-add)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
        check_program(seed, gather=True)


def check_recurrence(seed: int) -> bool:
    """A random recurrence (LANGUAGE.md §12): its value and the gradient of its loss with respect
    to every input against autograd running the written tree step by step; False when the
    random statement cannot recur (no array sizes its steps)."""
    rng = np.random.default_rng([seed, 12])
    rr = random_recurrence(rng)
    if rr is None:
        return False
    program = eg.parse(rr.text)
    assert program.recurrences, rr.text
    arrays = rr.random_inputs(rng)
    context = f"seed {seed}; the program:\n{rr.text}"
    try:
        value = eg.evaluate(program, **arrays)["loss"]
    except eg.SizeError:
        return False  # an index only the recurrence's own reads carry
    wrts = list(rr.input_shapes)
    close(value, rr.autograd_loss(wrts[0], arrays)(arrays[wrts[0]]), "the forward value", context)
    gprog = eg.grad(program, wrt=wrts)
    assert any(rec.direction == -rec_fwd.direction for rec in gprog.recurrences
               for rec_fwd in program.recurrences) or not gprog.recurrences, str(gprog)
    values = eg.evaluate(gprog, **{k: v for k, v in arrays.items() if k in gprog.inputs})
    for name, target in zip(wrts, gprog.targets[-len(wrts):], strict=True):
        expected = autograd.grad(rr.autograd_loss(name, arrays))(arrays[name])
        close(values[target], expected, f"grad: {target} against autograd", context)
    # The gradient program prints, parses back and evaluates the same.
    again = eg.evaluate(eg.parse(str(gprog)), **{k: v for k, v in arrays.items() if k in gprog.inputs})
    for target in gprog.targets[-len(wrts):]:
        close(again[target], values[target], f"{target} printed and parsed back", context)
    return True


def test_random_recurrences_agree_with_autograd():
    """150 random recurrences (forward and backward, shifts of 1 and 2, initial states)."""
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
        for seed in range(FIRST, FIRST + PROGRAMS // 2):
            checked += check_recurrence(seed)
    assert checked >= PROGRAMS // 4

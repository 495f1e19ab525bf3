"""What the commands read: the program (text, a file, stdin), index sizes, example arrays."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..api import evaluate, parse
from ..diff import DiffError, require_input
from ..errors import EingradError, check_allocation
from ..expr import Delta, Pick, Tensor, all_indices, walk
from ..program import Program
from ..sizes import arithmetic_positions, valid_length

__all__ = [
    "DEFAULT_SIZE",
    "check_result_sizes",
    "check_sizes",
    "example_arrays",
    "input_shapes",
    "tensor_shapes",
    "load_program",
    "parse_sizes",
    "program_indices",
    "read_program",
    "seed_name",
    "split_names",
]

DEFAULT_SIZE = 3

# Text with no '=' that looks like a file name: "model.eg", "progs/rnn.txt", "~/x".
_LOOKS_LIKE_PATH = re.compile(r"[\w.~/\\:-]+")


def _read_file(path: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            return handle.read()
    except OSError as err:
        raise EingradError(
            f"cannot read program file {path!r}: {err.strerror}",
            hint="check the path; a program can also be given as text or on stdin with -",
        ) from None
    except UnicodeDecodeError:
        raise EingradError(f"cannot read program file {path!r}: it is not UTF-8 text") from None


def _read_stdin() -> str:
    """All of stdin; a clear error where there is none (closed, not text)."""
    stream = sys.stdin
    if stream is None:
        raise EingradError(
            "cannot read the program from stdin: it is closed",
            hint="pipe the program in (echo 'y_i = x_i' | eingrad parse -), or give it as text or with -f FILE",
        )
    try:
        return stream.read()
    except UnicodeDecodeError:
        raise EingradError("cannot read the program from stdin: it is not UTF-8 text") from None
    except (OSError, ValueError) as err:  # a closed or unreadable stream
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise EingradError(
            f"cannot read the program from stdin: {reason}",
            hint="give the program as text or with -f FILE",
        ) from None


def read_program(text: str | None, file: str | None = None) -> str:
    """The program text from ``-f FILE``, ``-`` (stdin), ``@FILE``, a file path, or the text itself.

    A program always has an '=', so an argument without one that names a
    file is read from that file.
    """
    if file is not None:
        return _read_stdin() if file == "-" else _read_file(file)
    assert text is not None  # the parser insists on one of the two
    if text == "-":
        return _read_stdin()
    if text.startswith("@"):
        return _read_file(text[1:])
    if "=" not in text and _LOOKS_LIKE_PATH.fullmatch(text.strip()):
        path = text.strip()
        if os.path.isfile(os.path.expanduser(path)) or "." in path or "/" in path or "\\" in path:
            return _read_file(path)
    return text


def load_program(args: argparse.Namespace) -> Program:
    """Parse the program the command line names (see :func:`read_program`)."""
    return parse(read_program(args.program, args.file))


def split_names(items: Iterable[str] | None) -> list[str]:
    """``--wrt W b`` and ``--wrt W,b`` both give ``['W', 'b']``."""
    names: list[str] = []
    for item in items or []:
        names.extend(part.strip() for part in item.split(",") if part.strip())
    return list(dict.fromkeys(names))


def parse_sizes(items: Sequence[str] | None) -> dict[str, int]:
    """``['i=3', 'j=4']`` (or ``['i=3,j=4']``) as ``{'i': 3, 'j': 4}``."""
    sizes: dict[str, int] = {}
    for item in split_names(items):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        # ASCII digits only: '²'.isdigit() is true, and int() refuses it.
        if not sep or not name.isidentifier() or not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
            raise EingradError(
                f"--size {item!r} is not of the form index=positive integer",
                hint="write sizes as index=positive integer, e.g. --size i=3 j=4 "
                "(and put the program before --size)",
            )
        if name in sizes and sizes[name] != int(value):
            raise EingradError(f"--size gives index {name!r} two sizes, {sizes[name]} and {value}")
        sizes[name] = int(value)
    return sizes


def _statement_indices(stmt) -> set[str]:
    return set(stmt.indices) | set(all_indices(stmt.expr))


def program_indices(program: Program) -> set[str]:
    """Every index the program writes, on targets and inside expressions."""
    return set().union(*(_statement_indices(stmt) for stmt in program))


def check_sizes(program: Program, sizes: Mapping[str, int]) -> None:
    """Refuse a ``--size`` for an index the program does not have (a typo would be ignored)."""
    known = program_indices(program)
    for name in sizes:
        if name not in known:
            listed = f"its indices are {', '.join(sorted(known))}" if known else "it has no indices"
            raise EingradError(
                f"--size gives a size to index {name!r}, which the program does not use ({listed})",
                hint="size the indices the program writes, e.g. --size n=4",
            )


def check_inputs(program: Program, names: Iterable[str], what: str = "derivatives") -> None:
    """Every name must be an input of the program (``--wrt``, ``--parameters``)."""
    for name in names:
        require_input(program, name, DiffError, what)


class _Axes:
    """Which axes must have equal sizes: a union-find over the program's index
    occurrences ``(statement, index)`` and tensor axes ``(tensor, axis)``.

    ``s0_nk U_kh`` in one statement and ``s1_nh`` in another make U's axes and
    s1's last axis one class, so ``--size h=4`` sizes the ``k`` axes too.
    """

    def __init__(self, program: Program) -> None:
        self.parent: dict[tuple, tuple] = {}
        for k, stmt in enumerate(program):
            for axis, i in enumerate(stmt.indices):
                self.union((stmt.target, axis), (k, i))
            for node in walk(stmt.expr):
                if isinstance(node, Tensor):
                    for axis, i in enumerate(node.indices):
                        self.union((node.name, axis), (k, i))
                elif isinstance(node, Delta):
                    for i in node.indices[1:]:
                        self.union((k, node.indices[0]), (k, i))
        self.statements = [(k, _statement_indices(stmt)) for k, stmt in enumerate(program)]

    def find(self, x: tuple) -> tuple:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: tuple, b: tuple) -> None:
        self.parent[self.find(a)] = self.find(b)

    def sized(self, sizes: Mapping[str, int]) -> dict[tuple, tuple[str, int]]:
        """Each class some ``--size`` reaches -> (the index named, its size)."""
        given: dict[tuple, tuple[str, int]] = {}
        for name, n in sizes.items():
            for k, indices in self.statements:
                if name not in indices:
                    continue
                root = self.find((k, name))
                other, m = given.setdefault(root, (name, n))
                if m != n:
                    raise EingradError(
                        f"--size gives {other}={m} and {name}={n}, but the program makes "
                        f"{other!r} and {name!r} the same axis",
                        hint=f"give one of them: --size {other}={m}",
                    )
        return given


def tensor_shapes(program: Program, sizes: Mapping[str, int], default: int | None = DEFAULT_SIZE) -> dict:
    """The shape of every input and target: each axis sized by ``--size`` through the
    index names the program links to it (see :class:`_Axes`), else ``default``."""
    axes = _Axes(program)
    given = axes.sized(sizes)
    fitted = _fitted_to_shifts(program, axes, given, default)
    return {
        name: tuple(fitted.get(axes.find((name, axis)), given.get(axes.find((name, axis)), ("", default))[1])
                    for axis in range(program.rank(name)))
        for name in [*program.inputs, *program.targets]
    }


def _fitted_to_shifts(program: Program, axes: _Axes, given: dict, default: int | None) -> dict[tuple, int]:
    """The axes read through index arithmetic (``X`` of ``Y[n,i] = X[n, i+k] K[k]``) whose
    position index that statement sizes by the arithmetic alone: each as long as the valid
    size rule needs for the size ``i`` has elsewhere (``G[n,i]``), so that both agree."""
    fitted: dict[tuple, int] = {}
    for k, stmt in enumerate(program):
        for shift, i in arithmetic_positions(stmt.expr):
            j = axes.find((k, shift.index))
            if j in given:
                continue
            length = valid_length(shift, i, lambda n, k=k: given.get(axes.find((k, n)), ("", default))[1])
            if length is not None:
                fitted[j] = length
    return fitted


def input_shapes(program: Program, sizes: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """The shape of every input (an axis no ``--size`` reaches has :data:`DEFAULT_SIZE`)."""
    shapes = tensor_shapes(program, sizes)
    return {name: shapes[name] for name in program.inputs}


def example_arrays(
    program: Program,
    sizes: Mapping[str, int],
    rng: np.random.Generator,
    positive: bool = False,
) -> dict[str, np.ndarray]:
    """One random array per input, shaped by :func:`input_shapes`.  Standard normal,
    or uniform on [0.5, 1.5] with ``positive`` (for log and sqrt).  An array too
    large to allocate (``--size n=10000000000``) is a :class:`TooLargeError`."""
    shapes = input_shapes(program, sizes)
    for name, shape in shapes.items():
        check_allocation(shape, 8, f"the random input {name!r}")
    ranges = index_ranges(program, sizes)
    return {
        name: rng.integers(0, max(ranges[name], 1), shape) if name in ranges
        else rng.uniform(0.5, 1.5, shape) if positive else rng.standard_normal(shape)
        for name, shape in shapes.items()
    }


def index_ranges(program: Program, sizes: Mapping[str, int]) -> dict[str, int]:
    """For each input read as an index (``y`` of ``Z[n, y[n]]``): the size of the axis it
    picks, so that its random values (integers) lie in range."""
    axes = _Axes(program)
    given = axes.sized(sizes)
    out: dict[str, int] = {}
    for k, stmt in enumerate(program):
        for node in walk(stmt.expr):
            if isinstance(node, Pick):
                n = given.get(axes.find((k, node.index)), ("", DEFAULT_SIZE))[1]
                out[node.table.name] = min(n, out.get(node.table.name, n))
    return out


def check_result_sizes(program: Program, sizes: Mapping[str, int]) -> None:
    """Refuse sizes that would make a target too large to allocate (``eval``), before evaluating."""
    for name, shape in tensor_shapes(program, sizes).items():
        if program.is_target(name):
            check_allocation(shape, 8, f"the target {name!r}")


def seed_name(program: Program, output: str | None, given: str | None) -> str | None:
    """The upstream gradient's name for ``grad``: the one given, none for a scalar
    output, else ``dL<output>``-style ``dLdY`` that is not yet a name in the program."""
    if given is not None:
        return given
    output = output or program.output
    if output not in program.targets or not program.statement(output).indices:
        return None  # a scalar, or a bad name grad reports itself
    names = set(program.inputs) | set(program.targets)
    name, k = f"dLd{output}", 2
    while name in names:
        name, k = f"dLd{output}{k}", k + 1
    return name


def output_shape(program: Program, arrays: Mapping[str, np.ndarray], output: str, sizes) -> tuple[int, ...]:
    """The shape of target ``output`` at these arrays (it is evaluated)."""
    return np.shape(evaluate(program, dict(arrays), sizes=sizes or None, outputs=[output])[output])

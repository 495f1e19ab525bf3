"""What a check runs on: its arguments checked, index sizes planned, random inputs drawn."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import expr as E
from ..errors import EingradError
from ..program import Program
from ..sizes import arithmetic_positions, valid_length

__all__ = [
    "CheckError",
    "Sizes",
    "plan_sizes",
    "check_sizes",
    "make_rng",
    "wrt_list",
    "draw_inputs",
    "POSITIVE_NOTE",
]

POSITIVE_NOTE = (
    "inputs were drawn from [0.5, 1.5]: the program is not defined at all standard-normal "
    "ones (pass inputs= to choose them)"
)
_DEFAULT_SIZES = (5, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)


class CheckError(EingradError, ValueError):
    """``check_backward`` or ``taylor_check`` was called wrongly (unknown wrt, bad sizes, ...)."""


@dataclass
class Sizes:
    """Shapes of every tensor, the index name shown for each axis, and sizes to declare."""

    shapes: dict[str, tuple[int, ...]]
    labels: dict[str, tuple[str, ...]]
    declared: dict[str, int]
    # For each input read as an index (y of Z[n, y[n]]): the size of the axis it picks.
    ranges: dict[str, int] = field(default_factory=dict)

    def label_of_size(self, size: int) -> str | None:
        """The index whose size this is, when exactly one index has it."""
        found = {
            lab
            for name, shape in self.shapes.items()
            for lab, n in zip(self.labels[name], shape, strict=True)
            if n == size
        }
        return found.pop() if len(found) == 1 else None

    def index_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, shape in self.shapes.items():
            for lab, n in zip(self.labels[name], shape, strict=True):
                out.setdefault(lab, n)
        return out


def plan_sizes(program: Program, sizes: Mapping[str, int] | None, given: Mapping[str, np.ndarray]) -> Sizes:
    """One size per class of axes that the statements tie together, distinct by default.

    Axes are tied by an index shared within one statement (and by deltas).  A
    class takes its size from an array the caller gave, else from ``sizes`` (by
    any index name in it), else the next of 5, 3, 4, 6, ... in order of the inputs.
    """
    parent: dict[tuple, tuple] = {}

    def find(node: tuple) -> tuple:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(a: tuple, b: tuple) -> None:
        parent[find(a)] = find(b)

    for k, stmt in enumerate(program.statements):
        for axis, i in enumerate(stmt.indices):
            union(("s", k, i), ("t", stmt.target, axis))
        for node in E.walk(stmt.expr):
            if isinstance(node, E.Tensor):
                for axis, i in enumerate(node.indices):
                    union(("s", k, i), ("t", node.name, axis))
            elif isinstance(node, E.Delta):
                for i in node.indices[1:]:
                    union(("s", k, i), ("s", k, node.indices[0]))
        for i in E.all_indices(stmt.expr):
            find(("s", k, i))
    members: dict[tuple, list[tuple]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node)
    label = {root: next(n[2] for n in nodes if n[0] == "s") for root, nodes in members.items()}

    size: dict[tuple, int] = {}
    for name, array in given.items():
        if program.is_target(name) or name not in program.inputs:
            continue
        for axis, n in enumerate(np.shape(array)):
            size.setdefault(find(("t", name, axis)), int(n))
    for root, nodes in members.items():
        for node in nodes:
            if root not in size and node[0] == "s" and sizes and node[2] in sizes:
                size[root] = int(sizes[node[2]])
    taken = set(size.values())
    fresh = (n for n in itertools.chain(_DEFAULT_SIZES, itertools.count(18)) if n not in taken)
    axes = [("t", name, axis) for name in program.inputs for axis in range(program.rank(name))]
    valid = _valid_candidates(program, find, size, {find(n) for n in axes})
    given_roots = set(size)
    for node in axes + list(parent):
        if find(node) not in size and find(node) not in valid:
            size[find(node)] = next(fresh)
    _draw_valid_sizes(valid, find, size, fresh, given_roots)
    _fit_shifted_arrays(program, find, size, given_roots, valid)

    names = list(program.inputs) + program.targets
    shapes = {name: tuple(size[find(("t", name, a))] for a in range(program.rank(name))) for name in names}
    labels = {name: tuple(label[find(("t", name, a))] for a in range(program.rank(name))) for name in names}
    with_input = {find(n) for n in axes}
    declared = {
        n[2]: size[root]
        for root, nodes in members.items()
        if root not in with_input
        for n in nodes
        if n[0] == "s"
    }
    ranges: dict[str, int] = {}
    for k, stmt in enumerate(program.statements):
        for node in E.walk(stmt.expr):
            if isinstance(node, E.Pick):
                n = size[find(("s", k, node.index))]
                ranges[node.table.name] = min(n, ranges.get(node.table.name, n))
    return Sizes(shapes, labels, declared, ranges)


def _valid_candidates(program: Program, find, size: dict, with_input: set) -> dict[tuple, tuple]:
    """Classes only index arithmetic sizes (LANGUAGE.md §11): ``i`` of ``X[n, 2i+k]`` where X
    and K are drawn; each with the shift that sizes it and its name there."""
    out: dict[tuple, tuple] = {}
    for k, stmt in enumerate(program.statements):
        for node in E.walk(stmt.expr):
            if not isinstance(node, E.Shift):
                continue
            loose = [(a, i) for a, i in node.terms
                     if find(("s", k, i)) not in size and find(("s", k, i)) not in with_input]
            if len(loose) == 1 and loose[0][0] > 0:
                out.setdefault(find(("s", k, loose[0][1])), (k, node, loose[0][1]))
    return out


def _draw_valid_sizes(valid: dict, find, size: dict, fresh, given_roots: set) -> None:
    """A drawn size for each class only index arithmetic sizes, the "valid" one: the array
    it reads is drawn long enough for it (unless given), and the size is what the rule of
    ``sizes`` computes from the arrays, so that checks and evaluation agree."""
    def reach(k, shift, i):
        return shift.offset + sum(b * (size.get(find(("s", k, n)), 1) - 1) for b, n in shift.terms if n != i and b > 0)

    for k, shift, i in valid.values():
        for _, n in shift.terms:  # a window declared nowhere else: drawn like any other
            if n != i and find(("s", k, n)) not in size:
                size[find(("s", k, n))] = next(fresh)
        target = next(fresh)
        a = next(a for a, n in shift.terms if n == i)
        j = find(("s", k, shift.index))
        if j not in given_roots:
            size[j] = max(size.get(j, 1), reach(k, shift, i) + a * (target - 1) + 1)
    for root, (k, shift, i) in valid.items():
        a = next(a for a, n in shift.terms if n == i)
        size[root] = max(0, (size[find(("s", k, shift.index))] - 1 - reach(k, shift, i)) // a + 1)


def _fit_shifted_arrays(program: Program, find, size: dict, given_roots: set, valid: dict) -> None:
    """An index that a statement sizes only by index arithmetic but that another statement (or
    an input) sizes too, ``i`` of ``Y[n,i] = X[n, i+k] K[k]`` beside ``G[n,i]``: the array read
    is drawn exactly as long as the valid size rule needs for that size, so that both agree."""
    for k, stmt in enumerate(program.statements):
        for shift, i in arithmetic_positions(stmt.expr):
            j = find(("s", k, shift.index))
            if find(("s", k, i)) in valid or j in given_roots:
                continue
            length = valid_length(shift, i, lambda n, k=k: size.get(find(("s", k, n))))
            if length is not None:
                size[j] = length


def check_sizes(program: Program, sizes: object) -> dict[str, int] | None:
    if sizes is None:
        return None
    if not isinstance(sizes, Mapping):
        raise CheckError(
            f"sizes must map index names to sizes, got {type(sizes).__name__}",
            hint="write sizes={'n': 5, 'd': 3}",
        )
    known = set()
    for stmt in program.statements:
        known |= set(stmt.indices) | E.all_indices(stmt.expr)
    for index, n in sizes.items():
        if index not in known:
            raise CheckError(
                f"sizes names the index {index!r}, which the program does not use",
                hint=f"its indices are {', '.join(sorted(known))}",
            )
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise CheckError(
                f"the size of index {index!r} must be a positive integer, got {n!r}",
                hint="sizes of at least 2 that differ per index show shape mistakes best",
            )
    return dict(sizes)


def make_rng(rng: object) -> np.random.Generator:
    if rng is None or isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(0 if rng is None else int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise CheckError(
        f"rng must be a numpy Generator or an integer seed, got {type(rng).__name__}",
        hint="write rng=np.random.default_rng(0) or rng=0",
    )


def wrt_list(program: Program, wrt: object) -> list[str]:
    names = [wrt] if isinstance(wrt, str) else wrt
    if not isinstance(names, (list, tuple)) or not names:
        raise CheckError(
            f"wrt must name an input or list inputs, got {wrt!r}", hint="write wrt='W' or wrt=['W', 'b']"
        )
    for name in names:
        if isinstance(name, str) and name in program.index_inputs:
            raise CheckError(
                f"wrt names {name!r}, which is used as an index: an integer input, never differentiated",
                hint=f"check the gradients with respect to the other inputs; {name!r} is passed through",
            )
        if not isinstance(name, str) or name not in program.inputs:
            what = (
                "computed by the program, not an input"
                if isinstance(name, str) and program.is_target(name)
                else "not an input of the program"
            )
            raise CheckError(
                f"wrt names {name!r}, which is {what}", hint=f"the inputs are {', '.join(program.inputs)}"
            )
    if len(set(names)) != len(names):
        raise CheckError(f"wrt names an input twice: {names!r}")
    return list(names)


def draw_inputs(
    program: Program,
    given: object,
    extra: Sequence[str],
    sizes: Mapping[str, int] | None,
    rng,
    positive: bool = False,
) -> tuple[dict[str, np.ndarray], Sizes]:
    """The caller's arrays, and random ones for the rest (``extra`` names are allowed): standard
    normal, or uniform in [0.5, 1.5] when ``positive`` (for a program with logs or square roots)."""
    if given is not None and not isinstance(given, Mapping):
        raise CheckError(f"inputs must map names to arrays, got {type(given).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for name, value in (given or {}).items():
        if name not in program.inputs and name not in extra:
            raise CheckError(
                f"inputs has an array for {name!r}, which is not an input of the program",
                hint=f"the inputs are {', '.join(list(program.inputs) + list(extra))}",
            )
        if name in program.index_inputs:  # an integer input, passed through as it is
            arrays[name] = np.asarray(value)
            continue
        try:
            arrays[name] = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise CheckError(f"the array given for {name!r} is not numeric: {err}") from None
        if name in program.inputs and arrays[name].ndim != program.rank(name):
            raise CheckError(
                f"the array given for {name!r} has {arrays[name].ndim} axes, but "
                f"{program.first_use(name)} has {program.rank(name)}"
            )
    plan = plan_sizes(program, sizes, arrays)
    for name in program.inputs:
        if name not in arrays and name in plan.ranges:  # random integers in range of the axis picked
            arrays[name] = rng.integers(0, max(plan.ranges[name], 1), plan.shapes[name])
        elif name not in arrays:
            shape = plan.shapes[name]
            arrays[name] = rng.uniform(0.5, 1.5, shape) if positive else rng.standard_normal(shape)
    return arrays, plan

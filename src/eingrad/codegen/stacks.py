"""Products across statements that are one matrix product: an unrolled loop's
``X1_nd U_dh``, ``X2_nd U_dh``, … ``X50_nd U_dh`` become ``concatenate([X1, …, X50]) @ U``
and a row block per statement, as the closed form an expert writes for an RNN.

Only products of two input matrices contracted over one index are stacked: their
operands exist before any statement runs, so one product can serve them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..expr import Add, Expr, Mul, Sum, Tensor, factors_of, walk
from ..program import Statement

__all__ = ["MIN_MEMBERS", "Split", "Stack", "find_stacks", "split_product", "stack_worthwhile"]

# Fewer products than this are left as they are (a concatenation is a copy).
MIN_MEMBERS = 4


@dataclass(frozen=True)
class Member:
    """``node`` = Σ_c member_rc shared_.. in statement ``statement``."""

    statement: int
    node: Sum
    tensor: Tensor  # the member's matrix, contracted over its second axis
    sizes: tuple[tuple[str, int], ...]  # every index of ``node`` with its size
    bias: str | None = None  # an input vector the statement adds to the product (X_t U + b)


@dataclass(frozen=True)
class Stack:
    shared: str  # the shared input's name
    transpose: bool  # the shared matrix is contracted over its second axis (use .T)
    rows: int  # rows of each member
    members: tuple[Member, ...]
    bias: str | None = None  # every member's statement adds this vector: added once to the stack


def find_stacks(statements: Iterable[tuple[int, Statement, dict[str, int]]], inputs: set[str]) -> list[Stack]:
    """Groups of at least MIN_MEMBERS products ``Σ_c M_rc S_c.`` of distinct input matrices M
    of one shape with one input matrix S, contracted the same way."""
    groups: dict[tuple, list[Member]] = {}
    for k, stmt, sizes in statements:
        for node in walk(stmt.expr):
            for member, _shared, key in _candidates(node, inputs, sizes):
                bias = _bias(node, member, stmt.expr, inputs)
                entry = Member(k, node, member, tuple((i, sizes[i]) for i in sorted(_indices(node))), bias)
                groups.setdefault(key, []).append(entry)
    stacks, used = [], set()
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        members = [m for m in members if id(m.node) not in used]
        distinct: dict[str, Member] = {}
        for m in members:
            distinct.setdefault(m.tensor.name, m)
        if len(distinct) < MIN_MEMBERS or len(distinct) != len(members):
            continue  # a member read twice keeps its own product (rare; not worth a case)
        used.update(id(m.node) for m in members)
        shared, transpose, rows = key[0], key[1], key[2]
        biases = {m.bias for m in members}
        bias = biases.pop() if len(biases) == 1 else None
        stacks.append(Stack(shared, transpose, rows, tuple(members), bias))
    return stacks


def _candidates(node: Expr, inputs: set[str], sizes: dict[str, int]):
    """(member, shared, group key) for each way ``node`` is a stackable product."""
    if not (isinstance(node, Sum) and len(node.indices) == 1 and isinstance(node.body, Mul)):
        return
    factors = node.body.factors
    if len(factors) != 2 or not all(isinstance(f, Tensor) for f in factors):
        return
    (c,) = node.indices
    a, b = factors
    for member, shared in ((a, b), (b, a)):
        if member.name == shared.name or member.name not in inputs or shared.name not in inputs:
            continue
        if len(member.indices) != 2 or len(shared.indices) != 2 or member.indices[1] != c:
            continue
        if c not in shared.indices or len(set(member.indices) | set(shared.indices)) != 3:
            continue
        transpose = shared.indices[1] == c
        rows, inner = sizes[member.indices[0]], sizes[c]
        cols = sizes[shared.indices[0] if transpose else shared.indices[1]]
        yield member, shared, (shared.name, transpose, rows, inner, cols)


def _bias(node: Sum, member: Tensor, expr: Expr, inputs: set[str]) -> str | None:
    """The input vector added to ``node`` in the sum that holds it, on the product's
    column index (``b_h`` of ``X_nd U_dh + H_nk W_kh + b_h``)."""
    (column,) = node.free - {member.indices[0]}
    for add in walk(expr):
        if isinstance(add, Add) and any(term is node for term in add.terms):
            for term in add.terms:
                if isinstance(term, Tensor) and term.indices == (column,) and term.name in inputs:
                    return term.name
    return None


def _indices(node: Sum) -> set[str]:
    return {i for n in walk(node) if isinstance(n, Tensor) for i in n.indices}


# ---------------------------------------------------------------- stacked sums


@dataclass(frozen=True)
class Split:
    """A term ``Σ_c left[c,i] right[c,j]`` (``left`` empty: ``Σ_c right[c,j]``)."""

    summed: str
    left: tuple[Expr, ...]
    right: tuple[Expr, ...]
    left_index: str | None
    right_index: str


# A term whose product has more multiply-adds than this is left alone: one GEMM per
# term already runs at BLAS speed, and stacking would hold every term's operands at once.
MAX_TERM_WORK = 1 << 22
# Nor is a sum stacked whose stacked operand would exceed this many entries.
MAX_STACK_ENTRIES = 1 << 23


def split_product(term: Expr, out: tuple[str, ...], sizes: dict[str, int]) -> Split | None:
    """``term`` as Σ_c over the product of a factor group carrying ``out[0]`` and one
    carrying ``out[-1]``, every factor carrying the summed index c (so each group is an
    elementwise product, and the term is one matrix product ``leftᵀ right``)."""
    if not (isinstance(term, Sum) and len(term.indices) == 1) or len(out) not in (1, 2):
        return None
    (c,) = term.indices
    factors = factors_of(term.body)
    if term.free != set(out) or c not in sizes:
        return None
    left, right = [], []
    for f in factors:
        free = f.free
        if c not in free or not free <= {c, *out} or len(free & set(out)) > 1:
            return None  # a constant, a factor without c, or one carrying both outputs
        (left if len(out) == 2 and out[0] in free else right).append(f)
    if len(out) == 2 and not left or not right:
        return None
    if not any(out[-1] in f.free for f in right):
        return None
    return Split(c, tuple(left), tuple(right), out[0] if len(out) == 2 else None, out[-1])


def stack_worthwhile(splits: list[Split], sizes: dict[str, int]) -> bool:
    """At least MIN_MEMBERS terms of one shape, each a small product (where k calls cost
    more than one), and the stacked operands of a moderate size."""
    shapes = {(sizes[s.summed], s.left_index and sizes[s.left_index], sizes[s.right_index]) for s in splits}
    if len(splits) < MIN_MEMBERS or len(shapes) != 1:
        return False
    rows, left, right = shapes.pop()
    work = rows * (left or 1) * right
    return work <= MAX_TERM_WORK and len(splits) * rows * max(left or 1, right) <= MAX_STACK_ENTRIES

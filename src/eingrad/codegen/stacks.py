"""Products across statements that are one matrix product: an unrolled loop's
``X1_nd U_dh``, ``X2_nd U_dh``, … ``X50_nd U_dh`` become ``concatenate([X1, …, X50]) @ U``
and a row block per statement, as the closed form an expert writes for an RNN.

Only products of two input matrices contracted over one index are stacked: their
operands exist before any statement runs, so one product can serve them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..expr import Expr, Mul, Sum, Tensor, walk
from ..program import Statement

__all__ = ["Stack", "find_stacks"]

# Fewer products than this are left as they are (a concatenation is a copy).
MIN_MEMBERS = 4


@dataclass(frozen=True)
class Member:
    """``node`` = Σ_c member_rc shared_.. in statement ``statement``."""

    statement: int
    node: Sum
    tensor: Tensor  # the member's matrix, contracted over its second axis
    sizes: tuple[tuple[str, int], ...]  # every index of ``node`` with its size


@dataclass(frozen=True)
class Stack:
    shared: str  # the shared input's name
    transpose: bool  # the shared matrix is contracted over its second axis (use .T)
    rows: int  # rows of each member
    members: tuple[Member, ...]


def find_stacks(statements: Iterable[tuple[int, Statement, dict[str, int]]], inputs: set[str]) -> list[Stack]:
    """Groups of at least MIN_MEMBERS products ``Σ_c M_rc S_c.`` of distinct input matrices M
    of one shape with one input matrix S, contracted the same way."""
    groups: dict[tuple, list[Member]] = {}
    for k, stmt, sizes in statements:
        for node in walk(stmt.expr):
            for member, _shared, key in _candidates(node, inputs, sizes):
                entry = Member(k, node, member, tuple((i, sizes[i]) for i in sorted(_indices(node))))
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
        stacks.append(Stack(shared, transpose, rows, tuple(members)))
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


def _indices(node: Sum) -> set[str]:
    return {i for n in walk(node) if isinstance(n, Tensor) for i in n.indices}

"""The raw syntax tree: what the user wrote, with spans, before the summation rule."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import Span


@dataclass(frozen=True, slots=True)
class RTensor:
    name: str
    indices: tuple[str, ...]
    span: Span
    index_spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class RAffine:
    """An affine index position ``2i+k-1`` (LANGUAGE.md §11): ``(coefficient, name)`` terms and an offset."""

    terms: tuple[tuple[int, str], ...]
    offset: int
    span: Span
    term_spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class RDelta:
    indices: tuple[str, ...]
    span: Span
    index_spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class RConst:
    value: Fraction
    span: Span


@dataclass(frozen=True, slots=True)
class RSize:
    index: str
    span: Span


@dataclass(frozen=True, slots=True)
class RAdd:
    terms: tuple  # of raw nodes; subtraction is a term times -1
    span: Span


@dataclass(frozen=True, slots=True)
class RMul:
    factors: tuple  # division is a factor to the power -1
    span: Span


@dataclass(frozen=True, slots=True)
class RPow:
    base: object
    exponent: Fraction
    span: Span


@dataclass(frozen=True, slots=True)
class RCall:
    fn: str
    arg: object
    span: Span


@dataclass(frozen=True, slots=True)
class RBinder:
    kind: str  # "sum", "logsumexp", "mean", "max" or "min" (names.REDUCTIONS)
    indices: tuple[str, ...]
    body: object
    span: Span
    index_spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class RTransform:
    kind: str  # "softmax" (names.TRANSFORMS): its indices stay free
    indices: tuple[str, ...]
    body: object
    span: Span
    index_spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class RChoose:
    op: str  # "max", "min", "where", "clip" (names.SELECTIONS)
    args: tuple
    span: Span


@dataclass(frozen=True, slots=True)
class RCompare:
    op: str  # ">", ">=", "<", "<="
    left: object
    right: object
    span: Span


def raw_children(node: object) -> tuple:
    if isinstance(node, RAdd):
        return node.terms
    if isinstance(node, RMul):
        return node.factors
    if isinstance(node, RPow):
        return (node.base,)
    if isinstance(node, RCall):
        return (node.arg,)
    if isinstance(node, (RBinder, RTransform)):
        return (node.body,)
    if isinstance(node, RChoose):
        return node.args
    if isinstance(node, RCompare):
        return (node.left, node.right)
    return ()

"""Valid names, reserved words and fresh index names."""

from __future__ import annotations

import keyword
from collections.abc import Iterable
from dataclasses import dataclass

from .functions import FUNCTIONS


@dataclass(frozen=True, slots=True)
class Operator:
    """A name written ``name_k(e)`` (LANGUAGE.md §8-9): a reduction binds ``k``, a transform keeps it."""

    name: str
    kind: str  # "reduction" or "transform"
    doc: str


_MATRIX = ("inv", "det", "logdet")  # linear algebra over an index pair: LINALG below

#: Every reduction and transform of LANGUAGE.md §8-9, in the order error messages list them.
#: The parser reads a name from this table wherever it is followed by an index list and
#: ``(``; any other name there is an UnknownFunctionError listing these.
OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("sum", "reduction", "Σ_k e"),
        Operator("Σ", "reduction", "Σ_k e"),
        Operator("logsumexp", "reduction", "log Σ_k exp(e), evaluated stably"),
        Operator("mean", "reduction", "Σ_k e / |k|"),
        Operator("max", "reduction", "the largest value over k"),
        Operator("min", "reduction", "the smallest value over k"),
        Operator("det", "reduction", "the determinant of the matrix over (i, j)"),
        Operator("logdet", "reduction", "log |det| of the matrix over (i, j)"),
        Operator("softmax", "transform", "exp(e - logsumexp_k(e)), k kept"),
        Operator("inv", "transform", "the inverse of the matrix over (i, j), i and j kept"),
    )
}

#: Words that cannot name a tensor or an index.
BINDERS = frozenset(set(OPERATORS) | {"∑"})
#: The transforms of LANGUAGE.md §8 (softmax_k keeps k); inv belongs to LINALG.
TRANSFORMS = frozenset(name for name, op in OPERATORS.items() if op.kind == "transform" and name not in _MATRIX)
#: Elementwise selections (LANGUAGE.md §13), ``max(a, b)``: name -> number of arguments.
SELECTIONS = {"max": 2, "min": 2, "where": 3, "clip": 3}
DELTAS = frozenset({"delta", "δ"})
#: Linear algebra over an index pair (LANGUAGE.md §9): name -> kind.  A transform keeps
#: the subscript's indices free; a reduction binds them.
LINALG = {name: OPERATORS[name].kind for name in _MATRIX}


def known_operators() -> str:
    """``sum, Σ, logsumexp, ... (reductions); softmax, inv (transforms)`` for error messages."""
    parts = []
    for kind in ("reduction", "transform"):
        names = [op.name for op in OPERATORS.values() if op.kind == kind]
        if names:
            parts.append(f"{', '.join(names)} ({kind}s)")
    return "; ".join(parts)


def reserved_words() -> frozenset[str]:
    """Binders (reductions and transforms), selections, deltas and every function name."""
    return BINDERS | frozenset(SELECTIONS) | DELTAS | frozenset(FUNCTIONS) | frozenset(LINALG)


def is_name(text: str) -> bool:
    """A letter, then letters or digits (Unicode letters such as Greek allowed)."""
    return bool(text) and text[0].isalpha() and all(c.isalnum() for c in text) and text.isidentifier()


def is_valid_tensor_name(text: str) -> bool:
    return is_name(text) and text not in reserved_words() and not keyword.iskeyword(text)


def fresh_index(taken: Iterable[str], preferred: str = "i") -> str:
    """A single-letter index name not in ``taken`` (falls back to ``i1``, ``i2``...)."""
    used = taken if isinstance(taken, (set, frozenset)) else set(taken)  # read only: no copy
    order = [preferred] + list("ijklmnopqrstuvwxyzabcdefgh") + list("αβγεζηθκμνξπρστυφχψω")
    for name in order:
        if name not in used and name not in reserved_words():
            return name
    k = max(1, len(used) - len(order))  # start near the end: O(1) when many names are taken
    while f"{preferred}{k}" in used:
        k += 1
    return f"{preferred}{k}"

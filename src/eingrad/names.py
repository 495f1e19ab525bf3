"""Valid names, reserved words and fresh index names."""

from __future__ import annotations

import keyword
from collections.abc import Iterable

from .functions import FUNCTIONS

#: Reductions (LANGUAGE.md §8): ``name_k(e)`` binds ``k``; the result lacks it.
#: name -> what it computes (``inv``, ``det``, ``logdet`` belong to §9, not here yet).
REDUCTIONS = {
    "sum": "Σ_k e",
    "Σ": "Σ_k e",
    "∑": "Σ_k e",
    "logsumexp": "log Σ_k exp(e), evaluated stably",
    "mean": "Σ_k e / |k|",
    "max": "the largest value over k",
    "min": "the smallest value over k",
}
#: Transforms (LANGUAGE.md §8): ``name_k(e)`` keeps ``k`` free, with its size.
TRANSFORMS = {
    "softmax": "exp(e - logsumexp_k(e)), k kept",
}
#: Elementwise selections (LANGUAGE.md §13): name -> number of arguments.
SELECTIONS = {"max": 2, "min": 2, "where": 3, "clip": 3}

#: Words that cannot name a tensor or an index.
BINDERS = frozenset(REDUCTIONS)
DELTAS = frozenset({"delta", "δ"})


def reserved_words() -> frozenset[str]:
    """Reductions, transforms, selections, deltas and every registered function name."""
    return BINDERS | frozenset(TRANSFORMS) | frozenset(SELECTIONS) | DELTAS | frozenset(FUNCTIONS)


def is_name(text: str) -> bool:
    """A letter, then letters or digits (Unicode letters such as Greek allowed)."""
    return bool(text) and text[0].isalpha() and all(c.isalnum() for c in text) and text.isidentifier()


def is_valid_tensor_name(text: str) -> bool:
    return is_name(text) and text not in reserved_words() and not keyword.iskeyword(text)


def fresh_index(taken: Iterable[str], preferred: str = "i") -> str:
    """A single-letter index name not in ``taken`` (falls back to ``i1``, ``i2``...)."""
    used = set(taken)
    order = [preferred] + list("ijklmnopqrstuvwxyzabcdefgh") + list("αβγεζηθκμνξπρστυφχψω")
    for name in order:
        if name not in used and name not in reserved_words():
            return name
    k = max(1, len(used) - len(order))  # start near the end: O(1) when many names are taken
    while f"{preferred}{k}" in used:
        k += 1
    return f"{preferred}{k}"

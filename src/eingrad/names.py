"""Valid names, reserved words and fresh index names."""

from __future__ import annotations

import keyword
from collections.abc import Iterable

from .functions import FUNCTIONS

#: Words that cannot name a tensor or an index.
BINDERS = frozenset({"sum", "Σ", "∑", "logsumexp"})
DELTAS = frozenset({"delta", "δ"})
#: Linear algebra over an index pair (LANGUAGE.md §9): name -> kind.  A transform keeps
#: the subscript's indices free; a reduction binds them.
LINALG = {"inv": "transform", "det": "reduction", "logdet": "reduction"}


def reserved_words() -> frozenset[str]:
    """Binders, deltas, linear-algebra functions and every registered function name."""
    return BINDERS | DELTAS | frozenset(FUNCTIONS) | frozenset(LINALG)


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

"""Which sums the printers may leave implicit.

The parser inserts a sum for every index that disappears (LANGUAGE.md §5), so
a printer may drop a ``Σ`` exactly where parsing the printed text puts it
back.  Rather than re-derive the summation rule here, we ask the parser: a sum
is hidden when the text printed with it hidden parses back to the same tree.
Sums are tried outermost first, so nested sums that the rule would merge stay
explicit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

from ..errors import EingradError
from ..expr import Add, Expr, Sum

Path = tuple[int, ...]


def sum_paths(e: Expr, path: Path = ()) -> Iterator[Path]:
    if isinstance(e, Sum):
        yield path
    for k, child in enumerate(e.children):
        yield from sum_paths(child, path + (k,))


def hidden_sums(e: Expr, free: tuple[str, ...], render: Callable[[Expr, frozenset], str]) -> frozenset:
    """The largest set (found greedily, outermost first) of sums that print implicitly.

    Each term of a sum of terms sums its own indices (the Einstein convention),
    so terms are laid out one by one, each parsed alone; one parse of the whole
    then confirms the result.  That keeps long statements (a loss over 1000
    time steps) linear to print.
    """
    if isinstance(e, Add) and len(e.terms) > 1:
        hidden = frozenset(
            (k,) + path
            for k, term in enumerate(e.terms)
            for path in _hidden_greedy(term, tuple(sorted(term.free)), render)
        )
        if _parses_back(e, free, render, hidden):
            return hidden
    return _hidden_greedy(e, free, render)


def _parses_back(e: Expr, free, render, hidden: frozenset) -> bool:
    from ..syntax import parse_expression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            same = parse_expression(render(e, hidden), free) == e
        except EingradError:
            same = False
    return same and not caught


def _hidden_greedy(e: Expr, free: tuple[str, ...], render: Callable[[Expr, frozenset], str]) -> frozenset:
    from ..syntax import parse_expression

    hidden: frozenset[Path] = frozenset()
    for path in sum_paths(e):
        if not _is_contraction(_at(e, path)):
            continue  # Σ_n x_n is a plain reduction: written out, it reads as one
        trial = hidden | {path}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                same = parse_expression(render(e, trial), free) == e
            except EingradError:
                same = False
        # A hidden sum that makes the re-parse warn (log(p_i)) prints clearer as Σ_i.
        if same and not caught:
            hidden = trial
    return hidden


def _at(e: Expr, path: Path) -> Expr:
    for k in path:
        e = e.children[k]
    return e


def _is_contraction(s: Sum) -> bool:
    """Every summed index occurs at least twice below the sum (A_ij B_jk, A_ii)."""
    from ..expr import Delta, Tensor, walk

    counts: dict[str, int] = {}
    for node in walk(s.body):
        if isinstance(node, (Tensor, Delta)):
            for i in node.indices:
                counts[i] = counts.get(i, 0) + 1
    return all(counts.get(i, 0) >= 2 for i in s.indices)

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

from .. import expr as E
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
            same = same_tree(parse_expression(render(e, hidden), free), e)
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
                same = same_tree(parse_expression(render(e, trial), free), e)
            except EingradError:
                same = False
        # A hidden sum that makes the re-parse warn (log(p_i)) prints clearer as Σ_i.
        if same and not caught:
            hidden = trial
    return hidden


def same_tree(a: Expr, b: Expr) -> bool:
    """``a == b``, up to the names of the summed indices of reads (``Σ_j s_jn δ[j, t-1]`` is
    printed ``s[t-1, n]``, whose sum the parser names afresh)."""
    if a == b:
        return True
    if not any(isinstance(n, (E.Shift, E.Pick)) for n in E.walk(b)):
        return False
    return _canonical_reads(a, [0]) == _canonical_reads(b, [0])


def _canonical_reads(e: Expr, counter: list[int]) -> Expr:
    if not e.children:
        return e
    if isinstance(e, Sum) and (parts := read_parts(e)) is not None:
        tensor = parts[0]
        order = [i for i in tensor.indices if i in e.indices]
        mapping = {}
        for i in order:
            mapping[i] = f"\u0000{counter[0]}"
            counter[0] += 1
        return Sum(tuple(mapping[i] for i in order), E.rename_indices(e.body, mapping))
    return E.rebuild(e, tuple(_canonical_reads(c, counter) for c in e.children))


def read_parts(e: Expr) -> tuple[E.Tensor, dict[str, Expr], tuple[int, ...]] | None:
    """``(X, {k: the delta that fixes k}, the other factors' positions)`` when ``e`` is a sum
    that only reads ``X`` at positions fixed by deltas, as the parser builds ``X[n, t-1]``
    (a shift, §11) and ``Z[n, y[n]]`` (a lookup, §10): each summed index occurs once in
    ``X``, once as a delta's own index, and nowhere else; else None."""
    if not isinstance(e, Sum) or not isinstance(e.body, E.Mul):
        return None
    factors = e.body.factors
    fixing: dict[str, int] = {}
    for k, f in enumerate(factors):
        if isinstance(f, (E.Shift, E.Pick)) and f.index in e.indices and f.index not in fixing:
            fixing[f.index] = k
    if set(fixing) != set(e.indices):
        return None
    holders = {k for k, f in enumerate(factors) if k not in fixing.values() and set(e.indices) & E.index_names(f)}
    if len(holders) != 1:
        return None
    (h,) = holders
    tensor = factors[h]
    if not isinstance(tensor, E.Tensor) or any(tensor.indices.count(i) != 1 for i in e.indices):
        return None
    for k in fixing.values():
        f = factors[k]
        inside = f.table.indices if isinstance(f, E.Pick) else tuple(n for _, n in f.terms)
        if set(inside) & set(e.indices):
            return None
    rest = tuple(k for k in range(len(factors)) if k != h and k not in fixing.values())
    return tensor, {i: factors[k] for i, k in fixing.items()}, rest


def _at(e: Expr, path: Path) -> Expr:
    for k in path:
        e = e.children[k]
    return e


def _is_contraction(s: Sum) -> bool:
    """Every summed index occurs at least twice below the sum (A_ij B_jk, A_ii)."""
    from ..expr import Delta, Pick, Shift, Tensor, walk

    counts: dict[str, int] = {}
    for node in walk(s.body):
        if isinstance(node, (Tensor, Delta, Shift)):
            for i in node.indices:
                counts[i] = counts.get(i, 0) + 1
        elif isinstance(node, Pick):
            counts[node.index] = counts.get(node.index, 0) + 1
    return all(counts.get(i, 0) >= 2 for i in s.indices)


# ---------------------------------------------------------------- sugar the printers write back


def mean_parts(e: Expr) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """``(K, kept)`` when ``e`` is exactly what the parser builds for ``Σ_L mean_K(rest)``
    (``Σ_{K ∪ L} (|k|^-1 … rest)``, the sums merged): ``kept`` are the positions of the body's
    factors other than the 1/|k|; else None."""
    if not isinstance(e, Sum) or not isinstance(e.body, E.Mul):
        return None
    factors = e.body.factors
    start = 1 if isinstance(factors[0], E.Const) else 0
    means: list[str] = []
    for f in factors[start:]:
        if not (isinstance(f, E.Pow) and f.exponent == -1 and isinstance(f.base, E.Size)):
            break
        means.append(f.base.index)
    if not means or means != sorted(set(means)) or not set(means) <= set(e.indices):
        return None
    kept = tuple(range(start)) + tuple(range(start + len(means), len(factors)))
    if not kept:
        return None
    rest = E.mul(*(factors[k] for k in kept))
    if not set(means) <= rest.free:
        return None
    sizes = (E.Pow(E.Size(k), E.Fraction(-1)) for k in means)
    others = [i for i in e.indices if i not in means]
    if E.sum_(others, E.sum_(means, E.mul(*sizes, rest))) != e:
        return None
    return tuple(means), kept


def softmax_parts(e: Expr) -> tuple[tuple[str, ...], Expr] | None:
    """``(K, z)`` when ``e`` is exactly what the parser builds for ``softmax_K(z)``
    (``exp(z - logsumexp_K(z))``, the log-sum-exp binding ``K`` again), else None."""
    if not (isinstance(e, E.Call) and e.fn == "exp" and isinstance(e.arg, Add) and len(e.arg.terms) > 1):
        return None
    last = e.arg.terms[-1]
    if not (isinstance(last, E.Mul) and len(last.factors) == 2 and last.factors[0] == E.Const(-1)):
        return None
    lse = last.factors[1]
    if not isinstance(lse, E.LogSumExp):
        return None
    z = E.add(*e.arg.terms[:-1])
    if lse.body != z or not set(lse.indices) <= z.free:
        return None
    if E.call("exp", E.add(z, E.neg(E.logsumexp(lse.indices, z)))) != e:
        return None
    return lse.indices, z

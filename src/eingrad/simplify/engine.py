"""The rewrite engine: apply rules innermost first until none applies.

Each step rewrites one node with the first rule (in catalog order) that
returns a replacement.  After every step the engine checks that the free
indices did not change (only rules marked ``drops_indices``, which remove
zeros, may lose an index, and never gain one), and it stops with an error if
the step limit is ever hit, so simplification terminates on every input.
Nodes found irreducible are remembered, so each subtree is checked once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..errors import EingradError
from ..expr import (
    LEAVES,
    Add,
    Call,
    Choose,
    Compare,
    Const,
    Delta,
    Expr,
    LogSumExp,
    MatFn,
    Mul,
    Pick,
    Pow,
    Reduce,
    Shift,
    Size,
    Sum,
    Tensor,
    add,
    index_names,
    logsumexp,
    neg,
    rename_indices,
    walk,
)
from ..names import fresh_index

Rule = Callable[[Expr], Expr | None]


class SimplifyError(EingradError, RuntimeError):
    """The simplifier hit its step limit (a bug: please report the expression)."""


@dataclass(frozen=True)
class Step:
    """One rewrite: the rule, the node before and after, and the whole expression after."""

    rule: str
    before: Expr
    after: Expr
    whole: Expr

    @property
    def identity(self) -> str:
        from .rules import RULES_BY_NAME

        doc = RULES_BY_NAME[self.rule].__doc__ or ""
        return doc.strip().splitlines()[0]


def rename_bound_apart(
    e: Expr, avoid: set[str] | None = None, aliases: dict[str, str] | None = None,
    siblings: frozenset[str] = frozenset(),
) -> Expr:
    """Give every binder its own index names, distinct from each other and from free ones.

    With unique bound names, substituting one index for another (a delta eating
    an index) can never capture a name.  Each new name is recorded in
    ``aliases`` (new -> old), so callers that track index sizes can follow it.
    ``siblings``: names the caller knows to mean one axis (one size) in every term of
    ``e``, a sum of terms; binders in different terms never nest, so each term keeps them
    (a gradient summed over 1000 steps keeps its ``n`` in every term).
    """
    # Every name in e, bound ones too: a binder whose body does not mention it (Σ_s 1)
    # still owns its name (a second binder renamed to it would clash, and its alias
    # would be overwritten).
    taken = set(avoid or ()) | index_names(e)
    seen: set[str] = set(e.free) | set(avoid or ())
    if not (siblings and isinstance(e, Add)):
        return _apart(e, seen, taken, aliases)
    bound: set[str] = set()  # names other than siblings that earlier terms bind
    terms = []
    for term in e.terms:
        own = seen | bound
        terms.append(_apart(term, own, taken, aliases))
        bound |= own - seen - siblings  # own grew by the names this term's binders took
    return e if all(a is b for a, b in zip(terms, e.terms, strict=True)) else Add(tuple(terms))


def _apart(e: Expr, seen: set[str], taken: set[str], aliases: dict[str, str] | None) -> Expr:
    """``rename_bound_apart``'s walk: ``seen`` (names a binder may not take again) grows as it goes."""
    def visit(node: Expr) -> Expr:
        if not _has_binder(node):
            return node
        if node.binds:
            mapping = {}
            for i in node.indices:
                if i in seen:
                    new = fresh_index(taken, i[0] if i[0].isalpha() else "i")
                    taken.add(new)
                    mapping[i] = new
                    if aliases is not None:
                        aliases[new] = aliases.get(i, i)
                seen.add(mapping.get(i, i))
            body = visit(rename_indices(node.body, mapping) if mapping else node.body)
            if not mapping and body is node.body:
                return node  # nothing renamed: the same node, not a copy
            indices = tuple(mapping.get(i, i) for i in node.indices)
            return node.rebind(indices, body)
        if not node.children:
            return node
        kids = tuple(visit(c) for c in node.children)
        return node if all(a is b for a, b in zip(kids, node.children, strict=True)) else node.with_children(kids)

    out = visit(e)
    visit = None  # noqa: F841 - breaks the closure's cycle: refcounting frees it now, not the collector
    return out


def _has_binder(e: Expr) -> bool:
    return not isinstance(e, LEAVES) and _has_binder_inside(e)  # a leaf binds nothing (not cached)


@lru_cache(maxsize=65536)
def _has_binder_inside(e: Expr) -> bool:
    return bool(e.binds) or any(_has_binder(c) for c in e.children)


def _binders(e: Expr) -> list[str]:
    return [i for node in walk(e) for i in node.binds]


def _may_duplicate_binders(before: Expr, after: Expr) -> bool:
    """Could rewriting ``before`` into ``after`` have made two binders share a name?

    Binder names are unique before each step; a rewrite can break that only by binding
    a name twice within ``after`` (Σ_j copied into two terms) or by binding a name that
    ``before`` did not (which may be bound elsewhere).  Looks at the rewritten part
    only, not the whole expression."""
    names = _binders(after)
    return len(names) != len(set(names)) or not set(names) <= set(_binders(before))


def _has_duplicate_binders(e: Expr) -> bool:
    seen: set[str] = set()
    for node in walk(e):
        for i in node.binds:
            if i in seen:
                return True
            seen.add(i)
    return False


_NORMAL_FORMS: set[tuple[Expr, frozenset[str]]] = set()
_ALL_NODE_TYPES = (Add, Call, Choose, Compare, Const, Delta, LogSumExp, MatFn, Mul, Pick, Pow, Reduce, Shift, Size, Sum, Tensor)


class _Rewriter:
    def __init__(
        self,
        rules: list[Rule],
        max_steps: int,
        record: bool,
        aliases: dict[str, str] | None,
        avoid: set[str] | None = None,
    ) -> None:
        from .rules import APPLIES_TO, RULES

        self.aliases = aliases
        self.avoid = avoid
        self.rules = rules
        self.by_type: dict[type, list[Rule]] = {}
        for rule in rules:
            for kind in APPLIES_TO.get(rule.__name__, _ALL_NODE_TYPES):
                self.by_type.setdefault(kind, []).append(rule)
        self.max_steps = max_steps
        self.record = record
        # Rules are pure functions of a node and of which of its free indices are
        # summed around it, so under the default catalog normal forms are kept
        # across calls, keyed by both.
        self.normal: set[tuple[Expr, frozenset[str]]] = _NORMAL_FORMS if rules == RULES else set()
        if len(self.normal) > 200_000:
            self.normal.clear()
        self.steps: list[Step] = []

    def step(self, e: Expr, bound: frozenset[str] = frozenset()) -> tuple[str, Expr, Expr, Expr] | None:
        """Rewrite the first reducible node (innermost first); None when ``e`` is normal.

        ``bound``: the indices bound around ``e``.  Bound names are unique, so an index
        is bound everywhere or nowhere and a node's normality does not depend on where it is.
        """
        key = (e, bound & e.free)
        if key in self.normal:
            return None
        children = e.children
        inner = bound | set(e.binds) if e.binds else bound
        for k, child in enumerate(children):
            found = self.step(child, inner)
            if found is not None:
                rule, before, after, new_child = found
                new_children = children[:k] + (new_child,) + children[k + 1 :]
                return rule, before, after, e.with_children(new_children)
        for rule in self.by_type.get(type(e), ()):
            out = rule(e, bound) if getattr(rule, "scoped", False) else rule(e)
            if out is not None and out != e:
                _check_free(rule, e, out)
                return rule.__name__, e, out, out
        self.normal.add(key)
        return None

    def run(self, e: Expr) -> Expr:
        e = rename_bound_apart(e, self.avoid, aliases=self.aliases)
        for _ in range(self.max_steps):
            found = self.step(e)
            if found is None:
                return e
            rule, before, after, new = found
            if _may_duplicate_binders(before, after) and _has_duplicate_binders(new):
                new = rename_bound_apart(new, self.avoid, aliases=self.aliases)
            if self.record:
                self.steps.append(Step(rule, before, after, new))
            e = new
        raise SimplifyError(
            f"simplification did not finish within {self.max_steps} steps",
            hint="this is a bug in eingrad; please report the expression",
        )


def _check_free(rule: Rule, before: Expr, after: Expr) -> None:
    if after.free == before.free:
        return
    if getattr(rule, "drops_indices", False) and after.free <= before.free:
        return
    raise AssertionError(
        f"rule {rule.__name__} changed the free indices {sorted(before.free)} -> {sorted(after.free)}"
        f" in {before!r}"
    )


def simplify(
    e: Expr,
    *,
    rules: list[Rule] | None = None,
    max_steps: int = 100_000,
    trace: list[Step] | None = None,
    aliases: dict[str, str] | None = None,
    avoid: set[str] | None = None,
) -> Expr:
    """Rewrite ``e`` to its simplified form.

    ``trace`` (a list) receives each step; ``aliases`` (a dict) receives every
    bound index the engine renamed, as new name -> original name.  Renamed
    indices get names outside ``avoid`` (names in use elsewhere).
    """
    from .rules import RULES

    rules = list(rules if rules is not None else RULES)
    rewriter = _Rewriter(rules, max_steps, trace is not None, aliases, avoid)
    out = rewriter.run(e)
    if trace is not None:
        trace.extend(rewriter.steps)
    return out


def _has_logsumexp(e: Expr) -> bool:
    return not isinstance(e, LEAVES) and _has_logsumexp_inside(e)  # a leaf is none (not cached)


@lru_cache(maxsize=65536)
def _has_logsumexp_inside(e: Expr) -> bool:
    return isinstance(e, LogSumExp) or any(_has_logsumexp(c) for c in e.children)


def fold_softmax(e: Expr) -> Expr:
    """Write every ``exp(z_k - logsumexp_j(z_j))`` as the parser writes ``softmax_k(z_k)``:
    ``exp(z_k - logsumexp_k(z_k))``, the log-sum-exp binding ``k`` again (alpha-equivalent,
    so the value is the same), which the printers show as ``softmax_k(z_k)``."""
    if not _has_logsumexp(e):
        return e
    kids = tuple(fold_softmax(c) for c in e.children)
    if kids != e.children:
        e = e.with_children(kids)
    if not (isinstance(e, Call) and e.fn == "exp" and isinstance(e.arg, Add)):
        return e
    terms = e.arg.terms
    for k, term in enumerate(terms):
        if not (isinstance(term, Mul) and len(term.factors) == 2 and term.factors[0] == Const(-1)):
            continue
        lse = term.factors[1]
        if not isinstance(lse, LogSumExp):
            continue
        z = add(*(terms[:k] + terms[k + 1 :]))
        over = z.free - lse.free
        if len(over) != len(lse.indices) or len(over) > 3 or not lse.free <= z.free:
            continue
        if over & (index_names(lse.body) - set(lse.indices)):
            continue  # renaming would capture
        from ..canonical import canonical

        target = canonical(z)
        for order in itertools.permutations(sorted(over)):
            if canonical(rename_indices(lse.body, dict(zip(lse.indices, order, strict=True)))) == target:
                return Call("exp", add(z, neg(logsumexp(over, z))))
    return e

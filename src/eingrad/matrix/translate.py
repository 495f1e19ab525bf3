"""Index notation to matrix notation.

A product under a sum is a small tensor network: each factor is a scalar, a
vector or a matrix (its free indices), and every summed index joins the
factors it appears in.  :func:`_reduce` takes the network apart one step at
a time, in the order an expert would write it:

1. a factor read on its diagonal (``A_ii``) becomes ``tr(A)`` when nothing
   else uses ``i``, else the vector ``diag(A)``;
2. factors over the same indices multiply elementwise (``x ⊙ y``), unless
   they are all summed between the two of them (``xᵀ y``, ``tr(Aᵀ B)``);
3. a summed index in one factor sums it with a ones vector (``Gᵀ 𝟏``);
4. a summed index in two factors is a matrix product, each factor
   transposed so that the shared index is inner (``Xᵀ G``);
5. a vector whose index is shared further scales a matrix's rows or columns
   (``diag(s) X``; three factors on one summed index give ``Xᵀ diag(s) X``);
6. two vectors on the two free indices make an outer product (``u vᵀ``).

Sums of terms broadcast with ones vectors (``X W + 𝟏 bᵀ``), deltas on two
indices are the identity, elementwise functions and powers apply to whole
matrices.  Whatever cannot be written this way raises :class:`NoForm` with
the reason; the translation never guesses.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

from ..expr import (
    ONE,
    ZERO,
    Add,
    Call,
    Const,
    Delta,
    Expr,
    LogSumExp,
    MatFn,
    Mul,
    Pick,
    Pow,
    Size,
    Sum,
    Tensor,
    add,
    mul,
    sum_,
)
from ..printing.text import format_expr
from .nodes import (
    Det,
    Func,
    Identity,
    Inverse,
    LogSumExpOf,
    Node,
    Num,
    Ones,
    Power,
    SizeOf,
    Var,
    Zeros,
    diag,
    diag_of,
    hadamard,
    is_scalar,
    labels,
    matmul,
    orient,
    plus,
    scale,
    trace,
    transpose,
    transposes,
)

__all__ = ["NoForm", "to_matrix"]


class NoForm(Exception):
    """The expression has no matrix form; ``reason`` says why, in the user's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_matrix(e: Expr, free: tuple[str, ...]) -> Node:
    """The matrix form of ``e`` laid out along ``free`` (rows, then columns)."""
    if len(free) > 2:
        raise NoForm(f"the result has {len(free)} free indices ({', '.join(free)}); a matrix has at most 2")
    if len(set(free)) != len(free):
        raise NoForm(f"the result repeats the index {free[0]!r}")
    extra = sorted(e.free - set(free))
    if extra:
        raise NoForm(f"the index {extra[0]!r} is free in the expression but not in the result")
    if e == ZERO:
        return Zeros(rows=free[0] if free else None, cols=free[1] if len(free) > 1 else None)
    return fit(translate(e, free), free)


# ---------------------------------------------------------------- shapes


def settle(n: Node) -> Node:
    """A diagonal read (rows and columns on one index) becomes the vector ``diag(A)``."""
    if n.rows is not None and n.rows == n.cols:
        return diag_of(n)
    return n


def column(n: Node) -> Node:
    """A row vector as the column vector it is the transpose of."""
    if n.rows is None and n.cols is not None:
        return transpose(n)
    return n


def fit(n: Node, target: tuple[str, ...]) -> Node:
    """``n`` oriented along ``target``, broadcast with ones vectors along indices it lacks."""
    n = column(settle(n))
    have = labels(n)
    if not target:
        return n
    if len(target) == 1:
        (r,) = target
        return n if have == (r,) else scale(1, n, Ones(rows=r, cols=None))
    r, c = target
    if set(have) == {r, c}:
        return orient(n, r, c)
    if have == (r,):
        return matmul(n, transpose(Ones(rows=c, cols=None)))
    if have == (c,):
        return matmul(Ones(rows=r, cols=None), transpose(n))
    return scale(1, n, matmul(Ones(rows=r, cols=None), transpose(Ones(rows=c, cols=None))))


# ---------------------------------------------------------------- nodes


def translate(e: Expr, hint: tuple[str, ...] = ()) -> Node:
    """``e`` as a matrix node; ``hint`` is the orientation wanted, if any."""
    if len(e.free) > 2:
        raise NoForm(f"{format_expr(e)} has {len(e.free)} free indices ({', '.join(sorted(e.free))})")
    if isinstance(e, Tensor):
        return _tensor(e)
    if isinstance(e, Delta):
        if len(e.indices) != 2 or e.indices[0] == e.indices[1]:
            raise NoForm(f"{format_expr(e)} is not an identity matrix")
        return Identity(rows=e.indices[0], cols=e.indices[1])
    if isinstance(e, Const):
        return Num(e.value, rows=None, cols=None)
    if isinstance(e, Size):
        return SizeOf(e.index, rows=None, cols=None)
    if isinstance(e, Add):
        return _add(e, hint)
    if isinstance(e, Mul):
        return _network(list(e.factors), set(), hint)
    if isinstance(e, Sum):
        return _sum(e, hint)
    if isinstance(e, Pow):
        base = column(settle(translate(e.base, hint)))
        return Power(base, e.exponent, rows=base.rows, cols=base.cols)
    if isinstance(e, Call) and (form := _softmax(e, hint)) is not None:
        return form
    if isinstance(e, Call):
        arg = column(settle(translate(e.arg, hint)))
        return Func(e.fn, arg, rows=arg.rows, cols=arg.cols)
    if isinstance(e, LogSumExp):
        return _logsumexp(e)
    if isinstance(e, MatFn):
        return _matfn(e)
    if isinstance(e, Pick):
        raise NoForm(f"{format_expr(e)} reads the integers of {e.table.name} (a gather or scatter): no matrix form")
    raise NoForm(f"{type(e).__name__} nodes have no matrix form")


def _softmax(e: Call, hint: tuple[str, ...]) -> Node | None:
    """``exp(z_k - logsumexp_k(z_k))`` as ``softmax(z)`` (a vector), or ``softmax(Z)``
    normalising each row of ``Z`` (the softmax index its columns); else None."""
    from ..expr import factors_of
    from ..simplify.forward import _is_softmax

    if not _is_softmax(e):
        return None
    terms = e.arg.terms
    lse = [f for t in terms for f in factors_of(t) if isinstance(f, LogSumExp)]
    if len(terms) != 2 or len(lse) != 1 or len(lse[0].indices) != 1:
        return None
    (k,) = lse[0].indices
    z = next(t for t in terms if not any(isinstance(f, LogSumExp) for f in factors_of(t)))
    try:
        arg = column(settle(translate(z, hint)))
    except NoForm:
        return None
    have = labels(arg)
    if k not in have:
        return None
    if len(have) == 2:
        arg = orient(arg, next(i for i in have if i != k), k)
    return Func("softmax", arg, rows=arg.rows, cols=arg.cols)


def _matfn(e: MatFn) -> Node:
    """A⁻¹ (labelled as A), det(A), log|det(A)|; a batch of matrices has no matrix form."""
    i, j = e.axes
    batch = sorted(e.body.free - {i, j})
    if batch:
        raise NoForm(f"{format_expr(e)} is a batch of matrices (along {', '.join(batch)})")
    body = orient(column(settle(translate(e.body, (i, j)))), i, j)
    if e.op == "inv":
        return Inverse(body, rows=i, cols=j)
    return Det(body, e.op == "logdet", rows=None, cols=None)


def _tensor(e: Tensor) -> Node:
    rank = len(e.indices)
    if rank > 2:
        raise NoForm(f"{e.name} has {rank} indices ({format_expr(e)}); a matrix has at most 2")
    rows = e.indices[0] if rank > 0 else None
    cols = e.indices[1] if rank > 1 else None
    return Var(e.name, rank, rows=rows, cols=cols)


def _add(e: Add, hint: tuple[str, ...]) -> Node:
    e2 = combine_like_terms(e)
    if not isinstance(e2, Add):
        return translate(e2, hint)
    terms = [column(settle(translate(t, hint))) for t in e2.terms]
    target = _orientation(e2.free, hint, terms)
    return plus(*(fit(t, target) for t in terms))


def _orientation(free: frozenset[str], hint: tuple[str, ...], terms: list[Node]) -> tuple[str, ...]:
    """How a sum lays out its free indices: as asked, else as its first matrix term does."""
    if set(hint) == free and len(hint) == len(free):
        return hint
    for t in terms:
        if len(labels(t)) == len(free):
            return labels(t)
    return tuple(sorted(free))


def _sum(e: Sum, hint: tuple[str, ...]) -> Node:
    body = e.body
    summed = set(e.indices) & body.free
    sizes = [SizeOf(i, rows=None, cols=None) for i in e.indices if i not in body.free]
    if isinstance(body, Mul):
        node = _network(list(body.factors), summed, hint)
    elif isinstance(body, Add):
        node = _sum_of_terms(body, summed, hint)
    else:
        node = _network([body], summed)
    return scale(1, *sizes, node)


def _sum_of_terms(body: Add, summed: set[str], hint) -> Node:
    """``Σ (c a + c b)`` as ``Σ c (a + b)`` when the terms share factors, else as a whole or term by term."""
    split = [_coefficient_and_factors(t) for t in body.terms]
    common = Counter(split[0][1])
    for _, factors in split[1:]:
        common &= Counter(factors)
    if common:
        rests = []
        for coef, factors in split:
            left = Counter(factors) - common
            rests.append(mul(Const(coef), *left.elements()))
        rest = add(*rests)
        if len(rest.free) <= 2:
            return _network([*common.elements(), rest], summed)
    if len(body.free) <= 2:
        return _network([body], summed)
    return _term_by_term(body.terms, summed, hint)


def _term_by_term(terms: tuple[Expr, ...], summed: set[str], hint: tuple[str, ...]) -> Node:
    """``Σ (a + b)`` as ``Σ a + Σ b`` (an index a term lacks counts ``|i|`` times)."""
    pieces = [mul(*(Size(i) for i in sorted(summed - t.free)), sum_(sorted(summed & t.free), t)) for t in terms]
    return translate(Add(tuple(pieces)), hint)


def _coefficient_and_factors(term: Expr) -> tuple[Fraction, list[Expr]]:
    if isinstance(term, Mul):
        factors = list(term.factors)
        if isinstance(factors[0], Const):
            return factors[0].value, factors[1:]
        return Fraction(1), factors
    if isinstance(term, Const):
        return term.value, []
    return Fraction(1), [term]


def combine_like_terms(e: Add) -> Expr:
    """``-y - (1 - y)`` as ``-1``: constants multiply out over sums, equal terms combine.

    Returns ``e`` itself unless something combines (the written form is kept).
    """
    parts: dict[Expr, Fraction] = {}
    count = 0
    for coef, term in _linear_parts(e, Fraction(1)):
        parts[term] = parts.get(term, Fraction(0)) + coef
        count += 1
    if len(parts) == count:
        return e
    return add(*(mul(Const(coef), term) for term, coef in parts.items() if coef != 0))


def _linear_parts(e: Expr, factor: Fraction):
    """(coefficient, term) pairs whose sum is ``factor e``, multiplying constants into sums."""
    if isinstance(e, Add):
        for t in e.terms:
            yield from _linear_parts(t, factor)
    elif isinstance(e, Const):
        yield factor * e.value, ONE
    elif isinstance(e, Mul) and isinstance(e.factors[0], Const):
        rest = mul(*e.factors[1:])
        yield from _linear_parts(rest, factor * e.factors[0].value)
    else:
        yield factor, e


def _logsumexp(e: LogSumExp) -> Node:
    body = column(settle(translate(e.body)))
    have = labels(body)
    missing = [i for i in e.indices if i not in have]
    if missing:
        raise NoForm(f"{format_expr(e)} sums over {missing[0]!r}, which its argument does not depend on")
    if len(e.indices) == len(have):
        return LogSumExpOf(body, True, len(have) == 2, rows=None, cols=None)
    (kept,) = set(have) - set(e.indices)
    return LogSumExpOf(orient(body, kept, e.indices[0]), False, True, rows=kept, cols=None)


# ---------------------------------------------------------------- products


def _network(factors: list[Expr], summed: set[str], hint: tuple[str, ...] = ()) -> Node:
    """``Σ_summed Π factors`` as matrix products (see the module docstring).

    A factor that is a sum of terms with more than two free indices between them
    is multiplied out first: ``Σ_v s_v (A_vj B_vi + C_ij D_v)`` term by term.
    """
    for k, f in enumerate(factors):
        if isinstance(f, Add) and len(f.free) > 2:
            others = factors[:k] + factors[k + 1 :]
            return _term_by_term(tuple(mul(*others, t) for t in f.terms), summed, hint)
    coef = Fraction(1)
    ops: list[Node] = []
    for f in factors:
        if isinstance(f, Const):
            coef *= f.value
        else:
            ops.append(translate(f))
    # An index that combining like terms took out of every factor still counts |i| times.
    sizes = [SizeOf(i, rows=None, cols=None) for i in sorted(summed) if _count(ops, i) == 0]
    scalars = _reduce(ops, summed, factors, hint)
    return scale(coef, *sizes, *scalars, *ops)


def _reduce(ops: list[Node], summed: set[str], factors: list[Expr], hint: tuple[str, ...]) -> list[Node]:
    """Combine ``ops`` in place until at most one non-scalar remains; returns the scalars split off."""
    scalars: list[Node] = []
    steps = (_diagonals, _elementwise, _sum_alone, _product, _scaling)
    while True:
        scalars += [o for o in ops if is_scalar(o)]
        ops[:] = [o for o in ops if not is_scalar(o)]
        if not any(step(ops, summed) for step in steps) and not _outer(ops, summed, hint):
            break
    left = sorted({i for o in ops for i in labels(o)} & summed)
    if left or len(ops) > 1:
        raise NoForm(_stuck_reason(ops, left, factors))
    return scalars


def _count(ops: list[Node], index: str) -> int:
    return sum(index in labels(o) for o in ops)


def _diagonals(ops: list[Node], summed: set[str]) -> bool:
    """``A_ii``: ``tr(A)`` when ``i`` is summed and nothing else has it, else ``diag(A)``."""
    for k, o in enumerate(ops):
        if o.rows is not None and o.rows == o.cols:
            alone = o.rows in summed and _count(ops, o.rows) == 1
            ops[k] = trace(o) if alone else diag_of(o)
            return True
    return False


def _only_between(ops: list[Node], summed: set[str], idx: tuple[str, ...]) -> bool:
    return all(i in summed and _count(ops, i) == 2 for i in idx)


def _elementwise(ops: list[Node], summed: set[str]) -> bool:
    """Two factors over the same indices: ``A ⊙ B`` (but ``xᵀ y`` when they alone share summed ones)."""
    for a in range(len(ops)):
        for b in range(a + 1, len(ops)):
            idx = labels(ops[a])
            if set(idx) == set(labels(ops[b])) and not _only_between(ops, summed, idx):
                ops[a] = hadamard(ops[a], orient(ops[b], ops[a].rows, ops[a].cols))
                del ops[b]
                return True
    return False


def _sum_alone(ops: list[Node], summed: set[str]) -> bool:
    """A summed index in one factor: ``𝟏ᵀ v`` or ``Aᵀ 𝟏``."""
    for k, o in enumerate(ops):
        for i in labels(o):
            if i in summed and _count(ops, i) == 1:
                ones = Ones(rows=i, cols=None)
                other = [j for j in labels(o) if j != i]
                if not other:
                    ops[k] = matmul(transpose(ones), o)
                elif other[0] in summed and _count(ops, other[0]) == 1:  # 𝟏ᵀ A 𝟏: every entry
                    ops[k] = matmul(transpose(Ones(rows=o.rows, cols=None)), o, Ones(rows=o.cols, cols=None))
                else:
                    ops[k] = matmul(orient(o, other[0], i), ones)
                return True
    return False


def _product(ops: list[Node], summed: set[str]) -> bool:
    """A summed index in two factors: their matrix product, the index inner.

    Of several such indices, the one whose product writes the fewest transposes goes first
    (``A_ij B_jk C_ki`` is ``tr(A B C)``).
    """
    choices = []
    for i in _in_order(ops, summed):
        holders = [k for k, o in enumerate(ops) if i in labels(o)]
        if len(holders) != 2:
            continue
        p, q = (ops[k] for k in holders)
        left = transpose(p) if p.cols is None else orient(p, _other(p, i), i)
        right = q if q.cols is None else orient(q, i, _other(q, i))
        choices.append((holders, column(matmul(left, right))))
    if not choices:
        return False
    holders, node = min(choices, key=lambda choice: transposes(choice[1]))
    ops[holders[0]] = node
    del ops[holders[1]]
    return True


def _other(n: Node, index: str) -> str:
    rest = [j for j in labels(n) if j != index]
    return rest[0] if rest else index


def _in_order(ops: list[Node], summed: set[str]) -> list[str]:
    seen: list[str] = []
    for o in ops:
        seen += [i for i in labels(o) if i in summed and i not in seen]
    return seen


def _scaling(ops: list[Node], summed: set[str]) -> bool:
    """A vector on an index a matrix also has scales that matrix's rows (or columns): ``diag(v) A``."""
    for k, v in enumerate(ops):
        if len(labels(v)) != 1:
            continue
        (t,) = labels(v)
        for m, a in enumerate(ops):
            if m == k or len(labels(a)) != 2 or t not in labels(a):
                continue
            ops[m] = matmul(diag(v), a) if a.rows == t else matmul(a, diag(v))
            del ops[k]
            return True
    return False


def _outer(ops: list[Node], summed: set[str], hint: tuple[str, ...]) -> bool:
    """Two vectors on different free indices: ``u vᵀ`` (rows along the first index of ``hint``)."""
    vectors = [k for k, o in enumerate(ops) if len(labels(o)) == 1 and o.rows not in summed]
    if len(vectors) < 2:
        return False
    a, b = vectors[:2]
    if hint and hint[0] == ops[b].rows:
        a, b = b, a
    ops[min(a, b)] = matmul(ops[a], transpose(ops[b]))
    del ops[max(a, b)]
    return True


def _stuck_reason(ops: list[Node], left: list[str], factors: list[Expr]) -> str:
    product = format_expr(mul(*factors)) if factors else "the product"
    for i in left:
        n = _count(ops, i)
        if n > 2:
            return f"the summed index {i!r} joins {n} matrices in {product}, and no vector to put on a diagonal"
    return f"{product} does not reduce to matrix products"

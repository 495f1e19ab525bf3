"""Matrix-algebra nodes and their smart constructors.

Every node knows the index names of its rows and columns (``rows``/``cols``,
``None`` for a dimension of length one): a matrix ``X`` read as ``X_nd`` has
rows ``n`` and columns ``d``; a vector is a column (``cols`` is ``None``) unless
it stands transposed inside a product; a scalar has neither.  The labels are
what the translation uses to orient operands, and what evaluation checks
shapes against.

The smart constructors (:func:`transpose`, :func:`matmul`, :func:`hadamard`,
:func:`plus`, :func:`scale`, :func:`diag`, :func:`diag_of`, :func:`trace`)
apply the identities an expert applies while writing (``(Aᵀ)ᵀ = A``,
``(Gᵀ 1)ᵀ = 1ᵀ G``, ``A I = A``, ``diag(1) = I``, ``tr(I) = |i|``) and
push transposes down to the leaves when that leaves fewer of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

__all__ = [
    "Node",
    "Var",
    "Num",
    "SizeOf",
    "Ones",
    "Identity",
    "Zeros",
    "Transpose",
    "MatMul",
    "Hadamard",
    "Plus",
    "Scale",
    "Func",
    "Power",
    "Diag",
    "DiagOf",
    "Trace",
    "LogSumExpOf",
    "Inverse",
    "Det",
    "labels",
    "is_scalar",
    "relabel",
    "orient",
    "transpose",
    "matmul",
    "hadamard",
    "plus",
    "scale",
    "diag",
    "diag_of",
    "trace",
    "transposes",
]


@dataclass(frozen=True)
class Node:
    """A matrix expression; ``rows``/``cols`` name the indices along its two axes."""

    rows: str | None = field(kw_only=True)
    cols: str | None = field(kw_only=True)

    @property
    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True)
class Var(Node):
    """A tensor of rank 0, 1 or 2, as the user named it."""

    name: str
    rank: int


@dataclass(frozen=True)
class Num(Node):
    """An exact constant (a scalar)."""

    value: Fraction


@dataclass(frozen=True)
class SizeOf(Node):
    """``|i|``: the number of values index ``index`` takes (a scalar)."""

    index: str


@dataclass(frozen=True)
class Ones(Node):
    """The column vector of ones along ``rows``."""


@dataclass(frozen=True)
class Identity(Node):
    """The identity matrix (``rows`` and ``cols`` have one size)."""


@dataclass(frozen=True)
class Zeros(Node):
    """The zero scalar, vector or matrix."""


@dataclass(frozen=True)
class Transpose(Node):
    arg: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class MatMul(Node):
    """A chain of matrix products (two or more factors)."""

    factors: tuple[Node, ...]

    @property
    def children(self) -> tuple[Node, ...]:
        return self.factors


@dataclass(frozen=True)
class Hadamard(Node):
    """The elementwise product ``A ⊙ B`` of equally shaped operands."""

    factors: tuple[Node, ...]

    @property
    def children(self) -> tuple[Node, ...]:
        return self.factors


@dataclass(frozen=True)
class Plus(Node):
    """A sum of equally shaped terms."""

    terms: tuple[Node, ...]

    @property
    def children(self) -> tuple[Node, ...]:
        return self.terms


@dataclass(frozen=True)
class Scale(Node):
    """``coef s₁ s₂ … M``: a constant times scalars, the last factor of any shape."""

    coef: Fraction
    factors: tuple[Node, ...]

    @property
    def children(self) -> tuple[Node, ...]:
        return self.factors


@dataclass(frozen=True)
class Func(Node):
    """An elementwise function (``exp``, ``σ``, ...) of a scalar, vector or matrix."""

    fn: str
    arg: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Power(Node):
    """An elementwise power ``A^⊙p`` (an ordinary power for a scalar)."""

    arg: Node
    exponent: Fraction

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Diag(Node):
    """``diag(v)``: the diagonal matrix with the vector ``v`` on its diagonal."""

    arg: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class DiagOf(Node):
    """``diag(A)``: the diagonal of a square matrix, as a column vector."""

    arg: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Trace(Node):
    arg: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class LogSumExpOf(Node):
    """``log(1ᵀ exp(A) 1)`` summed over the rows (``left``) and/or the columns (``right``)."""

    arg: Node
    left: bool
    right: bool

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Inverse(Node):
    """``A⁻¹``, labelled as ``A`` is: ``inv_ij(A_ij)`` has rows ``i`` and columns ``j``, so
    ``A_ij inv_jk(A_jk)`` is the product ``A A⁻¹ = I``.  ``(A⁻¹)ᵀ`` prints ``A⁻ᵀ``."""

    arg: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Det(Node):
    """``det(A)``, or ``log|det(A)|`` when ``log``: a scalar."""

    arg: Node
    log: bool

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.arg,)


# ---------------------------------------------------------------- labels


def labels(n: Node) -> tuple[str, ...]:
    """The index names along ``n``'s axes, rows first, without the length-one ones."""
    return tuple(i for i in (n.rows, n.cols) if i is not None)


def is_scalar(n: Node) -> bool:
    return n.rows is None and n.cols is None


def relabel(n: Node, rows: str | None, cols: str | None) -> Node:
    """``n`` with new axis names (of the same sizes)."""
    if (n.rows, n.cols) == (rows, cols):
        return n
    return replace(n, rows=rows, cols=cols)


def orient(n: Node, rows: str | None, cols: str | None) -> Node:
    """``n`` or ``nᵀ``, whichever has ``rows`` along its rows."""
    if (n.rows, n.cols) == (rows, cols):
        return n
    if (n.cols, n.rows) == (rows, cols):
        return transpose(n)
    raise ValueError(f"cannot orient a ({n.rows}, {n.cols}) node as ({rows}, {cols})")


def transposes(n: Node) -> int:
    """How many transposes ``n`` writes: what a reader counts."""
    own = isinstance(n, Transpose) and not isinstance(n.arg, Inverse)  # A⁻ᵀ is one symbol
    return int(own) + sum(transposes(c) for c in n.children)


# ---------------------------------------------------------------- smart constructors


def transpose(n: Node) -> Node:
    """``nᵀ``, pushed to the leaves unless that writes more transposes."""
    if is_scalar(n):
        return n
    if isinstance(n, Transpose):
        return relabel(n.arg, n.cols, n.rows)
    if isinstance(n, (Identity, Zeros, Diag)):
        return relabel(n, n.cols, n.rows)
    if isinstance(n, Inverse):  # (A⁻¹)ᵀ = (Aᵀ)⁻¹: (Xᵀ X)⁻¹ stays (Xᵀ X)⁻¹, X⁻¹ becomes X⁻ᵀ
        inner = transpose(n.arg)
        if transposes(inner) <= transposes(n.arg):
            return Inverse(inner, rows=n.cols, cols=n.rows)
    wrapped = Transpose(n, rows=n.cols, cols=n.rows)
    pushed = _pushed_transpose(n)
    if pushed is None:
        return wrapped
    # On a tie, products and sums take the transpose inside (1ᵀ G, not (Gᵀ 1)ᵀ),
    # functions keep it outside (step(H)ᵀ, not step(Hᵀ)).
    slack = 0 if isinstance(n, (Func, Power)) else 1
    return pushed if transposes(pushed) < transposes(wrapped) + slack else wrapped


def _pushed_transpose(n: Node) -> Node | None:
    """``nᵀ`` written with the transposes moved inside (``(A B)ᵀ = Bᵀ Aᵀ``), or None."""
    if isinstance(n, MatMul):
        return matmul(*(transpose(f) for f in reversed(n.factors)))
    if isinstance(n, Plus):
        return plus(*(transpose(t) for t in n.terms))
    if isinstance(n, Hadamard):
        return hadamard(*(transpose(f) for f in n.factors))
    if isinstance(n, Scale):
        return scale(n.coef, *n.factors[:-1], transpose(n.factors[-1]))
    if isinstance(n, Func) and n.fn != "softmax":  # softmax(Z) normalises Z's rows: not elementwise
        return Func(n.fn, transpose(n.arg), rows=n.cols, cols=n.rows)
    if isinstance(n, Power):
        return Power(transpose(n.arg), n.exponent, rows=n.cols, cols=n.rows)
    return None


def matmul(*factors: Node) -> Node:
    """The product ``A B …``; nested products flatten, identities drop out, scalars move in front."""
    if any(isinstance(f, Scale) for f in factors):
        coef, scalars = Fraction(1), []
        plain = []
        for f in factors:
            if isinstance(f, Scale):
                coef *= f.coef
                scalars += f.factors[:-1]
                f = f.factors[-1]
            plain.append(f)
        return scale(coef, *scalars, matmul(*plain))
    flat: list[Node] = []
    for f in factors:
        flat.extend(f.factors if isinstance(f, MatMul) else (f,))
    for left, right in zip(flat, flat[1:], strict=False):
        if left.cols != right.rows:
            raise ValueError(f"cannot multiply ({left.rows}, {left.cols}) by ({right.rows}, {right.cols})")
    rows, cols = flat[0].rows, flat[-1].cols
    flat = _without_identities(flat)
    flat = _without_diag_ones(flat)
    if len(flat) == 1:
        return relabel(flat[0], rows, cols)
    return MatMul(tuple(flat), rows=rows, cols=cols)


def _without_identities(flat: list[Node]) -> list[Node]:
    """``A I B = A B``: drop identities, renaming a neighbour's axis to keep the chain joined."""
    k = 0
    while len(flat) > 1 and k < len(flat):
        f = flat[k]
        if not isinstance(f, Identity):
            k += 1
            continue
        del flat[k]
        if k > 0:
            flat[k - 1] = relabel(flat[k - 1], flat[k - 1].rows, f.cols)
        else:
            flat[0] = relabel(flat[0], f.rows, flat[0].cols)
    return flat


def _without_diag_ones(flat: list[Node]) -> list[Node]:
    """``diag(v) 1 = v`` and ``1ᵀ diag(v) = vᵀ``."""
    if len(flat) == 2:
        a, b = flat
        if isinstance(a, Diag) and isinstance(b, Ones):
            return [relabel(a.arg, a.rows, None)]
        if isinstance(a, Transpose) and isinstance(a.arg, Ones) and isinstance(b, Diag):
            return [transpose(relabel(b.arg, b.cols, None))]
    return flat


def _same_shape(nodes: list[Node], what: str) -> None:
    first = nodes[0]
    for n in nodes[1:]:
        if (n.rows, n.cols) != (first.rows, first.cols):
            raise ValueError(
                f"{what} of a ({first.rows}, {first.cols}) and a ({n.rows}, {n.cols}) node"
            )


def hadamard(*factors: Node) -> Node:
    """The elementwise product ``A ⊙ B ⊙ …`` (equal shapes); ones drop out."""
    flat: list[Node] = []
    for f in factors:
        flat.extend(f.factors if isinstance(f, Hadamard) else (f,))
    _same_shape(flat, "elementwise product")
    kept = [f for f in flat if not isinstance(f, Ones)] or flat[:1]
    if len(kept) == 1:
        return kept[0]
    return Hadamard(tuple(kept), rows=flat[0].rows, cols=flat[0].cols)


def plus(*terms: Node) -> Node:
    """``A + B + …`` (equal shapes); zeros drop out."""
    flat: list[Node] = []
    for t in terms:
        flat.extend(t.terms if isinstance(t, Plus) else (t,))
    _same_shape(flat, "sum")
    kept = [t for t in flat if not isinstance(t, Zeros)] or flat[:1]
    if len(kept) == 1:
        return kept[0]
    return Plus(tuple(kept), rows=flat[0].rows, cols=flat[0].cols)


def scale(coef: Fraction | int, *factors: Node) -> Node:
    """``coef s₁ … M``: numbers fold into ``coef``; at most one factor is not a scalar, and it goes last."""
    coef = Fraction(coef)
    scalars: list[Node] = []
    others: list[Node] = []
    pending = list(factors)
    while pending:
        f = pending.pop(0)
        if isinstance(f, Num):
            coef *= f.value
        elif isinstance(f, Scale):
            coef *= f.coef
            pending[:0] = f.factors
        elif is_scalar(f):
            scalars.append(f)
        else:
            others.append(f)
    if len(others) > 1:
        raise ValueError("a scaled product has more than one non-scalar factor")
    last = others[0] if others else None
    if coef == 0 or any(isinstance(f, Zeros) for f in scalars + others):
        return Zeros(rows=last.rows if last else None, cols=last.cols if last else None)
    ordered = tuple(scalars + others)
    if not ordered:
        return Num(coef, rows=None, cols=None)
    if coef == 1 and len(ordered) == 1:
        return ordered[0]
    return Scale(coef, ordered, rows=ordered[-1].rows, cols=ordered[-1].cols)


def diag(v: Node) -> Node:
    """``diag(v)`` of a column vector; ``diag(1) = I``."""
    if v.cols is not None or v.rows is None:
        raise ValueError("diag of a node that is not a column vector")
    if isinstance(v, Ones):
        return Identity(rows=v.rows, cols=v.rows)
    return Diag(v, rows=v.rows, cols=v.rows)


def diag_of(a: Node) -> Node:
    """The diagonal of ``a`` (rows and columns of one index) as a column vector."""
    if isinstance(a, Diag):
        return relabel(a.arg, a.rows, None)
    if isinstance(a, Identity):
        return Ones(rows=a.rows, cols=None)
    return DiagOf(a, rows=a.rows, cols=None)


def trace(a: Node) -> Node:
    """``tr(a)``; ``tr(I) = |i|`` and ``tr(diag(v)) = 1ᵀ v``."""
    if isinstance(a, Identity):
        return SizeOf(a.rows, rows=None, cols=None)
    if isinstance(a, Diag):
        return matmul(transpose(Ones(rows=a.rows, cols=None)), relabel(a.arg, a.rows, None))
    return Trace(_fewest_transposes(a), rows=None, cols=None)


def _fewest_transposes(a: Node) -> Node:
    """Of ``a``, ``aᵀ`` and their cyclic rotations (all of one trace), the one with fewest transposes.

    Ties go to the one that keeps the leaves in their original order (``tr(A B)``, not ``tr(B A)``).
    """
    candidates = [a, transpose(a)]
    for c in list(candidates):
        if isinstance(c, MatMul):
            fs = c.factors
            candidates += [matmul(*fs[k:], *fs[:k]) for k in range(1, len(fs))]
    order = _leaves(a)
    return min(candidates, key=lambda c: (transposes(c), _leaves(c) != order))


def _leaves(n: Node) -> list[Node]:
    if not n.children:
        return [replace(n, rows=None, cols=None)]
    return [leaf for c in n.children for leaf in _leaves(c)]

"""Integer indexing in generated code (LANGUAGE.md §10), never a dense one-hot array.

A product with the delta of a lookup, ``δ[c, y[n]]``, is lowered by which side of it is
summed:

- *gather* (``c`` summed against the other factors): ``Σ_c Z[n,c] δ[c, y[n]]`` reads the
  picked entries by advanced indexing, ``Z[y, arange(n)]`` (an embedding ``E[tok]``);
- *scatter-add* (``c`` kept): ``Σ_n G[n,d] δ[v, tok[n]]`` adds every row of ``G`` into row
  ``tok[n]`` of zeros: ``np.add.at`` (numpy, cupy), ``index_put_(..., accumulate=True)``
  (torch), ``.at[...].add`` (jax).  Repeated indices accumulate.

Index ranges are checked by the numpy, CuPy and torch helpers themselves, so that a module
written by ``eingrad compile -o`` raises on an index outside its axis rather than wrapping
-1 (``CompiledFunction`` then names the tensor, position and value, as ``evaluate`` does).
jax clamps inside ``jit``, where no value can be checked: ``CompiledFunction`` checks the
ranges before the call there.
"""

from __future__ import annotations

from .. import expr as E
from ..expr import Expr

__all__ = ["contract_picks", "distributed", "without_unit_powers", "HELPERS"]

# Helper source per backend family: ``_gather(v, y, pos)`` reads ``v`` (axes: the picked
# axis, then the axes ``y`` shares at positions ``pos`` of ``y``, then the others) at
# ``y``; ``_scatter_add(shape, like, y, pos, w)`` is zeros of ``shape`` with ``w`` (axes:
# ``y``'s, then the others) added at ``y``.
# The index grid of numpy and jax (torch's takes the indices as int64 on their device).
_GRID = '''
def _index_grid(y, pos):
    idx = [y]
    for p in pos:
        n = y.shape[p]
        idx.append(xp.reshape(xp.arange(n), (1,) * p + (n,) + (1,) * (y.ndim - p - 1)))
    return tuple(idx)
'''

# numpy and torch read -1 as the last entry: their code checks each index array's range.
_IN_RANGE = '''
def _in_range(y, n):
    # an index outside 0 ... n-1 is an error, never a wrap to the end of the axis
    if all(y.shape):
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= n:
            raise IndexError(f"an index array holds {low if low < 0 else high}, outside 0 ... {n - 1} "
                             "of the axis it picks")
'''

_NUMPY = _GRID + _IN_RANGE + '''
def _gather(v, y, pos):
    _in_range(y, v.shape[0])
    return v[_index_grid(y, pos)]

def _index_equal(y, p, like):
    _in_range(y, y.shape[p])
    return (y == _index_grid(y, (p,))[1]).astype(like.dtype)

def _scatter_add(shape, like, y, pos, w):
    _in_range(y, shape[0])
    out = xp.zeros(shape, dtype=like.dtype)
    w = xp.broadcast_to(xp.asarray(w, dtype=out.dtype), tuple(y.shape) + tuple(shape[1 + len(pos):]))
    if not pos and y.ndim == 1 and w.ndim == 1:
        return xp.bincount(y, weights=w, minlength=shape[0]).astype(out.dtype, copy=False)
    xp.add.at(out, _index_grid(y, pos), w)
    return out
'''

_TORCH = _IN_RANGE + '''
def _index_grid(y, pos):
    idx = [y.long()]
    for p in pos:
        n = y.shape[p]
        idx.append(xp.reshape(xp.arange(n, device=y.device), (1,) * p + (n,) + (1,) * (y.ndim - p - 1)))
    return tuple(idx)

def _gather(v, y, pos):
    _in_range(y, v.shape[0])
    return v[_index_grid(y, pos)]

def _index_equal(y, p, like):
    _in_range(y, y.shape[p])
    return (y.long() == _index_grid(y, (p,))[1]).to(like.dtype)

def _scatter_add(shape, like, y, pos, w):
    _in_range(y, shape[0])
    out = xp.zeros(shape, dtype=like.dtype, device=like.device)
    w = xp.broadcast_to(xp.as_tensor(w, dtype=out.dtype, device=out.device),
                        tuple(y.shape) + tuple(shape[1 + len(pos):]))
    if not pos and y.ndim == 1:
        return out.index_add_(0, y.long(), w)
    return out.index_put_(_index_grid(y, pos), w, accumulate=True)
'''

# jax clamps an index inside jit, where no value can be seen: CompiledFunction checks first.
_JAX = _GRID + '''
def _gather(v, y, pos):
    return v[_index_grid(y, pos)]

def _index_equal(y, p, like):
    return (y == _index_grid(y, (p,))[1]).astype(like.dtype)

def _scatter_add(shape, like, y, pos, w):
    out = xp.zeros(shape, dtype=like.dtype)
    w = xp.broadcast_to(xp.asarray(w, dtype=out.dtype), tuple(y.shape) + tuple(shape[1 + len(pos):]))
    return out.at[_index_grid(y, pos)].add(w)
'''

# cupy: numpy's helpers with cupyx.scatter_add (an atomic add on the device) for np.add.at.
_CUPY = _NUMPY.replace("    xp.add.at(out, _index_grid(y, pos), w)",
                       "    import cupyx\n    cupyx.scatter_add(out, _index_grid(y, pos), w)")

HELPERS = {"numpy": _NUMPY, "cupy": _CUPY, "torch": _TORCH, "jax": _JAX}


def _labels(f) -> tuple[str, ...]:
    from .emit import Value, _free_order

    return f.labels if isinstance(f, Value) else _free_order(f)


def contract_picks(gen, factors: list, out: tuple[str, ...]):
    """The product ``factors`` (one of them a :class:`~eingrad.expr.Pick`) summed to ``out``."""
    from .emit import CodegenError, Value, _uses

    if gen.backend.name not in HELPERS:
        raise CodegenError(
            f"integer indexing (δ[c, y[n]], Z[n, y[n]]) is not supported by the {gen.backend.name} backend",
            hint=f"compile with backend='numpy', 'torch' or 'jax'; supported: {', '.join(HELPERS)}",
        )
    # X^0 is 1 wherever X is: it only carries a shape (which the sizes already know).
    factors = [f for f in factors if not (isinstance(f, E.Pow) and f.exponent == 0)]
    pick = next(f for f in factors if isinstance(f, E.Pick))
    rest = [f for f in factors if f is not pick]
    c = pick.index
    table = gen.emit(pick.table)
    ly = table.labels
    if c in ly:  # δ[n, y[n]]: 1 where y_n = n, a mask over y's own axes
        like = gen.like_code()
        mask = gen.temp(f"_index_equal({table.code}, {ly.index(c)}, {like})", ly,
                        _uses([table]) + ((gen.like,) if gen.like else ()), fresh=True)
        return gen.contract(rest + [mask], out)
    with_c = [f for f in rest if c in _labels(f)]
    without = [f for f in rest if c not in _labels(f)]
    outside = set(out) | {i for f in without for i in _labels(f)}
    if with_c and c not in out:
        # gather: the factors that carry c, reduced to what is needed, read at y
        keep = tuple(i for i in dict.fromkeys(i for f in with_c for i in _labels(f))
                     if i in outside or i in ly or i == c)
        v = gen.contract(with_c, keep)
        shared = tuple(i for i in v.labels if i != c and i in ly)
        others = tuple(i for i in v.labels if i != c and i not in ly)
        src = gen.aligned(v, (c, *shared, *others))
        pos = tuple(ly.index(s) for s in shared)
        g = gen.temp(f"_gather({src}, {table.code}, {pos})", ly + others, _uses([v, table]), fresh=True)
        return gen.contract(without + [g], out)
    # scatter-add: the factors without c, added into the rows y picks
    inside = set(out) | {i for f in with_c for i in _labels(f)}
    keep_w = tuple(i for i in dict.fromkeys(i for f in without for i in _labels(f))
                   if i in inside or i in ly)
    w = gen.contract(without, keep_w) if without else Value("1.0", ())
    shared = tuple(i for i in ly if i in inside)
    others = tuple(i for i in w.labels if i not in ly)
    w_code = gen.aligned(w, ly + others) if w.labels else w.code
    pos = tuple(ly.index(s) for s in shared)
    labels = (c, *shared, *others)
    code = f"_scatter_add({gen.shape_code(labels)}, {gen.like_code()}, {table.code}, {pos}, {w_code})"
    like = (gen.like,) if gen.like else ()
    s = gen.temp(code, labels, _uses([w, table]) + like, fresh=True)
    return gen.contract(with_c + [s], out) if with_c or set(labels) - set(out) or labels != out else s


def _has_scatter_terms(f) -> bool:
    return isinstance(f, E.Add) and any(
        isinstance(x, E.Pick) and x.index in t.free for t in f.terms for x in E.factors_of(t))


def distributed(gen, factors: list, out: tuple[str, ...]):
    """``a (δ[c, x1[n]] A1_eh + δ[c, x2[n]] A2_eh)`` summed over n, e as the sum of one
    scatter per term (each the size of the result), not a sum of (c, n, e, h) one-hots
    multiplied afterwards; None when no factor is such a sum."""
    if not all(isinstance(f, Expr) for f in factors):
        return None
    k = next((k for k, f in enumerate(factors) if _has_scatter_terms(f)), None)
    if k is None:
        return None
    others = factors[:k] + factors[k + 1:]
    free = frozenset().union(*(f.free for f in factors))
    summed = sorted(free - set(out))
    # Each term emitted and added here: emitting their sum would merge them back (A X + B X
    # as (A + B) X, ``merged_contractions``) into the product this undoes.
    parts = []
    for t in factors[k].terms:
        product = E.mul(*others, t)
        parts.append(gen.emit(E.sum_([i for i in summed if i in product.free], product)))
    labels = tuple(i for i in out if any(i in v.labels for v in parts))
    total = parts[0]
    for part in parts[1:]:
        total = gen.combine(False, total, False, part, labels)
    return total


def without_unit_powers(factors: list) -> list:
    """``factors`` less each ``X^0`` whose indices other factors carry, where a factor
    holds a lookup's delta or a shifted one (§11): ``X^0`` is 1 wherever ``X`` is (it only
    carries the shape a scatter's gradient text needs), and multiplying by it would be a
    dense array of ones."""
    from .conv import has_shift

    if not any(isinstance(f, Expr) and (E.integer_tensors(f) or has_shift(f)) for f in factors):  # (cached)
        return factors
    out = []
    for k, f in enumerate(factors):
        if isinstance(f, E.Pow) and f.exponent == 0:
            others = {i for m, g in enumerate(factors) if m != k and not (isinstance(g, E.Pow) and g.exponent == 0)
                      for i in _labels(g)}
            if set(f.free) <= others:
                continue
        out.append(f)
    return out

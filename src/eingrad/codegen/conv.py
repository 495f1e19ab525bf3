"""Index arithmetic in generated code (LANGUAGE.md §11), never a dense shift array.

``X[n, i+k]`` is ``Σ_j X[n,j] δ[j, i+k]`` (:class:`~eingrad.expr.Shift`).  A product with
such a delta is lowered by which side of it is summed, as the gather and scatter of
integer indexing are (``gather``):

- *window* (``j`` summed against the factors that carry it): those factors, reduced to one
  array ``V``, are read at ``a·i + b·k + c`` along ``j``: a zero-padded strided view of
  ``V`` whose axis ``j`` is replaced by the axes ``i, k`` (numpy, CuPy:
  ``as_strided``, a view with no copy where nothing is read outside the array; torch:
  ``Tensor.as_strided``; jax: ``take`` of the padded array).  The product then continues
  as an ordinary contraction: a convolution is the sliding windows and one ``tensordot``
  (im2col); ``s[t-1, n, k]`` is ``s`` shifted by one step along ``t``, a row of zeros in
  front, and the recurrence's weight gradient one matrix product over it;
- *scatter* (``j`` kept, the position's indices summed): the other factors, reduced to
  ``G`` over the position's indices, are added into zeros along ``j``: one strided slice
  per entry of the small window (a loop over ``k``, never over ``i``), or for one unit
  term a single shifted slice (``dLdX`` of the transposed convolution; ``δ[j, t-1]`` of a
  recurrence's gradient); jax adds them with ``.at[].add``, torch with ``index_add_``
  where a coefficient is negative.

What is not lowered keeps the dense 0/1 mask (``_shift``, emitted by ``emit_Shift``):
the dask backend, a delta whose position shares an index with the array it reads
(``X[i, i+k]``), a delta with its index and a position index both kept (the derivative of
the window itself, ``δ[j, i+k]`` with ``j`` and ``i`` free), a delta with nothing else
carrying its index (``Σ_j δ[j, i+k]``), and a delta standing alone.
"""

from __future__ import annotations

from functools import lru_cache

from .. import expr as E
from ..expr import Expr

__all__ = ["contract_shifts", "has_shift", "HELPERS"]

# ``_window(v, axis, coefs, offset, sizes)``: ``v`` read at Σ_p coefs[p]·t_p + offset along
# ``axis`` (0 outside the array), that axis replaced by the axes t_p of ``sizes``.
# ``_unwindow(g, axis, coefs, offset, n)``: its adjoint: ``g``'s ``len(coefs)`` axes from
# ``axis`` on added into one axis of length ``n`` at Σ_p coefs[p]·t_p + offset (what falls
# outside is lost).
# ``_reach`` (shared): the lowest and highest positions read, and the zeros padded on each side.
_REACH = '''
def _reach(coefs, offset, sizes, n):
    lo = offset + sum(a * (s - 1) for a, s in zip(coefs, sizes) if a < 0)
    hi = offset + sum(a * (s - 1) for a, s in zip(coefs, sizes) if a > 0)
    return lo, hi, max(0, -lo), max(0, hi - n + 1)
'''

# The loop of ``_unwindow`` on numpy, CuPy and torch: one strided slice per entry of every
# term but the longest (the window's k, not the output's i), added in place.
_SLICES = '''
def _slices(coefs, offset, sizes):
    import itertools
    if not sizes:  # a constant position: one entry
        yield offset, ()
        return
    long = max(range(len(sizes)), key=lambda p: sizes[p])
    a, s = coefs[long], sizes[long]
    for entry in itertools.product(*(range(m) if p != long else (None,) for p, m in enumerate(sizes))):
        start = offset + sum(c * t for p, (c, t) in enumerate(zip(coefs, entry)) if p != long)
        picked = tuple(slice(None) if p == long else t for p, t in enumerate(entry))
        yield slice(start, start + a * (s - 1) + 1, a), picked
'''

_NUMPY = _REACH + _SLICES + '''
def _window(v, axis, coefs, offset, sizes):
    shape = tuple(v.shape[:axis]) + tuple(sizes) + tuple(v.shape[axis + 1:])
    n = v.shape[axis]
    lo, hi, before, after = _reach(coefs, offset, sizes, n)
    if 0 in shape or hi < 0 or lo >= n:
        return xp.zeros(shape, dtype=v.dtype)
    v = v[(slice(None),) * axis + (slice(max(lo, 0), min(hi, n - 1) + 1),)]  # what is read
    if before or after:
        widths = [(0, 0)] * v.ndim
        widths[axis] = (before, after)
        v = xp.pad(v, widths)
    step = v.strides[axis]
    strides = tuple(v.strides[:axis]) + tuple(a * step for a in coefs) + tuple(v.strides[axis + 1:])
    start = v[(slice(None),) * axis + (slice(offset - lo, None),)]  # (entry 0 is position lo)
    return xp.lib.stride_tricks.as_strided(start, shape, strides, writeable=False)

def _unwindow(g, axis, coefs, offset, n):
    m = len(coefs)
    lead, sizes, tail = tuple(g.shape[:axis]), tuple(g.shape[axis:axis + m]), tuple(g.shape[axis + m:])
    lo, hi, before, after = _reach(coefs, offset, sizes, n)
    if 0 in sizes or n == 0 or hi < 0 or lo >= n:
        return xp.zeros(lead + (n,) + tail, dtype=g.dtype)
    out = xp.zeros(lead + (before + n + after,) + tail, dtype=g.dtype)
    if any(a < 0 for a in coefs):  # read backwards along those axes: positive coefficients
        g = xp.flip(g, axis=tuple(axis + p for p, a in enumerate(coefs) if a < 0))
        offset, coefs = lo, tuple(abs(a) for a in coefs)
    skip = (slice(None),) * axis
    for where, picked in _slices(coefs, offset + before, sizes):
        out[skip + (where,)] += g[skip + picked]
    return out[skip + (slice(before, before + n),)]
'''

_TORCH = _REACH + _SLICES + '''
def _positions(coefs, offset, sizes, device):
    total = offset
    for p, (a, s) in enumerate(zip(coefs, sizes)):
        axis = xp.arange(s, device=device) * a
        total = total + xp.reshape(axis, (1,) * p + (s,) + (1,) * (len(sizes) - p - 1))
    return xp.broadcast_to(xp.as_tensor(total, device=device), tuple(sizes)).reshape(-1)

def _window(v, axis, coefs, offset, sizes):
    shape = tuple(v.shape[:axis]) + tuple(sizes) + tuple(v.shape[axis + 1:])
    n = v.shape[axis]
    lo, hi, before, after = _reach(coefs, offset, sizes, n)
    if 0 in shape or hi < 0 or lo >= n:
        return xp.zeros(shape, dtype=v.dtype, device=v.device)
    v = v.narrow(axis, max(lo, 0), min(hi, n - 1) + 1 - max(lo, 0))  # what is read
    if before or after:
        padded = list(v.shape)
        padded[axis] = hi - lo + 1
        z = xp.zeros(padded, dtype=v.dtype, device=v.device)
        z.narrow(axis, before, v.shape[axis]).copy_(v)
        v = z
    if any(a < 0 for a in coefs):  # (no negative strides in torch): a gather
        picked = v.index_select(axis, _positions(coefs, offset - lo, sizes, v.device))
        return picked.reshape(shape)
    step = v.stride(axis)
    strides = tuple(v.stride()[:axis]) + tuple(a * step for a in coefs) + tuple(v.stride()[axis + 1:])
    return v.as_strided(shape, strides, v.storage_offset() + (offset - lo) * step)  # (entry 0: position lo)

def _unwindow(g, axis, coefs, offset, n):
    m = len(coefs)
    lead, sizes, tail = tuple(g.shape[:axis]), tuple(g.shape[axis:axis + m]), tuple(g.shape[axis + m:])
    lo, hi, before, after = _reach(coefs, offset, sizes, n)
    if 0 in sizes or n == 0 or hi < 0 or lo >= n:
        return xp.zeros(lead + (n,) + tail, dtype=g.dtype, device=g.device)
    out = xp.zeros(lead + (before + n + after,) + tail, dtype=g.dtype, device=g.device)
    if any(a < 0 for a in coefs):  # (no negative steps in torch slices): an index_add_
        flat = g.reshape(lead + (-1,) + tail)
        out.index_add_(axis, _positions(coefs, offset + before, sizes, g.device), flat)
    else:
        skip = (slice(None),) * axis
        for where, picked in _slices(coefs, offset + before, sizes):
            out[skip + (where,)] += g[skip + picked]
    return out.narrow(axis, before, n)
'''

_JAX = _REACH + '''
def _positions(coefs, offset, sizes):
    total = offset
    for p, (a, s) in enumerate(zip(coefs, sizes)):
        total = total + a * xp.reshape(xp.arange(s), (1,) * p + (s,) + (1,) * (len(sizes) - p - 1))
    return xp.broadcast_to(xp.asarray(total), tuple(sizes))

def _window(v, axis, coefs, offset, sizes):
    shape = tuple(v.shape[:axis]) + tuple(sizes) + tuple(v.shape[axis + 1:])
    n = v.shape[axis]
    lo, hi, before, after = _reach(coefs, offset, sizes, n)
    if 0 in shape or hi < 0 or lo >= n:
        return xp.zeros(shape, dtype=v.dtype)
    v = v[(slice(None),) * axis + (slice(max(lo, 0), min(hi, n - 1) + 1),)]  # what is read
    if before or after:
        widths = [(0, 0)] * v.ndim
        widths[axis] = (before, after)
        v = xp.pad(v, widths)
    if len(coefs) == 1 and coefs[0] == 1:  # a shifted slice (entry 0 is position lo)
        return v[(slice(None),) * axis + (slice(offset - lo, offset - lo + sizes[0]),)]
    return xp.take(v, _positions(coefs, offset - lo, sizes), axis=axis)

def _unwindow(g, axis, coefs, offset, n):
    m = len(coefs)
    lead, sizes, tail = tuple(g.shape[:axis]), tuple(g.shape[axis:axis + m]), tuple(g.shape[axis + m:])
    lo, hi, before, after = _reach(coefs, offset, sizes, n)
    if 0 in sizes or n == 0 or hi < 0 or lo >= n:
        return xp.zeros(lead + (n,) + tail, dtype=g.dtype)
    out = xp.zeros(lead + (before + n + after,) + tail, dtype=g.dtype)
    skip = (slice(None),) * axis
    if len(coefs) == 1 and coefs[0] == 1:  # a shifted slice
        out = out.at[skip + (slice(offset + before, offset + before + sizes[0]),)].set(g)
    else:
        out = out.at[skip + (_positions(coefs, offset + before, sizes),)].add(g)
    return out[skip + (slice(before, before + n),)]
'''

# CuPy: numpy's helpers (its as_strided takes no ``writeable``).
_CUPY = _NUMPY.replace(", writeable=False)", ")")

HELPERS = {"numpy": _NUMPY, "cupy": _CUPY, "torch": _TORCH, "jax": _JAX}


@lru_cache(maxsize=65536)
def has_shift(e: Expr) -> bool:
    """Does ``e`` hold a shifted delta (cached per node)?"""
    return isinstance(e, E.Shift) or any(has_shift(c) for c in e.children)


def _labels(f) -> tuple[str, ...]:
    from .emit import Value, _free_order

    return f.labels if isinstance(f, Value) else _free_order(f)


def contract_shifts(gen, factors: list, out: tuple[str, ...]):
    """The product ``factors`` (one of them a :class:`~eingrad.expr.Shift`) summed to ``out``,
    one shift lowered to a window or a scatter (the rest by the ordinary contraction, which
    lowers the next); None where no shift is lowered here (the caller builds the mask)."""
    if gen.backend.name not in HELPERS:
        return None
    for s in factors:
        if not isinstance(s, E.Shift):
            continue
        j, names = s.index, [n for _, n in s.terms]
        rest = [f for f in factors if f is not s]
        if j in names or any(isinstance(f, E.Shift) and j in f.indices for f in rest):
            continue
        with_j = [f for f in rest if j in _labels(f)]
        without = [f for f in rest if j not in _labels(f)]
        if j not in out and with_j and not set(names) & {i for f in with_j for i in _labels(f)}:
            return _window(gen, s, with_j, without, out)
        if j in out and not set(names) & set(out):
            return _scatter(gen, s, with_j, without, out)
    return None


def _window(gen, s: E.Shift, with_j: list, without: list, out: tuple[str, ...]):
    """Σ_j V[..j..] δ[j, a·i + b·k + c] as V read at the position: its axis j replaced by i, k."""
    from .emit import Value, _uses

    j = s.index
    needed = set(out) | {i for f in without for i in _labels(f)} | {j}
    keep = tuple(i for i in dict.fromkeys(i for f in with_j for i in _labels(f)) if i in needed)
    v = gen.contract(with_j, keep)
    axis = v.labels.index(j)
    coefs = tuple(a for a, _ in s.terms)
    names = tuple(n for _, n in s.terms)
    labels = v.labels[:axis] + names + v.labels[axis + 1:]
    sizes = gen.shape_code(names)
    # The same array read at the same position (the forward convolution and its kernel's
    # gradient) is one view: remembered by its array, axis and position.
    key = ("window", v.code, len(v.labels), axis, coefs, s.offset, sizes)
    cached = gen.cse.get(key)
    if cached is not None:
        w = Value(cached.code, labels, True)
    else:
        w = gen.temp(f"_window({v.code}, {axis}, {coefs}, {s.offset}, {sizes})", labels, _uses([v]))
        gen.cse[key] = Value(w.code, (), True)
        gen.cse_keys.setdefault(w.code, []).append(key)
        gen.views.add(w.code)  # a statement's value is never this view (Generator.finish copies it)
    return gen.contract(without + [w], out)


def _scatter(gen, s: E.Shift, with_j: list, without: list, out: tuple[str, ...]):
    """Σ_{i,k} δ[j, a·i + b·k + c] G[..i,k..] (the factors without j, reduced to G) added
    into zeros along j; then the product with the factors that carry j."""
    from .emit import Value, _uses

    j = s.index
    coefs = tuple(a for a, _ in s.terms)
    names = tuple(n for _, n in s.terms)
    inside = set(out) | {i for f in with_j for i in _labels(f)} | set(names)
    keep = tuple(i for i in dict.fromkeys(i for f in without for i in _labels(f)) if i in inside)
    g = gen.contract(without, keep) if without else Value("1.0", ())
    # g's axes as they are, the position's brought together where the first of them is
    first = next((k for k, i in enumerate(g.labels) if i in names), 0)
    others = tuple(i for i in g.labels if i not in names)
    order = others[:first] + names + others[first:]
    if not g.labels:  # a number: an array of the inputs' dtype
        code = gen.op("full", shape=gen.shape_code(order), x=g.code, like=gen.like_code())
    else:
        code = gen.aligned(g, order)
        if any(i not in g.labels for i in order):  # a position index nothing else carries (a mean's window)
            code = gen.op("broadcast", x=code, shape=gen.shape_code(order))
    labels = others[:first] + (j,) + others[first:]
    code = f"_unwindow({code}, {first}, {coefs}, {s.offset}, {gen.size(j)})"
    result = gen.temp(code, labels, _uses([g]), fresh=True)
    if with_j or set(labels) - set(out) or labels != tuple(out):
        return gen.contract(with_j + [result], out)
    return result

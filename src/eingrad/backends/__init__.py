"""Array backends: how generated code spells each operation, imported lazily by name.

A backend is a small module with a ``Backend`` description: the module alias
the generated code uses, how to import it, and the spelling of the few
operations the code generator emits.  ``import eingrad`` imports none of the
optional frameworks; a backend's package is imported the first time code for
it is compiled.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType

from ..errors import EingradError

__all__ = ["Backend", "BackendError", "get_backend", "BACKENDS"]


class BackendError(EingradError, ValueError):
    """An unknown backend, or one whose package is not installed."""


@dataclass(frozen=True)
class Backend:
    """What generated code needs to know about an array library."""

    name: str
    module: str  # what to import, e.g. "numpy" or "jax.numpy"
    extra: str  # the pip extra that installs it
    alias: str = "xp"
    functions: dict[str, str] = field(default_factory=dict)  # eingrad function -> expression template
    inplace: bool = False  # may generated code update temporaries in place (out=, +=)?
    helpers: str = ""  # source of helper functions the generated code calls
    ops: dict[str, str] = field(default_factory=dict)  # structural operations, as templates
    # Do the library's elementwise functions take numpy's ``out=`` (so a temporary that dies
    # can hold the next result)?  Templates for those that do, with {x} and {out}.
    out_functions: dict[str, str] = field(default_factory=dict)
    # May step(x) in a product be the bool array x > 0 (a quarter of a float32 array's memory)?
    # numpy promotes bool with a float array to the float, in products and matrix products alike.
    bool_masks: bool = False
    # A function of a function computed in one step where two steps lose the value
    # (log(σ(-1000)) is -1000, not log 0): (outer, inner) -> template with {x}, inner's argument.
    compositions: dict[tuple[str, str], str] = field(default_factory=lambda: dict(_COMPOSITIONS))
    # Source of ``_check_write(dest, name, scope, skip)`` for ``compile(..., debug=True)``:
    # raises ``_UnsafeWrite(name, other)`` (a class defined there too) when ``dest`` shares
    # memory with a value ``other`` bound in ``scope``.
    debug_helpers: str = ""

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError:
            raise BackendError(
                f"the {self.name} backend needs the package {self.module.split('.')[0]!r}, "
                "which is not installed",
                hint=f"pip install 'eingrad[{self.extra}]'",
            ) from None


_COMMON = {
    "exp": "xp.exp({x})",
    "log": "xp.log({x})",
    "sqrt": "xp.sqrt({x})",
    "tanh": "xp.tanh({x})",
    "sin": "xp.sin({x})",
    "cos": "xp.cos({x})",
    "abs": "xp.abs({x})",
    "sign": "xp.sign({x})",
    "sigmoid": "_sigmoid({x})",
    "softplus": "_softplus({x})",
    "relu": "_relu({x})",
    "step": "_step({x})",
}

# The same formulas as eingrad.functions.COMPOSITIONS; "{x}" is x itself.
_COMPOSITIONS = {
    ("log", "exp"): "{x}",
    ("log", "sigmoid"): "-_softplus(-{x})",
    ("log", "softplus"): "_log_softplus({x})",
}

# log(softplus(x)): below -20 it is x - e^x/2 to double precision (softplus(-1000) is 0,
# its log -1000); neither branch overflows or takes log 0.
_LOG_SOFTPLUS = '''
def _log_softplus(x):
    low = xp.minimum(x, -20.0)
    return xp.where(x < -20.0, low - 0.5 * xp.exp(low), xp.log(_softplus(xp.maximum(x, -20.0))))
'''
_TORCH_LOG_SOFTPLUS = '''
def _log_softplus(x):
    low = xp.clamp_max(x, -20.0)
    return xp.where(x < -20.0, low - 0.5 * xp.exp(low), xp.log(_softplus(xp.clamp_min(x, -20.0))))
'''

# step and logsumexp, the same for every numpy-like library.
_STEP_AND_LOGSUMEXP = '''
def _step(x):
    return (x > 0).astype(x.dtype)

def _logsumexp(x, axes):
    m = xp.max(x, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    return xp.squeeze(xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m, axis=axes)

def _softmax(x, axes, out=None):
    m = xp.max(x, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    if out is None:
        e = xp.exp(x - m)
        return e / xp.sum(e, axis=axes, keepdims=True)
    xp.subtract(x, m, out=out)
    xp.exp(out, out=out)
    out /= xp.sum(out, axis=axes, keepdims=True)
    return out
'''

# dask: lazy arrays, no out=.  The sigmoid is 1/(1 + e^-x) for x >= 0 and e^x/(1 + e^x)
# below: as accurate as numpy's, without an overflow warning when a lazy array is computed.
_NUMPY_LIKE_HELPERS = '''
def _sigmoid(x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

def _softplus(x):
    return xp.logaddexp(0.0, x)

def _relu(x):
    return xp.maximum(x, 0.0)
''' + _STEP_AND_LOGSUMEXP + _LOG_SOFTPLUS

# numpy and cupy: the helpers take ``out=`` and work in one buffer.  The sigmoid is
# 1/(1 + exp(-x)) in place: exp overflows to inf for x far below 0 and the result is
# 0 (generated numpy code runs with floating-point warnings off), and it is twice
# as fast as the tanh form.
_UFUNC_HELPERS = '''
def _sigmoid(x, out=None):
    if out is None:
        out = xp.exp(-x)
        if not isinstance(out, xp.ndarray):  # a scalar
            return 1.0 / (1.0 + out)
    else:
        xp.negative(x, out=out)
        xp.exp(out, out=out)
    out += 1.0
    return xp.reciprocal(out, out=out)

def _softplus(x, out=None):
    return xp.logaddexp(0.0, x, out=out)

def _relu(x, out=None):
    return xp.maximum(x, 0.0, out=out)
''' + _STEP_AND_LOGSUMEXP + _LOG_SOFTPLUS

_UFUNC_OUT = {
    fn: template.replace("({x})", "({x}, out={out})")
    for fn, template in _COMMON.items()
    if fn != "step"
}

_NUMPY_HELPERS = _UFUNC_HELPERS + '''
def _diagonal(a, spec):
    return xp.einsum(spec, a)

def _kronecker(n, k, like):
    a = xp.zeros((n,) * k, dtype=getattr(like, "dtype", float))
    a[(xp.arange(n),) * k] = 1
    return a
'''

_TORCH_HELPERS = '''
def _sigmoid(x, out=None):
    return xp.sigmoid(x, out=out)

def _softplus(x, out=None):
    # logaddexp(x, 0), as numpy and evaluate (nn.functional.softplus is x above 20)
    return xp.logaddexp(x, xp.zeros((), dtype=x.dtype, device=x.device), out=out)

def _relu(x, out=None):
    return xp.relu(x) if out is None else xp.clamp_min(x, 0.0, out=out)

def _step(x):
    return (x > 0).to(x.dtype)

def _logsumexp(x, axes):
    return xp.logsumexp(x, dim=axes)

def _softmax(x, axes, out=None):
    y = xp.softmax(x, dim=axes[0]) if len(axes) == 1 else xp.exp(x - xp.logsumexp(x, dim=axes, keepdim=True))
    return y if out is None else out.copy_(y)

def _diagonal(a, spec):
    return xp.einsum(spec, a)

def _kronecker(n, k, like):
    a = xp.zeros((n,) * k, dtype=getattr(like, "dtype", None), device=getattr(like, "device", None))
    a[(xp.arange(n, device=a.device),) * k] = 1
    return a
''' + _TORCH_LOG_SOFTPLUS

# Arrays that cannot be written in place (jax, dask): deltas as masks built from
# broadcast index comparisons (chunked and lazy under dask, fused under jax.jit).
_FUNCTIONAL_HELPERS = '''
def _axis_range(n, axis, ndim):
    return xp.reshape(xp.arange(n), (1,) * axis + (n,) + (1,) * (ndim - axis - 1))

def _kronecker(n, k, like):
    first = _axis_range(n, 0, k)
    mask = first == _axis_range(n, 1, k)
    for axis in range(2, k):
        mask = mask & (first == _axis_range(n, axis, k))
    return mask.astype(getattr(like, "dtype", float))

def _diagonal_add(a, spec, value):
    """``a`` plus ``value`` on the diagonal ``spec`` names (as _diagonal), as a new array."""
    src, view = spec.split("->")
    value = xp.broadcast_to(value, tuple(a.shape[src.index(c)] for c in view))
    firsts = [src.index(c) == p for p, c in enumerate(src)]
    value = value[tuple(slice(None) if first else None for first in firsts)]
    mask = None
    for p, c in enumerate(src):
        if not firsts[p]:
            n = a.shape[p]
            same = _axis_range(n, src.index(c), len(src)) == _axis_range(n, p, len(src))
            mask = same if mask is None else mask & same
    return a + xp.where(mask, value, 0.0)
'''

_JAX_HELPERS = '''
import jax as _jax

def _sigmoid(x):
    return _jax.nn.sigmoid(x)

def _softplus(x):
    return _jax.nn.softplus(x)

def _relu(x):
    return xp.maximum(x, 0.0)

def _step(x):
    return (x > 0).astype(x.dtype)

def _logsumexp(x, axes):
    return _jax.scipy.special.logsumexp(x, axis=axes)

def _softmax(x, axes):
    return _jax.nn.softmax(x, axis=axes)

def _diagonal(a, spec):
    return xp.einsum(spec, a)
''' + _LOG_SOFTPLUS

_DASK_HELPERS = _NUMPY_LIKE_HELPERS + _FUNCTIONAL_HELPERS

_NUMPY_OPS = {
    "transpose": "xp.transpose({x}, {perm})",
    "sum": "xp.sum({x}, axis={axes})",
    "tensordot": "xp.tensordot({a}, {b}, axes=({pa}, {pb}))",
    "broadcast": "xp.broadcast_to({x}, {shape})",
    "zeros": "xp.zeros({shape}, dtype={like}.dtype)",
    "empty": "xp.empty({shape}, dtype={like}.dtype)",
    "ones": "xp.ones({shape}, dtype={like}.dtype)",
    "full": "xp.full({shape}, {x}, dtype={like}.dtype)",
    "asarray": "xp.asarray({x}, dtype={like}.dtype)",
    "reshape": "xp.reshape({x}, {shape})",
    "einsum": "xp.einsum({spec!r}, {args})",
    "copy": "xp.array({x}, copy=True)",
    "concat": "xp.concatenate([{args}], axis=0)",
    "matmul": "{a} @ {b}",
    "T": "{x}.T",
    "max": "xp.max({x}, axis={axes})",
    "min": "xp.min({x}, axis={axes})",
    "cast": "xp.asarray({x}, dtype={like}.dtype)",
}
_TORCH_OPS = {
    "transpose": "xp.permute({x}, {perm})",
    "sum": "xp.sum({x}, dim={axes})",
    "tensordot": "xp.tensordot({a}, {b}, dims=({pa}, {pb}))",
    "broadcast": "xp.broadcast_to({x}, {shape})",
    "zeros": "xp.zeros({shape}, dtype={like}.dtype, device={like}.device)",
    "empty": "xp.empty({shape}, dtype={like}.dtype, device={like}.device)",
    "ones": "xp.ones({shape}, dtype={like}.dtype, device={like}.device)",
    "full": "xp.full({shape}, {x}, dtype={like}.dtype, device={like}.device)",
    "asarray": "xp.as_tensor({x}, dtype={like}.dtype, device={like}.device)",
    "reshape": "xp.reshape({x}, {shape})",
    "einsum": "xp.einsum({spec!r}, {args})",
    "copy": "{x}.clone()",
    "concat": "xp.cat([{args}], dim=0)",
    "matmul": "{a} @ {b}",
    "T": "{x}.T",
    "max": "xp.amax({x}, dim={axes})",
    "min": "xp.amin({x}, dim={axes})",
    "cast": "xp.as_tensor({x}, dtype={like}.dtype, device={like}.device)",
}
# Debug mode: before each in-place write, no other bound array shares the memory written.
_UNSAFE_WRITE = '''
class _UnsafeWrite(Exception):
    """An in-place write the debug checks refused: (buffer written, live value sharing it)."""
'''

_NUMPY_DEBUG = _UNSAFE_WRITE + '''
def _check_write(dest, name, scope, skip):
    for other, value in scope.items():
        if other in skip or other == "arrays" or not isinstance(value, xp.ndarray):
            continue
        if xp.may_share_memory(dest, value) and xp.shares_memory(dest, value):
            raise _UnsafeWrite(name, other)
'''

# torch: the element ranges two tensors of one storage cover (a transposed view covers
# the same range; two row blocks of a buffer do not meet).
_TORCH_DEBUG = _UNSAFE_WRITE + '''
def _extent(t):
    start = t.storage_offset()
    if t.numel() == 0:
        return start, start
    return start, start + sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1

def _check_write(dest, name, scope, skip):
    ptr = dest.untyped_storage().data_ptr()
    lo, hi = _extent(dest)
    for other, value in scope.items():
        if other in skip or other == "arrays" or not isinstance(value, xp.Tensor):
            continue
        if value.untyped_storage().data_ptr() == ptr:
            a, b = _extent(value)
            if a < hi and lo < b:
                raise _UnsafeWrite(name, other)
'''

_JAX_OPS = dict(_NUMPY_OPS, copy="xp.array({x})")
_DASK_OPS = dict(_NUMPY_OPS, copy="{x}", broadcast="xp.broadcast_to({x}, {shape})")

BACKENDS: dict[str, Backend] = {
    "numpy": Backend("numpy", "numpy", "numpy", "xp", _COMMON, True, _NUMPY_HELPERS, _NUMPY_OPS, _UFUNC_OUT, True,
                     debug_helpers=_NUMPY_DEBUG),
    "cupy": Backend("cupy", "cupy", "cupy", "xp", _COMMON, True, _NUMPY_HELPERS, _NUMPY_OPS, _UFUNC_OUT, True,
                    debug_helpers=_NUMPY_DEBUG),
    "dask": Backend("dask", "dask.array", "dask", "xp", _COMMON, False, _DASK_HELPERS, _DASK_OPS),
    # torch's elementwise functions take out= as numpy's ufuncs do (add, subtract, multiply,
    # divide with a number first too); the helpers take it as well.
    "torch": Backend("torch", "torch", "torch", "xp", _COMMON, True, _TORCH_HELPERS, _TORCH_OPS, _UFUNC_OUT,
                     debug_helpers=_TORCH_DEBUG),
    "jax": Backend("jax", "jax.numpy", "jax", "xp", _COMMON, False, _JAX_HELPERS + _FUNCTIONAL_HELPERS, _JAX_OPS),
}

# Linear algebra (LANGUAGE.md §9): inverse, solve with a matrix right-hand side, log|det|
# and det from slogdet (never det itself: it overflows at n = 1000).  Every backend but
# dask takes a batch of matrices (leading axes); dask.array.linalg has inv and solve for
# one matrix only and no slogdet.
_LINALG_OPS = {
    "inv": "xp.linalg.inv({x})",
    "solve": "xp.linalg.solve({a}, {b})",
    "logabsdet": "xp.linalg.slogdet({x})[1]",
    "det": "_det({x})",
    "batched_linalg": "",
}
_DET_HELPER = """
def _det(x):
    sign, logabs = xp.linalg.slogdet(x)
    return sign * xp.exp(logabs)
"""
for _name in ("numpy", "cupy", "torch", "jax"):
    _b = BACKENDS[_name]
    BACKENDS[_name] = dataclasses.replace(_b, helpers=_b.helpers + _DET_HELPER, ops={**_b.ops, **_LINALG_OPS})
# Index arithmetic (LANGUAGE.md §11): the shifted delta δ[j, a·i + b·k + c] as a 0/1 mask,
# Σ_p w_p·arange_p == c over its distinct axes (w = 1 for j, −a for i, ...), sizes read
# from the arrays by the caller.  A first lowering: a sliding-window one is future work.
_SHIFT_HELPER = """
def _shift(sizes, weights, offset, like):
    total = 0
    for p, (n, w) in enumerate(zip(sizes, weights)):
        total = total + w * xp.reshape(xp.arange(n), (1,) * p + (n,) + (1,) * (len(sizes) - p - 1))
    return (total == offset).astype(getattr(like, "dtype", float))
"""
_TORCH_SHIFT_HELPER = """
def _shift(sizes, weights, offset, like):
    total = 0
    for p, (n, w) in enumerate(zip(sizes, weights)):
        axis = xp.arange(n, device=getattr(like, "device", None))
        total = total + w * xp.reshape(axis, (1,) * p + (n,) + (1,) * (len(sizes) - p - 1))
    return (total == offset).to(getattr(like, "dtype", None) or xp.get_default_dtype())
"""
for _name in BACKENDS:
    _b = BACKENDS[_name]
    BACKENDS[_name] = dataclasses.replace(
        _b, helpers=_b.helpers + (_TORCH_SHIFT_HELPER if _name == "torch" else _SHIFT_HELPER))
BACKENDS["dask"] = dataclasses.replace(
    BACKENDS["dask"], ops={**_DASK_OPS, "inv": "xp.linalg.inv({x})", "solve": "xp.linalg.solve({a}, {b})"}
)


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        import difflib

        close = difflib.get_close_matches(name, list(BACKENDS), n=1) if isinstance(name, str) else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BackendError(
            f"unknown backend {name!r} (the backends are {', '.join(BACKENDS)})",
            hint=hint + "pass backend='numpy' (the default)",
        )
    return BACKENDS[name]

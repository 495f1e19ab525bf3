#!/usr/bin/env python
"""Compiled code speed: ``eg.compile`` against hand-written numpy, torch, JAX and autograd (issue 5).

Every task runs in its own Python process (so peak memory is per task and one
task's allocations, threads or caches cannot disturb the next).  Inside that
process each implementation is built, checked once against the hand-written
numpy closed form, warmed up, then timed; the median is reported.  The
implementations:

* **eingrad**: ``eg.compile(eg.grad(...))`` or ``eg.compile(eg.hessian(...))``
  on the numpy backend, called like a user calls it (``fn(**arrays)``);
* **closed**: the closed form an expert writes in numpy (``X.T @ G``,
  ``X.T @ (X * s[:, None])``, batched BPTT, ...);
* **torch**: ``torch.autograd.grad`` / ``torch.func.hessian`` (CPU);
* **jax**: ``jax.jit(jax.grad / jax.vjp / jax.hessian)``, compiled ahead of
  time (compile time reported apart, never in the timings);
* **autograd**: HIPS ``autograd.grad`` / ``make_vjp`` / ``hessian``.

Plus eingrad's forward program alone (``eg.compile(program)``), for the
gradient/forward ratio, and peak memory (``tracemalloc`` for the numpy-based
implementations, XLA's own accounting for JAX; ``--rss`` adds ``ru_maxrss``
deltas, one fresh process per task and implementation, for eingrad, the
closed form, torch and autograd).  Every library runs single-threaded by
default (``--threads``), each task process pinned to one core (XLA's CPU runtime
sizes its thread pool by the cores it may use, whatever ``XLA_FLAGS`` say): on a
small shared machine two threads that wait on each other make small matmuls
erratically slow.

A competitor whose package is missing is skipped with a message.  This is a
benchmark, not a test: nothing here asserts a time.

Run from the repository root::

    PYTHONPATH=src python benchmarks/compiled.py
    PYTHONPATH=src python benchmarks/compiled.py --dtype float32 --tasks logreg mlp
    PYTHONPATH=src python benchmarks/compiled.py --json benchmarks/compiled-results.json --rss
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from machine_info import base_info, source_fingerprint  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, os.pardir, "src")

IMPLS = ("eingrad", "closed", "torch", "jax", "autograd")
# --rss: not jax, whose compilation (before the baseline) sets the high-water mark; XLA's own count is shown.
RSS_IMPLS = ("eingrad", "closed", "torch", "autograd")
COMPETITORS = {"torch": "torch", "jax": "jax", "autograd": "autograd"}  # impl -> module to import
INSTALL = {"torch": "pip install torch", "jax": "pip install jax jaxlib", "autograd": "pip install autograd"}


def import_eingrad():
    try:
        import eingrad as eg
    except ImportError:  # run from a checkout without installing
        sys.path.insert(0, SRC)
        import eingrad as eg
    return eg


# ====================================================================== tasks
#
# A task builds its data and, per implementation, a thunk that returns the
# results as a list of arrays in one fixed order (the order of ``outputs``).


@dataclass(frozen=True)
class TaskInfo:
    key: str
    title: str
    kind: str  # "grad" or "hess"
    sizes: str
    note: str = ""


@dataclass
class Bench:
    data: dict[str, np.ndarray]
    outputs: list[str]  # names of the results, in order
    eg_obj: Any  # a gradient Program or a Derivative
    eg_forward: Any  # the forward Program
    eg_inputs: dict[str, np.ndarray]  # what eingrad's callable gets (the RNN splits X per step)
    closed: Callable[[], list[np.ndarray]]
    torch: Callable[[Any], Callable[[], list]] | None = None
    jax: Callable[[Any, Any], tuple[Callable, tuple]] | None = None  # -> (function to jit, its arguments)
    autograd: Callable[[Any, Any], Callable[[], list]] | None = None
    # The hand-written forward, where the closed form's own gradient/forward ratio is a target
    closed_forward: Callable[[], Any] | None = None


# Where the torch competitors put their tensors (benchmarks/gpu.py sets "cuda").
TORCH_DEVICE = "cpu"


def _tensor(torch, a: np.ndarray):
    """A numpy array as a torch tensor on TORCH_DEVICE (shares memory on the CPU)."""
    t = torch.from_numpy(a if a.flags.c_contiguous else np.ascontiguousarray(a))  # (keeps 0-d arrays 0-d)
    return t if TORCH_DEVICE == "cpu" else t.to(TORCH_DEVICE)


def _expit_function() -> Callable[[np.ndarray], np.ndarray]:
    """scipy's sigmoid, imported when the task is built (not in a timed call)."""
    try:
        from scipy.special import expit
    except ImportError:  # numpy only: the tanh form, stable and dtype-preserving
        return lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))
    return expit


# ---------------------------------------------------------------- affine layer

AFFINE = "Y_nh = X_nd W_dh + b_h"


def task_affine(eg, dtype, rng, n=4096, d=512, h=512) -> Bench:
    data = {
        "X": rng.standard_normal((n, d)).astype(dtype),
        "W": (rng.standard_normal((d, h)) / math.sqrt(d)).astype(dtype),
        "b": rng.standard_normal(h).astype(dtype),
        "dLdY": rng.standard_normal((n, h)).astype(dtype),
    }
    program = eg.parse(AFFINE)
    X, G = data["X"], data["dLdY"]

    def closed():
        return [X.T @ G, G.sum(axis=0)]

    def closed_forward():
        Y = X @ data["W"]
        Y += data["b"]
        return Y

    def torch_impl(torch):
        t = {k: _tensor(torch, v) for k, v in data.items()}
        W, b = t["W"].clone().requires_grad_(), t["b"].clone().requires_grad_()

        def run():
            Y = t["X"] @ W + b
            return list(torch.autograd.grad(Y, (W, b), grad_outputs=t["dLdY"]))

        return run

    def jax_impl(jax, jnp):
        def f(W, b, X, G):
            _, vjp = jax.vjp(lambda W, b: X @ W + b, W, b)
            return list(vjp(G))

        return f, (data["W"], data["b"], X, G)

    def autograd_impl(ag, anp):
        vjp_maker = ag.make_vjp(lambda p: anp.dot(X, p[0]) + p[1])

        def run():
            vjp, _ = vjp_maker((data["W"], data["b"]))
            return list(vjp(G))

        return run

    return Bench(
        data,
        ["dLdW", "dLdb"],
        eg.grad(program, wrt=["W", "b"], seed="dLdY"),
        program,
        data,
        closed,
        torch_impl,
        jax_impl,
        autograd_impl,
        closed_forward,
    )


# ---------------------------------------------------------------- quadratic form

QUADRATIC = "s = x_i A_ij x_j"


def task_quadratic(eg, dtype, rng, order: int, n=2000) -> Bench:
    data = {"x": rng.standard_normal(n).astype(dtype), "A": rng.standard_normal((n, n)).astype(dtype)}
    program = eg.parse(QUADRATIC)
    x, A = data["x"], data["A"]

    if order == 1:

        def closed():
            return [A @ x + x @ A]  # (A + Aᵀ) x without forming A + Aᵀ

    else:

        def closed():
            return [A + A.T]

    def torch_impl(torch):
        tx, tA = _tensor(torch, x), _tensor(torch, A)

        def f(x):
            return x @ tA @ x

        if order == 1:
            xx = tx.clone().requires_grad_()
            return lambda: list(torch.autograd.grad(f(xx), (xx,)))
        hess = torch.func.hessian(f)
        return lambda: [hess(tx)]

    def jax_impl(jax, jnp):
        def f(x, A):
            return x @ A @ x

        g = jax.grad(f) if order == 1 else jax.hessian(f)
        return (lambda x, A: [g(x, A)]), (x, A)

    def autograd_impl(ag, anp):
        def f(x):
            return anp.dot(x, anp.dot(A, x))

        g = ag.grad(f) if order == 1 else ag.hessian(f)
        return lambda: [g(x)]

    obj = eg.grad(program, wrt=["x"]) if order == 1 else eg.hessian(program, "x")
    outputs = ["dsdx"] if order == 1 else ["d2sdx2"]
    return Bench(data, outputs, obj, program, data, closed, torch_impl, jax_impl, autograd_impl)


# ---------------------------------------------------------------- logistic regression

LOGISTIC = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"


def task_logistic(eg, dtype, rng, order: int, n: int, d: int) -> Bench:
    data = {
        "X": rng.standard_normal((n, d)).astype(dtype),
        "y": np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(dtype),
        "w": (rng.standard_normal(d) / math.sqrt(d)).astype(dtype),
        "lam": np.array(0.1, dtype=dtype),
    }
    program = eg.parse(LOGISTIC)
    X, y, w, lam = data["X"], data["y"], data["w"], data["lam"]
    _expit = _expit_function()

    if order == 1:

        def closed():
            s = _expit(-y * (X @ w))  # sigmoid(-y z)
            return [lam * w - X.T @ (y * s)]

    else:

        def closed():
            p = _expit(-y * (X @ w))
            s = p * (1 - p) * (y * y)
            H = X.T @ (X * s[:, None])  # the weighted Gram matrix Xᵀ(X·s)
            H.flat[:: d + 1] += lam  # + λI, written into the diagonal
            return [H]

    def torch_impl(torch):
        F = torch.nn.functional
        tX, ty, tlam = _tensor(torch, X), _tensor(torch, y), _tensor(torch, lam)

        def f(w):
            return F.softplus(-ty * (tX @ w)).sum() + 0.5 * tlam * (w @ w)

        if order == 1:
            ww = _tensor(torch, w).clone().requires_grad_()
            return lambda: list(torch.autograd.grad(f(ww), (ww,)))
        hess, tw = torch.func.hessian(f), _tensor(torch, w)
        return lambda: [hess(tw)]

    def jax_impl(jax, jnp):
        def f(w, X, y, lam):
            return jax.nn.softplus(-y * (X @ w)).sum() + 0.5 * lam * (w @ w)

        g = jax.grad(f) if order == 1 else jax.hessian(f)
        return (lambda w, X, y, lam: [g(w, X, y, lam)]), (w, X, y, lam)

    def autograd_impl(ag, anp):
        def f(w):
            return anp.sum(anp.logaddexp(0.0, -y * anp.dot(X, w))) + 0.5 * lam * anp.dot(w, w)

        g = ag.grad(f) if order == 1 else ag.hessian(f)
        return lambda: [g(w)]

    obj = eg.grad(program, wrt=["w"]) if order == 1 else eg.hessian(program, "w")
    outputs = ["dLdw"] if order == 1 else ["d2Ldw2"]
    return Bench(data, outputs, obj, program, data, closed, torch_impl, jax_impl, autograd_impl)


# ---------------------------------------------------------------- matrix factorisation

FACTORISATION = "L = sum_{i,j}((X_ij - U_ik V_jk)^2)"


def task_factorisation(eg, dtype, rng, order: int, n=300, m=200, k=10) -> Bench:
    data = {
        "X": rng.standard_normal((n, m)).astype(dtype),
        "U": rng.standard_normal((n, k)).astype(dtype),
        "V": rng.standard_normal((m, k)).astype(dtype),
    }
    program = eg.parse(FACTORISATION)
    X, U, V = data["X"], data["U"], data["V"]

    if order == 1:

        def closed():
            R = U @ V.T
            R -= X  # the residual, negated: UVᵀ - X
            return [2.0 * (R @ V), 2.0 * (R.T @ U)]

    else:

        def closed():
            H = np.zeros((n, k, n, k), dtype=dtype)
            np.einsum("iaib->iab", H)[...] = 2.0 * (V.T @ V)  # 2 δ_io (VᵀV)_ab, on the diagonal only
            return [H]

    def torch_impl(torch):
        tX, tU, tV = (_tensor(torch, a) for a in (X, U, V))
        if order == 1:
            UU, VV = tU.clone().requires_grad_(), tV.clone().requires_grad_()

            def run():
                L = ((tX - UU @ VV.T) ** 2).sum()
                return list(torch.autograd.grad(L, (UU, VV)))

            return run
        hess = torch.func.hessian(lambda U: ((tX - U @ tV.T) ** 2).sum())
        return lambda: [hess(tU)]

    def jax_impl(jax, jnp):
        def f(U, V, X):
            return ((X - U @ V.T) ** 2).sum()

        if order == 1:
            g = jax.grad(f, argnums=(0, 1))
            return (lambda U, V, X: list(g(U, V, X))), (U, V, X)
        h = jax.hessian(f)
        return (lambda U, V, X: [h(U, V, X)]), (U, V, X)

    def autograd_impl(ag, anp):
        if order == 1:
            g = ag.grad(lambda p: anp.sum((X - anp.dot(p[0], p[1].T)) ** 2))
            return lambda: list(g((U, V)))
        h = ag.hessian(lambda U: anp.sum((X - anp.dot(U, V.T)) ** 2))
        return lambda: [h(U)]

    obj = eg.grad(program, wrt=["U", "V"]) if order == 1 else eg.hessian(program, "U")
    outputs = ["dLdU", "dLdV"] if order == 1 else ["d2LdU2"]
    return Bench(data, outputs, obj, program, data, closed, torch_impl, jax_impl, autograd_impl)


# ---------------------------------------------------------------- 2-layer MLP

MLP = "H_nh = relu(X_nd W_dh + b_h); Z_nc = H_nh V_hc + c_c; L = sum_n(logsumexp_c(Z_nc) - Z_nc Y_nc)"


def task_mlp(eg, dtype, rng, n=1024, d=784, h=256, c=10) -> Bench:
    data = {
        "X": rng.standard_normal((n, d)).astype(dtype),
        "W": (rng.standard_normal((d, h)) / math.sqrt(d)).astype(dtype),
        "b": (0.1 * rng.standard_normal(h)).astype(dtype),
        "V": (rng.standard_normal((h, c)) / math.sqrt(h)).astype(dtype),
        "c": (0.1 * rng.standard_normal(c)).astype(dtype),
        "Y": np.eye(c, dtype=dtype)[rng.integers(0, c, n)],
    }
    program = eg.parse(MLP)
    X, W, b, V, c_, Y = (data[k] for k in ("X", "W", "b", "V", "c", "Y"))

    def closed():
        H = X @ W
        H += b
        np.maximum(H, 0, out=H)  # relu in place
        G = H @ V
        G += c_
        G -= G.max(axis=1, keepdims=True)
        np.exp(G, out=G)
        G /= G.sum(axis=1, keepdims=True)  # softmax
        G -= Y  # dL/dZ
        dV, dc = H.T @ G, G.sum(axis=0)
        dA = G @ V.T
        dA *= H > 0  # relu'
        return [X.T @ dA, dA.sum(axis=0), dV, dc]

    def torch_impl(torch):
        t = {k: _tensor(torch, v) for k, v in data.items()}
        params = [t[k].clone().requires_grad_() for k in ("W", "b", "V", "c")]

        def run():
            W, b, V, c = params
            Z = torch.relu(t["X"] @ W + b) @ V + c
            L = (torch.logsumexp(Z, dim=1) - (Z * t["Y"]).sum(dim=1)).sum()
            return list(torch.autograd.grad(L, params))

        return run

    def jax_impl(jax, jnp):
        def f(W, b, V, c, X, Y):
            Z = jnp.maximum(X @ W + b, 0) @ V + c
            return (jax.nn.logsumexp(Z, axis=1) - (Z * Y).sum(axis=1)).sum()

        g = jax.grad(f, argnums=(0, 1, 2, 3))
        return (lambda *a: list(g(*a))), (W, b, V, c_, X, Y)

    def autograd_impl(ag, anp):
        from autograd.scipy.special import logsumexp

        def f(p):
            W, b, V, c = p
            Z = anp.dot(anp.maximum(anp.dot(X, W) + b, 0.0), V) + c
            return anp.sum(logsumexp(Z, axis=1) - anp.sum(Z * Y, axis=1))

        g = ag.grad(f)
        return lambda: list(g((W, b, V, c_)))

    return Bench(
        data,
        ["dLdW", "dLdb", "dLdV", "dLdc"],
        eg.grad(program, wrt=["W", "b", "V", "c"]),
        program,
        data,
        closed,
        torch_impl,
        jax_impl,
        autograd_impl,
    )


# ---------------------------------------------------------------- RNN, unrolled


def rnn_program(steps: int) -> str:
    lines = ["H1_nh = tanh(X1_nd U_dh + b_h)"]
    lines += [f"H{t}_nh = tanh(X{t}_nd U_dh + H{t - 1}_nk W_kh + b_h)" for t in range(2, steps + 1)]
    lines.append(f"L = 0.5 sum_{{n,h}}((H{steps}_nh - T_nh)^2)")
    return "\n".join(lines)


def task_rnn(eg, dtype, rng, steps=50, n=32, d=64, h=128) -> Bench:
    data = {
        "X": rng.standard_normal((steps, n, d)).astype(dtype),
        "U": (rng.standard_normal((d, h)) / math.sqrt(d)).astype(dtype),
        "W": (0.9 * rng.standard_normal((h, h)) / math.sqrt(h)).astype(dtype),
        "b": (0.1 * rng.standard_normal(h)).astype(dtype),
        "T": (0.5 * rng.standard_normal((n, h))).astype(dtype),
    }
    program = eg.parse(rnn_program(steps))
    X, U, W, b, T = (data[k] for k in ("X", "U", "W", "b", "T"))
    eg_inputs = {f"X{t + 1}": X[t] for t in range(steps)}
    eg_inputs.update(U=U, W=W, b=b, T=T)

    def closed():
        # Forward: one big matmul for every step's input term, then the recurrence.
        Hs = (X.reshape(steps * n, d) @ U).reshape(steps, n, h)
        Hs += b
        np.tanh(Hs[0], out=Hs[0])
        for t in range(1, steps):
            Hs[t] += Hs[t - 1] @ W
            np.tanh(Hs[t], out=Hs[t])
        # Backward through time, keeping every step's dL/dA; weights' gradients in one matmul each.
        dA = np.empty_like(Hs)
        g = Hs[-1] - T
        for t in range(steps - 1, -1, -1):
            np.multiply(g, 1 - Hs[t] * Hs[t], out=dA[t])
            if t:
                g = dA[t] @ W.T
        dU = X.reshape(steps * n, d).T @ dA.reshape(steps * n, h)
        dW = Hs[:-1].reshape(-1, h).T @ dA[1:].reshape(-1, h)
        return [dU, dW, dA.sum(axis=(0, 1))]

    def torch_impl(torch):
        tX, tT = _tensor(torch, X), _tensor(torch, T)
        params = [_tensor(torch, a).clone().requires_grad_() for a in (U, W, b)]

        def run():
            U, W, b = params
            H = torch.tanh(tX[0] @ U + b)
            for t in range(1, steps):
                H = torch.tanh(tX[t] @ U + H @ W + b)
            L = 0.5 * ((H - tT) ** 2).sum()
            return list(torch.autograd.grad(L, params))

        return run

    def jax_impl(jax, jnp):
        def f(U, W, b, X, T):
            H = jnp.tanh(X[0] @ U + b)
            for t in range(1, steps):  # unrolled, as eingrad's program is
                H = jnp.tanh(X[t] @ U + H @ W + b)
            return 0.5 * ((H - T) ** 2).sum()

        g = jax.grad(f, argnums=(0, 1, 2))
        return (lambda *a: list(g(*a))), (U, W, b, X, T)

    def autograd_impl(ag, anp):
        def f(p):
            U, W, b = p
            H = anp.tanh(anp.dot(X[0], U) + b)
            for t in range(1, steps):
                H = anp.tanh(anp.dot(X[t], U) + anp.dot(H, W) + b)
            return 0.5 * anp.sum((H - T) ** 2)

        g = ag.grad(f)
        return lambda: list(g((U, W, b)))

    return Bench(
        data,
        ["dLdU", "dLdW", "dLdb"],
        eg.grad(program, wrt=["U", "W", "b"]),
        program,
        eg_inputs,
        closed,
        torch_impl,
        jax_impl,
        autograd_impl,
    )


# ---------------------------------------------------------------- registry

TASKS: dict[str, tuple[TaskInfo, Callable]] = {}


def _task(info: TaskInfo, build: Callable) -> None:
    TASKS[info.key] = (info, build)


_task(
    TaskInfo("affine-grad", "affine layer, ∂/∂W, ∂/∂b with seed dLdY", "grad", "n=4096 d=512 h=512"),
    task_affine,
)
_task(
    TaskInfo("quad-grad", "quadratic form xᵀAx, gradient", "grad", "n=2000"),
    lambda eg, dt, rng: task_quadratic(eg, dt, rng, 1),
)
_task(
    TaskInfo("quad-hess", "quadratic form xᵀAx, Hessian", "hess", "n=2000"),
    lambda eg, dt, rng: task_quadratic(eg, dt, rng, 2),
)
for _n, _d in ((10000, 100), (10000, 1000), (2000, 2000)):
    _task(
        TaskInfo(f"logreg-grad-{_n}x{_d}", "logistic regression, gradient", "grad", f"n={_n} d={_d}"),
        lambda eg, dt, rng, n=_n, d=_d: task_logistic(eg, dt, rng, 1, n, d),
    )
    _task(
        TaskInfo(f"logreg-hess-{_n}x{_d}", "logistic regression, Hessian", "hess", f"n={_n} d={_d}"),
        lambda eg, dt, rng, n=_n, d=_d: task_logistic(eg, dt, rng, 2, n, d),
    )
_task(
    TaskInfo("mf-grad", "matrix factorisation, ∂/∂U, ∂/∂V", "grad", "X 300×200, rank 10"),
    lambda eg, dt, rng: task_factorisation(eg, dt, rng, 1),
)
_task(
    TaskInfo("mf-hess", "matrix factorisation, 4-index Hessian wrt U", "hess", "X 300×200, rank 10"),
    lambda eg, dt, rng: task_factorisation(eg, dt, rng, 2),
)
_task(
    TaskInfo("mlp-grad", "2-layer MLP + softmax CE, ∂/∂{W,b,V,c}", "grad", "n=1024 d=784 h=256 c=10"),
    task_mlp,
)
_task(
    TaskInfo("rnn-grad", "tanh RNN unrolled 50 steps, ∂/∂{U,W,b}", "grad", "T=50 batch=32 d=64 h=128"),
    task_rnn,
)


# ====================================================================== measuring


class CallTimeout(Exception):
    pass


_ARMED = False


def _alarm(signum, frame):  # noqa: ARG001
    if _ARMED:
        raise CallTimeout


def timed_call(fn: Callable[[], Any], timeout: float) -> tuple[float, Any]:
    """One call, in seconds.  Past ``timeout`` a Python-level loop (autograd's
    Jacobian) is interrupted with CallTimeout; one long BLAS call finishes first."""
    global _ARMED
    _ARMED = True
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    finally:
        _ARMED = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    if dt > timeout:
        raise CallTimeout
    return dt, out


def tracemalloc_peak(fn: Callable[[], Any]) -> int:
    """Bytes allocated at the peak of one call (its results included), above what existed before."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del out
    return peak


def to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().numpy()
    return np.asarray(x)


def compare(got: list, want: list[np.ndarray]) -> float:
    """Largest error relative to the largest entry, over all outputs."""
    worst = 0.0
    if len(got) != len(want):
        return math.inf
    for g, w in zip(got, want, strict=True):
        g = to_numpy(g)
        if g.shape != w.shape:
            return math.inf
        scale = float(np.max(np.abs(w))) or 1.0
        worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w))) / scale)
    return worst


def summary(times: list[float]) -> dict[str, Any]:
    t = sorted(x * 1e3 for x in times)
    q = statistics.quantiles(t, n=4) if len(t) >= 2 else [t[0]] * 3
    return {
        "median_ms": statistics.median(t),
        "min_ms": t[0],
        "max_ms": t[-1],
        "q1_ms": q[0],
        "q3_ms": q[2],
        "repeats": len(t),
    }


def build_impls(key: str, dtype: str, seed: int, wanted: tuple[str, ...]) -> tuple[dict, dict, Any]:
    """Thunks per implementation, with the setup facts (compile times, skips, notes)."""
    eg = import_eingrad()
    info, build = TASKS[key]
    rng = np.random.default_rng(seed)
    np_dtype = np.dtype(dtype)
    facts: dict[str, Any] = {"skipped": {}, "notes": [], "compile_s": {}, "jax_memory": None}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a zero-derivative warning would mean a wrong benchmark
        bench = build(eg, np_dtype, rng)
    facts["derive_s"] = time.perf_counter() - t0  # eg.grad / eg.hessian (and data)
    thunks: dict[str, Callable[[], list]] = {}

    # eingrad, compiled.  The first call generates and compiles the code.
    if "eingrad" in wanted:
        # A gradient program computes only what its gradients need (outputs=).
        outputs = bench.outputs if isinstance(bench.eg_obj, eg.Program) else None
        fn = eg.compile(bench.eg_obj, outputs=outputs)
        inputs = bench.eg_inputs
        t0 = time.perf_counter()
        first = fn(**inputs)
        facts["compile_s"]["eingrad"] = time.perf_counter() - t0
        facts["eingrad_source"] = fn.source
        if isinstance(first, dict):  # a gradient program: {target: array}
            names = bench.outputs
            thunks["eingrad"] = lambda: (lambda out: [out[k] for k in names])(fn(**inputs))
        else:  # a derivative: one array
            thunks["eingrad"] = lambda: [fn(**inputs)]
        del first
        fwd = eg.compile(bench.eg_forward)
        fwd_inputs = {k: v for k, v in inputs.items() if k in bench.eg_forward.inputs}  # no seed, for one
        fwd(**fwd_inputs)
        thunks["forward"] = lambda: fwd(**fwd_inputs)

    thunks["closed"] = bench.closed
    if bench.closed_forward is not None:
        thunks["closed forward"] = bench.closed_forward

    def load(impl: str, *modules: str) -> list | None:
        """The competitor's modules, or None with the reason kept (never an error)."""
        try:
            return [importlib.import_module(m) for m in modules]
        except ImportError as err:
            facts["skipped"][impl] = f"{impl} cannot be imported ({err}); {INSTALL[impl]} to compare"
            return None

    if "torch" in wanted and (mods := load("torch", "torch")):
        (torch,) = mods
        thunks["torch"] = bench.torch(torch)
        facts["torch_threads"] = torch.get_num_threads()
    if "jax" in wanted and (mods := load("jax", "jax")):
        (jax,) = mods
        if np_dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        f, args = bench.jax(jax, jnp)
        args = tuple(jnp.asarray(a) for a in args)
        t0 = time.perf_counter()
        compiled = jax.jit(f).lower(*args).compile()  # ahead of time: never inside a timed call
        facts["compile_s"]["jax"] = time.perf_counter() - t0
        try:
            m = compiled.memory_analysis()
            facts["jax_memory"] = int(m.temp_size_in_bytes + m.output_size_in_bytes)
        except Exception:  # noqa: BLE001 - not every jaxlib reports it
            pass
        thunks["jax"] = lambda: jax.block_until_ready(compiled(*args))
    if "autograd" in wanted and (mods := load("autograd", "autograd", "autograd.numpy")):
        autograd, anp = mods
        thunks["autograd"] = bench.autograd(autograd, anp)
    return thunks, facts, bench


def worker(args) -> dict[str, Any]:
    info = TASKS[args.worker][0]
    wanted = tuple(i for i in IMPLS if i not in args.skip)  # eingrad and closed always
    load_before = os.getloadavg()
    thunks, facts, bench = build_impls(args.worker, args.dtype, args.seed, wanted)

    # Check every implementation once against the closed form (this call is also a warm-up).
    want = [np.asarray(a, dtype=np.float64) for a in bench.closed()]
    tol = 1e-6 if args.dtype == "float64" else 2e-3
    errors, dtypes, failed, first = {}, {}, {}, {}
    lower_bound_ms = {}  # implementations cut off by --call-timeout: at least this long
    extra = [n for n in ("forward", "closed forward") if n in thunks]
    for name in extra + [n for n in IMPLS if n in thunks]:
        try:
            first[name], got = timed_call(thunks[name], args.call_timeout)
        except CallTimeout:
            failed[name] = f"one call took over {args.call_timeout:g} s (--call-timeout)"
            lower_bound_ms[name] = args.call_timeout * 1e3
            continue
        if name in extra:
            continue
        errors[name] = compare(got, want)
        dtypes[name] = str(to_numpy(got[0]).dtype)
        if not errors[name] <= tol:
            failed[name] = f"wrong result: max error {errors[name]:.2e} of the largest entry"
        del got
    if "eingrad" in failed:
        raise SystemExit(
            f"{args.worker}: eingrad failed the check against the closed form: {failed['eingrad']}"
        )
    for name in failed:
        thunks.pop(name, None)

    # Time.  A fast implementation gets one more warm-up call; then each one's
    # repeats (as many as --budget allows, within --min-repeats..--repeats) are
    # interleaved call by call, in rounds of alternating order (A B C, C B A,
    # ...), so that the machine's changing load hits every implementation alike.
    order = ["eingrad", *extra] + [n for n in IMPLS[1:] if n in thunks]
    plan: dict[str, int] = {}
    for name in order:
        dt = first[name]
        if dt < 0.25:
            dt, _ = timed_call(thunks[name], args.call_timeout)
        plan[name] = max(args.min_repeats, min(args.repeats, int(args.budget / max(dt, 1e-6))))
    times: dict[str, list[float]] = {name: [] for name in order}
    for r in range(max(plan.values())):
        for name in order if r % 2 == 0 else order[::-1]:
            if r >= plan[name]:
                continue
            try:
                dt, out = timed_call(thunks[name], args.call_timeout)
            except CallTimeout:
                continue  # left out; the others still run
            del out
            times[name].append(dt)
    for name in [n for n, t in times.items() if not t]:  # every timed call ran past --call-timeout
        failed[name] = f"its timed calls took over {args.call_timeout:g} s (--call-timeout)"
        lower_bound_ms[name] = args.call_timeout * 1e3
    times = {name: t for name, t in times.items() if t}

    # Peak memory of one call, numpy-based implementations (tracemalloc sees numpy's buffers).
    peaks = {}
    for name in ("eingrad", "forward", "closed", "autograd"):
        if name in times:
            peaks[name] = tracemalloc_peak(thunks[name])

    try:
        import threadpoolctl

        pools = [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "architecture", "num_threads")}
            for p in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        pools = None

    return {
        "task": info.key,
        "title": info.title,
        "kind": info.kind,
        "sizes": info.sizes,
        "dtype": args.dtype,
        "timings": {name: summary(t) for name, t in times.items()},
        "compile_s": facts["compile_s"],
        "derive_s": facts["derive_s"],
        "max_error": errors,
        "result_dtype": dtypes,
        "failed": failed,
        "skipped": facts["skipped"],
        "notes": facts["notes"],
        "tracemalloc_peak_bytes": peaks,
        "jax_xla_temp_plus_output_bytes": facts["jax_memory"],
        "torch_threads": facts.get("torch_threads"),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threadpools": pools,
        "lower_bound_ms": lower_bound_ms,
        "eingrad_source": facts["eingrad_source"],
        "loadavg": [load_before, os.getloadavg()],
    }


def rss_worker(args) -> dict[str, Any]:
    """ru_maxrss after one call minus before it.  Everything is built and
    warmed up first (imports, inputs, eingrad's code generation, one call), then
    the measured call runs in a forked child, whose ru_maxrss starts again from its current
    RSS (Linux), so nothing done while building can hide the call's peak.  The
    parent sets MALLOC_MMAP_THRESHOLD_ so that freed blocks are given back and
    not reused unseen.  Meant for the large arrays: small ones may not show."""
    thunks, facts, _ = build_impls(args.rss_worker, args.dtype, args.seed, (args.rss_impl,))
    fn = thunks.get(args.rss_impl)
    if fn is None:
        return {"error": facts["skipped"].get(args.rss_impl, "not available")}
    thunks.clear()
    try:
        timed_call(fn, args.call_timeout)  # warm-up here: lazy imports, code pages, caches are then shared
    except CallTimeout:
        return {"error": "timeout"}
    gc.collect()

    def measure() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        timed_call(fn, args.call_timeout)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024

    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: measure, report through the pipe, leave at once
            try:
                os.write(write, str(measure()).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            text = fh.read()
        os.waitpid(pid, 0)
        return {"maxrss_delta_bytes": int(text)} if text else {"error": "timeout"}
    except CallTimeout:
        return {"error": "timeout"}


# ====================================================================== driver


def eingrad_fingerprint() -> str:
    return source_fingerprint(os.path.join(SRC, "eingrad"))


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        **base_info(os.path.join(SRC, "eingrad")),
        "numpy": np.__version__,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_", "XLA_"))},
    }
    for mod in ("torch", "jax", "jaxlib", "autograd", "scipy", "opt_einsum"):
        if importlib.util.find_spec(mod) is not None:
            try:
                from importlib.metadata import version

                info[mod] = version(mod)
            except Exception:  # noqa: BLE001
                info[mod] = "?"
    try:
        import threadpoolctl

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for p in threadpoolctl.threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return info


def run_child(
    argv: list[str], timeout: float, extra_env: dict[str, str] | None = None
) -> tuple[dict | None, str]:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        path = fh.name
    env = dict(os.environ, **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *argv, "--out", path],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if proc.returncode != 0 or not text:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, " | ".join(tail) or f"exit code {proc.returncode}"
        return json.loads(text), ""
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    finally:
        os.unlink(path)


def fmt_ms(t: dict | None) -> str:
    if not t:
        return "—"
    m = t["median_ms"]
    return f"{m:.3f}" if m < 1 else f"{m:.2f}" if m < 100 else f"{m:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    if r < 0.1:
        return f"{r:.2g}"
    return f"{r:.2f}" if r < 10 else f"{r:.1f}" if r < 100 else f"{r:.0f}"


def fmt_mb(b: float | None) -> str:
    return "—" if b is None else f"{b / 2**20:.1f}"


def ratios(res: dict, stat: str = "median_ms") -> dict[str, Any]:
    """eingrad's time over each other's (and peak memory over the closed form's).

    An implementation cut off by --call-timeout counts with its lower bound,
    so its ratio is an upper bound: its key is listed in ``"upper_bounds"``."""
    t = {k: v[stat] for k, v in res["timings"].items()}
    bounds = res.get("lower_bound_ms", {})
    eg_ms = t.get("eingrad")
    peaks = res["tracemalloc_peak_bytes"]
    out: dict[str, Any] = {
        name: ratio(eg_ms, t.get(name, bounds.get(name))) for name in ("closed", "torch", "jax", "autograd")
    }
    out["grad/fwd"] = ratio(eg_ms, t.get("forward"))
    out["closed grad/fwd"] = ratio(t.get("closed"), t.get("closed forward"))
    out["memory"] = ratio(peaks.get("eingrad"), peaks.get("closed"))
    out["upper_bounds"] = [name for name in bounds if name not in t and out.get(name) is not None]
    return out


def targets(res: dict) -> tuple[list[str], list[str]]:
    """(required targets missed, aims missed) for one task, from issue 5."""
    r = ratios(res)
    miss, aim = [], []
    if res["kind"] == "grad":
        if r["closed"] is not None and r["closed"] > 1.10:
            miss.append("closed≤1.10")
        if r["grad/fwd"] is not None:
            if res["task"] == "affine-grad" and r["grad/fwd"] >= 1:
                miss.append("grad/fwd<1")
            elif r["grad/fwd"] > 3:
                miss.append("grad/fwd≤3")
        for other in ("torch", "jax"):
            if r[other] is not None and r[other] >= 1 and other not in r["upper_bounds"]:
                aim.append(f"<{other}")
    else:
        if r["closed"] is not None and r["closed"] > 1.15:
            miss.append("closed≤1.15")
        for other in ("torch", "jax"):
            if r[other] is not None and r[other] >= 1 and other not in r["upper_bounds"]:
                miss.append(f"<{other}")
    if r["memory"] is not None and r["memory"] > 1.2:
        miss.append("mem≤1.2")
    return miss, aim


def print_tables(results: list[dict], rss: dict) -> None:
    print("\nMedian time per call, ms (compile times apart, in s)")
    head = [
        "task",
        "eingrad",
        "closed",
        "torch",
        "jax",
        "autograd",
        "eg fwd",
        "eg compile s",
        "jax compile s",
    ]
    rows = []
    for res in results:
        t = dict(res["timings"])
        c = res["compile_s"]

        def cell(name, t=t, res=res):
            bound = res.get("lower_bound_ms", {}).get(name)
            return f">{bound:.0f}" if name not in t and bound else fmt_ms(t.get(name))

        rows.append(
            [
                res["task"],
                cell("eingrad"),
                cell("closed"),
                cell("torch"),
                cell("jax"),
                cell("autograd"),
                cell("forward"),
                f"{c['eingrad']:.2f}",
                f"{c['jax']:.2f}" if "jax" in c else "—",
            ]
        )
    table(head, rows)

    print(
        "\nRatios of medians (eingrad time / other time; '(of mins)': the same of the fastest calls; "
        "memory = eingrad peak / closed-form peak, tracemalloc)"
    )
    head = [
        "task",
        "/closed",
        "(of mins)",
        "/torch",
        "/jax",
        "/autograd",
        "grad/fwd",
        "eg MB",
        "closed MB",
        "mem",
        "misses",
    ]
    rows = []
    for res in results:
        r = ratios(res)
        p = res["tracemalloc_peak_bytes"]
        miss, aim = targets(res)
        text = ", ".join(miss) or "all met"
        if aim:
            text += " (aim: " + ", ".join(aim) + ")"

        def rcell(name, r=r):
            return ("<" if name in r["upper_bounds"] else "") + fmt_ratio(r[name])

        rows.append(
            [
                res["task"],
                rcell("closed"),
                fmt_ratio(ratios(res, "min_ms")["closed"]),
                rcell("torch"),
                rcell("jax"),
                rcell("autograd"),
                fmt_ratio(r["grad/fwd"]),
                fmt_mb(p.get("eingrad")),
                fmt_mb(p.get("closed")),
                fmt_ratio(r["memory"]),
                text,
            ]
        )
    table(head, rows)

    print(
        "\nPeak memory of one call, MB: tracemalloc (numpy-based code), XLA temp+output (jax)"
        + (", and ru_maxrss delta in a fresh process per implementation" if rss else "")
    )
    head = ["task", "eingrad", "closed", "autograd", "jax (XLA)"] + (
        ["rss: eingrad", "closed", "torch", "autograd"] if rss else []
    )
    rows = []
    for res in results:
        p = res["tracemalloc_peak_bytes"]
        row = [
            res["task"],
            fmt_mb(p.get("eingrad")),
            fmt_mb(p.get("closed")),
            fmt_mb(p.get("autograd")),
            fmt_mb(res.get("jax_xla_temp_plus_output_bytes")),
        ]
        if rss:
            per = rss.get(res["task"], {})
            row += [
                fmt_mb(per.get(i)) if isinstance(per.get(i), (int, float)) else str(per.get(i, "—"))
                for i in RSS_IMPLS
            ]
        rows.append(row)
    table(head, rows)

    for res in results:
        for why in res["skipped"].values():
            print(f"note {res['task']}: {why}")
        for note in res["notes"]:
            print(f"note {res['task']}: {note}")
        for name, why in res["failed"].items():
            print(f"note {res['task']}: {name} not timed: {why}")
        own = ratios(res)["closed grad/fwd"]
        if own is not None:
            print(f"note {res['task']}: the closed form's own gradient/forward ratio is {fmt_ratio(own)} "
                  f"(eingrad's: {fmt_ratio(ratios(res)['grad/fwd'])})")
        la = res["loadavg"]
        if max(la[0][0], la[1][0]) > 1.5:
            print(
                f"note {res['task']}: load average {la[0][0]:.1f} → {la[1][0]:.1f} while it ran (other work on "
                "the machine: numbers are noisier)"
            )


def table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    print(
        "  ".join(
            h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    )
    for row in rows:
        print(
            "  ".join(
                str(x).ljust(w) if k == 0 else str(x).rjust(w)
                for k, (x, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--tasks",
        nargs="*",
        metavar="KEY",
        help="run the tasks whose key contains any of these (default all; --list shows them)",
    )
    ap.add_argument("--list", action="store_true", help="list the tasks and exit")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    ap.add_argument("--skip", nargs="*", default=[], choices=IMPLS[2:], help="competitors to leave out")
    ap.add_argument(
        "--repeats", type=int, default=50, help="most timed calls per implementation (default 50)"
    )
    ap.add_argument("--min-repeats", type=int, default=5, help="fewest timed calls (default 5)")
    ap.add_argument(
        "--budget",
        type=float,
        default=1.5,
        help="seconds of timed calls per implementation and task (default 1.5)",
    )
    ap.add_argument(
        "--call-timeout",
        type=float,
        default=5.0,
        help="an implementation one call of which takes longer is reported as '>' that, not timed "
        "(default 5 s)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="threads for every library: OPENBLAS/OMP/MKL_NUM_THREADS=N; for N=1 each task process is "
        "also pinned to one core, which is what keeps XLA to one thread (default 1; 0 leaves each "
        "library its own choice)",
    )
    ap.add_argument(
        "--task-timeout", type=float, default=600.0, help="seconds per task process (default 600)"
    )
    ap.add_argument(
        "--rss",
        action="store_true",
        help="also measure ru_maxrss deltas, one fresh process per task and implementation (slower)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rss-worker", help=argparse.SUPPRESS)
    ap.add_argument("--rss-impl", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker or args.rss_worker:
        if args.threads == 1 and hasattr(os, "sched_setaffinity"):
            # One core for the task process: XLA's CPU runtime sizes its thread pool by the
            # cores it may run on, whatever XLA_FLAGS say (jax used two cores here before).
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        result = worker(args) if args.worker else rss_worker(args)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        return 0

    if args.list:
        for key, (info, _) in TASKS.items():
            print(f"{key:24} {info.sizes:26} {info.title}")
        return 0

    keys = [k for k in TASKS if not args.tasks or any(s in k for s in args.tasks)]
    if args.threads:  # inherited by every task process
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        if args.threads == 1:
            os.environ["XLA_FLAGS"] = (
                os.environ.get("XLA_FLAGS", "")
                + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()
    if not keys:
        ap.error(f"no task matches {args.tasks}; the tasks are {', '.join(TASKS)}")
    info = machine()
    print(
        f"{info['cpu']} · {info['nproc']} CPUs · Python {info['python']} · numpy {info['numpy']} · "
        f"eingrad source {info['eingrad_source']} · {args.dtype}"
    )
    blas = info.get("blas")
    if blas:
        print("BLAS: " + ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in blas))
    print(
        "threads per library in the task processes: "
        + (str(args.threads) if args.threads else "each library's default")
    )
    if info["env"]:
        print("environment: " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    for impl, mod in COMPETITORS.items():
        if impl in args.skip:
            print(f"{impl}: skipped (--skip)")
        elif mod not in info:
            print(
                f"{impl}: not installed, its column is skipped ({INSTALL[impl]}; benchmark-only, not a dependency)"
            )
        else:
            print(f"{impl} {info[mod]}")
    print(
        f"timing: warm-up, then the median of {args.min_repeats}..{args.repeats} calls "
        f"({args.budget:g} s per implementation), one process per task\n"
    )

    passthrough = [
        "--dtype",
        args.dtype,
        "--seed",
        str(args.seed),
        "--repeats",
        str(args.repeats),
        "--min-repeats",
        str(args.min_repeats),
        "--budget",
        str(args.budget),
        "--call-timeout",
        str(args.call_timeout),
    ]
    if args.skip:
        passthrough += ["--skip", *args.skip]
    results, errors = [], {}
    rss: dict[str, dict[str, Any]] = {}
    for key in keys:
        t0 = time.perf_counter()
        res, err = run_child(["--worker", key, *passthrough], args.task_timeout)
        if res is None:
            errors[key] = err
            print(f"{key:24} FAILED: {err}")
            continue
        results.append(res)
        t = res["timings"]
        print(
            f"{key:24} eingrad {fmt_ms(t.get('eingrad'))} ms · closed {fmt_ms(t.get('closed'))} ms "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if args.rss:
            rss[key] = {}
            for impl in RSS_IMPLS:
                if impl in args.skip:
                    continue
                if impl in res["failed"]:  # timed out or wrong: not worth another try
                    rss[key][impl] = "n/a"
                    continue
                # glibc: every block of 64 KiB or more gets its own mapping, given back when freed,
                # so RSS follows what is live (else freed heap is reused and a peak can hide).
                out, err = run_child(
                    ["--rss-worker", key, "--rss-impl", impl, *passthrough],
                    args.task_timeout,
                    {"MALLOC_MMAP_THRESHOLD_": "65536"},
                )
                rss[key][impl] = (out or {}).get("maxrss_delta_bytes", (out or {}).get("error", err))

    if results:
        print_tables(results, rss)
    for key, err in errors.items():
        print(f"task {key} failed: {err}")
    if args.json:
        doc = {
            "machine": info,
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("worker", "rss_worker", "rss_impl", "out")
            },
            "results": results,
            "rss_maxrss_delta_bytes": rss,
            "errors": errors,
        }
        for res in doc["results"]:
            res["ratios"] = ratios(res)
            res["ratios_of_min_times"] = ratios(res, "min_ms")
            res["targets_missed"], res["aims_missed"] = targets(res)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        print(f"\nwrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, _alarm)
    sys.exit(main())

#!/usr/bin/env python
"""Compiled recurrences (LANGUAGE.md §12): an RNN's gradient, derived and compiled once.

The program::

    s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)
    L = sum_{t,n,h}((s[t,n,h] - y[t,n,h])^2)

and its gradient in W, U and b (``eg.grad``: a reverse recurrence for dL/ds, then the
parameter gradients summed over every step).

(a) **Derivation and code generation do not depend on |t|.**  In a fresh process per
    run: ``eg.grad`` + ``eg.compile`` (derive), the first call (code generation, timed
    inside it, + one run), a second call (the run alone); at |t| = 10 and |t| = 2000.
    Then one compiled function called at both lengths: its cache holds one code.

(b) **The compiled gradient against hand-written and autodiff code** at |t| = 200,
    batch 32, d = 64, h = 128, float64 and float32, CPU: eingrad (numpy backend, and
    its torch and jax backends), a hand-written numpy BPTT (forward loop, backward
    loop, parameter gradients as three matrix products over every step), ``jax.jit``
    of ``jax.grad`` over ``lax.scan``, and ``torch.autograd``.  Every implementation is
    checked against the hand-written one, warmed up, then timed: the median of
    ``--repeats`` rounds, each calling every implementation once in turn (CPU time of the
    process, milliseconds: BLAS, torch and XLA are limited to one thread and the process
    to one core, so CPU time is the work done, not the waits of a shared machine), and the
    median over rounds of each one's time over the hand-written one's in the same round.

Run from the repository root::

    PYTHONPATH=src python benchmarks/recurrence.py [--json benchmarks/recurrence-results.json]

Nothing here is a test: no time is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import numpy as np  # noqa: E402

PROGRAM = """s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)
L = sum_{t,n,h}((s[t,n,h] - y[t,n,h])^2)"""
WRT = ["W", "U", "b"]
OUTPUTS = ["dLdW", "dLdU", "dLdb"]


def arrays(T, N=32, D=64, H=128, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    a = {"x": rng.standard_normal((T, N, D)), "W": rng.standard_normal((D, H)) / np.sqrt(D),
         "U": rng.standard_normal((H, H)) / np.sqrt(H), "b": 0.1 * rng.standard_normal(H),
         "y": 0.5 * rng.standard_normal((T, N, H))}
    return {k: v.astype(dtype) for k, v in a.items()}


# ---------------------------------------------------------------- hand-written
def bptt(x, W, U, b, y):
    """Backpropagation through time as an expert writes it in numpy."""
    T, N, D = x.shape
    H = W.shape[1]
    X = x.reshape(T * N, D)
    pre = (X @ W).reshape(T, N, H)
    pre += b
    s = np.empty_like(pre)
    prev = np.zeros((N, H), dtype=pre.dtype)
    for t in range(T):
        z = prev @ U
        z += pre[t]
        prev = np.tanh(z, out=s[t])
    dz = np.empty_like(s)
    carry = np.zeros((N, H), dtype=s.dtype)  # dL/ds[t] from step t+1
    for t in range(T - 1, -1, -1):
        g = s[t] - y[t]
        g *= 2.0
        g += carry
        st = s[t]
        g *= 1.0 - st * st
        dz[t] = g
        carry = g @ U.T
    Z = dz.reshape(T * N, H)
    dW = X.T @ Z
    dU = s[:-1].reshape(-1, H).T @ dz[1:].reshape(-1, H)
    db = Z.sum(axis=0)
    return dW, dU, db


# ---------------------------------------------------------------- (a) derivation and generation
def derive_once(T: int) -> dict:
    import eingrad as eg
    from eingrad.codegen.compile import CompiledFunction

    a = arrays(T, N=32, D=64, H=128)
    spent = []
    build = CompiledFunction._build

    def timed(self, *args, **kwargs):  # code generation: the time in _build
        t = time.perf_counter()
        try:
            return build(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    CompiledFunction._build = timed
    t0 = time.perf_counter()
    g = eg.grad(eg.parse(PROGRAM), wrt=WRT)
    fn = eg.compile(g, outputs=OUTPUTS)
    t1 = time.perf_counter()
    fn(**a)
    t2 = time.perf_counter()
    fn(**a)
    t3 = time.perf_counter()
    return {"T": T, "derive_ms": (t1 - t0) * 1e3, "first_call_ms": (t2 - t1) * 1e3,
            "run_ms": (t3 - t2) * 1e3, "generate_ms": sum(spent) * 1e3, "builds": len(spent)}


def derivation(repeats: int) -> dict:
    out = {}
    for T in (10, 2000):
        runs = []
        for _ in range(repeats):
            proc = subprocess.run([sys.executable, __file__, "--derive-worker", str(T)], capture_output=True,
                                  text=True, check=True, env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")})
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        out[T] = {k: statistics.median(r[k] for r in runs) for k in ("derive_ms", "generate_ms", "run_ms",
                                                                      "first_call_ms", "builds")}
        out[T]["runs"] = runs
    # one compiled function, called at both lengths: one code in its cache
    import eingrad as eg

    fn = eg.compile(eg.grad(eg.parse(PROGRAM), wrt=WRT), outputs=OUTPUTS)
    for T in (10, 2000):
        fn(**arrays(T, N=32, D=64, H=128))
    out["codes_in_cache_after_both"] = len(fn._cache)
    return out


# ---------------------------------------------------------------- (b) run time
def interleaved(impls: dict, repeats: int, base: str, warmup: int = 3) -> dict:
    """Each implementation called once per round, in turn (a load that comes and goes on a
    shared machine weighs on all alike): the median CPU ms of each, and the median over
    rounds of its time over ``base``'s in the same round."""
    for fn in impls.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, fn in impls.items():
            t = time.process_time()
            fn()
            samples[name].append((time.process_time() - t) * 1e3)
    out = {}
    for name, times in samples.items():
        ratios = [a / b for a, b in zip(times, samples[base], strict=True)]
        out[name] = {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                     "ratio_to_hand_written": statistics.median(ratios), "samples_ms": times}
    return out


def runtime(dtype: str, repeats: int, skip: set[str]) -> dict:
    import eingrad as eg

    a = arrays(200, dtype=dtype)
    want = bptt(**a)
    tol = 1e-8 if dtype == "float64" else 2e-3
    impls: dict[str, object] = {}
    extra: dict[str, float] = {}

    def check(name, got):
        for w, g_ in zip(want, got, strict=True):
            err = float(np.max(np.abs(np.asarray(g_, dtype=np.float64) - w)) / (np.max(np.abs(w)) + 1e-30))
            if err > tol:
                raise AssertionError(f"{name}: relative error {err:.2e}")

    impls["hand-written numpy BPTT"] = lambda: bptt(**a)
    grad = eg.grad(eg.parse(PROGRAM), wrt=WRT)
    fn = eg.compile(grad, outputs=OUTPUTS)
    out = fn(**a)
    check("eingrad", [out[k] for k in OUTPUTS])
    impls["eingrad numpy"] = lambda: fn(**a)
    if "torch" not in skip:
        import torch

        torch.set_num_threads(1)
        ta = {k: torch.from_numpy(v) for k, v in a.items()}
        tfn = eg.compile(grad, backend="torch", outputs=OUTPUTS)
        out = tfn(**ta)
        check("eingrad torch", [out[k].numpy() for k in OUTPUTS])
        impls["eingrad torch"] = lambda: tfn(**ta)

        def torch_autograd():
            W, U, b = (ta[k].detach().requires_grad_(True) for k in ("W", "U", "b"))
            pre = ta["x"] @ W + b
            h = torch.zeros(pre.shape[1:], dtype=pre.dtype)
            hs = []
            for t in range(pre.shape[0]):
                h = torch.tanh(pre[t] + h @ U)
                hs.append(h)
            L = ((torch.stack(hs) - ta["y"]) ** 2).sum()
            return torch.autograd.grad(L, (W, U, b))

        check("torch.autograd", [g_.numpy() for g_ in torch_autograd()])
        impls["torch.autograd"] = torch_autograd
    if "jax" not in skip:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", dtype == "float64")
        ja = {k: jnp.asarray(v) for k, v in a.items()}

        def loss(W, U, b, x, y):
            pre = x @ W + b

            def step(h, p):
                h = jnp.tanh(p + h @ U)
                return h, h

            _, s = jax.lax.scan(step, jnp.zeros(pre.shape[1:], pre.dtype), pre)
            return jnp.sum((s - y) ** 2)

        jg = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        t0 = time.perf_counter()
        jax.block_until_ready(jg(ja["W"], ja["U"], ja["b"], ja["x"], ja["y"]))
        extra["jax.jit(jax.grad) first call (trace + XLA compile), ms"] = (time.perf_counter() - t0) * 1e3
        check("jax", [np.asarray(g_) for g_ in jg(ja["W"], ja["U"], ja["b"], ja["x"], ja["y"])])
        impls["jax.jit(jax.grad) over lax.scan"] = lambda: jax.block_until_ready(
            jg(ja["W"], ja["U"], ja["b"], ja["x"], ja["y"]))
        jfn = eg.compile(grad, backend="jax", outputs=OUTPUTS)
        t0 = time.perf_counter()
        out = jfn(**ja)
        jax.block_until_ready(out)
        extra["eingrad jax first call (generate + trace + XLA compile), ms"] = (time.perf_counter() - t0) * 1e3
        check("eingrad jax", [np.asarray(out[k]) for k in OUTPUTS])
        impls["eingrad jax (lax.scan)"] = lambda: jax.block_until_ready(jfn(**ja))
    results = interleaved(impls, repeats, "hand-written numpy BPTT")
    results.update({name: {"value": v} for name, v in extra.items()})
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--derive-repeats", type=int, default=3)
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--skip", nargs="*", default=[], help="torch, jax")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--derive-worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.derive_worker:
        print(json.dumps(derive_once(args.derive_worker)))
        return 0
    from machine_info import base_info

    info = base_info(str(HERE.parent / "src" / "eingrad"))
    print(f"{info.get('cpu')} · one thread · eingrad source {info.get('eingrad_source')}")
    report = {"machine": info, "derivation": derivation(args.derive_repeats), "runtime": {}}
    print("\n(a) derive (eg.grad + eg.compile), generate (time in code generation), run; medians, ms")
    for T in (10, 2000):
        r = report["derivation"][T]
        print(f"  |t| = {T:5}: derive {r['derive_ms']:8.1f}  generate {r['generate_ms']:8.1f}  run {r['run_ms']:9.1f}")
    print(f"  one compiled function called at |t| = 10 and 2000: {report['derivation']['codes_in_cache_after_both']}"
          " code(s) in its cache")
    for dtype in args.dtypes:
        res = runtime(dtype, args.repeats, set(args.skip))
        report["runtime"][dtype] = res
        print(f"\n(b) RNN gradient, |t| = 200, batch 32, d = 64, h = 128, {dtype}: median CPU ms, "
              "and the median of per-round ratios to hand-written")
        for name, r in res.items():
            if "value" in r:
                print(f"  {name:60} {r['value']:9.1f}")
            else:
                print(f"  {name:36} {r['median_ms']:9.2f}   {r['ratio_to_hand_written']:5.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

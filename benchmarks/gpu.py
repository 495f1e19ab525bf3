"""Compiled code on a GPU (issue 5): eingrad's torch backend against a hand-written torch
closed form, ``torch.autograd`` / ``torch.func.hessian`` and ``jax.jit``, on the tasks of
``compiled.py``, in one process and a few minutes.

    PYTHONPATH=src python benchmarks/gpu.py                       # CUDA if torch sees a GPU
    PYTHONPATH=src python benchmarks/gpu.py --device cpu --tasks rnn affine   # a dry run here

Every implementation is checked against the numpy closed form before it is timed (the
first call is also a warm-up).  Each timed call ends with ``torch.cuda.synchronize()``
(``jax.block_until_ready``), so a time is the work, not the launch.  Medians over calls
interleaved in alternating order.  Targets printed per task: eingrad (torch backend)
within 1.1× of the torch closed form; on Hessians, faster than ``torch.func.hessian`` and
``jax.jit(jax.hessian)``.  ``--json`` writes every number, with the card's name.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import compiled as tasks  # noqa: E402

# ---------------------------------------------------------------- torch closed forms
# The numpy closed forms of compiled.py, written with torch: what an expert writes.


def closed_affine(t, torch):
    return [t["X"].T @ t["dLdY"], t["dLdY"].sum(dim=0)]


def closed_quad_grad(t, torch):
    return [t["A"] @ t["x"] + t["x"] @ t["A"]]


def closed_quad_hess(t, torch):
    return [t["A"] + t["A"].T]


def closed_logreg_grad(t, torch):
    X, y, w, lam = t["X"], t["y"], t["w"], t["lam"]
    s = torch.sigmoid(-y * (X @ w))
    return [lam * w - X.T @ (y * s)]


def closed_logreg_hess(t, torch):
    X, y, w, lam = t["X"], t["y"], t["w"], t["lam"]
    p = torch.sigmoid(-y * (X @ w))
    s = p * (1 - p) * (y * y)
    H = X.T @ (X * s[:, None])
    H.diagonal().add_(lam)
    return [H]


def closed_mf_grad(t, torch):
    X, U, V = t["X"], t["U"], t["V"]
    R = U @ V.T
    R -= X
    return [2.0 * (R @ V), 2.0 * (R.T @ U)]


def closed_mf_hess(t, torch):
    U, V = t["U"], t["V"]
    n, k = U.shape
    H = torch.zeros((n, k, n, k), dtype=U.dtype, device=U.device)
    H.diagonal(dim1=0, dim2=2).copy_((2.0 * (V.T @ V))[:, :, None].expand(k, k, n))
    return [H]


def closed_mlp(t, torch):
    X, W, b, V, c, Y = (t[k] for k in ("X", "W", "b", "V", "c", "Y"))
    H = torch.relu_(torch.addmm(b, X, W))
    G = torch.softmax(torch.addmm(c, H, V), dim=1)
    G -= Y
    dA = G @ V.T
    dA *= H > 0
    return [X.T @ dA, dA.sum(dim=0), H.T @ G, G.sum(dim=0)]


def closed_rnn(t, torch):
    X, U, W, b, T = (t[k] for k in ("X", "U", "W", "b", "T"))
    steps, n, d = X.shape
    h = U.shape[1]
    Hs = (X.reshape(steps * n, d) @ U).reshape(steps, n, h)
    Hs += b
    torch.tanh_(Hs[0])
    for k in range(1, steps):
        Hs[k] += Hs[k - 1] @ W
        torch.tanh_(Hs[k])
    dA = torch.empty_like(Hs)
    g = Hs[-1] - T
    for k in range(steps - 1, -1, -1):
        torch.mul(g, 1 - Hs[k] * Hs[k], out=dA[k])
        if k:
            g = dA[k] @ W.T
    dU = X.reshape(steps * n, d).T @ dA.reshape(steps * n, h)
    dW = Hs[:-1].reshape(-1, h).T @ dA[1:].reshape(-1, h)
    return [dU, dW, dA.sum(dim=(0, 1))]


CLOSED: dict[str, Callable] = {
    "affine-grad": closed_affine,
    "quad-grad": closed_quad_grad,
    "quad-hess": closed_quad_hess,
    "logreg-grad": closed_logreg_grad,
    "logreg-hess": closed_logreg_hess,
    "mf-grad": closed_mf_grad,
    "mf-hess": closed_mf_hess,
    "mlp-grad": closed_mlp,
    "rnn-grad": closed_rnn,
}


def closed_for(key: str) -> Callable:
    return next(fn for prefix, fn in CLOSED.items() if key.startswith(prefix))


# ---------------------------------------------------------------- timing


def run_task(key: str, args, eg, torch, jax) -> dict[str, Any]:
    info, build = tasks.TASKS[key]
    bench = build(eg, args.dtype, np.random.default_rng(args.seed))
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def on_device(a: np.ndarray):
        return torch.from_numpy(a if a.flags.c_contiguous else np.ascontiguousarray(a)).to(device)

    impls: dict[str, Callable[[], list]] = {}
    facts: dict[str, Any] = {"task": key, "kind": info.kind, "sizes": info.sizes, "skipped": {}}

    outputs = bench.outputs if isinstance(bench.eg_obj, eg.Program) else None
    fn = eg.compile(bench.eg_obj, backend="torch", outputs=outputs)
    eg_inputs = {k: on_device(v) for k, v in bench.eg_inputs.items()}
    if outputs:
        impls["eingrad"] = lambda: (lambda out: [out[k] for k in outputs])(fn(eg_inputs))
    else:
        impls["eingrad"] = lambda: [fn(eg_inputs)]
    data = {k: on_device(v) for k, v in bench.data.items()}
    closed = closed_for(key)
    impls["torch closed"] = lambda: closed(data, torch)
    tasks.TORCH_DEVICE = args.device
    impls["torch.func" if info.kind == "hess" else "torch.autograd"] = bench.torch(torch)
    if jax is not None:
        jnp = jax.numpy
        f, jargs = bench.jax(jax, jnp)
        jargs = tuple(jnp.asarray(a) for a in jargs)
        start = time.perf_counter()
        compiled = jax.jit(f).lower(*jargs).compile()
        facts["jax_compile_s"] = time.perf_counter() - start
        impls["jax.jit"] = lambda: jax.block_until_ready(compiled(*jargs))
        facts["jax_device"] = str(jargs[0].devices().pop()) if hasattr(jargs[0], "devices") else None

    # Checked against the numpy closed form (float64), the first call also a warm-up.
    want = [np.asarray(a, dtype=np.float64) for a in bench.closed()]
    tol = 1e-6 if args.dtype == "float64" else 2e-3
    errors = {}
    for name, impl in list(impls.items()):
        try:
            got = impl()
            sync()
        except Exception as err:  # noqa: BLE001 - a competitor that fails is reported, not fatal
            facts["skipped"][name] = f"{type(err).__name__}: {err}"[:300]
            del impls[name]
            continue
        errors[name] = tasks.compare(got, want)
        if not errors[name] <= tol:
            facts["skipped"][name] = f"wrong result: max error {errors[name]:.2e}"
            del impls[name]
    facts["max_error"] = errors

    times: dict[str, list[float]] = {name: [] for name in impls}
    order = list(impls)
    deadline = time.perf_counter() + args.budget * len(order)
    for r in range(args.repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            out = impls[name]()
            sync()
            times[name].append((time.perf_counter() - start) * 1e3)
            del out
        if r + 1 >= args.min_repeats and time.perf_counter() > deadline:
            break
    facts["median_ms"] = {name: statistics.median(t) for name, t in times.items()}
    facts["repeats"] = {name: len(t) for name, t in times.items()}
    return facts


def verdict(res: dict[str, Any]) -> str:
    t = res["median_ms"]
    eg_ms = t.get("eingrad")
    misses = []
    if eg_ms and t.get("torch closed") and eg_ms > 1.1 * t["torch closed"]:
        misses.append("≤1.1× torch closed")
    if res["kind"] == "hess":
        for other in ("torch.func", "jax.jit"):
            if eg_ms and t.get(other) and eg_ms >= t[other]:
                misses.append(f"<{other}")
    return ", ".join(misses) or "met"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--tasks", nargs="*", help="task keys containing any of these (default all)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--min-repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per implementation")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every number to this file")
    args = ap.parse_args(argv)

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    jax = None
    if not args.no_jax:
        try:
            import jax

            if args.dtype == "float64":
                jax.config.update("jax_enable_x64", True)
        except ImportError:
            jax = None
    eg = tasks.import_eingrad()
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    keys = [k for k in tasks.TASKS if not args.tasks or any(s in k for s in args.tasks)]
    print(f"device {args.device} ({card}) · torch {torch.__version__} · "
          f"jax {getattr(jax, '__version__', '—')} · {args.dtype}", flush=True)
    results = []
    for key in keys:
        res = run_task(key, args, eg, torch, jax)
        results.append(res)
        t = res["median_ms"]
        cells = "  ".join(f"{name} {ms:.3g} ms" for name, ms in t.items())
        ratio = t["eingrad"] / t["torch closed"] if "torch closed" in t and "eingrad" in t else float("nan")
        print(f"{key:24} {cells}  eingrad/closed {ratio:.2f}  [{verdict(res)}]", flush=True)
        for name, why in res["skipped"].items():
            print(f"    {name} left out: {why}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": args.device, "card": card, "torch": torch.__version__,
                       "dtype": args.dtype, "results": results}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

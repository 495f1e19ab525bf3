"""Fixed cost of one call on a tiny problem (issue 15, call overhead).

The gradient of L2-regularised logistic regression at n = 8, d = 4, where the
arithmetic is negligible and what is measured is the cost of a call:

- eingrad, numpy backend, every input an array (``lam`` a 0-d array);
- eingrad, numpy backend, ``lam`` a Python float (the issue's slow path);
- a hand-written numpy function (the closed form);
- torch.autograd (forward + ``backward``) on tiny tensors;
- ``jax.jit(jax.grad(...))`` and eingrad's jax backend (already jitted).

Run from the repository root::

    PYTHONPATH=src python benchmarks/overhead.py [--json benchmarks/overhead-results.json]

Medians of ``--repeats`` batches of ``--number`` calls each, in microseconds per call.
Nothing here is a test: no time is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import numpy as np  # noqa: E402

import eingrad as eg  # noqa: E402

PROGRAM = "z_n = X_nd w_d; L = sum_n(softplus(-y_n z_n)) + 0.5 lam w_d w_d"


def per_call(fn, number: int, repeats: int) -> dict:
    for _ in range(max(10, number // 10)):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t) / number * 1e6)
    samples.sort()
    return {"median_us": statistics.median(samples), "min_us": samples[0], "max_us": samples[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    n, d = 8, 4
    X = rng.normal(size=(n, d))
    y = np.sign(rng.normal(size=n))
    w = rng.normal(size=d)
    lam = 0.1
    g = eg.grad(PROGRAM, wrt=["w"])
    fn = eg.compile(g, outputs=["dLdw"])
    lam0 = np.asarray(lam)

    def closed_form():
        z = X @ w
        s = 1.0 / (1.0 + np.exp(y * z))  # sigmoid(-y z)
        return {"dLdw": X.T @ (-y * s) + lam * w}

    expected = closed_form()["dLdw"]
    assert np.allclose(fn(X=X, y=y, w=w, lam=lam0)["dLdw"], expected)
    assert np.allclose(fn(X=X, y=y, w=w, lam=lam)["dLdw"], expected)

    rows = {}
    rows["eingrad numpy, all arrays"] = per_call(lambda: fn(X=X, y=y, w=w, lam=lam0), args.number, args.repeats)
    rows["eingrad numpy, lam a Python float"] = per_call(lambda: fn(X=X, y=y, w=w, lam=lam), args.number, args.repeats)
    rows["numpy closed form"] = per_call(closed_form, args.number, args.repeats)

    try:
        import torch

        tX, ty = torch.from_numpy(X), torch.from_numpy(y)

        def torch_grad():
            tw = torch.from_numpy(w).requires_grad_(True)
            loss = torch.nn.functional.softplus(-ty * (tX @ tw)).sum() + 0.5 * lam * (tw * tw).sum()
            loss.backward()
            return tw.grad

        assert np.allclose(torch_grad().numpy(), expected)
        rows["torch.autograd"] = per_call(torch_grad, args.number // 4, args.repeats)
    except ImportError:
        print("torch not installed: skipped", file=sys.stderr)

    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        jX, jy, jw = jnp.asarray(X), jnp.asarray(y), jnp.asarray(w)

        def loss(v):
            return jnp.sum(jax.nn.softplus(-jy * (jX @ v))) + 0.5 * lam * jnp.sum(v * v)

        jg = jax.jit(jax.grad(loss))
        assert np.allclose(np.asarray(jg(jw)), expected)
        rows["jax.jit(jax.grad)"] = per_call(lambda: jg(jw).block_until_ready(), args.number // 4, args.repeats)
        jfn = eg.compile(g, backend="jax", outputs=["dLdw"])
        t = time.perf_counter()
        jfn(X=jX, y=jy, w=jw, lam=lam)["dLdw"].block_until_ready()
        rows["eingrad jax backend (jitted), first call incl. compile"] = {"median_us": (time.perf_counter() - t) * 1e6}
        rows["eingrad jax backend (jitted)"] = per_call(
            lambda: jfn(X=jX, y=jy, w=jw, lam=lam)["dLdw"].block_until_ready(), args.number // 4, args.repeats
        )
    except ImportError:
        print("jax not installed: skipped", file=sys.stderr)

    base = rows["eingrad numpy, all arrays"]["median_us"]
    print(f"{'call':58s} {'µs/call':>9s} {'/ all-array':>12s}")
    for name, row in rows.items():
        print(f"{name:58s} {row['median_us']:9.1f} {row['median_us'] / base:12.2f}")
    if args.json:
        machine = {"python": sys.version.split()[0], "numpy": np.__version__, "nproc": os.cpu_count(),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        args.json.write_text(json.dumps({"program": PROGRAM, "n": n, "d": d, "machine": machine, "rows": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Convolution gradients (issue 12): eingrad's compiled code (index arithmetic lowered to
strided windows and slice scatters, codegen/conv.py) against the closed form an expert
writes in numpy, torch.autograd and jax.jit(jax.grad), measured side by side in one run.

- 1-D convolution layer, gradient in the input and the kernel (n = 32, c = 16, o = 32,
  |X| = 512, k = 7), a linear loss in the output (so dLdY is the given G)::

      Y[n,o,i] = X[n, c, i+k] K[o, c, k]
      L = sum_n(sum_o(sum_i(Y[n,o,i] G[n,o,i])))

  numpy closed form: ``W = sliding_window_view(X, k)``, ``dLdK = tensordot(G, W)`` over
  (n, i); ``dLdX`` the windows of G padded by k - 1 on both sides, ``tensordot`` with the
  flipped kernel (the transposed convolution).  torch: ``conv1d`` and autograd.
- 2-D convolution layer (n = 32, c = 16, o = 32, 32 x 32, 3 x 3), the same loss: eingrad's
  torch backend against ``conv2d`` with torch.autograd (and eingrad's numpy backend).

Every implementation's result is checked against the reference (the numpy closed form;
torch.autograd for the 2-D layer) first.  Run from the repository root::

    PYTHONPATH=src python benchmarks/conv.py [--repeats 15] [--clock cpu] [--json benchmarks/conv-results.json]

Medians (and minima) of ``--repeats`` calls after warm-up, in milliseconds, timed
interleaved call by call; ratios are against the fastest implementation of the task in the
same run.  ``--clock cpu`` (the default) counts the process's CPU time (all its threads),
which the other processes on a shared machine hardly change.  Nothing here is a test.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import base_info  # noqa: E402

CONV1 = """
Y[n,o,i] = X[n, c, i+k] K[o, c, k]
L = sum_n(sum_o(sum_i(Y[n,o,i] G[n,o,i])))
"""
CONV2 = """
Y[n,o,i,j] = X[n, c, i+k, j+l] K[o, c, k, l]
L = sum_n(sum_o(sum_i(sum_j(Y[n,o,i,j] G[n,o,i,j]))))
"""


def _flat(*arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def conv1_task(n, c, o, length, k, dtype):
    rng = np.random.default_rng(0)
    size = length - k + 1
    X = rng.standard_normal((n, c, length)).astype(dtype)
    K = rng.standard_normal((o, c, k)).astype(dtype)
    G = rng.standard_normal((n, o, size)).astype(dtype)
    window = np.lib.stride_tricks.sliding_window_view

    def closed_form():
        dK = np.tensordot(G, window(X, k, axis=2), axes=([0, 2], [0, 2]))  # (o, c, k)
        padded = np.pad(G, ((0, 0), (0, 0), (k - 1, k - 1)))
        dX = np.tensordot(window(padded, k, axis=2), K[:, :, ::-1], axes=([1, 3], [0, 2]))  # (n, j, c)
        return _flat(dX.transpose(0, 2, 1), dK)

    compiled = eg.compile(eg.grad(eg.parse(CONV1), wrt=["X", "K"]), outputs=["dLdX", "dLdK"])

    def ours():
        out = compiled(X=X, K=K, G=G)
        return _flat(out["dLdX"], out["dLdK"])

    impls = {"numpy closed form": closed_form, "eingrad (numpy)": ours}
    try:
        import torch

        torch_compiled = eg.compile(eg.grad(eg.parse(CONV1), wrt=["X", "K"]), backend="torch",
                                    outputs=["dLdX", "dLdK"])
        tX, tK, tG = (torch.from_numpy(a) for a in (X, K, G))

        def torch_autograd():
            x, w = tX.clone().requires_grad_(True), tK.clone().requires_grad_(True)
            (torch.nn.functional.conv1d(x, w) * tG).sum().backward()
            return _flat(x.grad.numpy(), w.grad.numpy())

        def ours_torch():
            out = torch_compiled(X=tX, K=tK, G=tG)
            return _flat(out["dLdX"].numpy(), out["dLdK"].numpy())

        impls["torch.autograd (conv1d)"] = torch_autograd
        impls["eingrad (torch)"] = ours_torch
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        jnp = jax.numpy

        def loss(x, w, g):
            y = jax.lax.conv_general_dilated(x, w, (1,), "VALID", dimension_numbers=("NCH", "OIH", "NCH"))
            return jnp.sum(y * g)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        jX, jK, jG = (jnp.asarray(a) for a in (X, K, G))

        def jax_grad():
            dX, dK = grad(jX, jK, jG)
            return _flat(np.asarray(dX.block_until_ready()), np.asarray(dK.block_until_ready()))

        impls["jax.jit(jax.grad) (conv)"] = jax_grad
    except ImportError:
        pass
    return impls, "numpy closed form", compiled


def conv2_task(n, c, o, side, k, dtype):
    import torch

    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, c, side, side)).astype(dtype)
    K = rng.standard_normal((o, c, k, k)).astype(dtype)
    G = rng.standard_normal((n, o, side - k + 1, side - k + 1)).astype(dtype)
    tX, tK, tG = (torch.from_numpy(a) for a in (X, K, G))
    program = eg.grad(eg.parse(CONV2), wrt=["X", "K"])
    compiled = eg.compile(program, backend="torch", outputs=["dLdX", "dLdK"])
    numpy_compiled = eg.compile(program, outputs=["dLdX", "dLdK"])

    def torch_autograd():
        x, w = tX.clone().requires_grad_(True), tK.clone().requires_grad_(True)
        (torch.nn.functional.conv2d(x, w) * tG).sum().backward()
        return _flat(x.grad.numpy(), w.grad.numpy())

    def ours():
        out = compiled(X=tX, K=tK, G=tG)
        return _flat(out["dLdX"].numpy(), out["dLdK"].numpy())

    def ours_numpy():
        out = numpy_compiled(X=X, K=K, G=G)
        return _flat(out["dLdX"], out["dLdK"])

    impls = {"torch.autograd (conv2d)": torch_autograd, "eingrad (torch)": ours, "eingrad (numpy)": ours_numpy}
    return impls, "torch.autograd (conv2d)", compiled


def measure(impls: dict, reference: str, repeats: int, clock, rtol: float) -> dict:
    expected = impls[reference]()
    for name, fn in impls.items():
        got = fn()
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=name)
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, fn in impls.items():
            t = clock()
            fn()
            samples[name].append((clock() - t) * 1e3)
    best = min(statistics.median(s) for s in samples.values())
    return {
        name: {"median_ms": statistics.median(s), "min_ms": min(s), "ratio_to_best": statistics.median(s) / best}
        for name, s in samples.items()
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--source", action="store_true", help="print the generated code")
    ap.add_argument("--only", choices=("conv1", "conv2"))
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                    help="cpu (default): time.process_time, the CPU time of this process (all its threads); "
                    "wall: time.perf_counter")
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    tasks = {
        "conv1": ("1-D conv gradient (dLdX, dLdK), n=32 c=16 o=32 |X|=512 k=7",
                  lambda: conv1_task(32, 16, 32, 512, 7, dtype)),
        "conv2": ("2-D conv gradient (dLdX, dLdK), n=32 c=16 o=32 32x32 k=3x3",
                  lambda: conv2_task(32, 16, 32, 32, 3, dtype)),
    }
    results = {}
    for key, (title, make) in tasks.items():
        if args.only and key != args.only:
            continue
        impls, reference, compiled = make()
        results[title] = measure(impls, reference, args.repeats, clock, rtol)
        if args.source:
            print(compiled.source)
        print(f"{title} ({args.dtype}, {args.clock} clock)")
        for name, r in results[title].items():
            print(f"  {name:28s} {r['median_ms']:9.2f} ms (min {r['min_ms']:8.2f})  {r['ratio_to_best']:5.2f}x best")
    if args.json:
        info = base_info(str(Path(eg.__file__).parent))
        info["clock"] = args.clock
        info["dtype"] = args.dtype
        info["threads"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

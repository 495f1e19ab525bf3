"""Linear algebra gradients (issue 13): eingrad's compiled code against a hand-written numpy
closed form, jax.jit(jax.grad) and torch.autograd, measured side by side in one run.

- Gaussian negative log-likelihood, gradient in the covariance Σ (n = 600)::

      r_i = x_i - m_i
      L = 0.5 logdet_ij(S_ij) + 0.5 r_i inv_ij(S_ij) r_j

  closed form: ``Sinv = inv(S); u = Sinvᵀ r; ∂L/∂S = ½ (Sinvᵀ − u uᵀ)``.
- Gaussian process marginal likelihood, gradient in (log ℓ, log σ²) (n = 500), the
  program of examples/gp_regression.py; closed form: ``K⁻¹``, ``α = K⁻¹ y``,
  ``G = ½ (K⁻¹ − α αᵀ)``, ``∂L/∂a = Σ G ⊙ ∂K/∂a``, ``∂L/∂b = σ² tr G``.

Every implementation's result is checked against the closed form first.  Run from the
repository root::

    PYTHONPATH=src python benchmarks/linalg.py [--repeats 15] [--json benchmarks/linalg-results.json]

Medians (and minima) of ``--repeats`` calls after warm-up, in milliseconds; the
implementations of a task are timed interleaved, call by call, so that load from other
processes falls on all of them alike.  Nothing here is a test: no time is asserted.
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

NLL = """\
r_i = x_i - m_i
L = 0.5 logdet_ij(S_ij) + 0.5 r_i inv_ij(S_ij) r_j"""

GP = """\
D_nm = (x_n - x_m)^2
K_nm = exp(-0.5 D_nm exp(-2 a)) + exp(b) δ_nm
L = 0.5 y_n inv_nm(K_nm) y_m + 0.5 logdet_nm(K_nm)"""


def nll_task(n: int):
    rng = np.random.default_rng(0)
    R = rng.standard_normal((n, n))
    S = R @ R.T / n + np.eye(n)
    x, m = rng.standard_normal(n), rng.standard_normal(n)
    arrays = {"S": S, "x": x, "m": m}

    def closed_form(S, x, m):
        Sinv = np.linalg.inv(S)
        u = Sinv.T @ (x - m)
        return 0.5 * (Sinv.T - np.outer(u, u))

    def loss_np(S, x, m, lib):
        r = x - m
        return 0.5 * lib.linalg.slogdet(S)[1] + 0.5 * r @ lib.linalg.solve(S, r)

    compiled = eg.compile(eg.grad(NLL, wrt=["S"]), outputs=["dLdS"])
    impls = {
        "numpy closed form": lambda: closed_form(**arrays),
        "eingrad (numpy)": lambda: compiled(**arrays)["dLdS"],
    }
    impls.update(_jax(lambda S, x, m: loss_np(S, x, m, _jnp()), arrays, "S"))
    impls.update(_torch(lambda S, x, m: loss_np(S, x, m, _torch_module()), arrays, "S"))
    return impls, compiled.source


def gp_task(n: int):
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-3.0, 3.0, n))
    y = np.sin(x) + 0.1 * rng.standard_normal(n)
    arrays = {"x": x, "y": y, "a": np.asarray(0.2), "b": np.asarray(-2.0)}

    def closed_form(x, y, a, b):
        D = (x[:, None] - x[None, :]) ** 2
        E = np.exp(-0.5 * D * np.exp(-2 * a))
        K = E + np.exp(b) * np.eye(len(x))
        Kinv = np.linalg.inv(K)
        alpha = Kinv @ y
        G = 0.5 * (Kinv - np.outer(alpha, alpha))
        return np.array([np.sum(G * E * D) * np.exp(-2 * a), np.exp(b) * np.trace(G)])

    def loss(x, y, a, b, lib, eye):
        D = (x[:, None] - x[None, :]) ** 2
        K = lib.exp(-0.5 * D * lib.exp(-2 * a)) + lib.exp(b) * eye
        return 0.5 * y @ lib.linalg.solve(K, y) + 0.5 * lib.linalg.slogdet(K)[1]

    compiled = eg.compile(eg.grad(GP, wrt=["a", "b"]), outputs=["dLda", "dLdb"])

    def ours():
        out = compiled(**arrays)
        return np.array([out["dLda"], out["dLdb"]])

    impls = {"numpy closed form": lambda: closed_form(**arrays), "eingrad (numpy)": ours}
    impls.update(_jax(lambda x, y, a, b: loss(x, y, a, b, _jnp(), _jnp().eye(n)), arrays, ("a", "b")))
    impls.update(_torch(lambda x, y, a, b: loss(x, y, a, b, _torch_module(), _torch_module().eye(
        n, dtype=_torch_module().float64)), arrays, ("a", "b")))
    return impls, compiled.source


def _jnp():
    import jax.numpy as jnp

    return jnp


def _torch_module():
    import torch

    return torch


def _jax(loss, arrays, wrt):
    try:
        import jax
    except ImportError:
        return {}
    jax.config.update("jax_enable_x64", True)
    names = (wrt,) if isinstance(wrt, str) else wrt
    argnums = tuple(list(arrays).index(w) for w in names)
    grad = jax.jit(jax.grad(lambda *args: loss(**dict(zip(arrays, args, strict=True))), argnums=argnums))
    values = [jax.numpy.asarray(v) for v in arrays.values()]

    def run():
        out = grad(*values)
        out = [np.asarray(o.block_until_ready()) for o in out]
        return out[0] if isinstance(wrt, str) else np.array([float(o) for o in out])

    return {"jax.jit(jax.grad)": run}


def _torch(loss, arrays, wrt):
    try:
        import torch
    except ImportError:
        return {}
    names = (wrt,) if isinstance(wrt, str) else wrt

    def run():
        tensors = {k: torch.as_tensor(v, dtype=torch.float64).requires_grad_(k in names) for k, v in arrays.items()}
        loss(**tensors).backward()
        out = [tensors[w].grad.numpy() for w in names]
        return out[0] if isinstance(wrt, str) else np.array([float(o) for o in out])

    return {"torch.autograd": run}


def measure(impls: dict, repeats: int, clock=time.perf_counter) -> dict:
    reference = impls["numpy closed form"]()
    for name, fn in impls.items():
        got = fn()
        np.testing.assert_allclose(got, reference, rtol=1e-7, atol=1e-9, err_msg=name)
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, fn in impls.items():
            t = clock()
            fn()
            samples[name].append((clock() - t) * 1e3)
    base = statistics.median(samples["numpy closed form"])
    return {
        name: {"median_ms": statistics.median(s), "min_ms": min(s), "ratio": statistics.median(s) / base}
        for name, s in samples.items()
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--nll-n", type=int, default=600)
    ap.add_argument("--gp-n", type=int, default=500)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--source", action="store_true", help="print the generated code")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time, the CPU time of this process "
                    "(all its threads), which other processes' load hardly changes")
    args = ap.parse_args(argv)
    results = {}
    for title, (impls, source) in (
        (f"Gaussian NLL gradient in Σ, n = {args.nll_n}", nll_task(args.nll_n)),
        (f"GP marginal-likelihood gradient in (log ℓ, log σ²), n = {args.gp_n}", gp_task(args.gp_n)),
    ):
        if args.source:
            print(source)
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        results[title] = measure(impls, args.repeats, clock)
        print(title)
        for name, r in results[title].items():
            print(f"  {name:20s} {r['median_ms']:9.2f} ms (min {r['min_ms']:8.2f})  {r['ratio']:5.2f}x")
    if args.json:
        info = base_info(str(Path(eg.__file__).parent))
        info["clock"] = args.clock
        info["threads"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Derivation speed: how long ``eg.diff`` (differentiate + simplify) takes (issue 3).

Times the exact symbolic derivative, fully simplified, for the guide's
examples and for the larger models of issue 3: the quadratic form, logistic
regression, matrix factorisation and a 2-layer MLP with softmax
cross-entropy.  Each task is warmed up, then timed many times with
``time.perf_counter``; the table shows the median.

Before every timed call the ``functools`` caches inside eingrad are cleared,
so each number is a first-time derivation, not a cache hit.  The "warm"
column is the same call with the caches left full (what a user pays when
asking for the same derivative again).

If SymPy is importable, the same derivatives are timed in SymPy on
comparable forms, also with SymPy's cache cleared before every timed call:

* *indexed*: ``sympy.Indexed`` with explicit ``Sum`` and symbolic sizes,
  the index form closest to eingrad's.  Timed: ``diff(...).doit()`` (``doit``
  is where SymPy sums out its Kronecker deltas).  With ``--sympy-simplify``
  a further column times ``simplify(diff(...).doit())``.
* *matrix*: ``MatrixSymbol`` matrix calculus (``(x.T*A*x).diff(x)``), where
  the task can be written that way; failures are reported, not hidden.

SymPy is a benchmark-only tool, never a dependency of eingrad.  This is a
benchmark, not a test: nothing here asserts a time.

Run from the repository root::

    PYTHONPATH=src python benchmarks/derive.py
    PYTHONPATH=src python benchmarks/derive.py --json benchmarks/derive.json --sympy-simplify
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import base_info, source_fingerprint  # noqa: E402

try:
    import eingrad as eg
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    import eingrad as eg

TARGET_MS = 10.0

AFFINE = "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh"
QUADRATIC = "s = x_i A_ij x_j"
LOGISTIC = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"
FACTORISATION = "L = sum_{i,j}((X_ij - U_ik V_jk)^2)"
MLP = "H_nh = relu(X_nd W_dh + b_h); Z_nc = H_nh V_hc + c_c; L = sum_n(logsumexp_c(Z_nc) - Z_nc Y_nc)"


@dataclass(frozen=True)
class Task:
    key: str
    title: str
    program: str
    wrt: str
    order: int = 1


TASKS: tuple[Task, ...] = (
    Task("guide-Wv-W", "guide: f_i = W_ij v_j, ∂/∂W", "f_i = W_ij v_j", "W"),
    Task("guide-Wv-v", "guide: f_i = W_ij v_j, ∂/∂v", "f_i = W_ij v_j", "v"),
    Task("guide-XW-X", "guide: Y_ik = X_ij W_jk, ∂/∂X", "Y_ik = X_ij W_jk", "X"),
    Task("guide-XW-W", "guide: Y_ik = X_ij W_jk, ∂/∂W", "Y_ik = X_ij W_jk", "W"),
    Task("guide-affine-b", "guide: affine layer, ∂L/∂b", AFFINE, "b"),
    Task("guide-svd-sigma", "guide: A_ij = U_ik σ_k V_kj, ∂/∂σ", "A_ij = U_ik σ_k V_kj", "σ"),
    Task("quadratic-grad", "quadratic form x_i A_ij x_j, gradient", QUADRATIC, "x"),
    Task("quadratic-hess", "quadratic form x_i A_ij x_j, Hessian", QUADRATIC, "x", 2),
    Task("logistic-grad", "logistic regression, gradient", LOGISTIC, "w"),
    Task("logistic-hess", "logistic regression, Hessian", LOGISTIC, "w", 2),
    Task("factorisation-grad", "matrix factorisation, gradient wrt U", FACTORISATION, "U"),
    Task("factorisation-hess", "matrix factorisation, Hessian wrt U", FACTORISATION, "U", 2),
    Task("mlp-W", "2-layer MLP + softmax CE, ∂L/∂W", MLP, "W"),
    Task("mlp-V", "2-layer MLP + softmax CE, ∂L/∂V", MLP, "V"),
)


# ---------------------------------------------------------------- timing


@dataclass
class Timing:
    times_ms: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    def summary(self) -> dict[str, Any]:
        if not self.ok:
            return {"error": self.error}
        t = sorted(self.times_ms)
        q = statistics.quantiles(t, n=4) if len(t) >= 2 else [t[0], t[0], t[0]]
        return {
            "median_ms": self.median,
            "min_ms": t[0],
            "max_ms": t[-1],
            "q1_ms": q[0],
            "q3_ms": q[2],
            "repeats": len(t),
        }


def measure(
    fn: Callable[[], Any],
    *,
    reset: Callable[[], None] | None,
    warmup: int,
    repeats: int,
    min_repeats: int,
    budget_s: float,
) -> tuple[Timing, Any]:
    """Warm up, then time ``fn`` ``repeats`` times (fewer, but at least
    ``min_repeats``, once ``budget_s`` seconds have gone).  ``reset`` runs
    before every call, outside the timed region."""
    timing = Timing()
    result = None
    try:
        for _ in range(warmup):
            if reset:
                reset()
            result = fn()
        start = time.perf_counter()
        while len(timing.times_ms) < repeats:
            if reset:
                reset()
            t0 = time.perf_counter()
            result = fn()
            timing.times_ms.append((time.perf_counter() - t0) * 1e3)
            if len(timing.times_ms) >= min_repeats and time.perf_counter() - start > budget_s:
                break
    except RecursionError:
        timing.error = "RecursionError"
    except Exception as err:  # noqa: BLE001 - a benchmark reports what failed and goes on
        timing.error = f"{type(err).__name__}: {err}".splitlines()[0][:120]
    return timing, result


def eingrad_caches() -> list[Callable[[], None]]:
    """``cache_clear`` of every cache defined inside eingrad (functools caches, and
    ProgramBuilder's parsed chunk shapes): of objects, not of their classes."""
    clears = []
    seen = set()
    for name, module in list(sys.modules.items()):
        if not (name == "eingrad" or name.startswith("eingrad.")) or module is None:
            continue
        for obj in vars(module).values():
            if isinstance(obj, type):
                continue
            clear = getattr(obj, "cache_clear", None)
            owner = getattr(obj, "__module__", "") or ""
            if callable(clear) and owner.startswith("eingrad") and id(obj) not in seen:
                seen.add(id(obj))
                clears.append(clear)
    return clears


# ---------------------------------------------------------------- SymPy forms


def sympy_forms(sp) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """Per task key: a thunk doing SymPy's derivative, in indexed and in matrix form.

    Expressions are built here, outside the timed thunks (as eingrad's
    programs are parsed outside its timed call).
    """
    from sympy import (
        DiagMatrix,
        Dummy,
        IndexedBase,
        Lambda,
        MatrixSymbol,
        Max,
        OneMatrix,
        Sum,
        exp,
        log,
        symbols,
        trace,
    )

    N, D, H, C, K, M = symbols("N D H C K M", integer=True, positive=True)
    i, j, k, l, m, n, p, q, d, h, o, r, e, f = symbols("i j k l m n p q d h o r e f", integer=True)  # noqa: E741
    W, v, X, Y, G, b, c, U, V, A, x, w, y, sig = map(IndexedBase, "W v X Y G b c U V A x w y σ".split())
    lam = symbols("lam")

    def d1(expr, var):
        return lambda: expr.diff(var).doit()

    def d2(expr, var1, var2):
        return lambda: expr.diff(var1).doit().diff(var2).doit()

    f_wv = Sum(W[i, j] * v[j], (j, 0, D - 1))
    y_xw = Sum(X[i, j] * W[j, k], (j, 0, D - 1))
    l_affine = Sum(G[n, h] * (Sum(X[n, d] * W[d, h], (d, 0, D - 1)) + b[h]), (n, 0, N - 1), (h, 0, H - 1))
    a_svd = Sum(U[i, k] * sig[k] * V[k, j], (k, 0, K - 1))
    s_quad = Sum(x[i] * A[i, j] * x[j], (i, 0, D - 1), (j, 0, D - 1))
    l_log = Sum(log(1 + exp(-y[i] * Sum(X[i, j] * w[j], (j, 0, D - 1)))), (i, 0, N - 1)) + lam / 2 * Sum(
        w[j] ** 2, (j, 0, D - 1)
    )
    l_mf = Sum((X[i, j] - Sum(U[i, k] * V[j, k], (k, 0, K - 1))) ** 2, (i, 0, N - 1), (j, 0, M - 1))

    # The MLP has no statements in SymPy: H and Z are written inline, with
    # distinct summation indices where Z appears twice.  relu = Max(0, .),
    # logsumexp_c = log Σ_c exp.
    def hidden(n_, h_, d_):
        return Max(0, Sum(X[n_, d_] * W[d_, h_], (d_, 0, D - 1)) + b[h_])

    def logits(n_, c_, h_, d_):
        return Sum(hidden(n_, h_, d_) * V[h_, c_], (h_, 0, H - 1)) + c[c_]

    l_mlp = Sum(
        log(Sum(exp(logits(n, o, h, d)), (o, 0, C - 1))) - Sum(logits(n, r, e, f) * Y[n, r], (r, 0, C - 1)),
        (n, 0, N - 1),
    )

    indexed = {
        "guide-Wv-W": d1(f_wv, W[k, l]),
        "guide-Wv-v": d1(f_wv, v[k]),
        "guide-XW-X": d1(y_xw, X[l, m]),
        "guide-XW-W": d1(y_xw, W[l, m]),
        "guide-affine-b": d1(l_affine, b[k]),
        "guide-svd-sigma": d1(a_svd, sig[l]),
        "quadratic-grad": d1(s_quad, x[k]),
        "quadratic-hess": d2(s_quad, x[k], x[l]),
        "logistic-grad": d1(l_log, w[k]),
        "logistic-hess": d2(l_log, w[k], w[l]),
        "factorisation-grad": d1(l_mf, U[l, m]),
        "factorisation-hess": d2(l_mf, U[l, m], U[p, q]),
        "mlp-W": d1(l_mlp, W[k, l]),
        "mlp-V": d1(l_mlp, V[k, l]),
    }

    # Matrix calculus.  Where a task cannot be written this way the entry is
    # None ("n/a"); where SymPy raises, the error is reported.
    mW, mv = MatrixSymbol("W", N, D), MatrixSymbol("v", D, 1)
    mX, mW2 = MatrixSymbol("X", N, D), MatrixSymbol("W", D, H)
    mb, mG = MatrixSymbol("b", H, 1), MatrixSymbol("G", N, H)
    mU, ms, mV = MatrixSymbol("U", M, K), MatrixSymbol("σ", K, 1), MatrixSymbol("V", K, N)
    mx, mA = MatrixSymbol("x", D, 1), MatrixSymbol("A", D, D)
    mw, my = MatrixSymbol("w", D, 1), MatrixSymbol("y", N, 1)
    fU, fV, fX = MatrixSymbol("U", N, K), MatrixSymbol("V", M, K), MatrixSymbol("X", N, M)
    t = Dummy("t")
    softplus = Lambda(t, log(1 + exp(t)))
    quad = mx.T * mA * mx
    l_affine_m = trace(mG.T * (mX * mW2 + OneMatrix(N, 1) * mb.T))
    # y_i enters as diag(y) X w (SymPy has no derivative rule for a Hadamard product with y).
    l_log_m = OneMatrix(1, N) * (-DiagMatrix(my) * mX * mw).applyfunc(softplus) + lam / 2 * mw.T * mw
    resid = fX - fU * fV.T
    l_mf_m = trace(resid.T * resid)

    matrix: dict[str, Callable[[], Any] | None] = {
        "guide-Wv-W": lambda: (mW * mv).diff(mW),
        "guide-Wv-v": lambda: (mW * mv).diff(mv),
        "guide-XW-X": lambda: (mX * mW2).diff(mX),
        "guide-XW-W": lambda: (mX * mW2).diff(mW2),
        "guide-affine-b": lambda: l_affine_m.diff(mb),
        "guide-svd-sigma": lambda: (mU * DiagMatrix(ms) * mV).diff(ms),
        "quadratic-grad": lambda: quad.diff(mx),
        "quadratic-hess": lambda: quad.diff(mx).diff(mx),
        "logistic-grad": lambda: l_log_m.diff(mw),
        "logistic-hess": lambda: l_log_m.diff(mw).diff(mw),
        "factorisation-grad": lambda: l_mf_m.diff(fU),
        "factorisation-hess": lambda: l_mf_m.diff(fU).diff(fU),
        "mlp-W": None,  # elementwise relu and a row-wise logsumexp: not expressible as MatrixSymbol calculus
        "mlp-V": None,
    }
    return indexed, matrix


# ---------------------------------------------------------------- machine


def eingrad_fingerprint() -> str:
    """sha256 (12 hex digits) of the eingrad package's .py files, to tell which code was timed."""
    return source_fingerprint(os.path.dirname(os.path.abspath(eg.__file__)))


def machine() -> dict[str, Any]:
    return {**base_info(os.path.dirname(os.path.abspath(eg.__file__))), "eingrad": getattr(eg, "__version__", "?")}


# ---------------------------------------------------------------- main


def fmt(t: Timing | None) -> str:
    if t is None:
        return "n/a"
    if not t.ok:
        return "fails"
    return f"{t.median:.2f}" if t.median < 100 else f"{t.median:.0f}"


def rnn_program(tau: int):
    """The guide's RNN unrolled tau steps, a loss at every step (issue 4)."""
    import eingrad as eg

    builder = eg.ProgramBuilder()
    builder.add("s0_bh = tanh(x0_bd W_dh + b_h)")
    for t in range(1, tau):
        builder.add(f"s{t}_bh = tanh(x{t}_bd W_dh + s{t - 1}_bk U_kh + b_h)")
    builder.add("L = " + " + ".join(f"sum_{{b,h}}((s{t}_bh - y{t}_bh)^2)" for t in range(tau)))
    return builder.build()


def rnn_grad_timings(taus=(10, 100, 1000), budget: float = 20.0) -> list[dict[str, Any]]:
    """Per tau: median CPU time (``time.process_time``) of parsing the RNN (``rnn_program``,
    a ProgramBuilder) and of eg.grad(rnn, wrt=[W, U, b]), caches cleared before each parse."""
    import eingrad as eg

    rows = []
    for tau in taus:
        parse_times, grad_times = [], []
        start = time.perf_counter()
        while len(grad_times) < 5 and (not grad_times or time.perf_counter() - start < budget):
            for clear in eingrad_caches():
                clear()
            t0 = time.process_time()
            program = rnn_program(tau)
            t1 = time.process_time()
            eg.grad(program, wrt=["W", "U", "b"])
            t2 = time.process_time()
            parse_times.append(t1 - t0)
            grad_times.append(t2 - t1)
        sums = [p + g for p, g in zip(parse_times, grad_times, strict=True)]
        rows.append({
            "tau": tau,
            "statements": len(program),
            "parse_s": statistics.median(parse_times),
            "median_s": statistics.median(grad_times),
            "parse_grad_s": statistics.median(sums),
            "min_parse_grad_s": min(sums),
            "runs": len(grad_times),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="PATH", help="also write all numbers to this JSON file")
    ap.add_argument("--repeats", type=int, default=300, help="timed eingrad calls per task (default 300)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed eingrad calls first (default 10)")
    ap.add_argument(
        "--budget", type=float, default=3.0, help="seconds per eingrad task before stopping early"
    )
    ap.add_argument("--no-sympy", action="store_true", help="skip the SymPy comparison")
    ap.add_argument("--sympy-repeats", type=int, default=5, help="timed SymPy calls per form (default 5)")
    ap.add_argument(
        "--sympy-budget", type=float, default=20.0, help="seconds per SymPy form before stopping early"
    )
    ap.add_argument(
        "--sympy-simplify", action="store_true", help="also time SymPy's simplify() of the result"
    )
    ap.add_argument("--only", metavar="SUBSTR", help="run only tasks whose key contains SUBSTR")
    args = ap.parse_args(argv)

    tasks = [t for t in TASKS if not args.only or args.only in t.key]
    info = machine()
    print(
        f"eingrad {info['eingrad']} (source {info['eingrad_source']}) · Python {info['python']} · "
        f"{info['cpu']} · {info['nproc']} CPUs"
    )

    sp = None
    if not args.no_sympy:
        try:
            import sympy as sp
        except ImportError:
            print("sympy is not installed: SymPy columns skipped (pip install sympy to compare).")
    if sp is not None:
        info["sympy"] = sp.__version__
        print(f"SymPy {sp.__version__}: cache cleared before every timed call")
    print(
        f"eingrad: {args.warmup} warm-up calls, then median of up to {args.repeats} (caches cleared each call)\n"
    )

    clears: list[Callable[[], None]] = []

    def reset() -> None:
        for clear in clears:
            clear()

    results = []
    for task in tasks:
        program = eg.parse(task.program)

        def run(task=task, program=program):
            return eg.diff(program, task.wrt, order=task.order)

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a zero-derivative warning here would mean a wrong benchmark
            run()  # imports everything lazily, so every cache exists before we collect them
            if not clears:
                clears.extend(eingrad_caches())
            cold, derivative = measure(
                run,
                reset=reset,
                warmup=args.warmup,
                repeats=args.repeats,
                min_repeats=30,
                budget_s=args.budget,
            )
            warm, _ = measure(
                run,
                reset=None,
                warmup=args.warmup,
                repeats=args.repeats,
                min_repeats=30,
                budget_s=args.budget,
            )
        row: dict[str, Any] = {
            "key": task.key,
            "title": task.title,
            "program": task.program,
            "wrt": task.wrt,
            "order": task.order,
            "result": str(derivative) if cold.ok else None,
            "eingrad": cold.summary(),
            "eingrad_warm": warm.summary(),
        }
        timings = {"eingrad": cold, "eingrad_warm": warm}
        results.append((task, row, timings))
        print(f"  {task.key:20s} {fmt(cold):>8s} ms  {row['result'] or cold.error}", flush=True)

    if sp is not None:
        print("\nSymPy ...", flush=True)
        indexed, matrix = sympy_forms(sp)
        clear_sympy = sp.core.cache.clear_cache
        sympy_kw = dict(
            reset=clear_sympy, warmup=1, repeats=args.sympy_repeats, min_repeats=3, budget_s=args.sympy_budget
        )
        for task, row, timings in results:
            t, res = measure(indexed[task.key], **sympy_kw)
            timings["sympy_indexed"] = t
            row["sympy_indexed"] = t.summary() | {"result": str(res) if t.ok else None}
            if args.sympy_simplify:
                thunk = indexed[task.key]
                t2, res2 = measure(lambda thunk=thunk: sp.simplify(thunk()), **sympy_kw)
                timings["sympy_indexed_simplify"] = t2
                row["sympy_indexed_simplify"] = t2.summary() | {"result": str(res2) if t2.ok else None}
            thunk = matrix[task.key]
            if thunk is None:
                timings["sympy_matrix"] = None
                row["sympy_matrix"] = {"error": "not expressible"}
            else:
                t3, res3 = measure(thunk, **sympy_kw)
                timings["sympy_matrix"] = t3
                row["sympy_matrix"] = t3.summary() | {"result": str(res3) if t3.ok else None}
            simp = f"   +simplify {fmt(timings['sympy_indexed_simplify']):>8s}" if args.sympy_simplify else ""
            print(
                f"  {task.key:20s} indexed {fmt(t):>8s}{simp}   matrix {fmt(timings['sympy_matrix']):>8s}  (ms)",
                flush=True,
            )

    # ------------------------------------------------------------ the table
    columns = [("eingrad ms", "eingrad"), ("warm ms", "eingrad_warm")]
    if sp is not None:
        columns.append(("SymPy indexed ms", "sympy_indexed"))
        if args.sympy_simplify:
            columns.append(("+simplify ms", "sympy_indexed_simplify"))
        columns.append(("SymPy matrix ms", "sympy_matrix"))
    head = f"{'task':20s} " + " ".join(f"{c:>{max(len(c), 8)}s}" for c, _ in columns) + "  result (eingrad)"
    print("\n" + head)
    print("-" * len(head))
    for task, row, timings in results:
        cells = " ".join(f"{fmt(timings.get(k)):>{max(len(c), 8)}s}" for c, k in columns)
        print(f"{task.key:20s} {cells}  {row['result']}")

    failures = {}
    for task, _row, timings in results:
        for _, k in columns[2:]:
            t = timings.get(k)
            if t is not None and not t.ok:
                failures.setdefault(task.key, []).append(f"{k}: {t.error}")
    if failures:
        print("\nSymPy failures:")
        for key, errs in failures.items():
            print(f"  {key}: " + "; ".join(errs))

    ok = [timings["eingrad"] for _, _, timings in results if timings["eingrad"].ok]
    slow = [
        task.key
        for task, _, timings in results
        if timings["eingrad"].ok and timings["eingrad"].median >= TARGET_MS
    ]
    broken = [task.key for task, _, timings in results if not timings["eingrad"].ok]
    print(
        f"\ntarget: every eingrad median under {TARGET_MS:g} ms: "
        + ("yes" if not slow and not broken else f"no (slow: {slow or '-'}, failed: {broken or '-'})")
        + (f"; slowest {max(t.median for t in ok):.2f} ms" if ok else "")
    )
    print(
        "eingrad ms: eg.diff (differentiate + simplify) on a parsed program, internal caches cleared before "
        "each call; warm ms: caches kept.\nSymPy indexed: diff(...).doit() on Indexed/Sum forms with symbolic "
        "sizes; SymPy matrix: MatrixSymbol .diff(); 'n/a' = not expressible, 'fails' = SymPy raised."
    )

    rnn_rows = []
    if not args.only or "rnn" in args.only:
        print("\nReverse mode (issues 4, 14): the RNN unrolled tau steps, a loss per step: parse "
              "(ProgramBuilder) and eg.grad wrt W, U, b, CPU seconds (medians)")
        rnn_rows = rnn_grad_timings()
        for row in rnn_rows:
            print(f"  tau={row['tau']:5d}  {row['statements']:5d} statements  parse {row['parse_s']:7.3f} s  "
                  f"grad {row['median_s']:7.3f} s  parse+grad {row['parse_grad_s']:7.3f} s  ({row['runs']} runs)")
        by_tau = {row["tau"]: row["parse_grad_s"] for row in rnn_rows}
        if 100 in by_tau and 1000 in by_tau:
            ratio = by_tau[1000] / by_tau[100]
            print(f"  parse+grad: time(1000)/time(100) = {ratio:.1f} (linear: 10-13); under 1 s at tau=1000: "
                  + ("yes" if by_tau[1000] < 1 else "no"))

    if args.json:
        payload = {
            "benchmark": "derive",
            "issue": 3,
            "target_ms": TARGET_MS,
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "machine": info,
            "settings": vars(args),
            "tasks": [row for _, row, _ in results],
            "rnn_grad": rnn_rows,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of code generation (issue 15): how long ``eg.compile`` takes to write a gradient's
code, against program size, and what a compiled gradient's first call at a new batch
size costs.

Two measurements:

- **rnn**: a tanh RNN unrolled τ steps with a loss per step (as examples/rnn_sine.py),
  ``H{t}_nh = tanh(X{t}_nd U_dh + H{t-1}_nk W_kh + b_h)``,
  ``L = (Σ_t Σ_nh (H{t}_nh - T{t}_nh)²) / |n|``; its gradient with respect to U, W
  and b (``eg.grad``, not timed) is compiled and called once.  Timed: the first call
  (code generation, Python's ``compile``, one run) minus a steady call, the fastest of
  ``--repeats`` fresh compilations, in wall-clock and CPU time; per statement of the
  gradient program, and the ratio of τ = 400 to τ = 100 (linear generation: 4).
- **mlp**: a small MLP's gradient (``L = Σ (Y - T)² / |n|``), compiled and called at
  batch 64 until steady; then its first call at each of a few new batch sizes, against
  the steady call.  The code is size-generic: a new batch size reuses it (the target is
  under 5 × the steady call + 2 ms), except where the size class changes (see
  docs/compiler.md), where the code is generated again for the new plan.

```sh
PYTHONPATH=src python benchmarks/codegen.py                     # τ = 100, 400, 1000 and the MLP
PYTHONPATH=src python benchmarks/codegen.py --steps 100 400 --json benchmarks/codegen-results.json
PYTHONPATH=src python benchmarks/codegen.py --profile 400        # cProfile of one generation
```

BLAS runs one thread (``OPENBLAS_NUM_THREADS=1`` unless set), as in compiled.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# One BLAS thread, as benchmarks/compiled.py runs by default: threads that wait on each
# other on a busy machine made a 1 ms call take 10-200 ms from one run to the next.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 - after the thread settings

HERE = os.path.dirname(os.path.abspath(__file__))


def import_eingrad():
    try:
        import eingrad
    except ImportError:
        sys.path.insert(0, os.path.join(HERE, "..", "src"))
        import eingrad
    return eingrad


def rnn_program(steps: int) -> str:
    lines = ["H1_nh = tanh(X1_nd U_dh + b_h)"]
    lines += [f"H{t}_nh = tanh(X{t}_nd U_dh + H{t - 1}_nk W_kh + b_h)" for t in range(2, steps + 1)]
    total = " + ".join(f"sum_{{n,h}}((H{t}_nh - T{t}_nh)^2)" for t in range(1, steps + 1))
    lines.append(f"L = ({total}) / |n|")
    return "\n".join(lines)


def rnn_inputs(steps: int, rng, n=8, d=4, h=16) -> dict[str, np.ndarray]:
    data = {f"X{t}": rng.standard_normal((n, d)) for t in range(1, steps + 1)}
    data.update({f"T{t}": rng.standard_normal((n, h)) for t in range(1, steps + 1)})
    data.update(U=rng.standard_normal((d, h)) / np.sqrt(d), W=0.5 * rng.standard_normal((h, h)) / np.sqrt(h),
                b=np.zeros(h))
    return data


def bench_rnn(eg, steps: int, rng, repeats: int = 3) -> dict:
    program = eg.parse(rnn_program(steps))
    gradient = eg.grad(program, wrt=["U", "W", "b"])
    data = rnn_inputs(steps, rng)
    first = first_cpu = float("inf")
    for _ in range(repeats):  # the fastest of a few generations (a busy machine adds noise)
        fn = eg.compile(gradient)
        start, cpu = time.perf_counter(), time.process_time()
        fn(data)
        first, first_cpu = min(first, time.perf_counter() - start), min(first_cpu, time.process_time() - cpu)
    steady, steady_cpu = [], []
    for _ in range(5):
        start, cpu = time.perf_counter(), time.process_time()
        fn(data)
        steady.append(time.perf_counter() - start)
        steady_cpu.append(time.process_time() - cpu)
    call, call_cpu = statistics.median(steady), statistics.median(steady_cpu)
    statements = len(gradient.statements)
    generation, generation_cpu = first - call, first_cpu - call_cpu
    return {"steps": steps, "statements": statements, "first_call_s": first, "steady_call_s": call,
            "generation_s": generation, "ms_per_statement": 1e3 * generation / statements,
            "generation_cpu_s": generation_cpu, "cpu_ms_per_statement": 1e3 * generation_cpu / statements,
            "source_lines": fn.source.count("\n")}


MLP = """
A_nh = sum_d(X_nd W_dh) + b_h
H_nh = tanh(A_nh)
Y_nc = sum_h(H_nh V_hc) + c_c
L = sum_{n,c}((Y_nc - T_nc)^2) / |n|
"""


def bench_mlp(eg, rng, d=32, h=64, c=10, batch=64, new=(40, 50, 33, 17, 100, 1000)) -> dict:
    gradient = eg.grad(eg.parse(MLP), wrt=["W", "b", "V", "c"])
    params = {"W": rng.standard_normal((d, h)) / np.sqrt(d), "b": np.zeros(h),
              "V": rng.standard_normal((h, c)) / np.sqrt(h), "c": np.zeros(c)}

    def data(n):
        return {"X": rng.standard_normal((n, d)), "T": rng.standard_normal((n, c)), **params}

    fn = eg.compile(gradient, outputs=["dLdW", "dLdb", "dLdV", "dLdc"])
    start = time.perf_counter()
    fn(data(batch))
    generation = time.perf_counter() - start
    arrays = data(batch)
    for _ in range(20):
        fn(arrays)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        fn(arrays)
        times.append(time.perf_counter() - start)
    steady = statistics.median(times)
    out = {"batch": batch, "first_call_s": generation, "steady_call_s": steady, "new_batch": []}
    for n in new:
        arrays = data(n)
        before = len(fn._cache)
        start = time.perf_counter()
        fn(arrays)
        first = time.perf_counter() - start
        again = []
        for _ in range(50):
            start = time.perf_counter()
            fn(arrays)
            again.append(time.perf_counter() - start)
        steady_n = statistics.median(again)
        out["new_batch"].append({"n": n, "first_call_s": first, "steady_call_s": steady_n,
                                 "generated": len(fn._cache) > before,
                                 "target_s": 5 * steady_n + 2e-3})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="*", default=[100, 400, 1000])
    parser.add_argument("--no-mlp", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="generations per size; the fastest counts")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", type=int, help="cProfile one generation of this many steps")
    args = parser.parse_args(argv)
    eg = import_eingrad()
    rng = np.random.default_rng(0)
    if args.profile:
        import cProfile
        import pstats

        program = eg.parse(rnn_program(args.profile))
        gradient = eg.grad(program, wrt=["U", "W", "b"])
        data = rnn_inputs(args.profile, rng)
        fn = eg.compile(gradient)
        profiler = cProfile.Profile()
        profiler.enable()
        fn(data)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return 0
    results: dict = {"rnn": [], "mlp": None}
    for steps in args.steps:
        r = bench_rnn(eg, steps, rng, args.repeats)
        results["rnn"].append(r)
        print(f"rnn τ={steps:5d}: {r['statements']:5d} statements, generation {r['generation_s']:.3f} s "
              f"({r['ms_per_statement']:.2f} ms/statement; CPU time {r['generation_cpu_s']:.3f} s, "
              f"{r['cpu_ms_per_statement']:.2f} ms/statement), steady call {1e3 * r['steady_call_s']:.2f} ms", flush=True)
    by = {r["steps"]: r for r in results["rnn"]}
    if 100 in by and 400 in by:
        ratio = by[400]["generation_s"] / by[100]["generation_s"]
        ratio_cpu = by[400]["generation_cpu_s"] / by[100]["generation_cpu_s"]
        results["ratio_400_100"], results["ratio_400_100_cpu"] = ratio, ratio_cpu
        print(f"generation τ=400 / τ=100: {ratio:.2f} (CPU time {ratio_cpu:.2f}; linear: 4)")
    if not args.no_mlp:
        m = bench_mlp(eg, rng)
        results["mlp"] = m
        print(f"mlp gradient, batch {m['batch']}: first call {1e3 * m['first_call_s']:.2f} ms, "
              f"steady {1e3 * m['steady_call_s']:.3f} ms")
        for r in m["new_batch"]:
            verdict = "ok" if r["first_call_s"] <= r["target_s"] else "over"
            print(f"  new batch {r['n']:5d}: first call {1e3 * r['first_call_s']:.3f} ms "
                  f"(steady there {1e3 * r['steady_call_s']:.3f} ms, target {1e3 * r['target_s']:.3f} ms: {verdict})"
                  + ("  [code generated: new size class]" if r["generated"] else ""))
    if args.json:
        sys.path.insert(0, HERE)
        from machine_info import base_info

        results["machine"] = base_info(os.path.dirname(eg.__file__))
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

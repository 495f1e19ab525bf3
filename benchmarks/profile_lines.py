"""Where the time of a compiled gradient goes: every line of the generated code timed.

    PYTHONPATH=src python benchmarks/profile_lines.py rnn-grad --dtype float32

Builds a task of ``compiled.py``, compiles eingrad's gradient, wraps each line of the
generated function in ``perf_counter`` calls, runs it ``--calls`` times and prints the
lines grouped by their code with the numbers of names erased (``X.T @ _t`` for every step), most
expensive first, next to the total time of the unwrapped function and of the closed form.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import compiled as tasks  # noqa: E402


def instrumented(source: str) -> tuple[str, list[str]]:
    """The generated module with each step of ``compiled`` timed into ``_T[k]``."""
    head, body = source.split("def compiled(arrays):\n")
    out = ["def compiled(arrays, _T, _pc):"]
    kinds: list[str] = []
    for line in body.splitlines():
        step = line.strip()
        if not step or step.startswith(("#", "return", "del")):
            out.append(line)
            continue
        assigned = "=" in step and not re.search(r"[-+*/]=", step.split("=", 1)[0] + "=")
        kinds.append(re.sub(r"(?<=[A-Za-z_])\d+", "", step.split("=", 1)[1].strip() if assigned else step))
        out += ["    _t0 = _pc()", line, f"    _T[{len(kinds) - 1}] += _pc() - _t0"]
    return head + "\n".join(out) + "\n", kinds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", help="a task key of compiled.py (compiled.py --list)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)

    eg = tasks.import_eingrad()
    info, build = tasks.TASKS[args.task]
    bench = build(eg, args.dtype, np.random.default_rng(0))
    fn = eg.compile(bench.eg_obj, outputs=bench.outputs)
    fn(**bench.eg_inputs)
    source, kinds = instrumented(fn.source)
    namespace: dict = {"xp": np}
    exec(compile(source, "<profiled>", "exec"), namespace)  # noqa: S102 - eingrad's own generated code
    totals = [0.0] * len(kinds)
    arrays = dict(bench.eg_inputs)
    with np.errstate(all="ignore"):
        for _ in range(args.calls):
            namespace["compiled"](arrays, totals, time.perf_counter)
    by_kind: collections.Counter[str] = collections.Counter()
    for kind, total in zip(kinds, totals, strict=True):
        by_kind[kind] += total / args.calls * 1e3
    for kind, ms in by_kind.most_common(args.top):
        print(f"{ms:8.3f} ms  {kind}")
    print(f"{sum(by_kind.values()):8.3f} ms  all lines (timed one by one)")

    def per_call(run) -> float:
        start = time.perf_counter()
        for _ in range(args.calls):
            run()
        return (time.perf_counter() - start) / args.calls * 1e3

    print(f"{per_call(lambda: fn(**bench.eg_inputs)):8.3f} ms  eingrad, one call")
    print(f"{per_call(bench.closed):8.3f} ms  closed form, one call")


if __name__ == "__main__":
    main()

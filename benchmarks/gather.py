"""The embedding gradient (issue 12): vocabulary 200,000 x 16, a batch of 4096 tokens.

The program reads each token's row of ``E`` (a gather) and takes the gradient of a
linear loss in the rows read, so ``dLdE`` is a scatter-add of the upstream gradient ``G``
into a 200,000 x 16 array::

    H[n, d] = E[tok[n], d]
    L = sum_n(sum_d(H[n, d] G[n, d]))

The tokens are drawn with repeats (Zipf-like), so the scatter must accumulate.  The
compiled numpy gradient is checked against ``np.add.at`` first; then its peak memory
(tracemalloc, which numpy reports its buffers to) is compared with the size of the
gradient itself: the target is below 3x.  A dense one-hot matrix (4096 x 200,000
float64) would take 6.5 GB.  Run from the repository root::

    PYTHONPATH=src python benchmarks/gather.py [--repeats 20]

Nothing here is a test: no time is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc

import numpy as np

import eingrad as eg

PROGRAM = """
H[n, d] = E[tok[n], d]
L = sum_n(sum_d(H[n, d] G[n, d]))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    V, D, N = args.vocabulary, args.width, args.batch
    E = rng.standard_normal((V, D))
    G = rng.standard_normal((N, D))
    tok = (rng.zipf(1.3, N) % V).astype(np.int64)  # many repeats
    step = eg.compile(eg.grad(eg.parse(PROGRAM), wrt=["E"]), outputs=["dLdE"])
    got = step(E=E, tok=tok, G=G)["dLdE"]
    expected = np.zeros((V, D))
    np.add.at(expected, tok, G)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    del got, expected

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step(E=E, tok=tok, G=G)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    out = step(E=E, tok=tok, G=G)["dLdE"]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gradient = out.nbytes
    print(f"embedding gradient: vocabulary {V}, width {D}, batch {N} "
          f"({len(np.unique(tok))} distinct tokens), numpy {np.__version__}, python {sys.version.split()[0]}")
    print(f"  time: median {statistics.median(times) * 1e3:.2f} ms, min {min(times) * 1e3:.2f} ms "
          f"over {args.repeats} calls")
    print(f"  peak memory of one call: {peak / 2**20:.1f} MiB; the gradient: {gradient / 2**20:.1f} MiB "
          f"-> {peak / gradient:.2f}x (target < 3x)")
    print(f"  a dense one-hot (batch x vocabulary, float64) would be {N * V * 8 / 2**30:.1f} GiB")
    return 0 if peak < 3 * gradient else 1


if __name__ == "__main__":
    raise SystemExit(main())

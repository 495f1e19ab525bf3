"""The sine-wave task of ``rnn_sine.py`` with an LSTM: six statements that read each other.

An LSTM cell (LANGUAGE.md §12) is a group of statements along ``t``: the gates read
the previous output ``h[t-1]``, the cell ``c`` reads its own previous value, and ``h``
reads ``c`` at the same step::

    f[t,n,k] = sigmoid(x[t,n] Wf_k + h[t-1,n,m] Uf_mk + bf_k)      (and i, g, o alike)
    c[t,n,k] = f[t,n,k] c[t-1,n,k] + i[t,n,k] g[t,n,k]
    h[t,n,k] = o[t,n,k] tanh(c[t,n,k])

``eg.grad`` derives backprop through time for the whole group at once: six adjoints
that read each other at ``t+1`` (``dLdc[t]`` takes ``f[t+1] dLdc[t+1]``, the cell's
"constant error carousel"), and each weight's gradient as a sum over the steps.  The
gradient is checked against central differences of the loss, then Adam trains it.

Run ``python examples/lstm.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

import eingrad as eg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from rnn_sine import Adam, make_data  # noqa: E402  (the same data and optimizer)

GATES = ("f", "i", "g", "o")
PARAMETERS = [f"{kind}{gate}" for gate in GATES for kind in ("W", "U", "b")] + ["V", "v0"]

MODEL = """
f[t,n,k] = sigmoid(x[t,n] Wf_k + h[t-1,n,m] Uf_mk + bf_k)
i[t,n,k] = sigmoid(x[t,n] Wi_k + h[t-1,n,m] Ui_mk + bi_k)
g[t,n,k] = tanh(x[t,n] Wg_k + h[t-1,n,m] Ug_mk + bg_k)
o[t,n,k] = sigmoid(x[t,n] Wo_k + h[t-1,n,m] Uo_mk + bo_k)
c[t,n,k] = f[t,n,k] c[t-1,n,k] + i[t,n,k] g[t,n,k]
h[t,n,k] = o[t,n,k] tanh(c[t,n,k])
e[t,n] = h[t,n,k] V_k + v0 - y[t,n]
L = sum_{t,n}(e[t,n]^2) / (|t| |n|)
"""


def init_params(hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params: dict[str, np.ndarray] = {}
    for gate in GATES:
        params[f"W{gate}"] = rng.standard_normal(hidden) * 0.5
        params[f"U{gate}"] = rng.standard_normal((hidden, hidden)) * (0.5 / np.sqrt(hidden))
        params[f"b{gate}"] = np.full(hidden, 1.0 if gate == "f" else 0.0)  # remember by default
    params["V"] = rng.standard_normal(hidden) / np.sqrt(hidden)
    params["v0"] = np.zeros(())
    return params


def gradient_check(loss, gradients, params, data, rng, eps=1e-6) -> float:
    """Largest relative error between ``<dL/dθ, v>`` and the central difference of L along a
    random direction v, over every parameter θ."""
    worst = 0.0
    for name in PARAMETERS:
        v = rng.standard_normal(np.shape(params[name]))
        plus = float(loss(**data, **{**params, name: params[name] + eps * v})["L"])
        minus = float(loss(**data, **{**params, name: params[name] - eps * v})["L"])
        numeric = (plus - minus) / (2 * eps)
        exact = float(np.sum(gradients[name] * v))
        worst = max(worst, abs(exact - numeric) / max(abs(exact), abs(numeric), 1e-12))
    return worst


def train(steps: int = 20, hidden: int = 16, epochs: int = 400, sequences: int = 64, noise: float = 0.1,
          lr: float = 0.02, seed: int = 0, verbose: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    program = eg.parse(MODEL)
    gradient = eg.grad(program, wrt=PARAMETERS)
    step = eg.compile(gradient, outputs=["L", *(f"dLd{p}" for p in PARAMETERS)])
    loss = eg.compile(program, outputs=["L"])
    data, _, _ = make_data(sequences, steps, noise, rng)
    test, noisy_test, clean_test = make_data(sequences, steps, noise, rng)
    params = init_params(hidden, rng)

    out = step(**data, **params)
    grad_error = gradient_check(loss, {p: out[f"dLd{p}"] for p in PARAMETERS}, params, data, rng)
    if verbose:
        print(f"gradient check at the initial parameters: max relative error {grad_error:.1e}")
    optimizer = Adam(params, lr)
    losses = []
    for epoch in range(epochs):
        out = step(**data, **params)
        losses.append(float(out["L"]))
        optimizer.step(params, {p: out[f"dLd{p}"] for p in PARAMETERS})
        if verbose and (epoch % max(1, epochs // 10) == 0 or epoch == epochs - 1):
            print(f"  epoch {epoch + 1:4d}  training MSE {losses[-1]:.5f}")
    return {
        "losses": losses,
        "test_mse": float(loss(**test, **params)["L"]),
        "zero_mse": float(np.mean(clean_test[:, 1:] ** 2)),
        "persistence_mse": float(np.mean((noisy_test[:, :-1] - clean_test[:, 1:]) ** 2)),
        "grad_check_error": grad_error,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    gradient = eg.grad(MODEL, wrt=PARAMETERS)
    print("backprop through time for the LSTM cell (the adjoints, a recurrence running backwards):")
    for stmt in gradient.statements:
        if stmt.target in ("dLdh", "dLdc"):
            print(f"  {stmt}")
    result = train(args.steps, args.hidden, args.epochs, seed=args.seed, verbose=True)
    print(f"training MSE: first epoch {result['losses'][0]:.4f}, last {result['losses'][-1]:.4f}; "
          f"test MSE {result['test_mse']:.4f} (predict zero: {result['zero_mse']:.4f}, "
          f"repeat the noisy value: {result['persistence_mse']:.4f})")
    return result


if __name__ == "__main__":
    main()

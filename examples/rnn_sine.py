"""An RNN trained by backpropagation through time on noisy sine waves of different lengths.

The guide's recursion ``s_t = tanh(x_t W + s_{t-1} U + b)`` (``s_0 = 0``) is written
once, with the time as an index (LANGUAGE.md §12)::

    s[t, n, h] = tanh(x[t, n] W_h + s[t-1, n, k] U_kh + b_h)

A linear read-out predicts, at every step, the next value of the clean wave from the
noisy values seen so far.  ``eg.grad`` derives backprop through time once, as a
recurrence running backwards (``dLds[t]`` reads ``dLds[t+1]``), and the shared
parameters' gradients as sums over the steps; ``eg.compile`` makes it one loop that
serves every sequence length, so the batches here have lengths 10 to 25 with no new
code.  The guide's own way, unrolled with ``eg.ProgramBuilder`` (one name per step),
gives the same gradient (``unrolled_program``).  Plain full-batch Adam trains it; the
gradient is checked once against central differences of the loss.

Run ``python examples/rnn_sine.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

import eingrad as eg

PARAMETERS = ["W", "U", "b", "V", "c"]

#: The RNN and its mean squared error, for any number of steps |t| and sequences |n|.
MODEL = """
s[t, n, h] = tanh(x[t, n] W_h + s[t-1, n, k] U_kh + b_h)
e[t, n] = s[t, n, h] V_h + c - y[t, n]
L = sum_{t,n}(e[t, n]^2) / (|t| |n|)
"""


def rnn_program() -> eg.Program:
    """The RNN as a recurrence along ``t``: ``x[t, n]`` is the noisy input at step t for
    sequence n, ``y[t, n]`` the target (the clean value at step t + 1), ``e`` the error."""
    return eg.parse(MODEL)


def unrolled_program(steps: int) -> eg.Program:
    """The same RNN unrolled over ``steps`` steps, the guide's way (one name per step)."""
    builder = eg.ProgramBuilder()
    builder.add("s1_nh = tanh(x1_n W_h + b_h)")  # s0 = 0
    for t in range(2, steps + 1):
        builder.add(f"s{t}_nh = tanh(x{t}_n W_h + s{t - 1}_nk U_kh + b_h)")
    for t in range(1, steps + 1):
        builder.add(f"e{t}_n = s{t}_nh V_h + c - y{t}_n")
    total = " + ".join(f"sum_n(e{t}_n^2)" for t in range(1, steps + 1))
    builder.add(f"L = ({total}) / (|n| * {steps})")
    return builder.build()


def make_data(sequences: int, steps: int, noise: float, rng: np.random.Generator):
    """Sine waves of random frequency, phase and amplitude: noisy inputs ``x[t, n]`` and the
    clean next values ``y[t, n]``, with the whole waves (sequence first) for the baselines."""
    freq = rng.uniform(0.15, 0.45, size=(sequences, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(sequences, 1))
    amp = rng.uniform(0.5, 1.0, size=(sequences, 1))
    t = np.arange(steps + 1)[None, :]
    clean = amp * np.sin(freq * t + phase)
    noisy = clean + noise * rng.standard_normal(clean.shape)
    data = {"x": np.ascontiguousarray(noisy[:, :-1].T), "y": np.ascontiguousarray(clean[:, 1:].T)}
    return data, noisy, clean


def init_params(hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "W": rng.standard_normal(hidden),
        "U": rng.standard_normal((hidden, hidden)) * (0.5 / np.sqrt(hidden)),
        "b": np.zeros(hidden),
        "V": rng.standard_normal(hidden) * (1.0 / np.sqrt(hidden)),
        "c": np.zeros(()),
    }


def finite_difference_check(
    loss, gradients: dict[str, np.ndarray], params: dict, data: dict, rng: np.random.Generator, eps=1e-6
) -> float:
    """Largest relative error between ``<dL/dθ, v>`` and the central difference of L along a
    random direction v, over every parameter θ.  ``loss`` is the compiled forward pass."""
    worst = 0.0
    for name in PARAMETERS:
        v = rng.standard_normal(np.shape(params[name]))
        plus = {**params, name: params[name] + eps * v}
        minus = {**params, name: params[name] - eps * v}
        numeric = (float(loss(**data, **plus)["L"]) - float(loss(**data, **minus)["L"])) / (2 * eps)
        exact = float(np.sum(gradients[name] * v))
        worst = max(worst, abs(exact - numeric) / max(abs(exact), abs(numeric), 1e-12))
    return worst


class Adam:
    """Adam on a dict of numpy arrays, updated in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for k, g in grads.items():
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * g
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * g * g
            m_hat = self.m[k] / (1 - self.beta1**self.t)
            v_hat = self.v[k] / (1 - self.beta2**self.t)
            params[k] = params[k] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def train(
    lengths: tuple[int, ...] = (10, 15, 20, 25),
    hidden: int = 24,
    epochs: int = 600,
    sequences: int = 128,
    noise: float = 0.1,
    lr: float = 0.01,
    seed: int = 0,
    verbose: bool = False,
) -> dict:
    """Train on one batch per length in ``lengths``, a batch per epoch in turn; returns the
    loss per epoch, the test MSE (sequences of the longest length), two baselines, the
    gradient check, and how many functions were compiled (one serves every length)."""
    rng = np.random.default_rng(seed)
    program = rnn_program()
    gradient = eg.grad(program, wrt=PARAMETERS)
    step = eg.compile(gradient, outputs=["L", *(f"dLd{p}" for p in PARAMETERS)])
    loss = eg.compile(program, outputs=["L"])
    batches = [make_data(sequences // len(lengths) or 1, length, noise, rng)[0] for length in lengths]
    test, noisy_test, clean_test = make_data(sequences, max(lengths), noise, rng)
    params = init_params(hidden, rng)

    out = step(**batches[0], **params)
    grad_error = finite_difference_check(loss, {p: out[f"dLd{p}"] for p in PARAMETERS}, params, batches[0], rng)
    if verbose:
        print(f"gradient check at the initial parameters: max relative error {grad_error:.1e}")

    optimizer = Adam(params, lr)
    losses = []
    for epoch in range(epochs):
        out = step(**batches[epoch % len(batches)], **params)
        losses.append(float(out["L"]))
        optimizer.step(params, {p: out[f"dLd{p}"] for p in PARAMETERS})
        if verbose and (epoch % max(1, epochs // 10) == 0 or epoch == epochs - 1):
            print(f"  epoch {epoch + 1:4d}  sequences of {len(batches[epoch % len(batches)]['x']):2d} steps"
                  f"  training MSE {losses[-1]:.5f}")

    test_mse = float(loss(**test, **params)["L"])
    return {
        "losses": losses,
        "test_mse": test_mse,
        # Predicting the next value as the current noisy one, and as zero (the signal's power).
        "persistence_mse": float(np.mean((noisy_test[:, :-1] - clean_test[:, 1:]) ** 2)),
        "zero_mse": float(np.mean(clean_test[:, 1:] ** 2)),
        "grad_check_error": grad_error,
        "compiled_functions": len(step._cache),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 15, 20, 25], help="sequence lengths")
    parser.add_argument("--hidden", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("backprop through time (eg.grad of the recurrence), derived once for every length:")
    print("  " + str(eg.grad(rnn_program(), wrt=PARAMETERS)).replace("\n", "\n  "))
    print(f"\ntraining the RNN on sequences of {', '.join(map(str, args.lengths))} steps, "
          f"{args.hidden} hidden units:")
    result = train(tuple(args.lengths), args.hidden, args.epochs, seed=args.seed, verbose=True)
    print(f"training MSE: first epoch {result['losses'][0]:.4f}, last {result['losses'][-1]:.4f} "
          f"({result['losses'][0] / result['losses'][-1]:.0f}× lower)")
    print(f"test MSE {result['test_mse']:.4f}; baselines: repeat the current noisy value "
          f"{result['persistence_mse']:.4f}, predict zero {result['zero_mse']:.4f}")
    print(f"compiled gradient functions for {len(args.lengths)} lengths: {result['compiled_functions']}")
    return result


if __name__ == "__main__":
    main()

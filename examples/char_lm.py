"""A character-level language model with integer indexing (LANGUAGE.md §10).

Each example is a window of the three previous characters (integer inputs ``x1``,
``x2``, ``x3``) and the next character (``y``).  Each character reads its row of the
embedding table, ``E[x1[n], e]`` (a gather); a tanh layer mixes the window; the loss
is the mean softmax cross-entropy, which picks the logit of the next character with
``Z[n, y[n]]``: no one-hot matrix anywhere.  ``eg.grad`` derives the backward pass,
in which the embedding's gradient is a scatter-add written with the delta
``δ[c, x1[n]]``; ``eg.compile`` turns it into numpy code (``np.add.at``/``bincount``).

It trains with Adam on the small text that ships with it (examples/data/tiny_text.txt);
the loss falls from log(vocabulary) to well below it.  Run
``python examples/char_lm.py`` (``--steps 600``) or import :func:`train`.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import eingrad as eg

MODEL = """
H[n,h] = tanh(E[x1[n], e] A1[e,h] + E[x2[n], e] A2[e,h] + E[x3[n], e] A3[e,h] + b[h])
Z[n,v] = H[n,h] U[h,v] + bo[v]
L = sum_n(logsumexp_v(Z[n,v]) - Z[n, y[n]]) / |n|
"""
"""``n`` is the batch, ``e`` the embedding width, ``h`` the hidden units, ``v`` the vocabulary."""

PARAMETERS = ["E", "A1", "A2", "A3", "b", "U", "bo"]
TEXT = pathlib.Path(__file__).resolve().parent / "data" / "tiny_text.txt"
WINDOW = 3


def load_text(path: pathlib.Path = TEXT) -> tuple[np.ndarray, list[str]]:
    """The text as integer codes (int32) and its alphabet."""
    text = path.read_text(encoding="utf-8").replace("\n", " ")
    alphabet = sorted(set(text))
    code = {ch: k for k, ch in enumerate(alphabet)}
    return np.array([code[ch] for ch in text], dtype=np.int32), alphabet


def windows(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Every window of ``WINDOW`` characters and the character after it."""
    n = len(codes) - WINDOW
    out = {f"x{k + 1}": codes[k : k + n] for k in range(WINDOW)}
    out["y"] = codes[WINDOW : WINDOW + n]
    return out


def build():
    """The compiled loss-and-gradient step."""
    gradient = eg.grad(eg.parse(MODEL), wrt=PARAMETERS)
    return eg.compile(gradient, outputs=["L", *(f"dLd{p}" for p in PARAMETERS)])


def init_params(vocabulary: int, width: int, hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {"E": rng.standard_normal((vocabulary, width)) * 0.5}
    for k in range(WINDOW):
        params[f"A{k + 1}"] = rng.standard_normal((width, hidden)) / np.sqrt(WINDOW * width)
    params["b"] = np.zeros(hidden)
    params["U"] = rng.standard_normal((hidden, vocabulary)) / np.sqrt(hidden)
    params["bo"] = np.zeros(vocabulary)
    return params


def train(steps: int = 600, width: int = 8, hidden: int = 48, batch: int = 128, lr: float = 0.02,
          seed: int = 0, verbose: bool = False) -> dict:
    """Adam on random minibatches; returns the loss on the whole text before and after, and
    the per-step minibatch losses."""
    codes, alphabet = load_text()
    data = windows(codes)
    rng = np.random.default_rng(seed)
    params = init_params(len(alphabet), width, hidden, rng)
    step = build()
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    losses = []
    first = float(step(**data, **params)["L"])
    for t in range(1, steps + 1):
        pick = rng.integers(0, len(data["y"]), batch)
        out = step(**{k: v[pick] for k, v in data.items()}, **params)
        losses.append(float(out["L"]))
        for name in PARAMETERS:
            g = out[f"dLd{name}"]
            m[name] = 0.9 * m[name] + 0.1 * g
            s[name] = 0.999 * s[name] + 0.001 * g * g
            params[name] -= lr * (m[name] / (1 - 0.9**t)) / (np.sqrt(s[name] / (1 - 0.999**t)) + 1e-8)
        if verbose and t % 100 == 0:
            print(f"step {t:4d}  minibatch loss {losses[-1]:.3f}")
    last = float(step(**data, **params)["L"])
    return {"initial": first, "final": last, "losses": losses, "uniform": float(np.log(len(alphabet))),
            "params": params, "alphabet": alphabet}


def sample(params: dict, alphabet: list[str], start: str, length: int, rng: np.random.Generator) -> str:
    """Characters drawn from the trained model, one after another."""
    forward = eg.compile(eg.parse(MODEL).needed_for(["Z"]))
    code = {ch: k for k, ch in enumerate(alphabet)}
    text = start
    for _ in range(length):
        window = {f"x{k + 1}": np.array([code[text[-WINDOW + k]]]) for k in range(WINDOW)}
        z = forward(**window, **{k: params[k] for k in PARAMETERS})["Z"][0]
        p = np.exp(z - z.max())
        text += alphabet[int(rng.choice(len(alphabet), p=p / p.sum()))]
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    print(eg.grad(eg.parse(MODEL), wrt=["E"]))
    result = train(steps=args.steps, verbose=True)
    print(f"loss on the whole text: {result['initial']:.3f} -> {result['final']:.3f} "
          f"(uniform guess: {result['uniform']:.3f})")
    print(repr(sample(result["params"], result["alphabet"], "the", 80, np.random.default_rng(0))))


if __name__ == "__main__":
    main()

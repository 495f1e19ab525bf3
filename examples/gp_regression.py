"""Gaussian process regression: the length scale and the noise level fitted by gradient descent
on the negative log marginal likelihood, written in index notation.

With a squared-exponential kernel of length scale ``ℓ = exp(a)`` and noise variance
``σ² = exp(b)`` (logs, so that both stay positive), the objective is three lines::

    D_nm = (x_n - x_m)^2
    K_nm = exp(-0.5 D_nm exp(-2 a)) + exp(b) δ_nm
    L = 0.5 y_n inv_nm(K_nm) y_m + 0.5 logdet_nm(K_nm)

(the constant ½ n log 2π left out).  ``eg.grad`` differentiates through the inverse
and the log-determinant by the Matrix Cookbook's identities,
``∂ log|det K|/∂K = K⁻ᵀ`` and ``∂(K⁻¹) = −K⁻¹ ∂K K⁻¹``; the compiled gradient
forms ``K⁻¹`` once and uses it for ``K⁻¹ y`` too (no second factorisation).

Run ``python examples/gp_regression.py`` (noisy samples of sin(x); prints the
fitted ℓ and σ², and the posterior mean's error at test points).
"""

from __future__ import annotations

import argparse

import numpy as np

import eingrad as eg

OBJECTIVE = """\
D_nm = (x_n - x_m)^2
K_nm = exp(-0.5 D_nm exp(-2 a)) + exp(b) δ_nm
L = 0.5 y_n inv_nm(K_nm) y_m + 0.5 logdet_nm(K_nm)"""


def build():
    """The gradient program of ``OBJECTIVE`` in (a, b) and its compiled loss-and-gradient."""
    gradient = eg.grad(OBJECTIVE, wrt=["a", "b"])
    return gradient, eg.compile(gradient, outputs=["L", "dLda", "dLdb"])


def data(n: int, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy samples of sin(x) at points uniform in [-3, 3]."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-3.0, 3.0, n))
    return x, np.sin(x) + noise * rng.standard_normal(n)


def numpy_loss_and_grad(x: np.ndarray, y: np.ndarray, a: float, b: float) -> tuple[float, float, float]:
    """The same objective and gradient, written by hand with numpy (the check)."""
    D = (x[:, None] - x[None, :]) ** 2
    E = np.exp(-0.5 * D * np.exp(-2 * a))
    K = E + np.exp(b) * np.eye(len(x))
    Kinv = np.linalg.inv(K)
    alpha = Kinv @ y
    loss = 0.5 * y @ alpha + 0.5 * np.linalg.slogdet(K)[1]
    G = 0.5 * (Kinv - np.outer(alpha, alpha))  # ∂L/∂K
    return float(loss), float(np.sum(G * E * D * np.exp(-2 * a))), float(np.exp(b) * np.trace(G))


def fit(n: int = 60, steps: int = 300, rate: float = 0.02, verbose: bool = False) -> dict:
    """Gradient descent on (a, b) from ℓ = 3, σ² = 0.5; returns the fit and its history."""
    x, y = data(n)
    _, loss_and_grad = build()
    a, b = np.log(3.0), np.log(0.5)
    losses = []
    for step in range(steps):
        out = loss_and_grad(x=x, y=y, a=a, b=b)
        losses.append(float(out["L"]))
        if verbose and step % 50 == 0:
            print(f"  step {step:3d}  L = {losses[-1]:10.5f}  ℓ = {np.exp(a):.4f}  σ² = {np.exp(b):.5f}")
        # A step per parameter scaled by n: the loss grows with the number of points.
        a -= rate * float(out["dLda"]) / n * 10
        b -= rate * float(out["dLdb"]) / n * 10
    x_test = np.linspace(-2.5, 2.5, 50)
    mean = posterior_mean(x, y, x_test, np.exp(a), np.exp(b))
    return {
        "length_scale": float(np.exp(a)),
        "noise": float(np.exp(b)),
        "losses": losses,
        "test_rmse": float(np.sqrt(np.mean((mean - np.sin(x_test)) ** 2))),
        "a": float(a),
        "b": float(b),
        "x": x,
        "y": y,
    }


def posterior_mean(x, y, x_test, length_scale, noise):
    """The GP's posterior mean at ``x_test``: k(x_test, x) (K + σ² I)⁻¹ y, compiled from index notation."""
    mean = eg.compile(
        "K_nm = exp(-0.5 (x_n - x_m)^2 / l^2) + s δ_nm\n"
        "k_tn = exp(-0.5 (z_t - x_n)^2 / l^2)\n"
        "f_t = k_tn inv_nm(K_nm) y_m",
        outputs=["f"],
    )
    return mean(x=x, y=y, z=x_test, l=length_scale, s=noise)["f"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="number of training points")
    parser.add_argument("--steps", type=int, default=300, help="gradient-descent steps")
    args = parser.parse_args(argv)
    gradient, loss_and_grad = build()
    print("objective:\n  " + OBJECTIVE.replace("\n", "\n  "))
    print("gradient program (eg.grad):\n  " + str(gradient).replace("\n", "\n  "))
    print(f"\ngradient descent on {args.n} noisy samples of sin(x):")
    result = fit(args.n, args.steps, verbose=True)
    print(f"fitted ℓ = {result['length_scale']:.4f}, σ² = {result['noise']:.5f}")
    print(f"posterior mean's RMS error against sin at 50 test points: {result['test_rmse']:.4f}")
    return result


if __name__ == "__main__":
    main()

"""A shared corpus of eingrad programs, each with an independent numpy oracle.

Every entry names a program, the shapes of its inputs (``()`` for a scalar,
which :func:`random_inputs` passes as a Python float), optional declared index
sizes, and an ``oracle``: plain numpy (``@``, ``np.trace``, ``np.einsum`` with
explicit subscripts, ``np.logaddexp``...) that computes every target from the
same inputs.  Oracles never call eingrad.

The corpus covers every example of the second half of the seed guide
(/work/shared/reference/gradients-guide.txt, "Dimensions and Indices" to the
end) and every construct of LANGUAGE.md §1-5.  Other test modules (gradients,
compiled backends, printing round trips) reuse it.

Sizes differ per index (2, 3, 4, 5...) so that a transposed axis cannot go
unnoticed.  Inputs listed in ``positive`` are drawn in [0.5, 2) (for log,
sqrt, fractional powers and divisors); all others are standard normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Entry", "CORPUS", "BY_NAME", "random_inputs"]


@dataclass(frozen=True)
class Entry:
    name: str
    text: str
    shapes: dict[str, tuple[int, ...]]
    oracle: Callable[..., dict[str, np.ndarray]]
    sizes: dict[str, int] | None = None  # declared index sizes (indices only in deltas)
    positive: frozenset[str] = field(default_factory=frozenset)  # inputs that must be > 0
    warns: bool = False  # parsing emits eg.SurprisingSumWarning

    def __repr__(self) -> str:  # short ids in pytest output
        return f"Entry({self.name!r})"


def random_inputs(entry: Entry, rng: np.random.Generator, dtype: Any = np.float64) -> dict[str, Any]:
    """Random inputs for ``entry``: arrays of ``dtype``; scalars as Python floats.

    With an integer ``dtype``, arrays hold small integers (positive ones, 1..3,
    for ``entry.positive``) and scalars are Python ints.
    """
    dtype = np.dtype(dtype)
    out: dict[str, Any] = {}
    for name, shape in entry.shapes.items():
        positive = name in entry.positive
        if dtype.kind in "iu":
            low, high = (1, 4) if positive else (-3, 4)
            value = rng.integers(low, high, size=shape).astype(dtype)
            out[name] = int(value) if shape == () else value
            continue
        value = rng.uniform(0.5, 2.0, size=shape) if positive else rng.normal(size=shape)
        out[name] = float(value) if shape == () else value.astype(dtype)
    return out


# ---------------------------------------------------------------- oracle helpers
# Small, obviously-correct numpy helpers used by several oracles.


def _lse(a: np.ndarray, axis=None) -> np.ndarray:
    """log Σ exp along ``axis``, via np.logaddexp (stable)."""
    if axis is None:
        return np.logaddexp.reduce(np.ravel(a))
    if isinstance(axis, tuple):
        for ax in sorted(axis, reverse=True):
            a = np.logaddexp.reduce(a, axis=ax)
        return a
    return np.logaddexp.reduce(a, axis=axis)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.0)


def _mlp(X, W1, b1, W2, b2, Y):
    H = _relu(X @ W1 + b1)
    Z = H @ W2 + b2
    L = np.sum(_lse(Z, axis=1)) - np.sum(Z * Y)
    return {"H": H, "Z": Z, "L": L}


def _rnn(x1, x2, x3, s0, W, U, b, v):
    s1 = np.tanh(x1 @ W + s0 @ U + b)
    s2 = np.tanh(x2 @ W + s1 @ U + b)
    s3 = np.tanh(x3 @ W + s2 @ U + b)
    return {"s1": s1, "s2": s2, "s3": s3, "L": np.sum(s3 @ v)}


def _logreg(X, y, w, lam):
    return {"L": np.sum(np.logaddexp(0.0, -y * (X @ w))) + 0.5 * lam * (w @ w)}


def _logreg_two_statements(X, y, w, lam):
    z = X @ w
    return {"z": z, "L": np.sum(np.log1p(np.exp(-y * z))) + 0.5 * lam * (w @ w)}


def _softmax(Z):
    return {"P": np.exp(Z - _lse(Z, axis=1)[:, None])}


def _eye(n: int) -> np.ndarray:
    return np.eye(n)


def _delta3(n: int) -> np.ndarray:
    d = np.zeros((n, n, n))
    d[np.arange(n), np.arange(n), np.arange(n)] = 1.0
    return d


E = Entry
POS = frozenset

# ---------------------------------------------------------------- the corpus
CORPUS: list[Entry] = [
    # --- the guide: rewriting familiar operations
    E("dot", "p = v_i u_i", {"v": (5,), "u": (5,)}, lambda v, u: {"p": np.dot(v, u)}),
    E("outer", "A_ij = u_i v_j", {"u": (3,), "v": (4,)}, lambda u, v: {"A": np.outer(u, v)}),
    E("matvec", "w_j = A_ij v_i", {"A": (3, 4), "v": (3,)}, lambda A, v: {"w": A.T @ v}),
    E("matmul", "C_ik = A_ij B_jk", {"A": (2, 3), "B": (3, 4)}, lambda A, B: {"C": A @ B}),
    E("elementwise_product", "p_i = v_i u_i", {"v": (4,), "u": (4,)}, lambda v, u: {"p": v * u}),
    E(
        "weighted_matmul",
        "C_ik = A_ij B_jk W_ik",
        {"A": (2, 3), "B": (3, 4), "W": (2, 4)},
        lambda A, B, W: {"C": W * (A @ B)},
    ),
    # --- the guide: operations with more than two dimensions
    E(
        "contract_two_of_three",
        "C_k = B_ijk A_ij",
        {"B": (2, 3, 4), "A": (2, 3)},
        lambda B, A: {"C": np.einsum("ijk,ij->k", B, A)},
    ),
    E(
        "contract_one_of_three",
        "C_jkl = B_ijk A_il",
        {"B": (2, 3, 4), "A": (2, 5)},
        lambda B, A: {"C": np.einsum("ijk,il->jkl", B, A)},
    ),
    E(
        "outer_five_dims",
        "C_ijklm = B_ijk A_lm",
        {"B": (2, 3, 4), "A": (5, 2)},
        lambda B, A: {"C": np.multiply.outer(B, A)},
    ),
    # --- the guide: sizes still matter / derivatives as programs
    E("outer_named_B", "B_ij = u_i v_j", {"u": (2,), "v": (3,)}, lambda u, v: {"B": np.outer(u, v)}),
    E(
        "outer_plus_matrix",
        "C_ij = u_i v_j + A_ij",
        {"u": (2,), "v": (3,), "A": (2, 3)},
        lambda u, v, A: {"C": np.outer(u, v) + A},
    ),
    E("linear_scalar", "f = w_i v_i", {"w": (4,), "v": (4,)}, lambda w, v: {"f": w @ v}),
    E("linear_vector", "f_i = W_ij v_j", {"W": (3, 4), "v": (4,)}, lambda W, v: {"f": W @ v}),
    E("batch_linear", "Y_ik = X_ij W_jk", {"X": (5, 3), "W": (3, 2)}, lambda X, W: {"Y": X @ W}),
    E(
        "delta_eats_index",
        "v_i = A_ij δ_jk B_ik",
        {"A": (3, 4), "B": (3, 4)},
        lambda A, B: {"v": np.sum(A * B, axis=1)},
    ),
    E(
        "dfdW_as_program",  # ∂f_i/∂W_jk = v_k δ_ij: i and j occur only in the delta
        "D_ijk = v_k δ_ij",
        {"v": (4,)},
        lambda v: {"D": np.einsum("ij,k->ijk", _eye(3), v)},
        sizes={"i": 3},
    ),
    E(
        "dYdX_as_program",  # ∂Y_ij/∂X_kl = W_lj δ_ik
        "D_ijkl = W_lj δ_ik",
        {"W": (4, 5)},
        lambda W: {"D": np.einsum("ik,lj->ijkl", _eye(3), W)},
        sizes={"k": 3},
    ),
    E(
        "dYdW_as_program",  # ∂Y_ij/∂W_kl = X_ik δ_jl
        "D_ijkl = X_ik δ_jl",
        {"X": (2, 3)},
        lambda X: {"D": np.einsum("ik,jl->ijkl", X, _eye(4))},
        sizes={"j": 4},
    ),
    # --- the guide: the SVD
    E(
        "svd_full",
        "A_ij = U_ik S_kl V_lj",
        {"U": (4, 3), "S": (3, 3), "V": (3, 5)},
        lambda U, S, V: {"A": U @ S @ V},
    ),
    E(
        "svd_delta",
        "A_ij = U_ik σ_k δ_kl V_lj",
        {"U": (4, 3), "σ": (3,), "V": (3, 5)},
        lambda U, σ, V: {"A": U @ np.diag(σ) @ V},
        positive=POS({"σ"}),
    ),
    E(
        "svd_compact",
        "A_ij = U_ik σ_k V_kj",
        {"U": (4, 3), "σ": (3,), "V": (3, 5)},
        lambda U, σ, V: {"A": (U * σ) @ V},
        positive=POS({"σ"}),
    ),
    E(
        "affine_broadcast_bias",
        "Y_nh = X_nd W_dh + b_h",
        {"X": (5, 3), "W": (3, 2), "b": (2,)},
        lambda X, W, b: {"Y": X @ W + b},
    ),
    E(
        "transposed_operand",  # the guide: C_ik = A_ij B_kj works where A_ij B_jk would not
        "C_ik = A_ij B_kj",
        {"A": (3, 4), "B": (5, 4)},
        lambda A, B: {"C": A @ B.T},
    ),
    E("transpose", "B_ji = A_ij", {"A": (2, 3)}, lambda A: {"B": A.T}),
    # --- repeated indices inside one tensor, traces
    E("trace", "t = A_ii", {"A": (4, 4)}, lambda A: {"t": np.trace(A)}),
    E("diagonal", "d_i = A_ii", {"A": (4, 4)}, lambda A: {"d": np.diag(A)}),
    E("partial_diagonal", "D_ij = B_iij", {"B": (3, 3, 4)}, lambda B: {"D": np.einsum("iij->ij", B)}),
    E(
        "trace_of_product",
        "t = A_ij B_jk C_ki",
        {"A": (2, 3), "B": (3, 4), "C": (4, 2)},
        lambda A, B, C: {"t": np.trace(A @ B @ C)},
    ),
    E(
        "bilinear_form",
        "s = x_i A_ij y_j",
        {"x": (3,), "A": (3, 4), "y": (4,)},
        lambda x, A, y: {"s": x @ A @ y},
    ),
    # --- 3- and 4-index contractions, chains
    E(
        "chain_of_three",
        "D_il = A_ij B_jk C_kl",
        {"A": (2, 3), "B": (3, 4), "C": (4, 5)},
        lambda A, B, C: {"D": A @ B @ C},
    ),
    E(
        "chain_of_four",
        "E_im = A_ij B_jk C_kl D_lm",
        {"A": (2, 3), "B": (3, 4), "C": (4, 5), "D": (5, 2)},
        lambda A, B, C, D: {"E": A @ B @ C @ D},
    ),
    E(
        "three_index_pair",
        "C_il = A_ijk B_jkl",
        {"A": (2, 3, 4), "B": (3, 4, 5)},
        lambda A, B: {"C": np.einsum("ijk,jkl->il", A, B)},
    ),
    E(
        "four_index_full",
        "s = T_ijkl A_ij B_kl",
        {"T": (2, 3, 4, 5), "A": (2, 3), "B": (4, 5)},
        lambda T, A, B: {"s": np.einsum("ijkl,ij,kl->", T, A, B)},
    ),
    E(
        "four_index_partial",
        "F_im = T_ijkl A_jk G_lm",
        {"T": (2, 3, 4, 5), "A": (3, 4), "G": (5, 3)},
        lambda T, A, G: {"F": np.einsum("ijkl,jk,lm->im", T, A, G)},
    ),
    E(
        "index_three_times",
        "s = x_i y_i z_i",
        {"x": (5,), "y": (5,), "z": (5,)},
        lambda x, y, z: {"s": np.sum(x * y * z)},
    ),
    E(
        "index_three_times_with_free",
        "y_j = x_i A_ij x_i",
        {"x": (3,), "A": (3, 4)},
        lambda x, A: {"y": (x**2) @ A},
    ),
    # --- Kronecker deltas with 2, 3 and 4 indices
    E("delta2_identity", "y_i = δ_ij x_j", {"x": (4,)}, lambda x: {"y": _eye(4) @ x}),
    E("delta2_ascii_braces", "y_i = delta_{ij} x_j", {"x": (3,)}, lambda x: {"y": x.copy()}),
    E(
        "delta3_contract",
        "d_i = δ_ijk T_ijk",
        {"T": (3, 3, 3)},
        lambda T: {"d": np.einsum("ijk,ijk->i", _delta3(3), T)},
    ),
    E(
        "delta3_build",
        "T_ijk = δ_ijk x_k",
        {"x": (3,)},
        lambda x: {"T": _delta3(3) * x},
    ),
    E(
        "delta4_contract",
        "s = δ_ijkl Q_ijkl",
        {"Q": (3, 3, 3, 3)},
        lambda Q: {"s": sum(Q[n, n, n, n] for n in range(3))},
    ),
    E(
        "delta4_declared",  # a 4-index delta whose size no array fixes
        "D_ijklm = δ_ijkl x_m",
        {"x": (3,)},
        lambda x: {"D": np.einsum("ij,jk,kl,m->ijklm", _eye(2), _eye(2), _eye(2), x)},
        sizes={"l": 2},
    ),
    # --- every elementwise function
    E("exp", "y_i = exp(x_i)", {"x": (4,)}, lambda x: {"y": np.exp(x)}),
    E("log", "y_i = log(x_i^2 + 1)", {"x": (4,)}, lambda x: {"y": np.log1p(x * x)}),
    E("log_positive", "y_ij = log(P_ij)", {"P": (2, 3)}, lambda P: {"y": np.log(P)}, positive=POS({"P"})),
    E("sqrt", "y_i = sqrt(exp(x_i))", {"x": (4,)}, lambda x: {"y": np.exp(x / 2)}),
    E("tanh", "y_i = tanh(A_ij x_j)", {"A": (3, 4), "x": (4,)}, lambda A, x: {"y": np.tanh(A @ x)}),
    E("sigmoid", "y_i = sigmoid(x_i)", {"x": (5,)}, lambda x: {"y": 1 / (1 + np.exp(-x))}),
    E(
        "relu",
        "h_i = relu(A_ij x_j + b_i)",
        {"A": (3, 4), "x": (4,), "b": (3,)},
        lambda A, x, b: {"h": np.maximum(A @ x + b, 0.0)},
    ),
    E("softplus", "y_i = softplus(x_i)", {"x": (5,)}, lambda x: {"y": np.log(1 + np.exp(x))}),
    E("abs", "y_ij = abs(A_ij) - A_ij", {"A": (2, 3)}, lambda A: {"y": np.abs(A) - A}),
    E("sin_cos", "y_i = sin(x_i) cos(2 x_i)", {"x": (4,)}, lambda x: {"y": np.sin(x) * np.cos(2 * x)}),
    E(
        "functions_nested",
        "s = sum_i(cos(sin(x_i)) + sqrt(x_i^2 + 1) abs(x_i))",
        {"x": (4,)},
        lambda x: {"s": np.sum(np.cos(np.sin(x)) + np.sqrt(x * x + 1) * np.abs(x))},
    ),
    # --- division, powers, unary minus, numbers
    E(
        "division",
        "y_i = x_i / (z_i^2 + 1)",
        {"x": (4,), "z": (4,)},
        lambda x, z: {"y": x / (z * z + 1)},
    ),
    E(
        "divide_by_scalar",
        "R_ij = A_ij / s",
        {"A": (2, 3), "s": ()},
        lambda A, s: {"R": A / s},
        positive=POS({"s"}),
    ),
    E("sigmoid_by_hand", "y_i = 1 / (1 + exp(-x_i))", {"x": (4,)}, lambda x: {"y": _sigmoid(x)}),
    E("power_integer", "y_i = x_i^3 - x_i**2", {"x": (4,)}, lambda x: {"y": x**3 - x**2}),
    E("power_negative", "y_i = (x_i^2 + 1)^-2", {"x": (4,)}, lambda x: {"y": 1 / (x * x + 1) ** 2}),
    E(
        "power_negative_parenthesised",
        "y_i = p_i^(-1) + p_i^(-3)",
        {"p": (4,)},
        lambda p: {"y": 1 / p + 1 / p**3},
        positive=POS({"p"}),
    ),
    E(
        "power_fractional",
        "y_i = p_i^0.5 + p_i**1.5 + p_i^(-0.5)",
        {"p": (4,)},
        lambda p: {"y": np.sqrt(p) + p * np.sqrt(p) + 1 / np.sqrt(p)},
        positive=POS({"p"}),
    ),
    E("norm", "n = (x_i x_i)^0.5", {"x": (5,)}, lambda x: {"n": np.linalg.norm(x)}),
    E("power_binds_tighter_than_minus", "y_i = -x_i^2", {"x": (4,)}, lambda x: {"y": -(x * x)}),
    E(
        "unary_minus",
        "y_i = -x_i + 2 z_i - -x_i",
        {"x": (4,), "z": (4,)},
        lambda x, z: {"y": 2 * z},
    ),
    E("negated_dot", "s = -x_i x_i", {"x": (4,)}, lambda x: {"s": -np.dot(x, x)}),
    E(
        "numbers",
        "y_i = 1e-3 x_i + 2.5 * x_i * 2 - 0.5",
        {"x": (4,)},
        lambda x: {"y": 1e-3 * x + 5 * x - 0.5},
    ),
    # --- explicit binders
    E("sum_rows", "r_i = sum_k(A_ik)", {"A": (3, 4)}, lambda A: {"r": A.sum(axis=1)}),
    E(
        "sum_two_indices",
        "s = Σ_{k,l}(A_kl B_kl)",
        {"A": (3, 4), "B": (3, 4)},
        lambda A, B: {"s": np.einsum("kl,kl->", A, B)},
    ),
    E("sum_two_of_three", "y_i = sum_{k,l}(T_ikl)", {"T": (2, 3, 4)}, lambda T: {"y": T.sum(axis=(1, 2))}),
    E("sigma_sum_of_exp", "s = Σ_k(exp(x_k))", {"x": (4,)}, lambda x: {"s": np.exp(x).sum()}),
    E(
        "sum_of_logs",
        "L = sum_i(log(p_i))",
        {"p": (4,)},
        lambda p: {"L": np.log(p).sum()},
        positive=POS({"p"}),
    ),
    E("logsumexp_rows", "l_i = logsumexp_k(A_ik)", {"A": (3, 4)}, lambda A: {"l": _lse(A, axis=1)}),
    E("logsumexp_all", "s = logsumexp_{i,j}(A_ij)", {"A": (3, 4)}, lambda A: {"s": _lse(A)}),
    E("softmax", "P_nc = exp(Z_nc - logsumexp_k(Z_nk))", {"Z": (3, 4)}, _softmax),
    # --- index and tensor spellings
    E(
        "multi_letter_brackets",
        "Y[batch, out] = X[batch, hid] W[hid, out]",
        {"X": (4, 3), "W": (3, 2)},
        lambda X, W: {"Y": X @ W},
    ),
    E(
        "multi_letter_binder",
        "h[batch] = sum[hid](H_{batch,hid}) + c",
        {"H": (4, 3), "c": ()},
        lambda H, c: {"h": H.sum(axis=1) + c},
    ),
    E(
        "latex_comma_braces",
        "C_{i,k} = A_{i,j} B_{j,k}",
        {"A": (2, 3), "B": (3, 4)},
        lambda A, B: {"C": A @ B},
    ),
    E("latex_braces", "C_{ik} = A_{ij} B_{jk}", {"A": (2, 3), "B": (3, 4)}, lambda A, B: {"C": A @ B}),
    E("greek_indices", "y_α = A_αβ x_β", {"A": (3, 4), "x": (4,)}, lambda A, x: {"y": A @ x}),
    E(
        "names_with_digits",
        "Y2_ik = W1_ij X0_jk",
        {"W1": (2, 3), "X0": (3, 4)},
        lambda W1, X0: {"Y2": W1 @ X0},
    ),
    # --- scalars (passed as Python floats)
    E(
        "scalars_scale_shift",
        "y_i = a x_i + b",
        {"a": (), "x": (4,), "b": ()},
        lambda a, x, b: {"y": a * x + b},
    ),
    E(
        "scalars_only",
        "c = a b / (b^2 + 1) - a^2",
        {"a": (), "b": ()},
        lambda a, b: {"c": np.float64(a * b / (b * b + 1) - a * a)},
    ),
    # --- the summation rule: a + sums each term's own occurrences
    E("plus_per_term_constant", "s = x_i + c", {"x": (4,), "c": ()}, lambda x, c: {"s": x.sum() + c}),
    E(
        "plus_per_term_product",
        "y_i = A_ij x_j + b_i",
        {"A": (3, 4), "x": (4,), "b": (3,)},
        lambda A, x, b: {"y": A @ x + b},
    ),
    E(
        "plus_per_term_lone_index",
        "y_i = x_i + A_ij",
        {"x": (3,), "A": (3, 4)},
        lambda x, A: {"y": x + A.sum(axis=1)},
    ),
    E(
        "plus_inside_function",  # i summed over x_i alone, inside the exp (warns)
        "s = exp(x_i + 1)",
        {"x": (4,)},
        lambda x: {"s": np.exp(x.sum() + 1)},
        warns=True,
    ),
    E(
        "product_of_sum_contracts",
        "t = (x_i + y_i) z_i",
        {"x": (4,), "y": (4,), "z": (4,)},
        lambda x, y, z: {"t": (x + y) @ z},
    ),
    E(
        "surprising_log_of_sum",  # L = log(p_i) is log(Σ_i p_i) and warns
        "L = log(p_i)",
        {"p": (4,)},
        lambda p: {"L": np.log(p.sum())},
        positive=POS({"p"}),
        warns=True,
    ),
    E(
        "logistic_regression",
        "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
        {"y": (5,), "X": (5, 3), "w": (3,), "lam": ()},
        _logreg,
        positive=POS({"lam"}),
    ),
    # --- multi-statement programs
    E(
        "logistic_regression_two_statements",
        "z_i = X_ij w_j\nL = sum_i(log(1 + exp(-y_i z_i))) + 0.5 lam w_j w_j",
        {"X": (5, 3), "w": (3,), "y": (5,), "lam": ()},
        _logreg_two_statements,
        positive=POS({"lam"}),
    ),
    E(
        "mlp_softmax_cross_entropy",
        "H_nh = relu(X_nd W1_dh + b1_h)\n"
        "Z_nc = H_nh W2_hc + b2_c\n"
        "L = sum_n(logsumexp_c(Z_nc) - Z_nc Y_nc)",
        {"X": (5, 3), "W1": (3, 4), "b1": (4,), "W2": (4, 2), "b2": (2,), "Y": (5, 2)},
        _mlp,
    ),
    E(
        "rnn_three_steps",
        "# s_t = tanh(x_t W + s_{t-1} U + b), unrolled\n"
        "s1_nh = tanh(x1_nd W_dh + s0_nk U_kh + b_h)\n"
        "s2_nh = tanh(x2_nd W_dh + s1_nk U_kh + b_h)\n"
        "s3_nh = tanh(x3_nd W_dh + s2_nk U_kh + b_h)\n"
        "L = s3_nh v_h",
        {
            "x1": (2, 3),
            "x2": (2, 3),
            "x3": (2, 3),
            "s0": (2, 4),
            "W": (3, 4),
            "U": (4, 4),
            "b": (4,),
            "v": (4,),
        },
        _rnn,
    ),
    E(
        "semicolons_and_comments",
        "G_ij = A_ki A_kj; t = G_ii  # Gram matrix and its trace",
        {"A": (4, 3)},
        lambda A: {"G": A.T @ A, "t": np.trace(A.T @ A)},
    ),
    E(
        "later_statement_uses_earlier",
        "y_i = A_ij x_j\nz_i = y_i^2 + y_i\ns = z_i",
        {"A": (3, 4), "x": (4,)},
        lambda A, x: {"y": A @ x, "z": (A @ x) ** 2 + A @ x, "s": np.sum((A @ x) ** 2 + A @ x)},
    ),
]

BY_NAME: dict[str, Entry] = {e.name: e for e in CORPUS}
assert len(BY_NAME) == len(CORPUS), "corpus names must be unique"

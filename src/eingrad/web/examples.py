"""The examples in the page's menu: programs from the guide, with the fields that show them best."""

from __future__ import annotations

__all__ = ["EXAMPLES"]


def _rnn(steps: int = 3) -> str:
    """The guide's RNN, s_t = tanh(x_t W + s_{t-1} U + b), unrolled, with a squared-error loss."""
    lines = [f"s{t}_nh = tanh(x{t}_nd W_dh + s{t - 1}_nk U_kh + b_h)" for t in range(1, steps + 1)]
    lines.append(f"L = sum_{{n,h}}(0.5 (s{steps}_nh - y_nh)^2)")
    return "\n".join(lines)


# name, program, wrt, mode ("diff", "grad" or "hessian"), order
EXAMPLES: list[dict] = [
    {
        "name": "Affine layer (the guide's Y = XW + b)",
        "program": "Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(G_nh Y_nh)",
        "wrt": ["W"], "mode": "diff", "order": 1,
    },
    {
        "name": "Affine layer: the gradient program",
        "program": "Y_nh = X_nd W_dh + b_h",
        "wrt": ["W", "b"], "mode": "grad", "order": 1,
    },
    {
        "name": "f_i = W_ij v_j (a Jacobian with a delta)",
        "program": "f_i = W_ij v_j",
        "wrt": ["W"], "mode": "diff", "order": 1,
    },
    {
        "name": "The SVD: A = U diag(σ) Vᵀ, by σ",
        "program": "A_ij = U_ik σ_k V_kj",
        "wrt": ["σ"], "mode": "diff", "order": 1,
    },
    {
        "name": "Quadratic form xᵀAx: its Hessian",
        "program": "s = x_i A_ij x_j",
        "wrt": ["x"], "mode": "hessian", "order": 2,
    },
    {
        "name": "Logistic regression with weight decay",
        "program": "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
        "wrt": ["w"], "mode": "diff", "order": 1,
    },
    {
        "name": "Logistic regression: the Hessian (Newton's method)",
        "program": "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
        "wrt": ["w"], "mode": "hessian", "order": 2,
    },
    {
        "name": "MLP classifier: the gradient program",
        "program": (
            "H_nh = relu(X_nd W1_dh + b1_h)\n"
            "Z_nc = H_nh W2_hc + b2_c\n"
            "L = sum_n(logsumexp_c(Z_nc) - Y_nc Z_nc) / |n| + 0.5 lam (W1_dh W1_dh + W2_hc W2_hc)"
        ),
        "wrt": ["W1", "b1", "W2", "b2"], "mode": "grad", "order": 1,
    },
    {
        "name": "Softmax regression: softmax_c and cross-entropy",
        "program": "P_nc = softmax_c(X_nd W_dc)\nL = -sum_{n,c}(Y_nc log(P_nc)) / |n|",
        "wrt": ["W"], "mode": "grad", "order": 1,
    },
    {
        "name": "Hinge loss (a max) and a PPO-style clip",
        "program": "L = sum_i(max(0, 1 - y_i X_ij w_j)) + sum_i(min(r_i A_i, clip(r_i, 0.8, 1.2) A_i))",
        "wrt": ["w", "r"], "mode": "grad", "order": 1,
    },
    {
        "name": "Cookbook: ∂ log|det X| / ∂X = X⁻ᵀ",
        "program": "L = logdet_ij(X_ij)",
        "wrt": ["X"], "mode": "diff", "order": 1,
    },
    {
        "name": "Cookbook: ∂ aᵀX⁻¹b / ∂X",
        "program": "L = a_i inv_ij(X_ij) b_j",
        "wrt": ["X"], "mode": "diff", "order": 1,
    },
    {
        "name": "Gaussian negative log-likelihood, by Σ",
        "program": "r_i = y_i - m_i\nL = 0.5 logdet_ij(S_ij) + 0.5 r_i inv_ij(S_ij) r_j",
        "wrt": ["S"], "mode": "grad", "order": 1,
    },
    {
        "name": "Ridge regression's solution (XᵀX + λI)⁻¹ Xᵀy",
        "program": "w_i = inv_ij(X_ki X_kj + lam δ_ij) X_lj y_l",
        "wrt": ["lam"], "mode": "diff", "order": 1,
    },
    {
        "name": "The guide's RNN, unrolled 3 steps: backprop through time",
        "program": _rnn(3),
        "wrt": ["W", "U", "b"], "mode": "grad", "order": 1,
    },
    {
        "name": "The guide's RNN as a recurrence: BPTT derived once",
        "program": (
            "s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)\n"
            "L = sum_{t,n,h}((s[t, n, h] - y[t, n, h])^2)"
        ),
        "wrt": ["W", "U", "b"], "mode": "grad", "order": 1,
    },
    {
        "name": "A character-level RNN: embedding, recurrence, cross-entropy",
        "program": (
            "x[t, n, d] = E[tok[t, n], d]\n"
            "s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)\n"
            "Z[t, n, c] = s[t, n, h] V_hc\n"
            "L = sum_{t,n}(logsumexp_c(Z[t, n, c]) - Z[t, n, y[t, n]]) / (|t| |n|)"
        ),
        "wrt": ["E", "W", "U", "V"], "mode": "grad", "order": 1,
    },
]

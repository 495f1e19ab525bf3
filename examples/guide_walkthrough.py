"""The gradients guide's second half, step by step, with eingrad doing each step.

Sections follow the guide: indices instead of shapes, the summation rule, sizes
that must agree, derivatives and the Kronecker delta, a batch as one more
index, the affine layer's bias gradient summed over the batch, the delta eating
indices, the RNN unrolled and differentiated in reverse topological order, the
SVD in index notation, and the code that index notation becomes.  Every claim
printed is also checked against numpy (``main`` returns the checks).

Run ``python examples/guide_walkthrough.py``.
"""

from __future__ import annotations

import argparse
import textwrap

import numpy as np

import eingrad as eg

RNG = np.random.default_rng(0)


def say(text: str) -> None:
    """Commentary, wrapped."""
    print(textwrap.fill(" ".join(text.split()), width=88))


def heading(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 84 - len(title)))


def show(label: str, obj) -> None:
    body = str(obj)
    if "\n" in body:
        print(f"{label}:\n  " + body.replace("\n", "\n  "))
    else:
        print(f"{label}: {body}")


def indices_and_sums(checks: dict) -> None:
    heading("No rows, no columns, only indices")
    say("""An array has as many indices as numbers you need to fetch one scalar. The summation
    rule: an index that disappears from the left-hand side is summed; one that survives
    makes the operation elementwise. eingrad evaluates each line; numpy's einsum agrees.""")
    u, v = RNG.standard_normal(3), RNG.standard_normal(3)
    A, B, W = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5)), RNG.standard_normal((3, 5))
    T3 = RNG.standard_normal((3, 4, 2))
    cases = [
        ("p = v_i u_i", {"u": u, "v": v}, np.einsum("i,i->", v, u)),
        ("A_ij = u_i v_j", {"u": u, "v": v}, np.einsum("i,j->ij", u, v)),
        ("w_j = A_ij v_i", {"A": A, "v": v}, np.einsum("ij,i->j", A, v)),
        ("C_ik = A_ij B_jk", {"A": A, "B": B}, A @ B),
        ("p_i = v_i u_i", {"u": u, "v": v}, v * u),
        ("C_ik = A_ij B_jk W_ik", {"A": A, "B": B, "W": W}, W * (A @ B)),
        ("C_k = B_ijk A_ij", {"B": T3, "A": A}, np.einsum("ijk,ij->k", T3, A)),
        ("C_jkl = B_ijk A_il", {"B": T3, "A": A}, np.einsum("ijk,il->jkl", T3, A)),
        ("C_ijklm = B_ijk A_lm", {"B": T3, "A": A}, np.einsum("ijk,lm->ijklm", T3, A)),
    ]
    ok = True
    for text, arrays, expected in cases:
        program = eg.parse(text)
        value = eg.evaluate(program, **arrays)[program.output]
        ok &= value.shape == expected.shape and np.allclose(value, expected)
        print(f"  {text:24s} -> shape {value.shape}")
    checks["summation_rule"] = bool(ok)


def sizes_matter(checks: dict) -> None:
    heading("Sizes still exist, they still matter")
    say("""p_i = u_i + v_i makes no sense for u of length 2 and v of length 3; C_ij = u_i v_j + A_ij
    is fine for A of shape 2x3 but not 3x2. eingrad says which index, where, and why.""")
    u, v = np.ones(2), np.ones(3)
    try:
        eg.evaluate("p_i = u_i + v_i", u=u, v=v)
        checks["size_error"] = False
    except eg.SizeError as err:
        print(err)
        checks["size_error"] = True
    out = eg.evaluate("C_ij = u_i v_j + A_ij", u=u, v=v, A=np.zeros((2, 3)))["C"]
    print(f"with A of shape (2, 3): C has shape {out.shape}")
    try:
        eg.evaluate("C_ij = u_i v_j + A_ij", u=u, v=v, A=np.zeros((3, 2)))
        checks["size_error_transposed"] = False
    except eg.SizeError as err:
        print(err)
        checks["size_error_transposed"] = True


def derivatives(checks: dict) -> None:
    heading("Derivatives and the Kronecker delta")
    say("""Ask for one element of the derivative at a time. For f = w_i v_i, df/dv_i = w_i. For
    f_i = W_ij v_j, df_i/dv_j = W_ij, and df_i/dW_jk is v_k when i = j and 0 otherwise: v_k δ_ij.""")
    show("eg.diff('f = w_i v_i', 'v')", eg.diff("f = w_i v_i", "v"))
    show("eg.diff('f_i = W_ij v_j', 'v')", eg.diff("f_i = W_ij v_j", "v"))
    d = eg.diff("f_i = W_ij v_j", "W")
    show("eg.diff('f_i = W_ij v_j', 'W')", d)
    say("eg.explain shows the derivation: each W gives deltas, then a delta eats the summed j.")
    print(eg.explain("f_i = W_ij v_j", "W"))
    W, v = RNG.standard_normal((2, 3)), RNG.standard_normal(3)
    expected = np.einsum("ik,l->ikl", np.eye(2), v)  # v_l δ_ik, as an array of shape f + W
    checks["df_dW"] = bool(np.allclose(eg.evaluate(d, W=W, v=v), expected))

    heading("Dealing with a batch")
    say("""A batch is one more index: Y_ik = X_ij W_jk. The guide asks you to convince yourself of
    dY_ij/dX_kl = W_lj δ_ik and dY_ij/dW_kl = X_ik δ_jl; eingrad writes them (with its own
    fresh index names):""")
    dX, dW = eg.diff("Y_ik = X_ij W_jk", "X"), eg.diff("Y_ik = X_ij W_jk", "W")
    show("wrt X", dX)
    show("wrt W", dW)
    X, W = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 2))
    checks["batch_jacobians"] = bool(
        np.allclose(eg.evaluate(dX, X=X, W=W), np.einsum("ik,lj->ijkl", np.eye(4), W))
        and np.allclose(eg.evaluate(dW, X=X, W=W), np.einsum("ik,jl->ijkl", X, np.eye(2)))
    )


def affine_layer(checks: dict) -> None:
    heading("The affine layer: the bias gradient sums over the batch")
    say("""Y_nh = X_nd W_dh + b_h adds b to every row n. With an upstream gradient dL/dY_nh = G_nh,
    dL/db_h sums G over the batch index n: the chain rule's δ eats h, and n is left summed.""")
    steps = eg.explain("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", "b")
    print(steps)
    say("""Reverse mode writes the whole backward pass of the layer, given the upstream gradient
    dLdY as a seed, and eg.compile turns it into numpy code: the guide's np.sum(dLdY, axis=0).""")
    backward = eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["X", "W", "b"], seed="dLdY")
    show("eg.grad(..., seed='dLdY')", backward)
    fn = eg.compile(backward)
    X, W, b = RNG.standard_normal((5, 3)), RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    dLdY = RNG.standard_normal((5, 2))
    out = fn(X=X, W=W, b=b, dLdY=dLdY)
    print("the generated code for dLdb:")
    print("\n".join(line for line in fn.source.splitlines() if line.strip().startswith("dLdb")))
    checks["bias_gradient"] = bool(
        np.allclose(out["dLdb"], np.sum(dLdY, axis=0))
        and np.allclose(out["dLdW"], X.T @ dLdY)
        and np.allclose(out["dLdX"], dLdY @ W.T)
        and out["dLdb"].shape == b.shape
    )


def delta_eats_indices(checks: dict) -> None:
    heading("The Kronecker delta eats indices")
    say("""v_i = A_ij δ_jk B_ik: the sum over j picks j = k, so the delta eats one index and
    donates the other. eg.simplify does it; both forms give the same numbers.""")
    before = "v_i = A_ij δ_jk B_ik"
    after = eg.simplify(before)
    show("eg.simplify('v_i = A_ij δ_jk B_ik')", after)
    A, B = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    checks["delta_eats"] = bool(
        np.allclose(eg.evaluate(before, A=A, B=B)["v"], eg.evaluate(after, A=A, B=B)["v"])
        and np.allclose(eg.evaluate(after, A=A, B=B)["v"], np.sum(A * B, axis=1))
    )


def rnn(checks: dict) -> None:
    heading("Backpropagation for an RNN")
    say("""Unroll s_t = tanh(x_t W + s_{t-1} U + b), s_0 = 0, over τ = 3 steps and draw the graph
    (program.to_dot() gives it in Graphviz). eg.grad computes the adjoints dL/ds_t in
    reverse topological order, each from the next (dynamic programming), and adds the
    contribution of every path into each parameter's gradient: one term per step that
    reads it, as in the guide's formula (U has two, since s_1 reads no s_0 U when s_0 = 0).""")
    builder = eg.ProgramBuilder()
    builder.add("s1_nh = tanh(x1_nd W_dh + b_h)")
    for t in (2, 3):
        builder.add(f"s{t}_nh = tanh(x{t}_nd W_dh + s{t - 1}_nk U_kh + b_h)")
    builder.add("L = G_nh s3_nh")
    program = builder.build()
    gradient = eg.grad(program, wrt=["U", "W", "b"])
    show("eg.grad(rnn, wrt=['U', 'W', 'b'])", gradient)
    arrays = {f"x{t}": RNG.standard_normal((4, 2)) for t in (1, 2, 3)}
    arrays.update(W=RNG.standard_normal((2, 3)), U=RNG.standard_normal((3, 3)),
                  b=RNG.standard_normal(3), G=RNG.standard_normal((4, 3)))
    dLdU = eg.compile(gradient, outputs=["dLdU"])(**arrays)["dLdU"]
    numeric = central_differences(program, arrays, "U")
    error = float(np.max(np.abs(dLdU - numeric)))
    print(f"dL/dU against central differences: max abs error {error:.1e}")
    checks["rnn_gradient"] = error < 1e-7


def central_differences(program: eg.Program, arrays: dict, name: str, eps: float = 1e-6) -> np.ndarray:
    """dL/d(name), entry by entry, from evaluations of L alone."""
    x = arrays[name]
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        plus = eg.evaluate(program, {**arrays, name: x + step})["L"]
        minus = eg.evaluate(program, {**arrays, name: x - step})["L"]
        out[idx] = (plus - minus) / (2 * eps)
    return out


def svd(checks: dict) -> None:
    heading("Now the SVD is even more beautiful")
    say("""A = U S Vᵀ is A_ij = U_ik S_kl V_lj (no transpose: indices say which axis is summed).
    With S_kl = σ_k δ_kl, the delta eats l and the useless zeros are gone: A_ij = U_ik σ_k V_kj.""")
    form = eg.simplify("A_ij = U_ik σ_k δ_kl V_lj")
    show("eg.simplify('A_ij = U_ik σ_k δ_kl V_lj')", form)
    M = RNG.standard_normal((4, 3))
    U, sigma, Vt = np.linalg.svd(M, full_matrices=False)
    # numpy's Vt holds V_kj with k first: exactly the axes the index form reads.
    rebuilt = eg.evaluate(form, U=U, σ=sigma, V=Vt)["A"]
    print(f"rebuilt from numpy's SVD: max |A - U_ik σ_k V_kj| = {np.max(np.abs(rebuilt - M)):.1e}")
    show("and its derivative in σ", eg.diff(form, "σ"))
    checks["svd"] = bool(np.allclose(rebuilt, M))


def code(checks: dict) -> None:
    heading("Code implementation")
    say("""C_ik = A_ij B_jk just happens to be a matrix product, and C_ik = A_ij B_jk W_ik a matrix
    product then an elementwise one. eg.compile finds that, and sends the product to BLAS:""")
    fn = eg.compile("C_ik = A_ij B_jk W_ik")
    A, B, W = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5)), RNG.standard_normal((3, 5))
    C = fn(A=A, B=B, W=W)["C"]
    source = fn.source
    print(source[source.rfind("\ndef ") + 1 :].rstrip())  # the last function: the program's
    checks["compiled"] = bool(np.allclose(C, W * (A @ B)))


SECTIONS = [indices_and_sums, sizes_matter, derivatives, affine_layer, delta_eats_indices, rnn, svd, code]


def main(argv: list[str] | None = None) -> dict:
    """Run every section; returns ``{check: passed}``."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    checks: dict[str, bool] = {}
    for section in SECTIONS:
        section(checks)
    heading("Checks against numpy")
    for name, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {name}")
    return checks


if __name__ == "__main__":
    main()
